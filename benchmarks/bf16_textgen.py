"""The char-LM preset in bf16: rnnlab's Trainer against a plain PyTorch script, float32 and bf16 (issue 12).

Run by hand:  PYTHONPATH=src python benchmarks/bf16_textgen.py [--threads 2] [--rounds 3] [--steps 400]
On a GPU:     PYTHONPATH=src python benchmarks/bf16_textgen.py --device cuda (bf16 autocast on CUDA; the clock
              waits for the GPU at the end of each run, and every step's ``loss.item()`` waits for it too)

The model and recipe are the textgen preset's (configs/textgen.yaml, tasks/textgen.py defaults): characters of
the embedded corpus (Python's documentation, last 10% held out), embedding 64 -> LSTM 256 -> linear, B=32
streams, k=64 steps per chunk (truncated BPTT, state carried and detached), AdamW lr 3e-3, weight decay 0.01,
20 warm-up steps, gradient norm clipped to 1. Four contenders train a fresh model for --steps steps each:

  rnnlab float32      LanguageModel + Trainer.fit, precision "float32"
  rnnlab auto         the same with precision "auto" (bf16 autocast on CPUs with AVX512-BF16/AMX)
  plain float32       the script a PyTorch user writes: nn.Embedding -> nn.LSTM -> nn.Linear, the text batchified
                      into B rows, AdamW with a LambdaLR warm-up, clip_grad_norm_
  plain bf16          the same script with ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward

One round per seed: each contender trains once (order reversed every other round); tokens/s is the training time
only (wall time, or with --clock cpu this thread's CPU time); the reported ratios are medians of per-round
ratios. The validation loss (nats/char) after training is
computed by one function for every model, in float32, over the whole held-out text. With --before, two more
contenders run rnnlab with the batches cut at a document end through torch's packed-sequence kernel, as before
nn/recurrent.py ran such batches as row groups. Targets: rnnlab auto >= 1.6x
rnnlab float32 tokens/s, and >= plain bf16's tokens/s at equal validation loss.
Writes benchmarks/results/bf16_textgen.json and prints a table.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CLOCKS, print_table, setup_threads, write_json  # noqa: E402
from rnnlab.nn import recurrent  # noqa: E402
from rnnlab.structures import LanguageModel  # noqa: E402
from rnnlab.tasks.textgen import TextgenConfig  # noqa: E402
from rnnlab.training import TokenStream, Trainer  # noqa: E402
from rnnlab.training.trainer import resolve_precision  # noqa: E402
from trainer import text_corpus  # noqa: E402

PRESET = TextgenConfig()
CLOCK = [time.perf_counter]  # --clock cpu: time.thread_time, this thread's CPU time (one thread, loaded machine)
DEVICE = [torch.device("cpu")]  # --device


def _now() -> float:
    """The clock, after the GPU (if any) has finished the work queued so far."""
    if DEVICE[0].type == "cuda":
        torch.cuda.synchronize()
    return CLOCK[0]()


# --- the plain script, as a PyTorch user writes it ------------------------------------------------------------

class CharLSTM(nn.Module):
    def __init__(self, vocab: int, embedding: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)  # (B, k, H)
        return self.head(out), state  # (B, k, V)


def batchify(ids: torch.Tensor, rows: int) -> torch.Tensor:
    """The text laid out in ``rows`` parallel streams, (rows, n): the PyTorch word-language-model example's way."""
    n = ids.numel() // rows
    return ids[: n * rows].view(rows, n)


def plain_train(model: CharLSTM, data: torch.Tensor, steps: int, bf16: bool) -> int:
    """``steps`` truncated-BPTT steps over ``data`` (B, n); returns the tokens trained on."""
    c, k = PRESET.trainer, PRESET.bptt
    data = data.to(DEVICE[0])
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / c.warmup_steps))
    state, i, tokens = None, 0, 0
    for _ in range(steps):
        if i + k + 1 > data.shape[1]:  # next epoch: start the streams again from zero state
            state, i = None, 0
        x, y = data[:, i:i + k], data[:, i + 1:i + k + 1]
        if state is not None:
            state = tuple(s.detach() for s in state)
        with torch.autocast(DEVICE[0].type, dtype=torch.bfloat16, enabled=bf16):
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), c.clip_norm)
        opt.step()
        warmup.step()
        loss.item()  # a user logs the loss
        i += k
        tokens += y.numel()
    return tokens


# --- rnnlab ---------------------------------------------------------------------------------------------

def rnnlab_train(model: LanguageModel, docs: list, steps: int, precision: str, seed: int) -> int:
    config = dataclasses.replace(PRESET.trainer, max_steps=steps, max_time=0.0, eval_every=0, precision=precision,
                                 progress=False, curves=False, log_every=10_000, run_dir="", seed=seed,
                                 device=DEVICE[0].type)
    stream = lambda: TokenStream(docs, batch_size=PRESET.batch_size, bptt=PRESET.bptt, shuffle_seed=seed)  # noqa: E731
    Trainer(config).fit(model, stream(), None)
    return _tokens(stream(), steps)


def _tokens(stream: TokenStream, steps: int) -> int:
    """The tokens in the first ``steps`` batches of ``stream`` (chunks end early at the end of the text)."""
    tokens, done = 0, 0
    while done < steps:
        for batch in stream:
            tokens, done = tokens + batch["num_tokens"], done + 1
            if done == steps:
                break
    return tokens


# --- one validation function for every model --------------------------------------------------------------

@torch.no_grad()
def valid_loss(forward, data: torch.Tensor) -> float:
    """Mean cross-entropy (nats/char) of ``forward(x, state) -> (logits, state)`` over ``data`` (B, n), float32."""
    k, state, total, count = PRESET.bptt, None, 0.0, 0
    for i in range(0, data.shape[1] - 1, k):
        x, y = data[:, i:i + k], data[:, i + 1:i + k + 1]
        x, y = x[:, : y.shape[1]].to(DEVICE[0]), y.to(DEVICE[0])
        logits, state = forward(x, state)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum"))
        count += y.numel()
    return total / count


def rnnlab_forward(model: LanguageModel):
    def forward(x, state):
        out = model({"x": x, "state": state})
        return out.logits, out.state

    return forward


# --- the rounds ---------------------------------------------------------------------------------------------

def contenders(train_docs: list, data: torch.Tensor, vocab: int, steps: int, auto: str, before: bool = False) -> dict:
    """name -> fn(seed) -> (tokens, seconds, model forward): builds a fresh seeded model and trains it."""
    m = PRESET.model

    def ours(precision, packed=False):
        def run(seed):
            torch.manual_seed(seed)
            model = LanguageModel(m.build(vocab))
            groups, recurrent._MAX_LENGTH_GROUPS = recurrent._MAX_LENGTH_GROUPS, 0 if packed else groups_default
            try:
                t0 = _now()
                tokens = rnnlab_train(model, train_docs, steps, precision, seed)
                seconds = _now() - t0
            finally:
                recurrent._MAX_LENGTH_GROUPS = groups
            return tokens, seconds, rnnlab_forward(model.eval())
        return run

    def plain(bf16):
        def run(seed):
            torch.manual_seed(seed)
            model = CharLSTM(vocab, m.embedding_size, m.encoder.hidden_size).to(DEVICE[0])
            t0 = _now()
            tokens = plain_train(model, data, steps, bf16)
            return tokens, _now() - t0, model.eval()
        return run

    groups_default = recurrent._MAX_LENGTH_GROUPS
    runs = {"rnnlab float32": ours("float32"), f"rnnlab auto ({auto})": ours("auto"),
            "plain float32": plain(False), "plain bf16": plain(True)}
    if before:  # batches cut at a document end through torch's packed-sequence kernel, as before the length groups
        runs["rnnlab float32, packed"] = ours("float32", packed=True)
        runs[f"rnnlab auto ({auto}), packed"] = ours("auto", packed=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds; round r trains every contender with seed first_seed + r")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first round (to split a long run)")
    parser.add_argument("--steps", type=int, default=400, help="training steps per run")
    parser.add_argument("--before", action="store_true",
                        help="also rnnlab with batches cut at a document end through torch's packed kernel (old path)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 steps, 1 round")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall time, or this thread's CPU time (with --threads 1: leaves out the time other "
                             "processes held the core on a loaded machine)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where every contender trains")
    parser.add_argument("--out", default="bf16_textgen.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 20, 1
    setup_threads(args.threads)
    CLOCK[0] = CLOCKS[args.clock]
    DEVICE[0] = torch.device(args.device)
    logging.disable(logging.INFO)
    auto = resolve_precision("auto", DEVICE[0])
    train_docs, valid_docs, vocab = text_corpus()
    data = batchify(torch.cat(train_docs), PRESET.batch_size)
    valid = batchify(torch.cat(valid_docs), PRESET.batch_size)
    runs = contenders(train_docs, data, vocab, args.steps, auto, args.before)
    results: dict = {name: [] for name in runs}
    t_start = time.perf_counter()
    for run in contenders(train_docs, data, vocab, min(10, args.steps), auto, args.before).values():
        run(0)  # warm-up, not recorded: the first run in a process pays oneDNN's primitive creation
    for r in range(args.rounds):
        seed = args.first_seed + r
        for name in list(runs) if seed % 2 == 0 else list(runs)[::-1]:
            tokens, seconds, forward = runs[name](seed)
            results[name].append({"seed": seed, "tokens_per_s": tokens / seconds, "seconds": seconds,
                                  "valid_loss": valid_loss(forward, valid)})
            print(f"round {r} {name}: {tokens / seconds:,.0f} tok/s, valid {results[name][-1]['valid_loss']:.4f}",
                  flush=True)
            # after every run, so that a run cut short keeps what it measured
            rows = table({k: v for k, v in results.items() if v}, auto)
            path = write_json(args.out, {"preset": {"embedding": PRESET.model.embedding_size,
                                                    "hidden": PRESET.model.encoder.hidden_size,
                                                    "batch": PRESET.batch_size, "bptt": PRESET.bptt},
                                         "steps": args.steps, "rounds": r + 1, "first_seed": args.first_seed,
                                         "threads": args.threads, "clock": args.clock, "device": args.device,
                                         "auto_precision": auto,
                                         "seconds": time.perf_counter() - t_start, "runs": results, "rows": rows})
    seconds = time.perf_counter() - t_start
    print(f"\nchar-LM preset: E={PRESET.model.embedding_size}, LSTM-{PRESET.model.encoder.hidden_size}, "
          f"B={PRESET.batch_size}, k={PRESET.bptt}, {args.steps} steps, {args.rounds} rounds, {args.threads} threads, "
          f"{args.clock} clock, {args.device}")
    print_table(rows, ["contender", "tokens_per_s", "vs_rnnlab_float32", "vs_plain_bf16", "valid_loss", "valid_sd"])
    print(f"\n{seconds:.0f} s; written {path}")


def table(results: dict, auto: str) -> list[dict]:
    def per_round(name, base):  # median over rounds of speed(name) / speed(base) in the same round
        if base not in results:
            return float("nan")
        return statistics.median(a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(results[name], results[base]))

    rows = []
    for name, runs in results.items():
        losses = [run["valid_loss"] for run in runs]
        rows.append({"contender": name, "tokens_per_s": statistics.median(run["tokens_per_s"] for run in runs),
                     "vs_rnnlab_float32": per_round(name, "rnnlab float32"),
                     "vs_plain_bf16": per_round(name, "plain bf16"),
                     "valid_loss": statistics.mean(losses),
                     "valid_sd": statistics.stdev(losses) if len(losses) > 1 else 0.0})
    return rows


if __name__ == "__main__":
    main()

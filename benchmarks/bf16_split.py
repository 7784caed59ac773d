"""Where a training step of the char-LM preset goes, rnnlab's Trainer step against the plain script (issue 12).

Run by hand:  PYTHONPATH=src python benchmarks/bf16_split.py [--threads 1] [--rounds 4] [--steps 50]
              [--precisions bf16,float32]

Both loops are the ones benchmarks/bf16_textgen.py times, taken apart into phases and timed with
``time.thread_time`` (this thread's CPU time: the time other processes held the core is left out):

  data      the next batch (TokenStream / the plain script's slicing)
  prep      learning rate, batch to device, the carried state detached
  forward   the loss under bf16 autocast (rnnlab: loss_and_state and _carryable)
  backward  zero_grad and loss.backward()
  clip      the gradient norm and clipping
  optim     the loss read back, the divergence check, optimizer.step (plain: + LambdaLR.step)
  log       the run's bookkeeping (RunLogger.step, token count)

rnnlab's phases call the Trainer's own helpers in the order Trainer._train_step / _fit call them. One round
runs --steps steps of each loop (rnnlab and plain, in each precision; order alternating), continuing the same
streams; the table holds the medians over rounds of ms per step per phase (rnnlab's also split into batches
without and with ``lengths``, a row's chunk cut at a document end), then medians of per-round ratios: time
rnnlab / plain, and the bf16 speed-up time(float32) / time(bf16). Writes benchmarks/results/bf16_split.json.
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
from bf16_textgen import PRESET, CharLSTM, batchify  # noqa: E402
from common import print_table, setup_threads, write_json  # noqa: E402
from rnnlab.nn.state import detach  # noqa: E402
from rnnlab.structures import LanguageModel  # noqa: E402
from rnnlab.training import TokenStream, Trainer  # noqa: E402
from rnnlab.training import trainer as T  # noqa: E402
from rnnlab.training.progress import RunLogger  # noqa: E402
from trainer import text_corpus  # noqa: E402

PHASES = ("data", "prep", "forward", "backward", "clip", "optim", "log")


class Clock:
    def __init__(self) -> None:
        self.times = {p: 0.0 for p in PHASES}
        self.last = time.thread_time()

    def lap(self, phase: str) -> None:
        now = time.thread_time()
        self.times[phase] += now - self.last
        self.last = now


def rnnlab_loop(vocab: int, docs: list, bf16: bool):
    """-> step(clock) -> has_lengths: one Trainer step, phase by phase."""
    torch.manual_seed(0)
    model = LanguageModel(PRESET.model.build(vocab))
    config = dataclasses.replace(PRESET.trainer, max_steps=10**9, max_time=0.0, eval_every=0,
                                 precision="bf16" if bf16 else "float32", progress=False, curves=False,
                                 log_every=10_000, run_dir="", device="cpu")
    trainer = Trainer(config)
    trainer._stateful = True
    p = trainer._setup(model, None)
    run = T.RunState()
    logger = RunLogger(config, total_steps=None, start_step=0, resumed=False, active=True, metric=None)
    stream = TokenStream(docs, batch_size=PRESET.batch_size, bptt=PRESET.bptt, shuffle_seed=0)
    it = iter(())

    def step(clock: Clock) -> bool:
        nonlocal it
        c = config
        batch = next(it, None)
        if batch is None:
            it = iter(stream)
            batch = next(it)
        clock.lap("data")
        T._set_lr(p.optimizer, c, run.step)
        batch = T._to_device(batch, trainer.device)
        if run.carried is not None:
            batch["state"] = detach(run.carried)
        clock.lap("prep")
        with trainer._autocast():
            loss, state = p.model.loss_and_state(batch)
            run.carried = T._carryable(state)
        clock.lap("forward")
        p.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clock.lap("backward")
        grad_norm = T._clip_gradients(p.model.parameters(), c.clip_norm, c.clip_value)
        clock.lap("clip")
        value = float(loss.detach())
        trainer._check_exploding(run, value)
        p.optimizer.step()
        if len(run.first_losses) < 10:
            run.first_losses.append(value)
        clock.lap("optim")
        tokens = T.count_tokens(batch)
        run.step += 1
        run.recent = (run.recent + [value])[-c.log_every:]
        logger.step(run.step, run.epoch, value, grad_norm, p.optimizer.param_groups[0]["lr"], tokens)
        clock.lap("log")
        return "lengths" in batch

    return step


def plain_loop(vocab: int, data: torch.Tensor, bf16: bool):
    torch.manual_seed(0)
    m, c, k = PRESET.model, PRESET.trainer, PRESET.bptt
    model = CharLSTM(vocab, m.embedding_size, m.encoder.hidden_size)
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / c.warmup_steps))
    at = {"state": None, "i": 0}

    def step(clock: Clock) -> bool:
        if at["i"] + k + 1 > data.shape[1]:
            at["state"], at["i"] = None, 0
        i = at["i"]
        x, y = data[:, i:i + k], data[:, i + 1:i + k + 1]
        clock.lap("data")
        state = at["state"]
        if state is not None:
            state = tuple(s.detach() for s in state)
        clock.lap("prep")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        at["state"] = state
        clock.lap("forward")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clock.lap("backward")
        nn.utils.clip_grad_norm_(model.parameters(), c.clip_norm)
        clock.lap("clip")
        opt.step()
        warmup.step()
        loss.item()
        clock.lap("optim")
        at["i"] += k
        clock.lap("log")
        return False

    return step


def run_block(step, steps: int) -> dict:
    """ms per step per phase over ``steps`` steps, split by batches with/without lengths."""
    split = {False: {p: 0.0 for p in PHASES}, True: {p: 0.0 for p in PHASES}}
    count = {False: 0, True: 0}
    for _ in range(steps):
        clock = Clock()
        has_lengths = step(clock)
        for p in PHASES:
            split[has_lengths][p] += clock.times[p]
        count[has_lengths] += 1
    out = {}
    for kind, name in ((False, "full"), (True, "cut")):
        if count[kind]:
            out[name] = {p: 1e3 * split[kind][p] / count[kind] for p in PHASES} | {"n": count[kind]}
    total = {p: 1e3 * (split[False][p] + split[True][p]) / steps for p in PHASES}
    out["all"] = total | {"n": steps}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=50, help="steps per loop per round")
    parser.add_argument("--precisions", default="bf16,float32", help="comma-separated: bf16 (autocast), float32")
    parser.add_argument("--out", default="bf16_split.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    setup_threads(args.threads)
    logging.disable(logging.INFO)
    precisions = [p for p in args.precisions.split(",") if p]
    train_docs, _, vocab = text_corpus()
    data = batchify(torch.cat(train_docs), PRESET.batch_size)
    loops = {}
    for prec in precisions:
        loops[f"rnnlab {prec}"] = rnnlab_loop(vocab, train_docs, prec == "bf16")
        loops[f"plain {prec}"] = plain_loop(vocab, data, prec == "bf16")
    for step in loops.values():
        run_block(step, 10)  # warm-up: oneDNN primitives, the stream's layout
    t0 = time.perf_counter()
    blocks: dict = {name: [] for name in loops}
    for r in range(args.rounds):
        for name in list(loops) if r % 2 == 0 else list(loops)[::-1]:
            blocks[name].append(run_block(loops[name], args.steps))
    rows = []
    for name in loops:
        for kind in ("all", "full", "cut") if name.startswith("rnnlab") else ("all",):
            got = [b[kind] for b in blocks[name] if kind in b]
            row = {"loop": f"{name} {kind}", "n": sum(g["n"] for g in got)}
            for p in PHASES + ("total",):
                row[p] = statistics.median(sum(g[q] for q in PHASES) if p == "total" else g[p] for g in got)
            rows.append(row)

    def ratio(a: str, b: str) -> dict:  # medians over rounds of time(a) / time(b), per phase
        return {p: statistics.median((sum(x["all"][q] for q in PHASES) if p == "total" else x["all"][p])
                                     / max(sum(y["all"][q] for q in PHASES) if p == "total" else y["all"][p], 1e-9)
                                     for x, y in zip(blocks[a], blocks[b]))
                for p in PHASES + ("total",)}

    for prec in precisions:
        rows.append({"loop": f"time rnnlab/plain {prec}", "n": ""} | ratio(f"rnnlab {prec}", f"plain {prec}"))
    if len(precisions) == 2:
        for impl in ("rnnlab", "plain"):
            rows.append({"loop": f"speed-up bf16 {impl}", "n": ""} | ratio(f"{impl} float32", f"{impl} bf16"))
    seconds = time.perf_counter() - t0
    print(f"ms per step (thread time), {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps; "
          "ratios: medians of per-round ratios")
    print_table(rows, ["loop", "n", *PHASES, "total"])
    path = write_json(args.out, {"precisions": precisions, "threads": args.threads, "rounds": args.rounds,
                                 "steps": args.steps, "seconds": seconds, "rows": rows, "blocks": blocks})
    print(f"\n{seconds:.0f} s; written {path}")


if __name__ == "__main__":
    main()

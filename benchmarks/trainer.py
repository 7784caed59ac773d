"""rnnlab's Trainer.fit against a bare PyTorch loop, and bf16 against float32 (run by hand).

Both loops train the same LSTM LanguageModel on the same TokenStream with truncated BPTT (state carried,
detached), Adam and global-norm clipping. Runs are interleaved (benchmarks/common.py): each round trains a
fresh model for ``steps`` steps with each contender; we report tokens/s medians and the median per-round
ratio (target: fit ≥ 0.95× the bare loop). The bf16 section reports the speed ratio and the validation loss
after the same number of steps.

    python benchmarks/trainer.py [--quick]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, median_ms, print_table, ratio, setup_threads, write_json  # noqa: E402
from rnnlab.data.text import load_corpus, split_documents  # noqa: E402
from rnnlab.data.tokenize import train_tokenizer  # noqa: E402
from rnnlab.nn.state import detach  # noqa: E402
from rnnlab.structures import EncoderConfig, LanguageModel, LanguageModelConfig  # noqa: E402
from rnnlab.training import TokenStream, Trainer, TrainerConfig  # noqa: E402

V = 64


def make_model(hidden: int, vocab: int = V) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(LanguageModelConfig(vocab, embedding_size=hidden, encoder=EncoderConfig(hidden_size=hidden)))


def text_corpus():
    """The embedded corpus as character ids: (train documents, valid documents, vocabulary size)."""
    train, valid = split_documents(load_corpus(None), 0.1)
    tokenizer = train_tokenizer("char", [d.text for d in train])
    encode = lambda docs: [torch.tensor(tokenizer.encode(d.text)) for d in docs if d.text]  # noqa: E731
    return encode(train), encode(valid), tokenizer.vocab_size


def make_docs(tokens: int) -> list:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, V, (tokens // 8,), generator=g) for _ in range(8)]


def bare_loop(model, stream, steps: int, lr: float) -> int:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    state, tokens, done = None, 0, 0
    while done < steps:
        for batch in stream:
            if state is not None:
                batch["state"] = detach(state)
            loss, state = model.loss_and_state(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            float(loss.detach())  # the trainer logs every step's loss: pay the same sync
            tokens += batch["num_tokens"]
            done += 1
            if done == steps:
                break
    return tokens


def fit(model, stream, steps: int, lr: float, precision: str = "float32", valid=None) -> dict:
    config = TrainerConfig(optimizer="adam", lr=lr, clip_norm=1.0, max_steps=steps, max_epochs=0, progress=False,
                           precision=precision, log_every=1000, device="cpu")
    return Trainer(config).fit(model, stream, valid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, few rounds (< 1 minute)")
    args = parser.parse_args()
    setup_threads()
    logging.disable(logging.INFO)
    hidden, B, k = (64, 8, 32) if args.quick else (256, 32, 64)
    steps, rounds = (10, 3) if args.quick else (50, 7)
    quality_steps = 20 if args.quick else 400
    docs = make_docs(B * k * (steps + 2) * 2)
    stream = lambda: TokenStream(docs, batch_size=B, bptt=k)  # noqa: E731
    tokens = bare_loop(make_model(hidden), stream(), steps, 1e-3)

    times = interleaved({
        "bare": lambda: bare_loop(make_model(hidden), stream(), steps, 1e-3),
        "fit": lambda: fit(make_model(hidden), stream(), steps, 1e-3),
        "fit_bf16": lambda: fit(make_model(hidden), stream(), steps, 1e-3, "bf16"),
    }, rounds=rounds, warmup=1)
    rows = [{"contender": n, "median_ms": median_ms(t), "tokens_per_s": tokens / (median_ms(t) / 1e3),
             "time_ratio_vs_bare": ratio(times, n, "bare")} for n, t in times.items()]
    throughput_ratio = 1.0 / ratio(times, "fit", "bare")

    # quality on real text: the embedded corpus (Python's documentation), characters, last 10% held out
    train_docs, valid_docs, vocab = text_corpus()
    quality = {}
    for precision in ("float32", "bf16"):
        t0 = time.perf_counter()
        m = fit(make_model(hidden, vocab), TokenStream(train_docs, batch_size=B, bptt=k), quality_steps, 3e-3,
                precision, TokenStream(valid_docs, batch_size=B, bptt=k))
        quality[precision] = {"steps": quality_steps, "valid_loss": m["valid_loss"],
                              "seconds": time.perf_counter() - t0}

    print(f"LSTM LM, H={hidden}, B={B}, k={k}, {steps} steps per run, {rounds} rounds")
    print_table(rows, ["contender", "median_ms", "tokens_per_s", "time_ratio_vs_bare"])
    print(f"fit throughput / bare throughput: {throughput_ratio:.3f} (target >= 0.95)")
    print_table([{"precision": p, **q} for p, q in quality.items()], ["precision", "steps", "valid_loss", "seconds"])
    write_json("trainer.json", {"config": {"hidden": hidden, "batch": B, "bptt": k, "steps": steps, "rounds": rounds,
                                           "quick": args.quick},
                                "speed": rows, "fit_over_bare_throughput": throughput_ratio,
                                "bf16_over_float32_speed": ratio(times, "fit", "fit_bf16"), "quality": quality})


if __name__ == "__main__":
    main()

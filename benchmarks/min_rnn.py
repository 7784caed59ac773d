"""minGRU / minLSTM against torch.nn.LSTM on the CPU: training step and inference.

Run by hand:  .venv/bin/python benchmarks/min_rnn.py [--repeats 15] [--shape 16 1024 128 256]

Every contender runs in the same process, interleaved (one run of each per round, many
rounds), so that a noisy shared machine slows them alike; we report medians and the ratio
to torch.nn.LSTM. A training step is forward + backward of outputs.mean(); inference is
the forward under torch.no_grad(). numba compiles (or loads its cache) during the warm-up.
Writes benchmarks/results/min_rnn.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numba
import torch
from torch import nn

from rnnlab.nn.min_rnn import MinGRU, MinLSTM

RESULTS = Path(__file__).resolve().parent / "results" / "min_rnn.json"


def contenders(input_size: int, hidden_size: int) -> dict[str, nn.Module]:
    return {
        "torch.nn.LSTM": nn.LSTM(input_size, hidden_size, batch_first=True),
        "MinGRU fused": MinGRU(input_size, hidden_size, scan="fused"),
        "MinGRU log": MinGRU(input_size, hidden_size, scan="log"),
        "MinLSTM fused": MinLSTM(input_size, hidden_size, scan="fused"),
        "MinLSTM log": MinLSTM(input_size, hidden_size, scan="log"),
    }


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    outputs, _ = model(x)
    outputs.mean().backward()


@torch.no_grad()
def infer(model: nn.Module, x: torch.Tensor) -> None:
    model(x)


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per contender and mode")
    parser.add_argument("--shape", type=int, nargs=4, default=[16, 1024, 128, 256], metavar=("B", "T", "I", "H"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, T, I, H = args.shape

    models = contenders(I, H)
    x = torch.randn(B, T, I, requires_grad=False)

    t0 = time.perf_counter()
    train_step(models["MinGRU fused"], x)  # numba compiles or loads its cache here
    first_call_s = time.perf_counter() - t0
    for model in models.values():  # warm-up
        for _ in range(2):
            train_step(model, x)
            infer(model, x)

    times: dict[str, dict[str, list[float]]] = {name: {"train": [], "infer": []} for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name]["train"].append(timed(train_step, model, x))
            times[name]["infer"].append(timed(infer, model, x))

    med = {name: {mode: statistics.median(ts) for mode, ts in d.items()} for name, d in times.items()}
    ref = med["torch.nn.LSTM"]
    rows = {
        name: {
            "train_ms": 1e3 * m["train"],
            "infer_ms": 1e3 * m["infer"],
            "train_ratio_vs_lstm": m["train"] / ref["train"],
            "infer_ratio_vs_lstm": m["infer"] / ref["infer"],
            "train_ms_min": 1e3 * min(times[name]["train"]),
            "infer_ms_min": 1e3 * min(times[name]["infer"]),
        }
        for name, m in med.items()
    }
    result = {
        "shape": {"B": B, "T": T, "I": I, "H": H},
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "repeats": args.repeats,
        "first_fused_train_step_s": first_call_s,
        "torch": torch.__version__,
        "numba": numba.__version__,
        "machine": platform.processor() or platform.machine(),
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))

    print(f"(B, T, I, H) = {tuple(args.shape)}, {args.threads} threads, median of {args.repeats} interleaved rounds")
    print(f"first fused training step (numba compile or cache load): {first_call_s:.2f} s")
    print(f"{'model':<16}{'train ms':>10}{'vs LSTM':>9}{'infer ms':>10}{'vs LSTM':>9}")
    for name, r in rows.items():
        print(
            f"{name:<16}{r['train_ms']:>10.1f}{r['train_ratio_vs_lstm']:>9.2f}"
            f"{r['infer_ms']:>10.1f}{r['infer_ratio_vs_lstm']:>9.2f}"
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

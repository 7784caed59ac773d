"""minGRU / minLSTM against torch.nn.LSTM and torch.nn.GRU on the CPU: training step, inference, and where the time
goes.

Run by hand:  .venv/bin/python benchmarks/min_rnn.py [--rounds 15] [--threads 1] [--shapes 0,1] [--quick]

For each shape of benchmarks/layers.py (the issue's target (16, 1024, 128, 256) first), every contender runs in
the same process, interleaved (one run of each per round, order alternating), so that a noisy shared machine
slows them alike. Reported: the median time and the median over rounds of time / time(torch.nn.LSTM).
A training step is forward + backward of outputs.mean() with parameter gradients; inference is the forward
under torch.no_grad().

The split: the fused minGRU/minLSTM path (rnnlab.nn._min_scan.min_scan) is, block by block, a GEMM (k = x Wᵀ)
and a numba kernel (gates + scan) forward, and a GEMM (k again) and a numba kernel (the reverse scan) backward,
then two GEMMs (∂L/∂x = ∂L/∂k W, ∂L/∂W = ∂L/∂kᵀ x). It is timed as it runs and again with its kernels made
no-ops (interleaved): the difference is the kernels' time, the rest the GEMMs' (and the glue's), so that where a
target is missed the table shows which is the limit. numba compiles (or loads its cache) before timing.
Writes benchmarks/results/min_rnn.json and prints two tables.
"""
from __future__ import annotations

import argparse
import time

import numba
import torch
from torch import nn

from common import interleaved, median_ms, print_table, ratio, setup_threads, write_json
from layers import inference, train_step
from rnnlab.nn._min_scan import _KERNELS, min_scan
from rnnlab.nn.min_rnn import MinGRU, MinLSTM

# benchmarks/layers.py's five shapes (B, T, I, H), the target first
SHAPES = [(16, 1024, 128, 256), (32, 100, 128, 256), (64, 200, 64, 128), (8, 500, 32, 64), (64, 100, 256, 512)]
MIN = {"MinGRU": (MinGRU, "gru", 2), "MinLSTM": (MinLSTM, "lstm", 3)}


def contenders(I: int, H: int, with_log: bool) -> dict[str, nn.Module]:
    models = {
        "torch.nn.LSTM": nn.LSTM(I, H, batch_first=True),
        "torch.nn.GRU": nn.GRU(I, H, batch_first=True),
        "MinGRU": MinGRU(I, H),
        "MinLSTM": MinLSTM(I, H),
    }
    if with_log:  # the pure-torch log-space scan: the GPU path, for context
        models["MinGRU log"] = MinGRU(I, H, scan="log")
    return models


def measure_layers(shape, rounds: int, with_log: bool) -> list[dict]:
    B, T, I, H = shape
    x = torch.randn(B, T, I)
    models = contenders(I, H, with_log)
    rows = []
    for mode, make in (("train", train_step), ("infer", inference)):
        times = interleaved({name: make(m.train(mode == "train"), x) for name, m in models.items()}, rounds=rounds)
        for name in models:
            rows.append({"shape": f"{B},{T},{I},{H}", "mode": mode, "model": name, "ms": median_ms(times[name]),
                         "vs_LSTM": ratio(times, name, "torch.nn.LSTM"), "vs_GRU": ratio(times, name, "torch.nn.GRU")})
    return rows


def measure_split(shape, rounds: int) -> list[dict]:
    """The fused path with and without its numba kernels (replaced by no-ops): the difference is the kernels'
    time, the rest is the GEMMs and the glue around them (blocks, allocation, the Python loop)."""
    B, T, I, H = shape
    rows = []
    for name, (_, kind, n) in MIN.items():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, T, I, generator=g).requires_grad_()
        weight = (torch.randn(n * H, I, generator=g) / I ** 0.5).requires_grad_()
        bias = torch.zeros(n * H).requires_grad_()
        h0 = torch.zeros(B, H)

        def train():
            h, _ = min_scan(kind, x, weight, bias, h0)  # noqa: B023
            h.mean().backward()
            x.grad = weight.grad = bias.grad = None  # noqa: B023

        def infer():
            with torch.no_grad():
                min_scan(kind, x, weight, bias, h0)  # noqa: B023

        def without_kernels(fn):
            def run():
                _KERNELS[kind] = (_noop, _noop)  # noqa: B023
                try:
                    fn()
                finally:
                    _KERNELS[kind] = kernels  # noqa: B023
            return run

        kernels = _KERNELS[kind]
        times = interleaved({"train": train, "train GEMMs": without_kernels(train),
                             "infer": infer, "infer GEMMs": without_kernels(infer)}, rounds=rounds)
        for mode in ("train", "infer"):
            total, gemms = median_ms(times[mode]), median_ms(times[f"{mode} GEMMs"])
            rows.append({"shape": f"{B},{T},{I},{H}", "model": name, "mode": mode, "ms": total,
                         "GEMMs_ms": gemms, "kernels_ms": total - gemms, "GEMM_share": gemms / total})
    return rows


def _noop(*args) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (numba's kernels are serial)")
    parser.add_argument("--shapes", default="", help="indices into SHAPES, e.g. 0,3 (default: all five)")
    parser.add_argument("--quick", action="store_true", help="the target shape only, 5 rounds: a smoke run")
    parser.add_argument("--no-log", action="store_true", help="leave out the log-space scan (slow at long T)")
    args = parser.parse_args()
    setup_threads(args.threads)
    torch.manual_seed(0)
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES
    rounds = args.rounds
    if args.quick:
        shapes, rounds = SHAPES[:1], 5

    t0 = time.perf_counter()
    for cls in (MinGRU, MinLSTM):  # numba compiles or loads its cache here, outside every timing
        train_step(cls(4, 8), torch.randn(2, 3, 4))()
    first_call_s = time.perf_counter() - t0

    started = time.perf_counter()
    layer_rows, split_rows = [], []
    for shape in shapes:
        layer_rows += measure_layers(shape, rounds, with_log=not args.no_log)
        split_rows += measure_split(shape, rounds)
        print(f"done {shape}", flush=True)
    wall_s = time.perf_counter() - started
    path = write_json("min_rnn.json", {"rounds": rounds, "threads": args.threads, "numba": numba.__version__,
                                       "first_call_s": first_call_s, "wall_s": wall_s,
                                       "layers": layer_rows, "split": split_rows})
    print(f"\n{args.threads} thread(s), medians of {rounds} interleaved rounds; vs_X = median of time / time(X)")
    print(f"numba compile or cache load (first call): {first_call_s:.2f} s; measurements: {wall_s:.0f} s\n")
    print_table(layer_rows, ["shape", "mode", "model", "ms", "vs_LSTM", "vs_GRU"])
    print("\nwhere the fused path's time goes (min_scan alone; GEMMs_ms: the same with the kernels made no-ops):\n")
    print_table(split_rows, ["shape", "model", "mode", "ms", "GEMMs_ms", "kernels_ms", "GEMM_share"])
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()

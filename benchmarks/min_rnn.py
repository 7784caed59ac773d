"""minGRU / minLSTM against torch.nn.LSTM and torch.nn.GRU on the CPU: training step, inference, and where the time
goes.

Run by hand:  .venv/bin/python benchmarks/min_rnn.py [--rounds 15] [--threads 1] [--shapes 0,1] [--quick]
              [--against MODULE]  (e.g. git show <commit>:src/rnnlab/nn/_min_scan.py > benchmarks/old_min_scan.py,
                                   then --against old_min_scan: the same layers on that version, same rounds)

For each shape of benchmarks/layers.py (the issue's target (16, 1024, 128, 256) first), every contender runs in
the same process, interleaved (one run of each per round, order alternating), so that a noisy shared machine
slows them alike. Reported: the median time and the median over rounds of time / time(torch.nn.LSTM).
A training step is forward + backward of outputs.mean() with parameter gradients; inference is the forward
under torch.no_grad().

The split: the fused minGRU/minLSTM path (rnnlab.nn._min_scan.min_scan) is, block by block, a GEMM (k = x Wᵀ)
and a numba kernel (gates + scan) forward, and a GEMM (k again) and a numba kernel (the reverse scan) backward,
then two GEMMs (∂L/∂x = ∂L/∂k W, ∂L/∂W = ∂L/∂kᵀ x); each torch thread runs its own range of rows' blocks. It is
timed as it runs and against its matrix products alone (the blocks' GEMMs on the same ranges and threads, and the
two at the end; interleaved): the difference is the kernels' time and the glue's, so that where a target is missed
the table shows which is the limit. numba compiles (or loads its cache) before timing.
Writes benchmarks/results/min_rnn.json and prints two tables.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import time

import numba
import numpy as np
import torch
from torch import nn

from common import interleaved, median_ms, print_table, ratio, setup_threads, write_json
from layers import inference, train_step
from rnnlab.nn import _min_scan
from rnnlab.nn._gemm import linear, weight_grad
from rnnlab.nn._min_scan import min_scan
from rnnlab.nn._parallel import run_split
from rnnlab.nn._ukernel import pack_panels
from rnnlab.nn.min_rnn import MinGRU, MinLSTM

# benchmarks/layers.py's five shapes (B, T, I, H), the target first
SHAPES = [(16, 1024, 128, 256), (32, 100, 128, 256), (64, 200, 64, 128), (8, 500, 32, 64), (64, 100, 256, 512)]
MIN = {"MinGRU": (MinGRU, "gru", 2), "MinLSTM": (MinLSTM, "lstm", 3)}


class _Against(nn.Module):
    """A copy of a MinGRU/MinLSTM (same weights, its own parameters) whose forward runs another module's
    ``min_scan`` (``--against``)."""

    def __init__(self, model: nn.Module, scan):
        super().__init__()
        self.model, self.scan = copy.deepcopy(model), scan

    def forward(self, x):
        from rnnlab.nn import min_rnn

        ours, min_rnn.min_scan = min_rnn.min_scan, self.scan
        try:
            return self.model(x)
        finally:
            min_rnn.min_scan = ours


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


def measure_layers(shape, rounds: int, with_log: bool, against=None) -> list[dict]:
    """Every contender in the same rounds. With ``against``, MinGRU and MinLSTM also run in rounds of their own
    against their copies on the other min_scan (``vs_against``): measured at (8, 500, 32, 64), a minGRU inference
    right after a torch.nn.GRU or LSTM call takes 0.93-1.05 ms against 0.57 ms in back-to-back calls (no page
    faults: cold caches), so whichever layer follows torch.nn.GRU in the rounds would decide the comparison."""
    B, T, I, H = shape
    x = torch.randn(B, T, I)
    models = contenders(I, H, with_log)
    rows = []
    for mode, make in (("train", train_step), ("infer", inference)):
        times = interleaved({name: make(m.train(mode == "train"), x) for name, m in models.items()}, rounds=rounds)
        if against is not None:
            pairs = {}
            for name in MIN:
                pairs[name] = make(models[name].train(mode == "train"), x)
                pairs[f"{name} against"] = make(_Against(models[name], against).train(mode == "train"), x)
            paired = interleaved(pairs, rounds=rounds)
        for name in models:
            row = {"shape": f"{B},{T},{I},{H}", "mode": mode, "model": name, "ms": median_ms(times[name]),
                   "vs_LSTM": ratio(times, name, "torch.nn.LSTM"), "vs_GRU": ratio(times, name, "torch.nn.GRU")}
            if against is not None and name in MIN:
                row["against_ms"] = median_ms(paired[f"{name} against"])
                row["vs_against"] = ratio(paired, name, f"{name} against")
            rows.append(row)
    return rows


def measure_split(shape, rounds: int) -> list[dict]:
    """The fused path against its matrix products alone: the blocks' GEMMs (k = x Wᵀ on the micro-kernel, the same
    ranges of rows on the same threads, once forward and again in the backward) and, in training, the two GEMMs at
    the end (∂L/∂x, ∂L/∂W). The difference is the kernels' time (gates and scan) and the glue around them."""
    B, T, I, H = shape
    rows = []
    for name, (_, kind, n) in MIN.items():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, T, I, generator=g).requires_grad_()
        weight = (torch.randn(n * H, I, generator=g) / I ** 0.5).requires_grad_()
        bias = torch.zeros(n * H).requires_grad_()
        h0 = torch.zeros(B, H)
        dk = torch.randn(B * T, n * H, generator=g)

        def train():
            h, _ = min_scan(kind, x, weight, bias, h0)  # noqa: B023
            h.mean().backward()
            x.grad = weight.grad = bias.grad = None  # noqa: B023

        def infer():
            with torch.no_grad():
                min_scan(kind, x, weight, bias, h0)  # noqa: B023

        def block_gemms(width=n * H):
            X, Wp = x.detach().numpy(), pack_panels(weight.detach().numpy().T)  # noqa: B023
            run_split(_gemms_only, [(X, Wp, blocks, np.empty((_min_scan._block_values(blocks), width), X.dtype))
                                    for blocks in _min_scan._ranges(B, T, width, False)])

        def train_gemms():
            block_gemms()
            block_gemms()
            linear(dk, weight.detach().t().contiguous())  # noqa: B023
            weight_grad(dk, x.detach().reshape(B * T, I))  # noqa: B023

        times = interleaved({"train": train, "train GEMMs": train_gemms, "infer": infer, "infer GEMMs": block_gemms},
                            rounds=rounds)
        for mode in ("train", "infer"):
            total, gemms = median_ms(times[mode]), median_ms(times[f"{mode} GEMMs"])
            rows.append({"shape": f"{B},{T},{I},{H}", "model": name, "mode": mode, "ms": total,
                         "GEMMs_ms": gemms, "kernels_ms": total - gemms, "GEMM_share": gemms / total})
    return rows


@numba.njit(nogil=True)
def _gemms_only(x, Wp, blocks, K):
    """A range's block GEMMs of _min_scan._scan_rows, without the kernels."""
    lengths = np.full(x.shape[0], x.shape[1], dtype=np.int64)
    steps = np.empty(x.shape[0], dtype=np.int64)
    for i in range(blocks.shape[0]):
        _min_scan._block(x, Wp, lengths, blocks, i, K, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one range of rows each)")
    parser.add_argument("--shapes", default="", help="indices into SHAPES, e.g. 0,3 (default: all five)")
    parser.add_argument("--quick", action="store_true", help="the target shape only, 5 rounds: a smoke run")
    parser.add_argument("--no-log", action="store_true", help="leave out the log-space scan (slow at long T)")
    parser.add_argument("--against", default="",
                        help="a module with min_scan (e.g. an older _min_scan.py copied next to this file) whose "
                             "MinGRU/MinLSTM also run, same weights and rounds: vs_against = time now / time against")
    args = parser.parse_args()
    against = importlib.import_module(args.against).min_scan if args.against else None
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
        layer_rows += measure_layers(shape, rounds, with_log=not args.no_log, against=against)
        split_rows += measure_split(shape, rounds)
        print(f"done {shape}", flush=True)
    wall_s = time.perf_counter() - started
    path = write_json("min_rnn.json", {"rounds": rounds, "threads": args.threads, "numba": numba.__version__,
                                       "first_call_s": first_call_s, "wall_s": wall_s,
                                       "layers": layer_rows, "split": split_rows})
    print(f"\n{args.threads} thread(s), medians of {rounds} interleaved rounds; vs_X = median of time / time(X)")
    print(f"numba compile or cache load (first call): {first_call_s:.2f} s; measurements: {wall_s:.0f} s\n")
    print_table(layer_rows, ["shape", "mode", "model", "ms", "vs_LSTM", "vs_GRU"]
                + (["against_ms", "vs_against"] if against else []))
    print("\nwhere the fused path's time goes (min_scan alone; GEMMs_ms: its matrix products alone, same threads):\n")
    print_table(split_rows, ["shape", "model", "mode", "ms", "GEMMs_ms", "kernels_ms", "GEMM_share"])
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()

"""The batched streaming step (many independent sessions stepped together, ``no_grad``) against torch.nn's cells.

Run by hand:

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/batched_step.py --threads 1 [--rounds 9] [--batches 16,64,256]

For the LSTM and the GRU, 1 and 2 layers, at (I, H) = (64, 256) (the streaming case of peers.py) and the batches
given: ``steps`` steps of ``layer.step`` from a zero state, against a chain of torch.nn.LSTMCell/GRUCell and against
the same layer forced onto torch's cell kernel (``rnnlab.nn._fast_step.BATCHED_MIN_MACS`` raised for that call:
what the layer runs below the threshold). Interleaved rounds in one process, medians of the per-round ratios;
``speedup`` = time(torch.nn cells) / time(rnnlab step), ``vs_cell_kernel`` = time(cell kernel path) / time(rnnlab
step): above 1, the oneDNN + numba path pays at that size. ``us_step`` is rnnlab's time per step.
Writes benchmarks/results/batched_step.json (``--out``) and prints a table.

A before/after comparison of two versions of the code runs this script once per version (PYTHONPATH), alternating
processes: each run's ratios are to torch.nn measured in the same process.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CLOCKS, interleaved, print_table, setup_threads, write_json  # noqa: E402
from layers import streaming_contenders  # noqa: E402
from rnnlab.nn import _fast_step  # noqa: E402

GATES = {"LSTM": 4, "GRU": 3}


def _steps(B: int, I: int, H: int, G: int, layers: int) -> int:
    """Steps per timed call: about 20 ms of work (≈ 50 GMAC/s plus 20 µs a step), between 10 and 200."""
    macs = B * G * H * (I + H) * layers
    return int(min(200, max(10, 0.02 / (macs / 5e10 + 2e-5))))


def contenders(kind: str, B: int, I: int, H: int, layers: int, steps: int) -> dict:
    """layers.py's streaming contenders at B rows, and rnnlab's step forced onto torch's cell kernel."""
    torch.manual_seed(0)
    fns = streaming_contenders(kind, I, H, layers, steps, batch=B)

    def run_cell_kernel():
        threshold = _fast_step.BATCHED_MIN_MACS
        _fast_step.BATCHED_MIN_MACS = 1 << 62  # every step on torch's cell kernel
        try:
            fns["ours"]()
        finally:
            _fast_step.BATCHED_MIN_MACS = threshold

    return {"torch.nn cells": fns["torch"], "rnnlab step": fns["ours"], "rnnlab cell kernel": run_cell_kernel}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and cores)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per case")
    parser.add_argument("--batches", default="16,64,256", help="comma-separated batch sizes (sessions)")
    parser.add_argument("--shapes", default="64x256", help="comma-separated IxH, e.g. 64x256,256x1024")
    parser.add_argument("--kinds", default="GRU,LSTM", help="comma-separated: GRU, LSTM")
    parser.add_argument("--layers", default="1,2", help="comma-separated layer counts")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or this thread's CPU time (on a loaded machine)")
    parser.add_argument("--out", default="batched_step.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    setup_threads(args.threads)
    t0 = time.perf_counter()
    rows = []
    for shape in args.shapes.split(","):
        I, H = (int(v) for v in shape.split("x"))
        for kind in args.kinds.split(","):
            for layers in (int(v) for v in args.layers.split(",")):
                for B in (int(v) for v in args.batches.split(",")):
                    steps = _steps(B, I, H, GATES[kind], layers)
                    fns = contenders(kind, B, I, H, layers, steps)
                    t = interleaved(fns, rounds=args.rounds, clock=CLOCKS[args.clock])
                    ours = t["rnnlab step"]
                    rows.append({
                        "kind": kind, "layers": layers, "B": B, "I": I, "H": H, "steps": steps,
                        "us_step": 1e6 * statistics.median(ours) / steps,
                        "speedup": statistics.median(a / b for a, b in zip(t["torch.nn cells"], ours)),
                        "vs_cell_kernel": statistics.median(a / b for a, b in zip(t["rnnlab cell kernel"], ours)),
                        "macs": B * GATES[kind] * H * (I + H),
                    })
                    print(f"done {kind} L={layers} B={B} ({time.perf_counter() - t0:.0f} s)", flush=True)
    path = write_json(args.out, {"threads": args.threads, "rounds": args.rounds, "clock": args.clock,
                                 "threshold": _fast_step.BATCHED_MIN_MACS, "seconds": time.perf_counter() - t0,
                                 "rows": rows})
    print_table(rows, ["kind", "layers", "B", "I", "H", "steps", "macs", "us_step", "speedup", "vs_cell_kernel"])
    print(f"\n{time.perf_counter() - t0:.0f} s; written {path}")


if __name__ == "__main__":
    main()

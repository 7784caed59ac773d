"""The fused LSTM's element-wise step kernels alone (src/rnnlab/nn/fused_lstm.py: ``_infer_step``, ``_forward_step``,
``_backward_step``), at the per-step shapes (B, H) of the five layer shapes of benchmarks/layers.py, with and
without layer norm: µs per step and ns per element of the (B, 4H) pre-activation.

    cd benchmarks && OMP_NUM_THREADS=1 python lstm_kernels.py [--threads 1] [--rounds 15] [--clock cpu]
                                                              [--against MODULE]

The kernels' arrays are time-major, (steps, B, ...), as fused_lstm's training path (``--against`` needs a module
with the same signatures). The inputs stay in cache (8 steps of saved rows, reused), so this is the kernels'
arithmetic and loop overhead, not the memory traffic of a whole sequence (benchmarks/lstm_options.py --profile
splits a layer's time). ``--against`` names a module with the same kernels (e.g. a copy of an older fused_lstm.py
under src/rnnlab/nn/) to time both, interleaved, with the median of per-round ratios. Writes
benchmarks/results/lstm_kernels.json (``--out``).
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import statistics

import numpy as np
import torch

from common import CLOCKS, print_table, setup_threads, write_json
from layers import SHAPES
from rnnlab.nn import fused_lstm

STEPS = 8  # saved rows kept per array: 8 steps of (B, K), in cache


def make(B: int, H: int, ln: bool, rng) -> dict:
    """Every array the three kernels take, float32, for STEPS steps; lengths full except a quarter of the rows."""
    G = 4 * H
    f32 = np.float32
    P = np.concatenate([0.1 * rng.standard_normal(G), 1 + 0.1 * rng.standard_normal(2 * G),
                        1 + 0.1 * rng.standard_normal(H), 0.1 * rng.standard_normal(H)]).astype(f32)
    L = np.full(B, STEPS, np.int64)
    L[: B // 4] = STEPS // 2
    return dict(
        XP=rng.standard_normal((STEPS, B, G)).astype(f32), XT=rng.standard_normal((STEPS, B, G)).astype(f32),
        HP=rng.standard_normal((B, G)).astype(f32), P=P, M=np.ones((B, H), f32), L=L,
        ST=(0.1 * rng.standard_normal((2, B, H))).astype(f32), Y=np.zeros((STEPS, B, H), f32),
        YT=np.zeros((STEPS, B, H), f32), HM=np.zeros((STEPS, B, H), f32), HN=np.zeros((B, H), f32),
        SV=np.zeros((STEPS, B, fused_lstm._layout(G, H, ln)), f32), A=np.zeros(G, f32),
        SC=fused_lstm._scalars(1e-5, G, H, torch.float32), DY=rng.standard_normal((STEPS, B, H)).astype(f32),
        DHM=rng.standard_normal((B, H)).astype(f32), DXP=np.zeros((STEPS, B, G), f32),
        DHP=np.zeros((STEPS, B, G), f32),
        DS=rng.standard_normal((2, B, H)).astype(f32), ACC=np.zeros(3 * G + 2 * H), PART=np.zeros(3 * G + 2 * H, f32))


def rows_of(kernel, B: int) -> tuple:
    """The trailing row-range arguments of ``kernel`` for all B rows: (0, B), (0, B, 0) with the backward's ring
    offset, or none for a module from before the kernels took a range (``--against``)."""
    params = inspect.signature(kernel.py_func).parameters
    return () if "b0" not in params else (0, B, 0) if "rb" in params else (0, B)


def kernels(mod, d: dict, ln: bool) -> dict:
    """kernel name -> a call running it over STEPS steps."""
    B = d["HN"].shape[0]
    r_inf, r_fwd, r_bwd = (rows_of(k, B) for k in (mod._infer_step, mod._forward_step, mod._backward_step))

    def infer():
        for t in range(STEPS):
            mod._infer_step(t, t, d["XT"], d["HP"], d["P"], d["M"], d["L"], d["ST"], d["YT"], d["HN"], d["A"],
                            d["SC"], ln, *r_inf)

    def forward():
        for t in range(STEPS):
            mod._forward_step(t, d["XP"], d["HP"], d["P"], d["M"], d["L"], d["ST"], d["Y"], d["HM"], d["HN"],
                              d["SV"], d["SC"], ln, *r_fwd)

    def backward():
        for t in range(STEPS - 1, -1, -1):
            mod._backward_step(t, t, d["DY"], d["DHM"], d["P"], d["M"], d["L"], d["SV"], d["XP"], d["DXP"], d["DHP"],
                               d["DS"], d["ACC"], d["PART"], d["SC"], ln, *r_bwd)

    forward()  # the backward reads what the forward saved
    return {"infer": infer, "forward": forward, "backward": backward}


def measure(B: int, H: int, ln: bool, rounds: int, clock, against, *, module=fused_lstm, arrays=None,
            calls_of=None, width: int = 4) -> list[dict]:
    """The three kernels of ``module`` (and of ``against``), interleaved: µs per step and ns per element of a
    (B, width·H) row block. ``arrays(B, H, ln, rng)`` and ``calls_of(mod, arrays, ln)`` default to this file's
    :func:`make` and :func:`kernels` (gru_kernels.py passes its own)."""
    arrays, calls_of = arrays or make, calls_of or kernels
    mods = {"now": module} | ({"against": against} if against is not None else {})
    calls = {name: calls_of(mod, arrays(B, H, ln, np.random.default_rng(0)), ln) for name, mod in mods.items()}
    rows = []
    for kernel in ("infer", "forward", "backward"):
        times = {name: [] for name in mods}
        for _ in range(2):  # warm-up (and compilation)
            for name in mods:
                calls[name][kernel]()
        for r in range(rounds):
            for name in (list(mods) if r % 2 == 0 else list(mods)[::-1]):
                t0 = clock()
                calls[name][kernel]()
                times[name].append((clock() - t0) / STEPS)
        us = 1e6 * statistics.median(times["now"])
        row = {"B": B, "H": H, "ln": ln, "kernel": kernel, "us_per_step": us,
               "ns_per_element": 1e3 * us / (B * width * H)}
        if against is not None:
            row["against_us"] = 1e6 * statistics.median(times["against"])
            row["ratio"] = statistics.median(a / b for a, b in zip(times["now"], times["against"], strict=True))
        rows.append(row)
    return rows


def main(doc: str = __doc__, out: str = "lstm_kernels.json", rounds: int = 15, ln_first: bool = True,
         measure_one=measure) -> None:
    """The command line of this file and of gru_kernels.py (which passes its docstring, defaults and measure)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--against", default=None, help="module with the same kernels and signatures")
    parser.add_argument("--out", default=out, help="file name under benchmarks/results/")
    args = parser.parse_args()
    setup_threads(args.threads)
    against = importlib.import_module(args.against) if args.against else None
    shapes = sorted({(B, H) for B, _, _, H in SHAPES})
    rows = [row for B, H in shapes for ln in ((True, False) if ln_first else (False, True))
            for row in measure_one(B, H, ln, args.rounds, CLOCKS[args.clock], against)]
    path = write_json(args.out, {"threads": args.threads, "rounds": args.rounds, "clock": args.clock,
                                 "against": args.against, "rows": rows})
    columns = ["B", "H", "ln", "kernel", "us_per_step", "ns_per_element"] + (["against_us", "ratio"] if against else [])
    print_table(rows, columns)
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()

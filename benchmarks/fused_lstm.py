"""Benchmark: training step (forward + backward of y.sum()) of rnnlab's fused LSTM sequence kernel against
torch.nn.LSTM of the same size, on the CPU with two threads.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/fused_lstm.py [--repeats N] [--quick]

Methods are interleaved within each repeat (the machine is shared and noisy) and we report medians.
Writes benchmarks/results/fused_lstm.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from rnnlab.nn.fused_lstm import lstm_sequence, lstm_sequence_reference

SHAPES = [(32, 100, 128, 256), (64, 100, 256, 512), (8, 500, 32, 64), (64, 200, 64, 128), (16, 1024, 128, 256)]
TARGETS = {(32, 100, 128, 256), (64, 100, 256, 512)}
REFERENCE_SHAPE = (32, 100, 128, 256)  # the plain autograd loop, for context


def make_methods(B: int, T: int, I: int, H: int, *, with_reference: bool) -> dict:
    """Training-step closures for each method, on shared inputs and same-sized parameters."""
    torch.manual_seed(0)
    G = 4 * H
    torch_lstm = torch.nn.LSTM(I, H, batch_first=True)
    x = torch.randn(B, T, I, requires_grad=True)
    h0 = torch.zeros(B, H)
    c0 = torch.zeros(B, H)
    W_ih, W_hh, b_ih, b_hh = (p.detach().clone().requires_grad_() for p in torch_lstm.parameters())
    ln = dict(ln_ih=torch.ones(G, requires_grad=True), ln_hh=torch.ones(G, requires_grad=True),
              ln_c=(torch.ones(H, requires_grad=True), torch.zeros(H, requires_grad=True)))
    p = 0.25
    mask = torch.bernoulli(torch.full((B, H), 1 - p)) / (1 - p)  # (B, H), same at every step

    def torch_step():
        y, _ = torch_lstm(x)
        y.sum().backward()

    def fused(**kw):
        def step():
            y, _, _ = lstm_sequence(x, h0, c0, W_ih, W_hh, b_ih, b_hh, **kw)
            y.sum().backward()
        return step

    def reference_step():
        y, _, _ = lstm_sequence_reference(x, h0, c0, W_ih, W_hh, b_ih, b_hh, **ln)
        y.sum().backward()

    methods = {"torch.nn.LSTM": torch_step, "fused LN": fused(**ln), "fused mask": fused(mask=mask)}
    if with_reference:
        methods["reference loop LN"] = reference_step
    return methods


def time_interleaved(methods: dict, *, repeats: int, budget_s: float) -> dict:
    """Seconds per call, one list per method; each repeat runs every method once, in rotating order."""
    for fn in methods.values():  # warm-up (and numba compile on the first shape)
        fn()
    names = list(methods)
    times = {n: [] for n in names}
    start = time.perf_counter()
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            methods[n]()
            times[n].append(time.perf_counter() - t0)
        if r >= 4 and time.perf_counter() - start > budget_s:
            break
    return times


def summarize(times: dict, base: str) -> dict:
    """Median and min per method, and the ratio to ``base`` three ways: of medians, of mins, and the median of
    the per-repeat ratios (paired within a repeat, so it is the most robust to a shared machine's drifting load)."""
    out = {}
    for n, v in times.items():
        paired = statistics.median(a / b for a, b in zip(v, times[base]))
        out[n] = {"median_ms": 1e3 * statistics.median(v), "min_ms": 1e3 * min(v), "n": len(v),
                  "ratio_of_medians": statistics.median(v) / statistics.median(times[base]),
                  "ratio_of_mins": min(v) / min(times[base]), "ratio_paired": paired}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per shape at most")
    parser.add_argument("--quick", action="store_true", help="only the two target shapes")
    args = parser.parse_args()
    torch.set_num_threads(2)

    t0 = time.perf_counter()
    lstm_sequence(torch.zeros(1, 1, 1), None, None, torch.zeros(4, 1), torch.zeros(4, 1), None, None)
    first_call_s = time.perf_counter() - t0

    shapes = [s for s in SHAPES if s in TARGETS] if args.quick else SHAPES
    rows = []
    for shape in shapes:
        methods = make_methods(*shape, with_reference=shape == REFERENCE_SHAPE)
        res = summarize(time_interleaved(methods, repeats=args.repeats, budget_s=args.budget), "torch.nn.LSTM")
        for name, r in res.items():
            rows.append({"B,T,I,H": list(shape), "method": name, **r})

    print(f"first call (numba load/compile) {first_call_s:.2f} s")
    print(f"{'B,T,I,H':<20} {'method':<18} {'median ms':>10} {'min ms':>9} {'n':>3} "
          f"{'x torch (paired)':>17} {'(medians)':>10} {'(mins)':>7}")
    for r in rows:
        print(f"{str(tuple(r['B,T,I,H'])):<20} {r['method']:<18} {r['median_ms']:>10.2f} {r['min_ms']:>9.2f} {r['n']:>3} "
              f"{r['ratio_paired']:>17.2f} {r['ratio_of_medians']:>10.2f} {r['ratio_of_mins']:>7.2f}")
    out = Path(__file__).parent / "results" / "fused_lstm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
            "first_call_s": first_call_s, "step": "forward + backward of y.sum()"}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

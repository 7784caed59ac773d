"""Benchmark: training step (forward + backward of y.sum()) of rnnlab's fused LSTM sequence kernel against
torch.nn.LSTM of the same size, on the CPU with two threads.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/fused_lstm.py [--repeats N] [--quick]

Methods are interleaved (benchmarks/common.py: the machine is shared and noisy); we report medians and the
median of the per-round ratios to torch.nn.LSTM.
Writes benchmarks/results/fused_lstm.json and prints a table.
"""
from __future__ import annotations

import argparse
import time

import torch

from common import interleaved, median_ms, print_table, ratio, setup_threads, write_json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per shape")
    parser.add_argument("--quick", action="store_true", help="only the two target shapes")
    args = parser.parse_args()
    setup_threads(2)

    t0 = time.perf_counter()
    lstm_sequence(torch.zeros(1, 1, 1), None, None, torch.zeros(4, 1), torch.zeros(4, 1), None, None)
    first_call_s = time.perf_counter() - t0

    shapes = [s for s in SHAPES if s in TARGETS] if args.quick else SHAPES
    rows = []
    for shape in shapes:
        times = interleaved(make_methods(*shape, with_reference=shape == REFERENCE_SHAPE), rounds=args.repeats)
        rows += [{"shape": ",".join(map(str, shape)), "method": name, "ms": median_ms(ts), "min_ms": 1e3 * min(ts),
                  "ratio_vs_torch": ratio(times, name, "torch.nn.LSTM")} for name, ts in times.items()]
    path = write_json("fused_lstm.json", {"first_call_s": first_call_s, "step": "forward + backward of y.sum()",
                                          "repeats": args.repeats, "rows": rows})
    print(f"first call (numba load/compile) {first_call_s:.2f} s")
    print_table(rows, ["shape", "method", "ms", "min_ms", "ratio_vs_torch"])
    print(f"written {path}")


if __name__ == "__main__":
    main()

"""Benchmark: rnnlab's GRU (the auto choice, and the numba sequence kernel forced) against torch.nn.GRU, training
step and inference, at the five shapes of benchmarks/layers.py, on the CPU (two threads unless --threads).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fused_gru.py --threads 1 [--rounds N] [--shapes 0,3]
        [--modes train,infer]

A training step is forward + backward of outputs.mean() with parameter gradients; inference is the forward under
torch.no_grad(). Contenders run interleaved in one process (benchmarks/common.py); the ratio is the median of
per-round ratios time(contender) / time(torch.nn.GRU): below 1 is faster, 0.77 is 1.3x faster.
The layer-norm GRU (numba) is measured against the same torch.nn.GRU for context (torch has no such layer).
Writes benchmarks/results/fused_gru.json and prints a table.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from common import interleaved, median_ms, print_table, ratio, setup_threads, write_json
from layers import SHAPES, inference, train_step
from rnnlab.nn import GRU


def contenders(I: int, H: int, *, layer_norm: bool) -> dict[str, nn.Module]:
    torch_gru = nn.GRU(I, H, batch_first=True)
    ours = {"rnnlab GRU (auto)": GRU(I, H), "rnnlab GRU numba": GRU(I, H, impl="numba")}
    for m in ours.values():
        m.load_state_dict(torch_gru.state_dict())
    if layer_norm:
        ours["GRU layer_norm (numba)"] = GRU(I, H, layer_norm=True)
    return {"torch.nn.GRU": torch_gru, **ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds per measurement")
    parser.add_argument("--shapes", default="", help="indices into SHAPES, e.g. 0,3 (default: all five)")
    parser.add_argument("--modes", default="train,infer")
    parser.add_argument("--no-layer-norm", action="store_true", help="skip the layer-norm GRU row")
    parser.add_argument("--out", default="fused_gru.json", help="file name under benchmarks/results/")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads; 1 on a loaded machine (a 2-thread GEMM waits on a descheduled thread)")
    args = parser.parse_args()
    setup_threads(args.threads)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    GRU(1, 1, impl="numba")(torch.zeros(1, 1, 1))[0].sum().backward()  # numba: load (or compile) the kernels
    first_call_s = time.perf_counter() - t0

    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES
    rows = []
    for B, T, I, H in shapes:
        x = torch.randn(B, T, I)
        models = contenders(I, H, layer_norm=not args.no_layer_norm)
        for mode in args.modes.split(","):
            make = train_step if mode == "train" else inference
            fns = {name: make(m.train(mode == "train"), x) for name, m in models.items()}
            times = interleaved(fns, rounds=args.rounds)
            rows += [{"shape": f"{B},{T},{I},{H}", "mode": mode, "model": name, "ms": median_ms(times[name]),
                      "torch_ms": median_ms(times["torch.nn.GRU"]), "ratio": ratio(times, name, "torch.nn.GRU"),
                      "speedup": 1 / ratio(times, name, "torch.nn.GRU")}
                     for name in models if name != "torch.nn.GRU"]
        print(f"done {B},{T},{I},{H}", flush=True)
    path = write_json(args.out, {"first_call_s": first_call_s, "rounds": args.rounds, "rows": rows})
    print(f"first call (numba load/compile) {first_call_s:.2f} s")
    print_table(rows, ["shape", "mode", "model", "ms", "torch_ms", "ratio", "speedup"])
    print(f"written {path}")


if __name__ == "__main__":
    main()

"""Benchmark: rnnlab's Elman RNN (tanh) against torch.nn.RNN, training step and inference, at the five shapes of
benchmarks/layers.py, on the CPU with two threads: the auto choice, the numba sequence kernel forced, and the
options torch has no kernel for (layer norm, recurrent dropout p=0.25; numba), against the same torch.nn.RNN.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/fused_rnn.py [--rounds N] [--shapes 0,3] [--modes train,infer]

A training step is forward + backward of outputs.mean() with parameter gradients; inference is the forward under
torch.no_grad(). Contenders run interleaved in one process (benchmarks/common.py); the ratio is the median of
per-round ratios time(contender) / time(torch.nn.RNN): below 1 is faster. ``q1``/``q3`` are the quartiles of the
per-round ratios (how noisy the machine was); ``min_ratio`` is min(contender) / min(torch.nn.RNN), the ratio of the
least-disturbed runs, which a loaded machine distorts least. Writes benchmarks/results/fused_rnn.json and prints a
table.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from common import interleaved, median_ms, print_table, ratio, setup_threads, write_json
from layers import SHAPES, inference, train_step
from rnnlab.nn import RNN


def contenders(I: int, H: int, *, options: bool) -> dict[str, nn.Module]:
    torch_rnn = nn.RNN(I, H, batch_first=True)
    ours = {"rnnlab RNN (auto)": RNN(I, H), "rnnlab RNN numba": RNN(I, H, impl="numba")}
    for m in ours.values():
        m.load_state_dict(torch_rnn.state_dict())
    if options:
        ours["RNN layer_norm (numba)"] = RNN(I, H, layer_norm=True)
        ours["RNN recurrent_dropout (numba)"] = RNN(I, H, recurrent_dropout=0.25)
    return {"torch.nn.RNN": torch_rnn, **ours}


def quartiles(times: dict[str, list[float]], name: str, baseline: str) -> tuple[float, float]:
    q = statistics.quantiles([a / b for a, b in zip(times[name], times[baseline], strict=True)], n=4)
    return q[0], q[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds per measurement")
    parser.add_argument("--shapes", default="", help="indices into SHAPES, e.g. 0,3 (default: all five)")
    parser.add_argument("--modes", default="train,infer")
    parser.add_argument("--no-options", action="store_true", help="skip the layer-norm and dropout rows")
    parser.add_argument("--out", default="fused_rnn.json", help="file name under benchmarks/results/")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads; 1 on a machine so loaded that a 2-thread GEMM waits on a descheduled "
                             "thread")
    args = parser.parse_args()
    setup_threads(args.threads)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    RNN(1, 1, impl="numba")(torch.zeros(1, 1, 1))[0].sum().backward()  # numba: load (or compile) the kernels
    first_call_s = time.perf_counter() - t0

    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES
    rows = []
    for B, T, I, H in shapes:
        x = torch.randn(B, T, I)
        models = contenders(I, H, options=not args.no_options)
        for mode in args.modes.split(","):
            make = train_step if mode == "train" else inference
            fns = {name: make(m.train(mode == "train"), x) for name, m in models.items()}
            times = interleaved(fns, rounds=args.rounds)
            for name in models:
                if name == "torch.nn.RNN":
                    continue
                q1, q3 = quartiles(times, name, "torch.nn.RNN")
                r = ratio(times, name, "torch.nn.RNN")
                rows.append({"shape": f"{B},{T},{I},{H}", "mode": mode, "model": name, "ms": median_ms(times[name]),
                             "torch_ms": median_ms(times["torch.nn.RNN"]), "ratio": r, "q1": q1, "q3": q3,
                             "min_ratio": min(times[name]) / min(times["torch.nn.RNN"]), "speedup": 1 / r})
        print(f"done {B},{T},{I},{H}", flush=True)
    path = write_json(args.out, {"first_call_s": first_call_s, "rounds": args.rounds, "threads": args.threads,
                                 "rows": rows})
    print(f"first call (numba load/compile) {first_call_s:.2f} s")
    print_table(rows, ["shape", "mode", "model", "ms", "torch_ms", "ratio", "q1", "q3", "min_ratio", "speedup"])
    print(f"written {path}")


if __name__ == "__main__":
    main()

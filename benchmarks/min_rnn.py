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
import time

import numba
import torch
from torch import nn

from common import interleaved, median_ms, print_table, ratio, setup_threads, write_json
from rnnlab.nn.min_rnn import MinGRU, MinLSTM


def contenders(input_size: int, hidden_size: int) -> dict[str, nn.Module]:
    return {
        "torch.nn.LSTM": nn.LSTM(input_size, hidden_size, batch_first=True),
        "MinGRU numba": MinGRU(input_size, hidden_size, scan="numba"),
        "MinGRU log": MinGRU(input_size, hidden_size, scan="log"),
        "MinLSTM numba": MinLSTM(input_size, hidden_size, scan="numba"),
        "MinLSTM log": MinLSTM(input_size, hidden_size, scan="log"),
    }


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    outputs, _ = model(x)
    outputs.mean().backward()


@torch.no_grad()
def infer(model: nn.Module, x: torch.Tensor) -> None:
    model(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--shape", type=int, nargs=4, default=[16, 1024, 128, 256], metavar=("B", "T", "I", "H"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    setup_threads(args.threads)
    torch.manual_seed(0)
    B, T, I, H = args.shape
    models = contenders(I, H)
    x = torch.randn(B, T, I)

    t0 = time.perf_counter()
    train_step(models["MinGRU numba"], x)  # numba compiles or loads its cache here
    first_call_s = time.perf_counter() - t0

    rows = []
    for mode, run in (("train", train_step), ("infer", infer)):
        times = interleaved({name: (lambda m=m, run=run: run(m, x)) for name, m in models.items()}, rounds=args.repeats)
        rows += [{"model": name, "mode": mode, "ms": median_ms(ts),
                  "ratio_vs_lstm": ratio(times, name, "torch.nn.LSTM")}
                 for name, ts in times.items()]
    path = write_json("min_rnn.json", {"shape": {"B": B, "T": T, "I": I, "H": H}, "repeats": args.repeats,
                                       "numba_threads": numba.get_num_threads(), "numba": numba.__version__,
                                       "first_fused_train_step_s": first_call_s, "rows": rows})
    print(f"(B, T, I, H) = {tuple(args.shape)}, {args.threads} threads, medians of {args.repeats} interleaved rounds")
    print(f"first fused training step (numba compile or cache load): {first_call_s:.2f} s")
    print_table(rows, ["model", "mode", "ms", "ratio_vs_lstm"])
    print(f"written {path}")


if __name__ == "__main__":
    main()

"""A/B of the matrix-product backend of the fused LSTM (rnnlab.nn._gemm): MKL (``a @ w.T``, as before) against
oneDNN, for the layer-norm and recurrent-dropout LSTM, as ratios to torch.nn.LSTM, interleaved in one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gemm_backend.py [--threads 1] [--rounds 11]

Prints one line per (shape, option, mode): the ratio before (MKL) and after (oneDNN); below 1 is faster than
torch.nn.LSTM.
"""
from __future__ import annotations

import argparse

import torch

from common import interleaved, ratio, setup_threads
from layers import SHAPES, inference, train_step
from rnnlab.nn import LSTM, _gemm


def toggled(fn, onednn: bool):
    """``fn`` run with the oneDNN products switched on or off."""

    def run():
        _gemm._ONEDNN = onednn
        try:
            fn()
        finally:
            _gemm._ONEDNN = True

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    setup_threads(args.threads)
    torch.manual_seed(0)
    for i in (0, 3):
        B, T, I, H = SHAPES[i]
        x = torch.randn(B, T, I)
        ref = torch.nn.LSTM(I, H, batch_first=True)
        for option in ({"layer_norm": True}, {"recurrent_dropout": 0.25}):
            model = LSTM(I, H, **option)
            for mode, make in (("train", train_step), ("infer", inference)):
                model.train(mode == "train")
                ref.train(mode == "train")
                ours = make(model, x)
                runs = {"torch": make(ref, x), "mkl": toggled(ours, False), "onednn": toggled(ours, True)}
                times = interleaved(runs, rounds=args.rounds)
                print(f"{SHAPES[i]} {next(iter(option))} {mode}: before (MKL) {ratio(times, 'mkl', 'torch'):.2f} "
                      f"after (oneDNN) {ratio(times, 'onednn', 'torch'):.2f}", flush=True)


if __name__ == "__main__":
    main()

"""Where the time of a layer-norm / recurrent-dropout LSTM training step goes (numba kernel path), against
torch.nn.LSTM: matrix products (the hoisted input GEMM, the T recurrent ``torch.mm`` of the forward and of the
backward, the three weight/input-gradient GEMMs at the end) vs the numba element-wise kernels vs the rest
(Python loop, dispatch, LN of x̂, allocations, autograd).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/profile_fused_lstm.py [--rounds 11] [--shapes 0,3]

The per-step calls are timed by wrapping ``torch.mm`` and the two kernels (a wrapper costs ~0.3 µs a call);
the end GEMMs and the input GEMM + LN are timed alone at the same shapes. Medians over rounds, interleaved with
torch.nn.LSTM (benchmarks/common.py). Writes benchmarks/results/profile_fused_lstm.json.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch

from common import print_table, setup_threads, write_json
from layers import SHAPES
from rnnlab.nn import LSTM, fused_lstm
from rnnlab.nn._torch_kernels import native_layer_norm

_clock = defaultdict(float)


def timed(fn, key):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        _clock[key] += time.perf_counter() - t0
        return out
    return wrapper


def end_gemms(B, T, I, H):
    """The input GEMM + LN of x̂ (forward) and the three GEMMs at the end of the backward, alone."""
    G = 4 * H
    x, W_ih = torch.randn(B * T, I), torch.randn(G, I)
    DXP, DHP, HM = torch.randn(B * T, G), torch.randn(B * T, G), torch.randn(B * T, H)
    t0 = time.perf_counter()
    XP = x @ W_ih.t()
    native_layer_norm(XP, [G], None, None, 1e-5)
    t1 = time.perf_counter()
    DXP @ W_ih
    DXP.t() @ x
    DHP.t() @ HM
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--shapes", default="0,3")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads; 1 on a machine so loaded that a 2-thread GEMM waits on a descheduled "
                             "thread")
    args = parser.parse_args()
    setup_threads(args.threads)
    torch.manual_seed(0)
    fused_lstm._forward_step = timed(fused_lstm._forward_step, "k_fwd")
    fused_lstm._backward_step = timed(fused_lstm._backward_step, "k_bwd")
    real_mm = torch.mm
    rows = []
    for i in args.shapes.split(","):
        B, T, I, H = SHAPES[int(i)]
        x = torch.randn(B, T, I)
        ref = torch.nn.LSTM(I, H, batch_first=True)
        for option in ({"layer_norm": True}, {"recurrent_dropout": 0.25}):
            layer = LSTM(I, H, **option).train()
            samples = defaultdict(list)
            for r in range(args.rounds + 2):
                # the recurrent products are the only torch.mm calls in the step; forward and backward told apart
                torch.mm = timed(real_mm, "mm_fwd")
                try:
                    t0 = time.perf_counter()
                    y, _ = layer(x)
                    fwd = time.perf_counter() - t0
                    torch.mm = timed(real_mm, "mm_bwd")
                    t0 = time.perf_counter()
                    y.mean().backward()
                    bwd = time.perf_counter() - t0
                finally:
                    torch.mm = real_mm
                layer.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                yr, _ = ref(x)
                yr.mean().backward()
                tref = time.perf_counter() - t0
                ref.zero_grad(set_to_none=True)
                gin, gend = end_gemms(B, T, I, H)
                if r >= 2:  # warm-up
                    for k, v in {"total": fwd + bwd, "forward": fwd, "backward": bwd, "torch.nn.LSTM": tref,
                                 "gemm_input+LN": gin, "gemm_recurrent_fwd": _clock["mm_fwd"],
                                 "gemm_recurrent_bwd": _clock["mm_bwd"], "gemm_end": gend,
                                 "kernel_fwd": _clock["k_fwd"], "kernel_bwd": _clock["k_bwd"]}.items():
                        samples[k].append(v)
                    samples["ratio"].append((fwd + bwd) / tref)
                _clock.clear()
            med = {k: statistics.median(v) for k, v in samples.items()}
            gemm = med["gemm_input+LN"] + med["gemm_recurrent_fwd"] + med["gemm_recurrent_bwd"] + med["gemm_end"]
            kern = med["kernel_fwd"] + med["kernel_bwd"]
            rows.append({"shape": f"{B},{T},{I},{H}", "option": next(iter(option)), "ratio": med["ratio"],
                         "total_ms": 1e3 * med["total"], "torch_ms": 1e3 * med["torch.nn.LSTM"],
                         "gemm_ms": 1e3 * gemm, "kernel_ms": 1e3 * kern,
                         "rest_ms": 1e3 * (med["total"] - gemm - kern),
                         **{f"{k}_ms": 1e3 * v for k, v in med.items() if k not in ("ratio",)}})
            print(f"done {B},{T},{I},{H} {option}", flush=True)
    write_json("profile_fused_lstm.json", {"rounds": args.rounds, "threads": args.threads, "rows": rows})
    print_table(rows, ["shape", "option", "ratio", "total_ms", "torch_ms", "gemm_ms", "kernel_ms", "rest_ms",
                       "gemm_recurrent_fwd_ms", "gemm_recurrent_bwd_ms", "gemm_end_ms", "gemm_input+LN_ms",
                       "kernel_fwd_ms", "kernel_bwd_ms"])


if __name__ == "__main__":
    main()

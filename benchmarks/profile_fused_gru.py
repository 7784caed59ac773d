"""Where the time of rnnlab's GRU (the numba sequence kernel, plain options) goes, training step and inference,
against torch.nn.GRU at the five shapes of benchmarks/layers.py.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_fused_gru.py --threads 1 [--rounds 7] [--shapes 0,3] [--mkl]

Columns (ms, medians over rounds): ``input`` the input product x W_ihᵀ for all steps with its buffers
(``sequence_buffers``); ``rec_fwd`` / ``rec_bwd`` the T per-step recurrent products h W_hhᵀ and DHP_t W_hh;
``kern_fwd`` / ``kern_bwd`` the numba element-wise kernels; ``end`` dx, dW_ih, dW_hh after the loop; ``rest``
everything else (the Python loop, tensor<->numpy conversions, dispatch, allocations, autograd), also per step
(``rest_us_step``). ``gemm_share`` = the products' share of our time; ``floor`` = our products alone / torch.nn.GRU,
the ratio left if everything but the products cost nothing. A small layer (rnnlab.nn._gemm.numba_splits: with one
thread all but (64, 100, 256, 512)) runs its time loops in one numba call each, products included: all of it is
``kern_fwd`` and ``kern_bwd`` (the wall time of ``run_split``: with more threads, every range's loop at once).
The calls are timed by wrapping the module's
functions (a wrapper costs about 0.3 µs a call). torch.nn.GRU runs in the same rounds. Writes
benchmarks/results/profile_fused_gru.json (profile_fused_gru_mkl.json with --mkl).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch

from common import print_table, setup_threads, write_json
from layers import SHAPES
from rnnlab.nn import GRU, _gemm, fused_gru

_clock: dict[str, float] = defaultdict(float)
_phase = ["fwd"]  # which pass the recurrent products belong to


def timed(fn, key: str, *, phased: bool = False):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        _clock[f"{key}_{_phase[0]}" if phased else key] += time.perf_counter() - t0
        return out

    return wrapper


def instrument() -> None:
    fused_gru.sequence_buffers = timed(fused_gru.sequence_buffers, "input")
    make_product = fused_gru.step_product
    fused_gru.step_product = lambda w, rows: timed(make_product(w, rows), "rec", phased=True)
    fused_gru._forward_step = timed(fused_gru._forward_step, "kern_fwd")
    fused_gru.run_split = timed(fused_gru.run_split, "kern", phased=True)  # small layers' whole loops, all ranges
    fused_gru.linear_into = timed(fused_gru.linear_into, "input")  # inference of a larger layer: x̂ of all steps
    fused_gru._infer_step = timed(fused_gru._infer_step, "kern_fwd")
    fused_gru._backward_step = timed(fused_gru._backward_step, "kern_bwd")
    fused_gru.input_and_weight_grads = timed(fused_gru.input_and_weight_grads, "end")


def one_round(layer, ref, x, mode: str) -> dict[str, float]:
    _clock.clear()
    if mode == "train":
        _phase[0] = "fwd"
        t0 = time.perf_counter()
        y, _ = layer(x)
        t1 = time.perf_counter()
        _phase[0] = "bwd"
        y.mean().backward()
        t2 = time.perf_counter()
        layer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        yr, _ = ref(x)
        yr.mean().backward()
        t4 = time.perf_counter()
        ref.zero_grad(set_to_none=True)
        out = {"total": t2 - t0, "forward": t1 - t0, "backward": t2 - t1, "torch": t4 - t3}
    else:
        _phase[0] = "fwd"
        with torch.no_grad():
            t0 = time.perf_counter()
            layer(x)
            t1 = time.perf_counter()
            ref(x)
            t2 = time.perf_counter()
        out = {"total": t1 - t0, "forward": t1 - t0, "backward": 0.0, "torch": t2 - t1}
    return {**out, **_clock}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--shapes", default="", help="indices into SHAPES, e.g. 0,3 (default: all five)")
    parser.add_argument("--modes", default="train,infer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mkl", action="store_true",
                        help="every product on torch.mm (MKL), as before rnnlab.nn._gemm moved them to oneDNN")
    args = parser.parse_args()
    setup_threads(args.threads)
    _gemm._ONEDNN = not args.mkl
    torch.manual_seed(0)
    # compile (or load) the numba loops before their callees are wrapped in Python timers, which numba cannot call
    warm = GRU(4, 4, impl="numba")
    warm(torch.zeros(2, 3, 4))[0].sum().backward()
    with torch.no_grad():
        warm(torch.zeros(2, 3, 4))
    instrument()
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES
    rows = []
    for B, T, I, H in shapes:
        x = torch.randn(B, T, I)
        ref = torch.nn.GRU(I, H, batch_first=True)
        layer = GRU(I, H, impl="numba")
        layer.load_state_dict(ref.state_dict())
        for mode in args.modes.split(","):
            layer.train(mode == "train")
            ref.train(mode == "train")
            samples = defaultdict(list)
            for r in range(args.rounds + 2):
                got = one_round(layer, ref, x, mode)
                if r >= 2:  # warm-up
                    for k in ("total", "forward", "backward", "torch", "input", "rec_fwd", "rec_bwd", "kern_fwd",
                              "kern_bwd", "end"):
                        samples[k].append(got.get(k, 0.0))
                    samples["ratio"].append(got["total"] / got["torch"])
            med = {k: statistics.median(v) for k, v in samples.items()}
            gemm = med["input"] + med["rec_fwd"] + med["rec_bwd"] + med["end"]
            kern = med["kern_fwd"] + med["kern_bwd"]
            rest = med["total"] - gemm - kern
            steps = T * (2 if mode == "train" else 1)
            rows.append({"shape": f"{B},{T},{I},{H}", "mode": mode, "ratio": med["ratio"],
                         "ours_ms": 1e3 * med["total"], "torch_ms": 1e3 * med["torch"],
                         **{f"{k}_ms": 1e3 * med[k] for k in ("input", "rec_fwd", "rec_bwd", "end", "kern_fwd",
                                                              "kern_bwd")},
                         "rest_ms": 1e3 * rest, "rest_us_step": 1e6 * rest / steps,
                         "gemm_share": gemm / med["total"], "floor": gemm / med["torch"]})
            print(f"done {B},{T},{I},{H} {mode}", flush=True)
    name = "profile_fused_gru_mkl.json" if args.mkl else "profile_fused_gru.json"
    path = write_json(name, {"rounds": args.rounds, "threads": args.threads, "mkl": args.mkl, "rows": rows})
    print_table(rows, ["shape", "mode", "ratio", "ours_ms", "torch_ms", "input_ms", "rec_fwd_ms", "rec_bwd_ms",
                       "end_ms", "kern_fwd_ms", "kern_bwd_ms", "rest_ms", "rest_us_step", "gemm_share", "floor"])
    print(f"written {path}")


if __name__ == "__main__":
    main()

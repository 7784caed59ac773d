"""The layer-norm and recurrent-dropout LSTM (rnnlab's fused numba/oneDNN path) against torch.nn.LSTM, and where
their time goes.

    cd benchmarks && OMP_NUM_THREADS=1 python lstm_options.py [--threads 1] [--rounds 11] [--shapes 0,1,2,3,4]
                                                              [--profile] [--clock cpu] [--against MODULE]

Ratios: time rnnlab / time torch.nn.LSTM of the same size, a training step (forward + backward of y.mean() with
parameter gradients) and inference (forward under no_grad), interleaved in one process, median of per-round
ratios (benchmarks/common.py). Targets (issue 12): training <= 1.2, inference <= 1.5.

``--profile`` also splits one training step and one inference call of each option into: the input product
(x W_ihᵀ, and its layer norm), the per-step recurrent products (forward and backward), the per-step numba
kernels, the products at the end of the backward pass (dx, dW_ih, dW_hh), and the rest (Python per step,
dispatch, allocation, autograd), by wrapping the module's functions with timers (~0.3 µs a call, included).
Where the whole loop runs in one numba call (small shapes) products and kernels are one figure ("loop"), and at
the smallest shape the weight gradients (and dx) are in the backward loop too. ``--clock cpu`` times this thread's
CPU time instead of wall time. ``--against MODULE`` also runs the same layers on another module's
``lstm_sequence`` (e.g. the fused_lstm.py of an older commit copied to benchmarks/, its relative imports made
absolute) in the same rounds: ``vs_against`` = median of per-round ratios time now / time against.
Writes benchmarks/results/lstm_options.json (``--out``) and prints tables.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time
from collections import defaultdict

import torch

from common import CLOCKS, interleaved, median_ms, print_table, ratio, setup_threads, write_json
from layers import SHAPES, inference, train_step
from rnnlab.nn import LSTM, fused_lstm

OPTIONS = {"layer_norm": {"layer_norm": True}, "recurrent_dropout": {"recurrent_dropout": 0.25}}


def swapped(fn, against):
    """fn run with ``against.lstm_sequence`` in place of fused_lstm's (rnnlab.nn.recurrent looks it up per call)."""
    def run():
        own = fused_lstm.lstm_sequence
        fused_lstm.lstm_sequence = against.lstm_sequence
        try:
            fn()
        finally:
            fused_lstm.lstm_sequence = own
    return run


def compare(shape, rounds: int, against=None, clock=time.perf_counter) -> list[dict]:
    """Each option against torch.nn.LSTM; with ``against`` (a module with ``lstm_sequence``, e.g. a copy of an older
    fused_lstm.py), the same layers on that module's kernels too, in the same rounds: ``against_ms``, and
    ``vs_against``, the median of per-round ratios time now / time against."""
    B, T, I, H = shape
    x = torch.randn(B, T, I)
    models = {"torch.nn.LSTM": torch.nn.LSTM(I, H, batch_first=True)}
    models.update({name: LSTM(I, H, **kw) for name, kw in OPTIONS.items()})
    rows = []
    for mode, make in (("train", train_step), ("infer", inference)):
        fns = {name: make(m.train(mode == "train"), x) for name, m in models.items()}
        if against is not None:
            fns.update({f"{name}@against": swapped(fns[name], against) for name in OPTIONS})
        times = interleaved(fns, rounds=rounds, clock=clock)
        for name in OPTIONS:
            row = {"shape": f"{B},{T},{I},{H}", "mode": mode, "option": name, "ms": median_ms(times[name]),
                   "torch_ms": median_ms(times["torch.nn.LSTM"]), "ratio": ratio(times, name, "torch.nn.LSTM")}
            if against is not None:
                row.update(against_ms=median_ms(times[f"{name}@against"]),
                           against_ratio=ratio(times, f"{name}@against", "torch.nn.LSTM"),
                           vs_against=ratio(times, name, f"{name}@against"))
            rows.append(row)
    return rows


# ---- profile: timers around the module-level functions that fused_lstm calls --------------------------------

_clock: dict[str, float] = defaultdict(float)
_PHASE = ["fwd"]


def _timed(fn, key: str, phased: bool = True):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        _clock[f"{key}_{_PHASE[0]}" if phased else key] += time.perf_counter() - t0
        return out
    return wrapper


def _install_timers() -> dict:
    saved = {name: getattr(fused_lstm, name) for name in
             ("linear", "linear_packed", "_forward_step", "_backward_step", "run_split", "_infer_step",
              "_time_major_buffers", "pack")}
    fused_lstm.linear_packed = _timed(saved["linear_packed"], "product_recurrent")
    fused_lstm._forward_step = _timed(saved["_forward_step"], "kernel")
    fused_lstm._backward_step = _timed(saved["_backward_step"], "kernel")
    fused_lstm._infer_step = _timed(saved["_infer_step"], "kernel")
    fused_lstm.run_split = _timed(saved["run_split"], "loop")  # the whole loops, on every thread's range of rows
    fused_lstm._time_major_buffers = _timed(saved["_time_major_buffers"], "input_product", phased=False)
    fused_lstm.linear = _timed(saved["linear"], "linear")  # forward: inside _time_major_buffers; backward: dx
    fused_lstm.pack = _timed(saved["pack"], "pack", phased=False)
    return saved


def profile(shape, rounds: int) -> list[dict]:
    """Median split of one training step and one inference call of each option at ``shape``."""
    B, T, I, H = shape
    x = torch.randn(B, T, I)
    rows = []
    ref = torch.nn.LSTM(I, H, batch_first=True)
    for kw in OPTIONS.values():  # compile the kernels first: a numba loop cannot call the timed (Python) wrappers
        warm = LSTM(I, H, **kw)
        for mode in ("train", "infer"):
            (train_step if mode == "train" else inference)(warm.train(mode == "train"), x[:, :2])()
    saved = _install_timers()
    real_matmul = torch.Tensor.__matmul__
    try:
        for name, kw in OPTIONS.items():
            layer = LSTM(I, H, **kw)
            for mode in ("train", "infer"):
                layer.train(mode == "train")
                ref.train(mode == "train")
                torch_run = (train_step if mode == "train" else inference)(ref, x)
                samples = defaultdict(list)
                for r in range(rounds + 1):
                    t0 = time.perf_counter()
                    torch_run()
                    if r:  # round 0 warms up
                        samples["torch"].append(time.perf_counter() - t0)
                    _clock.clear()
                    _PHASE[0] = "fwd"
                    t0 = time.perf_counter()
                    if mode == "train":
                        layer.zero_grad(set_to_none=True)
                        y, _ = layer(x)
                        t1 = time.perf_counter()
                        _PHASE[0] = "bwd"
                        torch.Tensor.__matmul__ = _timed(real_matmul, "end_products", phased=False)  # dW_ih, dW_hh
                        try:
                            y.mean().backward()
                        finally:
                            torch.Tensor.__matmul__ = real_matmul
                    else:
                        with torch.no_grad():
                            layer(x)
                        t1 = time.perf_counter()
                    total = time.perf_counter() - t0
                    if r == 0:
                        continue  # warm-up
                    parts = dict(_clock)
                    linear_fwd = parts.pop("linear_fwd", 0.0)  # training: nested in _time_major_buffers (input_product)
                    if "input_product" not in parts:  # inference: x̂ chunk by chunk, directly
                        parts["input_product"] = linear_fwd
                    parts["end_products"] = parts.get("end_products", 0.0) + parts.pop("linear_bwd", 0.0)
                    samples["total"].append(total)
                    samples["forward"].append(t1 - t0)
                    for k, v in parts.items():
                        samples[k].append(v)
                    samples["rest"].append(total - sum(parts.values()))
                med = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
                gemm = sum(med.get(k, 0.0) for k in ("input_product", "product_recurrent_fwd",
                                                     "product_recurrent_bwd", "end_products"))
                elementwise = med.get("kernel_fwd", 0.0) + med.get("kernel_bwd", 0.0)
                rows.append({"shape": f"{B},{T},{I},{H}", "option": name, "mode": mode,
                             **{f"{k}_ms": v for k, v in med.items()},
                             "gemm_ms": gemm, "elementwise_ms": elementwise,
                             "rest_us_per_step": 1e3 * med["rest"] / T})
    finally:
        for k, v in saved.items():
            setattr(fused_lstm, k, v)
    return rows


PROFILE_COLUMNS = ["shape", "option", "mode", "torch_ms", "total_ms", "gemm_ms", "elementwise_ms", "input_product_ms",
                   "product_recurrent_fwd_ms",
                   "kernel_fwd_ms", "product_recurrent_bwd_ms", "kernel_bwd_ms", "loop_fwd_ms", "loop_bwd_ms",
                   "end_products_ms", "pack_ms", "rest_ms", "rest_us_per_step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--shapes", default="0,1,2,3,4", help="indices into layers.SHAPES")
    parser.add_argument("--profile", action="store_true", help="also split the time (see above)")
    parser.add_argument("--no-compare", action="store_true", help="only the profile")
    parser.add_argument("--out", default="lstm_options.json", help="file name under benchmarks/results/")
    parser.add_argument("--against", default=None,
                        help="module with lstm_sequence to time as well (e.g. a copy of an older fused_lstm.py)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu: this thread's CPU time (leaves out the time other processes held the core)")
    args = parser.parse_args()
    against = importlib.import_module(args.against) if args.against else None
    setup_threads(args.threads)
    torch.manual_seed(0)
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")]
    rows, prof = [], []
    t0 = time.perf_counter()
    for shape in shapes:
        if not args.no_compare:
            rows += compare(shape, args.rounds, against, CLOCKS[args.clock])
        if args.profile:
            prof += profile(shape, max(3, args.rounds // 2))
        print(f"done {shape} ({time.perf_counter() - t0:.0f} s)", flush=True)
    path = write_json(args.out, {"threads": args.threads, "rounds": args.rounds, "clock": args.clock,
                                 "against": args.against, "rows": rows, "profile": prof})
    if rows:
        extra = ["against_ms", "against_ratio", "vs_against"] if against is not None else []
        print_table(rows, ["shape", "mode", "option", "ms", "torch_ms", "ratio"] + extra)
    if prof:
        print()
        print_table(prof, PROFILE_COLUMNS)
    print(f"\nwritten {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""The per-step recurrent product of the numba time loops: rnnlab.nn._ukernel's register-blocked micro-GEMM against
the plain numba loops it replaced and against oneDNN/MKL called once per product; then, with ``--thresholds``,
whole layers with the loop over time in one numba call against per-step oneDNN/MKL calls from Python, the
measurement behind ``fused_lstm._WHOLE_LOOP_MAX`` and ``_gemm.NUMBA_MAX_MACS``.

    cd benchmarks && OMP_NUM_THREADS=1 python ukernel.py [--threads 1] [--rounds 11] [--clock wall|cpu]
                                                         [--thresholds] [--only-thresholds]

Products: float32, at the per-step shapes of the five layer shapes of benchmarks/layers.py, (B, T, I, H) ->
LSTM forward (B, H) x (H, 4H), LSTM backward (B, 4H) x (4H, H), GRU forward (B, H) x (H, 3H). Contenders:
``ukernel`` (matmul_packed on W packed once), ``numba _matmul`` (``matmul_8rows`` below: fused_lstm's plain loop
before the micro-kernel, 8 rows of W per pass), ``step_product_numba`` (``axpy_product`` below: the GRU/RNN loops'
axpy per k before it), ``oneDNN packed`` (``_gemm.linear_packed``, the per-step product of
mid-size layers, a Python call each), ``torch.mm`` (MKL, into one buffer, a Python call each). The numba ones run
``reps`` products inside one jitted loop, so their figure is the product alone; the other two include their call
from Python, as the per-step drivers pay it. Interleaved rounds (common.py), median µs per product, GFLOP/s,
and the median per-round ratio to ``ukernel``.

Thresholds: a layer forward+backward (train) and forward under no_grad (infer), T = 50, the same weights, with the
whole-loop path forced on (threshold huge) and off (threshold -1), interleaved; ratio = loop / per-step: below 1
the loop pays. LSTM with layer norm (fused_lstm), GRU and RNN (fused_gru, fused_rnn). With ``--threads 2`` on a
quiet machine this measures the limits for more than one thread (``*_THREADED``), not re-measured here.
Writes benchmarks/results/ukernel.json (``--out``) and prints tables.
"""
from __future__ import annotations

import argparse
import statistics

import numba
import numpy as np
import torch

from common import CLOCKS, interleaved, median_ms, print_table, ratio, setup_threads, write_json
from layers import SHAPES, inference, train_step
from rnnlab.nn import GRU, LSTM, RNN, _gemm, fused_lstm
from rnnlab.nn._ukernel import matmul_packed, pack_panels

# The two numba products the time loops ran before rnnlab.nn._ukernel, kept here as baselines.
_JIT = dict(cache=True, fastmath=True, error_model="numpy", nogil=True)  # as the sequence kernels'


@numba.njit(inline="always", **_JIT)
def matmul_8rows(A, W, out):
    """out = A @ W: A (M, K) with contiguous rows, W (K, N), out (M, N) C-contiguous rows. The plain numba product
    that fused_lstm's time loops ran before the micro-kernel (a baseline here).
    The inner loop runs over contiguous rows of W, so it vectorises; eight rows of W per pass over a row of out
    cut the loads and stores of out eightfold (they, not the multiply-adds, bound the plain loop). Those eight rows
    of W serve every row of out before the next eight are read: W (up to 4 MB) is read once per product, from L2,
    instead of once per row of A (measured, one thread: (8, 64) x (64, 256) 5.8 -> 4.0-4.6 µs, (8, 256) x (256, 64)
    7.0 -> 5.4 µs, (16, 64) x (64, 256) 19 -> 8-12 µs; (64, 32) x (32, 128) within noise). Rows of out are not
    paired in one inner loop: two rows of one array there stop LLVM vectorising it (5x slower, measured)."""
    M, K = A.shape
    N = W.shape[1]
    K8 = K - K % 8
    for r in range(M):
        o = out[r]
        for n in range(N):
            o[n] = np.float32(0.0) * o[n]
    for k in range(0, K8, 8):
        w0, w1, w2, w3 = W[k], W[k + 1], W[k + 2], W[k + 3]
        w4, w5, w6, w7 = W[k + 4], W[k + 5], W[k + 6], W[k + 7]
        for r in range(M):
            o = out[r]
            a = A[r]
            v0, v1, v2, v3 = a[k], a[k + 1], a[k + 2], a[k + 3]
            v4, v5, v6, v7 = a[k + 4], a[k + 5], a[k + 6], a[k + 7]
            for n in range(N):
                o[n] += (v0 * w0[n] + v1 * w1[n] + v2 * w2[n] + v3 * w3[n]) + (
                    v4 * w4[n] + v5 * w5[n] + v6 * w6[n] + v7 * w7[n])
    for k in range(K8, K):
        w = W[k]
        for r in range(M):
            o = out[r]
            v = A[r, k]
            for n in range(N):
                o[n] += v * w[n]


@numba.njit(inline="always", **_JIT)
def axpy_product(A, W_T, out):
    """out = A @ W_T inside a numba loop: A (M, K) rows (any row stride), W_T (K, N) contiguous, out (M, N).
    Row by row, an axpy over N per k, so the inner loop is contiguous and vectorises. The GRU/RNN time loops ran
    this before the micro-kernel (``_gemm.step_product_numba``; a baseline here)."""
    M, K = A.shape
    N = W_T.shape[1]
    for i in range(M):
        o, a = out[i], A[i]
        for n in range(N):
            o[n] = 0
        for k in range(K):
            v, w = a[k], W_T[k]
            for n in range(N):
                o[n] += v * w[n]


@numba.njit(cache=True)
def _reps_ukernel(A, Wp, out, reps):
    for _ in range(reps):
        matmul_packed(A, Wp, out)


@numba.njit(cache=True)
def _reps_matmul(A, W, out, reps):
    for _ in range(reps):
        matmul_8rows(A, W, out)


@numba.njit(cache=True)
def _reps_axpy(A, W, out, reps):
    for _ in range(reps):
        axpy_product(A, W, out)


def product_shapes() -> list[tuple[str, int, int, int]]:
    rows = []
    for B, _, _, H in SHAPES:
        rows += [(f"LSTM fwd H={H}", B, H, 4 * H), (f"LSTM bwd H={H}", B, 4 * H, H), (f"GRU fwd H={H}", B, H, 3 * H)]
    return rows


def product_contenders(M: int, K: int, N: int) -> tuple[dict, int]:
    """The five ways to compute out = A @ W (A (M, K), W (K, N)) ``reps`` times, ~2 ms of work per call."""
    A, W = torch.randn(M, K), torch.randn(K, N) / K ** 0.5
    A_, W_ = A.numpy(), W.numpy()
    Wp = pack_panels(W_)
    out = np.empty((M, N), dtype=np.float32)
    reps = max(1, int(2e-3 * 200e9 / (2 * M * K * N)))
    packed = _gemm.pack(W.t().contiguous(), M)  # oneDNN's blocked layout of Wᵀ (N, K)
    out_t, W_col = torch.from_numpy(out), W

    def run_onednn():
        for _ in range(reps):
            _gemm.linear_packed(A, packed).numpy()

    def run_mm():
        for _ in range(reps):
            torch.mm(A, W_col, out=out_t)

    fns = {"ukernel": lambda: _reps_ukernel(A_, Wp, out, reps),
           "numba _matmul": lambda: _reps_matmul(A_, W_, out, reps),
           "step_product_numba": lambda: _reps_axpy(A_, W_, out, reps),
           "oneDNN packed": run_onednn, "torch.mm": run_mm}
    return fns, reps


def measure_products(rounds: int, clock) -> list[dict]:
    rows = []
    for label, M, K, N in product_shapes():
        fns, reps = product_contenders(M, K, N)
        times = interleaved(fns, rounds=rounds, clock=clock)
        for name in fns:
            us = 1e3 * median_ms(times[name]) / reps
            rows.append({"product": label, "M,K,N": f"{M},{K},{N}", "contender": name, "us": us,
                         "gflops": 2 * M * K * N / us / 1e3, "vs_ukernel": ratio(times, name, "ukernel")})
    return rows


THRESHOLD_SHAPES = [(8, 64), (16, 64), (8, 128), (32, 64), (16, 128), (64, 64), (8, 256), (32, 128), (16, 256),
                    (64, 128), (32, 256), (16, 512), (64, 256), (32, 512), (64, 512)]  # (B, H); I = H, T = 50
"""From the smallest benchmark layer to the largest per-step product of benchmarks/layers.py (64, 512) x (512, 2048),
64x past the old LSTM threshold (B·4H·H = 2^20)."""

_SWITCHES = {"LSTM": (fused_lstm, ("_WHOLE_LOOP_MAX", "_WHOLE_LOOP_MAX_THREADED")),
             "GRU": (_gemm, ("NUMBA_MAX_MACS", "NUMBA_MAX_MACS_THREADED")),
             "RNN": (_gemm, ("NUMBA_MAX_MACS", "NUMBA_MAX_MACS_THREADED"))}  # the limits for one thread and for more


def _forced(fn, module, names: tuple[str, ...], value: int):
    """``fn`` with the module's limits set to ``value`` while it runs: the whole loop forced on or off."""
    def run():
        old = [getattr(module, name) for name in names]
        for name in names:
            setattr(module, name, value)
        try:
            fn()
        finally:
            for name, v in zip(names, old, strict=True):
                setattr(module, name, v)
    return run


def measure_thresholds(rounds: int, clock, T: int = 50) -> list[dict]:
    rows = []
    layers = (("LSTM", lambda I, H: LSTM(I, H, layer_norm=True)), ("GRU", lambda I, H: GRU(I, H, impl="numba")),
              ("RNN", lambda I, H: RNN(I, H, impl="numba")))
    for kind, make in layers:
        module, switches = _SWITCHES[kind]
        for B, H in THRESHOLD_SHAPES:
            x = torch.randn(B, T, H)
            model = make(H, H)
            G = {"LSTM": 4 * H, "GRU": 3 * H, "RNN": H}[kind]
            for mode, step in (("train", train_step), ("infer", inference)):
                fn = step(model.train(mode == "train"), x)
                fns = {"loop": _forced(fn, module, switches, 1 << 62), "per-step": _forced(fn, module, switches, -1)}
                times = interleaved(fns, rounds=rounds, clock=clock)
                rows.append({"layer": kind, "B,H": f"{B},{H}", "macs": B * G * H, "mode": mode,
                             "loop_ms": median_ms(times["loop"]), "per_step_ms": median_ms(times["per-step"]),
                             "ratio": ratio(times, "loop", "per-step")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--thresholds", action="store_true", help="also the whole-loop vs per-step layer timings")
    parser.add_argument("--only-thresholds", action="store_true", help="only those")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or this thread's CPU time (leaves out time other processes held the core)")
    parser.add_argument("--out", default="ukernel.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    setup_threads(args.threads)
    torch.manual_seed(0)
    payload: dict = {"threads": args.threads, "rounds": args.rounds, "clock": args.clock}
    if not args.only_thresholds:
        payload["products"] = measure_products(args.rounds, CLOCKS[args.clock])
        print_table(payload["products"], ["product", "M,K,N", "contender", "us", "gflops", "vs_ukernel"])
        speedups = [r["vs_ukernel"] for r in payload["products"] if r["contender"] == "numba _matmul"]
        print(f"\nukernel vs numba _matmul: median {statistics.median(speedups):.2f}x faster")
    if args.thresholds or args.only_thresholds:
        payload["thresholds"] = measure_thresholds(args.rounds, CLOCKS[args.clock])
        print()
        print_table(payload["thresholds"], ["layer", "B,H", "macs", "mode", "loop_ms", "per_step_ms", "ratio"])
    print("wrote", write_json(args.out, payload))


if __name__ == "__main__":
    main()

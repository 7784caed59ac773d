"""Fused CPU kernels for minGRU and minLSTM: gates + scan + output in one pass over the Linear's output.

What a minGRU/minLSTM layer computes, per row b and direction, with n = 2 (minGRU) or 3 (minLSTM):

    k = x Wᵀ                        (B·T, n·H)   the only matrix product (a GEMM per block, before the kernel)
    a_t, b_t = gates(k_t + bias)    (H,) each    element-wise, never stored
    h_t = a_t ⊙ h_{t-1} + b_t       (H,)         the scan

The sequence is cut into blocks of about 512 KB of k (:func:`_blocks`: several whole rows, or windows of
time of one row). For each block, in the scan's order, the GEMM writes the block's k and the forward kernel
reads it while it is still in L2, adding the bias (the GEMM has none) and writing h: k never goes to memory,
and nothing but h is kept for the backward. The backward visits the blocks in the opposite order, recomputes
each block's k (one more GEMM, measured cheaper than storing k: see :func:`_forward`) and runs the scan in
reverse,

    G_t = ∂L/∂h_t + a_{t+1} ⊙ G_{t+1}   (the carry),   ∂L/∂k_t from G_t, the recomputed gates and h_{t-1},

reading h and ∂L/∂h once and writing ∂L/∂k once, with ∂L/∂bias summed on the way; then the weight gradient is
one GEMM, ∂L/∂W = (∂L/∂k)ᵀ x, and ∂L/∂x = (∂L/∂k) W another. The carry crosses block boundaries, as the state
does in the forward.

Threads: rows never interact, so the batch is cut into one range of rows per torch thread (:func:`_ranges`),
and each range runs its own blocks, GEMM and kernel, in one numba call (:func:`_scan_rows`,
:func:`_reverse_scan_rows`), all ranges at once on torch's OpenMP team (``_parallel.run_split``). A block's
GEMM runs on the register-blocked micro-kernel (``_ukernel.matmul_packed``, W packed once per call, ~250
GFLOP/s on one core at (256, 128) x (128, 512), against 212 for oneDNN), so no torch call happens inside a
pass. Measured against the version before (a Python loop over the blocks, oneDNN's GEMM on all threads, the
kernels on one; ``benchmarks/min_rnn.py --against``, pairs interleaved, five shapes of benchmarks/layers.py):
two threads, time 0.52-0.76 (minGRU) and 0.45-0.74 (minLSTM) of before; one thread 0.66-0.90. The two GEMMs at
the end of the backward stay on oneDNN with all threads.

Lengths and direction live inside the kernels, so no pass masks, gathers or reverses anything:
row b runs over its first L_b steps, forwards (t = 0 … L_b−1) or backwards (t = L_b−1 … 0), writing
h at the step's own position; outputs past L_b are zero and the final state is h at the last step run.

Speed: numba has no vector math library here (no SVML), so ``math.exp`` is a scalar libm call that
stops LLVM from vectorising the loop over H. :func:`_exp` is therefore a float32 exp written out in
arithmetic (Cody–Waite range reduction, the Cephes expf polynomial, 2ⁿ built from its bits; within 2.5 ulp
of exp, tested), which LLVM vectorises with the rest of the loop; float64 keeps ``math.exp``. The kernels
also need ``error_model="numpy"``: numba's default checks every float division for zero, and that check
alone kept the loop scalar. Measured per element in cache, one thread: the minGRU forward kernel 2.1 ns
(31.5 ns before both changes), the backward 3.7 ns (37.7 ns). See benchmarks/min_rnn.py for the split of
a layer's time between the GEMMs and the kernels.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnlab.nn._gemm import linear, weight_grad
from rnnlab.nn._parallel import CACHE_LINE, aligned_rows, row_splits, run_split
from rnnlab.nn._ukernel import matmul_packed, pack_panels
from rnnlab.nn._workspace import scratch

__all__ = ["min_scan", "KINDS"]

KINDS = ("gru", "lstm")  # minGRU: k = [k_z, k_h]; minLSTM: k = [k_f, k_i, k_h]

# Only fused multiply-add and division by reciprocal: no 'reassoc' (the range reduction's rounding trick,
# y + 1.5·2²³ − 1.5·2²³, must not be folded away) and no 'nnan'/'ninf' (a NaN in x must come out as NaN in h,
# as in the reference path, so that a diverging run shows; the clamp in _exp would otherwise swallow it).
_FASTMATH = {"arcp", "contract"}
# error_model="numpy": a float division by zero gives inf, not a Python exception; the check it would
# need in every iteration stops LLVM from vectorising the loop (measured: 15 ns per sigmoid, not 0.4)
_JIT = dict(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")


# ---------------------------------------------------------------------------------------------
# A float32 exp that LLVM can vectorise (no call in the loop).
# ---------------------------------------------------------------------------------------------
@intrinsic
def _float32_bits(typingctx, x):
    """The bits of a float32 as an int32 (a bit cast, no conversion)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _bits_float32(typingctx, i):
    """An int32's bits read as a float32."""
    if i != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


_F32 = np.float32
_LOG2E = _F32(1.44269504088896341)
_LN2_HI = _F32(0.693359375)  # ln 2 split in two (Cody–Waite): n·_LN2_HI is exact
_LN2_LO = _F32(-2.12194440e-4)
_ROUND = _F32(12582912.0)  # 1.5·2²³: adding it rounds to an integer, held in the low mantissa bits
_ROUND_BITS = np.int32(0x4B400000)
_X_MAX = _F32(88.0)
_X_MIN = _F32(-87.0)  # exp(-87) ≈ 1.6e-38, the smallest normal float32 order: 2ⁿ stays normal
_P0, _P1, _P2 = _F32(1.9875691500e-4), _F32(1.3981999507e-3), _F32(8.3334519073e-3)
_P3, _P4, _P5 = _F32(4.1665795894e-2), _F32(1.6666665459e-1), _F32(5.0000001201e-1)
_ONE = _F32(1.0)


def _exp(x):  # pragma: no cover - replaced by the overload inside numba
    return math.exp(x)


@overload(_exp, inline="always")
def _exp_overload(x):
    if x == types.float32:

        def exp32(x):
            xc = min(max(x, _X_MIN), _X_MAX)  # x first: Python's min/max (and numba's) then pass NaN through
            y = xc * _LOG2E + _ROUND  # n = round(x / ln 2) sits in y's low bits
            n = _float32_bits(y) - _ROUND_BITS
            nf = y - _ROUND
            r = xc - nf * _LN2_HI - nf * _LN2_LO  # |r| ≤ ln2 / 2
            p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
            p = p * r * r + r + _ONE  # e^r
            two_n = _bits_float32(np.int32((n + 127) << 23))  # 2ⁿ
            return p * two_n

        return exp32
    if isinstance(x, types.Float):
        return lambda x: math.exp(x)
    return None


# ``one`` is 1 in the array's dtype, passed in: a literal 1 or 0.5 would be int64/float64 and promote
# every float32 expression it touches to float64 (half the vector width, conversions both ways).
@numba.njit(inline="always", **_JIT)
def _sigmoid(x, one):
    return one / (one + _exp(-x))


@numba.njit(inline="always", **_JIT)
def _g_and_slope(k, one):
    """g(k) = k + 0.5 for k ≥ 0, σ(k) below, and g'(k) = 1 or σ(k)(1 − σ(k)); no branch (both computed)."""
    s = _sigmoid(k, one)
    pos = k >= 0
    return (k + one / (one + one) if pos else s), (one if pos else s * (one - s))


# ---------------------------------------------------------------------------------------------
# Kernels, on one block of rows r0 .. r0 + n - 1 and steps t0 .. t0 + T - 1: k (n, T, n·H) the block's
# pre-activations without bias; bias (n·H,); h0 (n, H); lengths (n,) int64 in [0, T], the block's own;
# h (B, T_all, H) outputs, the block at [r0:r0+n, t0:t0+T] (whole arrays and offsets, not slices: a slice of
# the time axis is not contiguous to numba, which then keeps the loops over H scalar); h_last (n, H) final
# state. One row at a time, inner loop over H contiguous.
# ---------------------------------------------------------------------------------------------
@numba.njit(**_JIT)
def _gru_forward(k, bias, h0, lengths, reverse, one, h, r0, t0, h_last):  # pragma: no cover - compiled
    B, T = k.shape[0], k.shape[1]
    H = h.shape[2]
    for b in range(B):
        L = lengths[b]
        prev = h0[b]
        for s in range(L):
            t = L - 1 - s if reverse else s
            kb, out = k[b, t], h[r0 + b, t0 + t]
            for j in range(H):
                z = _sigmoid(kb[j] + bias[j], one)  # update gate
                h_tilde, _ = _g_and_slope(kb[H + j] + bias[H + j], one)
                out[j] = prev[j] + z * (h_tilde - prev[j])  # (1 − z) h_{t-1} + z h̃
            prev = out
        h_last[b] = prev
        for t in range(L, T):
            h[r0 + b, t0 + t] = 0


@numba.njit(**_JIT)
def _gru_backward(k, bias, h0, lengths, reverse, one, h, grad_h, dk, r0, t0, grad_last, dh0,
                  dbias):  # pragma: no cover - compiled
    B, T = k.shape[0], k.shape[1]
    H = h.shape[2]
    for b in range(B):
        L = lengths[b]
        carry = dh0[b]  # a_{t+1} ⊙ G_{t+1}; ends as ∂L/∂h0
        carry[:] = grad_last[b]
        for s in range(L - 1, -1, -1):
            t = L - 1 - s if reverse else s
            if s == 0:
                prev = h0[b]
            else:
                prev = h[r0 + b, t0 + t + 1] if reverse else h[r0 + b, t0 + t - 1]
            kb, gb, dkb = k[b, t], grad_h[r0 + b, t0 + t], dk[r0 + b, t0 + t]
            for j in range(H):
                G = gb[j] + carry[j]
                z = _sigmoid(kb[j] + bias[j], one)
                h_tilde, slope = _g_and_slope(kb[H + j] + bias[H + j], one)
                dz = G * (h_tilde - prev[j]) * z * (one - z)  # ∂L/∂k_z
                dh = G * z * slope  # ∂L/∂k_h
                dkb[j] = dz
                dkb[H + j] = dh
                dbias[j] += dz
                dbias[H + j] += dh
                carry[j] = (one - z) * G
        for t in range(L, T):
            dk[r0 + b, t0 + t] = 0


@numba.njit(**_JIT)
def _lstm_forward(k, bias, h0, lengths, reverse, one, h, r0, t0, h_last):  # pragma: no cover - compiled
    B, T = k.shape[0], k.shape[1]
    H = h.shape[2]
    for b in range(B):
        L = lengths[b]
        prev = h0[b]
        for s in range(L):
            t = L - 1 - s if reverse else s
            kb, out = k[b, t], h[r0 + b, t0 + t]
            for j in range(H):
                f = _sigmoid(kb[j] + bias[j], one)  # forget gate
                i = _sigmoid(kb[H + j] + bias[H + j], one)  # input gate
                h_tilde, _ = _g_and_slope(kb[2 * H + j] + bias[2 * H + j], one)
                f_norm = f / (f + i)  # f'; i' = 1 − f'
                out[j] = h_tilde + f_norm * (prev[j] - h_tilde)
            prev = out
        h_last[b] = prev
        for t in range(L, T):
            h[r0 + b, t0 + t] = 0


@numba.njit(**_JIT)
def _lstm_backward(k, bias, h0, lengths, reverse, one, h, grad_h, dk, r0, t0, grad_last, dh0,
                   dbias):  # pragma: no cover - compiled
    B, T = k.shape[0], k.shape[1]
    H = h.shape[2]
    for b in range(B):
        L = lengths[b]
        carry = dh0[b]
        carry[:] = grad_last[b]
        for s in range(L - 1, -1, -1):
            t = L - 1 - s if reverse else s
            if s == 0:
                prev = h0[b]
            else:
                prev = h[r0 + b, t0 + t + 1] if reverse else h[r0 + b, t0 + t - 1]
            kb, gb, dkb = k[b, t], grad_h[r0 + b, t0 + t], dk[r0 + b, t0 + t]
            for j in range(H):
                G = gb[j] + carry[j]
                f = _sigmoid(kb[j] + bias[j], one)
                i = _sigmoid(kb[H + j] + bias[H + j], one)
                h_tilde, slope = _g_and_slope(kb[2 * H + j] + bias[2 * H + j], one)
                total = f + i
                f_norm = f / total
                dfn = G * (prev[j] - h_tilde) / (total * total)  # shared factor of ∂L/∂f and ∂L/∂i
                df = dfn * i * f * (one - f)  # ∂L/∂k_f
                di = -dfn * f * i * (one - i)  # ∂L/∂k_i
                dh = G * (one - f_norm) * slope  # ∂L/∂k_h
                dkb[j] = df
                dkb[H + j] = di
                dkb[2 * H + j] = dh
                dbias[j] += df
                dbias[H + j] += di
                dbias[2 * H + j] += dh
                carry[j] = f_norm * G
        for t in range(L, T):
            dk[r0 + b, t0 + t] = 0


def _one(t: Tensor):
    return np.float32(1) if t.dtype == torch.float32 else np.float64(1)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


# The two GEMMs at the end of the backward run through _gemm (oneDNN, the library torch.nn.LSTM's CPU kernel
# uses, where it is faster than torch.mm's MKL on the AMD EPYC target; torch.mm for float64 and builds without
# it): measured at (M, I, n·H) = (16384, 128, 512), one thread, interleaved, ∂L/∂k W 0.47x the time of torch.mm;
# ∂L/∂kᵀ x (a long reduction over M) as _gemm.weight_grad, (xᵀ ∂L/∂k)ᵀ, 0.6-0.82x torch.mm (the other
# orientation was 1.7x). The blocks' GEMMs run on the micro-kernel inside the numba passes (module docstring).


# k values per block (512 KB of float32): a block's k is computed, scanned and dropped while it sits in L2.
# Measured at (16, 1024, 128, 256), minGRU, one thread, interleaved: inference on the whole sequence (one
# GEMM writing all of k, then the kernel) took 1.96x the time of blocks of 256 steps (the whole GEMM alone
# 1.47x); training with k stored whole in the forward took 1.01x the time of these blocks with k recomputed
# in the backward.
_BLOCK = 1 << 17


def _blocks(B: int, T: int, width: int, reverse: bool, r0: int = 0, r1: int | None = None) -> np.ndarray:
    """(b0, b1, t0, t1) blocks of rows r0 .. r1 - 1 (all by default) of the sequence, in the order the scan visits
    them, as an int64 array (n, 4): several whole rows where they fit, else windows of time of one row (so that
    x[b0:b1, t0:t1] and h[b0:b1, t0:t1] stay contiguous)."""
    r1 = B if r1 is None else r1
    rows = max(1, _BLOCK // (T * width))
    steps = T if rows > 1 else max(1, min(T, _BLOCK // width))
    out = []
    for b0 in range(r0, r1, rows):
        starts = range(0, T, steps)
        for t0 in reversed(starts) if reverse else starts:
            out.append((b0, min(r1, b0 + rows), t0, min(T, t0 + steps)))
    return np.array(out, dtype=np.int64).reshape(-1, 4)


def _ranges(B: int, T: int, width: int, reverse: bool) -> list[np.ndarray]:
    """The blocks of each range of rows, one range per torch thread (:func:`rnnlab.nn._parallel.row_splits`), as
    many as have at least :data:`_SPLIT_MIN_VALUES` values of k each: the ranges run at once (rows never interact),
    each its blocks in the scan's order."""
    threads = max(1, min(torch.get_num_threads(), B * T * width // max(1, _SPLIT_MIN_VALUES)))
    return [_blocks(B, T, width, reverse, r0, r1) for r0, r1 in row_splits(B, 1, threads)]


_SPLIT_MIN_VALUES = 1 << 16
"""The fewest values of k (rows · steps · n·H) a range gets: ~50 µs of GEMM and kernel at I = 32 on one core,
against ~30 µs to start the ranges on the threads."""


def _block_values(blocks: np.ndarray) -> int:
    """Values of k in the largest block of a range: rows · steps."""
    return int(((blocks[:, 1] - blocks[:, 0]) * (blocks[:, 3] - blocks[:, 2])).max())


def _line(dtype: torch.dtype) -> int:
    """Elements of ``dtype`` per cache line."""
    return CACHE_LINE // torch.empty(0, dtype=dtype).element_size()


def _scratch_numel(ranges: list[np.ndarray], width: int, dtype: torch.dtype) -> int:
    """Elements of scratch that :func:`_block_scratches` carves every range's block k out of (with padding)."""
    line = _line(dtype)
    return sum(-(-_block_values(b) * width // line) * line for b in ranges) + line


def _block_scratches(buf: Tensor, ranges: list[np.ndarray], width: int) -> list[np.ndarray]:
    """Each range's own k of one block, (values of its largest block, width), out of reused scratch memory ``buf``
    (``_workspace.scratch``: no fresh pages per call), each starting on its own cache line."""
    flat, line = buf.numpy(), _line(buf.dtype)
    at = (-flat.ctypes.data // flat.itemsize) % line  # the first element on a cache line
    out = []
    for blocks in ranges:
        n = _block_values(blocks) * width
        out.append(flat[at:at + n].reshape(-1, width))
        at += -(-n // line) * line
    return out


@numba.njit(**_JIT)
def _block(x, Wp, lengths, blocks, i, K, steps):
    """Block i of a range's ``blocks``: its k, (b1 - b0, t1 - t0, width), into K (rows·steps, width), x[b, t0:t1] Wᵀ
    row by row of x (Wp = pack_panels(Wᵀ)) on the micro-kernel; and each of its rows' own lengths into steps.
    -> (b0, b1, t0, t1, k)."""
    b0, b1, t0, t1 = blocks[i, 0], blocks[i, 1], blocks[i, 2], blocks[i, 3]
    n = t1 - t0
    for b in range(b0, b1):
        r = (b - b0) * n
        matmul_packed(x[b, t0:t1], Wp, K[r:r + n])
        steps[b - b0] = min(max(lengths[b] - t0, 0), n)
    return b0, b1, t0, t1, K[:(b1 - b0) * n].reshape(b1 - b0, n, K.shape[1])


@numba.njit(**_JIT)
def _max_rows(blocks):
    """Rows of the largest block: the length of a range's per-block lengths array."""
    n = 0
    for i in range(blocks.shape[0]):
        n = max(n, blocks[i, 1] - blocks[i, 0])
    return n


@numba.njit(**_JIT)
def _scan_rows(lstm, x, Wp, bias, lengths, reverse, one, h, state, blocks, K):
    """The forward of one range of rows: for each of its blocks, in the scan's order, the block's k (GEMM, into
    this range's scratch K) and the forward kernel on it while it is in cache. state (B, H) is h0 in, h_last out
    (the range's rows only)."""
    steps = np.empty(_max_rows(blocks), dtype=np.int64)  # the block's own lengths
    for i in range(blocks.shape[0]):
        b0, b1, t0, t1, k = _block(x, Wp, lengths, blocks, i, K, steps)
        n = b1 - b0
        s = state[b0:b1]
        if lstm:
            _lstm_forward(k, bias, s, steps[:n], reverse, one, h, b0, t0, s)
        else:
            _gru_forward(k, bias, s, steps[:n], reverse, one, h, b0, t0, s)


@numba.njit(**_JIT)
def _reverse_scan_rows(lstm, x, Wp, bias, h0, lengths, reverse, one, h, grad_h, carry, dk, dbias, blocks, K):
    """The backward of one range of rows: its blocks in the opposite order to the forward (``blocks`` already so),
    each block's k recomputed (GEMM, into K) and the backward kernel on it; writes the range's rows of dk and of
    carry (∂L/∂h_last in, ∂L/∂h0 out) and adds its share of ∂L/∂bias to dbias (this range's own)."""
    T = h.shape[1]
    steps = np.empty(_max_rows(blocks), dtype=np.int64)  # the block's own lengths
    start = np.empty((steps.shape[0], h.shape[2]), dtype=h.dtype)  # each row's state before the block
    for i in range(blocks.shape[0]):
        b0, b1, t0, t1, k = _block(x, Wp, lengths, blocks, i, K, steps)
        n = b1 - b0
        for r in range(n):
            b = b0 + r
            # the state the block started from: h just before it in the scan's order, or h0 where it is first
            if not reverse:
                src = h[b, t0 - 1] if t0 > 0 else h0[b]
            elif t1 < T and lengths[b] > t1:
                src = h[b, t1]
            else:
                src = h0[b]
            start[r] = src
        c = carry[b0:b1]
        if lstm:
            _lstm_backward(k, bias, start[:n], steps[:n], reverse, one, h, grad_h, dk, b0, t0, c, c, dbias)
        else:
            _gru_backward(k, bias, start[:n], steps[:n], reverse, one, h, grad_h, dk, b0, t0, c, c, dbias)


def _forward(kind: str, x: Tensor, weight: Tensor, bias: Tensor, h0: Tensor, lengths: Tensor, reverse: bool):
    """The scan block by block: GEMM of the block, then the kernel on it while k is in cache; one range of rows per
    torch thread, at once (:func:`_ranges`), each range's loop over its blocks in numba.

    Returns h (B, T, H) and h_last (B, H); keeps nothing else (the backward recomputes k per block)."""
    B, T, I = x.shape
    width = weight.shape[0]
    one = _one(x)
    h = x.new_empty(B, T, h0.shape[1])
    state = h0.clone()  # (B, H) the running state: the kernel reads it as h0 and writes h_last into it
    X, Wp, bias_, L_, h_, s_ = _np(x), pack_panels(_np(weight).T), _np(bias), lengths.numpy(), _np(h), _np(state)
    lstm = kind == "lstm"
    ranges = _ranges(B, T, width, reverse)
    with scratch(_scratch_numel(ranges, width, x.dtype), x.dtype) as buf:
        run_split(_scan_rows, [(lstm, X, Wp, bias_, L_, reverse, one, h_, s_, blocks, K)
                               for blocks, K in zip(ranges, _block_scratches(buf, ranges, width), strict=True)])
    return h, state


def _backward(kind, x, weight, bias, h0, lengths, reverse, h, grad_h, grad_last, need):
    """The reverse scan block by block, in the opposite order to the forward: recompute the block's k (its GEMM)
    and run the backward kernel on it while it is in cache, writing ∂L/∂k (one range of rows per torch thread, at
    once); then ∂L/∂x and ∂L/∂W, one GEMM each, on all threads.

    Measured against ∂L/∂x and ∂L/∂W block by block (while ∂L/∂k is in cache), minGRU, one thread, interleaved,
    time(one GEMM at the end) / time(per block): 1.03-1.14 at (16, 1024, 128, 256), 0.87 at (64, 100, 256, 512)
    and (64, 200, 64, 128), 0.99 at (32, 100, 128, 256), 1.03 at (8, 500, 32, 64), 0.91 at (4, 4096, 64, 128)."""
    B, T, I = x.shape
    width = weight.shape[0]
    one = _one(x)
    carry = grad_last.clone()  # (B, H) ∂L/∂(state after the blocks still to go back through); ends as ∂L/∂h0
    ranges = _ranges(B, T, width, not reverse)
    X, Wp = _np(x), pack_panels(_np(weight).T)
    dbias = aligned_rows(len(ranges), width, X.dtype)  # per range, summed after
    shared = (kind == "lstm", X, Wp, _np(bias), _np(h0), lengths.numpy(), reverse, one, _np(h), _np(grad_h),
              _np(carry))
    # ∂L/∂k lives only inside this call: reused scratch memory, not fresh pages (their first-touch faults took
    # most of the backward kernel's time on the loaded target, as nn/_workspace.py measured for the fused LSTM)
    # (and so do the blocks' k of every range, after it: one scratch buffer, as scratch pools one per dtype)
    with scratch(B * T * width + _scratch_numel(ranges, width, x.dtype), x.dtype) as buf:
        dk = buf[:B * T * width].view(B, T, width)
        Ks = _block_scratches(buf[B * T * width:], ranges, width)
        run_split(_reverse_scan_rows, [shared + (_np(dk), dbias[s], blocks, Ks[s]) for s, blocks in enumerate(ranges)])
        dk2 = dk.view(B * T, width)
        dx = linear(dk2, weight.t().contiguous()).view(B, T, I) if need[0] else None  # (B, T, I)
        dweight = weight_grad(dk2, x.reshape(B * T, I)) if need[1] else None  # (n·H, I)
    return dx, dweight, torch.from_numpy(dbias.sum(0)), carry


class _MinScan(torch.autograd.Function):
    """(x, weight, bias, h0) -> (h (B, T, H), h_last (B, H)); the backward as the module docstring says."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # bf16 autocast: run in float32
    def forward(ctx, x, weight, bias, h0, lengths, reverse, kind):
        weight = weight.contiguous()
        h, h_last = _forward(kind, x, weight, bias, h0, lengths, reverse)
        ctx.save_for_backward(x, weight, bias, h0, h)
        ctx.lengths, ctx.reverse, ctx.kind = lengths, reverse, kind
        return h, h_last

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_h, grad_last):
        x, weight, bias, h0, h = ctx.saved_tensors
        grad_h = torch.zeros_like(h) if grad_h is None else grad_h.contiguous()
        grad_last = torch.zeros_like(h0) if grad_last is None else grad_last
        need = ctx.needs_input_grad
        dx, dweight, dbias, dh0 = _backward(ctx.kind, x, weight, bias, h0, ctx.lengths, ctx.reverse, h, grad_h,
                                            grad_last, need)
        return dx, dweight if need[1] else None, dbias if need[2] else None, dh0 if need[3] else None, None, None, None


def min_scan(kind: str, x: Tensor, weight: Tensor, bias: Tensor | None, h0: Tensor,
             lengths: Tensor | None = None, *, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """minGRU (``kind="gru"``) or minLSTM (``"lstm"``) over a whole sequence on the CPU, float32 or float64.

    x (B, T, I), weight (n·H, I), bias (n·H,) or None, h0 (B, H), lengths (B,) int in [1, T] or None,
    ``reverse`` runs each row from its last real step back to its first.
    Returns (h (B, T, H), zero past each row's length, h_last (B, H), h at the last step run).
    Differentiable in x, weight, bias and h0; without a gradient to compute, the forward keeps nothing.
    """
    B, T, _ = x.shape
    x, h0 = x.contiguous(), h0.contiguous()
    if bias is None:
        bias = x.new_zeros(weight.shape[0])
    lengths = torch.full((B,), T, dtype=torch.int64) if lengths is None else lengths.to(torch.int64).contiguous()
    inputs = (x, weight, bias, h0)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _MinScan.apply(x, weight, bias, h0, lengths, bool(reverse), kind)
    if torch.is_autocast_enabled("cpu"):
        x, weight, bias, h0 = (t.float() for t in inputs)
    with torch.autocast("cpu", enabled=False):  # bf16 autocast: the GEMM and the kernel run in float32
        h, h_last = _forward(kind, x, weight.contiguous(), bias.contiguous(), h0, lengths, bool(reverse))
    return h, h_last

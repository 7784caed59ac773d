"""The matrix products of the sequence kernels, on oneDNN where torch's default BLAS is slower.

``torch.mm`` in float32 on the CPU calls MKL, which on this AMD EPYC (AVX-512) runs a slower code path; oneDNN
(which torch.nn.LSTM's own CPU kernel uses) JIT-compiles for the CPU it finds. Measured, one thread, in one
process: (32, 256) x (256, 1024), one recurrent step at (32, 100, 128, 256): 0.225 ms (MKL) vs 0.139 ms (oneDNN);
(3200, 1024) x (1024, 128), the dx product at the end of the backward pass: 11.6 ms vs 5.0 ms. The weight-gradient
products (a transposed left operand) gain little and stay on ``torch.mm``.
Float32 on the CPU only (IEEE float32 arithmetic, as torch.mm); anything else, or a torch without the op, falls
back to ``torch.mm``.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ._parallel import row_splits
from ._torch_kernels import ONEDNN_LINEAR, onednn_linear, onednn_pack_linear_weight

_ONEDNN = ONEDNN_LINEAR  # benchmarks/gemm_backend.py switches it off for its A/B


def linear(a: Tensor, w: Tensor) -> Tensor:
    """a @ wᵀ: a (M, K), w (N, K) -> (M, N), a new tensor."""
    if _ONEDNN and a.dtype == torch.float32 and w.dtype == torch.float32 and a.device.type == "cpu":
        out = onednn_linear(a, w)  # the private op lives in _torch_kernels (pinned by its tests)
        if out is not None:
            return out
    return a @ w.t()


ONEDNN_MIN_MACS = 2_500_000
"""Below this many multiply-adds (M·N·K) a product runs on ``torch.mm``: oneDNN's fixed cost per call (10–15 µs
against 2–4 µs, one thread) outweighs its faster kernel, and MKL is quick on operands that sit in cache.
Measured per recurrent step (time oneDNN / time MKL, interleaved, one thread, loaded machine): (8, 64) x (64, 192)
4x; (16, 256) x (256, 256) 1.2–7x; (32, 256) x (256, 256) 1.4–1.6x; (64, 128) x (128, 384) and (16, 256) x
(256, 768) 0.77–1.24x (noise around parity); (32, 256) x (256, 768) 0.67–0.77x; (64, 512) x (512, 1536) 0.55x."""


def onednn_pays(M: int, K: int, N: int) -> bool:
    """Whether an (M, K) x (K, N) float32 product should run on oneDNN rather than ``torch.mm`` (its size)."""
    return _ONEDNN and M * K * N >= ONEDNN_MIN_MACS


def step_product(w: Tensor, rows: int) -> Callable[[Tensor], np.ndarray]:
    """The per-step product of a sequence kernel, a ↦ a @ wᵀ for a (rows, K), w (N, K), as the numpy array (rows, N)
    that the numba kernels read. Large products run on oneDNN (a new array each step); small ones (see
    :data:`ONEDNN_MIN_MACS`) on ``torch.mm`` into one buffer reused at every step, so the array is only valid until
    the next call."""
    w = w.detach().contiguous()
    N, K = w.shape
    if w.dtype == torch.float32 and w.device.type == "cpu" and onednn_pays(rows, K, N):
        packed = pack(w, rows)  # reordered once for all steps (see pack)
        return lambda a: linear_packed(a, packed).numpy()
    out = torch.empty(rows, N, dtype=w.dtype)
    out_, w_t = out.numpy(), w.t()

    def mm(a: Tensor) -> np.ndarray:
        torch.mm(a, w_t, out=out)
        return out_

    return mm

def linear_into(a: Tensor, w: Tensor, out: Tensor, *, block: int = 512) -> Tensor:
    """a @ wᵀ written into ``out`` (M, N): a (M, K), w (N, K). On oneDNN (which has no ``out=``) block by block of
    ``block`` rows, each block's result copied while it is still in cache: cheaper than a fresh (M, N) result, whose
    first-touch page faults cost more than the copy when it is tens of megabytes (the inference input product
    x W_ihᵀ of a long sequence); on ``torch.mm`` where oneDNN does not apply. Returns ``out``."""
    if not (_ONEDNN and a.dtype == torch.float32 and w.dtype == torch.float32 and a.device.type == "cpu"):
        return torch.mm(a, w.t(), out=out)
    for i in range(0, a.shape[0], block):
        out[i:i + block] = linear(a[i:i + block], w)
    return out


def input_and_weight_grads(DXP: Tensor, DHP: Tensor, x: Tensor, HM: Tensor, W_ih: Tensor,
                           need_dx: bool, need_dW_ih: bool, need_dW_hh: bool):
    """The three products at the end of a backward pass through time, each over all B·T rows at once:
    dx = DXP W_ih, dW_ih = DXPᵀ x, dW_hh = DHPᵀ (h ⊙ m); None where not needed.

    DXP, DHP (B, T, G) the pre-activation gradients of the input and the recurrent product; x (B, T, I);
    HM (B, T, H) the recurrent product's input h_{t-1} ⊙ m; W_ih (G, I). All three run on oneDNN (see
    :func:`weight_grad`); dx 2.4x faster than MKL at (3200, 768) x (768, 128).
    """
    B, T, G = DXP.shape
    I, H = x.shape[2], HM.shape[2]
    DXP, DHP = DXP.reshape(B * T, G), DHP.reshape(B * T, G)
    dx = linear(DXP, W_ih.t().contiguous()).view(B, T, I) if need_dx else None
    dW_ih = weight_grad(DXP, x.reshape(B * T, I)) if need_dW_ih else None
    dW_hh = weight_grad(DHP, HM.reshape(B * T, H)) if need_dW_hh else None
    return dx, dW_ih, dW_hh


def weight_grad(d: Tensor, a: Tensor) -> Tensor:
    """dᵀ a: d (M, N), a (M, K) -> (N, K) contiguous, the gradient of a weight summed over M = B·T rows.

    Computed as (aᵀ (dᵀ)ᵀ)ᵀ = linear(aᵀ, dᵀ)ᵀ on oneDNN (both operands as transposed views, no copy): measured
    (one thread, interleaved) 0.56–0.94x the time of ``d.t() @ a`` on MKL at the five benchmark shapes, while
    ``linear(dᵀ, aᵀ)`` is slower than MKL at some of them. The transpose of the small (K, N) result is copied."""
    return linear(a.t(), d.t()).t().contiguous()


NUMBA_MAX_MACS = 1 << 25
"""At most this many multiply-adds per step and range of rows (rows · K · N, :func:`numba_splits`), the GRU and RNN
sequence kernels run their whole loops over time, forward and backward, in one numba call per range, the recurrent
product on the register-blocked ``_ukernel.matmul_packed``, instead of calling oneDNN or ``torch.mm`` from Python
at every step (the call, the tensor→numpy view and the kernel's dispatch cost 20–30 µs a step). Measured
(benchmarks/ukernel.py --thresholds --clock cpu --rounds 9: I = H, T = 50, loop time / per-step time, median of
per-round ratios, this thread's CPU time), train / infer by (B, H): GRU (8, 64) 0.71 / 0.70; (8, 256) 0.66 / 0.63;
(64, 128) 0.84 / 0.82; (32, 256) 0.92 / 0.92; (64, 256) 0.93 / 0.95 (12.6M); (32, 512) 0.95 / 0.96 (25M); (64, 512)
1.07 / 1.05 (50M). RNN (8, 64) 0.93 / 0.64; (16, 256) 0.77 / 0.67; (32, 512) 0.89 / 0.90; (64, 512) 0.95 / 0.89
(16.8M). Then 2^24, raised to 2^25 with the split: wall clock, one thread, interleaved, 7 rounds, loaded machine,
train / infer: GRU (32, 100, 256, 512) (25M) 0.97 / 0.89 plain, 0.97 / 0.89 layer norm; RNN (128, 50, 256, 512)
(33.5M) 0.98 / 0.87 plain, 0.99 / 0.87 layer norm; two threads, GRU (64, 100, 256, 512) split into 2 x 32 rows
(25M per range) against the per-step oneDNN product on both threads: 0.95 / 0.96 plain, 0.91 / 0.87 layer norm
(the per-step path runs the element-wise kernel on one thread)."""
NUMBA_MAX_MACS_THREADED = 1 << 18
"""The same per range where some torch threads would have no range of rows (fewer than threads ·
:data:`NUMBA_SPLIT_MIN_ROWS` rows): the limit measured before the micro-kernel ((8, 64) x (64, 192): 4 µs on MKL
against a Python round trip of 20–30 µs), since a oneDNN product per step uses all the threads while the idle ones
would wait on the loop."""
NUMBA_SPLIT_MIN_ROWS = 4
"""The fewest rows a range of the split whole loop gets (:func:`numba_splits`), as the LSTM's. Measured at two
threads (interleaved, wall clock, layer norm, loaded machine), two ranges against one range of the same batch,
infer / train: (8, 500, 32, 64) two ranges of 4 rows, 21 rounds, GRU 0.75 / 0.82, RNN 0.89 / 0.99; (16, 500, 32, 64)
GRU 0.63 / 0.79, RNN 0.63 / 0.92; (4, 500, 32, 64) two ranges of 2 rows, 7 rounds, GRU 1.20 / 1.01, RNN 1.19 / 1.02
(the dispatch and a second thread's wake-up, ~30 µs, against a loop of about a millisecond)."""


def numba_splits(B: int, K: int, N: int) -> list[tuple[int, int]] | None:
    """The row ranges [b0, b1) of a batch of B rows that the GRU's and RNN's whole loops over time run on, one numba
    call per range, each on its own torch thread at once (:func:`rnnlab.nn._parallel.run_split`: the rows of a
    recurrent layer never interact); or None: the per-step (B, K) x (K, N) product from Python instead, on oneDNN
    and all of torch's threads. One range per torch thread, of at least :data:`NUMBA_SPLIT_MIN_ROWS` rows, sizes
    differing by at most one. Where every thread has a range, each range is a one-thread loop and the rule is the
    one-thread one per range: rows · K · N ≤ :data:`NUMBA_MAX_MACS`; where some thread would have none (a small
    batch), ≤ :data:`NUMBA_MAX_MACS_THREADED`. With one thread: one range of B rows. What the split gains (two
    threads: inference 0.34-0.68x, a training step 0.51-0.81x the time before it at the benchmark shapes) is in the
    docstrings of :mod:`rnnlab.nn.fused_gru` and :mod:`rnnlab.nn.fused_rnn`."""
    threads = torch.get_num_threads()
    splits = row_splits(B, NUMBA_SPLIT_MIN_ROWS, threads)
    rows = max(b1 - b0 for b0, b1 in splits)
    limit = NUMBA_MAX_MACS if len(splits) == threads else NUMBA_MAX_MACS_THREADED
    return splits if rows * K * N <= limit else None


def numba_pays(M: int, K: int, N: int) -> bool:
    """Whether an (M, K) x (K, N) per-step product is small enough for the whole loop in numba, split or not (see
    :func:`numba_splits`)."""
    return numba_splits(M, K, N) is not None


def pack(w: Tensor, batch_size: int) -> Tensor:
    """w (N, K) prepared for many products ``linear_packed(a, ·)`` with a of ``batch_size`` rows: on oneDNN (float32
    CPU) reordered once into the kernel's blocked layout, as torch.nn.LSTM's own kernel keeps its weights (measured,
    one thread, per product: (32, 256) x (256, 1024) 249 -> 199 µs, (64, 512) x (512, 2048) 2370 -> 1441 µs,
    (16, 256) x (256, 1024) 138 -> 78 µs); else ``w`` itself, detached."""
    w = w.detach()
    if _ONEDNN and w.dtype == torch.float32 and w.device.type == "cpu":
        packed = onednn_pack_linear_weight(w, batch_size)
        if packed is not None:
            return packed
    return w


def linear_packed(a: Tensor, packed: Tensor) -> Tensor:
    """a @ wᵀ for ``packed = pack(w, len(a))``: a (M, K) -> (M, N), a new tensor."""
    if packed.is_mkldnn:
        out = onednn_linear(a, packed)
        if out is None:
            raise RuntimeError("oneDNN refused a product with the weight it packed (rnnlab.nn._gemm.pack)")
        return out
    return linear(a, packed)

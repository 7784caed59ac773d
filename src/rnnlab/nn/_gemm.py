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

import torch
from torch import Tensor

from ._torch_kernels import ONEDNN_LINEAR, onednn_linear, onednn_pack_linear_weight

_ONEDNN = ONEDNN_LINEAR  # benchmarks/gemm_backend.py switches it off for its A/B


def linear(a: Tensor, w: Tensor) -> Tensor:
    """a @ wᵀ: a (M, K), w (N, K) -> (M, N), a new tensor."""
    if _ONEDNN and a.dtype == torch.float32 and w.dtype == torch.float32 and a.device.type == "cpu":
        out = onednn_linear(a, w)  # the private op lives in _torch_kernels (pinned by its tests)
        if out is not None:
            return out
    return a @ w.t()


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

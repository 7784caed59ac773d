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

from ._torch_kernels import ONEDNN_LINEAR, onednn_linear

_ONEDNN = ONEDNN_LINEAR  # benchmarks/gemm_backend.py switches it off for its A/B


def linear(a: Tensor, w: Tensor) -> Tensor:
    """a @ wᵀ: a (M, K), w (N, K) -> (M, N), a new tensor."""
    if _ONEDNN and a.dtype == torch.float32 and w.dtype == torch.float32 and a.device.type == "cpu":
        out = onednn_linear(a, w)  # the private op lives in _torch_kernels (pinned by its tests)
        if out is not None:
            return out
    return a @ w.t()

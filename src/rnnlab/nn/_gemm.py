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

_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
_ONEDNN = _LINEAR is not None and torch.backends.mkldnn.is_available()


def linear(a: Tensor, w: Tensor) -> Tensor:
    """a @ wᵀ: a (M, K), w (N, K) -> (M, N), a new tensor."""
    if _ONEDNN and a.dtype == torch.float32 and w.dtype == torch.float32 and a.device.type == "cpu":
        try:
            return _LINEAR(a, w, None, "none", [], "")
        except RuntimeError:  # an input layout this build's op refuses: the plain product
            pass
    return a @ w.t()

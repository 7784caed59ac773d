"""The element-wise half of one LSTM or GRU cell step, for many rows at once, as one numba kernel each.

A batched step outside autograd (:mod:`rnnlab.nn._fast_step`: a server stepping 256 sessions together) is two
matrix products and then the gates. As torch ops the gates are 8–10 element-wise calls per step, each a pass over
(B, H) or (B, G) in memory and a tensor allocation (≈ 120 µs at B = 256, H = 256 for the GRU, a fifth of its
step); JAX fuses them into one XLA kernel. These kernels do the same in one pass: they read the two products,
the biases (added here: inside oneDNN's product a bias costs 1–3 % of the product at B = 256 and 7–13 % at
B = 16–64, measured) and the previous state, and write the new state straight into the (L, B, H) tensors that the
step returns (no ``torch.stack`` afterwards).

Equations as torch.nn's cells (gate order i, f, g, o and r, z, n; the GRU's reset gate multiplies
ĥ_n = W_hn h + b_hn, as cuDNN does), with x̂ = W_ih x + b_ih and ĥ = W_hh h + b_hh:

    LSTM  c' = σ(x̂_f + ĥ_f) ⊙ c + σ(x̂_i + ĥ_i) ⊙ tanh(x̂_g + ĥ_g),   h' = σ(x̂_o + ĥ_o) ⊙ tanh(c')
    GRU   r = σ(x̂_r + ĥ_r),  z = σ(x̂_z + ĥ_z),  n = tanh(x̂_n + r ⊙ ĥ_n),  h' = n + z ⊙ (h − n)

Float32 uses :func:`rnnlab.nn._min_scan._exp` (exp in arithmetic, so LLVM vectorises the loop over H;
tanh(v) = 2σ(2v) − 1); float64 uses ``math.exp`` and is exact to rounding (the tests hold it to torch's cells at
1e-12). Each inner loop runs over H contiguous elements of one row.
"""
from __future__ import annotations

import numba

from ._min_scan import _JIT, _sigmoid

__all__ = ["lstm_gates", "gru_gates"]


@numba.njit(inline="always", **_JIT)
def _tanh(v, one):
    two = one + one
    return two * _sigmoid(two * v, one) - one


@numba.njit(**_JIT)
def gru_gates(xp, b_x, hp, b_h, h, out, one):  # pragma: no cover - compiled
    """xp (B, 3H) = x W_ihᵀ, hp (B, 3H) = h W_hhᵀ, b_x = b_ih, b_h = b_hh (3H,), h (B, H) the previous state ->
    out (B, H) the new one (may not alias h). ``one``: 1 in the arrays' dtype (a literal would promote float32 to
    float64)."""
    B, H = h.shape
    for b in range(B):
        x_, h_, prev, new = xp[b], hp[b], h[b], out[b]
        for j in range(H):
            r = _sigmoid(x_[j] + b_x[j] + h_[j] + b_h[j], one)  # reset gate
            z = _sigmoid(x_[H + j] + b_x[H + j] + h_[H + j] + b_h[H + j], one)  # update gate
            n = _tanh(x_[2 * H + j] + b_x[2 * H + j] + r * (h_[2 * H + j] + b_h[2 * H + j]), one)  # candidate
            new[j] = n + z * (prev[j] - n)  # (1 − z) ⊙ n + z ⊙ h


@numba.njit(**_JIT)
def lstm_gates(xp, b_x, hp, b_h, c, h_out, c_out, one):  # pragma: no cover - compiled
    """xp (B, 4H) = x W_ihᵀ, hp (B, 4H) = h W_hhᵀ, b_x = b_ih, b_h = b_hh (4H,), c (B, H) the previous cell ->
    h_out, c_out (B, H) (may not alias c)."""
    B, H = c.shape
    for row in range(B):
        x_, h_, c_prev, h_new, c_new = xp[row], hp[row], c[row], h_out[row], c_out[row]
        for j in range(H):
            i = _sigmoid(x_[j] + b_x[j] + h_[j] + b_h[j], one)  # input gate
            f = _sigmoid(x_[H + j] + b_x[H + j] + h_[H + j] + b_h[H + j], one)  # forget gate
            g = _tanh(x_[2 * H + j] + b_x[2 * H + j] + h_[2 * H + j] + b_h[2 * H + j], one)  # candidate
            o = _sigmoid(x_[3 * H + j] + b_x[3 * H + j] + h_[3 * H + j] + b_h[3 * H + j], one)  # output gate
            cj = f * c_prev[j] + i * g
            c_new[j] = cj
            h_new[j] = o * _tanh(cj, one)

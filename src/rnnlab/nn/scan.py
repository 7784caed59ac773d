"""The diagonal linear recurrence h_t = a_t ⊙ h_{t-1} + b_t, computed three ways.

Every layer whose recurrence is linear in h (minGRU, minLSTM; Feng et al., 2024,
"Were RNNs All We Needed?", §3) reduces to this scan once its gates are known,
because the gates depend on x_t only. Shapes, batch first:

    a, b    (B, T, H)   decay and input of each step
    h0      (B, H)      state before the first step
    h       (B, T, H)   h_1 … h_T

* :func:`linear_scan` — the one to call. On CPU float32/float64 tensors it runs a
  numba kernel forward and a hand-written backward (below); everything else (CUDA,
  bf16, half) goes through :func:`doubling_scan`, a pure-torch parallel scan.
* :func:`log_space_scan` — Heinsen (2023), "Efficient Parallelization of a
  Ubiquitous Sequential Computation": the pure-torch scan for positive a and b
  given as logarithms, the form the paper uses on GPUs (Feng et al., §3.1.3, §B).
* :func:`sequential_scan` — the plain loop over t, the reference for tests.

Backward of the scan, with g_t = ∂L/∂h_t and G_t = ∂L/∂h_t through all later steps:

    G_T = g_T,   G_t = g_t + a_{t+1} ⊙ G_{t+1}
    ∂L/∂b_t = G_t,   ∂L/∂a_t = G_t ⊙ h_{t-1},   ∂L/∂h0 = a_1 ⊙ G_1

so the backward is the same scan run in reverse, and it needs only a, h and h0.
"""
from __future__ import annotations

from typing import Optional

import numba
import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["linear_scan", "log_space_scan", "sequential_scan", "doubling_scan", "numba_threads"]

_NUMBA_DTYPES = (torch.float32, torch.float64)


# ---------------------------------------------------------------------------------------------
# numba kernels. Layout (B, T, H) contiguous: loop over rows (or row slices of H columns), walk t,
# and run the inner loop over a contiguous run of h, which LLVM vectorises.
#
# Serial on purpose. Measured on the 2-core target at (B, T, H) = (16, 1024, 256), float32, with
# parallel=True and prange over the work items: forward 24 ms parallel vs 32 ms serial, but
# forward + backward 153 ms vs 140 ms, and on a loaded machine a tiny call took milliseconds
# instead of microseconds, because every parallel region waits for a thread that torch's own
# OpenMP pool (spinning after each op) or another process has descheduled. The scan is memory
# bound, so the second core buys little; torch keeps it for the Linear and the gate math.
# numba_threads() still caps numba's pool at torch's thread count for any parallel caller.
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _scan_forward_kernel(a, b, h0, h, n_chunks):  # pragma: no cover - compiled
    B, T, H = a.shape
    width = (H + n_chunks - 1) // n_chunks
    for item in range(B * n_chunks):
        i = item // n_chunks
        j0 = (item % n_chunks) * width
        j1 = min(j0 + width, H)
        for j in range(j0, j1):
            h[i, 0, j] = a[i, 0, j] * h0[i, j] + b[i, 0, j]
        for t in range(1, T):
            for j in range(j0, j1):
                h[i, t, j] = a[i, t, j] * h[i, t - 1, j] + b[i, t, j]


@numba.njit(cache=True, nogil=True)
def _scan_backward_kernel(a, h, h0, g, da, db, dh0, n_chunks):  # pragma: no cover - compiled
    B, T, H = a.shape
    width = (H + n_chunks - 1) // n_chunks
    for item in range(B * n_chunks):
        i = item // n_chunks
        j0 = (item % n_chunks) * width
        j1 = min(j0 + width, H)
        # db doubles as the store of G: ∂L/∂b_t = G_t
        for j in range(j0, j1):
            db[i, T - 1, j] = g[i, T - 1, j]
        for t in range(T - 2, -1, -1):
            for j in range(j0, j1):
                db[i, t, j] = g[i, t, j] + a[i, t + 1, j] * db[i, t + 1, j]
        for t in range(T - 1, 0, -1):
            for j in range(j0, j1):
                da[i, t, j] = db[i, t, j] * h[i, t - 1, j]
        for j in range(j0, j1):
            da[i, 0, j] = db[i, 0, j] * h0[i, j]
            dh0[i, j] = a[i, 0, j] * db[i, 0, j]


def numba_threads() -> int:
    """Threads for the numba kernels: as many as torch uses, never more than numba has.

    torch's OpenMP pool and numba's pool are separate; letting each take every core would
    oversubscribe the machine, so numba follows ``torch.get_num_threads()``.
    """
    n = max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads()))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


def _n_chunks(batch: int, hidden: int, threads: int) -> int:
    """Split each row's H columns only when there are fewer rows than threads (small-batch inference)."""
    if batch >= threads:
        return 1
    return max(1, min(-(-threads // max(batch, 1)), hidden // 16))


def _as_numpy(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


class _NumbaLinearScan(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # bf16 autocast: the kernel runs in float32
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        a, b, h0 = a.contiguous(), b.contiguous(), h0.contiguous()
        B, T, H = a.shape
        h = torch.empty_like(a)  # (B, T, H)
        chunks = _n_chunks(B, H, numba_threads())
        _scan_forward_kernel(_as_numpy(a), _as_numpy(b), _as_numpy(h0), _as_numpy(h), chunks)
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, g: Tensor):
        a, h0, h = ctx.saved_tensors
        g = g.contiguous()  # e.g. the expanded ones of outputs.sum()
        da, db, dh0 = torch.empty_like(a), torch.empty_like(a), torch.empty_like(h0)
        B, T, H = a.shape
        chunks = _n_chunks(B, H, numba_threads())
        _scan_backward_kernel(
            _as_numpy(a), _as_numpy(h), _as_numpy(h0), _as_numpy(g),
            _as_numpy(da), _as_numpy(db), _as_numpy(dh0), chunks,
        )
        return da, db, dh0


def _check_scan_args(a: Tensor, b: Tensor, h0: Optional[Tensor], names=("a", "b", "h0")) -> Tensor:
    na, nb, nh = names
    for name, t in ((na, a), (nb, b)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, T, H), got {type(t).__name__}")
        if t.dim() != 3:
            raise ValueError(f"{name} must have shape (B, T, H), got shape {tuple(t.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{nb} must have the shape of {na}, {tuple(a.shape)}, got {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"{nb} must have the dtype of {na}, {a.dtype}, got {b.dtype}")
    B, _, H = a.shape
    if h0 is None:
        return a.new_zeros(B, H)
    if not isinstance(h0, Tensor):
        raise TypeError(f"{nh} must be a torch.Tensor of shape ({B}, {H}), got {type(h0).__name__}")
    if tuple(h0.shape) != (B, H):
        raise ValueError(f"{nh} must have shape (B, H) = ({B}, {H}), got {tuple(h0.shape)}")
    if h0.dtype != a.dtype:
        raise TypeError(f"{nh} must have the dtype of {na}, {a.dtype}, got {h0.dtype}")
    return h0


def linear_scan(a: Tensor, b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """h_t = a_t ⊙ h_{t-1} + b_t for t = 1 … T, autograd-aware.

    a, b: (B, T, H); h0: (B, H) or None for zeros. Returns h: (B, T, H).
    CPU float32/float64 runs the fused numba kernel; other devices and dtypes run
    :func:`doubling_scan`. a and b may have any sign.
    """
    h0 = _check_scan_args(a, b, h0)
    if a.shape[1] == 0:
        return a.new_empty(a.shape)
    if a.device.type == "cpu" and a.dtype in _NUMBA_DTYPES:
        return _NumbaLinearScan.apply(a, b, h0)
    return doubling_scan(a, b, h0)


def doubling_scan(a: Tensor, b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """The same recurrence as a pure-torch parallel scan (Hillis & Steele, 1986).

    Steps compose as (a, b) ∘ (a', b') = (a a', a b' + b); after folding h0 into b_1,
    ⌈log2 T⌉ rounds of combining each step with the one d = 1, 2, 4, … earlier leave
    h_t in b_t. O(T log T) work, but every round is one batched op, and any sign works.
    """
    h0 = _check_scan_args(a, b, h0)
    T = a.shape[1]
    b = torch.cat([a[:, :1] * h0.unsqueeze(1) + b[:, :1], b[:, 1:]], dim=1)  # fold h0 into b_1
    d = 1
    while d < T:
        b = torch.cat([b[:, :d], a[:, d:] * b[:, :-d] + b[:, d:]], dim=1)
        a = torch.cat([a[:, :d], a[:, d:] * a[:, :-d]], dim=1)
        d *= 2
    return b


def log_space_scan(log_a: Tensor, log_b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """h_t = a_t ⊙ h_{t-1} + b_t for positive a, b given as log a, log b (Heinsen, 2023).

    With a*_t = Σ_{s≤t} log a_s (a cumulative sum over time),

        h_t = exp(a*_t + logcumsumexp_{s≤t}(log b_s − a*_s)) + exp(a*_t) ⊙ h0

    The h0 term is kept outside the logarithm, so h0 may have any sign, zero included.
    log_a, log_b: (B, T, H); h0: (B, H) or None for zeros. Returns h: (B, T, H).
    """
    h0 = _check_scan_args(log_a, log_b, h0, names=("log_a", "log_b", "h0"))
    a_star = torch.cumsum(log_a, dim=1)  # (B, T, H)
    log_h = a_star + torch.logcumsumexp(log_b - a_star, dim=1)  # (B, T, H)
    return torch.exp(log_h) + torch.exp(a_star) * h0.unsqueeze(1)


def sequential_scan(a: Tensor, b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """The recurrence as a loop over t: the reference the others are tested against."""
    h = _check_scan_args(a, b, h0)
    hs = []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]  # (B, H)
        hs.append(h)
    if not hs:
        return a.new_empty(a.shape)
    return torch.stack(hs, dim=1)  # (B, T, H)

r"""A whole-sequence GRU (Cho et al., 2014) on the CPU: faster than torch's per-step GRU, and it runs the
options torch's kernels cannot: layer norm inside the cell (Ba et al., 2016, §3.1) and variational
recurrent dropout (Gal & Ghahramani, 2016, §4). The reset gate multiplies (W_hn h + b_hn), as cuDNN and
``torch.nn.GRU`` do, so the weights are torch.nn's.

Shapes (batch first): x (B, T, I); h0 (B, H); weight_ih (3H, I), weight_hh (3H, H), biases (3H,), gates
stacked r, z, n as in ``torch.nn.GRU``; y (B, T, H). G = 3H.

.. math::
    \hat x_t &= W_{ih} x_t                          &&\text{(all t at once, one matrix product)} \\
    \hat x_t &\leftarrow LN(\hat x_t)\,\gamma_{ih}    &&\text{(layer norm only)} \\
    \hat h_t &= W_{hh} (h_{t-1} \odot m)             &&\text{(m: dropout mask, the same at every step; 1 when off)} \\
    \hat h_t &\leftarrow LN(\hat h_t)\,\gamma_{hh}    &&\text{(layer norm only)} \\
    r &= \sigma(\hat x_r + b_{ir} + \hat h_r + b_{hr})          &&\text{reset gate} \\
    z &= \sigma(\hat x_z + b_{iz} + \hat h_z + b_{hz})          &&\text{update gate} \\
    n &= \tanh(\hat x_n + b_{in} + r \odot (\hat h_n + b_{hn})) &&\text{candidate} \\
    h_t &= (1 - z) \odot n + z \odot h_{t-1}, \qquad y_t = h_t

LN(v) = (v - mean(v)) / sqrt(var(v) + eps) over the last dim (biased variance), with a gain and no shift
(the biases are the shift). The mask touches only the product, not the carried h_{t-1}. With ``lengths``,
a row past its length keeps its state and outputs zeros, so hT is the state at its last real step.

Implementation (CPU, float32/float64), as :mod:`rnnlab.nn.fused_lstm`: the input product (and its layer
norm) for all steps at once; per step one matrix product for the recurrent product and one serial numba
kernel for everything element-wise. Training runs a ``torch.autograd.Function`` whose hand-written
backward through time does one kernel and one product per step and collects the pre-activation
gradients of all steps, so dW_ih, dW_hh and dx are single matmuls at the end. The products run on oneDNN in
float32 (:mod:`rnnlab.nn._gemm`: about 1.5x MKL's speed here; per-step products of small layers stay on
``torch.mm``, whose call costs less, and a layer small enough (:func:`rnnlab.nn._gemm.numba_splits`) runs its
whole time loops, forward and backward, inside numba, the product on the register-blocked
:func:`rnnlab.nn._ukernel.matmul_packed`), and what the forward saves for the backward lives in one pooled buffer
(:func:`rnnlab.nn._workspace.saved_buffer`: no page faults on tens of megabytes per training step). Without grad
(inference, ``torch.no_grad()``) :func:`_infer` keeps nothing for a backward pass: its kernel (:func:`_infer_step`)
runs the gates, the candidate and h_t, y_t, h_t ⊙ m in one loop over H per row; a small layer takes x_t W_ihᵀ
inside its whole loop (:func:`_infer_rows`), a larger one x̂ batch-major for all steps into reused scratch.
Anything else (another device or dtype) runs :func:`gru_sequence_reference`, the plain autograd loop.
Double backward is not supported.

The kernels slice no array inside their loop over rows, as the LSTM's (see :mod:`rnnlab.nn.fused_lstm`: a slice
costs numba a reference-count increment and decrement, and the GRU's step sliced a dozen per row): they index the
per-call arrays by loop variables or unsigned offsets (a signed offset index gets numba's negative-index wraparound,
which keeps LLVM from vectorising), and what the training forward saves lies in one plane per section (SV (5, B, T,
H), :func:`_layout`): a loop that read one section of a saved row and stored another at a runtime offset stayed
scalar (1.3-1.6x the slicing kernel's time at H >= 256). Measured (benchmarks/sequence_ab.py, one thread, A/B
against the slicing kernels, layers of the five benchmark shapes): inference 0.45-0.79x the time (1.0x for a plain
(64, 100, 256, 512), whose per-step products are ~90% of it), a training step 0.81-1.0x; the kernels alone, forward
0.61-0.95x and backward 0.34-0.91x.
Where the time goes, against torch.nn.GRU: ``benchmarks/profile_fused_gru.py``.

The whole loops on several threads (as the LSTM's, :mod:`rnnlab.nn.fused_lstm`): with more than one torch thread
the batch is split into one range of rows per thread, at least 4 rows each (:func:`rnnlab.nn._gemm.numba_splits`,
which also decides per range between the whole loop and the per-step product), and each range runs its own whole
loop, forward, backward or inference, at the same time as the others on torch's OpenMP team
(:func:`rnnlab.nn._parallel.run_split`, one dispatch per call). Rows never interact, so the ranges need no
synchronisation; each range sums its own bias and gain gradients (a row of ACC), added up after. The kernels take
the range as ``b0, b1`` and loop ``for b in range(_u(b0), _u(b1))`` (unsigned: no wraparound check on b); the
buffers stay batch-major, a range's product reading its rows of h ⊙ m at step t (HM[b0:b1, t], strided, which the
micro-kernel takes) into its rows of ĥ (HP[b0:b1], contiguous rows). Inference computes x_t W_ihᵀ for the range's
rows inside the loop (no torch call in it): at one thread 0.96-1.03x the time of the chunked oneDNN input product it
replaced, at two threads 0.84-0.94x (interleaved, 7 rounds, loaded machine). Measured (benchmarks/fused_gru.py
--threads 2 --rounds 5, twice each, alternating with the tree before the split, ratio to torch.nn.GRU, new / old):
inference 0.55-0.68x at (32, 100, 128, 256), (64, 200, 64, 128), (16, 1024, 128, 256), a training step 0.62-0.81x;
(8, 500, 32, 64) (two ranges of 4 rows) 0.83-0.86x training, 0.85-1.04x inference (noise: a millisecond on a loaded
machine); (64, 100, 256, 512), now two whole loops of 32 rows instead of the per-step product on both threads,
0.91-0.93x inference and, against the per-step path in one process (9 rounds), 0.92-0.96x training. At one thread
(benchmarks/sequence_ab.py against the module before, --clock cpu, 11 rounds) 0.96-0.99x inference and 0.97-1.02x
training: no change.
"""
from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from ._checks import check_sequence_args
from ._gemm import input_and_weight_grads, linear_into, numba_splits, step_product
from ._parallel import aligned_empty, aligned_rows, run_split
from ._reference import keep_past_end, pre_activation
from ._torch_kernels import native_layer_norm
from ._ukernel import matmul_packed, pack_panels
from ._workspace import saved_buffer, scratch
from .fused_lstm import (
    _JIT,
    _ONE,
    _ZERO,
    _scalars,
    _sigmoid,
    _tanh,
    _u,
    sequence_buffers,
)
from .masking import lengths_to_mask

__all__ = ["gru_sequence", "gru_sequence_reference"]


# ----------------------------------------------------------------------------------------------------
# Reference: the equations, one step at a time, under autograd.
# ----------------------------------------------------------------------------------------------------


def gru_sequence_reference(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *,
                           ln_ih=None, ln_hh=None, eps=1e-5, mask=None, lengths=None):
    """The module's equations as a plain autograd loop over time. Same contract as :func:`gru_sequence`."""
    x, h, lengths = _check_args(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask, lengths)
    T = x.shape[1]
    x_hat = pre_activation(x, weight_ih, ln_ih, bias_ih, eps)  # (B, T, G)
    active = lengths_to_mask(lengths, T, device=x.device)  # (B, T) or None
    ys = []
    for t in range(T):
        h_hat = pre_activation(h if mask is None else h * mask, weight_hh, ln_hh, bias_hh, eps)  # (B, G)
        x_r, x_z, x_n = x_hat[:, t].chunk(3, dim=1)
        h_r, h_z, h_n = h_hat.chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)  # reset gate
        z = torch.sigmoid(x_z + h_z)  # update gate
        n = torch.tanh(x_n + r * h_n)  # candidate
        h_new = (1.0 - z) * n + z * h
        h, y = keep_past_end(h_new, h, active, t)
        ys.append(y)
    return torch.stack(ys, dim=1), h  # (B, T, H), (B, H)


# ----------------------------------------------------------------------------------------------------
# Public entry point.
# ----------------------------------------------------------------------------------------------------


def gru_sequence(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *,
                 ln_ih=None, ln_hh=None, eps=1e-5, mask=None, lengths=None):
    """Run the GRU of this module's equations over a whole sequence.

    x (B, T, I); h0 (B, H) or None (zeros); weight_ih (3H, I); weight_hh (3H, H); bias_ih, bias_hh (3H,) or
    None (zero). Layer norm is on iff ``ln_ih`` is given: ln_ih, ln_hh gains γ (3H,). ``mask`` (B, H): the
    recurrent dropout mask on h_{t-1} (0 or 1/(1-p)), gets no gradient. ``lengths`` (B,) integers in [1, T].
    Returns y (B, T, H), hT (B, H).

    On the CPU in float32/float64 this runs the fused kernels; otherwise the reference loop.
    """
    x, h0, lengths = _check_args(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask, lengths)
    tensors = (x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask)
    present = [t for t in tensors if t is not None]
    fused = all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in present)
    if not fused:
        return gru_sequence_reference(x, h0, weight_ih, weight_hh, bias_ih, bias_hh,
                                      ln_ih=ln_ih, ln_hh=ln_hh, eps=eps, mask=mask, lengths=lengths)
    if torch.is_grad_enabled() and any(t.requires_grad for t in present):
        return _FusedGRU.apply(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask, lengths, float(eps))
    with torch.no_grad():  # inference: nothing kept for a backward pass
        return _infer(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask, lengths, float(eps))


def _check_args(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask, lengths):
    """Validate shapes and dtypes; returns x, h0 (zeros for None) and lengths (CPU int64 or None)."""
    x, (h0,), lengths = check_sequence_args(
        x, {"h0": h0}, weight_ih, weight_hh, {"bias_ih": bias_ih, "bias_hh": bias_hh, "ln_ih": ln_ih, "ln_hh": ln_hh},
        mask, lengths, num_gates=3)
    if (ln_ih is None) != (ln_hh is None):
        raise ValueError("layer norm needs ln_ih and ln_hh together (or neither)")
    return x, h0, lengths


# ----------------------------------------------------------------------------------------------------
# The Python side of the kernels: the forward loop, and the autograd function around it.
# ----------------------------------------------------------------------------------------------------


def _layout(G: int, H: int, ln: bool) -> int:
    """Elements saved per (b, t): five planes of H, r, z, n, ĥ_n + b_hn, h_{t-1} (SV (5, B, T, H): a plane per
    section, so that a kernel loop reading some sections and writing another reads and writes distinct arrays, which
    LLVM vectorises; sections of one row at runtime offsets it left scalar), and with layer norm [ĥ normed G | rstd
    of x̂, ĥ 2] (SL (B, T, G + 2))."""
    return 5 * H + ((G + 2) if ln else 0)


def _saved(work: Tensor, B: int, T: int, G: int, H: int, ln: bool) -> tuple[Tensor, Tensor]:
    """SV (5, B, T, H) and SL (B, T, G + 2, or 0 without layer norm), views of ``work`` (B·T·K elements)."""
    n = 5 * B * T * H
    return work[:n].view(5, B, T, H), work[n:].view(B, T, (G + 2) if ln else 0)


def _work_size(B: int, T: int, G: int, H: int, ln: bool) -> int:
    """Elements of the flat buffer :func:`_forward` works in: x̂ (B, T, G), h ⊙ m (B, T, H) and the per-step rows
    (B, T, K) the backward pass reads."""
    return B * T * (G + H + _layout(G, H, ln))


def _forward(x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths, eps, *, work):
    """The forward pass of training under no_grad. Returns Y (B, T, H), hT (B, H) and what the backward needs.
    (Inference runs :func:`_infer`.) ``work``: a flat buffer of :func:`_work_size` elements for x̂, h ⊙ m and the
    per-step values the backward needs."""
    B, T, _ = x.shape
    G, H = W_hh.shape
    ln = g_ih is not None
    dtype = x.dtype
    x = x.detach().contiguous()  # saved for the backward pass, which reads it as (B·T, I)
    n = B * T * (G + H)
    XP, HM, Y, m, L, T_run = sequence_buffers(x, h0, W_ih, H, mask, lengths, work[:n])
    P = _pack_params(b_ih, b_hh, g_ih, g_hh, G, dtype)
    ST = h0.detach().clone().contiguous()  # (B, H): the running h
    SV, SL = _saved(work[n:], B, T, G, H, ln)
    if ln:  # LN(x̂) for all steps at once, on torch's threads; the kernel reads it, the backward too
        XP, _, rstd_x = native_layer_norm(XP, [G], None, None, eps)
        SL[:, :, G] = rstd_x.view(B, T)
    SC = _scalars(eps, G, H, dtype)

    XP_, P_, M_, L_, ST_, Y_, HM_, SV_, SL_ = (a.numpy() for a in (XP, P, m, L, ST, Y, HM, SV, SL))
    splits = numba_splits(B, H, G)
    if splits is not None:  # a small layer: the whole time loop in numba, the product too; a range of rows per thread
        Wp = pack_panels(W_hh.detach().t().numpy())  # W_hhᵀ (H, G) in panels, once per call
        HP_ = aligned_empty((B, G), XP_.dtype)  # ĥ_t, each range its own rows (no cache line shared across ranges)
        run_split(_forward_loop, [(T_run, XP_, HP_, Wp, P_, M_, L_, ST_, Y_, HM_, SV_, SL_, SC, ln, b0, b1)
                                  for b0, b1 in splits])
        return Y, ST, (x, m, L, P, XP, HM, work[n:], T_run)
    product = step_product(W_hh, B)  # h_{t-1} ⊙ m ↦ ĥ_t, on oneDNN or torch.mm (see _gemm)
    hm_steps = HM.unbind(1)
    for t in range(T_run):
        HP_ = product(hm_steps[t])  # ĥ_t (B, G)
        _forward_step(t, XP_, HP_, P_, M_, L_, ST_, Y_, HM_, SV_, SL_, SC, ln, 0, B)
    return Y, ST, (x, m, L, P, XP, HM, work[n:], T_run)


def _infer(x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths, eps):
    """The forward pass for inference (no grad): Y (B, T, H) and hT (B, H); nothing else kept.

    Y is written time-major (one block per step) and returned as a (B, T, H) view; the kernel (:func:`_infer_step`)
    normalises x̂ and ĥ per row (layer norm), runs the gates in one loop over H and writes only h, y and the next
    product's operand h ⊙ m. A small layer (:func:`rnnlab.nn._gemm.numba_splits`) runs its whole time loop in one
    numba call per range of rows, both products included (:func:`_infer_rows`: x_t W_ihᵀ and (h_{t-1} ⊙ m) W_hhᵀ
    for the range's rows, as the LSTM's inference); a larger one computes x̂ batch-major for all steps into reused
    scratch and the per-step product from Python (:func:`rnnlab.nn._gemm.step_product`)."""
    B, T, I = x.shape
    G, H = W_hh.shape
    dtype = x.dtype
    ln = g_ih is not None
    m = torch.ones(B, H, dtype=dtype) if mask is None else mask.detach().contiguous()
    L = torch.full((B,), T, dtype=torch.int64) if lengths is None else lengths.contiguous()
    T_run = int(L.max())  # no step past the longest row does work
    P = _pack_params(b_ih, b_hh, g_ih, g_hh, G, dtype)
    ST = h0.detach().clone().contiguous()  # (B, H): the running h, in the end hT
    HN = (h0.detach() * m).contiguous()  # (B, H): h_{t-1} ⊙ m, the operand of the recurrent product
    Y = torch.empty(T, B, H, dtype=dtype)  # time-major: a step writes one contiguous block; returned as a view
    if T_run < T:
        Y[T_run:].zero_()
    SC = _scalars(eps, G, H, dtype)
    x, W_ih = x.detach(), W_ih.detach()
    HP = torch.empty(B, G, dtype=dtype)  # ĥ_t in the whole-loop path
    HP_, P_, M_, L_, ST_, Y_, HN_ = (a.numpy() for a in (HP, P, m, L, ST, Y, HN))
    splits = numba_splits(B, H, G)
    if splits is not None:  # both products inside the loop, a range of rows per thread
        Wxp = pack_panels(W_ih.t().numpy())  # W_ihᵀ (I, G) in panels, once per call
        Wp = pack_panels(W_hh.detach().t().numpy())  # W_hhᵀ (H, G)
        XH = aligned_empty((1, B, G), Y_.dtype)  # x̂_t (aligned: no cache line shared across a range boundary)
        X = x.contiguous().numpy()
        run_split(_infer_rows, [(T_run, X, Wxp, Wp, XH, HP_, P_, M_, L_, ST_, Y_, HN_, SC, ln, b0, b1)
                                for b0, b1 in splits], fresh=(Y_,))
        return Y.transpose(0, 1), ST  # (B, T, H), not contiguous (as torch.nn.GRU's batch_first output)
    # a larger layer: its per-step products outweigh keeping x̂ in cache; x̂ of all steps in reused scratch
    product = step_product(W_hh, B)  # h ⊙ m ↦ ĥ_t (B, G), on oneDNN or torch.mm
    with scratch(B * T * G, dtype) as work:
        XP = linear_into(x.reshape(B * T, I), W_ih, work.view(B * T, G))  # batch-major: no copy of x
        XP_ = XP.numpy().reshape(B, T, G)
        for t in range(T_run):
            _infer_step(t, t, XP_, product(HN), P_, M_, L_, ST_, Y_, HN_, SC, ln, False, 0, B)
    return Y.transpose(0, 1), ST  # (B, T, H), not contiguous (as torch.nn.GRU's batch_first output)


class _FusedGRU(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # bf16 autocast: the kernel runs in float32
    def forward(ctx, x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths, eps):
        B, T, _ = x.shape
        G, H = W_hh.shape
        work = saved_buffer(_work_size(B, T, G, H, g_ih is not None), x.dtype)  # pooled: see _workspace
        Y, hT, (x, m, L, P, XP, HM, SV, T_run) = _forward(x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths,
                                                          eps, work=work)
        ctx.save_for_backward(x, W_ih, W_hh, m, L, XP, HM, SV)
        ctx.P = P
        ctx.shape = (T_run, g_ih is not None, eps)
        return Y, hT

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, dY, dhT):
        x, W_ih, W_hh, m, L, XP, HM, SV = ctx.saved_tensors
        T_run, ln, eps = ctx.shape
        B, T, I = x.shape
        G, H = W_hh.shape
        dtype = x.dtype
        W_hh = W_hh.detach().contiguous()
        dY = dY.contiguous()
        with scratch(2 * B * T * G, dtype) as buf:  # reused between calls: fresh pages cost more than the kernel
            DXP = buf[:B * T * G].view(B, T, G)  # dL/d(W_ih x_t), pre-LN
            DHP = buf[B * T * G:].view(B, T, G)  # dL/d(W_hh (h_{t-1} ⊙ m)), pre-LN
            if T_run < T:
                DXP[:, T_run:].zero_()
                DHP[:, T_run:].zero_()
            DS = dhT.detach().clone().contiguous()  # (B, H): dL/dh_t carried back in time (the direct path only)
            DHM = torch.zeros(B, H, dtype=dtype)  # dL/d(h_t ⊙ m) through the next step's product (none after T)
            splits = numba_splits(B, G, H)
            ACC = aligned_rows(1 if splits is None else len(splits), 4 * G, np.float64)  # per range, own cache lines:
            # [db_ih | db_hh | dγ_ih | dγ_hh], summed after
            SC = _scalars(eps, G, H, dtype)

            dhp_steps = DHP.unbind(1)
            SV, SL = _saved(SV, B, T, G, H, ln)  # the saved rows' flat buffer as its planes
            dY_, DHM_, M_, L_, SV_, SL_, XP_, DXP_, DHP_, DS_ = (
                a.numpy() for a in (dY, DHM, m, L, SV, SL, XP, DXP, DHP, DS))
            P_ = ctx.P.numpy()
            if splits is not None:  # a small layer: the whole loop in numba per range of rows, as in the forward
                Wp = pack_panels(W_hh.numpy())  # W_hh (G, H) in panels: DHM = DHP_t W_hh
                run_split(_backward_loop, [(T_run, Wp, dY_, DHM_, P_, M_, L_, SV_, SL_, XP_, DXP_, DHP_, DS_, ACC[s],
                                            SC, ln, b0, b1) for s, (b0, b1) in enumerate(splits)])
            else:
                product = step_product(W_hh.t(), B)  # DHP_t ↦ DHP_t W_hh = dL/d(h_{t-1} ⊙ m)
                for t in range(T_run - 1, -1, -1):
                    _backward_step(t, dY_, DHM_, P_, M_, L_, SV_, SL_, XP_, DXP_, DHP_, DS_, ACC[0], SC, ln, 0, B)
                    DHM_ = product(dhp_steps[t])  # (B, H)

            need = ctx.needs_input_grad
            dh0 = DS + torch.from_numpy(DHM_) * m if need[1] else None
            dx, dW_ih, dW_hh = input_and_weight_grads(DXP, DHP, x, HM, W_ih.detach(), need[0], need[2], need[3])
        acc = torch.from_numpy(ACC.sum(axis=0)).to(dtype)
        db_ih = acc[:G].clone() if need[4] else None
        db_hh = acc[G:2 * G].clone() if need[5] else None
        dg_ih = acc[2 * G:3 * G].clone() if need[6] else None
        dg_hh = acc[3 * G:].clone() if need[7] else None
        return dx, dh0, dW_ih, dW_hh, db_ih, db_hh, dg_ih, dg_hh, None, None, None


def _pack_params(b_ih, b_hh, g_ih, g_hh, G, dtype) -> Tensor:
    """[b_ih (G) | b_hh (G) | γ_ih (G) | γ_hh (G)] as one flat vector (fewer kernel arguments)."""
    P = torch.zeros(4 * G, dtype=dtype)
    with torch.no_grad():
        for k, v in enumerate((b_ih, b_hh, g_ih, g_hh)):
            if v is not None:
                P[k * G:(k + 1) * G] = v
    return P


# ----------------------------------------------------------------------------------------------------
# numba kernels: one time step of the element-wise work, forward and backward.
# ----------------------------------------------------------------------------------------------------


@numba.njit(**_JIT)
def _forward_step(t, XP, HP, P, M, L, ST, Y, HM, SV, SL, SC, ln, b0, b1):
    """Step t of training for rows b0 <= b < b1. XP (B, T, G) x̂, or LN(x̂) with layer norm (its rstd in SL); HP (B, G)
    ĥ_t; P packed params; M (B, H) mask; L (B,) lengths; ST (B, H) h (updated); Y (B, T, H) written at t and
    HM (B, T, H) h ⊙ m at t+1; SV (5, B, T, H) and SL (B, T, G + 2) what the backward pass reads (:func:`_layout`).
    As the LSTM's kernels (:mod:`rnnlab.nn.fused_lstm`): no array is sliced inside the loop over rows (a slice
    costs numba a reference-count increment and decrement); offsets into a row are unsigned
    (:func:`rnnlab.nn.fused_lstm._u`), and each inner loop stores into one array that it does not read at another
    offset, so that it runs contiguous and vectorises."""
    T, G = XP.shape[1], XP.shape[2]
    H = G // 3
    eps, inv_g = SC[0], SC[1]
    b_ih, b_hh, g_ih, g_hh = P[0:G], P[G:2 * G], P[2 * G:3 * G], P[3 * G:4 * G]
    R, Z, N, HN, HPV = SV[0], SV[1], SV[2], SV[3], SV[4]  # (B, T, H) each: r, z, n, ĥ_n + b_hn, h_{t-1}
    o_z, o_n, o_rs = _u(H), _u(2 * H), _u(G)
    last = t + 1 == T
    tn = min(t + 1, T - 1)
    zero = _ZERO * SC[0]
    for b in range(_u(b0), _u(b1)):  # unsigned: no negative-index wraparound on b
        if t >= L[b]:  # past this row's end: state frozen, output zero
            for j in range(H):
                Y[b, t, j] = zero
            if not last:
                for j in range(H):
                    HM[b, tn, j] = HM[b, t, j]
            continue
        if ln:
            s = zero
            for k in range(G):
                s += HP[b, k]
            mu = s * inv_g
            s2 = zero
            for k in range(G):
                d = HP[b, k] - mu
                s2 += d * d
            r1 = _ONE / np.sqrt(s2 * inv_g + eps)
            SL[b, t, o_rs + _u(1)] = r1
            for k in range(G):  # LN(ĥ), saved
                SL[b, t, k] = (HP[b, k] - mu) * r1
            for j in range(H):
                R[b, t, j] = _sigmoid(g_ih[j] * XP[b, t, j] + b_ih[j] + g_hh[j] * SL[b, t, j] + b_hh[j])
            for j in range(H):
                u = o_z + _u(j)
                Z[b, t, j] = _sigmoid(g_ih[u] * XP[b, t, u] + b_ih[u] + g_hh[u] * SL[b, t, u] + b_hh[u])
            for j in range(H):
                u = o_n + _u(j)
                HN[b, t, j] = g_hh[u] * SL[b, t, u] + b_hh[u]
            for j in range(H):  # the candidate
                u = o_n + _u(j)
                N[b, t, j] = _tanh(g_ih[u] * XP[b, t, u] + b_ih[u] + R[b, t, j] * HN[b, t, j])
        else:
            for j in range(H):
                R[b, t, j] = _sigmoid(XP[b, t, j] + b_ih[j] + HP[b, j] + b_hh[j])
            for j in range(H):
                u = o_z + _u(j)
                Z[b, t, j] = _sigmoid(XP[b, t, u] + b_ih[u] + HP[b, u] + b_hh[u])
            for j in range(H):
                u = o_n + _u(j)
                HN[b, t, j] = HP[b, u] + b_hh[u]
            for j in range(H):  # the candidate
                u = o_n + _u(j)
                N[b, t, j] = _tanh(XP[b, t, u] + b_ih[u] + R[b, t, j] * HN[b, t, j])
        for j in range(H):
            HPV[b, t, j] = ST[b, j]  # h_{t-1}
        for j in range(H):
            n = N[b, t, j]
            h = n + Z[b, t, j] * (ST[b, j] - n)  # h_t = (1 - z) n + z h_{t-1}
            ST[b, j] = h
            Y[b, t, j] = h
        if not last:
            for j in range(H):
                HM[b, tn, j] = ST[b, j] * M[b, j]


@numba.njit(**_JIT)
def _forward_loop(T_run, XP, HP, Wp, P, M, L, ST, Y, HM, SV, SL, SC, ln, b0, b1):
    """The forward time loop of a small layer in one call, for rows b0..b1-1: per step ĥ_t = (h_{t-1} ⊙ m) W_hhᵀ
    for those rows into HP[b0:b1] (HP (B, G)) with Wp = pack_panels(W_hhᵀ), W_hhᵀ (H, G), then
    :func:`_forward_step`. Same arrays as there. Rows never interact: several threads run this at once, each on its
    own range (:func:`rnnlab.nn._gemm.numba_splits`)."""
    for t in range(T_run):
        matmul_packed(HM[b0:b1, t], Wp, HP[b0:b1])
        _forward_step(t, XP, HP, P, M, L, ST, Y, HM, SV, SL, SC, ln, b0, b1)


@numba.njit(**_JIT)
def _infer_step(t, tx, XP, HP, P, M, L, ST, Y, HN, SC, ln, tm, b0, b1):
    """Step t of inference for rows b0 <= b < b1, keeping nothing for a backward pass. XP the raw x̂: with ``tm``
    (Tc, B, G) a chunk of steps, time-major, step t at XP[tx]; else (B, T, G), batch-major, step t at XP[:, t];
    HP (B, G) ĥ_t; P packed params; M (B, H) mask; L (B,) lengths; ST (B, H) h (updated); Y (T, B, H) written at
    t; HN (B, H) h_t ⊙ m for the next product (left as is past a row's end).

    Per row, with layer norm, one pass for the moments of x̂ and ĥ together (sums about the row's first element,
    so no cancellation when |mean| >> std), then one loop over H for the gates, the candidate and h_t, y_t,
    h_t ⊙ m. Arrays are sliced once per call, outside the loop over rows, and indexed by loop variables or
    unsigned offsets only (see :func:`_forward_step`)."""
    G = XP.shape[2]
    H = G // 3
    eps, inv_g = SC[0], SC[1]
    Yt = Y[t]  # (B, H)
    b_ih, b_hh, g_ih, g_hh = P[0:G], P[G:2 * G], P[2 * G:3 * G], P[3 * G:4 * G]
    o_z, o_n = _u(H), _u(2 * H)
    zero = _ZERO * SC[0]
    for b in range(_u(b0), _u(b1)):  # unsigned: no negative-index wraparound on b
        if t >= L[b]:  # past this row's end: state frozen, output zero
            for j in range(H):
                Yt[b, j] = zero
            continue
        i0, i1 = (_u(tx), b) if tm else (b, _u(t))  # the row of x̂ is XP[i0, i1] (no slice per row: a refcount)
        if ln:
            x0, h0 = XP[i0, i1, 0], HP[b, 0]
            sx, sh, qx, qh = zero, zero, zero, zero
            for k in range(G):
                dx = XP[i0, i1, k] - x0
                dh = HP[b, k] - h0
                sx += dx
                sh += dh
                qx += dx * dx
                qh += dh * dh
            dmx, dmh = sx * inv_g, sh * inv_g  # mean minus the first element
            rx = _ONE / np.sqrt(max(qx * inv_g - dmx * dmx, zero) + eps)
            rh = _ONE / np.sqrt(max(qh * inv_g - dmh * dmh, zero) + eps)
            mx, mh = x0 + dmx, h0 + dmh
            for j in range(H):
                uz, un = o_z + _u(j), o_n + _u(j)
                r = _sigmoid(g_ih[j] * ((XP[i0, i1, j] - mx) * rx) + b_ih[j]
                             + g_hh[j] * ((HP[b, j] - mh) * rh) + b_hh[j])
                z = _sigmoid(g_ih[uz] * ((XP[i0, i1, uz] - mx) * rx) + b_ih[uz]
                             + g_hh[uz] * ((HP[b, uz] - mh) * rh) + b_hh[uz])
                n = _tanh(g_ih[un] * ((XP[i0, i1, un] - mx) * rx) + b_ih[un]
                          + r * (g_hh[un] * ((HP[b, un] - mh) * rh) + b_hh[un]))
                h = n + z * (ST[b, j] - n)  # h_t = (1 - z) n + z h_{t-1}
                ST[b, j] = h
                Yt[b, j] = h
                HN[b, j] = h * M[b, j]
        else:
            for j in range(H):
                uz, un = o_z + _u(j), o_n + _u(j)
                r = _sigmoid(XP[i0, i1, j] + b_ih[j] + HP[b, j] + b_hh[j])
                z = _sigmoid(XP[i0, i1, uz] + b_ih[uz] + HP[b, uz] + b_hh[uz])
                n = _tanh(XP[i0, i1, un] + b_ih[un] + r * (HP[b, un] + b_hh[un]))
                h = n + z * (ST[b, j] - n)
                ST[b, j] = h
                Yt[b, j] = h
                HN[b, j] = h * M[b, j]


@numba.njit(**_JIT)
def _infer_rows(T_run, X, Wxp, Wp, XH, HP, P, M, L, ST, Y, HN, SC, ln, b0, b1):
    """Steps 0..T_run-1 of :func:`_infer_step` for rows b0..b1-1 with both products in the loop: x̂_t = x_t W_ihᵀ
    (X (B, T, I) batch-major as given, Wxp = pack_panels(W_ihᵀ)) into XH (1, B, G) and ĥ_t = (h_{t-1} ⊙ m) W_hhᵀ
    into HP (B, G), for those rows only: no torch call, so that several threads run this at once on their own
    ranges (as :func:`rnnlab.nn.fused_lstm._infer_rows`)."""
    for t in range(T_run):
        matmul_packed(X[b0:b1, t], Wxp, XH[0, b0:b1])
        matmul_packed(HN[b0:b1], Wp, HP[b0:b1])
        _infer_step(t, 0, XH, HP, P, M, L, ST, Y, HN, SC, ln, True, b0, b1)


@numba.njit(**_JIT)
def _backward_step(t, DY, DHM, P, M, L, SV, SL, XN, DXP, DHP, DS, ACC, SC, ln, b0, b1):
    """Backward of step t for rows b0 <= b < b1. DHM (B, H) = dL/d(h_t ⊙ m) via step t+1's product (zero at the
    last step); DS (B, H) dL/dh_t along the direct path, updated to t-1; DXP, DHP (B, T, G) written at t;
    SV, SL the forward's saved planes; ACC float64 parameter grads. As in :func:`_forward_step`, no slice inside the
    loop over rows and unsigned offsets; each loop over H writes one gate's section of DXP and of DHP, and the bias
    gradients and both product layer norms take two passes over G."""
    G = DXP.shape[2]
    H = G // 3
    inv_g = SC[1]
    g_ih, g_hh = P[2 * G:3 * G], P[3 * G:4 * G]
    acc_bih, acc_bhh, acc_ih, acc_hh = ACC[0:G], ACC[G:2 * G], ACC[2 * G:3 * G], ACC[3 * G:4 * G]
    R, Z, N, HN, HPV = SV[0], SV[1], SV[2], SV[3], SV[4]
    o_z, o_n, o_rs = _u(H), _u(2 * H), _u(G)
    zero = _ZERO * SC[0]
    for b in range(_u(b0), _u(b1)):  # unsigned: no negative-index wraparound on b
        if t >= L[b]:  # frozen step: the carried grad passes through unchanged
            for k in range(G):
                DXP[b, t, k] = zero
                DHP[b, t, k] = zero
            continue
        for j in range(H):  # DS becomes dL/dh_t, all paths
            DS[b, j] = DS[b, j] + DHM[b, j] * M[b, j] + DY[b, t, j]
        for j in range(H):  # reset gate
            r, n, z = R[b, t, j], N[b, t, j], Z[b, t, j]
            da_n = DS[b, j] * (_ONE - z) * (_ONE - n * n)  # through n = tanh(a_n)
            da_r = da_n * HN[b, t, j] * r * (_ONE - r)
            DXP[b, t, j] = da_r
            DHP[b, t, j] = da_r
        for j in range(H):  # update gate
            uz = o_z + _u(j)
            n, z = N[b, t, j], Z[b, t, j]
            da_z = DS[b, j] * (HPV[b, t, j] - n) * z * (_ONE - z)
            DXP[b, t, uz] = da_z
            DHP[b, t, uz] = da_z
        for j in range(H):  # candidate
            un = o_n + _u(j)
            n, z = N[b, t, j], Z[b, t, j]
            da_n = DS[b, j] * (_ONE - z) * (_ONE - n * n)
            DXP[b, t, un] = da_n
            DHP[b, t, un] = da_n * R[b, t, j]
        for j in range(H):
            DS[b, j] = DS[b, j] * Z[b, t, j]  # dL/dh_{t-1} along the direct path
        if ln:  # through LN(x̂) γ_ih (DXP) and LN(ĥ) γ_hh (DHP)
            s1x, s2x, s1h, s2h = zero, zero, zero, zero
            for k in range(G):
                dx, dh, xn, hn = DXP[b, t, k], DHP[b, t, k], XN[b, t, k], SL[b, t, k]
                acc_bih[k] += dx
                acc_bhh[k] += dh
                acc_ih[k] += dx * xn
                acc_hh[k] += dh * hn
                dxg = dx * g_ih[k]
                dhg = dh * g_hh[k]
                s1x += dxg
                s2x += dxg * xn
                s1h += dhg
                s2h += dhg * hn
            s1x *= inv_g
            s2x *= inv_g
            s1h *= inv_g
            s2h *= inv_g
            rx, rh = SL[b, t, o_rs], SL[b, t, o_rs + _u(1)]
            for k in range(G):
                DXP[b, t, k] = rx * (DXP[b, t, k] * g_ih[k] - s1x - XN[b, t, k] * s2x)
                DHP[b, t, k] = rh * (DHP[b, t, k] * g_hh[k] - s1h - SL[b, t, k] * s2h)
        else:
            for k in range(G):
                acc_bih[k] += DXP[b, t, k]
                acc_bhh[k] += DHP[b, t, k]


@numba.njit(**_JIT)
def _backward_loop(T_run, Wp, DY, DHM, P, M, L, SV, SL, XN, DXP, DHP, DS, ACC, SC, ln, b0, b1):
    """The backward time loop of a small layer in one call, for rows b0..b1-1: steps T_run-1..0 of
    :func:`_backward_step`, each followed by DHM = DHP_t W_hh for those rows (DHM (B, H), in place), Wp =
    pack_panels(W_hh) (W_hh (G, H)). Same arrays as there; ACC this range's own (the ranges' sums added after)."""
    for t in range(T_run - 1, -1, -1):
        _backward_step(t, DY, DHM, P, M, L, SV, SL, XN, DXP, DHP, DS, ACC, SC, ln, b0, b1)
        matmul_packed(DHP[b0:b1, t], Wp, DHM[b0:b1])

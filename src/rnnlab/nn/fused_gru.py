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
``torch.mm``, whose call costs less, and a layer small enough (:func:`rnnlab.nn._gemm.numba_pays`) runs its
whole time loops, forward and backward, inside numba, the product on the register-blocked
:func:`rnnlab.nn._ukernel.matmul_packed`), and what the forward saves for the backward lives in one pooled buffer
(:func:`rnnlab.nn._workspace.saved_buffer`: no page faults on tens of megabytes per training step). Without grad
(inference, ``torch.no_grad()``) the forward keeps nothing for a backward pass, and without layer norm or mask a
mid-size layer runs a leaner per-step kernel (:func:`_infer_plain`). Anything else (another device or dtype) runs
:func:`gru_sequence_reference`, the plain autograd loop. Double backward is not supported.
Where the time goes, against torch.nn.GRU: ``benchmarks/profile_fused_gru.py``.
"""
from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from ._checks import check_sequence_args
from ._gemm import input_and_weight_grads, linear_into, numba_pays, step_product
from ._reference import keep_past_end, pre_activation
from ._step_kernels import gru_sequence_gates
from ._torch_kernels import native_layer_norm
from ._ukernel import matmul_packed, pack_panels
from ._workspace import saved_buffer, scratch
from .fused_lstm import (
    _JIT,
    _ONE,
    _layer_norm_backward,
    _normalize,
    _scalars,
    _sigmoid,
    _tanh,
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
    B, T, _ = x.shape
    G, H = weight_hh.shape
    if ln_ih is None and mask is None and not numba_pays(B, H, G):
        with torch.no_grad(), scratch(B * T * G, x.dtype) as work:  # inference, plain, a mid-size layer
            return _infer_plain(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, work)
    with torch.no_grad(), scratch(_work_size(B, T, G, H, ln_ih is not None, False), x.dtype) as work:  # inference
        Y, hT, _ = _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask, lengths, float(eps),
                            work=work, save=False)
    return Y, hT


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
    """Width K of the per-(b, t) saved row: [r H | z H | n H | ĥ_n + b_hn H | h_{t-1} H | (LN) ĥ normed G | rstd 2]."""
    return 5 * H + ((G + 2) if ln else 0)


def _work_size(B: int, T: int, G: int, H: int, ln: bool, save: bool) -> int:
    """Elements of the flat buffer :func:`_forward` works in: x̂ (B, T, G), h ⊙ m (B, T, H), and with ``save`` the
    per-step rows (B, T, K) the backward pass reads."""
    return B * T * (G + H + (_layout(G, H, ln) if save else 0))


def _forward(x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths, eps, *, work, save):
    """The forward pass under no_grad. Returns Y (B, T, H), hT (B, H) and what the backward needs.

    ``work``: a flat buffer of :func:`_work_size` elements for x̂, h ⊙ m and (``save``, training) the per-step values
    the backward needs; without ``save`` (inference) nothing is kept and ``work`` is scratch."""
    B, T, _ = x.shape
    G, H = W_hh.shape
    ln = g_ih is not None
    dtype = x.dtype
    x = x.detach().contiguous()  # saved for the backward pass, which reads it as (B·T, I)
    n = B * T * (G + H)
    XP, HM, Y, m, L, T_run = sequence_buffers(x, h0, W_ih, H, mask, lengths, work[:n])
    P = _pack_params(b_ih, b_hh, g_ih, g_hh, G, dtype)
    ST = h0.detach().clone().contiguous()  # (B, H): the running h
    K = _layout(G, H, ln)
    SV = work[n:].view(B, T, K) if save else torch.empty(B, 1, K, dtype=dtype)  # inference: one scratch row per b
    if ln:  # LN(x̂) for all steps at once, on torch's threads; the kernel reads it, the backward too
        XP, _, rstd_x = native_layer_norm(XP, [G], None, None, eps)
        if save:
            SV[:, :, -2] = rstd_x.view(B, T)
    SC = _scalars(eps, G, H, dtype)

    XP_, P_, M_, L_, ST_, Y_, HM_, SV_ = (a.numpy() for a in (XP, P, m, L, ST, Y, HM, SV))
    if numba_pays(B, H, G):  # a small layer: the whole time loop in numba, the product too (see _gemm)
        Wp = pack_panels(W_hh.detach().t().numpy())  # W_hhᵀ (H, G) in panels, once per call
        _forward_loop(T_run, XP_, np.empty((B, G), dtype=XP_.dtype), Wp, P_, M_, L_, ST_, Y_, HM_, SV_, SC, ln,
                      save)
        return Y, ST, (x, m, L, P, XP, HM, SV, T_run)
    product = step_product(W_hh, B)  # h_{t-1} ⊙ m ↦ ĥ_t, on oneDNN or torch.mm (see _gemm)
    hm_steps = HM.unbind(1)
    for t in range(T_run):
        HP_ = product(hm_steps[t])  # ĥ_t (B, G)
        _forward_step(t, XP_, HP_, P_, M_, L_, ST_, Y_, HM_, SV_, SC, ln, save)
    return Y, ST, (x, m, L, P, XP, HM, SV, T_run)


def _infer_plain(x, h0, W_ih, W_hh, b_ih, b_hh, lengths, work):
    """Inference without layer norm or dropout mask, for a layer whose per-step product runs from Python (not
    :func:`rnnlab.nn._gemm.numba_pays`): per step one product ĥ_t = h W_hhᵀ (:func:`rnnlab.nn._gemm.step_product`)
    and :func:`gru_sequence_gates`, which reads x̂_t in place, adds the biases, updates h and writes y_t: no mask or
    saved values to handle, 9 kernel arguments instead of :func:`_forward_step`'s 13. ``lengths`` (B,) or None;
    ``work``: scratch of B·T·G elements for x̂. Returns Y (B, T, H), hT (B, H)."""
    B, T, I = x.shape
    G, H = W_hh.shape
    dtype = x.dtype
    XP = linear_into(x.detach().reshape(B * T, I), W_ih.detach(), work.view(B * T, G)).view(B, T, G)  # (B, T, G)
    L = torch.full((B,), T, dtype=torch.int64) if lengths is None else lengths.contiguous()
    T_run = int(L.max())  # no step past the longest row does work
    Y = torch.empty(B, T, H, dtype=dtype)
    if T_run < T:
        Y[:, T_run:].zero_()
    h = h0.detach().clone().contiguous()  # (B, H): the running state, in the end hT
    b_x, b_h = (torch.zeros(G, dtype=dtype) if b is None else b.detach().contiguous() for b in (b_ih, b_hh))
    product = step_product(W_hh, B)  # h ↦ h W_hhᵀ (B, G), on oneDNN or torch.mm
    XP_, b_x_, b_h_, L_, h_, Y_ = XP.numpy(), b_x.numpy(), b_h.numpy(), L.numpy(), h.numpy(), Y.numpy()
    one = XP_.dtype.type(1)
    for t in range(T_run):
        gru_sequence_gates(t, XP_, b_x_, product(h), b_h_, L_, h_, Y_, one)
    return Y, h


class _FusedGRU(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # bf16 autocast: the kernel runs in float32
    def forward(ctx, x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths, eps):
        B, T, _ = x.shape
        G, H = W_hh.shape
        work = saved_buffer(_work_size(B, T, G, H, g_ih is not None, True), x.dtype)  # pooled: see _workspace
        Y, hT, (x, m, L, P, XP, HM, SV, T_run) = _forward(x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths,
                                                          eps, work=work, save=True)
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
            ACC = np.zeros(4 * G, dtype=np.float64)  # [db_ih | db_hh | dγ_ih | dγ_hh]
            SC = _scalars(eps, G, H, dtype)

            dhp_steps = DHP.unbind(1)
            dY_, DHM_, M_, L_, SV_, XP_, DXP_, DHP_, DS_ = (a.numpy() for a in (dY, DHM, m, L, SV, XP, DXP, DHP, DS))
            P_ = ctx.P.numpy()
            if numba_pays(B, G, H):  # a small layer: the whole loop in numba, as in the forward pass
                Wp = pack_panels(W_hh.numpy())  # W_hh (G, H) in panels: DHM = DHP_t W_hh
                _backward_loop(T_run, Wp, dY_, DHM_, P_, M_, L_, SV_, XP_, DXP_, DHP_, DS_, ACC, SC, ln)
            else:
                product = step_product(W_hh.t(), B)  # DHP_t ↦ DHP_t W_hh = dL/d(h_{t-1} ⊙ m)
                for t in range(T_run - 1, -1, -1):
                    _backward_step(t, dY_, DHM_, P_, M_, L_, SV_, XP_, DXP_, DHP_, DS_, ACC, SC, ln)
                    DHM_ = product(dhp_steps[t])  # (B, H)

            need = ctx.needs_input_grad
            dh0 = DS + torch.from_numpy(DHM_) * m if need[1] else None
            dx, dW_ih, dW_hh = input_and_weight_grads(DXP, DHP, x, HM, W_ih.detach(), need[0], need[2], need[3])
        acc = torch.from_numpy(ACC).to(dtype)
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
def _forward_step(t, XP, HP, P, M, L, ST, Y, HM, SV, SC, ln, save):
    """Step t for every row b. XP (B, T, G) x̂, or LN(x̂) with layer norm; HP (B, G) ĥ_t; P packed params;
    M (B, H) mask; L (B,) lengths; ST (B, H) h (updated); Y (B, T, H) and HM (B, T, H) h ⊙ m written at t
    and t+1; SV (B, T, K) saved for the backward, or (B, 1, K) scratch without ``save``.
    Every inner loop runs over one contiguous gate slice so that it vectorises."""
    B, T, G = XP.shape
    H = G // 3
    eps, inv_g = SC[0], SC[1]
    b_ih, b_hh, g_ih, g_hh = P[0:G], P[G:2 * G], P[2 * G:3 * G], P[3 * G:4 * G]
    last = t + 1 == T
    for b in range(B):
        y = Y[b, t]
        hm_next = HM[b, min(t + 1, T - 1)]
        if t >= L[b]:  # past this row's end: state frozen, output zero
            y[:] = 0
            if not last:
                hm_next[:] = HM[b, t]
            continue
        x_hat, h_hat, sv = XP[b, t], HP[b], SV[b, t if save else 0]
        rz, r, z, n = sv[0:2 * H], sv[0:H], sv[H:2 * H], sv[2 * H:3 * H]
        hn, h_prev = sv[3 * H:4 * H], sv[4 * H:5 * H]  # ĥ_n + b_hn; h_{t-1}
        h, m = ST[b], M[b]
        if ln:
            h_norm, rstd = sv[5 * H:5 * H + G], sv[5 * H + G:]
            rstd[1] = _normalize(h_hat, h_norm, inv_g, eps)
            for k in range(2 * H):
                rz[k] = g_ih[k] * x_hat[k] + b_ih[k] + g_hh[k] * h_norm[k] + b_hh[k]
            for j in range(H):
                k = 2 * H + j
                hn[j] = g_hh[k] * h_norm[k] + b_hh[k]
                n[j] = g_ih[k] * x_hat[k] + b_ih[k]
        else:
            for k in range(2 * H):
                rz[k] = x_hat[k] + b_ih[k] + h_hat[k] + b_hh[k]
            for j in range(H):
                k = 2 * H + j
                hn[j] = h_hat[k] + b_hh[k]
                n[j] = x_hat[k] + b_ih[k]
        for k in range(2 * H):
            rz[k] = _sigmoid(rz[k])  # r, z
        for j in range(H):
            n[j] = _tanh(n[j] + r[j] * hn[j])  # candidate
            h_prev[j] = h[j]
            h[j] = n[j] + z[j] * (h[j] - n[j])  # h_t = (1 - z) n + z h_{t-1}
            y[j] = h[j]
        if not last:
            for j in range(H):
                hm_next[j] = h[j] * m[j]


@numba.njit(**_JIT)
def _forward_loop(T_run, XP, HP, Wp, P, M, L, ST, Y, HM, SV, SC, ln, save):
    """The forward time loop of a small layer in one call: per step ĥ_t = (h_{t-1} ⊙ m) W_hhᵀ into HP (B, G) with
    Wp = pack_panels(W_hhᵀ), W_hhᵀ (H, G), then :func:`_forward_step`. Same arrays as there."""
    for t in range(T_run):
        matmul_packed(HM[:, t], Wp, HP)
        _forward_step(t, XP, HP, P, M, L, ST, Y, HM, SV, SC, ln, save)


@numba.njit(**_JIT)
def _backward_step(t, DY, DHM, P, M, L, SV, XN, DXP, DHP, DS, ACC, SC, ln):
    """Backward of step t for every row b. DHM (B, H) = dL/d(h_t ⊙ m) via step t+1's product (zero at the
    last step); DS (B, H) dL/dh_t along the direct path, updated to t-1; DXP, DHP (B, T, G) written at t;
    ACC float64 parameter grads."""
    B, T, G = DXP.shape
    H = G // 3
    inv_g = SC[1]
    g_ih, g_hh = P[2 * G:3 * G], P[3 * G:4 * G]
    acc_bih, acc_bhh, acc_ih, acc_hh = ACC[0:G], ACC[G:2 * G], ACC[2 * G:3 * G], ACC[3 * G:4 * G]
    for b in range(B):
        dxa, dha = DXP[b, t], DHP[b, t]
        if t >= L[b]:  # frozen step: the carried grad passes through unchanged
            dxa[:] = 0
            dha[:] = 0
            continue
        sv = SV[b, t]
        r, z, n, hn, h_prev = sv[0:H], sv[H:2 * H], sv[2 * H:3 * H], sv[3 * H:4 * H], sv[4 * H:5 * H]
        dh, dy, dhm, m = DS[b], DY[b, t], DHM[b], M[b]
        for j in range(H):
            g = dh[j] + dhm[j] * m[j] + dy[j]  # dL/dh_t, all paths
            da_n = g * (_ONE - z[j]) * (_ONE - n[j] * n[j])  # through n = tanh(a_n)
            da_z = g * (h_prev[j] - n[j]) * z[j] * (_ONE - z[j])
            da_r = da_n * hn[j] * r[j] * (_ONE - r[j])
            dxa[j] = da_r
            dha[j] = da_r
            dxa[H + j] = da_z
            dha[H + j] = da_z
            dxa[2 * H + j] = da_n
            dha[2 * H + j] = da_n * r[j]
            dh[j] = g * z[j]  # dL/dh_{t-1} along the direct path
        for k in range(G):
            acc_bih[k] += dxa[k]
            acc_bhh[k] += dha[k]
        if ln:
            h_norm, rstd = sv[5 * H:5 * H + G], sv[5 * H + G:]
            _layer_norm_backward(dxa, g_ih, XN[b, t], rstd[0], inv_g, dxa, acc_ih)
            _layer_norm_backward(dha, g_hh, h_norm, rstd[1], inv_g, dha, acc_hh)


@numba.njit(**_JIT)
def _backward_loop(T_run, Wp, DY, DHM, P, M, L, SV, XN, DXP, DHP, DS, ACC, SC, ln):
    """The backward time loop of a small layer in one call: steps T_run-1..0 of :func:`_backward_step`, each followed
    by DHM = DHP_t W_hh (B, H) in place, Wp = pack_panels(W_hh) (W_hh (G, H)). Same arrays as there."""
    for t in range(T_run - 1, -1, -1):
        _backward_step(t, DY, DHM, P, M, L, SV, XN, DXP, DHP, DS, ACC, SC, ln)
        matmul_packed(DHP[:, t], Wp, DHM)

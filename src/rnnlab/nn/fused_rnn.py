r"""A whole-sequence Elman RNN (Elman, 1990), tanh or ReLU, on the CPU, with the options torch's kernels cannot
run: layer norm of the two products (Ba et al., 2016, §3.1) and variational recurrent dropout (Gal &
Ghahramani, 2016, §4). The weights are ``torch.nn.RNN``'s.

Shapes (batch first): x (B, T, I); h0 (B, H); weight_ih (H, I), weight_hh (H, H), biases (H,); y (B, T, H).
G = H (one gate).

.. math::
    \hat x_t &= W_{ih} x_t                          &&\text{(all t at once, one matrix product)} \\
    \hat x_t &\leftarrow LN(\hat x_t)\,\gamma_{ih}    &&\text{(layer norm only)} \\
    \hat h_t &= W_{hh} (h_{t-1} \odot m)             &&\text{(m: dropout mask, the same at every step; 1 when off)} \\
    \hat h_t &\leftarrow LN(\hat h_t)\,\gamma_{hh}    &&\text{(layer norm only)} \\
    h_t &= \phi(\hat x_t + b_{ih} + \hat h_t + b_{hh}), \qquad y_t = h_t, \qquad \phi = \tanh \text{ or ReLU}

LN(v) = (v - mean(v)) / sqrt(var(v) + eps) over the last dim (biased variance), with a gain and no shift
(the biases are the shift). The mask touches only the product. With ``lengths``, a row past its length
keeps its state and outputs zeros, so hT is the state at its last real step.

Implementation (CPU, float32/float64), as :mod:`rnnlab.nn.fused_gru`: the input product (and its layer norm) for all
steps at once; per step one matrix product for the recurrent product and one serial numba kernel for the
element-wise rest. Training runs a ``torch.autograd.Function`` whose hand-written backward through time does one
kernel and one product per step and collects the pre-activation gradients of all steps, so dW_ih, dW_hh and dx are
single matmuls at the end. Products on oneDNN and the saved tensors in a pooled buffer, as the GRU's; a small layer
(:func:`rnnlab.nn._gemm.numba_splits`) runs both time loops inside numba, the product on
:func:`rnnlab.nn._ukernel.matmul_packed`, with more than one torch thread one whole loop per range of rows on each
thread at once, as the GRU's (see :mod:`rnnlab.nn.fused_gru`: ranges of at least 4 rows, no synchronisation between
them, per-range parameter-gradient sums added after, kernels that take the range as unsigned ``b0, b1``). φ' is read
off the saved output (1 - h² for tanh, [h > 0] for ReLU, as torch's ``threshold_backward``), so without layer norm
nothing but y and h ⊙ m is kept, and the two products share one gradient buffer. Without grad :func:`_infer` keeps
nothing for a backward pass (x_t W_ihᵀ inside the whole loop for a small layer, :func:`_infer_rows`; h_t, y_t and
h_t ⊙ m in one loop over H). The kernels slice no array inside their loop over rows, as the LSTM's and the GRU's
(see :mod:`rnnlab.nn.fused_gru`); measured (benchmarks/sequence_ab.py, one thread, A/B against the slicing kernels)
a training step 0.78-0.98x the time.
Anything else (another device or dtype) runs :func:`rnn_sequence_reference`, the plain autograd loop.
Double backward is not supported.

The split on two threads, measured (benchmarks/fused_rnn.py --threads 2 --rounds 5, twice each, alternating with the
tree before the split, ratio to torch.nn.RNN, new / old, plain, layer norm and dropout rows): inference 0.34-0.53x
at (32, 100, 128, 256), (64, 200, 64, 128), (16, 1024, 128, 256) and 0.79-0.81x at (64, 100, 256, 512) (before:
the per-step product; now two whole loops of 32 rows); a training step 0.51-0.79x, 0.81-0.94x at (64, 100, 256,
512); (8, 500, 32, 64), two ranges of 4 rows, 0.84-1.01x training and 0.97-1.18x inference (a millisecond: noise
on a loaded machine; 0.89x / 0.99x in a separate interleaved run of 21 rounds). At one thread (benchmarks/
sequence_ab.py against the module before, --clock cpu) inference 0.85-0.95x, training 1.00-1.01x (21 rounds).
"""
from __future__ import annotations

from typing import Literal

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
from .fused_lstm import _JIT, _ONE, _ZERO, _scalars, _tanh, _u, sequence_buffers
from .masking import lengths_to_mask

__all__ = ["rnn_sequence", "rnn_sequence_reference"]

Nonlinearity = Literal["tanh", "relu"]


# ----------------------------------------------------------------------------------------------------
# Reference: the equations, one step at a time, under autograd.
# ----------------------------------------------------------------------------------------------------


def rnn_sequence_reference(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, nonlinearity: Nonlinearity = "tanh",
                           ln_ih=None, ln_hh=None, eps=1e-5, mask=None, lengths=None):
    """The module's equations as a plain autograd loop over time. Same contract as :func:`rnn_sequence`."""
    x, h, lengths = _check_args(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, ln_ih, ln_hh, mask,
                                lengths)
    T = x.shape[1]
    phi = torch.relu if nonlinearity == "relu" else torch.tanh
    x_hat = pre_activation(x, weight_ih, ln_ih, bias_ih, eps)  # (B, T, H)
    active = lengths_to_mask(lengths, T, device=x.device)  # (B, T) or None
    ys = []
    for t in range(T):
        h_hat = pre_activation(h if mask is None else h * mask, weight_hh, ln_hh, bias_hh, eps)  # (B, H)
        h_new = phi(x_hat[:, t] + h_hat)
        h, y = keep_past_end(h_new, h, active, t)
        ys.append(y)
    return torch.stack(ys, dim=1), h  # (B, T, H), (B, H)


# ----------------------------------------------------------------------------------------------------
# Public entry point.
# ----------------------------------------------------------------------------------------------------


def rnn_sequence(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, nonlinearity: Nonlinearity = "tanh",
                 ln_ih=None, ln_hh=None, eps=1e-5, mask=None, lengths=None):
    """Run the Elman RNN of this module's equations over a whole sequence.

    x (B, T, I); h0 (B, H) or None (zeros); weight_ih (H, I); weight_hh (H, H); bias_ih, bias_hh (H,) or None
    (zero); ``nonlinearity`` "tanh" or "relu". Layer norm is on iff ``ln_ih`` is given: ln_ih, ln_hh gains γ (H,).
    ``mask`` (B, H): the recurrent dropout mask on h_{t-1} (0 or 1/(1-p)), gets no gradient. ``lengths`` (B,)
    integers in [1, T]. Returns y (B, T, H), hT (B, H).

    On the CPU in float32/float64 this runs the fused kernels; otherwise the reference loop.
    """
    x, h0, lengths = _check_args(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, ln_ih, ln_hh, mask,
                                 lengths)
    tensors = (x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask)
    present = [t for t in tensors if t is not None]
    fused = all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in present)
    if not fused:
        return rnn_sequence_reference(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity=nonlinearity,
                                      ln_ih=ln_ih, ln_hh=ln_hh, eps=eps, mask=mask, lengths=lengths)
    relu = nonlinearity == "relu"
    if torch.is_grad_enabled() and any(t.requires_grad for t in present):
        return _FusedRNN.apply(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask, lengths,
                               float(eps), relu)
    with torch.no_grad():  # inference: nothing kept for a backward pass
        return _infer(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask, lengths, float(eps), relu)


def _check_args(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, ln_ih, ln_hh, mask, lengths):
    """Validate shapes, dtypes and options; returns x, h0 (zeros for None) and lengths (CPU int64 or None)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    x, (h0,), lengths = check_sequence_args(
        x, {"h0": h0}, weight_ih, weight_hh, {"bias_ih": bias_ih, "bias_hh": bias_hh, "ln_ih": ln_ih, "ln_hh": ln_hh},
        mask, lengths, num_gates=1)
    if (ln_ih is None) != (ln_hh is None):
        raise ValueError("layer norm needs ln_ih and ln_hh together (or neither)")
    return x, h0, lengths


# ----------------------------------------------------------------------------------------------------
# The Python side of the kernels: the forward loop, and the autograd function around it.
# ----------------------------------------------------------------------------------------------------


def _layout(H: int, ln: bool) -> int:
    """Width K of the per-(b, t) saved row: [(LN) ĥ normed H | rstd of x̂, ĥ 2]; nothing without layer norm."""
    return H + 2 if ln else 0


def _work_size(B: int, T: int, H: int, ln: bool) -> int:
    """Elements of the flat buffer :func:`_forward` works in: x̂ (B, T, H), h ⊙ m (B, T, H) and the per-step rows
    (B, T, K) the backward pass reads."""
    return B * T * (2 * H + _layout(H, ln))


def _forward(x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths, eps, relu, *, work):
    """The forward pass of training under no_grad. Returns Y (B, T, H), hT (B, H) and what the backward needs.
    (Inference runs :func:`_infer`.) ``work``: a flat buffer of :func:`_work_size` elements for x̂, h ⊙ m and the
    per-step values the backward needs."""
    B, T, _ = x.shape
    H = W_hh.shape[0]
    ln = g_ih is not None
    dtype = x.dtype
    x = x.detach().contiguous()  # saved for the backward pass, which reads it as (B·T, I)
    n = 2 * B * T * H
    XP, HM, Y, m, L, T_run = sequence_buffers(x, h0, W_ih, H, mask, lengths, work[:n])
    P = _pack_params(b_ih, b_hh, g_ih, g_hh, H, dtype)
    ST = h0.detach().clone().contiguous()  # (B, H): the running h
    K = _layout(H, ln)
    SV = work[n:].view(B, T, K)
    if ln:  # LN(x̂) for all steps at once, on torch's threads; the kernel reads it, the backward too
        XP, _, rstd_x = native_layer_norm(XP, [H], None, None, eps)
        SV[:, :, -2] = rstd_x.view(B, T)
    SC = _scalars(eps, H, H, dtype)

    XP_, P_, M_, L_, ST_, Y_, HM_, SV_ = (a.numpy() for a in (XP, P, m, L, ST, Y, HM, SV))
    splits = numba_splits(B, H, H)
    if splits is not None:  # a small layer: the whole time loop in numba, the product too; a range of rows per thread
        Wp = pack_panels(W_hh.detach().t().numpy())  # W_hhᵀ (H, H) in panels, once per call
        HP_ = aligned_empty((B, H), XP_.dtype)  # ĥ_t, each range its own rows (no cache line shared across ranges)
        run_split(_forward_loop, [(T_run, XP_, HP_, Wp, P_, M_, L_, ST_, Y_, HM_, SV_, SC, ln, relu, b0, b1)
                                  for b0, b1 in splits])
        return Y, ST, (x, m, L, P, XP, HM, SV, T_run)
    product = step_product(W_hh, B)  # h_{t-1} ⊙ m ↦ ĥ_t, on oneDNN or torch.mm (see _gemm)
    hm_steps = HM.unbind(1)
    for t in range(T_run):
        HP_ = product(hm_steps[t])  # ĥ_t (B, H)
        _forward_step(t, XP_, HP_, P_, M_, L_, ST_, Y_, HM_, SV_, SC, ln, relu, 0, B)
    return Y, ST, (x, m, L, P, XP, HM, SV, T_run)


def _infer(x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths, eps, relu):
    """The forward pass for inference (no grad): Y (B, T, H) and hT (B, H); nothing else kept. As the GRU's
    (:func:`rnnlab.nn.fused_gru._infer`): a small layer (:func:`rnnlab.nn._gemm.numba_splits`) runs its whole time
    loop in one numba call per range of rows, both products included (:func:`_infer_rows`); a larger one x̂
    batch-major for all steps into reused scratch and the per-step product from Python. The kernel
    (:func:`_infer_step`) normalises x̂ and ĥ per row (layer norm) and writes h, y (time-major, returned as a
    (B, T, H) view) and the next product's operand h ⊙ m in one loop over H."""
    B, T, I = x.shape
    H = W_hh.shape[0]
    dtype = x.dtype
    ln = g_ih is not None
    m = torch.ones(B, H, dtype=dtype) if mask is None else mask.detach().contiguous()
    L = torch.full((B,), T, dtype=torch.int64) if lengths is None else lengths.contiguous()
    T_run = int(L.max())  # no step past the longest row does work
    P = _pack_params(b_ih, b_hh, g_ih, g_hh, H, dtype)
    ST = h0.detach().clone().contiguous()  # (B, H): the running h, in the end hT
    HN = (h0.detach() * m).contiguous()  # (B, H): h_{t-1} ⊙ m, the operand of the recurrent product
    Y = torch.empty(T, B, H, dtype=dtype)  # time-major: a step writes one contiguous block; returned as a view
    if T_run < T:
        Y[T_run:].zero_()
    SC = _scalars(eps, H, H, dtype)
    x, W_ih = x.detach(), W_ih.detach()
    P_, M_, L_, ST_, Y_, HN_ = (a.numpy() for a in (P, m, L, ST, Y, HN))
    splits = numba_splits(B, H, H)
    if splits is not None:  # both products in the loop, a range per thread
        Wxp = pack_panels(W_ih.t().numpy())  # W_ihᵀ (I, H) in panels, once per call
        Wp = pack_panels(W_hh.detach().t().numpy())  # W_hhᵀ (H, H)
        HP_ = aligned_empty((B, H), P_.dtype)  # ĥ_t (aligned: no cache line shared across a range boundary)
        XH = aligned_empty((1, B, H), P_.dtype)  # x̂_t
        X = x.contiguous().numpy()
        run_split(_infer_rows, [(T_run, X, Wxp, Wp, XH, HP_, P_, M_, L_, ST_, Y_, HN_, SC, ln, relu, b0, b1)
                                for b0, b1 in splits], fresh=(Y_,))
        return Y.transpose(0, 1), ST  # (B, T, H), not contiguous (as torch.nn.RNN's batch_first output)
    product = step_product(W_hh, B)  # h ⊙ m ↦ ĥ_t (B, H), on oneDNN or torch.mm
    with scratch(B * T * H, dtype) as work:
        XP = linear_into(x.reshape(B * T, I), W_ih, work.view(B * T, H))  # batch-major: no copy of x
        XP_ = XP.numpy().reshape(B, T, H)
        for t in range(T_run):
            _infer_step(t, t, XP_, product(HN), P_, M_, L_, ST_, Y_, HN_, SC, ln, relu, False, 0, B)
    return Y.transpose(0, 1), ST


class _FusedRNN(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # bf16 autocast: the kernel runs in float32
    def forward(ctx, x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths, eps, relu):
        B, T, _ = x.shape
        work = saved_buffer(_work_size(B, T, W_hh.shape[0], g_ih is not None), x.dtype)  # see _workspace
        Y, hT, (x, m, L, P, XP, HM, SV, T_run) = _forward(x, h0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, mask, lengths,
                                                          eps, relu, work=work)
        ctx.save_for_backward(x, W_ih, W_hh, m, L, XP, HM, SV, Y)  # Y: φ' is read off h_t
        ctx.P = P
        ctx.shape = (T_run, g_ih is not None, eps, relu)
        return Y, hT

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, dY, dhT):
        x, W_ih, W_hh, m, L, XP, HM, SV, Y = ctx.saved_tensors
        T_run, ln, eps, relu = ctx.shape
        B, T, I = x.shape
        H = W_hh.shape[0]
        dtype = x.dtype
        W_hh = W_hh.detach().contiguous()
        dY = dY.contiguous()
        n = B * T * H
        with scratch((2 if ln else 1) * n, dtype) as buf:  # reused between calls: fresh pages cost more than the kernel
            DXP = buf[:n].view(B, T, H)  # dL/d(W_ih x_t), pre-LN
            DHP = buf[n:].view(B, T, H) if ln else DXP  # dL/d(W_hh (h_{t-1} ⊙ m)), pre-LN: the same without LN
            if T_run < T:
                DXP[:, T_run:].zero_()
                DHP[:, T_run:].zero_()
            DS = dhT.detach().clone().contiguous()  # (B, H): dL/dh_t carried through the frozen steps past a length
            DHM = torch.zeros(B, H, dtype=dtype)  # dL/d(h_t ⊙ m) through the next step's product
            splits = numba_splits(B, H, H)
            ACC = aligned_rows(1 if splits is None else len(splits), 3 * H, np.float64)  # per range, own cache lines:
            # [db (b_ih and b_hh alike) | dγ_ih | dγ_hh], summed after
            SC = _scalars(eps, H, H, dtype)

            dhp_steps = DHP.unbind(1)
            dY_, DHM_, M_, L_, SV_, Y_, XP_, DXP_, DHP_, DS_ = (
                a.numpy() for a in (dY, DHM, m, L, SV, Y, XP, DXP, DHP, DS))
            P_ = ctx.P.numpy()
            if splits is not None:  # a small layer: the whole loop in numba per range of rows, as in the forward
                Wp = pack_panels(W_hh.numpy())  # W_hh (H, H) in panels: DHM = DHP_t W_hh
                run_split(_backward_loop, [(T_run, Wp, dY_, DHM_, P_, M_, L_, SV_, Y_, XP_, DXP_, DHP_, DS_, ACC[s],
                                            SC, ln, relu, b0, b1) for s, (b0, b1) in enumerate(splits)])
            else:
                product = step_product(W_hh.t(), B)  # DHP_t ↦ DHP_t W_hh = dL/d(h_{t-1} ⊙ m)
                for t in range(T_run - 1, -1, -1):
                    _backward_step(t, dY_, DHM_, P_, M_, L_, SV_, Y_, XP_, DXP_, DHP_, DS_, ACC[0], SC, ln, relu, 0, B)
                    DHM_ = product(dhp_steps[t])  # (B, H)

            need = ctx.needs_input_grad
            dh0 = DS + torch.from_numpy(DHM_) * m if need[1] else None
            dx, dW_ih, dW_hh = input_and_weight_grads(DXP, DHP, x, HM, W_ih.detach(), need[0], need[2], need[3])
        acc = torch.from_numpy(ACC.sum(axis=0)).to(dtype)
        db_ih = acc[:H].clone() if need[4] else None
        db_hh = acc[:H].clone() if need[5] else None
        dg_ih = acc[H:2 * H].clone() if need[6] else None
        dg_hh = acc[2 * H:].clone() if need[7] else None
        return dx, dh0, dW_ih, dW_hh, db_ih, db_hh, dg_ih, dg_hh, None, None, None, None


def _pack_params(b_ih, b_hh, g_ih, g_hh, H, dtype) -> Tensor:
    """[b_ih + b_hh (H) | γ_ih (H) | γ_hh (H)] as one flat vector; the two biases only ever enter as their sum."""
    P = torch.zeros(3 * H, dtype=dtype)
    with torch.no_grad():
        for k, v in ((0, b_ih), (0, b_hh), (1, g_ih), (2, g_hh)):
            if v is not None:
                P[k * H:(k + 1) * H] += v
    return P


# ----------------------------------------------------------------------------------------------------
# numba kernels: one time step of the element-wise work, forward and backward.
# ----------------------------------------------------------------------------------------------------


@numba.njit(**_JIT)
def _forward_step(t, XP, HP, P, M, L, ST, Y, HM, SV, SC, ln, relu, b0, b1):
    """Step t for rows b0 <= b < b1. XP (B, T, H) x̂, or LN(x̂) with layer norm (its rstd in SV); HP (B, H) ĥ_t; P packed
    params; M (B, H) mask; L (B,) lengths; ST (B, H) h (updated); Y (B, T, H) and HM (B, T, H) h ⊙ m written at t
    and t+1; SV (B, T, K) saved for the backward.
    As the LSTM's and GRU's kernels: no array is sliced inside the loop over rows (a slice costs numba a
    reference-count increment and decrement), saved sections are unsigned offsets (:func:`rnnlab.nn.fused_lstm._u`),
    and the pre-activation, φ, h_t and y_t are one loop per row (the choice of φ outside it)."""
    T, H = XP.shape[1], XP.shape[2]
    eps, inv_h = SC[0], SC[1]
    bias, g_ih, g_hh = P[0:H], P[H:2 * H], P[2 * H:3 * H]
    o_rs = _u(H)
    last = t + 1 == T
    tn = min(t + 1, T - 1)
    zero = _ZERO * SC[0]
    for b in range(_u(b0), _u(b1)):  # unsigned: no negative-index wraparound on b
        if t >= L[b]:  # past this row's end: state frozen, output zero
            for k in range(H):
                Y[b, t, k] = zero
            if not last:
                for k in range(H):
                    HM[b, tn, k] = HM[b, t, k]
            continue
        if ln:
            s = zero
            for k in range(H):
                s += HP[b, k]
            mu = s * inv_h
            s2 = zero
            for k in range(H):
                d = HP[b, k] - mu
                s2 += d * d
            r1 = _ONE / np.sqrt(s2 * inv_h + eps)
            SV[b, t, o_rs + _u(1)] = r1
            for k in range(H):  # LN(ĥ), saved
                SV[b, t, k] = (HP[b, k] - mu) * r1
            if relu:
                for k in range(H):
                    h = max(g_ih[k] * XP[b, t, k] + g_hh[k] * ((HP[b, k] - mu) * r1) + bias[k], zero)
                    ST[b, k] = h
                    Y[b, t, k] = h
            else:
                for k in range(H):
                    h = _tanh(g_ih[k] * XP[b, t, k] + g_hh[k] * ((HP[b, k] - mu) * r1) + bias[k])
                    ST[b, k] = h
                    Y[b, t, k] = h
        elif relu:
            for k in range(H):
                h = max(XP[b, t, k] + HP[b, k] + bias[k], zero)
                ST[b, k] = h
                Y[b, t, k] = h
        else:
            for k in range(H):
                h = _tanh(XP[b, t, k] + HP[b, k] + bias[k])
                ST[b, k] = h
                Y[b, t, k] = h
        if not last:
            for k in range(H):
                HM[b, tn, k] = ST[b, k] * M[b, k]


@numba.njit(**_JIT)
def _forward_loop(T_run, XP, HP, Wp, P, M, L, ST, Y, HM, SV, SC, ln, relu, b0, b1):
    """The forward time loop of a small layer in one call, for rows b0..b1-1: per step ĥ_t = (h_{t-1} ⊙ m) W_hhᵀ for
    those rows into HP[b0:b1] (HP (B, H)) with Wp = pack_panels(W_hhᵀ), W_hhᵀ (H, H), then :func:`_forward_step`.
    Same arrays as there. Rows never interact: several threads run this at once, each on its own range."""
    for t in range(T_run):
        matmul_packed(HM[b0:b1, t], Wp, HP[b0:b1])
        _forward_step(t, XP, HP, P, M, L, ST, Y, HM, SV, SC, ln, relu, b0, b1)


@numba.njit(**_JIT)
def _infer_step(t, tx, XP, HP, P, M, L, ST, Y, HN, SC, ln, relu, tm, b0, b1):
    """Step t of inference for rows b0 <= b < b1, keeping nothing for a backward pass. XP the raw x̂: with ``tm``
    (Tc, B, H) a chunk of steps, time-major, step t at XP[tx]; else (B, T, H), batch-major, step t at XP[:, t];
    HP (B, H) ĥ_t; P packed params; M (B, H) mask; L (B,) lengths; ST (B, H) h (updated); Y (T, B, H) written at
    t; HN (B, H) h_t ⊙ m for the next product (left as is past a row's end). With layer norm the moments of x̂ and
    ĥ in one pass (sums about the row's first element), then h_t, y_t, h_t ⊙ m in one loop; no slice per row."""
    H = XP.shape[2]
    eps, inv_h = SC[0], SC[1]
    Yt = Y[t]  # (B, H)
    bias, g_ih, g_hh = P[0:H], P[H:2 * H], P[2 * H:3 * H]
    zero = _ZERO * SC[0]
    for b in range(_u(b0), _u(b1)):  # unsigned: no negative-index wraparound on b
        if t >= L[b]:  # past this row's end: state frozen, output zero
            for k in range(H):
                Yt[b, k] = zero
            continue
        i0, i1 = (_u(tx), b) if tm else (b, _u(t))  # the row of x̂ is XP[i0, i1]
        if ln:
            x0, h0 = XP[i0, i1, 0], HP[b, 0]
            sx, sh, qx, qh = zero, zero, zero, zero
            for k in range(H):
                dx = XP[i0, i1, k] - x0
                dh = HP[b, k] - h0
                sx += dx
                sh += dh
                qx += dx * dx
                qh += dh * dh
            dmx, dmh = sx * inv_h, sh * inv_h  # mean minus the first element
            rx = _ONE / np.sqrt(max(qx * inv_h - dmx * dmx, zero) + eps)
            rh = _ONE / np.sqrt(max(qh * inv_h - dmh * dmh, zero) + eps)
            mx, mh = x0 + dmx, h0 + dmh
            if relu:
                for k in range(H):
                    h = max(g_ih[k] * ((XP[i0, i1, k] - mx) * rx) + g_hh[k] * ((HP[b, k] - mh) * rh) + bias[k], zero)
                    ST[b, k] = h
                    Yt[b, k] = h
                    HN[b, k] = h * M[b, k]
            else:
                for k in range(H):
                    h = _tanh(g_ih[k] * ((XP[i0, i1, k] - mx) * rx) + g_hh[k] * ((HP[b, k] - mh) * rh) + bias[k])
                    ST[b, k] = h
                    Yt[b, k] = h
                    HN[b, k] = h * M[b, k]
        elif relu:
            for k in range(H):
                h = max(XP[i0, i1, k] + HP[b, k] + bias[k], zero)
                ST[b, k] = h
                Yt[b, k] = h
                HN[b, k] = h * M[b, k]
        else:
            for k in range(H):
                h = _tanh(XP[i0, i1, k] + HP[b, k] + bias[k])
                ST[b, k] = h
                Yt[b, k] = h
                HN[b, k] = h * M[b, k]


@numba.njit(**_JIT)
def _infer_rows(T_run, X, Wxp, Wp, XH, HP, P, M, L, ST, Y, HN, SC, ln, relu, b0, b1):
    """Steps 0..T_run-1 of :func:`_infer_step` for rows b0..b1-1 with both products in the loop: x̂_t = x_t W_ihᵀ
    (X (B, T, I) batch-major as given, Wxp = pack_panels(W_ihᵀ)) into XH (1, B, H) and ĥ_t = (h_{t-1} ⊙ m) W_hhᵀ
    into HP (B, H), for those rows only: no torch call, so that several threads run this at once on their own
    ranges (as :func:`rnnlab.nn.fused_gru._infer_rows`)."""
    for t in range(T_run):
        matmul_packed(X[b0:b1, t], Wxp, XH[0, b0:b1])
        matmul_packed(HN[b0:b1], Wp, HP[b0:b1])
        _infer_step(t, 0, XH, HP, P, M, L, ST, Y, HN, SC, ln, relu, True, b0, b1)


@numba.njit(**_JIT)
def _backward_step(t, DY, DHM, P, M, L, SV, Y, XN, DXP, DHP, DS, ACC, SC, ln, relu, b0, b1):
    """Backward of step t for rows b0 <= b < b1. DHM (B, H) = dL/d(h_t ⊙ m) via step t+1's product (zero at the last
    step); DS (B, H) dL/dh_t carried through frozen steps (zeroed once used); DXP, DHP (B, T, H) written at t (the
    same array without layer norm); ACC float64 parameter grads. No slice inside the loop over rows (see
    :func:`_forward_step`); the bias gradient and both product layer norms take two passes over H."""
    H = DXP.shape[2]
    inv_h = SC[1]
    g_ih, g_hh = P[H:2 * H], P[2 * H:3 * H]
    acc_b, acc_ih, acc_hh = ACC[0:H], ACC[H:2 * H], ACC[2 * H:3 * H]
    o_rs = _u(H)
    zero = _ZERO * SC[0]
    for b in range(_u(b0), _u(b1)):  # unsigned: no negative-index wraparound on b
        if t >= L[b]:  # frozen step: the carried grad passes through unchanged
            for k in range(H):
                DXP[b, t, k] = zero
            if ln:
                for k in range(H):
                    DHP[b, t, k] = zero
            continue
        if relu:  # dL/dh_t, all paths, through φ (φ' read off h_t)
            for k in range(H):
                g = DS[b, k] + DHM[b, k] * M[b, k] + DY[b, t, k]
                DXP[b, t, k] = g if Y[b, t, k] > zero else zero
        else:
            for k in range(H):
                g = DS[b, k] + DHM[b, k] * M[b, k] + DY[b, t, k]
                h = Y[b, t, k]
                DXP[b, t, k] = g * (_ONE - h * h)
        for k in range(H):
            DS[b, k] = zero
        if ln:  # through LN(x̂) γ_ih (DXP) and LN(ĥ) γ_hh (DHP), from the same da
            s1x, s2x, s1h, s2h = zero, zero, zero, zero
            for k in range(H):
                d, xn, hn = DXP[b, t, k], XN[b, t, k], SV[b, t, k]
                acc_b[k] += d
                acc_ih[k] += d * xn
                acc_hh[k] += d * hn
                dxg = d * g_ih[k]
                dhg = d * g_hh[k]
                s1x += dxg
                s2x += dxg * xn
                s1h += dhg
                s2h += dhg * hn
            s1x *= inv_h
            s2x *= inv_h
            s1h *= inv_h
            s2h *= inv_h
            rx, rh = SV[b, t, o_rs], SV[b, t, o_rs + _u(1)]
            for k in range(H):
                d = DXP[b, t, k]
                DHP[b, t, k] = rh * (d * g_hh[k] - s1h - SV[b, t, k] * s2h)
                DXP[b, t, k] = rx * (d * g_ih[k] - s1x - XN[b, t, k] * s2x)
        else:
            for k in range(H):
                acc_b[k] += DXP[b, t, k]


@numba.njit(**_JIT)
def _backward_loop(T_run, Wp, DY, DHM, P, M, L, SV, Y, XN, DXP, DHP, DS, ACC, SC, ln, relu, b0, b1):
    """The backward time loop of a small layer in one call, for rows b0..b1-1: steps T_run-1..0 of
    :func:`_backward_step`, each followed by DHM = DHP_t W_hh for those rows (DHM (B, H), in place), Wp =
    pack_panels(W_hh) (W_hh (H, H)). Same arrays as there; ACC this range's own (the ranges' sums added after)."""
    for t in range(T_run - 1, -1, -1):
        _backward_step(t, DY, DHM, P, M, L, SV, Y, XN, DXP, DHP, DS, ACC, SC, ln, relu, b0, b1)
        matmul_packed(DHP[b0:b1, t], Wp, DHM[b0:b1])

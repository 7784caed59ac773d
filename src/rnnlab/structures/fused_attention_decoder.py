r"""The one-layer LSTM decoder with attention over a known target as one autograd Function: the loop of
:mod:`rnnlab.structures.teacher_forcing` with a hand-written backward through time.

Autograd records some 30 nodes per decoder step and walks them back one by one; at translation sizes that
bookkeeping, not the arithmetic, is most of the step. Here the forward runs the step's few tensor operations
without recording, saving what the backward needs; the backward runs one reverse loop of plain tensor
operations, and every weight gradient is one matrix product over all steps at the end (as in
:mod:`rnnlab.nn.fused_lstm`). Symbols as in :mod:`rnnlab.structures.teacher_forcing`; X is the embeddings'
share of the input product with b_ih, (B, T, 4H); K the keys; o the encoder outputs (memory); m the
additive mask (0 / −∞), gates i, f, g, o_g in torch's order.

Bahdanau, per step:   [r; q] = h_{t-1} [W_hh; W_q]ᵀ + [b_hh; 0];  U_t = tanh(q + K);  α_t = softmax(U_t v + m)
                      ĉ_t = α_t o;  a_t = X_t + r + ĉ_t W_xᵀ;  (h_t, c_t) = LSTM(a_t, c_{t-1})
  backward, per step (reverse): dh_t = dH_t + dh_{t+1}',  LSTM -> da_t, dc_{t-1};  dĉ_t = dĈ_t + da_t W_x
                      dα = dĉ oᵀ;  de = α ⊙ (dα − Σ α dα);  dP = de v ⊙ (1 − U²);  dq = Σ_s dP;  dK += dP
                      dh_{t-1}' = [da_t; dq] [W_hh; W_q]
  at the end: dW_hh = dAᵀ H_prev, dW_q = dQᵀ H_prev, dW_x = dAᵀ Ĉ, dv = Uᵀ dE, do = αᵀ dĈ (one bmm), dX = dA.

Luong (input feeding), per step:   a_t = X_t + r_t + h̃_{t-1} W_xᵀ;  (h_t, c_t) = LSTM(a_t, c_{t-1})
                      [r_{t+1}; z'] = h_t [W_hh; W_hh̃]ᵀ + [b_hh; b_h];  α_t = softmax(K h_t + m);  ĉ_t = α_t o
                      h̃_t = tanh(z' + ĉ_t W_hcᵀ)
  backward, per step (reverse): dh̃_t = dH̃_t + da_{t+1} W_x;  dz = dh̃ ⊙ (1 − h̃²);  dĉ = dz W_hc;
                      dα = dĉ oᵀ;  de = α ⊙ (dα − Σ α dα);  dh_t = [da_{t+1}; dz] [W_hh; W_hh̃] + de K;  LSTM -> da_t
  at the end: dW_hh = dAᵀ H_prev, dW_hh̃ = dZᵀ H, dW_hc = dZᵀ Ĉ, dW_x = dAᵀ H̃_prev, dK = dEᵀ H (one bmm),
              do = αᵀ dĈ (one bmm), dX = dA.

Three implementations of these equations (``impl``): on the CPU, :mod:`.fused_attention_numba` runs every
step's element-wise work (the cell, the scores, the masked softmax, the context, h̃) in compiled numba kernels,
the whole loop in one call per pass where the per-step products are small (``auto`` picks; measured 1.5-3x
faster than the torch loop below, see :func:`.fused_attention_numba.whole_loop`); the loop of torch ops in this
module runs on other devices (and is kept as a second reference).
CPU or GPU, float32 or float64, outside autocast; :func:`applies` says when. Double backward is not supported.
The tests compare every output and gradient with the autograd loop and with Seq2Seq's step loop.
"""
from __future__ import annotations

from typing import Literal, Optional, get_args

import torch
from torch import Tensor

from rnnlab.nn._gemm import linear

from . import fused_attention_numba as numba_loop

_ONE = torch.ones(())


def applies(model, x: Tensor) -> bool:
    """Whether the fused loop runs this model: a one-layer LSTM decoder, float32/64, no autocast."""
    return (model.decoder.cell_type == "lstm" and model.decoder.num_layers == 1
            and x.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled(x.device.type))


Impl = Literal["auto", "numba", "numba-step", "torch"]
"""How the loop runs: ``numba`` the whole loop in one compiled call per pass, ``numba-step`` a Python loop with
oneDNN's products and one compiled call per step between them (both :mod:`.fused_attention_numba`), ``torch``
the loop of torch ops below; ``auto`` numba on the CPU (whole loop or per step by
:func:`.fused_attention_numba.whole_loop`), torch elsewhere."""


def bahdanau(X, h0, c0, W_hh, b_hh, W_q, W_x, v, keys, memory, additive: Optional[Tensor], *, impl: Impl = "auto"):
    """-> (H (B, T, H), Ĉ (B, T, E), α (B, T, S))."""
    impl = _pick(impl, X, W_hh.shape[1], W_hh.shape[0], W_q.shape[0])
    if impl == "torch":
        return _Bahdanau.apply(X, h0, c0, W_hh, b_hh, W_q, W_x, v, keys, memory, additive)
    return numba_loop.BahdanauNumba.apply(X, h0, c0, W_hh, b_hh, W_q, W_x, v, keys, memory, additive,
                                          impl == "numba")


def luong(X, h0, c0, W_hh, b_hh, W_x, W_ht, W_hc, b_h, keys, memory, additive: Optional[Tensor], *,
          impl: Impl = "auto"):
    """-> (H̃ (B, T, H), α (B, T, S))."""
    impl = _pick(impl, X, W_hh.shape[1], W_hh.shape[0], W_ht.shape[0])
    if impl == "torch":
        return _Luong.apply(X, h0, c0, W_hh, b_hh, W_x, W_ht, W_hc, b_h, keys, memory, additive)
    return numba_loop.LuongNumba.apply(X, h0, c0, W_hh, b_hh, W_x, W_ht, W_hc, b_h, keys, memory, additive,
                                       impl == "numba")


def _pick(impl: Impl, X: Tensor, H: int, G: int, A: int) -> str:
    """``auto`` resolved: the numba loops on the CPU, whole or per step by size; torch on other devices."""
    if impl not in get_args(Impl):
        raise ValueError(f"impl must be one of {get_args(Impl)}, got {impl!r}")
    if impl != "auto":
        return impl
    if X.device.type != "cpu":
        return "torch"
    return "numba" if numba_loop.whole_loop(X.shape[0], H, G, A) else "numba-step"


# -- the LSTM's element-wise part, forward and backward ------------------------------------------
def _tanh_(x: Tensor) -> Tensor:
    """tanh in place as 2σ(2x) − 1: torch's CPU tanh is ~5-8× slower than its sigmoid here (measured at (64, 36,
    128) on the AVX-512 build: 0.80 ms against 0.15 ms), and Bahdanau's score applies it to B·S·A values per step.
    Equal to tanh up to rounding (absolute error ~1 ulp of 1, so relative error grows only where |x| ≪ 1)."""
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _lstm_forward(a: Tensor, c: Tensor, h_out: Tensor, c_out: Tensor, tanh_out: Tensor) -> None:
    """a (B, 4H) pre-activations, overwritten with the gate values i, f, g, o; c = c_{t-1} (B, H) -> writes h_t,
    c_t and tanh c_t into the given buffers."""
    H = c.shape[1]
    a[:, : 2 * H].sigmoid_()
    _tanh_(a[:, 2 * H : 3 * H])
    a[:, 3 * H :].sigmoid_()
    i, f, g, o = a.split(H, dim=1)
    torch.mul(f, c, out=c_out).addcmul_(i, g)
    _tanh_(tanh_out.copy_(c_out))
    torch.mul(o, tanh_out, out=h_out)


def _lstm_backward(dh: Tensor, dc: Tensor, gates: Tensor, c_prev: Tensor, tanh_c: Tensor, out: Tensor) -> Tensor:
    """dh, dc (B, H) at step t -> writes the pre-activation gradients into out (B, 4H); returns dc_{t-1}."""
    i, f, g, o = gates.split(gates.shape[1] // 4, dim=1)
    d_i, d_f, d_g, d_o = out.split(gates.shape[1] // 4, dim=1)
    dc = torch.addcmul(dc, dh * o, 1.0 - tanh_c * tanh_c)  # dc_t
    torch.mul(dc * g, i - i * i, out=d_i)  # input gate
    torch.mul(dc * c_prev, f - f * f, out=d_f)  # forget gate
    torch.mul(dc * i, 1.0 - g * g, out=d_g)  # candidate
    torch.mul(dh * tanh_c, o - o * o, out=d_o)  # output gate
    return dc * f


def _softmax(e: Tensor, additive: Optional[Tensor]) -> Tensor:
    return torch.softmax(e if additive is None else e + additive, dim=-1)


def _softmax_backward(alpha: Tensor, d_alpha: Tensor, out: Tensor) -> Tensor:
    """d e = α ⊙ (dα − Σ_s α dα), (B, S), written into out."""
    return torch.mul(alpha, d_alpha - (alpha * d_alpha).sum(dim=1, keepdim=True), out=out)


class _Bahdanau(torch.autograd.Function):
    # buffers are time-major, (T, B, ·), written in place: no per-step list and no stack at the end
    @staticmethod
    def forward(ctx, X, h0, c0, W_hh, b_hh, W_q, W_x, v, keys, memory, additive):
        B, T, G = X.shape
        (_, S, A), E, H = keys.shape, memory.shape[2], h0.shape[1]
        W_rq = torch.cat([W_hh, W_q])  # (4H + A, H)
        W_x = W_x.contiguous()  # a column block of W_ih: oneDNN's product is ~100× slower on a strided weight
        b_rq = torch.cat([b_hh, b_hh.new_zeros(A)])
        states, cells = X.new_empty(T + 1, B, H), X.new_empty(T + 1, B, H)  # h_{-1}, h_0 … h_{T-1}; the same for c
        states[0], cells[0] = h0, c0
        gates, tanhs = X.new_empty(T, B, G), X.new_empty(T, B, H)
        U_all, contexts, alphas = X.new_empty(T, B, S, A), X.new_empty(T, B, E), X.new_empty(T, B, S)
        X_t = X.transpose(0, 1)  # (T, B, 4H)
        for t in range(T):
            r, q = linear(states[t], W_rq).add_(b_rq).split([G, A], dim=1)  # (B, 4H), (B, A)
            U = _tanh_(torch.add(keys, q.unsqueeze(1), out=U_all[t]))  # (B, S, A)
            alpha = alphas[t]
            alpha.copy_(_softmax(U @ v, additive))  # (B, S)
            torch.bmm(alpha.unsqueeze(1), memory, out=contexts[t].unsqueeze(1))  # ĉ_t (B, E)
            a = torch.add(X_t[t], r, out=gates[t]).add_(linear(contexts[t], W_x))  # (B, 4H)
            _lstm_forward(a, cells[t], states[t + 1], cells[t + 1], tanhs[t])
        ctx.save_for_backward(W_rq, W_x, v, memory, states, cells, gates, tanhs, U_all, contexts, alphas)
        outputs = (states[1:], contexts, alphas)
        return tuple(o.transpose(0, 1).contiguous() for o in outputs)  # (B, T, ·)

    @staticmethod
    def backward(ctx, dH, dC, d_alpha):
        W_rq, W_x, v, memory, states, cells, gates, tanhs, U_all, contexts, alphas = ctx.saved_tensors
        T, B, G = gates.shape
        A, H = v.shape[0], states.shape[2]
        dH = _zeros_if_none(dH, (B, T, H), W_x)
        dC = _zeros_if_none(dC, (B, T, contexts.shape[2]), W_x)
        dAQ = gates.new_empty(T, B, G + A)  # [da_t | dq_t]: what multiplies [W_hh; W_q]
        dE, dCt = torch.empty_like(alphas), torch.empty_like(contexts)
        dK = torch.zeros_like(U_all[0])  # (B, S, A)
        memory_t = memory.transpose(1, 2)  # (B, E, S): dĉ oᵀ as a row vector times a matrix (see _Luong.forward)
        dh_rec = torch.zeros_like(states[0])
        dc = torch.zeros_like(states[0])
        W_x_t, W_rq_t = W_x.t().contiguous(), W_rq.t().contiguous()  # for linear(), which multiplies by wᵀ
        for t in reversed(range(T)):
            da, dq = dAQ[t].split([G, A], dim=1)
            dc = _lstm_backward(dH[:, t] + dh_rec, dc, gates[t], cells[t], tanhs[t], out=da)
            d_ctx = torch.add(dC[:, t], linear(da.contiguous(), W_x_t), out=dCt[t])  # (B, E)
            da_alpha = torch.bmm(d_ctx.unsqueeze(1), memory_t).squeeze(1)  # dĉ oᵀ, (B, S)
            if d_alpha is not None:
                da_alpha = da_alpha + d_alpha[:, t]
            de = _softmax_backward(alphas[t], da_alpha, out=dE[t])  # (B, S)
            U = U_all[t]
            dP = torch.addcmul(_ONE.to(U), U, U, value=-1.0).mul_(v).mul_(de.unsqueeze(-1))  # (1 − U²) v de, (B, S, A)
            dK.add_(dP)
            torch.sum(dP, dim=1, out=dq)  # (B, A)
            dh_rec = linear(dAQ[t], W_rq_t)  # (B, H)
        rows = dAQ.reshape(T * B, G + A)  # time-major rows, as states, contexts and U_all
        dW_hh, dW_q = (rows.t() @ states[:-1].reshape(T * B, H)).split([G, A])  # h_{t-1}
        dA = rows[:, :G]
        dW_x = dA.t() @ contexts.reshape(T * B, -1)
        dv = U_all.reshape(-1, A).t() @ dE.reshape(-1)
        d_memory = torch.bmm(alphas.permute(1, 2, 0), dCt.transpose(0, 1))  # Σ_t α_tᵀ dĉ_t, (B, S, E)
        dX = dAQ[:, :, :G].transpose(0, 1)  # (B, T, 4H)
        return dX, dh_rec, dc, dW_hh, dA.sum(0), dW_q, dW_x, dv, dK, d_memory, None


class _Luong(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, h0, c0, W_hh, b_hh, W_x, W_ht, W_hc, b_h, keys, memory, additive):
        B, T, G = X.shape
        (_, S, _), E, H = keys.shape, memory.shape[2], h0.shape[1]
        W_ra = torch.cat([W_hh, W_ht])  # (4H + H, H)
        W_x, W_hc = W_x.contiguous(), W_hc.contiguous()  # column blocks: oneDNN is ~100× slower on strided weights
        b_ra = torch.cat([b_hh, b_h])
        r = linear(h0, W_hh).add_(b_hh)  # (B, 4H)
        keys_t = keys.transpose(1, 2)  # (B, H, S): a row vector times a matrix, 8× faster in bmm than K h
        states, cells = X.new_empty(T + 1, B, H), X.new_empty(T + 1, B, H)  # h_{-1}, h_0 … h_{T-1}; the same for c
        states[0], cells[0] = h0, c0
        tildes = X.new_zeros(T + 1, B, H)  # h̃_{-1} = 0, h̃_0 … h̃_{T-1}
        gates, tanhs = X.new_empty(T, B, G), X.new_empty(T, B, H)
        contexts, alphas = X.new_empty(T, B, E), X.new_empty(T, B, S)
        X_t = X.transpose(0, 1)  # (T, B, 4H)
        for t in range(T):
            a = torch.add(X_t[t], r, out=gates[t]).add_(linear(tildes[t], W_x))  # (B, 4H)
            _lstm_forward(a, cells[t], states[t + 1], cells[t + 1], tanhs[t])
            h = states[t + 1]
            r, z = linear(h, W_ra).add_(b_ra).split([G, H], dim=1)  # (B, 4H), (B, H)
            alpha = alphas[t]
            alpha.copy_(_softmax(torch.bmm(h.unsqueeze(1), keys_t).squeeze(1), additive))  # softmax(K h + m), (B, S)
            torch.bmm(alpha.unsqueeze(1), memory, out=contexts[t].unsqueeze(1))  # ĉ_t (B, E)
            _tanh_(torch.add(z, linear(contexts[t], W_hc), out=tildes[t + 1]))  # h̃_t (B, H)
        ctx.save_for_backward(W_ra, W_x, W_hc, keys, memory, states, cells, tildes, contexts, alphas, gates, tanhs)
        return tildes[1:].transpose(0, 1).contiguous(), alphas.transpose(0, 1).contiguous()  # (B, T, ·)

    @staticmethod
    def backward(ctx, d_tilde, d_alpha):
        W_ra, W_x, W_hc, keys, memory, states, cells, tildes, contexts, alphas, gates, tanhs = ctx.saved_tensors
        T, B, G = gates.shape
        H = states.shape[2]
        d_tilde = _zeros_if_none(d_tilde, (B, T, H), W_x)
        dAZ = gates.new_empty(T + 1, B, G + H)  # [da_{t+1} | dz_t]: what multiplies [W_hh; W_hh̃] at h_t
        dAZ[T, :, :G] = 0.0  # da_T: no step after the last
        dE, dCt = torch.empty_like(alphas), torch.empty_like(contexts)
        d_feed = torch.zeros_like(states[0])  # from h̃_t's use in step t+1
        dc = torch.zeros_like(states[0])
        memory_t = memory.transpose(1, 2)  # (B, E, S)
        W_x_t, W_ra_t, W_hc_t = (w.t().contiguous() for w in (W_x, W_ra, W_hc))  # for linear(): it takes wᵀ
        for t in reversed(range(T)):
            tilde = tildes[t + 1]
            dz = dAZ[t + 1, :, G:]
            torch.add(d_feed, d_tilde[:, t], out=dz).mul_(1.0 - tilde * tilde)  # (B, H)
            d_ctx = dCt[t].copy_(linear(dz.contiguous(), W_hc_t))  # (B, E)
            da_alpha = torch.bmm(d_ctx.unsqueeze(1), memory_t).squeeze(1)  # dĉ oᵀ, (B, S)
            if d_alpha is not None:
                da_alpha = da_alpha + d_alpha[:, t]
            de = _softmax_backward(alphas[t], da_alpha, out=dE[t])  # (B, S)
            dh = linear(dAZ[t + 1], W_ra_t)  # (B, H)
            dh.unsqueeze_(1).baddbmm_(de.unsqueeze(1), keys)  # + de K
            da = dAZ[t, :, :G]
            dc = _lstm_backward(dh.squeeze(1), dc, gates[t], cells[t], tanhs[t], out=da)
            d_feed = linear(da.contiguous(), W_x_t)  # to h̃_{t-1}
        W_hh = W_ra[:G]
        da0 = dAZ[0, :, :G]
        dh0 = da0 @ W_hh  # r_0 = h0 W_hhᵀ + b_hh
        dA = dAZ[:T, :, :G].reshape(T * B, G)  # da_0 … da_{T-1}
        dZ = dAZ[1:, :, G:].reshape(T * B, H)  # dz_0 … dz_{T-1}
        dW_hh = dA.t() @ states[:-1].reshape(T * B, H)  # h_{t-1}
        dW_x = dA.t() @ tildes[:-1].reshape(T * B, H)  # h̃_{t-1}
        dW_ht = dZ.t() @ states[1:].reshape(T * B, H)
        dW_hc = dZ.t() @ contexts.reshape(T * B, -1)
        dK = torch.bmm(dE.permute(1, 2, 0), states[1:].transpose(0, 1))  # Σ_t de_tᵀ h_t, (B, S, H)
        d_memory = torch.bmm(alphas.permute(1, 2, 0), dCt.transpose(0, 1))  # Σ_t α_tᵀ dĉ_t, (B, S, E)
        dX = dAZ[:T, :, :G].transpose(0, 1)  # (B, T, 4H)
        return dX, dh0, dc, dW_hh, dA.sum(0), dW_x, dW_ht, dW_hc, dZ.sum(0), dK, d_memory, None


def _zeros_if_none(grad: Optional[Tensor], shape, like: Tensor) -> Tensor:
    return like.new_zeros(shape) if grad is None else grad

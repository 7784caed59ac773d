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

CPU or GPU, float32 or float64, outside autocast; :func:`applies` says when. Double backward is not supported.
The tests compare every output and gradient with the autograd loop and with Seq2Seq's step loop.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


_ONE = torch.ones(())


def applies(model, x: Tensor) -> bool:
    """Whether the fused loop runs this model: a one-layer LSTM decoder, float32/64, no autocast."""
    return (model.decoder.cell_type == "lstm" and model.decoder.num_layers == 1
            and x.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled(x.device.type))


def bahdanau(X, h0, c0, W_hh, b_hh, W_q, W_x, v, keys, memory, additive: Optional[Tensor]):
    """-> (H (B, T, H), Ĉ (B, T, E), α (B, T, S))."""
    return _Bahdanau.apply(X, h0, c0, W_hh, b_hh, W_q, W_x, v, keys, memory, additive)


def luong(X, h0, c0, W_hh, b_hh, W_x, W_ht, W_hc, b_h, keys, memory, additive: Optional[Tensor]):
    """-> (H̃ (B, T, H), α (B, T, S))."""
    return _Luong.apply(X, h0, c0, W_hh, b_hh, W_x, W_ht, W_hc, b_h, keys, memory, additive)


# -- the LSTM's element-wise part, forward and backward ------------------------------------------
def _tanh_(x: Tensor) -> Tensor:
    """tanh in place as 2σ(2x) − 1: torch's CPU tanh is ~5-8× slower than its sigmoid here (measured at (64, 36,
    128) on the AVX-512 build: 0.80 ms against 0.15 ms), and Bahdanau's score applies it to B·S·A values per step.
    Equal to tanh up to rounding (absolute error ~1 ulp of 1, so relative error grows only where |x| ≪ 1)."""
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _lstm_forward(a: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """a (B, 4H) pre-activations (overwritten with the gate values i, f, g, o) -> (h, c, tanh c)."""
    H = c.shape[1]
    a[:, : 2 * H].sigmoid_()
    _tanh_(a[:, 2 * H : 3 * H])
    a[:, 3 * H :].sigmoid_()
    i, f, g, o = a.split(H, dim=1)
    c = torch.addcmul(f * c, i, g)
    tanh_c = _tanh_(c.clone())
    return o * tanh_c, c, tanh_c


def _lstm_backward(dh: Tensor, dc: Tensor, gates: Tensor, c_prev: Tensor, tanh_c: Tensor) -> tuple[Tensor, Tensor]:
    """dh, dc (B, H) at step t -> (da (B, 4H) pre-activation gradients, dc_{t-1})."""
    i, f, g, o = gates.split(gates.shape[1] // 4, dim=1)
    dc = torch.addcmul(dc, dh * o, 1.0 - tanh_c * tanh_c)  # dc_t
    da = torch.cat([dc * g * i * (1.0 - i),  # input gate
                    dc * c_prev * f * (1.0 - f),  # forget gate
                    dc * i * (1.0 - g * g),  # candidate
                    dh * tanh_c * o * (1.0 - o)], dim=1)  # output gate
    return da, dc * f


def _softmax(e: Tensor, additive: Optional[Tensor]) -> Tensor:
    return torch.softmax(e if additive is None else e + additive, dim=-1)


def _softmax_backward(alpha: Tensor, d_alpha: Tensor) -> Tensor:
    """d e = α ⊙ (dα − Σ_s α dα), (B, S)."""
    return alpha * (d_alpha - (alpha * d_alpha).sum(dim=1, keepdim=True))


class _Bahdanau(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, h0, c0, W_hh, b_hh, W_q, W_x, v, keys, memory, additive):
        B, T, G = X.shape
        A = W_q.shape[0]
        W_rq = torch.cat([W_hh, W_q])  # (4H + A, H)
        b_rq = torch.cat([b_hh, b_hh.new_zeros(A)])
        h, c = h0, c0
        H_all, C_all, alphas, gates, cells, tanhs, U_all = [], [], [], [], [], [], []
        h_prev = []
        for t in range(T):
            h_prev.append(h)
            r, q = torch.addmm(b_rq, h, W_rq.t()).split([G, A], dim=1)  # (B, 4H), (B, A)
            U = _tanh_(keys + q.unsqueeze(1))  # (B, S, A)
            alpha = _softmax(U @ v, additive)  # (B, S)
            ctx_t = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)  # (B, E)
            a = torch.addmm(X[:, t] + r, ctx_t, W_x.t())  # (B, 4H)
            cells.append(c)
            h, c, tanh_c = _lstm_forward(a, c)
            H_all.append(h), C_all.append(ctx_t), alphas.append(alpha), gates.append(a), tanhs.append(tanh_c)
            U_all.append(U)
        H_out, C_out, alpha_out = torch.stack(H_all, 1), torch.stack(C_all, 1), torch.stack(alphas, 1)
        ctx.save_for_backward(W_rq, W_x, v, memory, torch.stack(h_prev), torch.stack(cells), torch.stack(gates),
                              torch.stack(tanhs), torch.stack(U_all), C_out, alpha_out)
        return H_out, C_out, alpha_out

    @staticmethod
    def backward(ctx, dH, dC, d_alpha):
        W_rq, W_x, v, memory, H_prev, cells, gates, tanhs, U_all, C_out, alpha_out = ctx.saved_tensors
        T, B, G = gates.shape
        A = v.shape[0]
        dH = _zeros_if_none(dH, (B, T, G // 4), W_x)
        dC = _zeros_if_none(dC, C_out.shape, W_x)
        dA, dQ, dE, dC_total = [None] * T, [None] * T, [None] * T, [None] * T
        dK = torch.zeros_like(U_all[0])  # (B, S, A)
        memory_t = memory.transpose(1, 2)  # (B, E, S): dĉ oᵀ as a row vector times a matrix (see _Luong.forward)
        dh_rec = torch.zeros_like(H_prev[0])
        dc = torch.zeros_like(H_prev[0])
        for t in reversed(range(T)):
            da, dc = _lstm_backward(dH[:, t] + dh_rec, dc, gates[t], cells[t], tanhs[t])
            d_ctx = torch.addmm(dC[:, t], da, W_x)  # (B, E)
            alpha = alpha_out[:, t]
            da_alpha = torch.bmm(d_ctx.unsqueeze(1), memory_t).squeeze(1)  # dĉ oᵀ, (B, S)
            if d_alpha is not None:
                da_alpha = da_alpha + d_alpha[:, t]
            de = _softmax_backward(alpha, da_alpha)  # (B, S)
            U = U_all[t]
            dP = torch.addcmul(_ONE.to(U), U, U, value=-1.0).mul_(v).mul_(de.unsqueeze(-1))  # (1 − U²) v de, (B, S, A)
            dK.add_(dP)
            dq = dP.sum(dim=1)  # (B, A)
            dh_rec = torch.cat([da, dq], dim=1) @ W_rq  # (B, H)
            dA[t], dQ[t], dE[t], dC_total[t] = da, dq, de, d_ctx
        dA, dQ, dE, dCt = torch.stack(dA, 1), torch.stack(dQ, 1), torch.stack(dE, 0), torch.stack(dC_total, 1)
        Hp = H_prev.transpose(0, 1).reshape(B * T, -1)  # (B·T, H): h_{t-1}
        dA2 = dA.reshape(B * T, G)
        dW_hh = dA2.t() @ Hp
        dW_q = dQ.reshape(B * T, A).t() @ Hp
        dW_x = dA2.t() @ C_out.reshape(B * T, -1)
        dv = U_all.reshape(-1, A).t() @ dE.reshape(-1)  # U (T, B, S, A), dE (T, B, S)
        d_memory = torch.bmm(alpha_out.transpose(1, 2), dCt)  # (B, S, E)
        return dA, dh_rec, dc, dW_hh, dA2.sum(0), dW_q, dW_x, dv, dK, d_memory, None


class _Luong(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, h0, c0, W_hh, b_hh, W_x, W_ht, W_hc, b_h, keys, memory, additive):
        B, T, G = X.shape
        H = h0.shape[1]
        W_ra = torch.cat([W_hh, W_ht])  # (4H + H, H)
        b_ra = torch.cat([b_hh, b_h])
        r = torch.addmm(b_hh, h0, W_hh.t())  # (B, 4H)
        c = c0
        feed = h0.new_zeros(B, H)  # h̃_{-1}
        keys_t = keys.transpose(1, 2)  # (B, H, S): a row vector times a matrix, 8× faster in bmm than K h
        H_all, C_all, T_all, alphas, gates, cells, tanhs = [], [], [], [], [], [], []
        for t in range(T):
            a = torch.addmm(X[:, t] + r, feed, W_x.t())  # (B, 4H)
            cells.append(c)
            h, c, tanh_c = _lstm_forward(a, c)
            r, z = torch.addmm(b_ra, h, W_ra.t()).split([G, H], dim=1)  # (B, 4H), (B, H)
            alpha = _softmax(torch.bmm(h.unsqueeze(1), keys_t).squeeze(1), additive)  # softmax(K h + m), (B, S)
            ctx_t = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)  # (B, E)
            feed = _tanh_(torch.addmm(z, ctx_t, W_hc.t()))  # h̃_t (B, H)
            H_all.append(h), C_all.append(ctx_t), T_all.append(feed), alphas.append(alpha)
            gates.append(a), tanhs.append(tanh_c)
        H_out, tilde_out, alpha_out = torch.stack(H_all, 1), torch.stack(T_all, 1), torch.stack(alphas, 1)
        ctx.save_for_backward(h0, W_ra, W_x, W_hc, keys, memory, H_out, torch.stack(C_all, 1), tilde_out,
                              alpha_out, torch.stack(gates), torch.stack(cells), torch.stack(tanhs))
        return tilde_out, alpha_out

    @staticmethod
    def backward(ctx, d_tilde, d_alpha):
        h0, W_ra, W_x, W_hc, keys, memory, H_out, C_out, tilde_out, alpha_out, gates, cells, tanhs = ctx.saved_tensors
        T, B, G = gates.shape
        H = h0.shape[1]
        d_tilde = _zeros_if_none(d_tilde, tilde_out.shape, W_x)
        dA, dZ, dE, dCt = [None] * T, [None] * T, [None] * T, [None] * T
        da_next = gates.new_zeros(B, G)  # da_{t+1}: 0 after the last step
        d_feed = torch.zeros_like(h0)  # from h̃_t's use in step t+1
        dc = torch.zeros_like(h0)
        memory_t = memory.transpose(1, 2)  # (B, E, S)
        for t in reversed(range(T)):
            tilde = tilde_out[:, t]
            dz = (d_feed + d_tilde[:, t]).mul_(1.0 - tilde * tilde)  # (B, H)
            d_ctx = dz @ W_hc  # (B, E)
            alpha = alpha_out[:, t]
            da_alpha = torch.bmm(d_ctx.unsqueeze(1), memory_t).squeeze(1)  # dĉ oᵀ, (B, S)
            if d_alpha is not None:
                da_alpha = da_alpha + d_alpha[:, t]
            de = _softmax_backward(alpha, da_alpha)  # (B, S)
            dh = torch.cat([da_next, dz], dim=1) @ W_ra  # (B, H)
            dh.unsqueeze_(1).baddbmm_(de.unsqueeze(1), keys)  # + de K
            da, dc = _lstm_backward(dh.squeeze(1), dc, gates[t], cells[t], tanhs[t])
            d_feed = da @ W_x  # to h̃_{t-1}
            da_next = da
            dA[t], dZ[t], dE[t], dCt[t] = da, dz, de, d_ctx
        dA, dZ, dE, dCt = torch.stack(dA, 1), torch.stack(dZ, 1), torch.stack(dE, 1), torch.stack(dCt, 1)
        W_hh = W_ra[:G]
        dh0 = da_next @ W_hh  # r_0 = h0 W_hhᵀ + b_hh
        H_prev = torch.cat([h0.unsqueeze(1), H_out[:, :-1]], dim=1).reshape(B * T, H)  # h_{t-1}
        tilde_prev = torch.cat([torch.zeros_like(h0).unsqueeze(1), tilde_out[:, :-1]], dim=1).reshape(B * T, H)
        dA2, dZ2 = dA.reshape(B * T, G), dZ.reshape(B * T, H)
        dW_hh = dA2.t() @ H_prev
        dW_x = dA2.t() @ tilde_prev
        dW_ht = dZ2.t() @ H_out.reshape(B * T, H)
        dW_hc = dZ2.t() @ C_out.reshape(B * T, -1)
        dK = torch.bmm(dE.transpose(1, 2), H_out)  # (B, S, H)
        d_memory = torch.bmm(alpha_out.transpose(1, 2), dCt)  # (B, S, E)
        return dA, dh0, dc, dW_hh, dA2.sum(0), dW_x, dW_ht, dW_hc, dZ2.sum(0), dK, d_memory, None


def _zeros_if_none(grad: Optional[Tensor], shape, like: Tensor) -> Tensor:
    return like.new_zeros(shape) if grad is None else grad

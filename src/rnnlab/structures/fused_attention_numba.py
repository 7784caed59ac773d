r"""The fused attention decoder's loops on compiled numba kernels: the same Functions as
:mod:`.fused_attention_decoder` (same inputs, outputs and equations), with each decoder step's element-wise
work (the LSTM cell, Bahdanau's v·tanh(q + K) or Luong's K h scores, the masked softmax over the source, the
context, the attentional layer h̃) in :mod:`._attention_kernels` instead of some 70 small torch ops per step.

Two ways to run the loop (``whole``):
  True   the whole teacher-forced time loop is one numba call per pass, its per-step products on
         :func:`rnnlab.nn._ukernel.matmul_packed` (weights packed once per pass): no Python and no torch
         dispatch per step;
  False  a Python loop per step, the products on oneDNN (``rnnlab.nn._gemm.linear``) and the element-wise work
         in one numba call between them: for products large enough that oneDNN's speed pays for its call.
:func:`whole_loop` picks by the size of the per-step products (see its docstring for the measurements).
Outside the loop, on torch/oneDNN as in :mod:`.fused_attention_decoder`: x̂ + b_hh for all steps, the keys,
dX, the memory's gradient (one bmm); the weight gradients over all steps at once, on the micro-kernel with one
torch thread (:func:`._attention_kernels.chunked_product`), else as single oneDNN products.
CPU, float32 or float64 (float64 through the same kernels, for the tests). Double backward is not supported.
The kernels compile on first use per dtype (~10-20 s) and are cached on disk (numba ``cache=True``).

Where the time goes (Bahdanau, µs per decoder step, one thread, the kernels timed alone, a quarter of the rows
half padding; deu_eng: B=64, T=12, S=16, H=A=E=128 | wide: B=64, T=S=25, H=A=E=256): forward, the products
h [W_hh; W_q]ᵀ and ĉ W_xᵀ ~97 | ~405, scores + softmax + context 47 | 115, the cell 14 | 41; backward, the
products ~101 | ~425, the scores' backward 43 | 147, the cell 9 | 44. The products run on
``_ukernel.matmul_packed`` at ~95-100 multiply-adds per ns (the plain numba loop before it: 48-64, 190 µs
forward at deu_eng), near that kernel's peak. Once per backward pass the weight gradients (daᵀ [h | ĉ] and
dqᵀ h, 126 M | 943 M multiply-adds) run on the same micro-kernel in chunks of 256 rows
(:func:`._attention_kernels.chunked_product`: 1.26 | 11.2 ms against oneDNN's 1.54 | 13.5 ms for one product
that also computed the unused dqᵀ ĉ block). The whole Function (forward + backward, whole loop) takes 8.6 | 47 ms
against 11.1 | 63 ms with ``_matmul`` and oneDNN's weight gradients (benchmarks/seq2seq_attention.py --loops,
9 rounds, the two trees in turn on a loaded machine).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnlab.nn._gemm import linear, weight_grad
from rnnlab.nn._ukernel import pack_panels, panel_width

from . import _attention_kernels as K_


def whole_loop(B: int, H: int, G: int, A: int) -> bool:
    """Whether the whole loop runs in numba (True) or per step with oneDNN's products (False).

    The decider is the per-step product h_{t-1} [W_hh; W_q]ᵀ ((B, H) x (H, G + A)) against
    :data:`WHOLE_LOOP_MAX_MACS` (one torch thread) or :data:`WHOLE_LOOP_MAX_MACS_THREADED` (more: the numba loop
    runs on one thread, oneDNN's per-step products on all of them).
    Measured with the products on ``_ukernel.matmul_packed`` (benchmarks/seq2seq_attention.py --loops --clock cpu,
    the Function alone, forward + backward, ms, one thread, interleaved, 9 rounds (5 for the last three), loaded
    machine; whole / per step / the torch loop of :mod:`.fused_attention_decoder`, and whole ÷ per step, median
    of per-round ratios), Bahdanau | Luong, A = E = H:
      B=8,    T=12, S=16, H=128 (0.66 M MACs)      2.14 / 3.88 / 6.94 0.55  |  2.21 / 4.96 / 7.87 0.47
      B=64,   T=12, S=16, H=128 (5.2 M, deu_eng)    8.59 / 11.2 / 16.3 0.81  |  7.97 / 10.2 / 13.9 0.79
      B=256,  T=12, S=16, H=128 (21 M)             24.9 / 27.5 / 49.0 0.91  |  32.2 / 36.8 / 47.9 0.90
      B=64,   T=S=25, H=256 (21 M, wide)           46.1 / 61.8 / 124  0.73  |  49.5 / 70.1 / 98.2 0.74
      B=1024, T=12, S=16, H=128 (84 M)             154 / 158 / 275    0.94  |  150 / 145 / 203    0.96
      B=256,  T=S=25, H=256 (84 M)                 229 / 234 / 511    0.93  |  213 / 238 / 308    0.90
      B=64,   T=S=25, H=512 (84 M)                 166 / 198 / 325    0.83  |  200 / 229 / 281    0.83
      B=128,  T=S=25, H=512 (168 M)                450 / 437 / 628    0.94  |  395 / 431 / 592    0.91
    With ``_matmul`` (the plain numba loop before) the whole loop was at parity from 21 M MACs on (0.91-1.03 at
    B=256 and wide) and the limit was 2^23; with the micro-kernel it wins at every size measured, by less as the
    products grow (oneDNN's per-step call costs relatively less): the one-thread limit is 2^27, between the
    largest shapes where it still wins by 5-17% (84 M) and the one near parity (168 M: medians within 3%). The
    numba loops beat the torch loop at every size, so ``auto`` never picks torch on the CPU. With more threads
    the limit stays 2^23, the rule measured before the micro-kernel (not re-measured: two threads cannot be timed
    on this loaded two-core machine)."""
    limit = WHOLE_LOOP_MAX_MACS if torch.get_num_threads() == 1 else WHOLE_LOOP_MAX_MACS_THREADED
    return B * H * (G + A) <= limit


WHOLE_LOOP_MAX_MACS = 1 << 27
"""Multiply-adds of the per-step product up to which the whole loop runs in numba, one torch thread (see
:func:`whole_loop`)."""
WHOLE_LOOP_MAX_MACS_THREADED = 1 << 23
"""The same with more than one torch thread."""


def _np(t: Tensor):
    return t.detach().numpy()


def _panels(W: Tensor):
    """W (K, N), any strides -> pack_panels(W) (P, K, NR): a per-step product's right operand, packed once a pass
    (one copy through a view when NR divides N; ``pack_panels`` copies panel by panel, ~5x slower at these sizes)."""
    K, N = W.shape
    NR = panel_width(_NUMPY_DTYPE[W.dtype])
    if N % NR:
        return pack_panels(W.detach().numpy())
    return W.detach().reshape(K, N // NR, NR).permute(1, 0, 2).contiguous().numpy()


_NUMPY_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}
_CHUNK = 256
"""Rows of Y per chunk of :func:`_kernels.chunked_product`. Measured (one thread, the weight gradients of
deu_eng | wide | dates, ms): kc = 128 1.39 | 12.4 | 1.29, 256 1.26 | 11.2 | 1.30, 384 1.30 | 11.3 | 1.20;
oneDNN (``_gemm.weight_grad``) 1.54 | 13.5 | 1.34."""


def _chunks(parts: list[Tensor]):
    """The column blocks of Y = [Y_1 | Y_2 | …] (M, n_i) -> Y in chunks of :data:`_CHUNK` rows, each packed into
    panels: (Yc (C, P, kc, NR), Yl (P, M − C·kc, NR)), the operands of :func:`_kernels.chunked_product`."""
    M = parts[0].shape[0]
    N = sum(p.shape[1] for p in parts)
    NR = panel_width(_NUMPY_DTYPE[parts[0].dtype])
    P = -(-N // NR)
    Y = parts[0].new_zeros(M, P * NR)  # the blocks side by side, zero past N
    col = 0
    for p in parts:
        Y[:, col:col + p.shape[1]] = p
        col += p.shape[1]
    C = M // _CHUNK
    Yc = Y[:C * _CHUNK].view(C, _CHUNK, P, NR).permute(0, 2, 1, 3).contiguous()
    Yl = Y[C * _CHUNK:].view(M - C * _CHUNK, P, NR).permute(1, 0, 2).contiguous()
    return Yc.numpy(), Yl.numpy()


def _weight_grads_in_numba() -> bool:
    """The weight gradients on the micro-kernel (one thread: 1.05-1.2x faster than oneDNN at the benchmark shapes,
    and no copies of strided gradients) or on oneDNN (more threads: the micro-kernel runs on one)."""
    return torch.get_num_threads() == 1


def _valid(additive, B: int, S: int, like: Tensor) -> Tensor:
    """1 at real source positions, 0 at padding (B, S), from the additive 0/−∞ mask (None: all real)."""
    if additive is None:
        return like.new_ones(B, S)
    return (additive == 0).to(like.dtype).contiguous()


def _time_major(grad, B: int, T: int, n: int, like: Tensor) -> Tensor:
    """(B, T, n) gradient -> (T, B, n) contiguous; zeros for None."""
    if grad is None:
        return like.new_zeros(T, B, n)
    return grad.detach().transpose(0, 1).contiguous()


class BahdanauNumba(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, h0, c0, W_hh, b_hh, W_q, W_x, v, keys, memory, additive, whole):
        B, T, G = X.shape
        (_, S, A), E, H = keys.shape, memory.shape[2], h0.shape[1]
        X, W_hh, W_q, W_x, v = X.detach(), W_hh.detach(), W_q.detach(), W_x.detach(), v.detach().contiguous()
        W_rq = torch.cat([W_hh, W_q])  # (G + A, H)
        W_x = W_x.contiguous()  # (G, E)
        XT = (X.transpose(0, 1) + b_hh.detach()).contiguous()  # x̂ + b_hh, (T, B, G)
        Kc, O = keys.detach().contiguous(), memory.detach().contiguous()
        valid = _valid(additive, B, S, X)
        states, cells = X.new_empty(T + 1, B, H), X.new_empty(T + 1, B, H)  # h_{-1}, h_0 … h_{T-1}; the same for c
        states[0], cells[0] = h0.detach(), c0.detach()
        gates, tanhs, Q = X.new_empty(T, B, G), X.new_empty(T, B, H), X.new_empty(T, B, A)
        alphas, contexts = X.new_empty(T, B, S), X.new_empty(T, B, E)
        RQ, CX = X.new_empty(B, G + A), X.new_empty(B, G)
        arrays = [_np(a) for a in (Kc, v, valid, O, Q, states, cells, gates, tanhs, alphas, contexts)]
        K, v_, valid_, O_, Q_, st, ce, ga, th, al, co = arrays
        XT_ = _np(XT)
        if whole:
            K_.bahdanau_forward(T, _panels(W_rq.t()), _panels(W_x.t()), XT_, K, v_, valid_, O_,
                                _np(RQ), _np(CX), Q_, st, ce, ga, th, al, co)
        else:
            for t in range(T):
                RQ_ = _np(linear(states[t], W_rq))  # [r; q], (B, G + A)
                K_.bahdanau_attend(t, RQ_, K, v_, valid_, O_, Q_, al, co)
                CX_ = _np(linear(contexts[t], W_x))  # ĉ_t W_xᵀ, (B, G)
                K_.bahdanau_cell(t, XT_, RQ_, CX_, st, ce, ga, th)
        ctx.save_for_backward(W_rq, W_x, v, Kc, O, valid, Q, states, cells, gates, tanhs, alphas, contexts)
        ctx.whole = whole
        outputs = (states[1:], contexts, alphas)
        return tuple(o.transpose(0, 1).contiguous() for o in outputs)  # (B, T, ·)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dH, dC, d_alpha):
        W_rq, W_x, v, Kc, O, valid, Q, states, cells, gates, tanhs, alphas, contexts = ctx.saved_tensors
        T, B, G = gates.shape
        (_, S, A), E, H = Kc.shape, O.shape[2], states.shape[2]
        like = states
        dH_, dC_, dal_ = (_time_major(g, B, T, n, like) for g, n in ((dH, H), (dC, E), (d_alpha, S)))
        DHR, DC = like.new_zeros(B, H), like.new_zeros(B, H)  # dL/dh_{t-1} through [r; q]; dL/dc carried
        DA, DCX = like.new_empty(B, G), like.new_empty(B, E)
        DAQ = like.new_empty(T, B, G + A)  # [da_t | dq_t]: what multiplies [W_hh; W_q]
        DCtx, DE = like.new_empty(T, B, E), like.new_empty(T, B, S)
        dK, dv = torch.zeros_like(Kc), torch.zeros_like(v)
        K, v_, valid_, O_, Q_ = (_np(a) for a in (Kc, v, valid, O, Q))
        ce, ga, th, al = (_np(a) for a in (cells, gates, tanhs, alphas))
        if ctx.whole:
            K_.bahdanau_backward(T, _panels(W_rq), _panels(W_x), _np(dH_), _np(dC_), _np(dal_), K, v_, valid_, O_,
                                 Q_, ce, ga, th, al, _np(DHR), _np(DC), _np(DA), _np(DCX), _np(DAQ), _np(DCtx),
                                 _np(DE), _np(dK), _np(dv))
        else:
            W_x_t, W_rq_t = W_x.t().contiguous(), W_rq.t().contiguous()  # linear() multiplies by wᵀ
            DHR_, DC_, DA_, DAQ_, DCtx_, DE_, dK_, dv_ = (_np(a) for a in (DHR, DC, DA, DAQ, DCtx, DE, dK, dv))
            dH_n, dC_n, dal_n = _np(dH_), _np(dC_), _np(dal_)
            for t in reversed(range(T)):
                K_.bahdanau_cell_backward(t, dH_n, DHR_, DC_, ce, ga, th, DAQ_, DA_)
                DCX_ = _np(linear(DA, W_x_t))  # da_t W_x, (B, E)
                K_.bahdanau_attend_backward(t, dC_n, DCX_, dal_n, K, v_, valid_, O_, Q_, al, DCtx_, DE_, dK_, dv_,
                                            DAQ_)
                DHR = linear(DAQ[t], W_rq_t)  # (B, H)
                DHR_ = _np(DHR)
        rows = DAQ.reshape(T * B, G + A)  # time-major rows, as states and contexts
        if _weight_grads_in_numba():  # daᵀ [h_{t-1} | ĉ_t] and dqᵀ h_{t-1} (dqᵀ ĉ, A × E, is not needed)
            dW = like.new_empty(G + A, H + E)
            Yc, Yl = _chunks([states[:-1].view(T * B, H), contexts.view(T * B, E)])
            PH = -(-H // Yc.shape[3])  # the panels that hold h's columns
            d, dW_ = _np(rows).T, _np(dW)  # (G + A, B·T) strided, (G + A, H + E)
            K_.chunked_product(d[:G], Yc, Yl, np.empty_like(dW_[:G]), dW_[:G])
            K_.chunked_product(d[G:], Yc[:, :PH], Yl[:PH], np.empty((A, H), dW_.dtype), dW_[G:, :H])
        else:  # one product for three weights: [da | dq]ᵀ [h_{t-1} | ĉ_t] (the dqᵀ ĉ block is not needed)
            dW = weight_grad(rows, torch.cat([states[:-1], contexts], dim=2).view(T * B, H + E))  # (G + A, H + E)
        dW_hh, dW_q, dW_x = dW[:G, :H], dW[G:, :H], dW[:G, H:]
        dA = rows[:, :G]
        d_memory = torch.bmm(alphas.permute(1, 2, 0), DCtx.transpose(0, 1))  # Σ_t α_tᵀ dĉ_t, (B, S, E)
        dX = DAQ[:, :, :G].transpose(0, 1)  # (B, T, 4H)
        return dX, DHR, DC, dW_hh, dA.sum(0), dW_q, dW_x, dv, dK, d_memory, None, None


class LuongNumba(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, h0, c0, W_hh, b_hh, W_x, W_ht, W_hc, b_h, keys, memory, additive, whole):
        B, T, G = X.shape
        (_, S, _), E, H = keys.shape, memory.shape[2], h0.shape[1]
        X, W_hh, W_ht = X.detach(), W_hh.detach(), W_ht.detach()
        W_ra = torch.cat([W_hh, W_ht])  # (G + H, H)
        W_x, W_hc = W_x.detach().contiguous(), W_hc.detach().contiguous()  # (G, H), (H, E)
        b_h = b_h.detach().contiguous()
        XT = (X.transpose(0, 1) + b_hh.detach()).contiguous()  # x̂ + b_hh, (T, B, G)
        Kc, O = keys.detach().contiguous(), memory.detach().contiguous()
        valid = _valid(additive, B, S, X)
        states, cells = X.new_empty(T + 1, B, H), X.new_empty(T + 1, B, H)
        states[0], cells[0] = h0.detach(), c0.detach()
        tildes = X.new_zeros(T + 1, B, H)  # h̃_{-1} = 0, h̃_0 … h̃_{T-1}
        gates, tanhs = X.new_empty(T, B, G), X.new_empty(T, B, H)
        alphas, contexts = X.new_empty(T, B, S), X.new_empty(T, B, E)
        RZ = X.new_empty(B, G + H)
        RZ[:, :G] = linear(states[0], W_hh)  # r_0 = h_{-1} W_hhᵀ (b_hh is in x̂)
        CX, ZC = X.new_empty(B, G), X.new_empty(B, H)
        K, valid_, O_, st, ce, ga, th, ti, al, co, XT_ = (
            _np(a) for a in (Kc, valid, O, states, cells, gates, tanhs, tildes, alphas, contexts, XT))
        if whole:
            K_.luong_forward(T, _panels(W_x.t()), _panels(W_ra.t()), _panels(W_hc.t()),
                             _np(b_h), XT_, K, valid_, O_, _np(RZ), _np(CX), _np(ZC), st, ce, ga, th, ti, al, co)
        else:
            RZ_, b_h_ = _np(RZ), _np(b_h)
            for t in range(T):
                CX_ = _np(linear(tildes[t], W_x))  # h̃_{t-1} W_xᵀ
                K_.luong_cell(t, XT_, RZ_, CX_, st, ce, ga, th)
                RZ_ = _np(linear(states[t + 1], W_ra))  # [r_{t+1}; z_t]
                K_.luong_attend(t, st, K, valid_, O_, al, co)
                ZC_ = _np(linear(contexts[t], W_hc))  # ĉ_t W_hcᵀ
                K_.luong_tilde(t, RZ_, b_h_, ZC_, ti)
        ctx.save_for_backward(W_ra, W_x, W_hc, Kc, O, states, cells, tildes, contexts, alphas, gates, tanhs)
        ctx.whole = whole
        return tildes[1:].transpose(0, 1).contiguous(), alphas.transpose(0, 1).contiguous()  # (B, T, ·)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_tilde, d_alpha):
        W_ra, W_x, W_hc, Kc, O, states, cells, tildes, contexts, alphas, gates, tanhs = ctx.saved_tensors
        T, B, G = gates.shape
        (_, S, _), E, H = Kc.shape, O.shape[2], states.shape[2]
        like = states
        dT_, dal_ = (_time_major(g, B, T, n, like) for g, n in ((d_tilde, H), (d_alpha, S)))
        DF, DZ, DH, ZH, DC = (like.new_zeros(B, H) for _ in range(5))  # ZH stays zero
        DA = like.new_empty(B, G)
        DAZ = like.new_empty(T + 1, B, G + H)  # [da_{t+1} | dz_t]: what multiplies [W_hh; W_hh̃] at h_t
        DAZ[T, :, :G] = 0  # no step after the last; the loops write the rest (DAZ[0, :, G:] is never read)
        DCtx, DE = like.new_empty(T, B, E), like.new_empty(T, B, S)
        K, O_, ce, ga, th, ti, al = (_np(a) for a in (Kc, O, cells, gates, tanhs, tildes, alphas))
        if ctx.whole:
            K_.luong_backward(T, _panels(W_hc), _panels(W_ra), _panels(W_x), _np(dT_), _np(dal_), K, O_, ce, ga, th,
                              ti, al, _np(DF), _np(DZ), _np(DH), _np(ZH), _np(DC), _np(DA), _np(DAZ), _np(DCtx),
                              _np(DE))
        else:
            W_hc_t, W_ra_t, W_x_t = (w.t().contiguous() for w in (W_hc, W_ra, W_x))  # linear() multiplies by wᵀ
            DF_, DZ_, ZH_, DC_, DA_, DAZ_, DCtx_, DE_ = (_np(a) for a in (DF, DZ, ZH, DC, DA, DAZ, DCtx, DE))
            dT_n, dal_n = _np(dT_), _np(dal_)
            for t in reversed(range(T)):
                K_.luong_tilde_backward(t, DF_, dT_n, ti, DAZ_, DZ_)
                DCtx[t] = linear(DZ, W_hc_t)  # dĉ_t = dz_t W_hc
                DH_ = _np(linear(DAZ[t + 1], W_ra_t))  # [da_{t+1}; dz_t] [W_hh; W_hh̃]
                K_.luong_attend_backward(t, DCtx_, dal_n, K, O_, al, DE_, DH_)
                K_.luong_cell_backward(t, DH_, ZH_, DC_, ce, ga, th, DAZ_, DA_)
                DF = linear(DA, W_x_t)  # to h̃_{t-1}
                DF_ = _np(DF)
        W_hh = W_ra[:G]
        dh0 = DAZ[0, :, :G] @ W_hh  # r_0 = h0 W_hhᵀ
        # two products for four weights: daᵀ [h_{t-1} | h̃_{t-1}] and dzᵀ [h_t | ĉ_t]
        if _weight_grads_in_numba():  # the micro-kernel reads the strided views as they are
            dA = DAZ[:T, :, :G].reshape(T * B, G)  # da_0 … da_{T-1}, a view
            dZ = DAZ[1:, :, G:].reshape(T * B, H)  # dz_0 … dz_{T-1}, a view
            dW_a, dW_z = like.new_empty(G, 2 * H), like.new_empty(H, H + E)
            for d, parts, out in ((dA, (states[:-1], tildes[:-1]), dW_a), (dZ, (states[1:], contexts), dW_z)):
                out_ = _np(out)
                K_.chunked_product(_np(d).T, *_chunks([p.reshape(T * B, -1) for p in parts]), np.empty_like(out_),
                                   out_)
        else:
            # contiguous copies: oneDNN is ~1000× slower on the strided rows of these views (19 s against 12 ms)
            dA = DAZ[:T, :, :G].reshape(T * B, G).contiguous()  # da_0 … da_{T-1}
            dZ = DAZ[1:, :, G:].reshape(T * B, H).contiguous()  # dz_0 … dz_{T-1}
            dW_a = weight_grad(dA, torch.cat([states[:-1], tildes[:-1]], dim=2).view(T * B, 2 * H))  # (G, 2H)
            dW_z = weight_grad(dZ, torch.cat([states[1:], contexts], dim=2).view(T * B, H + E))  # (H, H + E)
        dW_hh, dW_x, dW_ht, dW_hc = dW_a[:, :H], dW_a[:, H:], dW_z[:, :H], dW_z[:, H:]
        dK = torch.bmm(DE.permute(1, 2, 0), states[1:].transpose(0, 1))  # Σ_t de_tᵀ h_t, (B, S, H)
        d_memory = torch.bmm(alphas.permute(1, 2, 0), DCtx.transpose(0, 1))  # Σ_t α_tᵀ dĉ_t, (B, S, E)
        dX = DAZ[:T, :, :G].transpose(0, 1)  # (B, T, 4H)
        return dX, dh0, DC, dW_hh, dA.sum(0), dW_x, dW_ht, dW_hc, dZ.sum(0), dK, d_memory, None, None

r"""numba kernels of the fused attention decoder (:mod:`.fused_attention_numba`): one decoder step's element-wise
work for every row of the batch, and the whole teacher-forced time loop as one call per pass.

Symbols as in :mod:`.fused_attention_decoder`. Buffers are time-major numpy views of torch tensors, (T, B, ·), so
a step reads and writes contiguous (B, ·) blocks. The per-step products run on
:func:`rnnlab.nn._ukernel.matmul_packed` (out = A @ W, the weights W (K, N) packed into panels by the caller,
once per pass: ``pack_panels``; the backward's products by Wᵀ have their own panels) inside the loops; the
``*_step`` kernels are the same work for a caller that runs the products itself (oneDNN from Python, for
shapes where that is faster). b_hh is folded into x̂ (X_t + b_hh) by the caller, so r_t = h_{t-1} W_hhᵀ here.
Masks arrive as ``valid`` (B, S): 1 at real source positions, 0 at padding (never −∞: the kernels compile with
fastmath, which assumes finite numbers). A row needs one real position (the caller checks).
Bahdanau's U = tanh(q + K) is not kept: the backward recomputes it (B·S·A values per step, ~40 MB at the wide
benchmark shape, cost more to write and read back than to recompute).
Inner loops index slices by their loop variable alone, so LLVM vectorises them (see fused_lstm).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from rnnlab.nn._ukernel import matmul_packed
from rnnlab.nn.fused_lstm import _JIT, _ONE, _ZERO, _sigmoid, _tanh

_LOWEST = np.float32(-3.0e38)


# -- the LSTM cell ---------------------------------------------------------------------------------
@numba.njit(inline="always", **_JIT)
def _cell_forward(x, r, cx, c_prev, a, c, th, h):
    """One row: a = x + r + cx (x̂ + b_hh, the recurrent and the context/feeding products) -> the gates i, f, g, o
    activated in place in ``a`` (G,), c_t, tanh c_t, h_t."""
    G = a.shape[0]
    H = G // 4
    for k in range(G):
        a[k] = x[k] + r[k] + cx[k]
    i, f, g, o = a[0:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:G]
    for k in range(2 * H):
        a[k] = _sigmoid(a[k])
    for j in range(H):
        g[j] = _tanh(g[j])
        o[j] = _sigmoid(o[j])
    for j in range(H):
        cj = f[j] * c_prev[j] + i[j] * g[j]
        c[j] = cj
        tj = _tanh(cj)
        th[j] = tj
        h[j] = o[j] * tj


@numba.njit(inline="always", **_JIT)
def _cell_backward(dh1, dh2, dc, a, c_prev, th, da):
    """One row: dh = dh1 + dh2 at h_t, dc (H,) carried dL/dc_t (updated to dL/dc_{t-1}) -> da (G,) the
    pre-activation gradients."""
    G = a.shape[0]
    H = G // 4
    i, f, g, o = a[0:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:G]
    da_i, da_f, da_g, da_o = da[0:H], da[H:2 * H], da[2 * H:3 * H], da[3 * H:G]
    for j in range(H):
        dh = dh1[j] + dh2[j]
        tj = th[j]
        oj = o[j]
        da_o[j] = dh * tj * oj * (_ONE - oj)
        dct = dc[j] + dh * oj * (_ONE - tj * tj)
        ij, fj, gj = i[j], f[j], g[j]
        da_i[j] = dct * gj * ij * (_ONE - ij)
        da_f[j] = dct * c_prev[j] * fj * (_ONE - fj)
        da_g[j] = dct * ij * (_ONE - gj * gj)
        dc[j] = dct * fj


# -- softmax over the real source positions ---------------------------------------------------------
@numba.njit(inline="always", **_JIT)
def _softmax_(e, valid):
    """e (S,) scores -> α in place; 0 where valid is 0."""
    S = e.shape[0]
    mx = _ZERO * e[0] + _LOWEST  # finite: fastmath assumes no infinities; a real score is above it
    for s in range(S):
        if valid[s] != 0 and e[s] > mx:
            mx = e[s]
    total = _ZERO * e[0]
    for s in range(S):
        p = math.exp(e[s] - mx) if valid[s] != 0 else _ZERO * e[0]
        e[s] = p
        total += p
    inv = _ONE / total
    for s in range(S):
        e[s] *= inv


@numba.njit(inline="always", **_JIT)
def _context(alpha, o, ctx):
    """ĉ = α o: alpha (S,), o (S, E) -> ctx (E,)."""
    E = ctx.shape[0]
    for j in range(E):
        ctx[j] = _ZERO * ctx[j]
    for s in range(alpha.shape[0]):
        w = alpha[s]
        if w != 0:
            os_ = o[s]
            for j in range(E):
                ctx[j] += w * os_[j]


@numba.njit(inline="always", **_JIT)
def _softmax_backward(alpha, d_ctx, o, d_alpha_in, de):
    """de = α ⊙ (dα − Σ α dα) with dα = d_ctx oᵀ + d_alpha_in; alpha, d_alpha_in, de (S,), o (S, E), d_ctx (E,)."""
    S = alpha.shape[0]
    E = d_ctx.shape[0]
    dot = _ZERO * alpha[0]
    for s in range(S):
        if alpha[s] != 0:
            os_ = o[s]
            acc = _ZERO * alpha[0]
            for j in range(E):
                acc += d_ctx[j] * os_[j]
            de[s] = acc + d_alpha_in[s]
            dot += alpha[s] * de[s]
        else:
            de[s] = _ZERO * alpha[0]
    for s in range(S):
        de[s] = alpha[s] * (de[s] - dot)


# -- Bahdanau --------------------------------------------------------------------------------------
@numba.njit(**_JIT)
def bahdanau_attend(t, RQ, K, v, valid, O, Q, alphas, contexts):
    """After [r; q] = h_{t-1} [W_hh; W_q]ᵀ in RQ (B, G + A): α_t = softmax(v · tanh(q + K) over real positions),
    ĉ_t = α_t o into alphas[t] (B, S), contexts[t] (B, E); q kept in Q[t] (B, A) for the backward pass."""
    B, S, A = K.shape
    G = RQ.shape[1] - A
    for b in range(B):
        q, qt, e, kb = RQ[b, G:], Q[t, b], alphas[t, b], K[b]
        for j in range(A):
            qt[j] = q[j]
        for s in range(S):
            acc = _ZERO * q[0]
            if valid[b, s] != 0:  # padding's score is never read (its weight is 0)
                k = kb[s]
                for j in range(A):
                    acc += _tanh(qt[j] + k[j]) * v[j]
            e[s] = acc
        _softmax_(e, valid[b])
        _context(e, O[b], contexts[t, b])


@numba.njit(**_JIT)
def bahdanau_cell(t, XT, RQ, CX, states, cells, gates, tanhs):
    """a_t = X_t + r + ĉ_t W_xᵀ (CX) -> the LSTM step: gates[t], tanhs[t], states[t + 1], cells[t + 1]."""
    B = XT.shape[1]
    G = XT.shape[2]
    for b in range(B):
        _cell_forward(XT[t, b], RQ[b, :G], CX[b], cells[t, b], gates[t, b], cells[t + 1, b], tanhs[t, b],
                      states[t + 1, b])


@numba.njit(**_JIT)
def bahdanau_forward(T, P_rqT, P_xT, XT, K, v, valid, O, RQ, CX, Q, states, cells, gates, tanhs, alphas, contexts):
    """The whole forward loop: per step [r; q] = h_{t-1} W_rqT, attend, CX = ĉ_t W_xT, the cell.
    P_rqT = pack_panels(W_rqT) (H, G + A), P_xT = pack_panels(W_xT) (E, G)."""
    for t in range(T):
        matmul_packed(states[t], P_rqT, RQ)
        bahdanau_attend(t, RQ, K, v, valid, O, Q, alphas, contexts)
        matmul_packed(contexts[t], P_xT, CX)
        bahdanau_cell(t, XT, RQ, CX, states, cells, gates, tanhs)


@numba.njit(**_JIT)
def bahdanau_cell_backward(t, dH, DHR, DC, cells, gates, tanhs, DAQ, DA):
    """dh_t = dH[t] + DHR (through [r; q] of step t+1) -> da_t into DAQ[t, :, :G] and DA (B, G); DC updated."""
    B, G = DA.shape
    for b in range(B):
        _cell_backward(dH[t, b], DHR[b], DC[b], gates[t, b], cells[t, b], tanhs[t, b], DA[b])
        dst, da = DAQ[t, b], DA[b]
        for k in range(G):
            dst[k] = da[k]


@numba.njit(**_JIT)
def bahdanau_attend_backward(t, dCt, DCX, d_alpha, K, v, valid, O, Q, alphas, DCtx, DE, dK, dv, DAQ):
    """dĉ_t = dĈ[t] + da_t W_x (DCX) into DCtx[t]; de = softmax backward into DE[t] (scratch); the score's
    backward with U = tanh(q + K) recomputed: dK += dP, dq = Σ_s dP into DAQ[t, :, G:], dv += Σ_s de_s U_s."""
    B, S, A = K.shape
    G = DAQ.shape[2] - A
    for b in range(B):
        dctx, dc_in, dcx = DCtx[t, b], dCt[t, b], DCX[b]
        for j in range(dctx.shape[0]):
            dctx[j] = dc_in[j] + dcx[j]
        de = DE[t, b]
        _softmax_backward(alphas[t, b], dctx, O[b], d_alpha[t, b], de)
        q, dq, kb, dkb = Q[t, b], DAQ[t, b, G:], K[b], dK[b]
        for j in range(A):
            dq[j] = _ZERO * q[j]
        for s in range(S):
            w = de[s]
            if valid[b, s] == 0:
                continue
            k, dk = kb[s], dkb[s]
            for j in range(A):
                u = _tanh(q[j] + k[j])
                p = w * v[j] * (_ONE - u * u)
                dk[j] += p
                dq[j] += p
                dv[j] += w * u


@numba.njit(**_JIT)
def bahdanau_backward(T, P_rq, P_x, dH, dCt, d_alpha, K, v, valid, O, Q, cells, gates, tanhs, alphas,
                      DHR, DC, DA, DCX, DAQ, DCtx, DE, dK, dv):
    """The whole backward loop, steps T-1 … 0: the cell, DCX = da_t W_x, the attention, DHR = [da_t; dq_t] W_rq.
    P_rq = pack_panels(W_rq) (G + A, H), P_x = pack_panels(W_x) (G, E)."""
    for t in range(T - 1, -1, -1):
        bahdanau_cell_backward(t, dH, DHR, DC, cells, gates, tanhs, DAQ, DA)
        matmul_packed(DA, P_x, DCX)
        bahdanau_attend_backward(t, dCt, DCX, d_alpha, K, v, valid, O, Q, alphas, DCtx, DE, dK, dv, DAQ)
        matmul_packed(DAQ[t], P_rq, DHR)


# -- Luong -----------------------------------------------------------------------------------------
@numba.njit(**_JIT)
def luong_cell(t, XT, RZ, CX, states, cells, gates, tanhs):
    """a_t = X_t + r_t (RZ[:, :G], from h_{t-1}) + h̃_{t-1} W_xᵀ (CX) -> the LSTM step."""
    B = XT.shape[1]
    G = XT.shape[2]
    for b in range(B):
        _cell_forward(XT[t, b], RZ[b, :G], CX[b], cells[t, b], gates[t, b], cells[t + 1, b], tanhs[t, b],
                      states[t + 1, b])


@numba.njit(**_JIT)
def luong_attend(t, states, K, valid, O, alphas, contexts):
    """α_t = softmax(K h_t over real positions), ĉ_t = α_t o into alphas[t], contexts[t]."""
    B, S, H = K.shape
    for b in range(B):
        h, e, kb = states[t + 1, b], alphas[t, b], K[b]
        for s in range(S):
            acc = _ZERO * h[0]
            if valid[b, s] != 0:  # padding's score is never read (its weight is 0)
                k = kb[s]
                for j in range(H):
                    acc += k[j] * h[j]
            e[s] = acc
        _softmax_(e, valid[b])
        _context(e, O[b], contexts[t, b])


@numba.njit(**_JIT)
def luong_tilde(t, RZ, b_h, ZC, tildes):
    """h̃_t = tanh(z + b_h + ĉ_t W_hcᵀ) into tildes[t + 1], z = RZ[:, G:] (h_t W_hh̃ᵀ)."""
    B, H = ZC.shape
    G = RZ.shape[1] - H
    for b in range(B):
        z, zc, out = RZ[b, G:], ZC[b], tildes[t + 1, b]
        for j in range(H):
            out[j] = _tanh(z[j] + b_h[j] + zc[j])


@numba.njit(**_JIT)
def luong_forward(T, P_xT, P_raT, P_hcT, b_h, XT, K, valid, O, RZ, CX, ZC, states, cells, gates, tanhs, tildes,
                  alphas, contexts):
    """The whole forward loop: CX = h̃_{t-1} W_xT, the cell, [r_{t+1}; z] = h_t W_raT, attend, ZC = ĉ_t W_hcT, h̃_t.
    RZ[:, :G] holds h_{-1} W_hhᵀ on entry. P_·: pack_panels of W_xT (H, G), W_raT (H, G + H), W_hcT (E, H)."""
    for t in range(T):
        matmul_packed(tildes[t], P_xT, CX)
        luong_cell(t, XT, RZ, CX, states, cells, gates, tanhs)
        matmul_packed(states[t + 1], P_raT, RZ)
        luong_attend(t, states, K, valid, O, alphas, contexts)
        matmul_packed(contexts[t], P_hcT, ZC)
        luong_tilde(t, RZ, b_h, ZC, tildes)


@numba.njit(**_JIT)
def luong_tilde_backward(t, DF, dTilde, tildes, DAZ, DZ):
    """dz_t = (dH̃[t] + DF, h̃_t's use in step t+1) ⊙ (1 − h̃_t²) into DAZ[t + 1, :, G:] and DZ (B, H)."""
    B, H = DZ.shape
    G = DAZ.shape[2] - H
    for b in range(B):
        df, dt, th, dz, dst = DF[b], dTilde[t, b], tildes[t + 1, b], DZ[b], DAZ[t + 1, b, G:]
        for j in range(H):
            v = (df[j] + dt[j]) * (_ONE - th[j] * th[j])
            dz[j] = v
            dst[j] = v


@numba.njit(**_JIT)
def luong_attend_backward(t, DCtx, d_alpha, K, O, alphas, DE, DH):
    """dĉ_t in DCtx[t] -> de into DE[t]; DH (B, H) += de K (the scores' share of dh_t)."""
    B, S, H = K.shape
    for b in range(B):
        de = DE[t, b]
        _softmax_backward(alphas[t, b], DCtx[t, b], O[b], d_alpha[t, b], de)
        dh, kb = DH[b], K[b]
        for s in range(S):
            w = de[s]
            if w != 0:
                k = kb[s]
                for j in range(H):
                    dh[j] += w * k[j]


@numba.njit(**_JIT)
def luong_cell_backward(t, DH, ZH, DC, cells, gates, tanhs, DAZ, DA):
    """dh_t = DH -> da_t into DAZ[t, :, :G] and DA (B, G); DC updated. ZH: zeros (B, H)."""
    B, G = DA.shape
    for b in range(B):
        _cell_backward(DH[b], ZH[b], DC[b], gates[t, b], cells[t, b], tanhs[t, b], DA[b])
        dst, da = DAZ[t, b], DA[b]
        for k in range(G):
            dst[k] = da[k]


@numba.njit(**_JIT)
def luong_backward(T, P_hc, P_ra, P_x, dTilde, d_alpha, K, O, cells, gates, tanhs, tildes, alphas,
                   DF, DZ, DH, ZH, DC, DA, DAZ, DCtx, DE):
    """The whole backward loop, steps T-1 … 0. DAZ[T, :, :G] is zero on entry (no step after the last).
    P_·: pack_panels of W_hc (H, E), W_ra (G + H, H), W_x (G, H)."""
    for t in range(T - 1, -1, -1):
        luong_tilde_backward(t, DF, dTilde, tildes, DAZ, DZ)
        matmul_packed(DZ, P_hc, DCtx[t])
        matmul_packed(DAZ[t + 1], P_ra, DH)
        luong_attend_backward(t, DCtx, d_alpha, K, O, alphas, DE, DH)
        luong_cell_backward(t, DH, ZH, DC, cells, gates, tanhs, DAZ, DA)
        matmul_packed(DA, P_x, DF)


# -- the weight gradients, once per backward pass --------------------------------------------------
@numba.njit(inline="always", **_JIT)
def _add_(out, tmp):
    """out += tmp, (M, N) each, rows contiguous."""
    for i in range(out.shape[0]):
        o, t = out[i], tmp[i]
        for j in range(out.shape[1]):
            o[j] += t[j]


@numba.njit(**_JIT)
def chunked_product(A, Yc, Yl, tmp, out):
    """out = A @ Y on the micro-kernel, Y's rows in chunks (the gradient of a weight summed over the B·T rows:
    A = dᵀ (N, B·T) any strides, Y (B·T, n) the layer's inputs). Yc (C, P, kc, NR): chunk c = rows
    c·kc … c·kc + kc − 1 of Y packed into P panels; Yl (P, B·T − C·kc, NR) the last rows. out (N, ≤ P·NR) with
    contiguous rows takes the first out.shape[1] columns of Y; tmp: scratch of out's shape, contiguous. A chunk
    keeps a panel (kc·NR values, 32 KB at kc = 256 float32) in L1 while the tiles of A stream past it."""
    C, kc = Yc.shape[0], Yc.shape[2]
    for c in range(C):
        matmul_packed(A[:, c * kc:(c + 1) * kc], Yc[c], out if c == 0 else tmp)
        if c > 0:
            _add_(out, tmp)
    if Yl.shape[1] > 0:
        matmul_packed(A[:, C * kc:], Yl, out if C == 0 else tmp)
        if C > 0:
            _add_(out, tmp)

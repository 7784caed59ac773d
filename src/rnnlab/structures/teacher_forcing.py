"""Seq2Seq's decoder with attention under full teacher forcing: what does not depend on the previous step is
computed once for the whole target, and the loop over time keeps only the recurrence.

With every previous token known (teacher forcing ratio 1, and always in evaluation), the work of
:meth:`Seq2Seq.decode_step` splits into products over all B·T rows at once and a recurrence run step by step.
The first layer's input weight splits by columns, W_ih = [W_e | W_x], so that W_ih [e; x] = W_e e + W_x x:

  once, before the loop (one GEMM each)
    X = e(y_{<t}) W_eᵀ + b_ih               the embeddings' share of the first layer's input product, (B, T, G·H)
    K = W_k o + b  |  W o  |  o             the keys (Bahdanau | Luong-general | Luong-dot): Seq2Seq.encode
    m = 0 at real source positions, −∞ at padding (added to the scores)
  per step (one cell layer shown; G·H is the cell's gate width)
    bahdanau   [r; q] = h_{t-1} [W_hh; W_q]ᵀ + [b_hh; 0]     the recurrence and the query share h_{t-1}: one GEMM
               α = softmax(tanh(q + K) v + m),  ĉ = α o  (bmm)
               cell(x = X_t + ĉ W_xᵀ, r) -> h_t
    luong      cell(x = X_t + h̃_{t-1} W_xᵀ, r) -> h_t            (input feeding: h̃_{t-1} is known only now)
               [r; a] = h_t [W_hh; W_hh̃]ᵀ + [b_hh; b_h]           the next step's recurrence and the attentional
               α = softmax(K h_t + m),  ĉ = α o  (bmm)              layer share h_t: one GEMM
               h̃_t = tanh(ĉ W_hcᵀ + a)                            (W_h = [W_hc | W_hh̃], Seq2Seq.combine)
  once, after the loop
    logits = W_o [h; ĉ] (bahdanau) or W_o h̃ (luong) over all B·T rows (one GEMM)

What still runs per step, and why: the query (it is h_{t-1}), the scores, softmax and context (they depend on
it), the context's or h̃'s share of the input product (Bahdanau: ĉ_t comes from h_{t-1}; Luong: input feeding),
and for Luong the attentional layer h̃_t (it feeds the next step). Upper decoder layers run torch's fused cell
kernels per step, as :meth:`Recurrent.step` does.

Two ways to run the loop: a one-layer LSTM decoder (the translate presets) in float32/64 outside autocast
runs :mod:`rnnlab.structures.fused_attention_decoder` (the same loop as one autograd Function with a
hand-written backward: no autograd graph per step, the weight gradients as single products at the end; on the
CPU each step's element-wise work runs in compiled numba kernels, the whole time loop in one call per pass for
small products, :mod:`rnnlab.structures.fused_attention_numba`); everything else (GRU and RNN decoders, several
layers, bf16 autocast) the autograd loop below.

The numbers are those of the step loop up to rounding (the tests compare outputs, attention weights, losses
and every gradient in float64). Dropout draws its masks in another order, so with dropout the two paths agree
in distribution, not number for number.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.nn import _torch_kernels as kernels
from rnnlab.nn.attention import AdditiveAttention, masked_softmax
from rnnlab.nn.state import LSTMState, State, select_layer, stack_layers

from . import fused_attention_decoder as fused_loop

_CELL_KERNELS = {"lstm": kernels.lstm_cell, "gru": kernels.gru_cell, "rnn": kernels.rnn_tanh_cell}


def teacher_forced(model, y: Tensor, state: dict, *, fused: bool = True,
                   impl: fused_loop.Impl = "auto") -> tuple[Tensor, Tensor]:
    """The decoder over a whole known target: y (B, T) -> (logits (B, T, V), attention weights (B, T, S)).

    ``model`` is a :class:`~rnnlab.structures.seq2seq.Seq2Seq` with attention, ``state`` its
    :meth:`~rnnlab.structures.seq2seq.Seq2Seq.encode` result. ``fused``: run the loop as one autograd Function
    with a hand-written backward where it applies (:mod:`rnnlab.structures.fused_attention_decoder`: a
    one-layer LSTM decoder, float32/64, no autocast); False always runs the autograd loop below (the reference).
    ``impl``: how the fused loop runs (:data:`~rnnlab.structures.fused_attention_decoder.Impl`).
    """
    c = model.config
    prev = torch.cat([torch.full_like(y[:, :1], c.bos_token), y[:, :-1]], dim=1)  # y_{t-1}, (B, T)
    emb = model.dropout(model.embedding(prev))  # (B, T, Emb)
    cells = model.decoder.cells
    first = cells[0]
    W_e, W_x = first.weight_ih.split([c.embedding_size, first.input_size - c.embedding_size], dim=1)
    X = F.linear(emb, W_e, first.bias_ih)  # (B, T, G·H)
    scores = _ScoreMask(state["mask"])
    if fused and fused_loop.applies(model, X) and (scores.mask is None or scores.additive is not None):
        outputs, weights = _fused(model, X, W_x, state, scores, impl)
        return model.head(model.dropout(outputs)), weights
    if c.attention == "bahdanau":
        outputs, weights = _bahdanau_loop(model, X, W_x, state, scores)
    else:
        outputs, weights = _luong_loop(model, X, W_x, state, scores)
    return model.head(model.dropout(outputs)), weights


# -- the two loops ----------------------------------------------------------------------------------
def _bahdanau_loop(model, X: Tensor, W_x: Tensor, state: dict, scores: _ScoreMask):
    """-> ([h_t; ĉ_t] (B, T, H + E), α (B, T, S)). The query and the top layer's recurrence share one GEMM."""
    attn: AdditiveAttention = model.attention
    memory, keys = state["memory"], state["keys"]  # (B, S, E), (B, S, A)
    v = attn.v.weight[0]  # (A,)
    top = model.decoder.cells[-1]
    GH = top.weight_hh.shape[0]
    W_rq = torch.cat([top.weight_hh, attn.W_q.weight], dim=0)  # (G·H + A, H)
    b_rq = _cat_bias(top.bias_hh, None, GH, attn.attention_size, W_rq)
    h = state["h"]
    hs, contexts, weights = [], [], []
    for x_e in X.unbind(1):  # unbind, not X[:, t]: its backward stacks T slices once, not T zero-filled copies
        h_top = _top(h)  # h_{t-1} of the top layer, (B, H)
        r_top, q = torch.addmm(b_rq, h_top, W_rq.t()).split([GH, attn.attention_size], dim=1)  # (B, G·H), (B, A)
        e = torch.tanh(q.unsqueeze(1) + keys) @ v  # (B, S)
        alpha = scores.softmax(e)  # (B, S)
        ctx = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)  # (B, E)
        x0 = torch.addmm(x_e, ctx, W_x.t())  # (B, G·H)
        y, h = _layers(model, x0, h, r_top)
        hs.append(y)
        contexts.append(ctx)
        weights.append(alpha)
    outputs = torch.cat([torch.stack(hs, dim=1), torch.stack(contexts, dim=1)], dim=-1)  # (B, T, H + E)
    return outputs, torch.stack(weights, dim=1)


def _luong_loop(model, X: Tensor, W_x: Tensor, state: dict, scores: _ScoreMask):
    """-> (h̃_t (B, T, H), α (B, T, S)). The attentional layer and the next recurrence share one GEMM on h_t."""
    memory, keys = state["memory"], state["keys"]  # (B, S, E), (B, S, H)
    combine = model.combine  # W_h (H, E + H), applied to [ĉ; h]
    E = memory.shape[2]
    W_hc, W_hh_tilde = combine.weight.split([E, combine.weight.shape[1] - E], dim=1)
    top = model.decoder.cells[-1]
    GH, H = top.weight_hh.shape
    W_ra = torch.cat([top.weight_hh, W_hh_tilde], dim=0)  # (G·H + H, H)
    b_ra = _cat_bias(top.bias_hh, combine.bias, GH, H, W_ra)
    h = state["h"]
    r_top = _recurrent(top, _top(h))  # (B, G·H) for the first step
    feed = state["feed"]  # h̃_{-1} = 0, (B, H)
    keys_t = keys.transpose(1, 2)  # (B, H, S): bmm runs a row vector times a matrix ~8× faster than K h
    tildes, weights = [], []
    for x_e in X.unbind(1):  # (B, G·H) each
        x0 = torch.addmm(x_e, feed, W_x.t())  # (B, G·H)
        y, h = _layers(model, x0, h, r_top)  # y = h_t of the top layer, (B, H)
        r_top, a = torch.addmm(b_ra, y, W_ra.t()).split([GH, H], dim=1)  # (B, G·H), (B, H)
        e = torch.bmm(y.unsqueeze(1), keys_t).squeeze(1)  # K h_t, (B, S)
        alpha = scores.softmax(e)  # (B, S)
        ctx = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)  # (B, E)
        feed = torch.tanh(torch.addmm(a, ctx, W_hc.t()))  # h̃_t, (B, H)
        tildes.append(feed)
        weights.append(alpha)
    return torch.stack(tildes, dim=1), torch.stack(weights, dim=1)


def _fused(model, X: Tensor, W_x: Tensor, state: dict, scores: _ScoreMask, impl: str) -> tuple[Tensor, Tensor]:
    """The one-layer LSTM loop as one Function -> (what the head reads (B, T, ·), α (B, T, S))."""
    cell = model.decoder.cells[0]
    h, c = state["h"]
    b_hh = cell.bias_hh if cell.bias_hh is not None else X.new_zeros(cell.weight_hh.shape[0])
    additive = scores.additive_for(X)
    memory, keys = state["memory"], state["keys"]
    if model.config.attention == "bahdanau":
        attn = model.attention
        H_all, C_all, alpha = fused_loop.bahdanau(X, h[0], c[0], cell.weight_hh, b_hh, attn.W_q.weight, W_x,
                                                  attn.v.weight[0], keys, memory, additive, impl=impl)
        return torch.cat([H_all, C_all], dim=-1), alpha  # (B, T, H + E)
    E = memory.shape[2]
    W_hc, W_ht = model.combine.weight.split([E, model.combine.weight.shape[1] - E], dim=1)
    b_h = model.combine.bias if model.combine.bias is not None else X.new_zeros(W_ht.shape[0])
    return fused_loop.luong(X, h[0], c[0], cell.weight_hh, b_hh, W_x, W_ht, W_hc, b_h, keys, memory,
                            additive, impl=impl)


# -- the decoder's layers for one step ------------------------------------------------------------
def _layers(model, x0: Tensor, h: State, r_top: Tensor) -> tuple[Tensor, State]:
    """One step of every decoder layer. The first layer's input product x0 (B, G·H) and the top layer's
    recurrent product r_top (B, G·H) come in computed; the other products are done here."""
    decoder = model.decoder
    cells = decoder.cells
    L = len(cells)
    kind = decoder.cell_type
    new_states = []
    y = None
    for l, cell in enumerate(cells):
        s = select_layer(h, l)
        if l == 0:
            r = r_top if L == 1 else _recurrent(cell, _h(s))
            y, s = _pointwise(kind, x0, r, s)
        else:
            y = F.dropout(y, decoder.dropout, decoder.training)
            if l == L - 1:
                y, s = _pointwise(kind, F.linear(y, cell.weight_ih, cell.bias_ih), r_top, s)
            else:  # a middle layer: torch's fused cell, as Recurrent.step
                out = _CELL_KERNELS[kind](y, s, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
                y, s = (out[0], LSTMState(*out)) if kind == "lstm" else (out, out)
        new_states.append(s)
    return y, stack_layers(new_states)


def _pointwise(kind: str, x: Tensor, r: Tensor, s: State) -> tuple[Tensor, State]:
    """The cell's element-wise part from its input product x = W_ih x_t + b_ih and recurrent product
    r = W_hh h_{t-1} + b_hh, both (B, G·H): the equations of LSTMCell, GRUCell and RNNCell (tanh)."""
    if kind == "lstm":
        a_i, a_f, a_g, a_o = (x + r).chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        c = f * s.c + i * g
        h = o * torch.tanh(c)
        return h, LSTMState(h, c)
    if kind == "gru":
        x_r, x_z, x_n = x.chunk(3, dim=1)
        h_r, h_z, h_n = r.chunk(3, dim=1)
        rg = torch.sigmoid(x_r + h_r)  # reset gate
        z = torch.sigmoid(x_z + h_z)  # update gate
        n = torch.tanh(x_n + rg * h_n)  # candidate
        h = n + z * (s - n)  # (1 - z) n + z h_{t-1}
        return h, h
    h = torch.tanh(x + r)
    return h, h


def _recurrent(cell, h: Tensor) -> Tensor:
    """W_hh h + b_hh, (B, G·H)."""
    return F.linear(h, cell.weight_hh, cell.bias_hh)


def _h(s: State) -> Tensor:
    return s.h if isinstance(s, LSTMState) else s


def _top(h: State) -> Tensor:
    """The top layer's hidden state (B, H) of a stacked state (L, B, H)."""
    return _h(h)[-1]


def _cat_bias(first: Optional[Tensor], second: Optional[Tensor], n1: int, n2: int, like: Tensor) -> Tensor:
    """[first; second] as one bias (n1 + n2,), a missing one as zeros."""
    parts = [p if p is not None else like.new_zeros(n) for p, n in ((first, n1), (second, n2))]
    return torch.cat(parts)


class _ScoreMask:
    """softmax over the real source positions: the padding mask turned once into an additive 0 / −∞."""

    def __init__(self, mask: Optional[Tensor]) -> None:
        self.mask = mask
        # a row without any real position would be softmax(all −∞) = NaN: masked_softmax gives it zeros
        self.additive = None
        if mask is not None and bool(mask.any(dim=1).all()):
            self.additive = torch.zeros(mask.shape, dtype=torch.get_default_dtype(), device=mask.device)
            self.additive.masked_fill_(~mask, float("-inf"))

    def additive_for(self, like: Tensor) -> Optional[Tensor]:
        """The additive mask (B, S) in ``like``'s dtype; None without a mask (or where masked_softmax is needed)."""
        return None if self.additive is None else self.additive.to(like.dtype)

    def softmax(self, e: Tensor) -> Tensor:
        if self.mask is None:
            return torch.softmax(e, dim=-1)
        if self.additive is None:
            return masked_softmax(e, self.mask)
        return torch.softmax(e + self.additive.to(e.dtype), dim=-1)

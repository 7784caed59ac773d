"""Export-friendly forward passes: pure torch, one time loop that ONNX can represent, the state explicit.

:class:`~rnnlab.nn.Recurrent` runs on torch's fused kernels, rnnlab's numba kernels or a Python loop over time;
none of these is something ``torch.export`` can capture with a dynamic number of time steps (a Python loop
unrolls to the length of the example, numba is opaque). Here every layer, of every cell, runs its cell's
``step`` inside ``torch._higher_order_ops.scan``, which torch.onnx's dynamo exporter turns into one ONNX
``Scan`` node: the batch and the length stay dynamic. Nothing of a cell is called but its ``step`` (the
cell contract), so the built-in cells, with every option, run the same code here. minGRU/minLSTM are scanned
step by step (their sequential form: the same numbers as the parallel scan); layer-norm cells run their
``step`` with its LayerNorms. Outside tracing (eager PyTorch) the same body runs in a Python loop.

Two graphs per model, with these input and output names (see docs/export.md):

- sequence: ``x`` (B, T) token ids or (B, T, I) features, ``lengths`` (B,) int64, ``h0`` (L·D, B, H)
  [, ``c0`` (L·D, B, H) for the LSTM] -> ``y`` (the structure's output), ``hN`` [, ``cN``]. As
  :class:`~rnnlab.nn.Recurrent`: outputs past a row's length are zero, its final state is the state at its
  last real step, the backward direction starts at each row's real end.
- step: ``x`` (B,) token ids or (B, I) features, ``h0`` [, ``c0``] -> ``y``, ``hN`` [, ``cN``]: one time step,
  what an on-device streaming app calls once per input with the state it carries.
- Seq2Seq: the encoder over the source (:class:`Seq2SeqEncoderGraph`) and one decoder step
  (:class:`Seq2SeqDecoderStepGraph`); the decoding loop stays in the app.

Glossary: B batch, T time, I input, H hidden, D directions, L layers, V vocabulary, O outputs.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan

from rnnlab.nn.masking import masked_max, masked_mean
from rnnlab.nn.state import LSTMState

State = tuple[Tensor, ...]  # (h,) or (h, c), each (L·D, B, H)


def is_lstm(layer: nn.Module) -> bool:
    """Whether ``layer`` (a Recurrent) carries an LSTMState (h, c) rather than one tensor h."""
    return isinstance(layer.cells[0].initial_state(1), LSTMState)


def _cell_state(parts: State, k: int):
    """Layer-and-direction k of the stacked state, as the cell's own state type."""
    if len(parts) == 2:
        return LSTMState(parts[0][k], parts[1][k])
    return parts[0][k]


def _flat(state) -> State:
    return (state.h, state.c) if isinstance(state, LSTMState) else (state,)


def _reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row's first ``lengths[b]`` steps, leaving its padding in place: (B, T, F) -> (B, T, F)."""
    B, T = x.shape[0], x.shape[1]
    t = torch.arange(T, device=x.device).unsqueeze(0)  # (1, T)
    L = lengths.unsqueeze(1)  # (B, 1)
    index = torch.where(t < L, L - 1 - t, t)  # (B, T); its own inverse
    return x.gather(1, index.unsqueeze(-1).expand(B, T, x.shape[2]))


def scan_cell(cell: nn.Module, x: Tensor, valid: Tensor, state: State) -> tuple[Tensor, State]:
    """One cell over time in a scan: x (B, T, F), valid (B, T) float 1/0, state (h,) or (h, c) each (B, H).

    Past a row's length its state is held and its output is zero, so the final state is the one at its last
    real step. -> outputs (B, T, H), final state.
    """

    def body(carry: State, inputs: tuple[Tensor, Tensor]):
        x_t, m_t = inputs  # (B, F), (B,)
        m = m_t.unsqueeze(1)  # (B, 1)
        prev = LSTMState(*carry) if len(carry) == 2 else carry[0]
        y, new = cell.step(x_t, prev, None)  # eval: no recurrent-dropout mask
        new = _flat(new)
        held = tuple(m * n + (1 - m) * p for n, p in zip(new, carry))
        return held, y * m

    if not _tracing():  # eager: the same body in a Python loop (eager scan traces each new body: seconds)
        carry, ys = tuple(state), []
        for t in range(x.shape[1]):
            carry, y = body(carry, (x[:, t], valid[:, t]))
            ys.append(y)
        return torch.stack(ys, dim=1), carry
    final, ys = scan(body, tuple(state), (x, valid), dim=1)  # ys (B, T, H)
    return ys, final


def _tracing() -> bool:
    """Whether torch.export (or torch.compile) is capturing the graph, where the loop must be a scan."""
    exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.7; before, export sets is_compiling
    return (exporting is not None and exporting()) or torch.compiler.is_compiling()


def scan_layer(layer: nn.Module, x: Tensor, lengths: Tensor, state: State) -> tuple[Tensor, State]:
    """A whole :class:`~rnnlab.nn.Recurrent` (layers, directions) over time.

    x (B, T, I), lengths (B,) int64, state (h0,) or (h0, c0) each (L·D, B, H) -> outputs (B, T, D·H), state.
    """
    T = x.shape[1]
    valid = (torch.arange(T, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)).to(x.dtype)  # (B, T)
    D = layer.num_directions
    finals: list[State] = []
    out = x
    for l in range(layer.num_layers):
        ys = []
        for d in range(D):
            k = l * D + d
            xin = _reverse_padded(out, lengths) if d == 1 else out
            y, s = scan_cell(layer.cells[k], xin, valid, tuple(part[k] for part in state))
            ys.append(_reverse_padded(y, lengths) if d == 1 else y)
            finals.append(s)
        out = ys[0] if D == 1 else torch.cat(ys, dim=2)  # (B, T, D·H)
    return out, tuple(torch.stack([f[i] for f in finals]) for i in range(len(state)))


def step_layer(layer: nn.Module, x_t: Tensor, state: State) -> tuple[Tensor, State]:
    """One time step of a unidirectional Recurrent: x_t (B, I), state each (L, B, H) -> y_t (B, H), state."""
    finals = []
    y = x_t
    for k, cell in enumerate(layer.cells):
        y, s = cell.step(y, _cell_state(state, k), None)
        finals.append(_flat(s))
    return y, tuple(torch.stack([f[i] for f in finals]) for i in range(len(state)))


def _last_real(x: Tensor, lengths: Tensor) -> Tensor:
    """x (B, T, E) -> (B, E) at each row's last real step."""
    index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, x.shape[2])
    return x.gather(1, index).squeeze(1)


class _Graph(nn.Module):
    """What the graphs share: the model, its recurrent layer and whether the state has a c."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.layer = model.encoder.layer
        self.lstm = is_lstm(self.layer)

    def _embed(self, x: Tensor) -> Tensor:
        emb = self.model.inputs.embedding
        return emb(x) if emb is not None else x  # (B, T, E) or (B, E); dropout is off in eval


class SequenceGraph(_Graph):
    """The whole sequence: (x, lengths, h0[, c0]) -> (y, hN[, cN]); y as the structure's ``forward`` logits."""

    def forward(self, x: Tensor, lengths: Tensor, h0: Tensor, c0: Optional[Tensor] = None):
        state = (h0, c0) if self.lstm else (h0,)
        outputs, final = scan_layer(self.layer, self._embed(x), lengths, state)  # (B, T, D·H)
        return (self._head(outputs, lengths, final), *final)

    def _head(self, outputs: Tensor, lengths: Tensor, final: State) -> Tensor:
        model = self.model
        name = type(model).__name__
        if name != "ManyToOne":  # LanguageModel, ManyToMany: one output per step, zero logits stay as the model's
            return model.head(outputs)  # (B, T, V or O)
        pooling = model.config.pooling
        if pooling == "last":
            D = self.layer.num_directions
            summary = torch.cat(list(final[0][-D:]), dim=-1)  # (B, D·H): the last layer's directions
        else:
            mask = torch.arange(outputs.shape[1], device=outputs.device).unsqueeze(0) < lengths.unsqueeze(1)
            if pooling == "mean":
                summary = masked_mean(outputs, mask)
            elif pooling == "max":
                summary = masked_max(outputs, mask)
            else:
                summary, _ = model.attention(outputs, mask)
        return model.head(summary)  # (B, O)


class StepGraph(_Graph):
    """One time step: (x, h0[, c0]) -> (y, hN[, cN]); x (B,) token ids or (B, I) features.

    y is the step's logits: the next-token logits (LanguageModel), the step's tag scores (ManyToMany), or
    the class scores of the sequence read so far (ManyToOne with pooling="last").
    """

    def forward(self, x: Tensor, h0: Tensor, c0: Optional[Tensor] = None):
        state = (h0, c0) if self.lstm else (h0,)
        y, final = step_layer(self.layer, self._embed(x), state)  # (B, H)
        return (self.model.head(y), *final)


# -- Seq2Seq: the encoder over the source, then the decoder one step at a time --------------------------------
class Seq2SeqEncoderGraph(nn.Module):
    """The source side of a Seq2Seq: (x, lengths) -> (memory, h0[, c0][, keys][, feed]).

    memory (B, S, E) the encoder's outputs; h0 [c0] (L_dec, B, H) the decoder's starting state (the context);
    keys (B, S, A) the attention's precomputed keys (with attention); feed (B, H) zeros (Luong's input feeding).
    The names match the decoder step graph's inputs, so an app passes them straight on.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, lengths: Tensor):
        m, c = self.model, self.model.config
        x = m.inputs.embedding(x) if m.inputs.embedding is not None else x  # (B, S, E_in)
        layer = m.encoder.layer
        B, LD = x.shape[0], layer.num_layers * layer.num_directions
        zeros = x.new_zeros(LD, B, layer.hidden_size)
        state = (zeros, zeros) if is_lstm(layer) else (zeros,)
        memory, final = scan_layer(layer, x, lengths, state)  # (B, S, E)
        D = layer.num_directions
        summary = torch.cat(list(final[0][-D:]), dim=-1)  # (B, E)
        if c.context == "last":
            start = summary
        elif c.context == "linear":
            start = torch.tanh(m.bridge(summary))
        else:
            mask = torch.arange(memory.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
            start = torch.tanh(m.bridge(masked_mean(memory, mask)))
        h0 = start.unsqueeze(0).expand(c.decoder.num_layers, -1, -1)  # (L_dec, B, H)
        out = [memory, h0] + ([torch.zeros_like(h0)] if c.decoder.cell == "lstm" else [])
        if m.attention is not None:
            out.append(m.attention.precompute(memory))  # (B, S, A)
        if m.combine is not None:
            out.append(memory.new_zeros(B, c.decoder.hidden_size))  # (B, H)
        return tuple(out)


class Seq2SeqDecoderStepGraph(nn.Module):
    """One decoder step: (x, lengths, memory, keys, h0, c0, feed) -> (y, hN[, cN][, feed][, attention]).

    x (B,) the previous target token (the begin token first); lengths (B,) the source lengths; the rest as
    :class:`Seq2SeqEncoderGraph` gives them, then as this graph returns them. y (B, V) the next-token logits,
    attention (B, S) the weights over the source. Inputs a configuration does not use are None (absent).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, lengths: Optional[Tensor], memory: Optional[Tensor], keys: Optional[Tensor],
                h0: Tensor, c0: Optional[Tensor] = None, feed: Optional[Tensor] = None):
        m, c = self.model, self.model.config
        e = m.embedding(x)  # (B, Emb)
        state = (h0, c0) if c0 is not None else (h0,)
        mask = None
        if memory is not None:
            mask = torch.arange(memory.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)
        weights = None
        if c.attention == "none":
            y, state = step_layer(m.decoder, e, state)
            out = y
        elif c.attention == "bahdanau":
            ctx, weights = m.attention(state[0][-1], memory, mask, precomputed=keys)  # h_{t-1} of the top layer
            y, state = step_layer(m.decoder, torch.cat([e, ctx], dim=-1), state)
            out = torch.cat([y, ctx], dim=-1)  # (B, H + E)
        else:
            y, state = step_layer(m.decoder, torch.cat([e, feed], dim=-1), state)
            ctx, weights = m.attention(y, memory, mask, precomputed=keys)
            out = torch.tanh(m.combine(torch.cat([ctx, y], dim=-1)))  # h̃_t (B, H)
        result = [m.head(out), *state]
        if m.combine is not None:
            result.append(out)
        if weights is not None:
            result.append(weights)
        return tuple(result)

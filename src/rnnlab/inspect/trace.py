"""Re-run a model's batch through the reference cell loop and record every step: h_t, c_t and the gates.

The fused paths (torch's oneDNN/cuDNN kernels, rnnlab's numba kernels, minGRU's parallel scan) return only the
outputs and the final state: no gates, and no per-step state tensor in the autograd graph. :func:`tracing`
therefore swaps, for the duration of one call, the ``forward`` of every :class:`~rnnlab.nn.Recurrent` layer
inside the model's encoder for :func:`_traced_forward`, which runs the same cells with the same weights one
``cell.step`` at a time (what ``impl="loop"`` does) and keeps each step's output tensor, so that autograd can
give ∂L/∂h_t, and the cell's gates, recomputed from the same inputs by :func:`rnnlab.inspect.gates.cell_gates`.
Everything else (embeddings, pooling, attention, the head) runs the model's own code, so the traced forward
gives the model's own outputs (tests/inspect/test_trace.py checks this on every path).

Glossary: B batch, T time, H hidden, K = L·D the layer-directions of the traced layers.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn._checks import check_input, check_lengths
from rnnlab.nn.masking import lengths_to_mask
from rnnlab.nn.recurrent import Recurrent, _reverse_padded, _sample_mask
from rnnlab.nn.state import LSTMState, select_layer, stack_layers, where_state

from .gates import cell_gates


@dataclass
class LayerTrace:
    """One layer and direction of a traced recurrent layer, its tensors aligned with the input steps."""

    name: str
    """e.g. ``encoder.layer l0`` or ``encoder.layer l1 reverse``: the module path, layer and direction."""
    layer: int
    direction: int
    """0 forward, 1 backward (its steps run from each row's end to t = 0; the tensors here are in input order)."""
    cell: str
    """The cell's class name (LSTMCell, GRUCell, RNNCell, MinGRUCell, ...)."""
    h: Tensor
    """(B, T, H) the hidden state after each input step (detached); zero past each row's length."""
    c: Optional[Tensor] = None
    """(B, T, H) the LSTM's cell state after each step (detached), else None."""
    gates: dict = field(default_factory=dict)
    """gate name -> (B, T, H) (detached): LSTM i, f, g, o; GRU r, z, n; minGRU z, h̃; minLSTM f', i', h̃."""
    steps: list = field(default_factory=list, repr=False)
    """The per-step output tensors in the order the cell ran them (in the graph): what ∂/∂h_t is taken on."""


@dataclass
class Trace:
    """What :func:`trace` recorded: the traced layers, the lengths, and the model's output."""

    layers: list
    """LayerTrace per layer and direction of every traced recurrent layer, in the order they ran."""
    lengths: Optional[Tensor]
    """(B,) the real lengths of the traced layers' input (None: every row is T long)."""
    output: object = None
    """What the call returned (the model's Output, or the loss)."""


def recurrent_layers(model: nn.Module) -> list[tuple[str, Recurrent]]:
    """The :class:`~rnnlab.nn.Recurrent` layers to trace: those inside ``model.encoder`` when the model has an
    encoder (a decoder's layers are not the encoder's view of the input), else every one in the model."""
    root = getattr(model, "encoder", None)
    prefix = "encoder"
    if not isinstance(root, nn.Module):
        root, prefix = model, ""
    found = []
    for name, module in root.named_modules():
        if isinstance(module, Recurrent):
            found.append(((f"{prefix}.{name}" if prefix and name else prefix or name or "layer"), module))
    return found


def encoder_kind(model: nn.Module) -> str:
    """The encoder kind a structure was built with (``lstm``, ``cnn``, ...), or the encoder's class name."""
    config = getattr(model, "config", None)
    encoder = getattr(config, "encoder", None)
    kind = getattr(encoder, "kind", None)
    if kind is not None:
        return kind
    module = getattr(model, "encoder", None)
    return type(module).__name__ if module is not None else type(model).__name__


def require_recurrent(model: nn.Module, what: str) -> list[tuple[str, Recurrent]]:
    """The layers to trace, or a ValueError that names the encoder and says what to use instead."""
    layers = recurrent_layers(model)
    if not layers:
        raise ValueError(
            f"{what} needs a recurrent encoder (lstm, gru, rnn, rnn-relu, mingru, minlstm); this model's encoder is "
            f"{encoder_kind(model)!r}, which has no hidden state over time: inspect its attention or saliency instead"
        )
    return layers


def call_model(model: nn.Module, batch: dict):
    """``model(batch)`` for a structure (it has ``loss``); ``model(x, lengths=...)`` for a bare layer or encoder."""
    if hasattr(model, "loss") or not isinstance(batch, dict):
        return model(batch)
    return model(batch["x"], lengths=batch.get("lengths"))


@contextmanager
def tracing(model: nn.Module, layers: Optional[list] = None) -> Iterator[list]:
    """Within the block, the model's recurrent layers run the traced cell loop; yields the list that collects
    one list of :class:`LayerTrace` per layer call."""
    layers = recurrent_layers(model) if layers is None else layers
    calls: list = []
    for name, layer in layers:
        layer.forward = _make_traced(name, layer, calls)  # an instance attribute shadows the class's forward
    try:
        yield calls
    finally:
        for _, layer in layers:
            del layer.forward


def trace(model: nn.Module, batch: dict, *, call=None) -> Trace:
    """Run ``call(model, batch)`` (default ``model(batch)``) with the recurrent layers traced.

    Grad mode is left as it is: under ``torch.no_grad()`` nothing is kept for backward. The model's train/eval
    mode is left as it is too (inspect in eval mode: dropout masks would differ from one run to the next).
    """
    layers = require_recurrent(model, "tracing hidden states")
    with tracing(model, layers) as calls:
        output = call_model(model, batch) if call is None else call(model, batch)
    if not calls:
        raise ValueError("the model's forward never ran its recurrent encoder on this batch")
    traced = [layer for call_layers, _ in calls for layer in call_layers]  # every call, in the order they ran
    return Trace(traced, calls[0][1], output)


def _make_traced(name: str, layer: Recurrent, calls: list):
    def forward(x: Tensor, state=None, lengths=None):
        out, new_state, traced = _traced_forward(layer, name, x, state, lengths)
        calls.append((traced, None if lengths is None else check_lengths(lengths, x.shape[0], x.shape[1])))
        return out, new_state

    return forward


def _traced_forward(layer: Recurrent, name: str, x: Tensor, state, lengths):
    """The reference loop of :class:`Recurrent` (``impl="loop"``), stepping every cell (a minGRU too) and keeping
    each step. Returns (outputs (B, T, D·H), state, [LayerTrace per layer and direction])."""
    x = check_input(x, layer.input_size, ndim=3)
    B, T, _ = x.shape
    lengths = check_lengths(lengths, B, T)
    state = layer._check_state(state, B, x)
    valid = lengths_to_mask(lengths, T, device=x.device)  # (B, T) or None
    D = layer.num_directions
    out, final, traced = x, [], []
    for l in range(layer.num_layers):
        if l > 0:
            out = nn.functional.dropout(out, layer.dropout, layer.training)
        ys = []
        for d in range(D):
            cell = layer.cells[l * D + d]
            xin = _reverse_padded(out, lengths) if d == 1 else out
            y, s, record = _step_cell(cell, xin, select_layer(state, l * D + d), valid)
            unreverse = (lambda t: _reverse_padded(t, lengths)) if d == 1 else (lambda t: t)
            direction = " reverse" if d == 1 else ""
            traced.append(LayerTrace(
                name=f"{name} l{l}{direction}", layer=l, direction=d, cell=type(cell).__name__,
                h=unreverse(record["h"]), c=None if record["c"] is None else unreverse(record["c"]),
                gates={k: unreverse(v) for k, v in record["gates"].items()}, steps=record["steps"],
            ))
            ys.append(unreverse(y))
            final.append(s)
        out = ys[0] if D == 1 else torch.cat(ys, dim=2)  # (B, T, D·H)
    return out, stack_layers(final), traced


def _step_cell(cell: nn.Module, x: Tensor, state, valid: Optional[Tensor]):
    """One cell over x (B, T, I), step by step, as ``recurrent._run_cell``; also records h, c, the gates and
    the per-step output tensors (kept in the graph for ∂L/∂h_t)."""
    mask = _sample_mask(cell, x)
    steps, cs, gates = [], [], {}
    ys = []
    for t in range(x.shape[1]):
        with torch.no_grad():
            for k, v in cell_gates(cell, x[:, t], state, mask).items():
                gates.setdefault(k, []).append(v)
        y, new = cell.step(x[:, t], state, mask)
        steps.append(y)
        if isinstance(new, LSTMState):
            cs.append(new.c)
        if valid is not None:
            keep = valid[:, t]
            new = where_state(keep, new, state)
            y = y * keep.unsqueeze(1).to(y.dtype)
        state = new
        ys.append(y)
    outputs = torch.stack(ys, dim=1)  # (B, T, H)
    zero = (lambda v: v) if valid is None else (lambda v: v * valid.unsqueeze(-1).to(v.dtype))
    record = {
        "h": outputs.detach(),
        "c": zero(torch.stack(cs, dim=1)).detach() if cs else None,
        "gates": {k: zero(torch.stack(v, dim=1)) for k, v in gates.items()},
        "steps": steps,
    }
    return outputs, state, record

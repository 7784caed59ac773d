"""How big a model will be, from its configuration alone: parameters and training memory, estimated before
anything is allocated, so that a typo such as ``--model.encoder.num_layers 1000000`` is refused in a
millisecond instead of swapping the machine to a halt.

The counts are the weight matrices and biases of each kind (small extras such as layer-norm gains are left
out); activations are what backpropagation keeps, roughly B·T·H per gate per layer. Glossary: B batch, T time,
I input width, H hidden width, L layers, D directions, V vocabulary, E embedding width.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional

from .decoders import DecoderConfig
from .encoders import EncoderConfig

FLOAT_BYTES = 4
GATES = {"lstm": 4, "gru": 3, "rnn": 1, "rnn-relu": 1, "mingru": 2, "minlstm": 3}
OPTIMIZER_COPIES = {"adam": 4, "adamw": 4, "sgd": 3}
"""Copies of every parameter while training: the weights, their gradients, and Adam's two moments (SGD: the
momentum buffer)."""


@dataclass(frozen=True)
class SizeEstimate:
    parameters: int
    """Weights and biases."""
    activations: int
    """Floats kept for the backward pass of one batch."""
    training_bytes: int
    """(parameters x optimizer copies + activations) x 4 bytes."""


def _recurrent(kind: str, I: int, H: int, L: int, D: int) -> tuple[int, int]:
    """(parameters, activations per B·T position) of L stacked recurrent layers."""
    g = GATES[kind]
    if kind in ("mingru", "minlstm"):  # gates from the input only: no H x H matrix
        first, rest = g * H * (I + 1), g * H * (H + 1)
    else:
        first, rest = D * g * H * (I + H + 2), D * g * H * (D * H + H + 2)
    return first + (L - 1) * rest, L * D * H * (g + 2)


def encoder_size(config: EncoderConfig, input_size: int, *, time_steps: int) -> tuple[int, int]:
    """(parameters, activations per batch row) of the encoder ``config`` reading ``input_size`` features."""
    c, I, H, L, T = config, input_size, config.hidden_size, config.num_layers, time_steps
    if c.kind in GATES:
        params, per_step = _recurrent(c.kind, I, H, L, 2 if c.bidirectional else 1)
        return params, per_step * T
    if c.kind == "window":  # the window of n inputs is unfolded at every position
        return c.window * I * H + H + (L - 1) * (H * H + H), T * (c.window * I + L * H)
    if c.kind == "cnn":
        return c.kernel_size * H * (I + (L - 1) * H) + L * H, T * L * H * 2
    ff = c.ff_size or 4 * H  # transformer: input projection, then attention (4 H^2) and feed-forward per block
    return I * H + L * (4 * H * H + 2 * H * ff + ff + 5 * H), L * (T * (8 * H + ff) + max(c.num_heads, 1) * T * T)


def memory_bytes() -> Optional[int]:
    """The machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _configs(value: Any, kind: type) -> list:
    """Every ``kind`` instance inside the (nested) dataclass ``value``."""
    if isinstance(value, kind):
        return [value]
    if not dataclasses.is_dataclass(value):
        return []
    return [c for f in dataclasses.fields(value) for c in _configs(getattr(value, f.name), kind)]


def _blocks(value: Any) -> list:
    """The dataclasses inside ``value``, other than encoder and decoder configs, with int hidden_size and
    num_layers fields."""
    if not dataclasses.is_dataclass(value) or isinstance(value, (EncoderConfig, DecoderConfig)):
        return []
    own = [value] if all(isinstance(getattr(value, n, None), int) for n in ("hidden_size", "num_layers")) else []
    return own + [b for f in dataclasses.fields(value) for b in _blocks(getattr(value, f.name))]


def estimate_size(model: Any, *, vocab_size: int, batch_size: int, time_steps: int,
                  optimizer: str = "adamw") -> SizeEstimate:
    """Estimate a task model from its config dataclass ``model``: every :class:`EncoderConfig` and
    :class:`DecoderConfig` inside it, an input embedding (V x E) and an output layer (H x V) per sequence model."""
    E = int(getattr(model, "embedding_size", 0) or 0) or 64
    params = activations = 0
    for enc in _configs(model, EncoderConfig):
        p, a = encoder_size(enc, E, time_steps=time_steps)
        D = 2 if enc.bidirectional and enc.kind in GATES else 1
        params, activations = params + p + vocab_size * (E + D * enc.hidden_size), activations + a
    for dec in _configs(model, DecoderConfig):
        p, a = _recurrent(dec.cell, E, dec.hidden_size, dec.num_layers, 1)
        params, activations = params + p + vocab_size * (E + dec.hidden_size), activations + a * time_steps
    for other in _blocks(model):  # e.g. a Transformer seq2seq's own hidden_size / num_layers: 12 H^2 per block
        H, L = other.hidden_size, other.num_layers
        params, activations = params + L * 12 * H * H, activations + L * time_steps * 12 * H
    activations *= batch_size
    copies = OPTIMIZER_COPIES.get(optimizer, 4)
    return SizeEstimate(params, activations, (params * copies + activations) * FLOAT_BYTES)

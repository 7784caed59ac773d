"""Every encoder by configuration: one dataclass, one builder, one call.

The encoder contract (DESIGN.md): ``encoder(x, lengths=None) -> (outputs, summary)`` with x (B, T, I),
outputs (B, T, E) and summary (B, E), where E = ``encoder.output_size``. Positions past a row's length
are zero in ``outputs`` and never reach ``summary``. The structures take any encoder through
:class:`EncoderConfig`, so one experiment can compare an LSTM with the window model, a CNN and a Transformer.

An encoder with a state (:class:`RecurrentEncoder`) also offers what a stateful model needs (a language
model carrying its state across chunks, a server streaming): ``initial_state(B)``,
``forward_with_state(x, state=None, lengths=None) -> (outputs, state)`` and ``step(x_t, state) -> (y_t, state)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, get_args

import torch
from torch import Tensor, nn

from rnnlab.nn import MinGRU, MinLSTM, Recurrent
from rnnlab.nn.cell import RecurrentInit
from rnnlab.nn.state import LSTMState, State
from rnnlab.nn.transformer import Norm, NormPosition, Positions

EncoderKind = Literal["lstm", "gru", "rnn", "rnn-relu", "mingru", "minlstm", "window", "cnn", "transformer"]
KINDS = get_args(EncoderKind)
RECURRENT_KINDS = KINDS[:6]


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder, and its sizes. Fields a kind does not use are ignored by it."""

    kind: EncoderKind = "lstm"
    """lstm | gru | rnn | rnn-relu | mingru | minlstm | window | cnn | transformer"""
    hidden_size: int = 128
    """H: the width of each layer (the output is D·H for a bidirectional recurrent encoder)."""
    num_layers: int = 1
    """Stacked layers (recurrent, CNN, Transformer blocks, or the window model's hidden layers)."""
    bidirectional: bool = False
    """Recurrent kinds lstm/gru/rnn only: read the sequence both ways."""
    dropout: float = 0.0
    """Dropout between layers."""
    layer_norm: bool = False
    """Recurrent kinds lstm/gru/rnn: layer norm inside the cell."""
    recurrent_dropout: float = 0.0
    """Recurrent kinds lstm/gru/rnn: variational dropout on h_{t-1}."""
    recurrent_init: RecurrentInit = "orthogonal"
    """Recurrent kinds lstm/gru/rnn/rnn-relu: orthogonal | uniform | identity (rnn-relu with identity is the
    IRNN of Le et al., 2015)."""
    window: int = 5
    """window: how many inputs each position sees (itself and the n-1 before it)."""
    kernel_size: int = 3
    """cnn: the temporal kernel width."""
    dilation_base: int = 2
    """cnn: layer l uses dilation dilation_base**l (1 means no dilation)."""
    causal: bool = False
    """cnn and transformer: a position sees only the past (required for language models)."""
    num_heads: int = 4
    """transformer: attention heads; hidden_size must be divisible by it."""
    ff_size: int = 0
    """transformer: the feed-forward width; 0 means 4 * hidden_size."""
    norm: Norm = "layer"
    """transformer: layer | rms."""
    norm_position: NormPosition = "pre"
    """transformer: pre | post."""
    positions: Positions = "sinusoidal"
    """transformer: sinusoidal | learned."""
    max_len: int = 1024
    """transformer with learned positions: the longest sequence."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"encoder kind must be one of {KINDS}, got {self.kind!r}")
        if self.recurrent_init not in get_args(RecurrentInit):
            raise ValueError(f"encoder recurrent_init must be one of {get_args(RecurrentInit)}, "
                             f"got {self.recurrent_init!r}")
        for name in ("hidden_size", "num_layers", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"encoder {name} must be a positive integer, got {value!r}")
        if self.kind == "window" and self.window < 1:
            raise ValueError(f"encoder window must be at least 1 (the model sees the last n inputs), got {self.window}")
        if self.bidirectional and self.kind not in ("lstm", "gru", "rnn", "rnn-relu"):
            raise ValueError(f"bidirectional applies to the lstm, gru and rnn encoders, not kind={self.kind!r}")
        if self.kind == "transformer" and self.hidden_size % self.num_heads:
            raise ValueError(
                f"transformer hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )


class RecurrentEncoder(nn.Module):
    """A recurrent layer (:class:`~rnnlab.nn.Recurrent`, minGRU/minLSTM included) under the encoder contract.

    summary: the last layer's final hidden state at each row's last real step; for a bidirectional
    encoder the forward direction's (at the real end) and the backward direction's (at t = 0), concatenated.

    The state, for models that carry it: (L·D, B, H), an ``LSTMState`` of two for the LSTM, as the layer's.
    """

    def __init__(self, layer: nn.Module, output_size: int, num_directions: int) -> None:
        super().__init__()
        self.layer = layer
        self.output_size = output_size
        self.num_directions = num_directions

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        outputs, state = self.layer(x, lengths=lengths)  # (B, T, D·H)
        h = state.h if isinstance(state, LSTMState) else state  # (L·D, B, H)
        last = h[-self.num_directions :]  # (D, B, H): the last layer's directions
        return outputs, torch.cat(list(last), dim=-1)  # (B, D·H)

    def forward_with_state(self, x: Tensor, state: Optional[State] = None, lengths: Optional[Tensor] = None):
        """x (B, T, I) from ``state`` (None: zeros) -> (outputs (B, T, D·H), the final state)."""
        return self.layer(x, state, lengths)

    def step(self, x_t: Tensor, state: Optional[State] = None):
        """One time step, for streaming and generation: x_t (B, I) -> (y_t (B, H), state). Unidirectional only."""
        return self.layer.step(x_t, state)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        """Zeros of the state's shape: (L·D, B, H), or an LSTMState of two."""
        return self.layer.initial_state(batch_size, device=device, dtype=dtype)


def build_encoder(config: EncoderConfig, input_size: int) -> nn.Module:
    """The encoder that ``config`` names, reading ``input_size`` features per step."""
    c = config
    if c.kind in ("lstm", "gru", "rnn", "rnn-relu"):
        cell = "rnn" if c.kind.startswith("rnn") else c.kind
        extra = {"nonlinearity": "relu"} if c.kind == "rnn-relu" else {}
        layer = Recurrent(
            cell, input_size, c.hidden_size, num_layers=c.num_layers, bidirectional=c.bidirectional,
            dropout=c.dropout, layer_norm=c.layer_norm, recurrent_dropout=c.recurrent_dropout,
            recurrent_init=c.recurrent_init, **extra,
        )
        D = 2 if c.bidirectional else 1
        return RecurrentEncoder(layer, D * c.hidden_size, D)
    if c.kind in ("mingru", "minlstm"):
        cls = MinGRU if c.kind == "mingru" else MinLSTM
        return RecurrentEncoder(
            cls(input_size, c.hidden_size, num_layers=c.num_layers, dropout=c.dropout), c.hidden_size, 1
        )
    if c.kind == "window":
        from rnnlab.nn.window import WindowEncoder

        return WindowEncoder(input_size, c.hidden_size, window=c.window, num_layers=c.num_layers, dropout=c.dropout)
    if c.kind == "cnn":
        from rnnlab.nn.conv import TemporalCNNEncoder

        return TemporalCNNEncoder(
            input_size, c.hidden_size, num_layers=c.num_layers, kernel_size=c.kernel_size,
            dilation_base=c.dilation_base, causal=c.causal, dropout=c.dropout,
        )
    from rnnlab.nn.transformer import TransformerEncoder

    return TransformerEncoder(
        input_size,
        c.hidden_size,
        num_layers=c.num_layers,
        num_heads=c.num_heads,
        ff_size=c.ff_size or 4 * c.hidden_size,
        dropout=c.dropout,
        norm=c.norm,
        norm_position=c.norm_position,
        positions=c.positions,
        max_len=c.max_len,
        causal=c.causal,
    )

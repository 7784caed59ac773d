"""The recurrent decoder of the generating structures (OneToMany, Seq2Seq): one configuration, one start state.

Both structures read ``config.decoder`` (a :class:`DecoderConfig`), build the layer with :func:`build_decoder`
and turn a start vector h (B, H) into the layer's initial state with :func:`state_from_vector`: h in every layer and,
for an LSTM, c_0 = 0 (Sutskever et al., 2014; Vinyals et al., 2015 start the decoder this way).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from rnnlab.nn import Recurrent
from rnnlab.nn.state import LSTMState, State

from .base import check_choice

DecoderCell = Literal["lstm", "gru", "rnn"]


@dataclass(frozen=True)
class DecoderConfig:
    """The decoder's cell and sizes, shared by :class:`OneToManyConfig` and :class:`Seq2SeqConfig`."""

    cell: DecoderCell = "lstm"
    """lstm | gru | rnn"""
    hidden_size: int = 128
    """H: the width of each decoder layer."""
    num_layers: int = 1
    """Stacked decoder layers; the start state is repeated in each."""

    def __post_init__(self) -> None:
        check_choice("decoder.cell", self.cell, DecoderCell)
        for name in ("hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"decoder.{name} must be a positive integer, got {value!r}")


def build_decoder(config: DecoderConfig, input_size: int, *, dropout: float = 0.0) -> Recurrent:
    """The decoder layer: inputs (B, T, input_size) -> outputs (B, T, H), with ``step`` for generation."""
    return Recurrent(config.cell, input_size, config.hidden_size, num_layers=config.num_layers, dropout=dropout)


def state_from_vector(h0: Tensor, config: DecoderConfig) -> State:
    """h0 (B, H) -> the decoder's initial state: h0 in every layer (L, B, H), and c_0 = 0 for an LSTM."""
    h = h0.unsqueeze(0).expand(config.num_layers, -1, -1).contiguous()  # (L, B, H)
    return LSTMState(h, h.new_zeros(h.shape)) if config.cell == "lstm" else h

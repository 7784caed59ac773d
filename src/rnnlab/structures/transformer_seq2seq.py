"""The Transformer encoder-decoder (Vaswani et al., 2017): the baseline that seq2seq with attention is compared to.

Same interface and batch keys as :class:`~rnnlab.structures.seq2seq.Seq2Seq`. Decoding is incremental: each
block caches its self-attention inputs, so a step runs one position through the blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.masking import lengths_to_mask, masked_cross_entropy
from rnnlab.nn.transformer import TransformerDecoder, TransformerEncoder

from .base import InputLayer, Output, batch_lengths, check_choice, check_input_fields, check_special_tokens, require
from .decoding import reorder_state
from .generation import StepDecoder, TargetGenerator

Norm = Literal["layer", "rms"]
NormPosition = Literal["pre", "post"]
Positions = Literal["sinusoidal", "learned"]


@dataclass(frozen=True)
class TransformerSeq2SeqConfig:
    """The Transformer encoder-decoder: inputs, sizes and block options (shared by encoder and decoder)."""

    tgt_vocab_size: int
    """Target vocabulary, including the begin and end tokens."""
    src_vocab_size: int = 0
    """Source tokens (0 for feature inputs)."""
    src_input_size: int = 0
    """Source features per step (0 for token inputs)."""
    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 2
    """Blocks in the encoder and in the decoder."""
    num_heads: int = 4
    ff_size: int = 0
    """0 means 4 * hidden_size."""
    dropout: float = 0.0
    norm: Norm = "layer"
    """layer | rms"""
    norm_position: NormPosition = "pre"
    """pre | post"""
    positions: Positions = "sinusoidal"
    """sinusoidal | learned"""
    max_len: int = 512
    """The longest source or target sequence the position encoding covers."""
    bos_token: int = 1
    eos_token: int = 2

    def __post_init__(self) -> None:
        check_input_fields(self, "src_vocab_size", "src_input_size")
        check_choice("norm", self.norm, Norm)
        check_choice("norm_position", self.norm_position, NormPosition)
        check_choice("positions", self.positions, Positions)
        check_special_tokens(self, self.tgt_vocab_size)


class TransformerSeq2Seq(TargetGenerator, nn.Module):
    """source (B, S) or (B, S, I) -> target logits (B, T, V).

    ``forward`` returns :class:`~rnnlab.structures.Output` with ``logits`` (B, T, V); ``state`` and
    ``attention`` are None. ``generate(src, lengths, *, max_new_tokens=50, method="greedy", ...)``: see
    :class:`~rnnlab.structures.generation.TargetGenerator`.
    """

    def __init__(self, config: TransformerSeq2SeqConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.inputs = InputLayer(vocab_size=c.src_vocab_size, input_size=c.src_input_size,
                                 embedding_size=c.embedding_size)
        options = dict(num_layers=c.num_layers, num_heads=c.num_heads, ff_size=c.ff_size or None, dropout=c.dropout,
                       norm=c.norm, norm_position=c.norm_position, positions=c.positions, max_len=c.max_len)
        self.encoder = TransformerEncoder(self.inputs.output_size, c.hidden_size, **options)
        self.embedding = nn.Embedding(c.tgt_vocab_size, c.embedding_size)
        self.decoder = TransformerDecoder(c.embedding_size, c.hidden_size, **options)
        self.head = nn.Linear(c.hidden_size, c.tgt_vocab_size)

    def encode(self, src: Tensor, lengths: Optional[Tensor]) -> dict:
        memory, _ = self.encoder(self.inputs(src, name="x"), lengths)  # (B, S, H)
        mask = lengths_to_mask(lengths, memory.shape[1], device=memory.device)
        return {"memory": memory, "mask": mask, "lengths": lengths, "caches": None}

    def decode(self, prev: Tensor, state: dict) -> Tensor:
        """prev (B, t) = the begin token and the targets so far -> logits (B, t, V)."""
        h = self.decoder(self.embedding(prev), state["memory"], memory_lengths=state["lengths"])
        return self.head(h)

    def forward(self, batch: dict) -> Output:
        src = require(batch, "x", "the source sequences", "TransformerSeq2Seq")
        y = require(batch, "y", "target tokens (B, T) ending in the end token", "TransformerSeq2Seq")
        state = self.encode(src, batch_lengths(batch, src))
        prev = torch.cat([torch.full_like(y[:, :1], self.config.bos_token), y[:, :-1]], dim=1)  # shifted right
        return Output(self.decode(prev, state))  # (B, T, V)

    def loss(self, batch: dict) -> Tensor:
        return masked_cross_entropy(self(batch).logits, batch["y"], batch.get("y_lengths"))

    def step_decoder(self) -> _Decoder:
        """This model as a :class:`~rnnlab.structures.decoding.Decoder` (one target token per step)."""
        return _Decoder(self)


class _Decoder(StepDecoder):
    """Incremental decoding with a cache of each block's self-attention inputs (no prefix re-run).

    state: the dict of :meth:`TransformerSeq2Seq.encode`, every tensor (the caches included) with the batch in dim 0.
    """

    def step(self, tokens: Tensor, state: dict):
        m = self.model
        h, caches = m.decoder.step(m.embedding(tokens), state["memory"], state["caches"], memory_mask=state["mask"])
        return m.head(h), dict(state, caches=caches)  # (B, V)

    def reorder(self, state: dict, index: Tensor) -> dict:
        return reorder_state(state, index, batch_dim=0)

"""Many-to-one: a sequence in, one class or value out (sentiment, spoken digits, actions)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.masking import lengths_to_mask, masked_max, masked_mean

from .base import InputLayer, Output, Task, batch_lengths, check_choice, check_input_fields, head_loss, require
from .encoders import EncoderConfig, build_encoder

Pooling = Literal["last", "mean", "max", "attention"]


@dataclass(frozen=True)
class ManyToOneConfig:
    output_size: int
    """Classes (classification) or values (regression)."""
    vocab_size: int = 0
    """Token inputs: the vocabulary size (0 for feature inputs)."""
    input_size: int = 0
    """Feature inputs: I (0 for token inputs)."""
    embedding_size: int = 64
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pooling: Pooling = "last"
    """last (the encoder's summary) | mean | max (over real positions) | attention (a learned query)."""
    dropout: float = 0.0
    task: Task = "classification"
    """classification | regression"""

    def __post_init__(self) -> None:
        check_input_fields(self)
        check_choice("task", self.task, Task)
        check_choice("pooling", self.pooling, Pooling)


class AttentionPooling(nn.Module):
    """score_t = vᵀ tanh(W h_t); α = softmax over real positions; summary = Σ α_t h_t (Yang et al., 2016, §2.2)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(size, size)
        self.v = nn.Linear(size, 1, bias=False)

    def forward(self, h: Tensor, mask: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        scores = self.v(torch.tanh(self.proj(h))).squeeze(-1)  # (B, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        alpha = scores.softmax(dim=1)  # (B, T)
        return (alpha.unsqueeze(-1) * h).sum(dim=1), alpha  # (B, E), (B, T)


class ManyToOne(nn.Module):
    """x (B, T) tokens or (B, T, I) features -> (B, O). Batch keys: ``x``, ``lengths`` (optional), ``y``.

    ``forward`` returns :class:`~rnnlab.structures.Output` with ``logits`` (B, O) and, for
    ``pooling="attention"``, ``attention`` (B, T): the pooling weights over the input steps (else None).
    """

    def __init__(self, config: ManyToOneConfig) -> None:
        super().__init__()
        self.config = config
        self.inputs = InputLayer(vocab_size=config.vocab_size, input_size=config.input_size,
                                 embedding_size=config.embedding_size)
        self.encoder = build_encoder(config.encoder, self.inputs.output_size)
        E = self.encoder.output_size
        self.attention = AttentionPooling(E) if config.pooling == "attention" else None
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(E, config.output_size)

    def forward(self, batch: dict) -> Output:
        x = self.inputs(require(batch, "x", "the input sequences", "ManyToOne"))
        lengths = batch_lengths(batch, x)
        outputs, summary = self.encoder(x, lengths)  # (B, T, E), (B, E)
        mask = lengths_to_mask(lengths, x.shape[1], device=x.device)
        pooling, alpha = self.config.pooling, None
        if pooling == "mean":
            summary = masked_mean(outputs, mask)
        elif pooling == "max":
            summary = masked_max(outputs, mask)
        elif pooling == "attention":
            summary, alpha = self.attention(outputs, mask)  # (B, E), (B, T)
        return Output(self.head(self.dropout(summary)), attention=alpha)  # (B, O)

    def loss(self, batch: dict) -> Tensor:
        out = self(batch).logits
        y = require(batch, "y", "targets: class ids (B,) or values (B, O)", "ManyToOne.loss")
        return head_loss(out, y, self.config.task)

    @torch.no_grad()
    def predict(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        out = self({"x": x, "lengths": lengths}).logits
        return out.argmax(-1) if self.config.task == "classification" else out

"""Many-to-one: a sequence in, one class or value out (sentiment, spoken digits, actions)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.masking import lengths_to_mask, masked_max, masked_mean

from .base import InputLayer, batch_lengths, check_input_fields, check_task, head_loss, require
from .encoders import EncoderConfig, build_encoder

POOLINGS = ("last", "mean", "max", "attention")


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
    pooling: str = "last"
    """last (the encoder's summary) | mean | max (over real positions) | attention (a learned query)."""
    dropout: float = 0.0
    task: str = "classification"

    def __post_init__(self) -> None:
        check_input_fields(self)
        check_task(self.task)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")


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
    """x (B, T) tokens or (B, T, I) features -> (B, O). Batch keys: ``x``, ``lengths`` (optional), ``y``."""

    def __init__(self, config: ManyToOneConfig) -> None:
        super().__init__()
        self.config = config
        self.inputs = InputLayer(vocab_size=config.vocab_size, input_size=config.input_size, embedding_size=config.embedding_size)
        self.encoder = build_encoder(config.encoder, self.inputs.output_size)
        E = self.encoder.output_size
        self.attention = AttentionPooling(E) if config.pooling == "attention" else None
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(E, config.output_size)

    def forward(self, batch: dict) -> Tensor:
        x = self.inputs(require(batch, "x", "the input sequences", "ManyToOne"))
        lengths = batch_lengths(batch, x)
        outputs, summary = self.encoder(x, lengths)  # (B, T, E), (B, E)
        mask = lengths_to_mask(lengths, x.shape[1], device=x.device)
        pooling = self.config.pooling
        if pooling == "mean":
            summary = masked_mean(outputs, mask)
        elif pooling == "max":
            summary = masked_max(outputs, mask)
        elif pooling == "attention":
            summary, _ = self.attention(outputs, mask)
        return self.head(self.dropout(summary))  # (B, O)

    def loss(self, batch: dict) -> Tensor:
        out = self(batch)
        y = require(batch, "y", "targets: class ids (B,) or values (B, O)", "ManyToOne.loss")
        return head_loss(out, y, self.config.task)

    @torch.no_grad()
    def predict(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        out = self({"x": x, "lengths": lengths})
        return out.argmax(-1) if self.config.task == "classification" else out

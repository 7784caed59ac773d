"""Many-to-many of equal length: one output per input step (POS tagging, NER), optionally through a CRF."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.masking import lengths_to_mask, masked_cross_entropy, masked_mse

from .base import InputLayer, Output, Task, batch_lengths, check_choice, check_input_fields, require
from .encoders import EncoderConfig, build_encoder


@dataclass(frozen=True)
class ManyToManyConfig:
    output_size: int
    """Tags (classification) or values per step (regression)."""
    vocab_size: int = 0
    input_size: int = 0
    embedding_size: int = 64
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    crf: bool = False
    """A linear-chain CRF over the tags (Lample et al., 2016): trained by its log-likelihood, decoded by Viterbi."""
    dropout: float = 0.0
    task: Task = "classification"
    """classification | regression"""

    def __post_init__(self) -> None:
        check_input_fields(self)
        check_choice("task", self.task, Task)
        if self.crf and self.task != "classification":
            raise ValueError("crf=True needs task='classification' (a CRF scores tag sequences)")


class ManyToMany(nn.Module):
    """x (B, T) or (B, T, I) -> per-step scores (B, T, O). Batch keys: ``x``, ``lengths`` (optional), ``y`` (B, T).

    ``forward`` returns :class:`~rnnlab.structures.Output` with ``logits`` (B, T, O) (the CRF's emission scores
    with ``crf=True``, the values for regression); ``state`` and ``attention`` are None.
    """

    def __init__(self, config: ManyToManyConfig) -> None:
        super().__init__()
        self.config = config
        self.inputs = InputLayer(vocab_size=config.vocab_size, input_size=config.input_size,
                                 embedding_size=config.embedding_size)
        self.encoder = build_encoder(config.encoder, self.inputs.output_size)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, config.output_size)
        if config.crf:
            from rnnlab.nn.crf import LinearChainCRF

            self.crf = LinearChainCRF(config.output_size)
        else:
            self.crf = None

    def forward(self, batch: dict) -> Output:
        x = self.inputs(require(batch, "x", "the input sequences", "ManyToMany"))
        outputs, _ = self.encoder(x, batch_lengths(batch, x))  # (B, T, E)
        return Output(self.head(self.dropout(outputs)))  # (B, T, O)

    def loss(self, batch: dict) -> Tensor:
        scores = self(batch).logits
        y = require(batch, "y", "per-step targets (B, T)", "ManyToMany.loss")
        if tuple(y.shape[:2]) != tuple(scores.shape[:2]):
            raise ValueError(f"y must have shape {tuple(scores.shape[:2])} like x, got {tuple(y.shape)}")
        lengths = batch.get("lengths")
        if self.crf is not None:
            return self.crf.nll(scores, y, lengths)
        if self.config.task == "classification":
            return masked_cross_entropy(scores, y, lengths)
        return masked_mse(scores, y.view_as(scores), lengths)

    @torch.no_grad()
    def predict(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """Tags (B, T) long (0 past each length; Viterbi with a CRF), or values (B, T, O)."""
        scores = self({"x": x, "lengths": lengths}).logits
        if self.config.task == "regression":
            return scores
        if self.crf is not None:
            return self.crf.viterbi(scores, lengths)[0]
        tags = scores.argmax(-1)
        mask = lengths_to_mask(lengths, x.shape[1], device=tags.device)
        return tags if mask is None else tags * mask

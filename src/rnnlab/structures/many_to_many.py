"""Many-to-many of equal length: one output per input step (POS tagging, NER), optionally through a CRF."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.masking import lengths_to_mask, masked_cross_entropy, masked_mse

from .base import InputLayer, Output, Task, batch_lengths, check_choice, check_input_fields, require
from .encoders import EncoderConfig, build_encoder

CharEncoder = Literal["none", "cnn", "lstm"]


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
    char_encoder: CharEncoder = "none"
    """Character-level word features concatenated to the word embeddings (token inputs only; batch key
    ``chars`` (B, T, W), char id 0 = padding): cnn = a char CNN with max-pooling (Ma and Hovy, 2016), lstm = a
    char BiLSTM (Lample et al., 2016); none = word embeddings only. With them, ``dropout`` also applies to the
    concatenated word and char vector."""
    char_vocab_size: int = 0
    """Character ids, padding (0) included; needed when char_encoder is not none."""
    char_embedding_size: int = 25
    """The width of the character embeddings."""
    char_hidden_size: int = 50
    """cnn: filters (the feature width); lstm: the hidden size of each direction (the feature width is twice it)."""
    word_dropout: float = 0.0
    """Training only: each word id is replaced by the unknown id 0 with this probability, so that the model learns
    to tag from context and characters the words its vocabulary lacks."""

    def __post_init__(self) -> None:
        check_input_fields(self)
        check_choice("task", self.task, Task)
        if self.crf and self.task != "classification":
            raise ValueError("crf=True needs task='classification' (a CRF scores tag sequences)")
        check_choice("char_encoder", self.char_encoder, CharEncoder)
        if self.char_encoder != "none" and (self.vocab_size < 1 or self.char_vocab_size < 2):
            raise ValueError(f"char_encoder={self.char_encoder!r} needs token inputs (vocab_size > 0) and "
                             f"char_vocab_size >= 2, got vocab_size={self.vocab_size}, "
                             f"char_vocab_size={self.char_vocab_size}")
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {self.word_dropout}")


class ManyToMany(nn.Module):
    """x (B, T) or (B, T, I) -> per-step scores (B, T, O). Batch keys: ``x``, ``lengths`` (optional), ``y`` (B, T),
    and ``chars`` (B, T, W) with a char encoder.

    ``forward`` returns :class:`~rnnlab.structures.Output` with ``logits`` (B, T, O) (the CRF's emission scores
    with ``crf=True``, the values for regression); ``state`` and ``attention`` are None.
    """

    def __init__(self, config: ManyToManyConfig) -> None:
        super().__init__()
        self.config = config
        self.inputs = InputLayer(vocab_size=config.vocab_size, input_size=config.input_size,
                                 embedding_size=config.embedding_size)
        self.chars = None
        if config.char_encoder != "none":
            from rnnlab.nn.char_features import CharFeatures

            self.chars = CharFeatures(config.char_vocab_size, config.char_embedding_size, config.char_hidden_size,
                                      kind=config.char_encoder)
        width = self.inputs.output_size + (self.chars.output_size if self.chars is not None else 0)
        self.encoder = build_encoder(config.encoder, width)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, config.output_size)
        if config.crf:
            from rnnlab.nn.crf import LinearChainCRF

            self.crf = LinearChainCRF(config.output_size)
        else:
            self.crf = None

    def forward(self, batch: dict) -> Output:
        ids = require(batch, "x", "the input sequences", "ManyToMany")
        if self.training and self.config.word_dropout > 0 and isinstance(ids, Tensor):
            ids = ids.masked_fill(torch.rand(ids.shape, device=ids.device) < self.config.word_dropout, 0)
        x = self.inputs(ids)
        if self.chars is not None:
            chars = self.chars(require(batch, "chars", "char ids (B, T, W) of each word", "ManyToMany"))  # (B, T, F)
            if tuple(chars.shape[:2]) != tuple(x.shape[:2]):
                raise ValueError(f"chars must have shape (B, T, W) with (B, T) = {tuple(x.shape[:2])} like x, "
                                 f"got {tuple(batch['chars'].shape)}")
            x = self.dropout(torch.cat([x, chars], dim=-1))  # (B, T, E + F)
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
    def predict(self, x: Tensor, lengths: Optional[Tensor] = None, chars: Optional[Tensor] = None) -> Tensor:
        """Tags (B, T) long (0 past each length; Viterbi with a CRF), or values (B, T, O)."""
        scores = self({"x": x, "lengths": lengths, "chars": chars}).logits
        if self.config.task == "regression":
            return scores
        if self.crf is not None:
            return self.crf.viterbi(scores, lengths)[0]
        tags = scores.argmax(-1)
        mask = lengths_to_mask(lengths, x.shape[1], device=tags.device)
        return tags if mask is None else tags * mask

"""What the structures share: the output type, the input layer (token embedding or raw features) and checks.

A batch is a dict of tensors with documented keys, e.g. ``{"x": (B, T) or (B, T, I), "lengths": (B,),
"y": ...}``; each structure's docstring lists the keys its ``loss`` reads. Structures speak one small
interface (STYLE.md §10): ``forward(batch) -> Output``, ``loss(batch) -> scalar``, and ``predict``/``generate``.
"""
from __future__ import annotations

import typing
from typing import Any, Literal, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.nn._checks import check_lengths

Task = Literal["classification", "regression"]


class Output(NamedTuple):
    """What every structure's ``forward(batch)`` returns: the same three fields, whatever the structure.

    Read the fields by name (``model(batch).logits``); ``logits, state, attention = model(batch)`` works too.
    """

    logits: Tensor
    """The head's scores: class or token logits, or the predicted values for ``task="regression"``.
    OneToOne, ManyToOne: (B, O); ManyToMany: (B, T, O);
    LanguageModel, OneToMany, Captioner, Seq2Seq, TransformerSeq2Seq: (B, T, V)."""
    state: Any = None
    """The state to carry into the next call (``batch["state"]``): LanguageModel with a recurrent encoder; else None."""
    attention: Optional[Tensor] = None
    """Attention weights to look at: Seq2Seq with attention (B, T, S) over the source; OneToMany with a memory
    and Captioner with attention (B, T, S) over the memory's / image's positions; ManyToOne with
    ``pooling="attention"`` (B, T) over the input steps; else None."""


def check_choice(name: str, value: Any, choices: Any) -> None:
    """``value`` is one of the ``Literal[...]`` type ``choices``, or a ValueError that lists them."""
    allowed = typing.get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}: set {name} to one of them")


def check_input_fields(cfg, vocab: str = "vocab_size", features: str = "input_size") -> None:
    """A config reads tokens (its ``vocab`` field > 0) or features (its ``features`` field > 0): exactly one."""
    vocab_size, input_size = getattr(cfg, vocab), getattr(cfg, features)
    if (vocab_size > 0) == (input_size > 0):
        raise ValueError(
            f"set exactly one of {vocab} (token inputs) and {features} (feature inputs), "
            f"got {vocab}={vocab_size}, {features}={input_size}"
        )
    if vocab_size > 0 and cfg.embedding_size < 1:
        raise ValueError(f"embedding_size must be positive for token inputs, got {cfg.embedding_size}")


def check_special_tokens(cfg, vocab_size: int, names=("bos_token", "eos_token")) -> None:
    for name in names:
        if not 0 <= getattr(cfg, name) < vocab_size:
            raise ValueError(f"{name} must lie in [0, {vocab_size}) (the output vocabulary), got {getattr(cfg, name)}")


def head_loss(out: Tensor, y: Tensor, task: str) -> Tensor:
    """Cross-entropy on class ids (B,), or MSE on values shaped like ``out``."""
    if task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out, y.view_as(out))


class InputLayer(nn.Module):
    """Tokens (B, T) long -> embeddings (B, T, E), or features (B, T, I) passed through. ``output_size`` is E or I."""

    def __init__(self, *, vocab_size: int, input_size: int, embedding_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_size) if vocab_size > 0 else None
        self.output_size = embedding_size if vocab_size > 0 else input_size
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, name: str = "x") -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if self.embedding is not None:
            if x.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"{name} must hold token ids (an integer tensor (B, T)), got dtype {x.dtype}")
            if x.dim() != 2:
                raise ValueError(f"{name} must have shape (B, T) of token ids, got shape {tuple(x.shape)}")
            _check_ids(x, self.vocab_size, name)
            return self.dropout(self.embedding(x))  # (B, T, E)
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor (B, T, I) of features, got dtype {x.dtype}")
        if x.dim() != 3 or x.shape[-1] != self.output_size:
            raise ValueError(f"{name} must have shape (B, T, {self.output_size}), got shape {tuple(x.shape)}")
        return self.dropout(x)


def require(batch: dict, key: str, what: str, owner: str):
    """batch[key], or a ValueError that says which key the structure needs."""
    if not isinstance(batch, dict):
        raise TypeError(f"{owner} takes a batch dict, got {type(batch).__name__}")
    if key not in batch or batch[key] is None:
        raise ValueError(f"{owner} needs batch[{key!r}] ({what}); the batch has keys {sorted(batch)}")
    return batch[key]


def batch_lengths(batch: dict, x: Tensor, key: str = "lengths") -> Optional[Tensor]:
    """The checked lengths of the batch (None when absent): (B,) in [1, T]."""
    return check_lengths(batch.get(key), x.shape[0], x.shape[1])


def _check_ids(x: Tensor, vocab_size: int, name: str) -> None:
    """Token ids in [0, vocab_size): the embedding would fail with an index error (a device assert on a GPU)
    that names neither the input nor the vocabulary. One wait for the GPU (min and max read together)."""
    if x.numel():
        low, high = torch.stack(torch.aminmax(x)).tolist()
        if low < 0 or high >= vocab_size:
            raise ValueError(f"{name} token ids must lie in [0, {vocab_size}), got min {low} and max {high}")

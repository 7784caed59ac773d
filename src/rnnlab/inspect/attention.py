"""Attention weights as the model used them: seq2seq alignments (Bahdanau et al., 2015, Fig. 3) and the weights
of attention pooling over a classifier's input steps (Yang et al., 2016, Fig. 5).

Both come from the structures' own ``forward(batch).attention`` (:class:`~rnnlab.structures.Output`): nothing is
recomputed. A seq2seq batch needs ``y``, the target the decoder is fed (the model's own translation, to see the
weights its decoding used).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn


@dataclass
class AttentionMaps:
    """The attention weights of one batch."""

    weights: Tensor
    """Seq2seq: (B, T, S), target step × source step, rows summing to 1. Pooling: (B, T) over the input steps."""
    kind: str
    """``alignment`` (seq2seq) or ``pooling``."""
    lengths: Optional[Tensor]
    """(B,) source lengths, or None."""


def attention_maps(model: nn.Module, batch: dict) -> AttentionMaps:
    """The attention weights of ``model`` on ``batch``, or a ValueError when the model has none."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(batch)
    finally:
        model.train(was)
    weights = getattr(out, "attention", None)
    if weights is None:
        raise ValueError(f"this model ({type(model).__name__}) returns no attention weights: attention maps need a "
                         "seq2seq model with attention (translate --model.attention bahdanau|luong-dot|luong-general) "
                         "or a classifier with --model.pooling attention")
    kind = "alignment" if weights.dim() == 3 else "pooling"
    return AttentionMaps(weights.detach(), kind, batch.get("lengths"))

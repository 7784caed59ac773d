"""Saliency: gradient × input embedding per token (Denil et al., 2014; Li et al., 2016, "Visualizing and
Understanding Neural Models in NLP", §3; Shrikumar et al., 2017), summed over the embedding dimension.

score(token s) = Σ_e e_s[e] · ∂y/∂e_s[e], where y is the logit of the chosen class (a classifier: the predicted
class unless ``target`` names one) or, for a model with an output per step (a tagger, a language model, a
seq2seq decoder), the logit of the chosen label at each output step, giving a (T_out, S) matrix. Positive: the
token pushes towards that output; negative: away. Only the token embeddings count (a tagger's character
features are not attributed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn


@dataclass
class Saliency:
    """Gradient × input per source token."""

    scores: Tensor
    """Classifier: (B, S). Per-step outputs: (B, T_out, S), row t the saliency of output t's label."""
    targets: Tensor
    """The labels explained: (B,) or (B, T_out)."""
    kind: str
    """``sequence`` (one output per sequence) or ``per_step``."""


def _embedding(model: nn.Module) -> nn.Embedding:
    inputs = getattr(model, "inputs", None)
    emb = getattr(inputs, "embedding", None)
    if not isinstance(emb, nn.Embedding):
        raise ValueError(f"saliency needs token inputs (an embedding layer, model.inputs.embedding); this "
                         f"{type(model).__name__} reads feature vectors")
    return emb


def saliency(model: nn.Module, batch: dict, *, target: Optional[Tensor] = None) -> Saliency:
    """Gradient × input embedding per token of ``batch["x"]``, summed over the embedding dimension.

    ``target``: the classes (B,) or per-step labels (B, T_out) to explain; None = the model's own argmax.
    """
    emb_layer = _embedding(model)
    kept: list = []

    def keep(module, args, output):
        output.retain_grad()
        kept.append(output)

    handle = emb_layer.register_forward_hook(keep)
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(batch).logits
            if not kept:
                raise ValueError("the model's forward never embedded batch['x']")
            e = kept[0]  # (B, S, E)
            if logits.dim() == 2:
                chosen = logits.argmax(-1) if target is None else target.to(logits.device)
                y = logits.gather(1, chosen.view(-1, 1)).sum()
                grad = torch.autograd.grad(y, e)[0]
                return Saliency((grad * e).sum(-1).detach(), chosen.detach(), "sequence")
            chosen = logits.argmax(-1) if target is None else target.to(logits.device)  # (B, T_out)
            rows = []
            for t in range(logits.shape[1]):
                y = logits[:, t].gather(1, chosen[:, t].view(-1, 1)).sum()
                grad = torch.autograd.grad(y, e, retain_graph=True)[0]
                rows.append((grad * e).sum(-1).detach())  # (B, S)
            return Saliency(torch.stack(rows, dim=1), chosen.detach(), "per_step")
    finally:
        handle.remove()
        model.train(was)

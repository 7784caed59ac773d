"""Masks from lengths, and the reductions and losses that must never count padding."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def to_device(t: Tensor, device) -> Tensor:
    """``t`` on ``device``; from the CPU to a GPU without making the CPU wait for the GPU's queued work
    (non_blocking: asynchronous where ``t`` is pinned, as the Trainer pins the lengths it keeps on the CPU; a copy
    from pageable memory waits as a plain copy does). A GPU-to-CPU copy stays blocking: its result is read next."""
    device = torch.device(device)
    return t.to(device, non_blocking=device.type == "cuda" and t.device.type == "cpu")


def lengths_to_mask(lengths: Optional[Tensor], max_len: int, *, device=None) -> Optional[Tensor]:
    """(B,) lengths -> (B, T) bool, True at real positions; None stays None (every position is real)."""
    if lengths is None:
        return None
    t = torch.arange(max_len, device=device if device is not None else lengths.device)
    return t.unsqueeze(0) < to_device(lengths, t.device).unsqueeze(1)


def last_real(x: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """x (B, T, E) -> (B, E): each row's value at its last real position."""
    if lengths is None:
        return x[:, -1]
    index = (to_device(lengths, x.device) - 1).view(-1, 1, 1).expand(-1, 1, x.shape[2])
    return x.gather(1, index).squeeze(1)


def masked_mean(x: Tensor, mask: Optional[Tensor]) -> Tensor:
    """x (B, T, E), mask (B, T) -> (B, E): the mean over real positions."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def masked_max(x: Tensor, mask: Optional[Tensor]) -> Tensor:
    """x (B, T, E), mask (B, T) -> (B, E): the max over real positions."""
    if mask is None:
        return x.max(dim=1).values
    return x.masked_fill(~mask.unsqueeze(-1), torch.finfo(x.dtype).min).max(dim=1).values


def masked_cross_entropy(
    logits: Tensor, targets: Tensor, lengths: Optional[Tensor] = None, *, reduction: str = "mean"
) -> Tensor:
    """logits (B, T, V), targets (B, T) long -> the mean over real positions (or their sum, or (B, T) with 0 on
    padding)."""
    B, T, V = logits.shape
    if lengths is None and reduction == "mean":  # no padding: torch's own mean, two ops fewer each way
        return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))
    loss = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), reduction="none").view(B, T)
    return _reduce(loss, lengths_to_mask(lengths, T, device=logits.device), reduction)


def masked_mse(pred: Tensor, target: Tensor, lengths: Optional[Tensor] = None, *, reduction: str = "mean") -> Tensor:
    """pred, target (B, T, ...) -> squared error averaged over the trailing dims, then over real positions."""
    loss = (pred - target).pow(2)
    loss = loss.flatten(2).mean(-1) if loss.dim() > 2 else loss
    return _reduce(loss, lengths_to_mask(lengths, loss.shape[1], device=pred.device), reduction)


def masked_gaussian_nll(
    mean: Tensor,
    var: Tensor,
    target: Tensor,
    lengths: Optional[Tensor] = None,
    *,
    reduction: str = "mean",
    eps: float = 1e-6,
) -> Tensor:
    """Gaussian negative log-likelihood ½(log σ² + (y − μ)²/σ² + log 2π) per position (B, T, ...), masked."""
    var = var.clamp_min(eps)
    loss = 0.5 * (var.log() + (target - mean).pow(2) / var + torch.log(torch.tensor(2 * torch.pi, dtype=mean.dtype)))
    loss = loss.flatten(2).mean(-1) if loss.dim() > 2 else loss
    return _reduce(loss, lengths_to_mask(lengths, loss.shape[1], device=mean.device), reduction)


def _reduce(loss: Tensor, mask: Optional[Tensor], reduction: str) -> Tensor:
    if mask is not None:
        loss = loss * mask.to(loss.dtype)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / (mask.sum() if mask is not None else loss.numel())
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")

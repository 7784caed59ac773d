"""Synthetic long-range-dependency tasks, generated on the fly: no files, no downloads.

The adding problem (Hochreiter & Schmidhuber, 1997, "Long Short-Term Memory", §5.4): each step carries
a value u_t ~ U(0, 1) and a marker; exactly two steps are marked, one in each half of the sequence, and the
target is the sum of their two values. Predicting the mean (1.0) scores MSE 1/6 ≈ 0.167, so a model that
scores well below that remembers across the gap.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

ADDING_BASELINE_MSE = 1.0 / 6.0  # Var(u_a + u_b) for two independent U(0, 1)


def adding_problem(
    batch_size: int, length: int, *, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor]:
    """x (B, T, 2): [value, marker]; y (B,): the sum of the two marked values."""
    if length < 2:
        raise ValueError(f"length must be at least 2 (one marker in each half), got {length}")
    values = torch.rand(batch_size, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (batch_size,), generator=generator)
    second = torch.randint(half, length, (batch_size,), generator=generator)
    markers = torch.zeros(batch_size, length)
    rows = torch.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=2)  # (B, T, 2)
    y = values[rows, first] + values[rows, second]  # (B,)
    return x, y

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


COPY_BLANK, COPY_DELIMITER = 0, 1  # token ids shared by the copy tasks; symbols are 2 .. 2 + symbols - 1


def copy_task(
    batch_size: int, delay: int, *, symbols: int = 8, copy_length: int = 10,
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """The copy (memory) task of Hochreiter & Schmidhuber (1997) as Arjovsky et al. (2016, §4.1) set it.

    x (B, copy_length + delay + copy_length) token ids: ``copy_length`` symbols, ``delay - 1`` blanks, the
    delimiter, then ``copy_length`` blanks during which the model must emit the symbols. y (B, copy_length): the
    symbols, the targets of the last ``copy_length`` positions. A model that remembers nothing scores accuracy
    1/symbols there.
    """
    _check_copy_args(delay, symbols, copy_length)
    data = torch.randint(2, 2 + symbols, (batch_size, copy_length), generator=generator)
    x = torch.full((batch_size, 2 * copy_length + delay), COPY_BLANK, dtype=torch.long)
    x[:, :copy_length] = data
    x[:, copy_length + delay - 1] = COPY_DELIMITER
    return x, data


def selective_copy_task(
    batch_size: int, length: int, *, symbols: int = 8, copy_length: int = 10,
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """Selective copying (Gu & Dao, 2023, "Mamba", §3.1): the symbols sit at random positions among blanks.

    x (B, length + 1 + copy_length): ``copy_length`` symbols at random, ordered positions of the first
    ``length`` steps (blanks elsewhere), the delimiter, then ``copy_length`` blanks during which the model must
    emit the symbols in order. y (B, copy_length). Unlike the copy task, the spacing is random, so a fixed
    time-shift cannot solve it: the model has to select by content.
    """
    _check_copy_args(length, symbols, copy_length)
    if length < copy_length:
        raise ValueError(f"length ({length}) must be at least copy_length ({copy_length})")
    data = torch.randint(2, 2 + symbols, (batch_size, copy_length), generator=generator)
    # copy_length distinct positions per row, in order: the smallest keys of a random permutation
    positions = torch.rand(batch_size, length, generator=generator).argsort(dim=1)[:, :copy_length].sort(dim=1).values
    x = torch.full((batch_size, length + 1 + copy_length), COPY_BLANK, dtype=torch.long)
    x.scatter_(1, positions, data)
    x[:, length] = COPY_DELIMITER
    return x, data


def _check_copy_args(length: int, symbols: int, copy_length: int) -> None:
    for name, value in (("length/delay", length), ("symbols", symbols), ("copy_length", copy_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")

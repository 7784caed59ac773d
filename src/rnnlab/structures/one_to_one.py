"""One-to-one: a feed-forward network on a single vector, the baseline without memory."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import Output, Task, check_choice, head_loss, require


@dataclass(frozen=True)
class OneToOneConfig:
    input_size: int
    """F: features per example."""
    output_size: int
    """Classes (classification) or values (regression)."""
    hidden_sizes: tuple[int, ...] = (128,)
    """Widths of the hidden layers (ReLU)."""
    dropout: float = 0.0
    task: Task = "classification"
    """classification | regression"""

    def __post_init__(self) -> None:
        check_choice("task", self.task, Task)
        if self.input_size < 1 or self.output_size < 1:
            raise ValueError(
                f"input_size and output_size must be positive, got {self.input_size} and {self.output_size}"
            )


class OneToOne(nn.Module):
    """x (B, F) -> logits or values (B, O). Batch keys: ``x`` (B, F), ``y`` (B,) class ids or (B, O) values.

    ``forward`` returns :class:`~rnnlab.structures.Output` with ``logits`` (B, O); ``state`` and ``attention`` are None.
    """

    def __init__(self, config: OneToOneConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        size = config.input_size
        for width in config.hidden_sizes:
            layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(config.dropout)]
            size = width
        layers.append(nn.Linear(size, config.output_size))
        self.net = nn.Sequential(*layers)

    def forward(self, batch: dict) -> Output:
        x = require(batch, "x", "features (B, F)", "OneToOne")
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.config.input_size:
            raise ValueError(f"x must have shape (B, {self.config.input_size}), got {tuple(getattr(x, 'shape', ()))}")
        return Output(self.net(x))  # (B, O)

    def loss(self, batch: dict) -> Tensor:
        out = self(batch).logits
        return head_loss(out, require(batch, "y", "targets", "OneToOne.loss"), self.config.task)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        out = self({"x": x}).logits
        return out.argmax(-1) if self.config.task == "classification" else out

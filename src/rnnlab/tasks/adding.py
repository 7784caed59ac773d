"""The adding problem as an experiment: which sequence model remembers across a long gap.

Every model is the same :class:`~rnnlab.structures.ManyToOne` regressor (last-step read-out) with a different
encoder, so the comparison isolates the recurrence: the Elman RNN's gradient vanishes over the gap, the
gated cells and minGRU carry it (Hochreiter & Schmidhuber, 1997, §5.4; Feng et al., 2024).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import nn

from rnnlab.data.synthetic import ADDING_BASELINE_MSE, adding_problem
from rnnlab.structures import EncoderConfig, ManyToOne, ManyToOneConfig

ENCODERS = {
    "RNN (tanh)": EncoderConfig(kind="rnn"),
    "LSTM": EncoderConfig(kind="lstm"),
    "LSTM + layer norm": EncoderConfig(kind="lstm", layer_norm=True),
    "GRU": EncoderConfig(kind="gru"),
    "minGRU": EncoderConfig(kind="mingru"),
}


@dataclass(frozen=True)
class AddingResult:
    name: str
    test_mse: float
    seconds: float


def compare_on_adding(
    *, length: int = 50, steps: int = 600, hidden_size: int = 64, batch_size: int = 64, lr: float = 1e-2, seed: int = 0,
    on_result: Optional[Callable[[AddingResult], None]] = None,
) -> list[AddingResult]:
    """Train each model of :data:`ENCODERS` for ``steps`` Adam steps; return its test MSE (1,000 fresh sequences).

    The baseline that remembers nothing (predict the mean) scores ``ADDING_BASELINE_MSE`` = 1/6.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    g = torch.Generator().manual_seed(seed + 1)
    x_test, y_test = adding_problem(1000, length, generator=g)
    results = []
    for name, encoder in ENCODERS.items():
        torch.manual_seed(seed)
        cfg = ManyToOneConfig(output_size=1, input_size=2, task="regression",
                              encoder=replace(encoder, hidden_size=hidden_size))
        model = ManyToOne(cfg)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        t0 = time.perf_counter()
        for _ in range(steps):
            x, y = adding_problem(batch_size, length, generator=g)
            loss = model.loss({"x": x, "y": y})
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        with torch.no_grad():
            test = model.eval().loss({"x": x_test, "y": y_test}).item()
        result = AddingResult(name, test, time.perf_counter() - t0)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


__all__ = ["ADDING_BASELINE_MSE", "AddingResult", "ENCODERS", "compare_on_adding"]

"""Exploding gradients and gradient clipping, side by side (Pascanu, Mikolov & Bengio, 2013, "On the difficulty of
training recurrent neural networks", §3.2).

A plain ReLU RNN whose recurrent matrix starts at ``gain`` × identity (the IRNN initialisation when gain is 1)
reads the adding problem. With an identity-like recurrence and ReLU the hidden state integrates its inputs, so
the gradient with respect to the recurrent weights grows with T (and like gain^T for gain > 1): at T = 100 the
first gradient norm is near a thousand, one plain SGD step throws the weights far off and the loss explodes
(to inf/nan). Clipping the global gradient norm (or each gradient value) bounds every update and the same model
trains stably. Every run starts from the same
weights and sees the same batches; the only difference is the clipping.

:func:`run` returns, per setting, the training loss and the gradient norm before clipping at every step;
:func:`plot` draws them side by side.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch
from torch import nn

from rnnlab.data.synthetic import ADDING_BASELINE_MSE, adding_problem
from rnnlab.structures.encoders import EncoderConfig

from .long_range import ProbeModel

ClipMode = Literal["none", "norm", "value"]


@dataclass(frozen=True)
class ClippingConfig:
    """The clipping experiment: one model, one problem, the same batches; only the clipping differs."""

    length: int = 100
    """The adding problem's sequence length T."""
    hidden_size: int = 64
    """H: the RNN's width."""
    gain: float = 1.0
    """The recurrent matrix starts at gain × identity (its spectral radius)."""
    steps: int = 400
    """SGD steps per setting (a run stops when its loss blows up)."""
    batch_size: int = 32
    """Sequences per step."""
    lr: float = 0.01
    """Plain SGD, as Pascanu et al. train."""
    max_norm: float = 1.0
    """Clipping by norm: the global gradient norm is scaled down to at most this."""
    max_value: float = 0.1
    """Clipping by value: each gradient entry is clamped to [-max_value, max_value]."""
    seed: int = 0
    """Seeds the weights, the batches and the test set (the same for every setting)."""

    def __post_init__(self) -> None:
        for name in ("length", "hidden_size", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value!r}")
        if self.length < 2:
            raise ValueError(f"--length must be at least 2, got {self.length}")
        for name in ("gain", "lr", "max_norm", "max_value"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class ClippingRun:
    mode: ClipMode
    threshold: Optional[float]
    loss: list[float] = field(default_factory=list)
    """The training loss at every step (inf or nan from the step the run blew up)."""
    grad_norm: list[float] = field(default_factory=list)
    """The global gradient norm at every step, before clipping."""
    test_mse: float = float("nan")
    """The test MSE at the end (1/6 ≈ 0.167 is what predicting the mean scores)."""
    diverged_at: Optional[int] = None
    """The first step whose loss was not finite, or whose loss exceeded 1,000 × the baseline."""
    seconds: float = 0.0


def make_model(config: ClippingConfig) -> ProbeModel:
    torch.manual_seed(config.seed)
    encoder = EncoderConfig(kind="rnn-relu", hidden_size=config.hidden_size, recurrent_init="identity")
    model = ProbeModel(encoder, 2, 1, 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "weight_hh" in name:
                p.mul_(config.gain)
    return model


def train(config: ClippingConfig, mode: ClipMode) -> ClippingRun:
    """Train the model of ``config`` with clipping ``mode`` (none | norm | value)."""
    if mode not in ("none", "norm", "value"):
        raise ValueError(f"clipping mode must be none, norm or value, got {mode!r}")
    model = make_model(config)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    x_test, y_test = adding_problem(512, config.length, generator=torch.Generator().manual_seed(config.seed + 1))
    losses, norms, diverged = [], [], None
    t0 = time.perf_counter()
    for step in range(1, config.steps + 1):
        x, y = adding_problem(config.batch_size, config.length, generator=gen)
        loss = nn.functional.mse_loss(model(x)[:, -1, 0], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])).item()
        losses.append(loss.item())
        norms.append(norm)
        if not math.isfinite(loss.item()) or loss.item() > 1000 * ADDING_BASELINE_MSE or not math.isfinite(norm):
            diverged = step
            break
        if mode == "norm":
            nn.utils.clip_grad_norm_(params, config.max_norm)
        elif mode == "value":
            nn.utils.clip_grad_value_(params, config.max_value)
        opt.step()
    with torch.no_grad():
        test = nn.functional.mse_loss(model(x_test)[:, -1, 0], y_test).item()
    threshold = {"none": None, "norm": config.max_norm, "value": config.max_value}[mode]
    return ClippingRun(mode, threshold, losses, norms, test, diverged, time.perf_counter() - t0)


def run(config: ClippingConfig, *, on_run: Optional[Callable[[ClippingRun], None]] = None) -> list[ClippingRun]:
    """No clipping, clipping by norm and clipping by value, from the same weights on the same batches."""
    runs = []
    for mode in ("none", "norm", "value"):
        result = train(config, mode)
        runs.append(result)
        if on_run is not None:
            on_run(result)
    return runs


def summary(runs: list[ClippingRun]) -> str:
    head = f"{'clipping':<14}{'max grad norm':>14}{'final loss':>12}{'test MSE':>10}  diverged at"
    lines = [head, "-" * len(head)]
    for r in runs:
        label = r.mode if r.threshold is None else f"{r.mode} {r.threshold:g}"
        final = r.loss[-1] if r.loss else float("nan")
        lines.append(f"{label:<14}{max(r.grad_norm, default=float('nan')):>14.3g}{final:>12.4g}{r.test_mse:>10.4g}  "
                     f"{r.diverged_at if r.diverged_at is not None else '-'}")
    return "\n".join(lines)


def write_results(runs: list[ClippingRun], config: ClippingConfig, out: Path) -> dict:
    """clipping.json, clipping.txt and clipping.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {"config": asdict(config), "runs": [asdict(r) for r in runs], "torch": torch.__version__}
    (out / "clipping.json").write_text(json.dumps(doc), encoding="utf-8")
    (out / "clipping.txt").write_text(summary(runs) + "\n", encoding="utf-8")
    plot(runs, out / "clipping.png")
    return doc


def plot(runs: list[ClippingRun], path: Path) -> None:
    """Loss curves (left) and gradient norms before clipping (right), log scale, one line per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in runs:
        label = "no clipping" if r.threshold is None else f"clip by {r.mode} ({r.threshold:g})"
        steps = range(1, len(r.loss) + 1)
        left.plot(steps, [v if math.isfinite(v) else float("nan") for v in r.loss], label=label, lw=1)
        right.plot(steps, [v if math.isfinite(v) else float("nan") for v in r.grad_norm], label=label, lw=1)
        if r.diverged_at is not None:
            left.axvline(r.diverged_at, color="red", ls=":", lw=1)
            right.axvline(r.diverged_at, color="red", ls=":", lw=1)
    left.axhline(ADDING_BASELINE_MSE, color="grey", ls="--", lw=0.8, label="predict the mean")
    left.set(yscale="log", xlabel="step", ylabel="training loss (MSE)", title="loss")
    right.set(yscale="log", xlabel="step", ylabel="gradient norm before clipping", title="gradient norm")
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["ClippingConfig", "ClippingRun", "make_model", "plot", "run", "summary", "train", "write_results"]

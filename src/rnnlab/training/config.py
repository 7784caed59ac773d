"""The trainer's configuration: one frozen dataclass, validated on construction."""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "cosine", "plateau"]
Precision = Literal["float32", "bf16", "auto"]
Device = Literal["auto", "cpu", "cuda"]
Strategy = Literal["auto", "ddp"]
MAX_SEED = 2**32 - 1
"""The largest seed that python, numpy and torch all take."""


@dataclass(frozen=True)
class TrainerConfig:
    """Everything :class:`rnnlab.training.Trainer` needs besides the model and the data."""

    optimizer: Optimizer = "adamw"
    """adam | adamw | sgd."""
    lr: float = 1e-3
    """The peak learning rate (reached at the end of warm-up)."""
    weight_decay: float = 0.0
    """L2 penalty (adam, sgd) or decoupled weight decay (adamw)."""
    momentum: float = 0.0
    """sgd only: momentum."""
    warmup_steps: int = 0
    """Linear warm-up: step s (0-based) uses lr * (s + 1) / warmup_steps until s reaches warmup_steps."""
    schedule: Schedule = "constant"
    """After warm-up: constant | cosine (to 0 at max_steps) | plateau (ReduceLROnPlateau on valid_loss)."""
    plateau_factor: float = 0.5
    """plateau: multiply the learning rate by this when valid_loss stops improving."""
    plateau_patience: int = 1
    """plateau: evaluations without improvement before the learning rate drops."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0 = no limit; then max_epochs or max_time must stop the run)."""
    max_epochs: int = 1
    """Stop after this many passes over the training data (0 = no limit)."""
    max_time: float = 0.0
    """Stop after this many seconds of training (0 = no limit).
    Wall time is not reproducible: avoid it when resuming."""
    clip_norm: float = 0.0
    """Clip the global gradient norm to this (0 = off). The pre-clip norm is logged every step either way."""
    clip_value: float = 0.0
    """Clip every gradient element to [-clip_value, clip_value] (0 = off); applied before clip_norm."""
    max_bad_steps: int = 0
    """A step whose loss or gradient norm is not finite is skipped (no update); after more than this many such
    steps in a row the run stops with an error that says what to change (0 = stop at the first)."""
    divergence_ratio: float = 1e4
    """Also stop when a training loss exceeds this many times max(1, the mean loss of the first 10 steps): a
    finite but exploding loss (0 = off)."""
    precision: Precision = "float32"
    """float32 | bf16 (torch.autocast to bfloat16 on the CPU or CUDA; weights and optimizer stay float32) | auto
    (bf16 where the device computes it natively and it pays: a CPU with AVX512-BF16 or AMX-BF16; a CUDA GPU with
    bf16 unless the model has recurrent layers, whose float32 cuDNN kernels already use TF32 tensor cores and ran
    faster than under bf16 autocast on an H100; else float32), the same on one process or several. The run logs
    which it chose."""
    eval_every: int = 0
    """Evaluate on the validation data every this many steps (0 = at the end of every epoch)."""
    eval_tokens: int = 0
    """Score at most this many validation tokens (or examples) per evaluation: the first batches of the
    validation data, the same ones every time (0 = all of it)."""
    early_stopping_patience: int = 0
    """Stop after this many evaluations without a better valid_loss (0 = off). When on, the best weights are
    kept in memory and restored at the end of fit."""
    seed: int = 0
    """Seeds python, numpy and torch at the start of fit (a resumed run restores the saved RNG states instead)."""
    run_dir: str = ""
    """Where log.csv, curves.png, TensorBoard events and resume/ go ("" = write no files)."""
    log_every: int = 10
    """Log a line through ``logging`` (and to TensorBoard) every this many steps; log.csv gets every step."""
    progress: bool = True
    """Show a rich progress bar (only when stderr is a terminal)."""
    curves: bool = True
    """Plot training and validation loss to run_dir/curves.png at the end (needs matplotlib; else skipped)."""
    tensorboard: bool = False
    """Write TensorBoard events to run_dir/tensorboard (needs the tensorboard package)."""
    checkpoint_every: int = 0
    """Write run_dir/resume/ every this many steps (0 = only at the end; needs run_dir)."""
    resume: bool = False
    """Continue from run_dir/resume/ if it exists (else start afresh)."""
    device: Device = "auto"
    """auto (cuda when available) | cpu | cuda."""
    devices: int = 1
    """Data-parallel processes per node (through lightning_fabric when > 1)."""
    num_nodes: int = 1
    """Machines taking part in data-parallel training."""
    strategy: Strategy = "auto"
    """auto | ddp: the lightning_fabric strategy when devices * num_nodes > 1."""
    max_memory_fraction: float = 0.8
    """Refuse to start when the model's estimated training memory (weights, gradients, optimizer state and
    activations, from the config before anything is allocated) exceeds this fraction of the machine's RAM
    (0 = no check; above 1 allows swapping)."""

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, Optimizer)
        _choice("schedule", self.schedule, Schedule)
        _choice("precision", self.precision, Precision)
        _choice("device", self.device, Device)
        _choice("strategy", self.strategy, Strategy)
        if not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("weight_decay", "momentum", "max_time", "clip_norm", "clip_value", "divergence_ratio",
                     "max_memory_fraction"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns it off), got {getattr(self, name)!r}")
        for name in ("warmup_steps", "max_steps", "max_epochs", "eval_every", "early_stopping_patience",
                     "checkpoint_every", "plateau_patience", "max_bad_steps", "eval_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {MAX_SEED}] (numpy's seed range), got {self.seed!r}")
        for name in ("log_every", "devices", "num_nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 < self.plateau_factor < 1:
            raise ValueError(f"plateau_factor must be in (0, 1), got {self.plateau_factor!r}")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(
                f"momentum applies to optimizer='sgd' only, got optimizer={self.optimizer!r}: set momentum=0"
            )
        if not (self.max_steps or self.max_epochs or self.max_time):
            raise ValueError("max_steps, max_epochs and max_time are all 0: set at least one so that training stops")
        if self.schedule == "cosine" and not self.max_steps:
            raise ValueError("schedule='cosine' decays to 0 at max_steps: set max_steps > 0")
        if self.schedule == "cosine" and self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be < max_steps ({self.max_steps}) with schedule='cosine'"
            )
        if (self.checkpoint_every or self.resume or self.tensorboard) and not self.run_dir:
            raise ValueError("checkpoint_every, resume and tensorboard write to run_dir: set run_dir")


def _choice(name: str, value: str, choices: object) -> None:
    """``value`` is one of the ``Literal[...]`` type ``choices``, or a ValueError that lists them."""
    allowed = typing.get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}: set {name} to one of them")

"""The trainer: one visible loop over batches, with the mechanics (state carrying, clipping, schedules,
validation, early stopping, logs, checkpoints, data parallelism) in helpers below it.

The model needs only ``loss(batch) -> scalar``; for stateful data (``getattr(train, "stateful", False)``, e.g.
:class:`~rnnlab.training.tbptt.TokenStream`) it needs ``loss_and_state(batch) -> (loss, state)``, and the
trainer carries the state from one batch to the next, detached (truncated BPTT, DESIGN.md).

Tokens, for throughput and for weighting the validation mean: ``batch["num_tokens"]`` when present, else
``batch["y_lengths"].sum()``, else ``batch["lengths"].sum()`` when ``y`` has a time dimension, else B·T of a
(B, T, ...) ``y``, else B (one target per example).

Data parallelism: with ``devices * num_nodes > 1`` the model and optimizer go through ``lightning_fabric``
(DDP); a ``DataLoader`` gets a distributed sampler from Fabric, any other iterable must already yield this
process's share. With one device no Fabric is involved.
"""
from __future__ import annotations

import csv
import logging
import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from rnnlab.nn.state import LSTMState, detach, map_state

from .checkpoint import load_resume, save_resume
from .config import TrainerConfig

log = logging.getLogger(__name__)

CSV_COLUMNS = ["step", "epoch", "loss", "grad_norm", "lr", "tokens_per_s", "valid_loss"]


@dataclass
class RunState:
    """Where a run stands: everything, besides model/optimizer/RNG/data, that a resume must restore."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float = math.inf
    bad_evals: int = 0
    stopped_early: bool = False
    elapsed: float = 0.0
    last_eval_step: int = -1
    valid_loss: Optional[float] = None
    carried: Any = None  # the TBPTT state, detached
    epoch_rng: Optional[Tensor] = None  # torch's RNG at this epoch's start: replays a DataLoader's shuffle
    best_weights: Optional[dict] = None
    recent: list = field(default_factory=list)  # the last log_every training losses


class Trainer:
    """``Trainer(TrainerConfig(...)).fit(model, train, valid) -> dict of final metrics``."""

    def __init__(self, config: TrainerConfig = TrainerConfig()) -> None:
        self.config = config
        self.fabric = None
        self.device: Optional[torch.device] = None  # set by fit; evaluate alone uses the model's device

    def fit(self, model: nn.Module, train: Iterable[dict], valid: Optional[Iterable[dict]] = None) -> dict:
        c = self.config
        _seed_everything(c.seed)
        module = model
        self._stateful = bool(getattr(train, "stateful", False))
        model, optimizer, plateau, train = self._setup(model, train)
        run = self._restore(module, optimizer, plateau, train) if c.resume else None
        run = run or RunState()
        logger = _Logger(c, total_steps=self._total_steps(train), start_step=run.step, resumed=c.resume, active=self._is_main)
        started = time.perf_counter() - run.elapsed

        while not self._should_stop(run):
            for batch in self._batches(train, run):
                loss, tokens, grad_norm = self._train_step(model, optimizer, batch, run)
                run.step += 1
                run.batch_in_epoch += 1
                run.elapsed = time.perf_counter() - started
                logger.step(run, loss, grad_norm, optimizer.param_groups[0]["lr"], tokens)
                if valid is not None and c.eval_every and run.step % c.eval_every == 0:
                    self._validate(model, module, valid, run, plateau, logger)
                if c.checkpoint_every and run.step % c.checkpoint_every == 0:
                    logger.flush()  # the log must not lag behind what a resume restores
                    self._checkpoint(module, optimizer, plateau, train, run)
                    logger.restart_clock()
                if self._should_stop(run):
                    break
            else:  # the epoch ran to its end
                run.epoch += 1
                run.batch_in_epoch = 0
                if valid is not None and not c.eval_every:
                    self._validate(model, module, valid, run, plateau, logger)

        if valid is not None and run.last_eval_step != run.step:
            self._validate(model, module, valid, run, plateau, logger)
        if c.run_dir:
            self._checkpoint(module, optimizer, plateau, train, run)
        if run.best_weights is not None:  # early stopping: end on the best weights seen at an evaluation
            module.load_state_dict(run.best_weights)
        logger.close()
        return self._final_metrics(run, logger)

    # ----- setup -------------------------------------------------------------------------------------------

    def _setup(self, model: nn.Module, train):
        c = self.config
        if c.devices * c.num_nodes > 1:
            return self._setup_fabric(model, train)
        self.device = _resolve_device(c.device)
        model.to(self.device).train()
        optimizer = _build_optimizer(c, model.parameters())
        return model, optimizer, _build_plateau(c, optimizer), train

    def _setup_fabric(self, model: nn.Module, train):
        from lightning_fabric import Fabric

        c = self.config
        accelerator = "auto" if c.device == "auto" else c.device
        strategy = "ddp" if c.strategy == "auto" else c.strategy
        self.fabric = Fabric(accelerator=accelerator, devices=c.devices, num_nodes=c.num_nodes, strategy=strategy,
                             precision="bf16-mixed" if c.precision == "bf16" else "32-true")
        self.fabric.launch()
        self.device = self.fabric.device
        optimizer = _build_optimizer(c, model.parameters())
        wrapped, optimizer = self.fabric.setup(model, optimizer)
        # DDP synchronises gradients only through forward(): route the structures' loss methods through it.
        wrapped.mark_forward_method("loss")
        if hasattr(model, "loss_and_state"):
            wrapped.mark_forward_method("loss_and_state")
        if isinstance(train, torch.utils.data.DataLoader):
            train = self.fabric.setup_dataloaders(train, move_to_device=False)
        return wrapped, optimizer, _build_plateau(c, optimizer), train

    @property
    def _is_main(self) -> bool:
        return self.fabric is None or self.fabric.global_rank == 0

    def _total_steps(self, train) -> Optional[int]:
        c = self.config
        per_epoch = len(train) if hasattr(train, "__len__") else None
        by_epochs = c.max_epochs * per_epoch if c.max_epochs and per_epoch else None
        candidates = [n for n in (c.max_steps or None, by_epochs) if n]
        return min(candidates) if candidates else None

    # ----- one step ----------------------------------------------------------------------------------------

    def _batches(self, train, run: RunState):
        """This epoch's batches from where the run stands (a resumed run skips the batches it has seen)."""
        if hasattr(train, "state_dict"):
            return iter(train)  # the stream restores its own position
        if run.batch_in_epoch == 0:
            run.epoch_rng = torch.get_rng_state()
            return iter(train)
        now = torch.get_rng_state()
        torch.set_rng_state(run.epoch_rng)  # the same shuffle as the interrupted epoch...
        batches = iter(train)
        for _ in range(run.batch_in_epoch):  # ...minus the batches already trained on
            next(batches, None)
        torch.set_rng_state(now)
        return batches

    def _train_step(self, model, optimizer, batch: dict, run: RunState) -> tuple[float, int, float]:
        c = self.config
        _set_lr(optimizer, c, run.step)
        batch = _to_device(batch, self.device)
        with self._autocast():
            if self._stateful:
                if run.carried is not None:
                    batch["state"] = detach(run.carried)  # the chunk boundary: the gradient stops here
                loss, state = model.loss_and_state(batch)
                run.carried = _carryable(state)
            else:
                loss = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        if self.fabric is not None:
            self.fabric.backward(loss)
        else:
            loss.backward()
        grad_norm = _clip_gradients(model.parameters(), c.clip_norm, c.clip_value)
        optimizer.step()
        return float(loss.detach()), count_tokens(batch), grad_norm

    def _autocast(self):
        if self.config.precision != "bf16" or self.fabric is not None:  # Fabric applies its own precision
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # ----- validation and stopping ---------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Iterable[dict]) -> float:
        """The mean loss over ``data``, each batch weighted by its tokens (or examples; see the module docstring)."""
        was_training = model.training
        model.eval()
        if self.device is None:
            self.device = next(model.parameters()).device
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        weight = torch.zeros((), dtype=torch.float64, device=self.device)
        state = None
        stateful = getattr(data, "stateful", False)
        for batch in data:
            batch = _to_device(batch, self.device)
            with self._autocast():
                if stateful:
                    batch["state"] = state
                    loss, state = model.loss_and_state(batch)
                    state = _carryable(state)
                else:
                    loss = model.loss(batch)
            n = count_tokens(batch)
            total += loss.double() * n
            weight += n
        if self.fabric is not None:
            total, weight = self.fabric.all_reduce(total, reduce_op="sum"), self.fabric.all_reduce(weight, reduce_op="sum")
        model.train(was_training)
        if weight == 0:
            raise ValueError("the validation data yielded no batches")
        return float(total / weight)

    def _validate(self, model, module, valid, run: RunState, plateau, logger: "_Logger") -> None:
        c = self.config
        loss = self.evaluate(model, valid)
        run.valid_loss, run.last_eval_step = loss, run.step
        if loss < run.best:
            run.best, run.bad_evals = loss, 0
            if c.early_stopping_patience:
                run.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        else:
            run.bad_evals += 1
            run.stopped_early = bool(c.early_stopping_patience) and run.bad_evals >= c.early_stopping_patience
        if plateau is not None and run.step >= c.warmup_steps:  # warm-up owns the learning rate until it ends
            plateau.step(loss)
        logger.valid(run, loss)

    def _should_stop(self, run: RunState) -> bool:
        c = self.config
        return (run.stopped_early or (c.max_steps and run.step >= c.max_steps)
                or (c.max_epochs and run.epoch >= c.max_epochs) or (c.max_time and run.elapsed >= c.max_time))

    def _final_metrics(self, run: RunState, logger: "_Logger") -> dict:
        metrics = {"step": run.step, "epoch": run.epoch, "train_loss": _mean(run.recent), "elapsed_s": run.elapsed,
                   "tokens_per_s": logger.mean_throughput(), "stopped_early": run.stopped_early}
        if run.valid_loss is not None:
            restored = run.best_weights is not None
            metrics.update(valid_loss=run.best if restored else run.valid_loss, best_valid_loss=run.best)
        return metrics

    # ----- resume ------------------------------------------------------------------------------------------

    def _checkpoint(self, module, optimizer, plateau, train, run: RunState) -> None:
        if not self._is_main:
            return
        np_state = np.random.get_state()
        run_fields = {k: v for k, v in asdict(run).items() if k not in ("carried", "epoch_rng", "best_weights")}
        save_resume(self.config.run_dir, {
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "plateau": plateau.state_dict() if plateau is not None else None,
            "rng": {"python": random.getstate(), "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
                    "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "data": train.state_dict() if hasattr(train, "state_dict") else None,
            "run": run_fields,
            "carried": _pack_state(run.carried),
            "epoch_rng": run.epoch_rng,
            "best_weights": run.best_weights,
        })

    def _restore(self, module, optimizer, plateau, train) -> Optional[RunState]:
        saved = load_resume(self.config.run_dir)
        if saved is None:
            log.info("resume: no checkpoint in %s, starting afresh", self.config.run_dir)
            return None
        module.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if plateau is not None and saved["plateau"] is not None:
            plateau.load_state_dict(saved["plateau"])
        rng = saved["rng"]
        random.setstate(rng["python"])
        np.random.set_state((rng["numpy"][0], rng["numpy"][1].numpy().astype(np.uint32), *rng["numpy"][2:]))
        torch.set_rng_state(rng["torch"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        if saved["data"] is not None:
            train.load_state_dict(saved["data"])
        run = RunState(**saved["run"])
        run.carried = _unpack_state(saved["carried"], self.device)
        run.epoch_rng, run.best_weights = saved["epoch_rng"], saved["best_weights"]
        log.info("resumed from step %d (epoch %d)", run.step, run.epoch)
        return run


# ----- helpers ---------------------------------------------------------------------------------------------

def lr_at(config: TrainerConfig, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warm-up, then constant or cosine to 0.

    With schedule='plateau' this is the warm-up only; afterwards ReduceLROnPlateau owns the rate.
    """
    c = config
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    if c.schedule == "cosine":
        progress = (step - c.warmup_steps) / (c.max_steps - c.warmup_steps)
        return c.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return c.lr


def _set_lr(optimizer, config: TrainerConfig, step: int) -> None:
    if config.schedule == "plateau" and step >= config.warmup_steps:
        return  # warm-up's last step set lr to its peak; from here ReduceLROnPlateau changes it
    lr = lr_at(config, step)
    for group in optimizer.param_groups:
        group["lr"] = lr


def _build_optimizer(c: TrainerConfig, params) -> torch.optim.Optimizer:
    if c.optimizer == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    cls = torch.optim.Adam if c.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=c.lr, weight_decay=c.weight_decay)


def _build_plateau(c: TrainerConfig, optimizer):
    if c.schedule != "plateau":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=c.plateau_factor, patience=c.plateau_patience)


def _clip_gradients(params, clip_norm: float, clip_value: float) -> float:
    """Clip by value, then by global norm; return the global norm before any clipping."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if clip_value:
        torch.nn.utils.clip_grad_value_(params, clip_value)
        if clip_norm:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
    elif clip_norm:
        torch.nn.utils.clip_grads_with_norm_(params, clip_norm, norm)
    return float(norm)


def count_tokens(batch: dict) -> int:
    """The batch's tokens (or examples): the weight of its loss in a mean over batches (module docstring)."""
    if "num_tokens" in batch:
        return int(batch["num_tokens"])
    if batch.get("y_lengths") is not None:
        return int(batch["y_lengths"].sum())
    y = batch.get("y")
    if y is None:
        return int(batch["x"].shape[0])
    if y.dim() >= 2:
        return int(batch["lengths"].sum()) if batch.get("lengths") is not None else int(y.shape[0] * y.shape[1])
    return int(y.shape[0])


def _carryable(state):
    """Detached, and float32 again where bf16 autocast made it bfloat16 (the next chunk checks its dtype)."""
    if state is None:
        return None
    return map_state(lambda t: t.detach().float() if t.dtype == torch.bfloat16 else t.detach(), state)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device: use device='cpu' or 'auto'")
    return torch.device(name)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _pack_state(state):
    """A carried state as plain tensors (the resume file loads with weights_only=True: no named tuples)."""
    if state is None or isinstance(state, Tensor):
        return state
    return {"h": state.h, "c": state.c}


def _unpack_state(packed, device):
    if packed is None:
        return None
    if isinstance(packed, dict):
        return LSTMState(packed["h"].to(device), packed["c"].to(device))
    return packed.to(device)


def _mean(xs: list) -> Optional[float]:
    return sum(xs) / len(xs) if xs else None


# ----- logs ------------------------------------------------------------------------------------------------

class _Logger:
    """log.csv (every step), ``logging`` lines and TensorBoard (every log_every steps), the progress bar, curves.png."""

    def __init__(self, c: TrainerConfig, *, total_steps: Optional[int], start_step: int, resumed: bool, active: bool) -> None:
        self.c, self.active = c, active
        self.run_dir = Path(c.run_dir) if c.run_dir and active else None
        self.pending: Optional[dict] = None
        self.last_time, self.throughputs = time.perf_counter(), []
        self.csv_file = self.writer = self.tb = self.progress = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._open_csv(keep_until=start_step if resumed else None)
            if c.tensorboard:
                self.tb = _tensorboard_writer(self.run_dir / "tensorboard")
        if active and c.progress and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:.0f} tok/s"),
                                     TimeRemainingColumn(), transient=False)
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, loss=float("nan"), tps=0.0)
            self.progress.start()

    def _open_csv(self, keep_until: Optional[int]) -> None:
        path = self.run_dir / "log.csv"
        rows = []
        if keep_until is not None and path.exists():  # drop what the interrupted run logged after its checkpoint
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        self.csv_file = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.csv_file, fieldnames=CSV_COLUMNS)
        self.writer.writeheader()
        self.writer.writerows(rows)

    def step(self, run: RunState, loss: float, grad_norm: float, lr: float, tokens: int) -> None:
        now = time.perf_counter()
        tps = tokens * (self.c.devices * self.c.num_nodes) / max(now - self.last_time, 1e-9)
        self.last_time = now
        self.throughputs.append(tps)
        run.recent = (run.recent + [loss])[-self.c.log_every:]
        self._flush_pending()
        self.pending = {"step": run.step, "epoch": run.epoch, "loss": loss, "grad_norm": grad_norm, "lr": lr,
                        "tokens_per_s": tps, "valid_loss": ""}
        if self.progress is not None:
            self.progress.update(self.task, completed=run.step, loss=loss, tps=tps)
        if run.step % self.c.log_every == 0 and self.active:
            log.info("step %d epoch %d loss %.4f grad_norm %.3f lr %.3g %.0f tok/s", run.step, run.epoch, loss, grad_norm, lr, tps)
            if self.tb is not None:
                for k in ("loss", "grad_norm", "lr", "tokens_per_s"):
                    self.tb.add_scalar(f"train/{k}", self.pending[k], run.step)
            if self.csv_file is not None:
                self.csv_file.flush()

    def valid(self, run: RunState, loss: float) -> None:
        if not self.active:
            return
        log.info("step %d valid_loss %.4f", run.step, loss)
        if self.pending is None or self.pending["step"] != run.step:
            self._flush_pending()
            self.pending = {k: "" for k in CSV_COLUMNS} | {"step": run.step, "epoch": run.epoch}
        self.pending["valid_loss"] = loss
        if self.tb is not None:
            self.tb.add_scalar("valid/loss", loss, run.step)
        self.restart_clock()

    def restart_clock(self) -> None:
        """Throughput counts training steps only: the clock skips evaluations and checkpoints."""
        self.last_time = time.perf_counter()

    def _flush_pending(self) -> None:
        if self.pending is not None and self.writer is not None:
            self.writer.writerow(self.pending)
        self.pending = None

    def flush(self) -> None:
        self._flush_pending()
        if self.csv_file is not None:
            self.csv_file.flush()

    def mean_throughput(self) -> Optional[float]:
        ts = sorted(self.throughputs[1:] or self.throughputs)  # the first step pays for warm-up
        return ts[len(ts) // 2] if ts else None

    def close(self) -> None:
        self._flush_pending()
        if self.progress is not None:
            self.progress.stop()
        if self.tb is not None:
            self.tb.close()
        if self.csv_file is not None:
            self.csv_file.close()
            if self.c.curves:
                _plot_curves(self.run_dir / "log.csv", self.run_dir / "curves.png")


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("tensorboard=True needs the tensorboard package: pip install tensorboard, or set tensorboard=False") from None
    return SummaryWriter(str(folder))


def _plot_curves(csv_path: Path, png_path: Path) -> None:
    """Training and validation loss against step. matplotlib is optional: without it, no plot."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed: no %s", png_path)
        return
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    train = [(int(r["step"]), float(r["loss"])) for r in rows if r["loss"]]
    valid = [(int(r["step"]), float(r["valid_loss"])) for r in rows if r["valid_loss"]]
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)  # the Agg canvas, without touching matplotlib's global backend
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=0.8)
    if valid:
        ax.plot(*zip(*valid), "o-", label="valid loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)

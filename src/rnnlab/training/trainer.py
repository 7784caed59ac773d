"""The trainer: one visible loop over batches, with the mechanics (state carrying, clipping, schedules,
validation, early stopping, checkpoints, data parallelism) in helpers below it. What a run reports (log.csv,
logging, TensorBoard, the progress bar, curves.png) lives in :mod:`.progress`; the resume file and the
packing of RNG and recurrent states into it in :mod:`.checkpoint`.

The model needs only ``loss(batch) -> scalar``; for stateful data (``getattr(train, "stateful", False)``, e.g.
:class:`~rnnlab.training.tbptt.TokenStream`) it needs ``loss_and_state(batch) -> (loss, state)``, and the
trainer carries the state from one batch to the next, detached (truncated BPTT, DESIGN.md).

Tokens, for throughput and for weighting the validation mean: ``batch["num_tokens"]`` when present, else
``batch["y_lengths"].sum()``, else ``batch["lengths"].sum()`` when ``y`` has a time dimension, else B·T of a
(B, T, ...) ``y``, else B (one target per example).

Data parallelism: with ``devices * num_nodes > 1`` the model and optimizer go through ``lightning_fabric``
(DDP: gradients averaged over the processes every step) and every process trains on its own share of the data:

- a truncated-BPTT stream (anything with ``shard(rank, world_size)``, e.g. ``TokenStream``) lays the text out
  in W·B rows and yields this process's B of them (``tbptt.StreamPosition``);
- a DataLoader whose batch sampler has ``shard`` (``data.batching.RankShards``: ``LengthBucketSampler``,
  classify's sampler) keeps every W-th batch of an epoch that all processes draw alike;
- any other DataLoader gets Fabric's ``DistributedSampler`` (examples split W ways, padded to equal shares);
- any other iterable must already yield this process's share.

``batch_size`` is per process: the global batch is W times it, as with torch's DistributedSampler. A
validation stream is split the same way; a validation DataLoader is not (every process scores all of it, and
the mean over the processes is the same). Throughput (tokens/s) counts every process's tokens once: the sum
over the processes of the tokens of each step. Each process seeds its RNGs with seed + rank (different dropout
masks) and the resume file keeps one RNG state per process; resuming needs the same number of processes.
With one device no Fabric is involved.
"""
from __future__ import annotations

import logging
import math
import random
import signal
import threading
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from rnnlab.nn.state import detach, map_state

from .checkpoint import capture_rng, load_resume, pack_state, restore_rng, save_resume, unpack_state
from .config import TrainerConfig
from .lock import lock_run_dir
from .progress import RunLogger, ValidMetric

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm stopped being finite: the run stops, its last good checkpoint kept."""


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
    bad_steps: int = 0  # non-finite steps in a row, skipped
    first_losses: list = field(default_factory=list)  # the first 10 training losses: the scale of divergence


@dataclass
class _Parts:
    """What one ``fit`` trains with."""

    model: nn.Module  # what runs the steps: the model, or Fabric's wrapper of it for data parallelism
    module: nn.Module  # the model itself: checkpoints and early stopping hold its state_dict
    optimizer: torch.optim.Optimizer
    plateau: Any  # ReduceLROnPlateau for schedule="plateau", else None
    train: Iterable[dict]  # the training data (a DataLoader gets Fabric's distributed sampler)


class Trainer:
    """``Trainer(TrainerConfig(...)).fit(model, train, valid) -> dict of final metrics``.

    ``metric``: a figure the task computes at each evaluation besides the loss (:class:`~.progress.ValidMetric`:
    accuracy, perplexity, ...), logged to log.csv and drawn in curves.png.
    """

    def __init__(self, config: Optional[TrainerConfig] = None, *, metric: Optional[ValidMetric] = None) -> None:
        self.config = config if config is not None else TrainerConfig()
        self.metric = metric
        self.fabric = None
        self.device: Optional[torch.device] = None  # set by fit; evaluate alone uses the model's device
        self.precision = "bf16" if self.config.precision == "bf16" else "float32"  # fit decides "auto"
        self._signals = _StopOnSignal()  # replaced by fit's own, which listens while it runs

    def fit(self, model: nn.Module, train: Iterable[dict], valid: Optional[Iterable[dict]] = None) -> dict:
        """Train until max_steps, max_epochs, max_time or early stopping; -> the final metrics.

        Metrics: step, epoch, train_loss (mean of the last log_every steps), elapsed_s, tokens_per_s,
        stopped_early, and with ``valid`` valid_loss and best_valid_loss.
        """
        c = self.config
        _seed_everything(c.seed)
        self._stateful = bool(getattr(train, "stateful", False))
        p = self._setup(model, train)
        valid = self._shard(valid) if self.fabric is not None and valid is not None else valid
        # one writer per run_dir (the main process: data-parallel ranks share it)
        with lock_run_dir(c.run_dir) if c.run_dir and self._is_main else nullcontext(), _StopOnSignal() as signals:
            self._signals = signals
            return self._fit(p, valid)

    def _fit(self, p: _Parts, valid: Optional[Iterable[dict]]) -> dict:
        c = self.config
        run = self._restore(p) if c.resume else RunState()
        logger = RunLogger(c, total_steps=self._total_steps(p.train), start_step=run.step, resumed=c.resume,
                           active=self._is_main, metric=self.metric.name if self.metric else None)
        started = time.perf_counter() - run.elapsed

        while not self._should_stop(run):
            seen = run.batch_in_epoch
            for batch in self._batches(p.train, run):
                seen += 1
                loss, tokens, grad_norm = self._train_step(p, batch, run)
                tokens = self._sum_over_processes(tokens)
                run.step += 1
                run.batch_in_epoch += 1
                run.elapsed = time.perf_counter() - started
                run.recent = (run.recent + [loss])[-c.log_every:]
                logger.step(run.step, run.epoch, loss, grad_norm, p.optimizer.param_groups[0]["lr"], tokens)
                if valid is not None and c.eval_every and run.step % c.eval_every == 0:
                    self._validate(p, valid, run, logger)
                if c.checkpoint_every and run.step % c.checkpoint_every == 0:
                    logger.flush()  # the log must not lag behind what a resume restores
                    self._checkpoint(p, run)
                    logger.restart_clock()
                if self._should_stop(run):
                    break
            else:  # the epoch ran to its end
                if seen == 0:
                    raise ValueError("the training data yielded no batches: it is empty (or an exhausted iterator, "
                                     "which cannot be read twice: pass a list or a DataLoader)")
                run.epoch += 1
                run.batch_in_epoch = 0
                if valid is not None and not c.eval_every:
                    self._validate(p, valid, run, logger)

        interrupted = self._signals.received
        if valid is not None and run.last_eval_step != run.step and not interrupted:  # the final weights, evaluated
            self._validate(p, valid, run, logger)
        if c.run_dir:
            self._checkpoint(p, run)
        if interrupted:
            where = f"; {c.run_dir}/resume holds step {run.step}" if c.run_dir else ""
            log.warning("%s at step %d: training stopped%s. Continue with the same options and "
                        "--trainer.resume true", interrupted, run.step, where)
        if run.best_weights is not None:  # early stopping: end on the best weights seen at an evaluation
            p.module.load_state_dict(run.best_weights)
        logger.close()
        return self._final_metrics(run, logger)

    # ----- setup -------------------------------------------------------------------------------------------

    def _use_precision(self, precision: str) -> None:
        if self.config.precision == "auto":
            log.info("precision auto: %s on this device", precision)
        self.precision = precision

    def _setup(self, model: nn.Module, train) -> _Parts:
        c = self.config
        if c.devices * c.num_nodes > 1:
            return self._setup_fabric(model, train)
        self.device = _resolve_device(c.device)
        self._use_precision(resolve_precision(c.precision, self.device, model))
        model.to(self.device).train()
        optimizer = _build_optimizer(c, model.parameters())
        return _Parts(model, model, optimizer, _build_plateau(c, optimizer), train)

    def _setup_fabric(self, model: nn.Module, train) -> _Parts:
        from lightning_fabric import Fabric

        c = self.config
        accelerator = "auto" if c.device == "auto" else c.device
        strategy = "ddp" if c.strategy == "auto" else c.strategy
        # Fabric runs in float32 and bf16 is our own autocast, as in one process: Fabric's bf16-mixed casts every
        # floating tensor of a batch to bfloat16, a language model's carried state included, which then meets
        # float32 weights in the fused kernels.
        self.fabric = Fabric(accelerator=accelerator, devices=c.devices, num_nodes=c.num_nodes, strategy=strategy,
                             precision="32-true")
        self.fabric.launch()
        _seed_everything(c.seed + self.fabric.global_rank)  # one RNG stream per process: its own dropout masks
        self.device = self.fabric.device
        self._use_precision(resolve_precision(c.precision, self.device, model))
        optimizer = _build_optimizer(c, model.parameters())
        wrapped, optimizer = self.fabric.setup(model, optimizer)
        # DDP synchronises gradients only through forward(): route the structures' loss methods through it.
        wrapped.mark_forward_method("loss")
        if hasattr(model, "loss_and_state"):
            wrapped.mark_forward_method("loss_and_state")
        return _Parts(wrapped, model, optimizer, _build_plateau(c, optimizer), self._shard(train))

    def _shard(self, data):
        """This process's share of ``data`` (module docstring: data parallelism)."""
        rank, world = self.fabric.global_rank, self.fabric.world_size
        if hasattr(data, "shard"):
            data.shard(rank, world)
        elif hasattr(getattr(data, "batch_sampler", None), "shard"):
            data.batch_sampler.shard(rank, world, seed=self.config.seed)
        elif isinstance(data, torch.utils.data.DataLoader):
            data = self.fabric.setup_dataloaders(data, move_to_device=False)
        else:
            log.info("data parallel: the %s given is neither a stream nor a DataLoader; it must yield only "
                     "process %d's share", type(data).__name__, rank)
        return data

    def _sum_over_processes(self, n: int) -> int:
        if self.fabric is None:
            return n
        return int(self.fabric.all_reduce(torch.tensor(float(n), device=self.device), reduce_op="sum"))

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
        _set_epoch(train, run.epoch)
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

    def _train_step(self, p: _Parts, batch: dict, run: RunState) -> tuple[float, int, float]:
        """Forward, backward, clip, step: -> (loss, tokens in the batch, gradient norm before clipping)."""
        c = self.config
        _set_lr(p.optimizer, c, run.step)
        batch = _to_device(batch, self.device)
        with self._autocast():
            if self._stateful:
                if run.carried is not None:
                    batch["state"] = detach(run.carried)  # the chunk boundary: the gradient stops here
                loss, state = p.model.loss_and_state(batch)
                run.carried = _carryable(state)
            else:
                loss = p.model.loss(batch)
        p.optimizer.zero_grad(set_to_none=True)
        if self.fabric is not None:
            self.fabric.backward(loss)
        else:
            loss.backward()
        grad_norm = _clip_gradients(p.model.parameters(), c.clip_norm, c.clip_value)
        value = float(loss.detach())
        self._check_exploding(run, value)
        if math.isfinite(value) and math.isfinite(grad_norm):
            p.optimizer.step()
            run.bad_steps = 0
            if len(run.first_losses) < 10:
                run.first_losses.append(value)
        else:  # skip the update: one bad batch must not poison the weights
            p.optimizer.zero_grad(set_to_none=True)
            run.carried = None  # a carried state from a diverged step would carry the NaN on
            run.bad_steps += 1
            if run.bad_steps > c.max_bad_steps:
                raise TrainingDiverged(self._divergence_message(run, value, grad_norm))
            log.warning("step %d: loss %s, gradient norm %s: skipped (%d in a row of %d allowed)",
                        run.step + 1, value, grad_norm, run.bad_steps, c.max_bad_steps)
        return value, count_tokens(batch), grad_norm

    def _check_exploding(self, run: RunState, loss: float) -> None:
        """A finite loss far above the run's first losses: the weights are running away (e.g. a huge lr)."""
        ratio = self.config.divergence_ratio
        if ratio and run.first_losses and math.isfinite(loss):
            scale = max(1.0, sum(run.first_losses) / len(run.first_losses))
            if loss > ratio * scale:
                raise TrainingDiverged(self._divergence_message(
                    run, loss, None, why=f"the loss exceeds {ratio:g} times its early level {scale:.4g}"))

    def _divergence_message(self, run: RunState, loss: float, grad_norm: Optional[float], why: str = "") -> str:
        c = self.config
        advice = [f"lower --trainer.lr (now {c.lr:g})"]
        if not c.clip_norm:
            advice.append("clip gradients (--trainer.clip_norm 1.0)")
        if self.precision == "bf16":
            advice.append("train in float32 (--trainer.precision float32)")
        advice.append(f"or allow a few bad steps (--trainer.max_bad_steps, now {c.max_bad_steps})")
        kept = (f"; the last checkpoint in {c.run_dir}/resume is from before it" if c.run_dir and c.checkpoint_every
                else "; no weights of this run were saved")
        what = why or f"loss {loss}, gradient norm {grad_norm}"
        return f"training diverged at step {run.step + 1}: {what}. To fix: {', '.join(advice)}{kept}"

    def _autocast(self):
        if self.precision != "bf16":
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
            if self.config.eval_tokens and weight >= self.config.eval_tokens:
                break  # the bound: the first batches, the same ones at every evaluation
        if self.fabric is not None:
            total = self.fabric.all_reduce(total, reduce_op="sum")
            weight = self.fabric.all_reduce(weight, reduce_op="sum")
        model.train(was_training)
        if weight == 0:
            raise ValueError("the validation data yielded no batches")
        return float(total / weight)

    def _validate(self, p: _Parts, valid, run: RunState, logger: RunLogger) -> None:
        c = self.config
        loss = self.evaluate(p.model, valid)
        run.valid_loss, run.last_eval_step = loss, run.step
        if loss < run.best:
            run.best, run.bad_evals = loss, 0
            if c.early_stopping_patience:
                run.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in p.module.state_dict().items()}
        else:
            run.bad_evals += 1
            run.stopped_early = bool(c.early_stopping_patience) and run.bad_evals >= c.early_stopping_patience
        if p.plateau is not None and run.step >= c.warmup_steps:  # warm-up owns the learning rate until it ends
            p.plateau.step(loss)
        logger.valid(run.step, run.epoch, loss, self._metric(p.module, loss))

    def _metric(self, module: nn.Module, loss: float) -> Optional[float]:
        """The task's metric at this evaluation (None without one): the model in eval mode, no gradients."""
        if self.metric is None:
            return None
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                return float(self.metric.compute(loss))
        finally:
            module.train(was_training)

    def _should_stop(self, run: RunState) -> bool:
        c = self.config
        return (run.stopped_early or self._signals.received is not None
                or (c.max_steps and run.step >= c.max_steps)
                or (c.max_epochs and run.epoch >= c.max_epochs) or (c.max_time and run.elapsed >= c.max_time))

    def _final_metrics(self, run: RunState, logger: RunLogger) -> dict:
        metrics = {"step": run.step, "epoch": run.epoch, "train_loss": _mean(run.recent), "elapsed_s": run.elapsed,
                   "tokens_per_s": logger.mean_throughput(), "stopped_early": run.stopped_early}
        if self._signals.received:
            metrics["interrupted"] = self._signals.received
        if run.valid_loss is not None:
            restored = run.best_weights is not None
            metrics.update(valid_loss=run.best if restored else run.valid_loss, best_valid_loss=run.best)
        return metrics

    # ----- resume ------------------------------------------------------------------------------------------

    def _gather(self, value) -> list:
        """``value`` of every process, in rank order (a list of one without data parallelism)."""
        if self.fabric is None:
            return [value]
        out = [None] * self.fabric.world_size
        torch.distributed.all_gather_object(out, value)
        return out

    def _my_rng(self, saved) -> dict:
        """This process's RNG state from the resume file (a lone dict: one written by one process)."""
        states = saved if isinstance(saved, list) else [saved]
        world = self.fabric.world_size if self.fabric is not None else 1
        if len(states) != world:
            raise ValueError(
                f"cannot resume from {self.config.run_dir}/resume: it was written by {len(states)} process(es) and "
                f"this run has {world}; each process's data share and random state belong to that layout. Resume "
                f"with the same --trainer.devices x --trainer.num_nodes ({len(states)}), or start afresh "
                "(a new --trainer.run_dir, or --trainer.resume false)")
        return states[self.fabric.global_rank if self.fabric is not None else 0]

    def _checkpoint(self, p: _Parts, run: RunState) -> None:
        """Write run_dir/resume/: weights, optimizer, scheduler, RNGs, the data's position and the run state."""
        rng = self._gather(capture_rng())  # one entry per process, in rank order
        if not self._is_main:
            return
        run_fields = {k: v for k, v in asdict(run).items() if k not in ("carried", "epoch_rng", "best_weights")}
        save_resume(self.config.run_dir, {
            "model": p.module.state_dict(),
            "optimizer": p.optimizer.state_dict(),
            "plateau": p.plateau.state_dict() if p.plateau is not None else None,
            "rng": rng,
            "data": p.train.state_dict() if hasattr(p.train, "state_dict") else None,
            "run": run_fields,
            "carried": pack_state(run.carried),
            "epoch_rng": run.epoch_rng,
            "best_weights": run.best_weights,
        })

    def _restore(self, p: _Parts) -> RunState:
        """Load run_dir/resume/ into the parts and return the saved run state (a fresh one when there is none)."""
        saved = load_resume(self.config.run_dir)
        if saved is None:
            log.info("resume: no checkpoint in %s, starting afresh", self.config.run_dir)
            return RunState()
        try:
            p.module.load_state_dict(saved["model"])
            p.optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = " ".join(str(e).split())[:300]
            raise ValueError(
                f"cannot resume from {self.config.run_dir}/resume: the checkpoint was written for another model or "
                f"optimizer ({first}); start afresh (a new --trainer.run_dir, or --trainer.resume false)") from None
        if p.plateau is not None and saved["plateau"] is not None:
            p.plateau.load_state_dict(saved["plateau"])
        restore_rng(self._my_rng(saved["rng"]))
        if saved["data"] is not None:
            p.train.load_state_dict(saved["data"])
        run = RunState(**saved["run"])
        run.carried = unpack_state(saved["carried"], self.device)
        run.epoch_rng, run.best_weights = saved["epoch_rng"], saved["best_weights"]
        log.info("resumed from step %d (epoch %d)", run.step, run.epoch)
        return run


# ----- helpers ---------------------------------------------------------------------------------------------

class _StopOnSignal:
    """SIGINT (Ctrl-C) or SIGTERM during ``fit``: finish the current step, then stop as when the budget runs out:
    the resume checkpoint is written and the caller saves its bundle. A second signal interrupts at once.
    Handlers are installed only in the main thread (Python delivers signals there)."""

    def __init__(self) -> None:
        self.received: Optional[str] = None
        self._previous: dict = {}

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:  # the second one: the user means it
            self.__exit__()
            raise KeyboardInterrupt(name)
        self.received = name
        log.warning("%s: finishing this step, then writing the checkpoint and the bundle (%s again to stop at "
                    "once)", name, name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _set_epoch(train, epoch: int) -> None:
    """Tell a sharded batch sampler, or Fabric's DistributedSampler, which epoch to draw (a resumed run's too)."""
    sampler = getattr(train, "batch_sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if hasattr(train, "_num_iter_calls"):  # Fabric's loader calls the DistributedSampler's set_epoch with this
        train._num_iter_calls = epoch


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
    params = list(params)
    if c.optimizer == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    cls = torch.optim.Adam if c.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=c.lr, weight_decay=c.weight_decay, fused=_can_fuse(params) or None)


def _can_fuse(params: list) -> bool:
    """Whether torch's fused Adam/AdamW kernel takes these parameters: floating, all on the CPU or all on CUDA.
    One kernel per parameter instead of a dozen ops per parameter group: the char-LM preset's step 0.53 ms
    instead of 1.25 ms (one thread, benchmarks/bf16_split.py, issue 12); the same update up to rounding."""
    devices = {p.device.type for p in params}
    return len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)


def _build_plateau(c: TrainerConfig, optimizer):
    if c.schedule != "plateau":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=c.plateau_factor,
                                                      patience=c.plateau_patience)


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
    """Detached, and float32 again where autocast made it bfloat16 or float16 (the next chunk checks its dtype).
    float16 too: on CUDA, torch's autocast runs cuDNN's RNN kernels in float16 even under a bfloat16 autocast."""
    if state is None:
        return None
    return map_state(lambda t: t.detach().float() if t.dtype in _AUTOCAST_DTYPES else t.detach(), state)


_AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)


BATCH_KEYS = ("x", "y", "lengths")


def as_batch(batch) -> dict:
    """A batch dict; an ``(x, y)`` or ``(x, y, lengths)`` tuple or list (what a plain DataLoader over a
    TensorDataset yields) becomes ``{"x": x, "y": y[, "lengths": lengths]}``."""
    if isinstance(batch, dict):
        return batch
    if isinstance(batch, (tuple, list)) and 2 <= len(batch) <= 3:
        return dict(zip(BATCH_KEYS, batch))
    raise TypeError(f"a batch must be a dict of tensors or an (x, y[, lengths]) tuple, got {type(batch).__name__}"
                    + (f" of {len(batch)} items" if isinstance(batch, (tuple, list)) else ""))


HOST_KEYS = frozenset({"lengths", "y_lengths", "ends"})
"""Batch entries that stay on the CPU when training on a GPU: the models read them there (lengths for packing and
their checks, ``ends`` for a branch), so a copy to the GPU and back would make the CPU wait for the GPU's queued
work at every step; where a model needs one on the GPU, it copies it without waiting (``nn.masking.to_device``)."""


def _to_device(batch, device: torch.device) -> dict:
    """The batch's tensors on ``device``. To a GPU through pinned memory, so the copies do not wait for the GPU to
    finish its queued work (a copy from pageable memory does: measured on an H100, the char-LM preset at H = 1024
    ran at 0.63x the tokens/s of a plain PyTorch loop with the data already on the GPU); HOST_KEYS stay on the CPU,
    pinned."""
    batch = as_batch(batch)
    if device.type != "cuda":
        return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
    out = {}
    for k, v in batch.items():
        if isinstance(v, Tensor) and v.device.type == "cpu":
            v = v if v.is_pinned() else v.pin_memory()
            out[k] = v if k in HOST_KEYS else v.to(device, non_blocking=True)
        else:
            out[k] = v.to(device) if isinstance(v, Tensor) and k not in HOST_KEYS else v
    return out


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 in hardware (the avx512_bf16 or amx_bf16 flag; Linux's /proc/cpuinfo).
    Elsewhere, or when the file cannot be read, False: float32 is the safe choice."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[-1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device, model: Optional[nn.Module] = None) -> str:
    """``precision`` with ``"auto"`` decided for ``device`` (and ``model``, on a GPU): "bf16" or "float32".

    On a GPU with bf16, float32 for a model with recurrent layers: cuDNN's float32 RNN kernels already run on
    TF32 tensor cores, and under autocast torch runs them in float16 with casts around them. Measured on an H100
    (character LSTM LMs, B·k tokens per step, 3 interleaved rounds of 100 steps, ``benchmarks/bf16_textgen.py
    --device cuda`` and larger sizes): bf16 took 0.71-0.99x the tokens/s of float32 (rnnlab), 0.87-0.93x in a
    plain PyTorch loop, at H = 256, 512 and 1024. Other models (Transformers, CNNs) get bf16 there."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported() or (model is not None and has_recurrent_layers(model)):
            return "float32"
        return "bf16"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "float32"
    return "float32"


def has_recurrent_layers(model: nn.Module) -> bool:
    """Whether ``model`` holds a recurrent layer: torch.nn's or rnnlab's (cuDNN runs the plain ones on a GPU;
    minGRU/minLSTM count too, their bf16 speed on a GPU unmeasured)."""
    from rnnlab.nn.recurrent import Recurrent

    return any(isinstance(m, (Recurrent, nn.RNNBase)) for m in model.modules())


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


def _mean(xs: list) -> Optional[float]:
    return sum(xs) / len(xs) if xs else None

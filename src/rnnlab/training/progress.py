"""What a training run reports: log.csv (every step), ``logging`` lines and TensorBoard (every log_every
steps), a rich progress bar, and curves.png (loss, the task's metric, the learning rate) at the end.

The trainer calls :class:`RunLogger` once per optimizer step and once per evaluation; the logger keeps the
throughput clock and the last row of log.csv, so that a validation loss joins the row of its step.

One console: the bar and the log lines share :func:`rnnlab.console.console` (rich, on stderr). The CLI logs
through :func:`rnnlab.console.log_handler` (a RichHandler on that console on a terminal); while a bar runs,
any other handler of the root or the ``rnnlab`` logger that writes to stderr or stdout is swapped for one on
that console, so every line prints above the bar instead of through it. Where the bar shows: a terminal
(stderr is a TTY) or a Jupyter notebook (rich renders there; it needs ``ipywidgets``). Elsewhere (a pipe, a
file, a batch job) there is no bar: the ``logging`` line every ``log_every`` steps is the progress report.
"""
from __future__ import annotations

import csv
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from rnnlab.console import console, in_notebook, log_handler

from .config import TrainerConfig

log = logging.getLogger(__name__)

CSV_COLUMNS = ["step", "epoch", "loss", "grad_norm", "lr", "tokens_per_s", "valid_loss"]

@dataclass(frozen=True)
class ValidMetric:
    """A figure the task reports at each evaluation besides the loss (accuracy, perplexity, BLEU, ...): it gets
    its own column ``name`` in log.csv, a logging line and a panel of curves.png. The trainer calls ``compute``
    with the validation loss just measured, the model in eval mode and no gradients recorded."""

    name: str
    """The column and label, with its unit or split, e.g. ``valid_accuracy``, ``valid_ppl_per_token``."""
    compute: Callable[[float], float]
    """valid_loss -> the figure (it may ignore the loss and score the model on its own data)."""


class _SharedConsole:
    """While a bar runs: handlers of the root and ``rnnlab`` loggers that write to stderr/stdout are replaced by
    one handler on the bar's console (with their level and formatter), and put back at the end."""

    def __init__(self) -> None:
        self.swapped: list[tuple[logging.Logger, logging.Handler, logging.Handler]] = []

    def __enter__(self) -> _SharedConsole:
        from rich.logging import RichHandler

        streams = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
        for logger in (logging.getLogger(), logging.getLogger("rnnlab")):
            for old in list(logger.handlers):
                if isinstance(old, RichHandler) or getattr(old, "stream", None) not in streams:
                    continue
                new = log_handler(force_rich=True)
                new.setLevel(old.level)
                if old.formatter is not None:
                    new.setFormatter(old.formatter)
                logger.removeHandler(old)
                logger.addHandler(new)
                self.swapped.append((logger, old, new))
        return self

    def __exit__(self, *exc) -> None:
        for logger, old, new in self.swapped:
            logger.removeHandler(new)
            logger.addHandler(old)
        self.swapped = []


class RunLogger:
    """log.csv (every step), ``logging`` lines and TensorBoard (every log_every steps), the progress bar, curves.png.

    ``active=False`` (every data-parallel process but the first) logs nothing and writes no files.
    """

    def __init__(
        self, c: TrainerConfig, *, total_steps: Optional[int], start_step: int, resumed: bool, active: bool,
        metric: Optional[str] = None,
    ) -> None:
        self.c, self.active, self.metric = c, active, metric
        self.columns = CSV_COLUMNS + ([metric] if metric else [])
        self.shared: Optional[_SharedConsole] = None
        self.run_dir = Path(c.run_dir) if c.run_dir and active else None
        self.pending: Optional[dict] = None
        self.last_time, self.throughputs = time.perf_counter(), []
        self.csv_file = self.writer = self.tb = self.progress = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._open_csv(keep_until=start_step if resumed else None)
            if c.tensorboard:
                self.tb = tensorboard_writer(self.run_dir / "tensorboard")
        if active and c.progress and (sys.stderr.isatty() or in_notebook()):
            self._start_bar(total_steps, start_step)

    def _start_bar(self, total_steps: Optional[int], start_step: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:.0f} tok/s"),
                                 TimeRemainingColumn(), console=console(), transient=False)
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step, loss=float("nan"),
                                           tps=0.0)
        self.shared = _SharedConsole().__enter__()
        self.progress.start()

    def _open_csv(self, keep_until: Optional[int]) -> None:
        path = self.run_dir / "log.csv"
        rows = []
        if keep_until is not None and path.exists():  # drop what the interrupted run logged after its checkpoint
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        self.csv_file = open(path, "w", newline="")  # open for the whole run: close() closes it
        self.writer = csv.DictWriter(self.csv_file, fieldnames=self.columns, restval="", extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(rows)

    def step(self, step: int, epoch: int, loss: float, grad_norm: float, lr: float, tokens: int) -> None:
        """One optimizer step: ``tokens`` every process together trained on since the previous call."""
        now = time.perf_counter()
        tps = tokens / max(now - self.last_time, 1e-9)
        self.last_time = now
        self.throughputs.append(tps)
        self._flush_pending()
        self.pending = {"step": step, "epoch": epoch, "loss": loss, "grad_norm": grad_norm, "lr": lr,
                        "tokens_per_s": tps, "valid_loss": ""}
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=loss, tps=tps)
        if step % self.c.log_every == 0 and self.active:
            log.info("step %d epoch %d loss %.4f grad_norm %.3f lr %.3g %.0f tok/s",
                     step, epoch, loss, grad_norm, lr, tps)
            if self.tb is not None:
                for k in ("loss", "grad_norm", "lr", "tokens_per_s"):
                    self.tb.add_scalar(f"train/{k}", self.pending[k], step)
            if self.csv_file is not None:
                self.csv_file.flush()

    def valid(self, step: int, epoch: int, loss: float, metric: Optional[float] = None) -> None:
        """An evaluation after ``step``: its loss (and the task's metric) join that step's row of log.csv."""
        if not self.active:
            return
        shown = f" {self.metric} {metric:.4f}" if self.metric and metric is not None else ""
        log.info("step %d valid_loss %.4f%s", step, loss, shown)
        if self.pending is None or self.pending["step"] != step:
            self._flush_pending()
            self.pending = {k: "" for k in self.columns} | {"step": step, "epoch": epoch}
        self.pending["valid_loss"] = loss
        if self.metric and metric is not None:
            self.pending[self.metric] = metric
        if self.tb is not None:
            self.tb.add_scalar("valid/loss", loss, step)
            if self.metric and metric is not None:
                self.tb.add_scalar(f"valid/{self.metric}", metric, step)
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
        """The median tokens per second over the steps (the first one left out: it pays for warm-up)."""
        ts = sorted(self.throughputs[1:] or self.throughputs)
        return ts[len(ts) // 2] if ts else None

    def close(self) -> None:
        self._flush_pending()
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.shared is not None:
            self.shared.__exit__()
            self.shared = None
        if self.tb is not None:
            self.tb.close()
        if self.csv_file is not None:
            self.csv_file.close()
            if self.c.curves:
                plot_curves(self.run_dir / "log.csv", self.run_dir / "curves.png", metric=self.metric)


def tensorboard_writer(folder: Path):
    """A TensorBoard ``SummaryWriter`` on ``folder``, or an ImportError that says how to get one."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(
            "tensorboard=True needs the tensorboard package: pip install tensorboard, or set tensorboard=False"
        ) from None
    return SummaryWriter(str(folder))


def plot_curves(csv_path: Path, png_path: Path, *, metric: Optional[str] = None) -> Any:
    """curves.png from log.csv: training and validation loss against step with the learning rate on a second
    axis (top panel), and the task's metric (the column ``metric``) when it was logged (bottom panel).
    Returns the matplotlib Figure (None without matplotlib, which is optional: then there is no plot)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed: no %s", png_path)
        return None
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))

    def series(column: str) -> list[tuple[int, float]]:
        return [(int(r["step"]), float(r[column])) for r in rows if r.get(column)]

    train, valid, lr = series("loss"), series("valid_loss"), series("lr")
    scores = series(metric) if metric else []
    fig = Figure(figsize=(7, 6.5 if scores else 4))
    FigureCanvasAgg(fig)  # the Agg canvas, without touching matplotlib's global backend
    ax = fig.add_subplot(2, 1, 1) if scores else fig.add_subplot()
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=0.8)
    if valid:
        ax.plot(*zip(*valid, strict=True), "o-", label="valid loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    lines = ax.get_lines()
    if lr:
        ax_lr = ax.twinx()
        ax_lr.plot(*zip(*lr, strict=True), color="tab:gray", linestyle="--", linewidth=0.8, label="learning rate")
        ax_lr.set_ylabel("learning rate")
        lines = lines + ax_lr.get_lines()
    if lines:
        ax.legend(lines, [line.get_label() for line in lines], loc="upper right")
    if scores:
        ax_metric = fig.add_subplot(2, 1, 2, sharex=ax)
        ax_metric.plot(*zip(*scores, strict=True), "o-", color="tab:green", label=metric)
        ax_metric.set_xlabel("step")
        ax_metric.set_ylabel(metric)
        ax_metric.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    return fig

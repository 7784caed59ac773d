"""What a training run reports: log.csv (every step), ``logging`` lines and TensorBoard (every log_every
steps), a rich progress bar (on a terminal), and curves.png (training and validation loss) at the end.

The trainer calls :class:`RunLogger` once per optimizer step and once per evaluation; the logger keeps the
throughput clock and the last row of log.csv, so that a validation loss joins the row of its step.
"""
from __future__ import annotations

import csv
import logging
import sys
import time
from pathlib import Path
from typing import Optional

from .config import TrainerConfig

log = logging.getLogger(__name__)

CSV_COLUMNS = ["step", "epoch", "loss", "grad_norm", "lr", "tokens_per_s", "valid_loss"]


class RunLogger:
    """log.csv (every step), ``logging`` lines and TensorBoard (every log_every steps), the progress bar, curves.png.

    ``active=False`` (every data-parallel process but the first) logs nothing and writes no files.
    """

    def __init__(
        self, c: TrainerConfig, *, total_steps: Optional[int], start_step: int, resumed: bool, active: bool
    ) -> None:
        self.c, self.active = c, active
        self.run_dir = Path(c.run_dir) if c.run_dir and active else None
        self.pending: Optional[dict] = None
        self.last_time, self.throughputs = time.perf_counter(), []
        self.csv_file = self.writer = self.tb = self.progress = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._open_csv(keep_until=start_step if resumed else None)
            if c.tensorboard:
                self.tb = tensorboard_writer(self.run_dir / "tensorboard")
        if active and c.progress and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:.0f} tok/s"),
                                     TimeRemainingColumn(), transient=False)
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, loss=float("nan"),
                                               tps=0.0)
            self.progress.start()

    def _open_csv(self, keep_until: Optional[int]) -> None:
        path = self.run_dir / "log.csv"
        rows = []
        if keep_until is not None and path.exists():  # drop what the interrupted run logged after its checkpoint
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        self.csv_file = open(path, "w", newline="")  # open for the whole run: close() closes it
        self.writer = csv.DictWriter(self.csv_file, fieldnames=CSV_COLUMNS)
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

    def valid(self, step: int, epoch: int, loss: float) -> None:
        """An evaluation after ``step``: its loss joins that step's row of log.csv."""
        if not self.active:
            return
        log.info("step %d valid_loss %.4f", step, loss)
        if self.pending is None or self.pending["step"] != step:
            self._flush_pending()
            self.pending = {k: "" for k in CSV_COLUMNS} | {"step": step, "epoch": epoch}
        self.pending["valid_loss"] = loss
        if self.tb is not None:
            self.tb.add_scalar("valid/loss", loss, step)
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
        if self.tb is not None:
            self.tb.close()
        if self.csv_file is not None:
            self.csv_file.close()
            if self.c.curves:
                plot_curves(self.run_dir / "log.csv", self.run_dir / "curves.png")


def tensorboard_writer(folder: Path):
    """A TensorBoard ``SummaryWriter`` on ``folder``, or an ImportError that says how to get one."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(
            "tensorboard=True needs the tensorboard package: pip install tensorboard, or set tensorboard=False"
        ) from None
    return SummaryWriter(str(folder))


def plot_curves(csv_path: Path, png_path: Path) -> None:
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
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=0.8)
    if valid:
        ax.plot(*zip(*valid, strict=True), "o-", label="valid loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)

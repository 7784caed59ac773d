"""What a run reports: log.csv (a row per step, validation joining its step's row) and curves.png."""
import csv
import logging
import sys

from _trainer_helpers import fast_config as _fast
from _trainer_helpers import lm_batches as _lm_batches
from _trainer_helpers import tiny_lm as _lm

from rnnlab.training import Trainer
from rnnlab.training.progress import CSV_COLUMNS, RunLogger, plot_curves


def test_csv_and_curves_are_written(tmp_path):
    data = _lm_batches(4)
    Trainer(_fast(run_dir=str(tmp_path), max_epochs=2)).fit(_lm(), data, data[:2])
    with open(tmp_path / "log.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["step", "epoch", "loss", "grad_norm", "lr", "tokens_per_s", "valid_loss"]
    assert len(rows) == 8 and [r["step"] for r in rows if r["valid_loss"]] == ["4", "8"]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_validation_joins_its_step_s_row_and_resume_drops_later_rows(tmp_path, caplog):
    config = _fast(run_dir=str(tmp_path), curves=False, log_every=2)
    logger = RunLogger(config, total_steps=3, start_step=0, resumed=False, active=True)
    with caplog.at_level(logging.INFO, logger="rnnlab.training.progress"):
        for step in (1, 2, 3):
            logger.step(step, 0, 1.0 / step, 0.5, 1e-3, tokens=10)
            if step == 2:
                logger.valid(2, 0, 0.7)
        logger.valid(3, 0, 0.6)
        logger.close()
    assert "step 2 epoch 0 loss 0.5000" in caplog.text and "step 3 valid_loss 0.6000" in caplog.text
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [(r["step"], r["valid_loss"]) for r in rows] == [("1", ""), ("2", "0.7"), ("3", "0.6")]
    resumed = RunLogger(config, total_steps=3, start_step=1, resumed=True, active=True)
    resumed.close()
    assert [r["step"] for r in csv.DictReader(open(tmp_path / "log.csv"))] == ["1"]


def test_an_inactive_logger_writes_nothing(tmp_path):
    logger = RunLogger(_fast(run_dir=str(tmp_path)), total_steps=None, start_step=0, resumed=False, active=False)
    logger.step(1, 0, 1.0, 0.5, 1e-3, tokens=10)
    logger.valid(1, 0, 0.9)
    logger.close()
    assert list(tmp_path.iterdir()) == []


def test_plot_curves_writes_a_png(tmp_path):
    with open(tmp_path / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for step in range(1, 5):
            writer.writerow({k: "" for k in CSV_COLUMNS} | {"step": step, "loss": 1.0 / step,
                                                             "valid_loss": 0.8 if step == 4 else ""})
    plot_curves(tmp_path / "log.csv", tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_curves_show_loss_the_task_metric_and_the_learning_rate(tmp_path):
    import math

    from rnnlab.training import ValidMetric

    data = _lm_batches(4)
    metric = ValidMetric("valid_ppl_per_token", math.exp)
    Trainer(_fast(run_dir=str(tmp_path), max_epochs=2, warmup_steps=3, curves=True), metric=metric).fit(
        _lm(), data, data[:2])
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert list(rows[0]) == CSV_COLUMNS + ["valid_ppl_per_token"]
    scored = [r for r in rows if r["valid_loss"]]
    assert [float(r["valid_ppl_per_token"]) for r in scored] == [math.exp(float(r["valid_loss"])) for r in scored]
    fig = plot_curves(tmp_path / "log.csv", tmp_path / "again.png", metric="valid_ppl_per_token")
    loss_ax, lr_ax, metric_ax = fig.axes  # the loss panel, its learning-rate twin, the metric panel
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    assert set(lines) == {"train loss", "valid loss", "learning rate", "valid_ppl_per_token"}
    assert list(lines["train loss"].get_ydata()) == [float(r["loss"]) for r in rows]
    assert list(lines["learning rate"].get_ydata()) == [float(r["lr"]) for r in rows]
    assert lines["learning rate"] in lr_ax.get_lines() and lr_ax.get_ylabel() == "learning rate"
    assert list(lines["valid_ppl_per_token"].get_ydata()) == [float(r["valid_ppl_per_token"]) for r in scored]
    assert lines["valid_ppl_per_token"] in metric_ax.get_lines() and lines["valid loss"] in loss_ax.get_lines()
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_the_bar_and_the_log_lines_share_one_console_on_stderr(tmp_path, monkeypatch):
    import io

    from rich.logging import RichHandler

    from rnnlab import console as shared
    from rnnlab.training import progress

    monkeypatch.setattr(progress, "in_notebook", lambda: True)  # a notebook: a bar although stderr is no TTY
    root = logging.getLogger()
    plain = logging.StreamHandler(sys.stderr)
    root.addHandler(plain)
    record = io.StringIO()
    monkeypatch.setattr(shared.console(), "file", record)
    try:
        logger = RunLogger(_fast(run_dir=str(tmp_path), curves=False, progress=True), total_steps=2, start_step=0,
                           resumed=False, active=True)
        assert logger.progress is not None and logger.progress.console is shared.console()
        assert plain not in root.handlers  # swapped, while the bar runs, for a handler on the bar's console
        swapped = [h for h in root.handlers if isinstance(h, RichHandler)]
        assert swapped and swapped[0].console is shared.console() and shared.console().stderr
        logging.getLogger("rnnlab.test").warning("a line above the bar")
        logger.close()
    finally:
        root.removeHandler(plain)
    assert "a line above the bar" in record.getvalue()
    assert not any(isinstance(h, RichHandler) for h in root.handlers)  # put back as it was


def test_no_bar_without_a_terminal_or_notebook(tmp_path, monkeypatch):
    from rnnlab.training import progress

    monkeypatch.setattr(progress, "in_notebook", lambda: False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    logger = RunLogger(_fast(run_dir=str(tmp_path), curves=False, progress=True), total_steps=2, start_step=0,
                       resumed=False, active=True)
    assert logger.progress is None  # the log line every log_every steps is the progress report
    logger.close()

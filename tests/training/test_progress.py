"""What a run reports: log.csv (a row per step, validation joining its step's row) and curves.png."""
import csv
import logging

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

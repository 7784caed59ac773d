"""Sequence-classification quality on Fashion-MNIST read row by row (run by hand): each 28×28 image is a
sequence of 28 steps of 28 features (the pixels of one row); a GRU reads it and its last state is classified.

    rnnlab datasets prepare images           # once: ~/.cache/rnnlab-data/images/fashion-mnist/
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/quality_seqclass.py [--max_time 1800] [--threads 2]

The recipe is configs/seqclass-fashion-mnist.yaml: the task's defaults (GRU 128, last-state pooling, dropout
0.1, per-feature normalisation fitted on the training images, AdamW 2e-3, clip 1.0) with batch 128, 5,000 of
the 60,000 training images held out for validation (seeded), early stopping on the validation loss (patience
3, best weights kept) and a bound on the training time. The 10,000 test images are scored once at the end.
Goal: test accuracy >= 0.88 (the published GRU figure for row-by-row Fashion-MNIST is 0.888). Writes
benchmarks/results/quality_seqclass.json and prints test accuracy, macro-F1, epochs and wall time.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, print_table, setup_threads, write_json  # noqa: E402
from rnnlab.structures import EncoderConfig  # noqa: E402
from rnnlab.tasks import seqclass  # noqa: E402
from rnnlab.tasks._sequence_classifier import SequenceModelConfig  # noqa: E402
from rnnlab.tasks.seqclass import SeqclassConfig  # noqa: E402
from rnnlab.training import TrainerConfig  # noqa: E402

DATA = "~/.cache/rnnlab-data/images/fashion-mnist/{}-images-idx3-ubyte.gz"


def config_for(max_time: float, max_epochs: int, run_dir: str, encoder: str) -> SeqclassConfig:
    return SeqclassConfig(
        data=DATA.format("train"), test_data=DATA.format("t10k"), valid_fraction=5000 / 60000, batch_size=128,
        model=SequenceModelConfig(encoder=EncoderConfig(kind=encoder, hidden_size=128), pooling="last", dropout=0.1),
        trainer=TrainerConfig(optimizer="adamw", lr=2e-3, weight_decay=0.01, clip_norm=1.0, max_epochs=max_epochs,
                              max_time=max_time, eval_every=0, early_stopping_patience=3, log_every=100,
                              progress=False, curves=True, device="cpu", run_dir=run_dir),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_time", type=float, default=1800.0, help="training seconds (the bound)")
    parser.add_argument("--max_epochs", type=int, default=30)
    parser.add_argument("--encoder", default="gru", help="encoder kind (gru, lstm, ...)")
    parser.add_argument("--run_dir", default="runs/quality_seqclass")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine shared with other "
                        "jobs: OpenMP threads waiting for a busy core slow small ops many-fold)")
    args = parser.parse_args()
    setup_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = config_for(args.max_time, args.max_epochs, args.run_dir, args.encoder)
    t0 = time.perf_counter()
    bundle = seqclass.train(config)
    wall = time.perf_counter() - t0
    metrics = json.loads((bundle / "metrics.json").read_text())
    row = {"data": "fashion-mnist rows (28 x 28)", "model": f"{args.encoder} 128", "test_accuracy":
           metrics["test_accuracy"], "test_macro_f1": metrics["test_macro_f1"],
           "valid_accuracy": metrics["valid_accuracy"], "epochs": metrics["epoch"], "steps": metrics["step"],
           "train_s": metrics["elapsed_s"], "wall_s": wall, "goal": 0.88, "published_gru": 0.888,
           "max_time": args.max_time, "threads": args.threads, "bundle": str(bundle)}
    write_json("quality_seqclass.json", {"results": [row], "environment": environment()})
    print_table([row], ["data", "model", "test_accuracy", "test_macro_f1", "valid_accuracy", "epochs", "wall_s"])


if __name__ == "__main__":
    main()

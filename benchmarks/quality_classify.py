"""Text classification quality on the prepared tweets (run by hand): a BiLSTM, a CNN and a Transformer of
similar size, each trained for a bounded time on 2 threads, scored on the test split.

    rnnlab datasets prepare sentiment        # once: ~/.cache/rnnlab-data/sentiment/
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/quality_classify.py [--max_time 200] [--models bilstm,cnn]
        [--threads 2]

Every model: word tokens (lower-cased, words seen twice or more, at most 64 tokens per tweet), 100-wide
embeddings trained from scratch, max pooling, dropout 0.3, AdamW 3e-3, batch 32, validation every 200 steps
with early stopping (patience 3, the best weights kept). Writes benchmarks/results/quality_classify.json and
prints test accuracy, macro-F1, parameters and wall time (data reading, training and scoring) per model.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, setup_threads, write_json  # noqa: E402
from rnnlab.structures import EncoderConfig  # noqa: E402
from rnnlab.tasks import classify  # noqa: E402
from rnnlab.tasks.classify import ClassifierModelConfig, ClassifyConfig  # noqa: E402
from rnnlab.training import TrainerConfig  # noqa: E402

DATA = "~/.cache/rnnlab-data/sentiment/tweets.{}.csv"

ENCODERS = {
    "bilstm": EncoderConfig(kind="lstm", hidden_size=96, bidirectional=True),
    "cnn": EncoderConfig(kind="cnn", hidden_size=192, num_layers=2, kernel_size=3),
    "transformer": EncoderConfig(kind="transformer", hidden_size=96, num_layers=2, num_heads=4, dropout=0.1),
}


def config_for(name: str, max_time: float, run_root: str) -> ClassifyConfig:
    return ClassifyConfig(
        data=DATA.format("train"), valid_data=DATA.format("valid"), test_data=DATA.format("test"),
        tokenizer="word", lowercase=True, vocab_size=20000, min_count=2, max_length=64, batch_size=32,
        model=ClassifierModelConfig(embedding_size=100, encoder=ENCODERS[name], pooling="max", dropout=0.3),
        trainer=TrainerConfig(optimizer="adamw", lr=3e-3, weight_decay=0.01, clip_norm=1.0, max_epochs=10,
                              max_time=max_time, eval_every=200, early_stopping_patience=3, log_every=100,
                              progress=False, curves=False, device="cpu", run_dir=f"{run_root}/{name}"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_time", type=float, default=200.0, help="training seconds per model")
    parser.add_argument("--models", default=",".join(ENCODERS), help="comma-separated: " + ", ".join(ENCODERS))
    parser.add_argument("--run_root", default="runs/quality_classify")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine shared with other jobs: "
                        "OpenMP threads waiting for a busy core slow small ops many-fold)")
    args = parser.parse_args()
    setup_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for name in args.models.split(","):
        config = config_for(name, args.max_time, args.run_root)
        t0 = time.perf_counter()
        bundle = classify.train(config)
        wall = time.perf_counter() - t0
        metrics = json.loads((bundle / "metrics.json").read_text())
        model, _, _, _ = classify.load_classifier(bundle)
        rows.append({
            "model": name, "test_accuracy": metrics["test_accuracy"], "test_macro_f1": metrics["test_macro_f1"],
            "valid_accuracy": metrics["valid_accuracy"],
            "encoder_params": sum(p.numel() for p in model.encoder.parameters()),
            "params": sum(p.numel() for p in model.parameters()), "steps": metrics["step"], "epochs": metrics["epoch"],
            "train_s": metrics["elapsed_s"], "wall_s": wall, "bundle": str(bundle),
            "per_class_f1": {k: v["f1"] for k, v in metrics["test"]["per_class"].items()},
        })
        print_table(rows[-1:], ["model", "test_accuracy", "test_macro_f1", "steps", "wall_s"])
        # after every model, so that an interrupted run keeps what it measured
        path = write_json("quality_classify.json",
                          {"max_time": args.max_time, "threads": args.threads, "results": rows})
    print()
    print_table(rows, ["model", "test_accuracy", "test_macro_f1", "valid_accuracy", "encoder_params", "params", "steps",
                       "epochs", "train_s", "wall_s"])
    print(f"\n{path}")


if __name__ == "__main__":
    main()

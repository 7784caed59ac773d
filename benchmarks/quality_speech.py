"""Spoken-digit quality on the prepared espeak-ng digits (run by hand): accuracy on the 8 test voices, never
heard in training (train/valid/test hold disjoint voices: 38 / 6 / 8), with the wall time.

    rnnlab datasets prepare speech        # once: ~/.cache/rnnlab-data/speech/digits/
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/quality_speech.py [--max_time 150] [--models bigru,bilstm]
        [--threads 2]

Every model: the preset configs/speech-digits.yaml (40 log-mels every 10 ms, two frames stacked, per-utterance
normalisation, SpecAugment with two frequency and two time masks; a 2-layer bidirectional encoder of 64 units,
mean pooling; AdamW 3e-3, batch 32, early stopping with patience 6), only the encoder kind differs. Writes
benchmarks/results/quality_speech.json and prints test accuracy, macro-F1 and wall time (reading and
featurising the WAVs, training, scoring) per model. The same run from the command line:

    rnnlab train speech --config configs/speech-digits.yaml
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, setup_threads, write_json  # noqa: E402
from rnnlab.tasks import speech  # noqa: E402
from rnnlab.training.checkpoint import from_dict  # noqa: E402

PRESET = Path(__file__).resolve().parent.parent / "configs" / "speech-digits.yaml"
KINDS = {"bigru": "gru", "bilstm": "lstm"}


def config_for(name: str, max_time: float, run_root: str) -> speech.SpeechConfig:
    data = yaml.safe_load(PRESET.read_text())
    data["model"]["encoder"]["kind"] = KINDS[name]
    data["trainer"].update(max_time=max_time, run_dir=f"{run_root}/{name}", progress=False, device="cpu")
    for key in ("data", "valid_data", "test_data"):
        data[key] = str(Path(data[key]).expanduser())
    return from_dict(speech.SpeechConfig, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_time", type=float, default=150.0, help="training seconds per model")
    parser.add_argument("--models", default="bigru", help="comma-separated: " + ", ".join(KINDS))
    parser.add_argument("--run_root", default="runs/quality_speech")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine shared with other jobs: "
                        "OpenMP threads waiting for a busy core slow small ops many-fold)")
    args = parser.parse_args()
    setup_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for name in args.models.split(","):
        config = config_for(name, args.max_time, args.run_root)
        t0 = time.perf_counter()
        bundle = speech.train(config)
        wall = time.perf_counter() - t0
        metrics = json.loads((bundle / "metrics.json").read_text())
        rows.append({
            "model": name, "test_accuracy": metrics["test_accuracy"], "test_macro_f1": metrics["test_macro_f1"],
            "valid_accuracy": metrics["valid_accuracy"], "test_clips": metrics["test"]["examples"],
            "steps": metrics["step"], "epochs": metrics["epoch"], "train_s": metrics["elapsed_s"], "wall_s": wall,
            "bundle": str(bundle),
        })
        print_table(rows[-1:], ["model", "test_accuracy", "test_macro_f1", "steps", "wall_s"])
        path = write_json("quality_speech.json", {"max_time": args.max_time, "threads": args.threads,
                                                  "command": " ".join(sys.argv), "results": rows})
    print()
    print_table(rows, ["model", "test_accuracy", "test_macro_f1", "valid_accuracy", "test_clips", "steps", "epochs",
                       "train_s", "wall_s"])
    print(f"\n{path}")


if __name__ == "__main__":
    main()

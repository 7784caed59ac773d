"""Action-recognition quality on the embedded moving-shapes clips (run by hand): the default recurrent model (a
CNN per frame, a GRU over the frames) against the frame-averaging baseline (the same CNN, the mean of the frame
features, a linear layer), each trained with the same recipe and time bound, scored on the 300 test clips.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/quality_action.py [--max_time 120] [--threads 2]

Six classes (left, right, up, down, rotate, grow) with random shapes, sizes, positions and orientations, so
that chance is 1/6 and a model that cannot see the order of the frames should stay near it. Writes
benchmarks/results/quality_action.json and prints test accuracy, macro-F1, epochs and wall time per model.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, print_table, setup_threads, write_json  # noqa: E402
from rnnlab.tasks import action  # noqa: E402
from rnnlab.tasks.action import ActionConfig  # noqa: E402


def config_for(temporal: str, max_time: float, run_root: str) -> ActionConfig:
    default = ActionConfig()
    return replace(default, model=replace(default.model, temporal=temporal),
                   trainer=replace(default.trainer, max_time=max_time, max_epochs=100, progress=False,
                                   device="cpu", run_dir=f"{run_root}/{temporal}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_time", type=float, default=120.0, help="training seconds per model")
    parser.add_argument("--run_root", default="runs/quality_action")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine shared with other "
                        "jobs)")
    args = parser.parse_args()
    setup_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for temporal, name in (("encoder", "cnn+gru"), ("average", "frame averaging")):
        t0 = time.perf_counter()
        bundle = action.train(config_for(temporal, args.max_time, args.run_root))
        wall = time.perf_counter() - t0
        metrics = json.loads((bundle / "metrics.json").read_text())
        rows.append({"model": name, "test_accuracy": metrics["test_accuracy"], "test_macro_f1":
                     metrics["test_macro_f1"], "valid_accuracy": metrics["valid_accuracy"], "epochs": metrics["epoch"],
                     "steps": metrics["step"], "train_s": metrics["elapsed_s"], "wall_s": wall,
                     "chance": 1 / 6, "bundle": str(bundle)})
        print_table(rows[-1:], ["model", "test_accuracy", "test_macro_f1", "epochs", "wall_s"])
        write_json("quality_action.json", {"max_time": args.max_time, "threads": args.threads, "results": rows,
                                           "environment": environment()})
    print()
    print_table(rows, ["model", "test_accuracy", "test_macro_f1", "valid_accuracy", "epochs", "train_s", "wall_s"])


if __name__ == "__main__":
    main()

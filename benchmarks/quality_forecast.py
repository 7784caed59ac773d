"""Forecast quality on statsmodels series (run by hand): an LSTM and a GRU with the forecast task's defaults
against naive, seasonal naive, ETS and ARIMA, by MASE on the last 10% of each series.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/quality_forecast.py [--datasets co2,sunspots,elnino,nile]
        [--max_time 120] [--threads 2] [--seed 0]

Every model: the task's defaults (:class:`rnnlab.tasks.forecast.ForecastConfig`): input_length 36, horizon 12,
direct mode, Gaussian head, first differences standardised on the training part, calendar features by the
frequency, a 64-wide one-layer encoder, AdamW 3e-3, early stopping on the validation part (the 10% before the
test part), one seed. Only --data.path changes between datasets: co2 and sunspots are the issue's goal; elnino
and nile check that the defaults were not tuned to them. The baselines run once per dataset (with the LSTM) on
the same test origins and metric code. Writes benchmarks/results/quality_forecast.json and prints a table of
MASE, MAE, interval coverage and wall time (data, training, scoring; the baselines' fit time apart).
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
from common import print_table, setup_threads, write_json  # noqa: E402
from rnnlab.tasks import forecast  # noqa: E402
from rnnlab.tasks.forecast import ForecastConfig, ForecastModelConfig, SeriesDataConfig  # noqa: E402


def config_for(dataset: str, kind: str, max_time: float, run_root: str, seed: int = 0) -> ForecastConfig:
    base = ForecastConfig()
    return replace(base, data=SeriesDataConfig(path=dataset),
                   baselines=base.baselines if kind == "lstm" else "",
                   model=ForecastModelConfig(encoder=replace(base.model.encoder, kind=kind)),
                   trainer=replace(base.trainer, max_time=max_time, seed=seed, progress=False, curves=False,
                                   device="cpu",
                                   run_dir=f"{run_root}/{dataset}-{kind}-seed{seed}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="co2,sunspots,elnino,nile")
    parser.add_argument("--models", default="lstm,gru")
    parser.add_argument("--max_time", type=float, default=120.0, help="training seconds per model (the default's)")
    parser.add_argument("--run_root", default="runs/quality_forecast")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine shared with other "
                        "jobs: OpenMP threads waiting for a busy core slow small ops many-fold)")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (results: quality_forecast_seedN.json "
                        "for N > 0)")
    args = parser.parse_args()
    setup_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for dataset in args.datasets.split(","):
        for kind in args.models.split(","):
            t0 = time.perf_counter()
            bundle = forecast.train(config_for(dataset, kind, args.max_time, args.run_root, args.seed))
            wall = time.perf_counter() - t0
            metrics = json.loads((bundle / "metrics.json").read_text())
            test = metrics["test"]
            for name, r in test.items():
                if not isinstance(r, dict):
                    continue
                model = kind if name == "model" else name
                baseline_s = r.get("seconds", 0.0)
                rows.append({"dataset": dataset, "model": model, "mase": r["mase"], "mae": r["mae"], "rmse": r["rmse"],
                             "coverage_80": r.get("coverage_80"), "coverage_95": r.get("coverage_95"),
                             "wall_s": round(wall - sum(v.get("seconds", 0.0) for v in test.values()
                                                        if isinstance(v, dict)), 1) if name == "model" else baseline_s,
                             "steps": metrics["step"] if name == "model" else None,
                             "about": r.get("model", ""), "origins": test["origins"],
                             "mase_scale": test["mase_scale"], "test_start": test["test_start"]})
            print_table([r for r in rows if r["dataset"] == dataset],
                        ["dataset", "model", "mase", "mae", "coverage_80", "coverage_95", "wall_s"])
            name = "quality_forecast.json" if not args.seed else f"quality_forecast_seed{args.seed}.json"
            path = write_json(name, {"max_time": args.max_time, "threads": args.threads, "seed": args.seed,
                                                         "defaults": "ForecastConfig()", "results": rows})
    print()
    print_table(rows, ["dataset", "model", "mase", "mae", "rmse", "coverage_80", "coverage_95", "wall_s", "about"])
    print(f"\n{path}")


if __name__ == "__main__":
    main()

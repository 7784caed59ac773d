"""The long-range experiment, by hand: the full grid (hours on 2 cores) or --quick (about 10 minutes).

    OMP_NUM_THREADS=2 python benchmarks/long_range.py --quick
    OMP_NUM_THREADS=2 python benchmarks/long_range.py            # the full grid: 3 problems x 5 lengths x 10 models

Writes benchmarks/results/long_range[_quick].json (results, the claims checked, the config) and .png, and prints
the table. The same code runs behind `rnnlab experiment long-range`.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from rnnlab.experiments.long_range import QUICK, LongRangeConfig, check_claims, run_grid, table, write_results

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the quick grid")
    ap.add_argument("--time_limit", type=float, default=None, help="seconds per run (overrides the grid's)")
    args = ap.parse_args()
    config = QUICK if args.quick else LongRangeConfig(time_limit=600.0)
    if args.time_limit is not None:
        config = dataclasses.replace(config, time_limit=args.time_limit)
    t0, c0 = time.perf_counter(), time.process_time()
    results = run_grid(config, on_result=lambda r: print(
        f"{r.problem:<15} T={r.length:<5} {r.model:<12} {r.metric} {r.score:.3f} "
        f"{'solved at ' + str(r.steps_to_solve) if r.solved else 'unsolved'} ({r.seconds:.1f} s)", flush=True))
    name = "long_range_quick" if args.quick else "long_range"
    out = RESULTS / name
    doc = write_results(results, config, out)
    doc["wall_seconds"] = time.perf_counter() - t0
    doc["cpu_seconds"] = time.process_time() - c0  # with one thread, the wall time of a quiet machine
    (RESULTS / f"{name}.json").write_text(__import__("json").dumps(doc, indent=1), encoding="utf-8")
    print("\n" + table(results))
    for c in check_claims(results):
        print(f"- {c.claim}: {dict([(True, 'holds'), (False, 'does NOT hold'), (None, 'not tested')])[c.holds]}")
    print(f"\n{len(results)} runs in {doc['wall_seconds']:.0f} s ({doc['cpu_seconds']:.0f} s of CPU) on "
          f"{torch.get_num_threads()} threads; "
          f"{RESULTS / (name + '.json')}, {out / 'long_range.png'}")


if __name__ == "__main__":
    main()

"""Timing helpers shared by the benchmarks: interleaved runs, medians, a JSON file and a printed table.

The machine is shared and noisy, so no absolute time is trusted on its own: contenders run in the
same process, one run of each per round (order alternating between rounds), many rounds, and what
we report is the median of each and the median of the per-round ratios.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

# where every benchmark writes its JSON; RNNLAB_BENCH_RESULTS moves it (parallel jobs each get their own)
RESULTS = Path(os.environ.get("RNNLAB_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def setup_threads(n: int = 2) -> None:
    """One OpenMP thread per core: oversubscription makes timings meaningless."""
    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
"""The clocks of ``--clock``: wall time, or this thread's CPU time, which leaves out the time other processes held
the core (one-thread runs on a loaded machine)."""


def interleaved(fns: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 2,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds per call of each function, over ``rounds`` rounds that run every function once. ``clock``:
    wall time by default; ``time.thread_time`` counts only this thread's CPU time, which leaves out the time
    other processes held the core (one-thread runs on a loaded machine)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            t0 = clock()
            fns[name]()
            times[name].append(clock() - t0)
    return times


def ratio(times: dict[str, list[float]], name: str, baseline: str) -> float:
    """Median over rounds of time(name) / time(baseline) in the same round."""
    return statistics.median(a / b for a, b in zip(times[name], times[baseline], strict=True))


def median_ms(ts: list[float]) -> float:
    return 1e3 * statistics.median(ts)


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cores": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"environment": environment(), **payload}, indent=2))
    tmp.replace(path)
    return path


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain fixed-width table (benchmarks are scripts: printing is their job)."""
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)

"""Quality of the three text tasks on the prepared real datasets, run by hand: one table, one JSON.

Runs benchmarks/quality_classify.py (tweets: BiLSTM, CNN, Transformer), quality_tag.py (OANC POS: with and
without char features and CRF) and quality_translate.py (German->English words: attention, none, Transformer),
one job per model or variant, each in a bounded training time on 2 threads. Jobs run one after the other, or
``--parallel N`` at a time, each pinned to its own 2 cores (``taskset``), for a machine with 2N free cores.

    rnnlab datasets prepare sentiment pos translate     # once
    python benchmarks/quality_text.py                                  # sequential, ~45 min on 2 cores
    python benchmarks/quality_text.py --parallel 4 --only tag          # 4 tag variants side by side

Writes benchmarks/results/quality_text.json and prints the combined table; each job's own JSON and log are
kept under benchmarks/results/quality_text/.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, print_table  # noqa: E402

HERE = Path(__file__).resolve().parent
# (task, script, option naming one job, the jobs, the JSON file the script writes)
SUITES = {
    "classify": ("quality_classify.py", "--models", ["bilstm", "cnn", "transformer"], "quality_classify.json"),
    "tag": ("quality_tag.py", "--variants", ["cnn+crf", "cnn", "words+crf", "words"], "quality_tag.json"),
    "translate": ("quality_translate.py", "--variants", ["rnn-attention", "rnn", "transformer"],
                  "quality_translate.json"),
}
METRICS = {"classify": ("test_accuracy", "test_macro_f1"), "tag": ("test_accuracy", "valid_accuracy"),
           "translate": ("test_exact_match", "test_chrf")}


def jobs(only: list[str], picked: list[str]) -> list[tuple[str, str]]:
    every = [(task, job) for task in only for job in SUITES[task][2]]
    return [(t, j) for t, j in every if not picked or f"{t}:{j}" in picked]


def launch(task: str, job: str, slot: int, parallel: int, out_root: Path) -> tuple[subprocess.Popen, Path]:
    script, option, _, _ = SUITES[task]
    folder = out_root / f"{task}-{job.replace('+', '_')}"
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RNNLAB_BENCH_RESULTS": str(folder), "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(HERE / script), option, job, "--threads", "2"]
    if task != "translate":  # translate trains in a temporary folder
        cmd += ["--run_root", str(folder / "runs")]
    if task == "tag":
        cmd += ["--out", str(folder / SUITES[task][3])]
    if parallel > 1:
        cmd = ["taskset", "-c", f"{2 * slot},{2 * slot + 1}", *cmd]
    log = open(folder / "log.txt", "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), folder


def collect(task: str, folder: Path) -> list[dict]:
    file = folder / SUITES[task][3]
    if not file.exists():
        return [{"task": task, "job": folder.name, "error": f"no result; see {folder / 'log.txt'}"}]
    rows = json.loads(file.read_text())["results"]
    key = "model" if task == "classify" else "variant"
    return [{"task": task, "job": r[key], **{m: r.get(m) for m in METRICS[task]}, "steps": r.get("steps"),
             "wall_s": r.get("wall_s")} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--jobs", nargs="+", default=[], help="only these jobs, as task:job (e.g. translate:rnn)")
    parser.add_argument("--parallel", type=int, default=1, help="jobs at once, each on its own 2 cores")
    args = parser.parse_args()
    out_root = RESULTS / "quality_text"
    pending, running, rows = jobs(args.only, args.jobs), [], []
    t0 = time.perf_counter()
    free = list(range(args.parallel))
    while pending or running:
        while pending and free:
            task, job = pending.pop(0)
            slot = free.pop(0)
            proc, folder = launch(task, job, slot, args.parallel, out_root)
            running.append((proc, slot, task, folder))
            print(f"started {task} {job} on slot {slot}", flush=True)
        time.sleep(2)
        for item in list(running):
            proc, slot, task, folder = item
            if proc.poll() is not None:
                running.remove(item)
                free.append(slot)
                rows += collect(task, folder)
                print(f"finished {folder.name} (exit {proc.returncode})", flush=True)
    (RESULTS / "quality_text.json").write_text(json.dumps(
        {"environment": environment(), "parallel": args.parallel, "wall_s": time.perf_counter() - t0,
         "results": rows}, indent=2))
    print_table(rows, ["task", "job", "test_accuracy", "test_macro_f1", "valid_accuracy", "test_exact_match",
                       "test_chrf", "steps", "wall_s"])


if __name__ == "__main__":
    main()

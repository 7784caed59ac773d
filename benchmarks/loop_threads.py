"""Which threads run the fused LSTM's loop over time when torch has more than one (src/rnnlab/nn/_parallel.py).

    cd benchmarks && OMP_NUM_THREADS=2 python loop_threads.py [--threads 2] [--rounds 15] [--shapes 0,1,2]

The layer-norm LSTM (inference, and a training step), its batch split into one range of rows per thread, on:

- ``openmp``: torch's own OpenMP team (``GOMP_parallel`` through ctypes), the default on Linux;
- ``threads``: a pool of Python threads (the fallback where torch is not on OpenMP);
- ``one_range``: no split (``fused_lstm._SPLIT_MIN_ROWS`` set above the batch): the loop on one thread where the
  shape is small, else a oneDNN product per step from Python on all threads (rnnlab before the split).

each timed in two conditions: ``after_torch``, right after a torch.nn.LSTM call of the same shape (torch's
OpenMP workers then spin for a while before they sleep, and compete for the cores with threads of our own), and
``after_pause``, after 50 ms of sleep. torch.nn.LSTM itself is timed too (``torch``). Median wall times of
``--rounds`` rounds, the contenders interleaved in each round. Writes benchmarks/results/loop_threads.json.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import print_table, setup_threads, write_json
from layers import SHAPES
from rnnlab.nn import LSTM, _parallel, fused_lstm

WAYS = ("openmp", "threads", "one_range")


def configure(way: str, saved: dict) -> None:
    """Set fused_lstm/_parallel up for ``way`` (``saved`` holds the defaults to restore first)."""
    _parallel._omp = saved["omp"]
    fused_lstm._SPLIT_MIN_ROWS = saved["min_rows"]
    if way == "threads":
        _parallel._omp = None
    elif way == "one_range":
        fused_lstm._SPLIT_MIN_ROWS = 1 << 30


def measure(shape, rounds: int) -> list[dict]:
    B, T, I, H = shape
    torch.manual_seed(0)
    x = torch.randn(B, T, I)
    ref = torch.nn.LSTM(I, H, batch_first=True)
    layer = LSTM(I, H, layer_norm=True)
    saved = {"omp": _parallel._openmp(), "min_rows": fused_lstm._SPLIT_MIN_ROWS}
    rows = []
    for mode in ("infer", "train"):
        layer.train(mode == "train")

        def run(model, mode=mode):
            if mode == "infer":
                with torch.no_grad():
                    model(x)
            else:
                model.zero_grad(set_to_none=True)
                model(x)[0].mean().backward()

        times = {"torch": []} | {f"{w}/{c}": [] for w in WAYS for c in ("after_torch", "after_pause")}
        try:
            for r in range(rounds + 1):  # round 0 warms up (and compiles)
                for way in WAYS if r % 2 == 0 else WAYS[::-1]:
                    configure(way, saved)
                    for cond in ("after_torch", "after_pause"):
                        if cond == "after_torch":
                            t0 = time.perf_counter()
                            run(ref)
                            if r:
                                times["torch"].append(time.perf_counter() - t0)
                        else:
                            time.sleep(0.05)
                        t0 = time.perf_counter()
                        run(layer)
                        if r:
                            times[f"{way}/{cond}"].append(time.perf_counter() - t0)
        finally:
            configure("openmp", saved)
        torch_ms = 1e3 * statistics.median(times["torch"])
        for way in WAYS:
            row = {"shape": f"{B},{T},{I},{H}", "mode": mode, "way": way, "torch_ms": torch_ms}
            for cond in ("after_torch", "after_pause"):
                row[f"{cond}_ms"] = 1e3 * statistics.median(times[f"{way}/{cond}"])
                row[f"{cond}_vs_torch"] = row[f"{cond}_ms"] / torch_ms
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--shapes", default="0,1,2", help="indices into layers.SHAPES")
    parser.add_argument("--out", default="loop_threads.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    setup_threads(args.threads)
    if _parallel.backend() != "openmp":
        print("torch's OpenMP runtime was not found: 'openmp' runs on the pool of Python threads as well")
    rows = [row for i in args.shapes.split(",") for row in measure(SHAPES[int(i)], args.rounds)]
    path = write_json(args.out, {"threads": args.threads, "rounds": args.rounds, "backend": _parallel.backend(),
                                 "rows": rows})
    print_table(rows, ["shape", "mode", "way", "torch_ms", "after_torch_ms", "after_pause_ms", "after_torch_vs_torch",
                       "after_pause_vs_torch"])
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()

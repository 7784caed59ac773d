"""rnnlab against its peers on the CPU: torch.nn (float32, bf16 autocast), JAX/Flax and Keras 3 (issue 12).

Run by hand (the peers are an optional extra: pip install jax flax keras; a peer that is not installed prints
"not installed" and is skipped):

    PYTHONPATH=src python benchmarks/peers.py [--threads 2] [--rounds 7] [--quick]

At the five shapes (B, T, I, H) of benchmarks/layers.py, for LSTM, GRU and RNN (tanh), training step (gradient of
outputs.mean() with respect to every parameter) and inference (forward without gradients):
  torch.nn float32 eager (the baseline), torch.nn under bf16 autocast, rnnlab float32, rnnlab with precision
  "auto" (bf16 autocast on CPUs with AVX512-BF16/AMX) [peers_torch.py]; Flax linen cells in nn.RNN and a
  hand-written jax.lax.scan, both jitted [peers_flax.py]; keras.layers.LSTM/GRU/SimpleRNN on the JAX backend
  (jitted stateless_call) and on the torch backend (eager) [peers_keras.py].
And streaming: B=256 independent sessions stepped together (H=256), session-steps per second: torch.nn's
LSTMCell/GRUCell, rnnlab's ``layer.step``, a jitted Flax cell step.

Each framework runs in its own subprocess (peers_worker.py: KERAS_BACKEND is read at import, and JAX and torch
each own a thread pool), pinned to --threads cores. The subprocesses wait on their stdin between calls, so only
one computes at a time: every round times one call of every contender, the order reversed every other round,
and the figure reported is the median over rounds of time(torch.nn float32) / time(contender) measured in the
same round ("speed-up": above 1 is faster than torch.nn). Writes benchmarks/results/peers.json after every case
(and the workers' stderr to peers.log) and prints a table. Keras on the torch backend runs its cells step by step
in Python (a training call at (64, 100, 256, 512) takes tens of seconds): --peers torch,flax,keras-jax skips it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS, print_table, setup_threads, write_json  # noqa: E402
from layers import SHAPES  # noqa: E402

FRAMEWORKS = ("torch", "flax", "keras-jax", "keras-torch")
BASELINE = ("torch", "torch.nn")


class Worker:
    """One framework's subprocess (peers_worker.py), asked one JSON line at a time."""

    def __init__(self, framework: str, threads: int, log) -> None:
        self.framework = framework
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "peers_worker.py"), framework, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
        )
        self.broken = ""

    def ask(self, **request) -> dict:
        if self.broken:
            return {"error": self.broken}
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            for line in self.proc.stdout:
                if line.startswith("@@ "):
                    return json.loads(line[3:])
        except (BrokenPipeError, OSError) as e:
            self.broken = f"worker died: {e}"
            return {"error": self.broken}
        self.broken = f"worker exited with code {self.proc.wait()} (see the log)"
        return {"error": self.broken}

    def close(self) -> None:
        if not self.broken:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def measure(workers: list[Worker], case: dict, *, rounds: int, budget: float) -> list[dict]:
    """Every contender of every worker, interleaved; one row per contender with medians and the speed-up."""
    contenders, rows = [], []
    for w in workers:
        reply = w.ask(op="setup", case=case)
        if "error" in reply:
            rows.append({**_label(case), "contender": w.framework, "note": reply["error"]})
        for name in reply.get("names", []):
            contenders.append((w, name))
    baseline = next(((w, n) for w, n in contenders if (w.framework, n) == BASELINE), None)
    if baseline is None:
        return rows
    for w, name in contenders:  # warm-up (setup already made each first call: compilation is never timed)
        w.ask(op="run", name=name)
    times: dict = {c: [] for c in contenders}
    start = time.perf_counter()
    for r in range(rounds):
        for w, name in contenders if r % 2 == 0 else contenders[::-1]:
            times[(w, name)].append(w.ask(op="run", name=name).get("seconds", float("nan")))
        if r >= 2 and time.perf_counter() - start > budget:
            break
    base = times[baseline]
    for (w, name), ts in times.items():
        row = {**_label(case), "contender": name, "framework": w.framework, "rounds": len(ts),
               "ms": 1e3 * statistics.median(ts), "speedup": statistics.median(b / t for b, t in zip(base, ts))}
        if case["kind"] == "stream":
            row["steps_per_s"] = case["B"] * case["steps"] / statistics.median(ts)  # session-steps
        rows.append(row)
    return rows


def _label(case: dict) -> dict:
    if case["kind"] == "stream":
        return {"cell": case["cell"], "shape": f"{case['B']} sessions,I={case['I']},H={case['H']}", "mode": "step"}
    return {"cell": case["cell"], "shape": f"{case['B']},{case['T']},{case['I']},{case['H']}", "mode": case["mode"]}


def summary(rows: list[dict]) -> list[dict]:
    """The issue's table: per cell and mode, the range of speed-ups over the shapes, per contender."""
    out: dict = {}
    for row in rows:
        if "speedup" in row and row["mode"] != "step":
            out.setdefault((row["cell"], row["mode"], row["contender"]), []).append(row["speedup"])
    return [{"cell": c, "mode": m, "contender": n, "shapes": len(v),
             "speedup": f"{min(v):.2f}-{max(v):.2f}x" if len(v) > 1 else f"{v[0]:.2f}x"}
            for (c, m, n), v in out.items()]


def cases(args) -> list[dict]:
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES
    out = [{"kind": "layer", "cell": cell, "mode": mode, "B": B, "T": T, "I": I, "H": H,
            "autocast_kernels": args.autocast_kernels}
           for (B, T, I, H) in shapes for cell in args.cells.split(",") for mode in args.modes.split(",")]
    if args.stream:
        out += [{"kind": "stream", "cell": cell, "B": 256, "I": 64, "H": 256, "steps": args.stream_steps}
                for cell in args.cells.split(",") if cell in ("LSTM", "GRU")]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="cores (and threads) for every framework")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case (at least 3 are run)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per case after which rounds stop")
    parser.add_argument("--shapes", default="", help="indices into layers.SHAPES, e.g. 0,3 (default: all five)")
    parser.add_argument("--cells", default="LSTM,GRU,RNN", help="comma-separated: LSTM, GRU, RNN")
    parser.add_argument("--modes", default="train,infer", help="comma-separated: train, infer")
    parser.add_argument("--peers", default=",".join(FRAMEWORKS), help=f"comma-separated subset of {FRAMEWORKS}")
    parser.add_argument("--no-stream", dest="stream", action="store_false", help="skip the streaming case")
    parser.add_argument("--stream-steps", type=int, default=50, help="steps per timed call in the streaming case")
    parser.add_argument("--autocast-kernels", action="store_true",
                        help="add rnnlab's numba kernel forced under bf16 autocast (what auto hands to torch)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: the first shape, 3 rounds")
    parser.add_argument("--out", default="peers.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    if args.quick:
        args.shapes, args.rounds = args.shapes or "0", 3
    setup_threads(1)  # this process only coordinates
    peers = ["torch"] + [p for p in args.peers.split(",") if p in FRAMEWORKS and p != "torch"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(RESULTS / (Path(args.out).stem + ".log"), "w") as log:
        workers, versions, missing = [], {}, {}
        for p in peers:
            w = Worker(p, args.threads, log)
            hello = w.ask(op="hello")
            if "versions" in hello:
                workers.append(w)
                versions[p] = hello["versions"]
            else:
                missing[p] = hello.get("missing") or hello.get("error")
                print(f"{p}: {missing[p]}", flush=True)
                w.close()
        rows: list[dict] = []
        path = RESULTS / args.out
        try:
            for case in cases(args):
                rows += measure(workers, case, rounds=args.rounds, budget=args.budget)
                print(f"done {_label(case)} ({time.perf_counter() - t0:.0f} s)", flush=True)
                # after every case, so that a run cut short keeps what it measured
                path = write_json(args.out, {"threads": args.threads, "rounds": args.rounds, "budget_s": args.budget,
                                             "seconds": time.perf_counter() - t0, "versions": versions,
                                             "not_installed": missing, "rows": rows, "summary": summary(rows)})
        finally:
            for w in workers:
                w.close()
    print_table(rows, ["cell", "shape", "mode", "contender", "rounds", "ms", "speedup", "steps_per_s", "note"])
    print()
    print_table(summary(rows), ["cell", "mode", "contender", "shapes", "speedup"])
    print(f"\n{time.perf_counter() - t0:.0f} s; written {path}")


if __name__ == "__main__":
    main()

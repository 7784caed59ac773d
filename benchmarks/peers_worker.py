"""One framework's side of benchmarks/peers.py: a subprocess that builds contenders and times one call on request.

    python benchmarks/peers_worker.py FRAMEWORK --threads N      (started by peers.py, not by hand)

FRAMEWORK is torch, flax, keras-jax or keras-torch. The process pins itself to N cores (and sets the thread
counts each framework reads) before it imports anything heavy, then answers JSON lines on stdin:

    {"op": "hello"}                 -> {"versions": {...}} or {"missing": "not installed (...)"}
    {"op": "setup", "case": {...}}  -> {"names": [...]}      build the contenders of one case (compiles/warms them)
    {"op": "run", "name": NAME}     -> {"seconds": s}        one call, synchronous (JAX: block_until_ready)
    {"op": "quit"}

Answers are the lines that start with ``@@ `` (libraries may print their own lines on stdout). A framework that
cannot be imported answers setup with {"missing": "not installed"}. Between requests the process waits on
stdin, so only one framework computes at any time: the orchestrator interleaves them round by round.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback

MODULES = {"torch": "peers_torch", "flax": "peers_flax", "keras-jax": "peers_keras", "keras-torch": "peers_keras"}
KERAS_BACKEND = {"keras-jax": "jax", "keras-torch": "torch"}


def pin_threads(n: int) -> None:
    """N cores for this process, and every framework told to use N threads, before any of them is imported.

    XLA reads no OMP variable: its CPU thread pool is sized by the cores the process may run on, so the
    affinity mask is what bounds it; at one thread the XLA flags also turn Eigen's multithreading off
    (jax-ml/jax#743, #1539)."""
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[:n])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    if n == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def answer(payload: dict) -> None:
    sys.stdout.write("@@ " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def main() -> None:
    framework, threads = sys.argv[1], int(sys.argv[sys.argv.index("--threads") + 1])
    pin_threads(threads)
    if framework in KERAS_BACKEND:
        os.environ["KERAS_BACKEND"] = KERAS_BACKEND[framework]  # read once, when keras is imported
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        module = importlib.import_module(MODULES[framework])
        missing = module.missing()
    except ImportError as e:
        module, missing = None, f"not installed ({e.name})"
    if module is not None and not missing:
        module.setup_threads(threads)
    fns: dict = {}
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "quit":
            break
        if op == "hello":
            answer({"missing": missing} if missing else {"versions": module.versions()})
        elif op == "setup":
            if missing:
                answer({"missing": missing})
                continue
            try:
                fns = module.build(request["case"])
                answer({"names": list(fns), "versions": module.versions()})
            except Exception as e:  # a peer that cannot run a case is reported, the others go on
                traceback.print_exc(file=sys.stderr)
                answer({"error": f"{type(e).__name__}: {e}".splitlines()[0][:300]})
        elif op == "run":
            t0 = time.perf_counter()
            fns[request["name"]]()
            answer({"seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()

"""Load benchmark of ``rnnlab serve`` (by hand, loopback only, bounded in time and count).

    PYTHONPATH=src OMP_NUM_THREADS=2 python benchmarks/serve_load.py --seconds 20

Trains (or takes, --bundle) a textgen bundle, starts the server twice in subprocesses on 127.0.0.1 (micro-batching
on, then off), and drives it with httpx async clients:
1. generate: N clients posting /generate for --seconds: requests/s, tokens/s, p50/p99 latency, errors, server RSS;
2. sessions: --sessions clients each stepping its own streaming session one character per request for
   --seconds: steps/s, p50/p99, errors, RSS, the mean batch; batched vs one by one;
3. stepping in process, no HTTP: the same --sessions states stepped as one batch (what the micro-batcher does
   with the steps that arrive together) against one session at a time, for --seconds each: the gain batching
   gives the model's work, which 2. shows diluted by the per-request cost of HTTP.
Writes benchmarks/results/serve_load.json and prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_bundle(folder: Path, hidden: int) -> Path:
    sys.path.insert(0, str(ROOT / "src"))
    from rnnlab.structures import EncoderConfig
    from rnnlab.tasks import textgen
    from rnnlab.training import TrainerConfig

    text = "".join(f"def f{i % 7}(x):\n    return x + {i % 5}\nThe cat sat on the mat {i}.\n" for i in range(300))
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    return textgen.train(textgen.TextgenConfig(
        data=str(folder / "corpus.txt"), batch_size=8, bptt=32,
        model=textgen.TextModelConfig(embedding_size=64, encoder=EncoderConfig(kind="lstm", hidden_size=hidden,
                                                                               num_layers=2)),
        trainer=TrainerConfig(lr=1e-3, max_steps=5, max_epochs=0, eval_every=0, progress=False, curves=False,
                              device="cpu", run_dir=str(folder / "run"))))


class Server:
    def __init__(self, bundle: Path, batching: bool, sessions: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rnnlab.cli", "serve", str(bundle), "--name", "lm", "--port", str(self.port),
             "--limits.batching", str(batching).lower(), "--limits.max_sessions", str(sessions + 8),
             "--limits.max_concurrent", "4", "--limits.max_queue", "64", "--limits.batch_window_ms", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not start: {self.proc.stderr.read().decode()[-500:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def summary(latencies: list[float], errors: int, seconds: float, count_name: str, count: int) -> dict:
    lat = sorted(latencies)
    pick = lambda q: round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else None  # noqa: E731
    return {"requests": len(lat), "errors": errors, f"{count_name}_per_s": round(count / seconds, 1),
            "requests_per_s": round(len(lat) / seconds, 1), "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


async def load_generate(url: str, clients: int, seconds: float, tokens: int) -> dict:
    latencies, errors, generated = [], 0, 0
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        async def one():
            nonlocal errors, generated
            while time.monotonic() < end:
                t = time.monotonic()
                r = await c.post("/models/lm/generate", json={"prompt": "def ", "max_new_tokens": tokens})
                if r.status_code == 200:
                    latencies.append(time.monotonic() - t)
                    generated += r.json()["tokens"]
                else:
                    errors += 1
                    await asyncio.sleep(0.05)

        start = time.monotonic()
        await asyncio.gather(*[one() for _ in range(clients)])
        elapsed = time.monotonic() - start
        health = (await c.get("/health")).json()
    return {**summary(latencies, errors, elapsed, "tokens", generated), "rss_mb": health["rss_bytes"] / 2**20}


async def load_sessions(url: str, sessions: int, seconds: float) -> dict:
    latencies, errors, steps = [], 0, 0
    limits = httpx.Limits(max_connections=sessions)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        ids = [(await c.post("/models/lm/sessions")).json()["session"] for _ in range(sessions)]
        end = time.monotonic() + seconds

        async def one(sid: str):
            nonlocal errors, steps
            i = 0
            while time.monotonic() < end:
                t = time.monotonic()
                r = await c.post(f"/models/lm/sessions/{sid}/step", json={"text": "def f(x): "[i % 10], "top_k": 1})
                i += 1
                if r.status_code == 200:
                    latencies.append(time.monotonic() - t)
                    steps += 1
                else:
                    errors += 1

        start = time.monotonic()
        await asyncio.gather(*[one(s) for s in ids])
        elapsed = time.monotonic() - start
        health = (await c.get("/health")).json()
    batching = health["batching"].get("lm", {})
    return {**summary(latencies, errors, elapsed, "steps", steps), "rss_mb": health["rss_bytes"] / 2**20,
            "mean_batch": batching.get("mean_batch"), "session_state_bytes": health["sessions"]["state_bytes"]}


def step_in_process(bundle: Path, sessions: int, seconds: float) -> dict:
    """Steps/s of --sessions session states stepped together (one forward) and one at a time, in this process."""
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from rnnlab.serve.models import load_one
    from rnnlab.serve.stepping import cat_states, split_state, stepper_for

    stepper = stepper_for(load_one("lm", bundle))
    states = [stepper.initial_state() for _ in range(sessions)]
    token = torch.ones(1, dtype=torch.long)

    def batched() -> int:
        nonlocal states
        _, new = stepper.step(token.expand(sessions), cat_states(states))
        states = split_state(new, sessions)
        return sessions

    def one_by_one() -> int:
        for i in range(sessions):
            _, states[i] = stepper.step(token, states[i])
        return sessions

    out = {}
    for name, run in (("batched", batched), ("one_by_one", one_by_one)):
        run()  # warm-up
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            steps += run()
        out[f"{name}_steps_per_s"] = round(steps / (time.perf_counter() - start), 1)
    out["speedup"] = round(out["batched_steps_per_s"] / out["one_by_one_steps_per_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long each phase runs")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients against /generate")
    ap.add_argument("--tokens", type=int, default=50, help="tokens per generate request")
    ap.add_argument("--sessions", type=int, default=256, help="concurrent streaming sessions")
    ap.add_argument("--hidden", type=int, default=512, help="hidden size of the trained LSTM (2 layers)")
    ap.add_argument("--bundle", type=str, default=None, help="a textgen bundle (default: train a small one)")
    ap.add_argument("--out", type=str, default=str(ROOT / "benchmarks/results/serve_load.json"))
    args = ap.parse_args()
    if not 1 <= args.seconds <= 600 or not 1 <= args.sessions <= 1024 or not 1 <= args.clients <= 256:
        raise SystemExit("--seconds must be in 1..600, --sessions in 1..1024, --clients in 1..256")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else train_bundle(Path(tmp), args.hidden)
        results = {"config": vars(args), "threads": os.environ.get("OMP_NUM_THREADS"), "phases": {}}
        for batching in (True, False):
            server = Server(bundle, batching, args.sessions)
            try:
                server.wait()
                key = "batched" if batching else "one_by_one"
                if batching:
                    results["phases"]["generate"] = asyncio.run(
                        load_generate(server.url, args.clients, args.seconds, args.tokens))
                results["phases"][f"sessions_{key}"] = asyncio.run(
                    load_sessions(server.url, args.sessions, args.seconds))
            finally:
                server.stop()
        results["in_process"] = step_in_process(bundle, args.sessions, min(args.seconds, 20.0))
    p = results["phases"]
    results["sessions_speedup"] = round(p["sessions_batched"]["steps_per_s"] / max(p["sessions_one_by_one"]
                                                                                  ["steps_per_s"], 1e-9), 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{'phase':<22}{'req/s':>9}{'units/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'RSS MB':>8}{'batch':>7}")
    for name, r in p.items():
        units = r.get("tokens_per_s", r.get("steps_per_s"))
        print(f"{name:<22}{r['requests_per_s']:>9}{units:>10}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}"
              f"{r['rss_mb']:>8.0f}{str(r.get('mean_batch', '-')):>7}")
    print(f"sessions: micro-batched / one by one = {results['sessions_speedup']}x steps/s")
    q = results["in_process"]
    print(f"in process, no HTTP: {args.sessions} sessions stepped together {q['batched_steps_per_s']} steps/s, "
          f"one at a time {q['one_by_one_steps_per_s']} steps/s = {q['speedup']}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Load benchmark of ``rnnlab serve`` (by hand, loopback only, bounded in time and count).

    PYTHONPATH=src python benchmarks/serve_load.py --threads 1 --hidden 1024 --seconds 20

Trains (or takes, --bundle) a textgen bundle with an LSTM of --layers x --hidden, starts the server in
subprocesses on 127.0.0.1 (micro-batching on, then off), and drives it:
1. generate (--phases generate): --clients httpx clients posting /generate for --seconds: requests/s, tokens/s,
   p50/p99 latency, errors, server RSS;
2. sessions: --sessions clients each stepping its own streaming session one character per request for
   --seconds, batched then one by one: steps/s, p50/p99, errors, RSS, the mean batch. The clients are a minimal
   HTTP/1.1 keep-alive client on asyncio streams (httpx costs more CPU per request than the server does),
   spread over --client-procs processes; --lean both runs it against the lean step path and FastAPI's route;
   all servers stay up and are driven in --http-rounds interleaved rounds (medians of the per-round ratios);
3. in process, no HTTP: the server's own path (``Stepper.step_sessions`` on a ``StateTable`` of --sessions rows:
   gather, one step, scatter, softmax/top-k) with all rows as one batch against one row at a time, in
   --rounds interleaved rounds of --seconds/--rounds each; the median of the per-round ratios. Also the bare
   model step (``encoder.step`` on (L, B, H)) per row, batched and alone, to show what the rest costs.
Writes benchmarks/results/serve_load.json (or --out) and prints a table. --threads sets the server's and this
process's torch/OpenMP threads.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_bundle(folder: Path, cell: str, hidden: int, layers: int) -> Path:
    """A small textgen bundle (a few training steps: the benchmark measures speed, not quality)."""
    from rnnlab.structures import EncoderConfig
    from rnnlab.tasks import textgen
    from rnnlab.training import TrainerConfig

    text = "".join(f"def f{i % 7}(x):\n    return x + {i % 5}\nThe cat sat on the mat {i}.\n" for i in range(300))
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    return textgen.train(textgen.TextgenConfig(
        data=str(folder / "corpus.txt"), batch_size=8, bptt=32,
        model=textgen.TextModelConfig(embedding_size=64, encoder=EncoderConfig(kind=cell, hidden_size=hidden,
                                                                               num_layers=layers)),
        trainer=TrainerConfig(lr=1e-3, max_steps=2, max_epochs=0, eval_every=0, progress=False, curves=False,
                              device="cpu", run_dir=str(folder / "run"))))


# the server's process: its threads set, optionally its event loop's thread under cProfile (the model steps run in
# worker threads, which cProfile does not see: what it shows is the per-request cost outside the model)
SERVER_MAIN = """
import cProfile, signal, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from rnnlab.cli import main
profile = cProfile.Profile() if sys.argv[2] else None

def dump(*_):  # uvicorn restores this handler after its graceful shutdown and raises the signal again
    if profile:
        profile.disable()
        profile.dump_stats(sys.argv[2])
    sys.exit(0)

signal.signal(signal.SIGTERM, dump)
if profile:
    profile.enable()
sys.exit(main(sys.argv[3:]))
"""


class Server:
    def __init__(self, bundle: Path, batching: bool, sessions: int, threads: int, window_ms: float,
                 profile: str | None = None, http: str = "auto", lean: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads),
               "RNNLAB_THREADS": str(threads)}
        # stderr to a file: a pipe nobody reads fills up and blocks the server; read it only when it failed
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_MAIN, str(threads), profile or "",
             "serve", str(bundle), "--name", "lm", "--port", str(self.port), "--http", http,
             "--limits.batching", str(batching).lower(), "--limits.max_sessions", str(sessions + 8),
             "--limits.max_concurrent", "4", "--limits.max_queue", "64", "--limits.batch_window_ms", str(window_ms),
             "--limits.max_batch", str(max(sessions, 1)), "--limits.lean_step", str(lean).lower()],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log)

    def wait(self) -> None:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.proc.kill()  # before reading its log: a server still starting would never close it
        self.proc.wait(timeout=10)
        self.log.seek(0)
        raise RuntimeError(f"the server did not start within 120 s: {self.log.read().decode()[-500:]}")

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the server's process has used: less load-dependent than
        throughput on a shared machine."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # a graceful shutdown waiting on stuck connections
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def percentile(lat: list[float], q: float):
    lat = sorted(lat)
    return round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else None


def summary(latencies: list[float], errors: int, seconds: float, count_name: str, count: int) -> dict:
    return {"requests": len(latencies), "errors": errors, f"{count_name}_per_s": round(count / seconds, 1),
            "requests_per_s": round(len(latencies) / seconds, 1), "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99)}


async def load_generate(url: str, clients: int, seconds: float, tokens: int) -> dict:
    import httpx

    latencies, errors, generated = [], 0, 0
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=clients)) as c:
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


# -- the session clients: HTTP/1.1 keep-alive on asyncio streams, one connection per session ----------------
async def _post(reader, writer, port: int, path: str, body: bytes) -> tuple[int, bytes]:
    writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), port, len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:]) if k.lower() == b"content-length")
    return status, await reader.readexactly(length)


async def _drive(port: int, ids: list[str], end: float, body: dict) -> tuple[list[float], int]:
    latencies, errors = [], 0
    text = "def f(x): "

    async def one(sid: str):
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        path, i = f"/models/lm/sessions/{sid}/step", 0
        while time.monotonic() < end:
            payload = json.dumps({**body, "text": text[i % len(text)]}).encode()
            t = time.monotonic()
            status, _ = await _post(reader, writer, port, path, payload)
            i += 1
            if status == 200:
                latencies.append(time.monotonic() - t)
            else:
                errors += 1
        writer.close()

    await asyncio.gather(*[one(s) for s in ids])
    return latencies, errors


def _client_process(port: int, ids: list[str], end_in: float, body: dict, queue) -> None:
    end = time.monotonic() + end_in
    latencies, errors = asyncio.run(_drive(port, ids, end, body))
    t = os.times()
    queue.put((latencies, errors, t.user + t.system))


def load_sessions(server: Server, sessions: int, seconds: float, procs: int, body: dict) -> dict:
    import httpx

    url, port = server.url, server.port
    with httpx.Client(base_url=url, timeout=60) as c:
        ids = [c.post("/models/lm/sessions").json()["session"] for _ in range(sessions)]
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        workers = [ctx.Process(target=_client_process, args=(port, ids[k::procs], seconds, body, queue))
                   for k in range(procs)]
        start, cpu = time.monotonic(), server.cpu_s()
        for w in workers:
            w.start()
        parts = [queue.get(timeout=seconds + 120) for _ in workers]
        elapsed, cpu = time.monotonic() - start, server.cpu_s() - cpu
        for w in workers:
            w.join()
        health = c.get("/health").json()
        for sid in ids:
            c.delete(f"/models/lm/sessions/{sid}")
    latencies = [t for lat, _, _ in parts for t in lat]
    errors = sum(e for _, e, _ in parts)
    client_cpu = sum(c for _, _, c in parts)
    batching = health["batching"].get("lm", {})
    return {**summary(latencies, errors, elapsed, "steps", len(latencies)), "rss_mb": health["rss_bytes"] / 2**20,
            "mean_batch": batching.get("mean_batch"),
            "server_cpu_ms_per_step": round(1e3 * cpu / max(len(latencies), 1), 3),
            "client_cpu_ms_per_step": round(1e3 * client_cpu / max(len(latencies), 1), 3),
            "sessions_state_bytes_total": health["sessions"]["state_bytes"],
            "state_bytes_per_session": health["sessions"]["state_bytes"] // max(sessions, 1)}


def step_in_process(bundle: Path, sessions: int, seconds: float, rounds: int, body: dict) -> dict:
    """Steps/s of --sessions rows of a state table stepped as one batch and one row at a time (the server's
    path, no HTTP), in interleaved rounds; and the bare model step per row, batched and alone."""
    import torch

    from rnnlab.serve.models import load_one
    from rnnlab.serve.stepping import SessionStep, stepper_for

    stepper = stepper_for(load_one("lm", bundle))
    table = stepper.new_table()
    rows = [table.allocate() for _ in range(sessions)]
    token = torch.ones(1, dtype=torch.long)
    units = body.get("units", 32)
    steps = [SessionStep(r, token, False, 32 if units is None else units, body.get("top_k", 5)) for r in rows]
    state_all = table.gather(rows)
    x_all = stepper.embed(token.expand(sessions))  # (B, E)
    x_one, state_one = x_all[:1], table.gather(rows[:1])

    def batched() -> int:
        stepper.step_sessions(table, steps)
        return sessions

    def one_by_one() -> int:
        for s in steps:
            stepper.step_sessions(table, [s])
        return sessions

    @torch.no_grad()
    def model_batched() -> int:
        stepper.encoder.step(x_all, state_all)
        return sessions

    @torch.no_grad()
    def model_alone() -> int:
        stepper.encoder.step(x_one, state_one)
        return 1

    contenders = {"batched": batched, "one_by_one": one_by_one, "model_batched": model_batched,
                  "model_alone": model_alone}
    for fn in contenders.values():
        fn()  # warm-up
    per_round = seconds / rounds / len(contenders)
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}  # CPU seconds per step: less load-dependent
    names = list(contenders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            n, start, cpu0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - start < per_round:
                n += contenders[name]()
            rates[name].append(n / (time.perf_counter() - start))
            cpu[name].append((time.process_time() - cpu0) / n)
    med = {k: round(statistics.median(v), 1) for k, v in rates.items()}
    cpu_ms = {k: round(1e3 * statistics.median(v), 3) for k, v in cpu.items()}
    return {"batched_steps_per_s": med["batched"], "one_by_one_steps_per_s": med["one_by_one"],
            "speedup": round(statistics.median(a / b for a, b in zip(rates["batched"], rates["one_by_one"])), 2),
            "model_only_batched_steps_per_s": med["model_batched"],
            "model_only_alone_steps_per_s": med["model_alone"],
            "model_only_speedup": round(statistics.median(
                a / b for a, b in zip(rates["model_batched"], rates["model_alone"])), 2),
            "us_per_step_one_by_one": round(1e6 / med["one_by_one"], 1),
            "us_per_step_model_alone": round(1e6 / med["model_alone"], 1),
            "cpu_ms_per_step": cpu_ms,
            "rounds": rounds, "state_table_bytes_reserved": table.bytes_reserved}


def http_phases(args, bundle: Path, phases: set, body: dict) -> tuple[dict, list]:
    """The generate and sessions phases. The servers (batched and one by one; lean step path and FastAPI's route
    with --lean both) are all started first and stay up; the sessions phase drives them in --http-rounds
    interleaved rounds of --seconds/--http-rounds each (the order reversed every other round), so that a change
    in the machine's load falls on all of them; ratios are medians of the per-round ratios."""
    leans = {"on": [True], "off": [False], "both": [True, False]}[args.lean]
    configs = [(b, le) for b in (True, False) for le in leans]

    def key(batching: bool, lean: bool) -> str:
        return ("batched" if batching else "one_by_one") + ("" if lean or args.lean == "off" else "_fastapi")

    servers = {}
    out, rounds = {}, []
    try:
        for batching, lean in configs:
            k = key(batching, lean)
            profile = str(Path(args.profile) / f"server_{k}.prof") if args.profile else None
            servers[k] = Server(bundle, batching, args.sessions, args.threads, args.window_ms, profile, args.http, lean)
        for server in servers.values():
            server.wait()
        if "generate" in phases:
            out["generate"] = asyncio.run(load_generate(servers[key(True, leans[0])].url, args.clients, args.seconds,
                                                        args.tokens))
        if "sessions" in phases:
            names = list(servers)
            for r in range(args.http_rounds):
                rounds.append({k: load_sessions(servers[k], args.sessions, args.seconds / args.http_rounds,
                                                args.client_procs, body)
                               for k in (names if r % 2 == 0 else reversed(names))})
    finally:
        for server in servers.values():
            server.stop()
    for k in servers if rounds else ():
        runs = [rd[k] for rd in rounds]
        merged = {**runs[-1], **{f: round(statistics.median(x[f] for x in runs), 1)
                                 for f in ("requests_per_s", "steps_per_s", "p50_ms", "p99_ms")}}
        steps = sum(x["requests"] for x in runs)
        for f in ("server_cpu_ms_per_step", "client_cpu_ms_per_step"):  # total CPU / total steps
            merged[f] = round(sum(x[f] * x["requests"] for x in runs) / max(steps, 1), 3)
        merged.update(requests=steps, errors=sum(x["errors"] for x in runs), rounds=len(runs))
        base = k.replace("batched", "one_by_one") if k.startswith("batched") else None
        if base is not None:
            merged["speedup_per_round"] = [round(rd[k]["steps_per_s"] / max(rd[base]["steps_per_s"], 1e-9), 2)
                                           for rd in rounds]
            merged["speedup_median_of_rounds"] = round(statistics.median(merged["speedup_per_round"]), 2)
        out[f"sessions_{k}"] = merged
    return out, rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="how long each HTTP phase runs (<= 60), and the "
                    "in-process phase in all")
    ap.add_argument("--http-rounds", type=int, default=3, help="interleaved rounds of the sessions phase (each "
                    "server --seconds/--http-rounds per round)")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of the server and this process")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the in-process phase")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients against /generate")
    ap.add_argument("--client-procs", type=int, default=2, help="processes the session clients are spread over")
    ap.add_argument("--tokens", type=int, default=50, help="tokens per generate request")
    ap.add_argument("--sessions", type=int, default=256, help="concurrent streaming sessions")
    ap.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm", help="the trained model's cell")
    ap.add_argument("--hidden", type=int, default=512, help="hidden size of the trained model")
    ap.add_argument("--layers", type=int, default=2, help="layers of the trained model")
    ap.add_argument("--window-ms", type=float, default=2.0, help="the server's --limits.batch_window_ms")
    ap.add_argument("--units", type=int, default=None, help="hidden units each step response carries (0: none; "
                    "default the server's probe_units)")
    ap.add_argument("--phases", default="sessions,in_process", help="comma-separated: generate, sessions, in_process")
    ap.add_argument("--http", choices=["auto", "httptools", "h11"], default="auto", help="the server's HTTP parser")
    ap.add_argument("--lean", choices=["on", "off", "both"], default="on", help="the step route's lean ASGI path "
                    "(--limits.lean_step): on, off (FastAPI's route), or both (off: phases named *_fastapi)")
    ap.add_argument("--profile", type=str, default=None, help="a folder: run the servers under cProfile and write "
                    "server_batched.prof / server_one_by_one.prof there (pstats)")
    ap.add_argument("--bundle", type=str, default=None, help="a textgen bundle (default: train a small one)")
    ap.add_argument("--out", type=str, default=str(ROOT / "benchmarks/results/serve_load.json"))
    args = ap.parse_args()
    if not 1 <= args.seconds <= 60 or not 1 <= args.sessions <= 1024 or not 1 <= args.clients <= 256:
        raise SystemExit("--seconds must be in 1..60, --sessions in 1..1024, --clients in 1..256")
    if not 1 <= args.http_rounds <= args.seconds:
        raise SystemExit("--http-rounds must be in 1..--seconds (each round drives each server >= 1 s)")
    phases = set(args.phases.split(","))
    if phases - {"generate", "sessions", "in_process"}:
        raise SystemExit(f"--phases: unknown {sorted(phases - {'generate', 'sessions', 'in_process'})}")
    import torch

    torch.set_num_threads(args.threads)
    body = {"top_k": 1, **({"units": args.units} if args.units is not None else {})}
    wall = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else train_bundle(Path(tmp), args.cell, args.hidden, args.layers)
        results = {"config": vars(args), "request_body": body, "phases": {}}
        if phases & {"generate", "sessions"}:
            results["phases"], results["http_rounds"] = http_phases(args, bundle, phases, body)
        if "in_process" in phases:
            results["in_process"] = step_in_process(bundle, args.sessions, args.seconds, args.rounds, body)
    p = results["phases"]
    if "sessions" in phases:
        results["sessions_speedup"] = p["sessions_batched"]["speedup_median_of_rounds"]
        if "sessions_batched_fastapi" in p:
            results["sessions_speedup_fastapi"] = p["sessions_batched_fastapi"]["speedup_median_of_rounds"]
    results["wall_s"] = round(time.monotonic() - wall, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{args.cell} {args.layers}x{args.hidden}, {args.sessions} sessions, {args.threads} thread(s)")
    print(f"{'phase':<22}{'req/s':>9}{'units/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'RSS MB':>8}{'batch':>7}"
          f"{'srv cpu ms/step':>16}{'client':>8}")
    for name, r in p.items():
        units = r.get("tokens_per_s", r.get("steps_per_s"))
        print(f"{name:<22}{r['requests_per_s']:>9}{units:>10}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}"
              f"{r['rss_mb']:>8.0f}{str(r.get('mean_batch', '-')):>7}{str(r.get('server_cpu_ms_per_step', '-')):>16}"
              f"{str(r.get('client_cpu_ms_per_step', '-')):>8}")
    if "sessions_speedup" in results:
        print(f"over HTTP: micro-batched / one by one = {results['sessions_speedup']}x steps/s"
              + (f" (FastAPI's route: {results['sessions_speedup_fastapi']}x)" if "sessions_speedup_fastapi" in results
                 else ""))
    if "in_process" in results:
        q = results["in_process"]
        print(f"in process (state table, no HTTP): together {q['batched_steps_per_s']} steps/s, one at a time "
              f"{q['one_by_one_steps_per_s']} steps/s = {q['speedup']}x (median of {q['rounds']} rounds); "
              f"model step only {q['model_only_speedup']}x, {q['us_per_step_model_alone']} us alone")
        print(f"  CPU ms per step: {q['cpu_ms_per_step']}")
    print(f"wrote {args.out} in {results['wall_s']} s")


if __name__ == "__main__":
    main()

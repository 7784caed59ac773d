"""The HTTP API: every endpoint, its limits and its answers to bad requests (4xx with a JSON body, never 500)."""
import asyncio
import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import LiveServer, client, make_app, run_async
from rnnlab.tasks import classify, textgen


@pytest.fixture(scope="module")
def api(loaded):
    return TestClient(make_app(loaded))


def test_health_and_models_describe_every_bundle(api):
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["models"] == ["poems", "sentiment", "ner", "dates"]
    assert health["rss_bytes"] > 0 and "state_bytes" in health["sessions"]
    models = {m["name"]: m for m in api.get("/models").json()["models"]}
    assert models["poems"]["task"] == "textgen" and models["poems"]["streaming"] is True
    assert models["poems"]["sizes"]["encoder"]["hidden_size"] == 16 and models["poems"]["parameters"] > 0
    assert "valid_loss" in models["poems"]["metrics"]
    assert models["sentiment"]["endpoints"] == ["classify", "predict", "sessions"] or "classify" in models["sentiment"]["endpoints"]
    assert models["dates"]["streaming"] is False  # a bidirectional encoder cannot stream
    assert api.get("/openapi.json").json()["paths"]["/models/{name}/generate"]
    docs = api.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower() and "/openapi.json" in docs.text


def test_generate_equals_the_task_generate_and_the_stream(api, bundles):
    body = {"prompt": "def ", "max_new_tokens": 25, "temperature": 0.8, "top_k": 5, "seed": 3}
    out = api.post("/models/poems/generate", json=body).json()
    assert out["text"] == textgen.generate(bundles["poems"], "def ", max_new_tokens=25, temperature=0.8, top_k=5,
                                           seed=3)
    with api.stream("POST", "/models/poems/generate/stream", json=body) as r:
        events = _events(r.read().decode())
    tokens = [d for e, d in events if e == "token"]
    assert len(tokens) == 25 and events[-1][0] == "done"
    assert "def " + "".join(t["text"] for t in tokens) == out["text"] == events[-1][1]["text"]
    greedy = api.post("/models/poems/generate", json={"prompt": "The ", "max_new_tokens": 10, "method": "greedy"})
    assert greedy.json()["text"] == textgen.generate(bundles["poems"], "The ", max_new_tokens=10, method="greedy")


def test_stream_probe_returns_hidden_units_and_gates(api):
    with api.stream("POST", "/models/poems/generate/stream",
                    json={"prompt": "a", "max_new_tokens": 3, "probe": True}) as r:
        tokens = [d for e, d in _events(r.read().decode()) if e == "token"]
    assert len(tokens[0]["hidden"]) == 16 and set(tokens[0]["gates"]) == {"input", "forget", "output"}
    assert all(0 <= g <= 1 for g in tokens[0]["gates"]["forget"])


def test_classify_tag_translate_and_predict_match_the_tasks(api, bundles):
    out = api.post("/models/sentiment/classify", json={"texts": ["film good .", "it bad ."]}).json()["outputs"]
    expected = list(classify.predict(bundles["sentiment"], ["film good .", "it bad ."]))
    assert [o["probabilities"] for o in out] == [e["probabilities"] for e in expected]
    tagged = api.post("/models/ner/tag", json={"text": "John Smith flew to Paris"}).json()["outputs"][0]
    assert tagged["tokens"] == ["John", "Smith", "flew", "to", "Paris"] and len(tagged["tags"]) == 5
    t = api.post("/models/dates/translate", json={"text": "12 March 2001"}).json()["outputs"][0]
    assert len(t["attention"]) == len(t["target_units"]) and len(t["attention"][0]) == len(t["source_units"])
    assert all(abs(sum(row) - 1) < 1e-3 for row in t["attention"])
    generic = api.post("/models/dates/predict", json={"inputs": ["12 March 2001"]}).json()
    assert generic["outputs"][0]["translation"] == t["translation"]
    p = api.post("/models/poems/predict", json={"inputs": ["def "], "options": {"max_new_tokens": 5, "seed": 1}})
    assert p.json()["outputs"][0]["text"] == textgen.generate(bundles["poems"], "def ", max_new_tokens=5, seed=1)


def test_a_task_endpoint_of_another_task_is_404(api):
    r = api.post("/models/sentiment/generate", json={"prompt": "x"})
    assert r.status_code == 404 and "classify model" in r.json()["error"]
    assert api.post("/models/nope/classify", json={"text": "x"}).status_code == 404


def test_paths_are_never_taken_from_requests(api, tmp_path):
    target = tmp_path / "attention.png"
    r = api.post("/models/dates/predict", json={"inputs": ["1 May 2000"], "options": {"attention": str(target)}})
    assert r.status_code == 400 and "path" in r.json()["error"] and not target.exists()
    r = api.post("/models/poems/predict", json={"inputs": ["a"], "options": {"bundle": "/etc"}})
    assert r.status_code == 400
    assert api.get("/static/..%2Fapp.py").status_code == 404
    assert api.get("/static/../app.py").status_code == 404


# --- limits ------------------------------------------------------------------------------------------------

def test_body_size_limit(loaded):
    api = TestClient(make_app(loaded, max_body_bytes=200))
    r = api.post("/models/sentiment/classify", json={"text": "x" * 500})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"text": "'
        yield b"x" * 500
        yield b'"}'

    r = api.post("/models/sentiment/classify", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_tokens_per_request_limit(loaded):
    api = TestClient(make_app(loaded, max_new_tokens=10))
    r = api.post("/models/poems/generate", json={"prompt": "a", "max_new_tokens": 11})
    assert r.status_code == 400 and "max_new_tokens" in r.json()["error"]
    assert api.post("/models/poems/generate", json={"prompt": "a"}).json()["tokens"] == 10  # capped default
    r = api.post("/models/poems/predict", json={"inputs": ["a"], "options": {"max_new_tokens": 11}})
    assert r.status_code == 400
    s = api.post("/models/poems/sessions").json()["session"]
    assert api.post(f"/models/poems/sessions/{s}/step", json={"text": "a" * 11}).status_code == 400


def test_concurrency_limit_answers_429_with_retry_after(loaded):
    app = make_app(loaded, max_concurrent=1, max_queue=1, retry_after_s=7)

    async def go():
        async with client(app) as c:
            body = {"prompt": "a", "max_new_tokens": 300}
            return await asyncio.gather(*[c.post("/models/poems/generate", json=body) for _ in range(6)])

    responses = run_async(go())
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 2 and 429 in codes
    busy = next(r for r in responses if r.status_code == 429)
    assert busy.headers["Retry-After"] == "7" and "busy" in busy.json()["error"]


def test_request_timeout(loaded):
    api = TestClient(make_app(loaded, request_timeout_s=0.05, max_new_tokens=1_000_000))
    r = api.post("/models/poems/generate", json={"prompt": "a", "max_new_tokens": 1_000_000})
    assert r.status_code == 504 and "request_timeout_s" in r.json()["error"]
    with api.stream("POST", "/models/poems/generate/stream", json={"prompt": "a", "max_new_tokens": 1_000_000}) as r:
        events = _events(r.read().decode())
    assert events[-1][0] == "error" and "request_timeout_s" in events[-1][1]["error"]


# --- malformed requests: 4xx with a JSON body on every endpoint ---------------------------------------------

BAD_BODIES = [b"", b"{", b"null", b"[]", b'"text"', b"123", b'{"text": 5}', b'{"prompt": ["a"]}', b'{"unknown": 1}',
              b'{"prompt": "a", "max_new_tokens": "5"}', b'{"prompt": "a", "max_new_tokens": -1}',
              b'{"prompt": "a", "temperature": "hot"}', b'{"prompt": ""}', b'{"inputs": "a"}',
              b'{"inputs": ["a"], "options": {"seed": "x"}}', b'{"inputs": ["a"], "options": []}',
              b'{"text": "a", "texts": ["b"]}', b'{"texts": []}', b'{"tokens": [999999]}',
              b'{"tokens": ["a"]}', b'{"features": [[1.0]]}', b'{"text": ""}', b'{"top_k": 0, "text": "a"}',
              b"\xff\xfe", b'{"prompt": "\\ud800"}', b'{"text": "a"}' * 3]


def test_malformed_bodies_on_every_endpoint_are_4xx_json(api):
    session = api.post("/models/poems/sessions").json()["session"]
    paths = [f"/models/{m}/{e}" for m in ("poems", "sentiment", "ner", "dates", "missing")
             for e in ("generate", "generate/stream", "classify", "tag", "translate", "predict", "sessions")]
    paths += [f"/models/poems/sessions/{session}/step", "/models/poems/sessions/unknown/step",
              "/models/sentiment/sessions/x/step", "/health", "/models"]
    for path in paths:
        for body in BAD_BODIES:
            r = api.post(path, content=body, headers={"Content-Type": "application/json"})
            takes_no_body = path == "/models/poems/sessions"  # opening a session reads no body
            assert (r.status_code < 500 if takes_no_body else 400 <= r.status_code < 500), (path, body, r.text)
            assert takes_no_body or "error" in r.json(), (path, body, r.text)
    for path in ("/models/missing", "/models/poems/sessions/unknown", "/nothing"):
        for method in ("get", "delete"):
            r = getattr(api, method)(path)
            assert 400 <= r.status_code < 500 and "error" in r.json()


def test_unknown_session_ids_are_404_json(api):
    r = api.post("/models/poems/sessions/not-a-session/step", json={"text": "a"})
    assert r.status_code == 404 and "no session" in r.json()["error"]
    assert api.delete("/models/poems/sessions/not-a-session").status_code == 404


# --- a client that goes away mid-stream ----------------------------------------------------------------------

def test_a_client_disconnecting_mid_stream_stops_the_generation(live):
    before = httpx.get(f"{live.url}/health").json()["generations"]["stopped_early"]
    with httpx.Client(base_url=live.url, timeout=10) as c:
        with c.stream("POST", "/models/poems/generate/stream", json={"prompt": "a", "max_new_tokens": 100_000}) as r:
            lines = r.iter_lines()
            seen = sum(1 for line, _ in zip(lines, range(12)) if line.startswith("event: token"))
            assert seen >= 3
            assert httpx.get(f"{live.url}/health").json()["generations"]["active"] == 1
    end = time.monotonic() + 5
    while time.monotonic() < end:
        g = httpx.get(f"{live.url}/health").json()["generations"]
        if g["active"] == 0:
            break
        time.sleep(0.05)
    assert g["active"] == 0 and g["stopped_early"] == before + 1
    assert httpx.get(f"{live.url}/health").json()["requests"]["active"] == 0  # the slot came back


def _events(text: str) -> list:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        out.append((lines.get("event"), json.loads(lines.get("data", "{}"))))
    return out


def test_live_server_binds_loopback(live):
    assert live.url.startswith("http://127.0.0.1:")
    assert LiveServer  # the helper the page tests use too


def test_a_generation_still_in_its_worker_thread_is_closed_once_its_step_returns():
    """The race behind a client leaving mid-step: the token generator is inside next() in a worker thread when
    the stream closes it. Closing must not raise, and the generator must still be closed afterwards."""
    import threading
    import time

    from rnnlab.serve.routes_tasks import _close_when_idle

    entered, release, closed = threading.Event(), threading.Event(), threading.Event()

    def tokens():
        try:
            while True:
                entered.set()
                release.wait(5)
                yield 1
        finally:
            closed.set()

    gen = tokens()
    worker = threading.Thread(target=next, args=(gen,))
    worker.start()
    assert entered.wait(5) and gen.gi_running
    _close_when_idle(gen)  # would raise "generator already executing" with a plain close()
    assert not closed.is_set()
    release.set()
    worker.join(5)
    deadline = time.monotonic() + 5
    while not closed.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed.is_set()

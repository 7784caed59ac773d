"""The lean step path (raw ASGI in front of FastAPI) answers exactly as FastAPI's route: same bytes, same errors."""
import asyncio
import json

import pytest

from conftest import make_app, run_async

STEP = "/models/poems/sessions/{}/step"


async def _call(app, path: str, body: bytes = b"", *, method: str = "POST", chunks: list | None = None,
                length: bytes | None = None) -> tuple[int, list, bytes]:
    """One request straight through ``app``'s ASGI interface: (status, raw headers, body bytes)."""
    parts = chunks if chunks is not None else [body]
    headers = [(b"host", b"test"), (b"content-type", b"application/json")]
    if chunks is None or length is not None:
        headers.append((b"content-length", length if length is not None else str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    messages = [{"type": "http.request", "body": c, "more_body": i < len(parts) - 1} for i, c in enumerate(parts)]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(5)  # nothing reads past the body; a wait here would show as a timeout
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 5)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], start["headers"], b"".join(m.get("body", b"") for m in sent[1:])


def _apps(loaded, **limits):
    """(lean app, FastAPI-route app) with the same limits, and the number of requests the lean path took."""
    lean, plain = make_app(loaded, lean_step=True, **limits), make_app(loaded, lean_step=False, **limits)
    taken = []
    inner = lean.lean

    async def counting(*args):
        taken.append(args[:2])
        return await inner(*args)

    lean.lean = counting
    assert plain.lean is None
    return lean, plain, taken


async def _open(app) -> str:
    status, _, body = await _call(app, "/models/poems/sessions")
    assert status == 201
    return json.loads(body)["session"]


def test_lean_and_fastapi_paths_give_identical_answers(loaded):
    lean, plain, taken = _apps(loaded)

    async def go(app):
        sid = await _open(app)
        answers = []
        for body in ({"text": "def f"}, {"tokens": [3, 4], "all_steps": True, "top_k": 3}, {"text": "x", "probe": True},
                     {"text": "ab", "units": 4, "all_steps": True}, {"text": "é"}):
            status, headers, raw = await _call(app, STEP.format(sid), json.dumps(body).encode())
            answers.append((status, headers, raw.replace(sid.encode(), b"<id>")))
        return answers

    a, b = run_async(go(lean)), run_async(go(plain))
    assert len(taken) == 5  # every step went through the lean path
    assert a == b
    assert all(status == 200 for status, _, _ in a)
    assert json.loads(a[1][2])["steps"] == 7 and len(json.loads(a[1][2])["outputs"]) == 2


BAD = [  # (name, body, what the answer must say): every one answered alike by both paths
    ("malformed JSON", b'{"text": ', 422, "Invalid JSON"),
    ("empty body", b"", 422, "Invalid JSON"),
    ("not an object", b'["a"]', 422, ""),
    ("text of the wrong type", b'{"text": 3}', 422, "text"),
    ("top_k as a string", b'{"text": "a", "top_k": "5"}', 422, "top_k"),
    ("token ids as floats", b'{"tokens": [1.5]}', 422, "tokens"),
    ("top_k out of range", b'{"text": "a", "top_k": 0}', 422, "top_k"),
    ("an unknown field", b'{"txt": "a"}', 422, "txt"),
    ("no input field", b'{}', 400, "exactly one"),
    ("two input fields", b'{"text": "a", "tokens": [1]}', 400, "exactly one"),
    ("empty text", b'{"text": ""}', 400, "nothing to feed"),
    ("a token out of the vocabulary", b'{"tokens": [100000]}', 400, "tokens must be ids"),
    ("features for a language model", b'{"features": [[1.0]]}', 400, "language model"),
]


@pytest.mark.parametrize("name,body,status,says", BAD, ids=[b[0] for b in BAD])
def test_bad_bodies_answer_alike(loaded, name, body, status, says):
    lean, plain, taken = _apps(loaded)

    async def go(app):
        sid = await _open(app)
        return await _call(app, STEP.format(sid), body)

    a, b = run_async(go(lean)), run_async(go(plain))
    assert taken and a == b
    assert a[0] == status and says in json.loads(a[2])["error"], a


def test_unknown_model_session_and_models_that_cannot_stream_answer_alike(loaded):
    lean, plain, taken = _apps(loaded)

    async def go(app):
        sid = await _open(app)
        return [await _call(app, path, b'{"text": "a"}') for path in (
            "/models/nope/sessions/x/step", STEP.format("nope"), f"/models/sentiment/sessions/{sid}/step",
            f"/models/dates/sessions/{sid}/step")]

    a, b = run_async(go(lean)), run_async(go(plain))
    assert len(taken) == 4 and a == b
    assert [r[0] for r in a] == [404, 404, 400, 400]
    assert "no model 'nope'" in json.loads(a[0][2])["error"] and "no session" in json.loads(a[1][2])["error"]


def test_expired_session_is_410_on_both_paths(loaded):
    lean, plain, taken = _apps(loaded, session_ttl_s=10)

    async def go(app):
        now = [0.0]
        app.state.rnnlab.sessions.clock = lambda: now[0]
        sid = await _open(app)
        first = await _call(app, STEP.format(sid), b'{"text": "a"}')
        now[0] = 11.0
        second = await _call(app, STEP.format(sid), b'{"text": "a"}')
        return first[0], (second[0], second[1], second[2].replace(sid.encode(), b"<id>"))

    a, b = run_async(go(lean)), run_async(go(plain))
    assert len(taken) == 2 and a == b
    assert a[0] == 200 and a[1][0] == 410 and "expired" in json.loads(a[1][2])["error"]


def test_oversize_and_bad_length_bodies_answer_alike(loaded):
    lean, plain, taken = _apps(loaded, max_body_bytes=100)
    big = json.dumps({"text": "x" * 200}).encode()

    async def go(app):
        sid = await _open(app)
        path = STEP.format(sid)
        return [await _call(app, path, big),  # by Content-Length
                await _call(app, path, chunks=[big[:50], big[50:]]),  # no Content-Length: counted as it arrives
                await _call(app, path, b'{"text": "a"}', length=b"twelve")]

    a, b = run_async(go(lean)), run_async(go(plain))
    assert len(taken) == 3 and a == b
    assert [r[0] for r in a] == [413, 413, 400]
    assert "max_body_bytes" in json.loads(a[0][2])["error"]


def test_other_requests_go_to_fastapi_and_the_schema_documents_the_route(loaded):
    lean, plain, taken = _apps(loaded)

    async def go(app):
        sid = await _open(app)
        return [await _call(app, STEP.format(sid), method="GET"), await _call(app, STEP.format(sid) + "/x"),
                await _call(app, "/health", method="GET")]

    a, b = run_async(go(lean)), run_async(go(plain))
    assert not taken
    assert [r[0] for r in a] == [r[0] for r in b] == [405, 404, 200]
    post = lean.openapi()["paths"]["/models/{name}/sessions/{session_id}/step"]["post"]
    assert "top_k" in post["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_lean_step_must_be_a_bool():
    from rnnlab.serve import ServeLimits

    with pytest.raises(ValueError, match="--limits.lean_step must be true or false"):
        ServeLimits(lean_step=1)

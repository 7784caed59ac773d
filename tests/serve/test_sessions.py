"""Streaming sessions: micro-batched steps equal steps alone, TTL, limits, one step at a time per session."""
import asyncio
import time

import torch
from fastapi.testclient import TestClient

from conftest import client, make_app, run_async
from rnnlab.serve.sessions import MicroBatcher
from rnnlab.serve.stepping import TokenStepper, stepper_for

TEXTS = ["def f", "The cat", "return x", "mat 3.", "sat on", "x + 1", "f2(x)", "on the"]


def _feed_alone(loaded, text: str) -> list:
    """Hidden units after each character, the session stepped alone (batch of one, no batcher)."""
    m = loaded["poems"]
    stepper = stepper_for(m)
    state, out = stepper.initial_state(), []
    for i in m.extra["tokenizer"].encode(text):
        o, state = stepper.step(torch.tensor([i]), state)
        out.append((o["hidden"][0], o["logits"][0]))
    return out


def test_micro_batched_steps_equal_each_session_stepped_alone(loaded):
    app = make_app(loaded, batch_window_ms=20, max_batch=64)

    async def go():
        async with client(app) as c:
            ids = [(await c.post("/models/poems/sessions")).json()["session"] for _ in TEXTS]
            responses = await asyncio.gather(*[
                c.post(f"/models/poems/sessions/{s}/step", json={"text": t, "all_steps": True, "top_k": 3})
                for s, t in zip(ids, TEXTS)])
            return [r.json() for r in responses], (await c.get("/health")).json()

    results, health = run_async(go())
    assert health["batching"]["poems"]["largest_batch"] > 1  # the steps were batched
    for text, result in zip(TEXTS, results):
        alone = _feed_alone(loaded, text)
        assert result["steps"] == len(text) == len(result["outputs"])
        for out, (hidden, logits) in zip(result["outputs"], alone):
            assert torch.allclose(torch.tensor(out["hidden"]), hidden, atol=1e-5)  # rounded to 5 decimals
            p = torch.softmax(logits, -1)
            assert abs(out["next"][0]["p"] - float(p.max())) < 1e-6


def test_the_batcher_itself_matches_single_steps_to_1e6(loaded):
    stepper = stepper_for(loaded["poems"])
    assert isinstance(stepper, TokenStepper)
    batcher = MicroBatcher(lambda x, s: stepper.step(x, s), window_s=0.01, max_batch=64)
    torch.manual_seed(0)
    states = [stepper.step(torch.tensor([i % 20]), stepper.initial_state())[1] for i in range(40)]
    tokens = [torch.tensor([(3 * i) % 30]) for i in range(40)]

    async def go():
        return await asyncio.gather(*[batcher.submit(x, s) for x, s in zip(tokens, states)])

    batched = run_async(go())
    assert batcher.largest > 1
    for x, s, (out, state) in zip(tokens, states, batched):
        ref, ref_state = stepper.step(x, s)
        assert torch.allclose(out["logits"], ref["logits"], atol=1e-6)
        assert torch.allclose(state.h, ref_state.h, atol=1e-6) and torch.allclose(state.c, ref_state.c, atol=1e-6)


def test_concurrent_steps_on_one_session_are_serialised(loaded):
    app = make_app(loaded, batch_window_ms=1)

    async def go():
        async with client(app) as c:
            s = (await c.post("/models/poems/sessions")).json()["session"]
            await asyncio.gather(*[c.post(f"/models/poems/sessions/{s}/step", json={"text": "ab"}) for _ in range(15)])
            return (await c.post(f"/models/poems/sessions/{s}/step", json={"text": "a"})).json()

    last = run_async(go())
    assert last["steps"] == 31
    alone = _feed_alone(loaded, "ab" * 15 + "a")
    assert torch.allclose(torch.tensor(last["outputs"][0]["hidden"]), alone[-1][0], atol=1e-5)


def test_session_after_its_ttl_is_410_and_unknown_is_404(loaded):
    api = TestClient(make_app(loaded, session_ttl_s=0.2))
    s = api.post("/models/poems/sessions").json()["session"]
    assert api.post(f"/models/poems/sessions/{s}/step", json={"text": "a"}).status_code == 200
    time.sleep(0.3)
    r = api.post(f"/models/poems/sessions/{s}/step", json={"text": "a"})
    assert r.status_code == 410 and "expired" in r.json()["error"]
    assert api.get("/health").json()["sessions"]["open"] == 0
    assert api.post("/models/poems/sessions/nope/step", json={"text": "a"}).status_code == 404


def test_session_count_and_memory_limits_and_delete(loaded):
    api = TestClient(make_app(loaded, max_sessions=2))
    a = api.post("/models/poems/sessions").json()
    api.post("/models/poems/sessions")
    r = api.post("/models/poems/sessions")
    assert r.status_code == 429 and "max_sessions" in r.json()["error"] and "Retry-After" in r.headers
    assert api.delete(f"/models/poems/sessions/{a['session']}").json()["closed"] is True
    assert api.post("/models/poems/sessions").status_code == 201
    assert api.get("/health").json()["sessions"]["state_bytes"] == 2 * a["state_bytes"]
    small = TestClient(make_app(loaded, max_session_bytes=a["state_bytes"]))
    assert small.post("/models/poems/sessions").status_code == 201
    r = small.post("/models/poems/sessions")
    assert r.status_code == 429 and "max_session_bytes" in r.json()["error"]


def test_models_that_cannot_stream_say_so(loaded):
    api = TestClient(make_app(loaded))
    r = api.post("/models/dates/sessions")
    assert r.status_code == 400 and "cannot stream" in r.json()["error"]

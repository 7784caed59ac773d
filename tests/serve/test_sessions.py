"""Streaming sessions: micro-batched steps equal steps alone, TTL, limits, one step at a time per session."""
import asyncio
import time

import torch
from fastapi.testclient import TestClient

from conftest import client, make_app, run_async
from rnnlab.serve.sessions import MicroBatcher
from rnnlab.serve.stepping import SessionStep, TokenStepper, stepper_for

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
    """40 sessions' rows of a state table, stepped by the micro-batcher, equal each state stepped alone."""
    stepper = stepper_for(loaded["poems"])
    assert isinstance(stepper, TokenStepper)
    table = stepper.new_table(capacity=8)
    batcher = MicroBatcher(lambda steps: stepper.step_sessions(table, steps), window_s=0.01, max_batch=64)
    torch.manual_seed(0)
    states = [stepper.step(torch.tensor([i % 20]), stepper.initial_state())[1] for i in range(40)]
    rows = [table.allocate() for _ in states]
    for r, s in zip(rows, states):
        table.scatter([r], s)
    tokens = [torch.tensor([(3 * i) % 30]) for i in range(40)]
    probe = [i % 3 == 0 for i in range(40)]  # some rows ask for the gates

    async def go():
        return await asyncio.gather(*[batcher.submit(SessionStep(r, x, p, 16, 3))
                                      for r, x, p in zip(rows, tokens, probe)])

    batched = run_async(go())
    assert batcher.largest > 1
    for r, x, s, p, out in zip(rows, tokens, states, probe, batched):
        ref, ref_state = stepper.step(x, s, probe=True)
        torch.testing.assert_close(torch.tensor(out["hidden"]), ref["hidden"][0, :16], atol=1e-6, rtol=0)
        top_p, top_ids = torch.softmax(ref["logits"][0], -1).topk(3)
        assert out["top"][1] == top_ids.tolist()
        torch.testing.assert_close(torch.tensor(out["top"][0]), top_p, atol=1e-6, rtol=0)
        assert ("gates" in out) == p
        if p:
            torch.testing.assert_close(torch.tensor(out["gates"]["forget"]), ref["gate_forget"][0, :16],
                                       atol=1e-6, rtol=0)
        state = table.gather([r])
        torch.testing.assert_close(state.h, ref_state.h, atol=1e-6, rtol=0)
        torch.testing.assert_close(state.c, ref_state.c, atol=1e-6, rtol=0)


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


def test_gates_only_when_the_step_asks_and_units_choose_the_hidden_size(loaded):
    api = TestClient(make_app(loaded))
    s = api.post("/models/poems/sessions").json()["session"]
    plain = api.post(f"/models/poems/sessions/{s}/step", json={"text": "a"}).json()["outputs"][0]
    assert "gates" not in plain and len(plain["hidden"]) == 16  # the fixture's probe_units
    probed = api.post(f"/models/poems/sessions/{s}/step", json={"text": "a", "probe": True, "units": 4}).json()
    out = probed["outputs"][0]
    assert len(out["hidden"]) == 4 and set(out["gates"]) == {"input", "forget", "output"}
    assert all(len(g) == 4 and all(0 <= v <= 1 for v in g) for g in out["gates"].values())
    small = api.post(f"/models/poems/sessions/{s}/step", json={"text": "a", "units": 0, "top_k": 1}).json()
    assert set(small["outputs"][0]) == {"input", "next"}


def test_a_closed_sessions_row_is_reused_from_the_initial_state(loaded):
    api = TestClient(make_app(loaded))
    a = api.post("/models/poems/sessions").json()["session"]
    api.post(f"/models/poems/sessions/{a}/step", json={"text": "The cat"})
    api.delete(f"/models/poems/sessions/{a}")
    b = api.post("/models/poems/sessions").json()["session"]
    table = api.get("/health").json()["state_tables"]["poems"]
    assert table["rows"] == 1 and table["capacity"] >= 1
    out = api.post(f"/models/poems/sessions/{b}/step", json={"text": "d", "all_steps": True}).json()["outputs"]
    alone = _feed_alone(loaded, "d")
    assert torch.allclose(torch.tensor(out[0]["hidden"]), alone[0][0], atol=1e-5)

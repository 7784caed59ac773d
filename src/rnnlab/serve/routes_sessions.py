"""Streaming sessions: open, step (micro-batched across sessions), close."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from .schemas import StepRequest
from .stepping import SessionStep, TokenStepper, stepper_for


def add(app: FastAPI, state) -> None:
    limits = state.limits

    @app.post("/models/{name}/sessions", status_code=201, summary="open a streaming session (the state stays here)")
    async def open_session(name: str) -> dict:
        m, stepper = _streaming(state, name)
        session = state.sessions.create(name, state.table(m))
        return {"session": session.id, "model": name, "ttl_s": limits.session_ttl_s, "state_bytes": session.bytes}

    @app.post("/models/{name}/sessions/{session_id}/step", summary="feed inputs; get outputs, the state moves on",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": StepRequest.model_json_schema()}}}})
    async def step(name: str, session_id: str, request: Request) -> dict:
        # a Response skips FastAPI's jsonable_encoder pass over the outputs (plain floats, ints and strings already);
        # with --limits.lean_step (the default) requests to this path are answered by .lean before FastAPI sees them
        return JSONResponse(await step_answer(state, name, session_id, await request.body()))

    @app.delete("/models/{name}/sessions/{session_id}", summary="close a session")
    async def close(name: str, session_id: str) -> dict:
        await state.sessions.delete(session_id, name)
        return {"session": session_id, "closed": True}


async def step_answer(state, name: str, session_id: str, raw: bytes) -> dict:
    """The answer to ``POST /models/{name}/sessions/{session_id}/step`` with body ``raw`` (JSON bytes), for both
    the FastAPI route and the lean path: the body validated, each input submitted to the model's micro-batcher
    (one step request at a time per session). Raises what :func:`~.app.error_answer` maps to 4xx answers."""
    limits = state.limits
    body = _step_body(raw)
    m, stepper = _streaming(state, name)
    session = state.sessions.get(session_id, name)
    inputs, labels = _inputs(m, stepper, body, limits)
    units = limits.probe_units if body.units is None else min(body.units, limits.probe_units)
    batcher = state.batcher(m)
    outputs = []
    async with session.lock:  # one step request at a time per session: its row is in one step at a time
        for x, label in zip(inputs, labels):
            out = await batcher.submit(SessionStep(session.row, x, body.probe, units, body.top_k))
            session.steps += 1
            outputs.append(_describe(m, out, label))
        session.last_used = state.sessions.clock()
    return {"session": session_id, "steps": session.steps, "outputs": outputs if body.all_steps else outputs[-1:]}


def _streaming(state, name: str):
    """The served model ``name`` and its stepper; 404 for an unknown model, 400 for one that cannot stream."""
    m = state.model(name)
    stepper = stepper_for(m, state.limits.probe_units)
    if stepper is None:
        raise HTTPException(400, f"model {name!r} ({m.task}) cannot stream: sessions need a unidirectional "
                                 "recurrent encoder (lstm, gru, rnn, mingru, minlstm)")
    return m, stepper


def _step_body(raw: bytes) -> StepRequest:
    """The step body, parsed and validated in one pass by pydantic (FastAPI's own body handling, a JSON parse, a
    walk of its dependencies and a validation of the dict, was a sixth of the server's time per step request)."""
    try:
        return StepRequest.model_validate_json(raw)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False, include_context=False)) from None


def _inputs(m, stepper, body: StepRequest, limits) -> tuple[list, list]:
    """The request's inputs per step (a token id, or a feature vector as a list), with a label for each."""
    given = [k for k in ("text", "tokens", "features") if getattr(body, k) is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of 'text', 'tokens' (language models) or 'features' (feature models)")
    if isinstance(stepper, TokenStepper):
        if body.features is not None:
            raise ValueError(f"model {m.name!r} is a language model: feed 'text' or 'tokens', not 'features'")
        tokenizer = m.extra["tokenizer"]
        ids = tokenizer.encode(body.text) if body.text is not None else list(body.tokens)
        V = m.model.config.vocab_size
        bad = [i for i in ids if not 0 <= i < V]
        if bad:
            raise ValueError(f"tokens must be ids in [0, {V}), got {bad[:5]}")
        labels = [_token_text(m)(i) for i in ids]
        xs = list(ids)  # token ids: the batch's tensor is made once, in the worker
    else:
        if body.features is None:
            raise ValueError(f"model {m.name!r} reads feature vectors: feed 'features' (a list of vectors)")
        size = m.model.inputs.output_size
        if any(len(v) != size for v in body.features):
            raise ValueError(f"each feature vector must hold {size} numbers")
        xs = [list(v) for v in body.features]
        labels = [None] * len(xs)
    if not xs:
        raise ValueError("nothing to feed: the inputs are empty")
    if len(xs) > limits.max_new_tokens:
        raise ValueError(f"{len(xs)} steps in one request: the server takes at most {limits.max_new_tokens} "
                         "(--limits.max_new_tokens)")
    return xs, labels


def _describe(m, out: dict, label) -> dict:
    """A step's outputs (plain values from :meth:`Stepper.step_sessions`) as the response entry."""
    entry: dict = {}
    if out["hidden"]:
        entry["hidden"] = [round(v, 5) for v in out["hidden"]]
    if label is not None:
        entry["input"] = label
    if "gates" in out:
        entry["gates"] = {k: [round(v, 4) for v in g] for k, g in out["gates"].items()}
    if "top" in out:
        tokens = _token_text(m)
        entry["next"] = [{"id": i, "token": tokens(i), "p": round(p, 6)} for p, i in zip(*out["top"])]
    if "output" in out:
        entry["output"] = [round(v, 6) for v in out["output"]]
    return entry


def _token_text(m):
    """The text of one token id, decoded once per id and model (the tokenizer's decode is the slow part)."""
    cached = m.extra.get("_token_text")
    if cached is None:
        tokenizer, texts = m.extra["tokenizer"], {}

        def cached(i: int) -> str:
            if i not in texts:
                texts[i] = tokenizer.decode([i])
            return texts[i]

        m.extra["_token_text"] = cached
    return cached

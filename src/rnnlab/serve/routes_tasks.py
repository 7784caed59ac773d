"""The dedicated endpoints of the built-in tasks: generate (+ SSE stream), classify, tag, translate."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import torch
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException

from .generation import TokenText, generate_tokens, sampling
from .models import Served
from .schemas import GenerateRequest, TextsRequest, TranslateRequest
from .stepping import TokenStepper, stepper_for


def _of_task(state, name: str, task: str) -> Served:
    m = state.model(name)
    if m.task != task:
        raise HTTPException(404, f"model {name!r} is a {m.task} model: it has no {task} endpoint "
                                 f"(GET /models/{name} lists its endpoints)")
    return m


def _inputs(state, body: TextsRequest) -> list[str]:
    texts = body.inputs()
    if not texts or len(texts) > state.limits.max_inputs:
        raise ValueError(f"give 1 to {state.limits.max_inputs} texts (--limits.max_inputs), got {len(texts)}")
    if not all(t.strip() for t in texts):
        raise ValueError("every text must hold something besides spaces")
    return texts


def add(app: FastAPI, state) -> None:  # noqa: C901 - one closure per endpoint
    limits = state.limits

    def prepare(name: str, body: GenerateRequest):
        m = _of_task(state, name, "textgen")
        if body.max_new_tokens is not None and body.max_new_tokens > limits.max_new_tokens:
            raise ValueError(f"max_new_tokens={body.max_new_tokens} exceeds the server's limit of "
                             f"{limits.max_new_tokens} (--limits.max_new_tokens)")
        s = sampling(m.config, body.model_dump(), limits.max_new_tokens)
        tokenizer = m.extra["tokenizer"]
        ids = tokenizer.encode(body.prompt)
        if not ids:
            raise ValueError(f"the prompt {body.prompt!r} encodes to no tokens")
        stepper = stepper_for(m, limits.probe_units)
        return m, s, tokenizer, ids, stepper if isinstance(stepper, TokenStepper) else None

    @app.post("/models/{name}/generate", summary="continue a prompt (the whole text at once)")
    async def generate(name: str, body: GenerateRequest) -> dict:
        m, s, tokenizer, ids, stepper = prepare(name, body)
        deadline = time.monotonic() + limits.request_timeout_s

        def run() -> list[int]:
            return [t["id"] for t in generate_tokens(m.model, stepper, ids, s, banned=m.extra["banned"],
                                                     deadline=deadline)]

        try:
            out = await state.compute(run)
        except TimeoutError:
            raise HTTPException(504, f"generation took longer than {limits.request_timeout_s:g} s "
                                     "(--limits.request_timeout_s)") from None
        return {"model": name, "prompt": body.prompt, "text": body.prompt + tokenizer.decode(out),
                "tokens": len(out), "seed": s.seed}

    @app.post("/models/{name}/generate/stream", summary="continue a prompt, streaming tokens (server-sent events)")
    async def generate_stream(name: str, body: GenerateRequest):
        m, s, tokenizer, ids, stepper = prepare(name, body)
        slot = state.admission.slot()
        await slot.__aenter__()  # Busy (429) is raised here, before the stream starts
        tokens = generate_tokens(m.model, stepper, ids, s, banned=m.extra["banned"], probe=body.probe)
        return StreamingResponse(_events(state, slot, tokens, TokenText(tokenizer), body.prompt, s),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/models/{name}/classify", summary="class probabilities of each text")
    async def classify(name: str, body: TextsRequest) -> dict:
        from rnnlab.tasks.classify import probabilities

        m = _of_task(state, name, "classify")
        texts, labels, pipeline = _inputs(state, body), m.extra["labels"], m.extra["pipeline"]

        def run():
            probs = probabilities(m.model, [pipeline.encode(t)[0] for t in texts], len(texts))
            return [{"text": t, "label": labels[int(p.argmax())],
                     "probabilities": {lab: round(float(q), 6) for lab, q in zip(labels, p)}}
                    for t, p in zip(texts, probs)]

        return {"model": name, "labels": labels, "outputs": await state.compute(run)}

    @app.post("/models/{name}/tag", summary="a tag per whitespace token, and the entities")
    async def tag(name: str, body: TextsRequest) -> dict:
        from rnnlab.tasks.tag import entities, tag_sentences

        m = _of_task(state, name, "tag")
        sentences = [t.split() for t in _inputs(state, body)]
        encoder, scheme = m.extra["encoder"], m.extra["scheme"]

        def run():
            tags = tag_sentences(m.model, encoder, sentences, batch_size=len(sentences))
            return [{"tokens": s, "tags": t, "entities": entities(s, t) if scheme in ("bio", "bioes") else []}
                    for s, t in zip(sentences, tags)]

        return {"model": name, "scheme": scheme, "outputs": await state.compute(run)}

    @app.post("/models/{name}/translate", summary="translate, with the attention alignment where the model has one")
    async def translate(name: str, body: TranslateRequest) -> dict:
        m = _of_task(state, name, "translate")
        texts = _inputs(state, body)
        if body.max_new_tokens is not None and body.max_new_tokens > limits.max_new_tokens:
            raise ValueError(f"max_new_tokens={body.max_new_tokens} exceeds the server's limit of "
                             f"{limits.max_new_tokens} (--limits.max_new_tokens)")
        t = m.extra["translator"]
        outputs = await state.compute(_translate, t, texts, body.beam_size, body.max_new_tokens, limits)
        return {"model": name, "outputs": outputs}


def _translate(t, texts: list[str], beam_size, max_new_tokens, limits) -> list[dict]:
    from rnnlab.structures import Seq2Seq
    from rnnlab.tasks import translate as tr

    beam = beam_size or t.config.decode.beam_size
    limit = min(max_new_tokens or t.config.decode.max_new_tokens or t.config.max_target_length + 1,
                limits.max_new_tokens)
    has_attention = isinstance(t.model, Seq2Seq) and t.model.config.attention != "none"
    out = []
    for text in texts:
        source = text.strip()
        ids = t.source.encode(source)
        if not ids:
            raise ValueError(f"the text {source!r} encodes to no source tokens")
        target = tr.translate_ids(t.model, [ids], batch_size=1, max_new_tokens=limit, beam_size=beam,
                                  length_penalty=t.config.decode.length_penalty)[0]
        if tr.EOS in target:
            target = target[: target.index(tr.EOS) + 1]
        entry = {"source": source, "translation": tr.decode_target(t.target, target),
                 "source_units": [t.source.decode([i]) for i in ids],
                 "target_units": [t.target.decode([i - tr.SPECIALS]) if i >= tr.SPECIALS else "</s>"
                                  for i in target],
                 "attention": None}
        if has_attention and target:
            weights = tr.attention_weights(t.model, ids, target)  # (T, S)
            entry["attention"] = [[round(float(w), 4) for w in row] for row in weights]
        out.append(entry)
    return out


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _events(state, slot, tokens, text: TokenText, prompt: str, s):
    """The SSE stream: one 'token' event per sampled token, then 'done' (or 'error'). Each token is computed in
    a worker thread; a client that goes away cancels this generator at its next await, and ``finally`` closes
    the token iterator, releases the slot and counts the generation out."""
    state.active_generations += 1
    deadline = time.monotonic() + state.limits.request_timeout_s
    finished = False
    n = 0
    try:
        yield _sse("start", {"prompt": prompt, "max_new_tokens": s.max_new_tokens, "seed": s.seed})
        while True:
            if time.monotonic() > deadline:
                yield _sse("error", {"error": f"generation took longer than {state.limits.request_timeout_s:g} s "
                                              "(--limits.request_timeout_s)"})
                break
            item = await asyncio.to_thread(next, tokens, None)
            if item is None:
                finished = True
                yield _sse("done", {"text": prompt + text.text, "tokens": n})
                break
            n += 1
            yield _sse("token", {"text": text.add(item["id"]), **item})
    finally:
        _close_when_idle(tokens)
        if not finished:
            state.generations_stopped += 1
        state.active_generations -= 1
        await slot.__aexit__(None, None, None)


def _close_when_idle(tokens) -> None:
    """Close the token generator. A client that went away mid-step leaves a worker thread inside
    ``next(tokens)`` (closing it then raises "generator already executing"): close it once that step returns."""
    try:
        tokens.close()
    except ValueError:
        def close_after_step() -> None:
            while tokens.gi_running:
                time.sleep(0.001)
            tokens.close()

        threading.Thread(target=close_after_step, daemon=True, name="rnnlab-close-generation").start()


__all__ = ["add", "torch"]

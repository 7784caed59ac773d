"""The lean path of the hot route, ``POST /models/{name}/sessions/{session_id}/step``: raw ASGI in front of FastAPI.

A streaming session steps one character per request, so the server's cost per request outside the model bounds
how much micro-batching can gain over HTTP. FastAPI's route costs 0.5-0.7 ms of CPU per request on the load
benchmark (Starlette's middleware chain and routing, FastAPI's request and dependency handling, the response
classes); the lean path answers the same requests in the app's own ``__call__``: one regex on the path, the body
read under the same size limit as :class:`~.app.BodyLimit` (400 for a bad Content-Length, 413 beyond
``--limits.max_body_bytes``), the same :func:`~.routes_sessions.step_answer` (the body validated by the same
pydantic model in one pass, the same micro-batcher) and the same mapping of errors to answers
(:func:`~.app.error_answer`: 422 naming the field, 404 unknown model or session, 410 expired, 400 bad values,
429 with Retry-After), the JSON written with ``http.response.start``/``body`` as Starlette's ``JSONResponse``
writes it (the same bytes and headers). Everything else, and the OpenAPI schema (the FastAPI route stays
declared), goes to FastAPI. ``--limits.lean_step false`` turns it off (the benchmark's "before").
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable

from fastapi import FastAPI

STEP_PATH = re.compile(r"/models/([^/]+)/sessions/([^/]+)/step")  # FastAPI's {name} matches [^/]+ as well


class ServeApp(FastAPI):
    """FastAPI with the step route answered first by ``lean`` (a :class:`LeanStep`) when one is set."""

    lean: LeanStep | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self.lean is not None and scope["type"] == "http" and scope["method"] == "POST" \
                and not scope.get("root_path"):
            match = STEP_PATH.fullmatch(scope["path"])
            if match is not None:
                return await self.lean(match[1], match[2], scope, receive, send)
        await super().__call__(scope, receive, send)


class LeanStep:
    """Answers one step request: ``answer(name, session_id, raw_body) -> dict`` computes it, ``errors(exc)`` maps
    an exception to (status, body, headers) or None (unexpected: raised on, so the server answers 500)."""

    def __init__(self, answer: Callable, errors: Callable, max_body_bytes: int) -> None:
        self.answer, self.errors, self.max_body_bytes = answer, errors, max_body_bytes

    async def __call__(self, name: str, session_id: str, scope, receive, send) -> None:
        raw = await read_body(scope, receive, send, self.max_body_bytes)
        if raw is None:
            return  # answered (400/413) or the client went away
        try:
            status, body, headers = 200, await self.answer(name, session_id, raw), None
        except Exception as exc:
            mapped = self.errors(exc)
            if mapped is None:
                raise
            status, body, headers = mapped
        await send_json(send, status, body, headers)


async def read_body(scope, receive, send, max_bytes: int) -> bytes | None:
    """The request body, at most ``max_bytes`` (by Content-Length or as it arrives); None when it was answered
    here (400 Content-Length not a number, 413 too large) or the client went away."""
    for key, value in scope.get("headers") or ():
        if key == b"content-length":
            if not value.isdigit():
                await send_json(send, 400, {"error": "the Content-Length header is not a number"})
                return None
            if int(value) > max_bytes:
                await send_json(send, 413, too_large(max_bytes))
                return None
    chunks, seen = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # the client went away
        chunks.append(message.get("body", b""))
        seen += len(chunks[-1])
        if seen > max_bytes:
            await send_json(send, 413, too_large(max_bytes))
            return None
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int) -> dict:
    return {"error": f"the request body is larger than {limit} bytes (--limits.max_body_bytes)"}


async def send_json(send, status: int, body: dict, headers: dict | None = None) -> None:
    """``body`` as Starlette's JSONResponse writes it: compact UTF-8 JSON (NaN refused), the given headers
    (names lower-cased), then content-length and content-type."""
    data = json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    raw += [(b"content-length", str(len(data)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})

"""The FastAPI app: ``create_app(bundles, limits)``.

Endpoints (``docs/serve.md`` has curl examples): ``/health``, ``/models``, ``/models/{name}``, per task
``generate`` (and ``generate/stream``, server-sent events), ``classify``, ``tag``, ``translate``; ``predict`` for
any task whose inputs are text (the task's own ``predict`` with its PredictOptions); ``sessions`` for models
with a unidirectional recurrent encoder. ``/`` is the web page, ``/docs`` a page of the endpoints that needs no
network (FastAPI's default loads Swagger UI from a CDN), ``/openapi.json`` the schema.

Errors are JSON ``{"error": message}`` with a 4xx status: 400 bad values, 404 unknown model or session, 410
expired session, 413 body too large, 422 malformed JSON or wrong types, 429 busy (Retry-After), 504 timeout.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException

from rnnlab.nn.state_table import StateTable

from .lean import LeanStep, ServeApp, read_body
from .limits import ServeLimits
from .models import Served, accepts_text_inputs, check_options, load_models
from .schemas import GenerateRequest, PredictRequest, StepRequest, TextsRequest, TranslateRequest
from .sessions import MicroBatcher, SessionError, SessionStore
from .stepping import FeatureStepper, TokenStepper, stepper_for

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


class Busy(Exception):
    """More requests than the server computes and queues: 429 with Retry-After."""


class Admission:
    """At most ``max_concurrent`` model requests compute at once, ``max_queue`` more wait; beyond that, Busy."""

    def __init__(self, max_concurrent: int, max_queue: int) -> None:
        self.max_concurrent, self.max_queue = max_concurrent, max_queue
        self.active = self.waiting = 0
        self.semaphore: asyncio.Semaphore | None = None
        self.loop = None

    @asynccontextmanager
    async def slot(self):
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.loop, self.semaphore = loop, asyncio.Semaphore(self.max_concurrent)
        if self.active >= self.max_concurrent and self.waiting >= self.max_queue:
            raise Busy
        self.waiting += 1
        try:
            await self.semaphore.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self.semaphore.release()


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` (by Content-Length or as it arrives) is answered 413."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # read the body here, up to the limit, and replay it: a body without Content-Length is counted too
        body = await read_body(scope, receive, send, self.max_bytes)
        if body is None:
            return  # answered 400/413, or the client went away
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: http.disconnect, when it comes

        return await self.app(scope, replay, send)


class State:
    """Everything the app holds: models, limits, sessions, batchers, counters."""

    def __init__(self, models: dict[str, Served], limits: ServeLimits) -> None:
        self.models, self.limits = models, limits
        self.admission = Admission(limits.max_concurrent, limits.max_queue)
        self.sessions = SessionStore(max_sessions=limits.max_sessions, max_bytes=limits.max_session_bytes,
                                     ttl_s=limits.session_ttl_s)
        self.tables: dict[str, StateTable] = {}
        self.batchers: dict[str, MicroBatcher] = {}
        self.active_generations = 0
        self.generations_stopped = 0
        self.started = time.time()

    def model(self, name: str) -> Served:
        if name not in self.models:
            raise HTTPException(404, f"no model {name!r}; the models are: {', '.join(self.models)}")
        return self.models[name]

    def table(self, m: Served) -> StateTable:
        """The state table of ``m``'s sessions (a row per session), made on first use."""
        if m.name not in self.tables:
            self.tables[m.name] = stepper_for(m, self.limits.probe_units).new_table()
        return self.tables[m.name]

    def batcher(self, m: Served) -> MicroBatcher:
        """The micro-batcher of ``m``'s session steps: each batch is one gather/step/scatter of the table."""
        if m.name not in self.batchers:
            stepper, table = stepper_for(m, self.limits.probe_units), self.table(m)
            self.batchers[m.name] = MicroBatcher(
                lambda steps: stepper.step_sessions(table, steps), window_s=self.limits.batch_window_ms / 1000,
                max_batch=self.limits.max_batch, enabled=self.limits.batching)
        return self.batchers[m.name]

    async def compute(self, fn, *args):
        """Run ``fn(*args)`` in a worker thread within a slot and the request timeout."""
        async with self.admission.slot():
            try:
                return await asyncio.wait_for(asyncio.to_thread(fn, *args), self.limits.request_timeout_s)
            except asyncio.TimeoutError:
                raise HTTPException(504, f"the request took longer than {self.limits.request_timeout_s:g} s "
                                         "(--limits.request_timeout_s)") from None


def create_app(bundles: dict[str, Union[str, Path]], limits: ServeLimits | None = None, *,
               models: dict[str, Served] | None = None) -> FastAPI:
    """The app serving ``bundles`` (name -> bundle folder). Missing or damaged bundles raise here, at start-up.
    ``models``: bundles already loaded (:func:`~rnnlab.serve.models.load_models`), shared between apps in tests."""
    limits = limits if limits is not None else ServeLimits()
    state = State(models if models is not None else load_models(bundles), limits)
    app = ServeApp(title="rnnlab serve", docs_url=None, redoc_url=None,
                  description="Trained rnnlab bundles over HTTP; see docs/serve.md.")
    app.state.rnnlab = state
    _errors(app, limits)
    _routes(app, state)
    from . import routes_sessions, routes_tasks

    routes_tasks.add(app, state)
    routes_sessions.add(app, state)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if limits.lean_step:
        app.lean = LeanStep(lambda name, session_id, raw: routes_sessions.step_answer(state, name, session_id, raw),
                            lambda exc: error_answer(exc, limits), limits.max_body_bytes)
    return app


def error_answer(exc: Exception, limits: ServeLimits) -> tuple[int, dict, dict | None] | None:
    """(status, JSON body, headers) of the answer to ``exc``, None for an unexpected one (a 500): one mapping for
    FastAPI's exception handlers and the lean step path (:mod:`.lean`), so that both answer alike."""
    if isinstance(exc, RequestValidationError):
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {e.get('msg')}")
        return 422, {"error": "; ".join(parts) or "invalid request"}, None
    if isinstance(exc, HTTPException):
        return exc.status_code, {"error": str(exc.detail)}, getattr(exc, "headers", None)
    if isinstance(exc, SessionError):
        retry = {"Retry-After": str(limits.retry_after_s)} if exc.status == 429 else None
        return exc.status, {"error": str(exc)}, retry
    if isinstance(exc, Busy):
        return 429, {"error": "the server is busy: every slot and queue place is taken (--limits.max_concurrent, "
                              "--limits.max_queue); retry later"}, {"Retry-After": str(limits.retry_after_s)}
    if isinstance(exc, (ValueError, TypeError)):
        return 400, {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}, None
    return None


def _errors(app: FastAPI, limits: ServeLimits) -> None:
    async def handler(request: Request, exc: Exception):
        status, body, headers = error_answer(exc, limits)
        return JSONResponse(body, status_code=status, headers=headers)

    for kind in (RequestValidationError, HTTPException, SessionError, Busy, ValueError, TypeError):
        app.add_exception_handler(kind, handler)


def _rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _routes(app: FastAPI, state: State) -> None:
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}  # only the package's own files
        if name not in files:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(files[name])

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return FileResponse(STATIC / "docs.html")

    @app.get("/health", summary="liveness, load, sessions and memory")
    async def health() -> dict:
        s = state
        s.sessions.sweep()
        return {
            "status": "ok", "models": list(s.models), "uptime_s": round(time.time() - s.started, 1),
            "rss_bytes": _rss_bytes(),
            "requests": {"active": s.admission.active, "queued": s.admission.waiting,
                         "max_concurrent": s.limits.max_concurrent, "max_queue": s.limits.max_queue},
            "generations": {"active": s.active_generations, "stopped_early": s.generations_stopped},
            "sessions": {"open": len(s.sessions.sessions), "max": s.limits.max_sessions,
                         "state_bytes": s.sessions.bytes, "max_state_bytes": s.limits.max_session_bytes,
                         "ttl_s": s.limits.session_ttl_s},
            "batching": {name: b.stats() for name, b in s.batchers.items()},
            "state_tables": {name: {"rows": len(t), "capacity": t.capacity, "row_bytes": t.row_bytes,
                                    "bytes_reserved": t.bytes_reserved} for name, t in s.tables.items()},
        }

    @app.get("/models", summary="the served models: task, sizes, metrics, endpoints")
    async def models() -> dict:
        return {"models": [m.describe() for m in state.models.values()]}

    @app.get("/models/{name}", summary="one served model")
    async def model(name: str) -> dict:
        return state.model(name).describe()

    @app.post("/models/{name}/predict", summary="the task's predict on text inputs, with its PredictOptions")
    async def predict(name: str, body: PredictRequest) -> dict:
        m = state.model(name)
        if not accepts_text_inputs(m):
            raise HTTPException(400, f"model {name!r} (task {m.task}) reads files named by its inputs, and the "
                                     "server never takes a path from a request")
        if len(body.inputs) > state.limits.max_inputs:
            raise HTTPException(400, f"{len(body.inputs)} inputs: the server takes at most "
                                     f"{state.limits.max_inputs} per request (--limits.max_inputs)")
        options = check_options(m.module, body.options, state.limits)
        if m.task == "textgen" and options.get("max_new_tokens") is None:
            options["max_new_tokens"] = min(state.limits.max_new_tokens, 200)
        outputs = await state.compute(lambda: list(m.module.predict(m.path, body.inputs, **options)))
        return {"model": name, "task": m.task, "outputs": outputs}


__all__ = ["create_app", "State", "TokenStepper", "FeatureStepper", "GenerateRequest", "StepRequest",
           "TextsRequest", "TranslateRequest"]

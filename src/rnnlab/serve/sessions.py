"""Streaming sessions (the state kept on the server between requests) and the micro-batcher that steps them.

A session's state is a row of its model's :class:`~rnnlab.nn.state_table.StateTable`: opening a session
allocates a row, closing or expiring it frees the row. :class:`SessionStore` bounds the sessions by count, by
memory and by idle time (TTL); a session used after its TTL answers 410, one never seen 404. Each session has
an ``asyncio.Lock``: concurrent steps on one session run one after another, each from the state the previous
one left (and a row is never in two steps of one batch).

:class:`MicroBatcher` gathers the steps that arrive within ``batch_window_ms`` (up to ``max_batch``) from any
sessions of one model and hands them to ``run`` in one call in a worker thread: the stepper gathers the rows'
states from the table, runs one ``step`` and scatters them back (:meth:`Stepper.step_sessions`).
"""
from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rnnlab.nn.state_table import StateTable


class SessionError(Exception):
    """A session request that cannot be served; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Session:
    id: str
    model: str
    table: StateTable
    row: int
    bytes: int
    last_used: float
    steps: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SessionStore:
    """Open sessions by id, bounded by ``max_sessions``, ``max_bytes`` and an idle ``ttl_s``."""

    def __init__(self, *, max_sessions: int, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        self.max_sessions, self.max_bytes, self.ttl_s, self.clock = max_sessions, max_bytes, ttl_s, clock
        self.sessions: dict[str, Session] = {}
        self.expired: OrderedDict[str, None] = OrderedDict()  # ids closed by the TTL (the last 10 000)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.sessions.values())

    def create(self, model: str, table: StateTable) -> Session:
        """A new session of ``model`` with a row of ``table`` (its model's states)."""
        self.sweep()
        nbytes = table.row_bytes
        if len(self.sessions) >= self.max_sessions:
            raise SessionError(429, f"{len(self.sessions)} sessions are open, the server's limit "
                                    "(--limits.max_sessions): close one (DELETE) or wait for idle ones to expire")
        if self.bytes + nbytes > self.max_bytes:
            raise SessionError(429, f"the sessions' states would take more than {self.max_bytes} bytes "
                                    "(--limits.max_session_bytes): close one or wait for idle ones to expire")
        session = Session(secrets.token_urlsafe(16), model, table, table.allocate(), nbytes, self.clock())
        self.sessions[session.id] = session
        return session

    def get(self, session_id: str, model: str) -> Session:
        session = self.sessions.get(session_id)
        if session is not None and self._idle(session) and not session.lock.locked():
            self._expire(session)
            session = None
        if session is None:
            if session_id in self.expired:
                raise SessionError(410, f"session {session_id!r} expired after {self.ttl_s:g} s idle "
                                        "(--limits.session_ttl_s): open a new one")
            raise SessionError(404, f"no session {session_id!r}: open one with POST /models/{model}/sessions")
        if session.model != model:
            raise SessionError(404, f"session {session_id!r} belongs to model {session.model!r}, not {model!r}")
        session.last_used = self.clock()
        return session

    async def delete(self, session_id: str, model: str) -> None:
        """Close a session; a step in flight on it finishes first (its row is not handed out before)."""
        session = self.get(session_id, model)
        async with session.lock:
            if self.sessions.pop(session_id, None) is not None:
                session.table.free(session.row)

    def sweep(self) -> int:
        """Close the sessions idle longer than the TTL; returns how many."""
        idle = [s for s in self.sessions.values() if self._idle(s) and not s.lock.locked()]
        for s in idle:
            self._expire(s)
        return len(idle)

    def _idle(self, session: Session) -> bool:
        return self.clock() - session.last_used > self.ttl_s

    def _expire(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is not None:
            session.table.free(session.row)
        self.expired[session.id] = None
        while len(self.expired) > 10_000:
            self.expired.popitem(last=False)


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future


class MicroBatcher:
    """Requests of one model from many sessions, gathered for up to ``window_s`` and run as one batch.

    ``run(items) -> results`` (one result per item, in order) is called once per batch: in a worker thread for a
    batch of several items (the event loop reads and answers other requests meanwhile), in the event loop itself
    for a batch of one (a hand-off to a thread and back costs more than a one-row step of most models: it wakes
    two threads). With ``enabled=False`` each submission is run alone, at once, one after another (the baseline
    the load benchmark compares with).
    """

    def __init__(self, run: Callable[[list], list], *, window_s: float, max_batch: int, enabled: bool = True) -> None:
        self.run, self.window_s, self.max_batch, self.enabled = run, window_s, max_batch, enabled
        self.queue: asyncio.Queue | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.worker: asyncio.Task | None = None
        self.batches = 0
        self.steps = 0
        self.largest = 0

    async def submit(self, item: Any) -> Any:
        """One item's result, computed in a batch with the items submitted around the same time."""
        if not self.enabled:
            return self._run([item])[0]
        self._start()
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Pending(item, future))
        return await future

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop or self.worker is None or self.worker.done():
            self.loop, self.queue = loop, asyncio.Queue()
            self.worker = loop.create_task(self._work())

    async def _work(self) -> None:
        while True:
            batch = [await self.queue.get()]
            if self.window_s > 0 and self.queue.qsize() + 1 < self.max_batch:
                await asyncio.sleep(self.window_s)
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            batch = [p for p in batch if not p.future.done()]  # a cancelled request needs no step
            if not batch:
                continue
            try:
                items = [p.item for p in batch]
                results = self._run(items) if len(items) == 1 else await asyncio.to_thread(self._run, items)
            except Exception as e:  # one bad batch fails its requests, not the worker
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            for p, result in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(result)

    def _run(self, items: list) -> list:
        results = self.run(items)
        self.batches += 1
        self.steps += len(items)
        self.largest = max(self.largest, len(items))
        return results

    def stats(self) -> dict:
        return {"batching": self.enabled, "batches": self.batches, "steps": self.steps, "largest_batch": self.largest,
                "mean_batch": round(self.steps / self.batches, 2) if self.batches else None}

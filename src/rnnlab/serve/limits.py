"""What the server allows: every limit in one frozen dataclass (``rnnlab serve --limits.NAME value``)."""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ServeLimits:
    """Limits of ``rnnlab serve``: request sizes, work per request, concurrency, sessions and micro-batching."""

    max_body_bytes: int = 1_000_000
    """The largest request body in bytes; a larger one is refused with 413."""
    max_new_tokens: int = 1000
    """The most tokens one request may generate, or feed to a session in one step request."""
    max_inputs: int = 64
    """The most inputs (texts) in one predict/classify/tag/translate request."""
    max_concurrent: int = 4
    """Model requests computed at once (generate, predict, classify, ...); more wait in the queue."""
    max_queue: int = 16
    """Model requests that may wait for a slot; beyond that the server answers 429 with Retry-After."""
    retry_after_s: int = 1
    """The Retry-After header (seconds) sent with 429."""
    request_timeout_s: float = 30.0
    """The longest a model request may compute; a generation stops there (504, or an SSE 'error' event)."""
    max_sessions: int = 1024
    """Streaming sessions open at once; one more is refused with 429."""
    session_ttl_s: float = 600.0
    """A session idle for this long is closed; using it afterwards answers 410."""
    max_session_bytes: int = 256 * 2**20
    """The memory all sessions' states may take together (bytes); a session beyond it is refused with 429."""
    batching: bool = True
    """Batch the steps that sessions send together into one forward (false: step each request alone)."""
    batch_window_ms: float = 2.0
    """How long the micro-batcher waits for more steps after the first one arrives."""
    max_batch: int = 256
    """The most session steps in one batched forward."""
    probe_units: int = 32
    """Hidden units returned per step for the web page's heat map (the first ones of the last layer)."""
    lean_step: bool = True
    """Answer the session step route (POST .../sessions/ID/step) with a lean ASGI handler in front of FastAPI: the
    same answers and errors at a fraction of the CPU per request (false: FastAPI's route)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("batching", "lean_step"):
                if not isinstance(value, bool):
                    raise ValueError(f"--limits.{f.name} must be true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"--limits.{f.name} must be a non-negative number, got {value!r}")
            if f.name not in ("batch_window_ms", "probe_units", "max_queue") and value == 0:
                raise ValueError(f"--limits.{f.name} must be positive, got {value!r}")

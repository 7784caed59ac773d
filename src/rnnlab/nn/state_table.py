"""StateTable: the recurrent states of many independent streams, one preallocated row per stream.

A server that keeps a hidden state per streaming session steps the sessions whose requests arrive together as
one batch. Keeping each session's state as its own small tensor means a ``torch.cat`` of B states before every
step and B copies after it; a table keeps them all in one tensor per state field, (L, C, H) with a row per
session (C the capacity), and a step of rows ``r`` is

    state = table.gather(r)           # index_select along dim 1: (L, B, H)
    y, state = layer.step(x, state)   # one forward for the B rows
    table.scatter(r, state)           # index_copy_ back into the same rows

(``table.step(layer, r, x)`` does the three). The capacity doubles when every row is taken; a freed row goes
back to a free list and the next ``allocate`` hands it out again, reset to the initial state (zeros), so a new
stream never sees an old one's state. Works for any state of the layer contract: a tensor (L, 1, H) or a
NamedTuple of them (``LSTMState(h, c)``).

Thread safety: ``allocate``, ``free``, ``gather`` and ``scatter`` each hold a lock, so a worker thread may step
rows while the event loop allocates others (a growth in between copies the rows before the scatter writes into
the new storage). The caller keeps one row out of two concurrent steps (a lock per session does).
"""
from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import Tensor

from .state import State, map_state

Rows = Union[Sequence[int], Tensor]


class StateTable:
    """Preallocated states of ``capacity`` streams, a row each, for batched stepping of independent streams.

    Args:
        initial: one stream's initial state, (L, 1, H) or a NamedTuple of such tensors (``LSTMState``); every
            allocated row starts from it. Its dtype and device are the table's.
        capacity: rows allocated up front; doubles when every row is taken.
    """

    def __init__(self, initial: State, capacity: int = 16) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        tensors = list(initial) if isinstance(initial, tuple) else [initial]
        for t in tensors:
            if not isinstance(t, Tensor) or t.dim() != 3 or t.shape[1] != 1:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"initial must be one stream's state, tensors (L, 1, H), got {shape}")
        self.initial = map_state(lambda t: t.detach().clone(), initial)  # (L, 1, H)
        self.storage: State = map_state(lambda t: t.repeat(1, capacity, 1), self.initial)  # (L, C, H)
        self.capacity = capacity
        self.free_rows = list(range(capacity))  # a heap: the lowest free row first keeps the table dense
        self.used: set[int] = set()
        self.lock = threading.Lock()

    @classmethod
    def for_layer(cls, layer: Any, capacity: int = 16, *, device=None, dtype=None) -> StateTable:
        """A table for the streams of ``layer`` (anything with ``initial_state(batch_size, device=, dtype=)``)."""
        return cls(layer.initial_state(1, device=device, dtype=dtype), capacity)

    # -- rows ---------------------------------------------------------------------------------------
    def allocate(self) -> int:
        """A free row, set to the initial state; the storage doubles when none is free."""
        with self.lock:
            if not self.free_rows:
                self._grow(2 * self.capacity)
            row = heapq.heappop(self.free_rows)
            self.used.add(row)
            for t, t0 in zip(self._fields(self.storage), self._fields(self.initial)):
                t[:, row : row + 1] = t0
            return row

    def free(self, row: int) -> None:
        """Give ``row`` back; the next ``allocate`` may hand it out again (reset to the initial state)."""
        with self.lock:
            self._check_rows([row], "free")
            self.used.remove(row)
            heapq.heappush(self.free_rows, row)

    def _grow(self, capacity: int) -> None:
        old = self.capacity

        def grown(t: Tensor, t0: Tensor) -> Tensor:
            new = t0.repeat(1, capacity, 1)  # (L, capacity, H)
            new[:, :old] = t
            return new

        fields = [grown(t, t0) for t, t0 in zip(self._fields(self.storage), self._fields(self.initial))]
        self.storage = self._rebuild(fields)
        self.capacity = capacity
        for row in range(old, capacity):
            heapq.heappush(self.free_rows, row)

    # -- batched access -------------------------------------------------------------------------------
    def gather(self, rows: Rows) -> State:
        """The states of ``rows`` (B of them), stacked along the batch dim: (L, B, H), a copy."""
        with self.lock:
            index = self._index(rows, "gather")
            return map_state(lambda t: t.index_select(1, index), self.storage)

    def scatter(self, rows: Rows, state: State) -> None:
        """Write ``state`` (L, B, H) into ``rows`` (B distinct allocated rows)."""
        with self.lock:
            index = self._index(rows, "scatter")
            given = self._fields(state) if isinstance(state, tuple) == isinstance(self.storage, tuple) else None
            if given is None or len(given) != len(self._fields(self.storage)):
                raise ValueError(f"scatter: state must be {self._describe(len(index))}, got {_shapes(state)}")
            for t, s in zip(self._fields(self.storage), given):
                if s.shape != (t.shape[0], len(index), t.shape[2]):
                    raise ValueError(f"scatter: state must be {self._describe(len(index))}, got {_shapes(state)}")
                t.index_copy_(1, index, s.to(t.dtype))

    def step(self, stepper: Union[Callable, Any], rows: Rows, x: Any) -> Any:
        """Gather ``rows``, advance them one step with ``stepper`` and write the new states back.

        ``stepper`` is a layer or encoder with ``step(x, state) -> (y, state)`` (``Recurrent``), or a callable
        of the same signature; x holds the B rows' inputs, in the order of ``rows``. Returns ``y``.
        """
        fn = stepper.step if hasattr(stepper, "step") else stepper
        y, new = fn(x, self.gather(rows))
        self.scatter(rows, new)
        return y

    # -- memory ---------------------------------------------------------------------------------------
    @property
    def row_bytes(self) -> int:
        """Bytes of one stream's state."""
        return sum(t.numel() * t.element_size() for t in self._fields(self.initial))

    @property
    def bytes_in_use(self) -> int:
        """Bytes of the allocated rows' states."""
        return len(self.used) * self.row_bytes

    @property
    def bytes_reserved(self) -> int:
        """Bytes of the whole storage, free rows included (at most twice the rows in use, plus the start)."""
        return self.capacity * self.row_bytes

    def __len__(self) -> int:
        return len(self.used)

    # -- helpers --------------------------------------------------------------------------------------
    def _index(self, rows: Rows, what: str) -> Tensor:
        listed = rows.tolist() if isinstance(rows, Tensor) else list(rows)
        self._check_rows(listed, what)
        if len(set(listed)) != len(listed):
            raise ValueError(f"{what}: rows must be distinct (one step per stream at a time), got {listed}")
        return torch.tensor(listed, dtype=torch.long, device=self._fields(self.storage)[0].device)

    def _check_rows(self, rows: list, what: str) -> None:
        for r in rows:
            if isinstance(r, bool) or not isinstance(r, int):
                raise ValueError(f"{what}: rows must be ints, got {r!r}")
            if r not in self.used:
                state = "out of range" if not 0 <= r < self.capacity else "free"
                raise ValueError(f"{what}: row {r} is not allocated ({state}; allocate() gives rows)")

    def _describe(self, batch: int) -> str:
        L, _, H = self._fields(self.storage)[0].shape
        kind = type(self.storage).__name__ if isinstance(self.storage, tuple) else "a tensor"
        return f"{kind} of ({L}, {batch}, {H})"

    @staticmethod
    def _fields(state: State) -> list[Tensor]:
        return list(state) if isinstance(state, tuple) else [state]

    def _rebuild(self, fields: list[Tensor]) -> State:
        if isinstance(self.initial, tuple):
            like = self.initial
            return type(like)(*fields) if hasattr(like, "_fields") else tuple(fields)
        return fields[0]


def _shapes(state: Any) -> str:
    if isinstance(state, tuple):
        return f"{type(state).__name__}{tuple(tuple(t.shape) for t in state)}"
    return str(tuple(state.shape)) if isinstance(state, Tensor) else type(state).__name__


__all__ = ["StateTable"]

"""Recurrent state types and the small operations every layer needs on them.

A cell's state is a tensor ``h`` of shape (B, H), except the LSTM's, which is
``LSTMState(h, c)`` (a user's cell may use any NamedTuple of (B, H) tensors; every
operation here keeps its type). A layer's state stacks one cell state per layer and direction
along a leading dimension of size L*D, as ``torch.nn`` does, so that ``h[-1]`` is
the last layer's (last direction's) final hidden state: (L*D, B, H).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Union

import torch
from torch import Tensor


class LSTMState(NamedTuple):
    """The LSTM's state: hidden ``h`` and cell ``c``, same shape."""

    h: Tensor
    c: Tensor


State = Union[Tensor, LSTMState]


def map_state(fn: Callable[[Tensor], Tensor], state: State) -> State:
    """Apply ``fn`` to every tensor of a state, keeping its type."""
    if isinstance(state, tuple):
        return _rebuild(state, [fn(t) for t in state])
    return fn(state)


def zip_states(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` field by field to states of one type: ``fn(a.h, b.h)``, ``fn(a.c, b.c)``."""
    if isinstance(states[0], tuple):
        return _rebuild(states[0], [fn(*fields) for fields in zip(*states)])
    return fn(*states)


def _rebuild(like: tuple, values: list) -> tuple:
    """A tuple of ``like``'s type (a NamedTuple such as LSTMState, or a plain tuple) holding ``values``."""
    return type(like)(*values) if hasattr(like, "_fields") else tuple(values)


def detach(state: State) -> State:
    """Cut the graph behind a state (the chunk boundary of truncated BPTT)."""
    return map_state(Tensor.detach, state)


def zeros_like_state(state: State) -> State:
    return map_state(torch.zeros_like, state)


def where_state(mask: Tensor, new: State, old: State) -> State:
    """Per batch row: ``new`` where ``mask`` (B,) is true, else ``old``. Row is the second-to-last dim."""
    m = mask.unsqueeze(-1)  # (B, 1)
    return zip_states(lambda a, b: torch.where(m, a, b), new, old)


def reset_rows(state: State, rows: Tensor) -> State:
    """Zero the state of the batch rows where ``rows`` (B,) is true (a stream crossed a document boundary).

    One masked_fill per tensor; on the CPU a batch with no such row returns ``state`` itself (most chunks of a
    language model's stream; on an accelerator the check would wait for the device, so it is left out)."""
    if rows.device.type == "cpu" and not bool(rows.any()):
        return state
    m = rows.unsqueeze(-1)  # (B, 1)
    return map_state(lambda t: t.masked_fill(m, 0), state)


def select_layer(state: State, index: int) -> State:
    """The cell state of one (layer, direction) slot of a layer state (L*D, B, H)."""
    return map_state(lambda t: t[index], state)


def stack_layers(states: list[State]) -> State:
    """Stack per-(layer, direction) cell states (B, H) into a layer state (L*D, B, H)."""
    return zip_states(lambda *ts: torch.stack(ts), *states)

"""State types and operations (rnnlab.nn.state): tensors, LSTMState, and any NamedTuple a user's cell uses."""
from typing import NamedTuple

import torch

from rnnlab.nn.state import (
    LSTMState,
    detach,
    map_state,
    reset_rows,
    select_layer,
    stack_layers,
    where_state,
    zeros_like_state,
)


class ThreeState(NamedTuple):
    h: torch.Tensor
    c: torch.Tensor
    n: torch.Tensor


def _states():
    h = torch.randn(2, 3, 4)
    return [h, LSTMState(h, h + 1), ThreeState(h, h + 1, h + 2)]


def test_map_state_keeps_the_type():
    for s in _states():
        doubled = map_state(lambda t: 2 * t, s)
        assert type(doubled) is type(s)
        for a, b in zip(doubled if isinstance(s, tuple) else [doubled], s if isinstance(s, tuple) else [s]):
            torch.testing.assert_close(a, 2 * b)
    assert map_state(lambda t: t + 1, (torch.zeros(1), torch.zeros(1))) == (torch.ones(1), torch.ones(1))


def test_where_state_and_reset_rows_pick_per_batch_row():
    rows = torch.tensor([True, False, True])  # batch is dim -2: (L, B, H) = (2, 3, 4)
    for s in _states():
        z = zeros_like_state(s)
        reset = reset_rows(s, rows)
        same = where_state(~rows, s, z)
        for r, w, t in zip(*(x if isinstance(x, tuple) else [x] for x in (reset, same, s))):
            assert (r[:, [0, 2]] == 0).all() and torch.equal(r[:, 1], t[:, 1])
            torch.testing.assert_close(r, w)


def test_select_and_stack_layers_are_inverse():
    for s in _states():
        slots = [select_layer(s, k) for k in range(2)]
        assert type(slots[0]) is type(s)
        back = stack_layers(slots)
        for a, b in zip(*(x if isinstance(x, tuple) else [x] for x in (back, s))):
            assert torch.equal(a, b)


def test_detach_cuts_the_graph():
    h = torch.randn(2, 3, requires_grad=True)
    s = detach(LSTMState(h * 2, h * 3))
    assert isinstance(s, LSTMState) and not s.h.requires_grad and not s.c.requires_grad

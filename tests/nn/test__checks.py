"""Input checks (rnnlab.nn._checks): each names the argument, what was expected and what was given."""
from typing import NamedTuple

import pytest
import torch

from rnnlab.nn._checks import (
    check_dtype_match,
    check_input,
    check_lengths,
    check_lstm_state,
    check_state,
    check_state_tensor,
    check_tensor,
)
from rnnlab.nn.state import LSTMState


class ThreeState(NamedTuple):
    h: torch.Tensor
    c: torch.Tensor
    n: torch.Tensor


def test_check_tensor_and_check_input():
    with pytest.raises(TypeError, match=r"w must be a torch.Tensor, got list"):
        check_tensor("w", [1.0])
    with pytest.raises(ValueError, match=r"w must have 2 dimensions, got shape \(3,\)"):
        check_tensor("w", torch.zeros(3), ndim=2)
    with pytest.raises(ValueError, match=r"w must have last dimension 4, got shape \(2, 3\)"):
        check_tensor("w", torch.zeros(2, 3), last=4)
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, I\) with I=3"):
        check_input(torch.zeros(2, 2, 3), 3, ndim=2, name="x_t")
    x = torch.zeros(2, 5, 3)
    assert check_input(x, 3, ndim=3) is x


def test_check_dtype_match():
    check_dtype_match("x", torch.zeros(1), torch.zeros(1))
    with pytest.raises(TypeError, match=r"x must have dtype torch.float32 like the parameters, got torch.float64"):
        check_dtype_match("x", torch.zeros(1, dtype=torch.float64), torch.zeros(1))


def test_check_state_for_each_state_type():
    ref = torch.zeros(1)
    h = torch.zeros(2, 3)
    assert check_state(h, torch.Tensor, (2, 3), ref) is h
    s = check_state((h, h), LSTMState, (2, 3), ref)  # a plain (h, c) tuple, as torch.nn users pass it
    assert isinstance(s, LSTMState)
    assert isinstance(check_state((h, h, h), ThreeState, (2, 3), ref), ThreeState)
    with pytest.raises(TypeError, match=r"state must be a ThreeState\(h, c, n\) of shape \(2, 3\) each, got tuple"):
        check_state((h, h), ThreeState, (2, 3), ref)
    with pytest.raises(ValueError, match=r"state.n must have shape \(2, 3\), got \(3, 3\)"):
        check_state((h, h, torch.zeros(3, 3)), ThreeState, (2, 3), ref)
    with pytest.raises(TypeError, match=r"state must be an LSTMState\(h, c\)"):
        check_lstm_state(h, (2, 3), ref)
    with pytest.raises(TypeError, match=r"h0 must have dtype torch.float32, got torch.float64"):
        check_state_tensor("h0", h.double(), (2, 3), ref)


def test_check_lengths():
    assert check_lengths(None, 2, 4) is None
    got = check_lengths([4, 2], 2, 4)
    assert got.dtype == torch.int64 and got.tolist() == [4, 2]
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=4\], got min 0 and max 2"):
        check_lengths(torch.tensor([0, 2]), 2, 4)
    with pytest.raises(TypeError, match=r"lengths must be an integer tensor, got dtype torch.bool"):
        check_lengths(torch.tensor([True, False]), 2, 4)


def test_check_sequence_args_fills_states_and_names_the_gate_count():
    import pytest
    import torch

    from rnnlab.nn._checks import check_sequence_args

    H, I = 4, 3
    w_ih, w_hh = torch.zeros(3 * H, I), torch.zeros(3 * H, H)
    x = torch.zeros(2, 5, I)
    out, (h0,), lengths = check_sequence_args(x, {"h0": None}, w_ih, w_hh, {"bias_ih": None}, None, None, num_gates=3)
    assert out is x and h0.shape == (2, H) and not h0.any() and lengths is None
    with pytest.raises(ValueError, match=r"weight_hh must have shape \(4H, H\)"):
        check_sequence_args(x, {"h0": None}, w_ih, w_hh, {}, None, None, num_gates=4)
    with pytest.raises(ValueError, match="at least one time step"):
        check_sequence_args(x[:, :0], {"h0": None}, w_ih, w_hh, {}, None, None, num_gates=3)
    with pytest.raises(ValueError, match="bias_ih"):
        check_sequence_args(x, {"h0": None}, w_ih, w_hh, {"bias_ih": torch.zeros(5)}, None, None, num_gates=3)

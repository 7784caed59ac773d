"""Recurrent.step's fast path (rnnlab.nn._fast_step): the numbers of the reference, the checks of the slow path.

The reference is the same layer with impl="loop", whose step runs the cells' own equations (tests/nn/test_cell.py
proves those against torch.nn), and the whole-sequence forward.
"""
import pytest
import torch

from rnnlab.nn import GRU, LSTM, RNN, Recurrent
from rnnlab.nn._fast_step import _MAX_SIGNATURES
from rnnlab.nn.state import LSTMState

B, T, I, H = 2, 5, 3, 4
KINDS = [("lstm", {}), ("gru", {}), ("rnn", {}), ("rnn", {"nonlinearity": "relu"})]
IDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _pair(cell, options, **layer_options):
    """A layer on the fast path and a copy of it on the reference loop."""
    fast = Recurrent(cell, I, H, **layer_options, **options)
    ref = Recurrent(cell, I, H, impl="loop", **layer_options, **options)
    ref.load_state_dict(fast.state_dict())
    assert fast._fast_step is not None and ref._fast_step is None
    return fast, ref


def _tensors(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell,options", KINDS, ids=IDS)
def test_fast_step_equals_the_loop_and_the_sequence(cell, options, layers, bias):
    torch.manual_seed(0)
    fast, ref = _pair(cell, options, num_layers=layers, bias=bias)
    x = torch.randn(B, T, I)
    y_seq, s_seq = fast(x)
    s_fast = s_ref = None
    for t in range(T):
        y_fast, s_fast = fast.step(x[:, t], s_fast)
        y_ref, s_ref = ref.step(x[:, t], s_ref)
        torch.testing.assert_close(y_fast, y_ref)
        torch.testing.assert_close(y_fast, y_seq[:, t], atol=1e-5, rtol=1e-5)
    assert type(s_fast) is type(s_seq)
    for a, b, c in zip(_tensors(s_fast), _tensors(s_ref), _tensors(s_seq)):
        assert a.shape == (layers, B, H)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


def test_a_plain_tuple_state_is_accepted_as_torch_users_pass_it():
    fast, ref = _pair("lstm", {}, num_layers=2)
    x = torch.randn(B, I)
    h, c = torch.randn(2, B, H), torch.randn(2, B, H)
    y, s = fast.step(x, (h, c))
    y_ref, s_ref = ref.step(x, LSTMState(h, c))
    torch.testing.assert_close(y, y_ref)
    assert isinstance(s, LSTMState)
    torch.testing.assert_close(s.c, s_ref.c)


def test_gradients_flow_through_the_fast_step():
    fast, ref = _pair("gru", {}, num_layers=2)
    x = torch.randn(B, T, I)
    losses = []
    for layer in (fast, ref):
        s = None
        for t in range(T):
            y, s = layer.step(x[:, t], s)
        losses.append(y.sum() + s.pow(2).sum())
        losses[-1].backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=name)


def test_the_step_reads_the_weights_as_they_are_now():
    """load_state_dict, an in-place update (an optimizer step) and a new Parameter all reach the fast path."""
    fast, ref = _pair("lstm", {})
    x = torch.randn(B, I)
    fast.step(x)  # the first call remembers this signature
    ref.load_state_dict(LSTM(I, H).state_dict())
    fast.load_state_dict(ref.state_dict())
    torch.testing.assert_close(fast.step(x)[0], ref.step(x)[0])
    with torch.no_grad():
        for p, q in zip(fast.parameters(), ref.parameters()):
            p.add_(0.5)
            q.add_(0.5)
    torch.testing.assert_close(fast.step(x)[0], ref.step(x)[0])
    fast.cells[0].weight_hh = torch.nn.Parameter(torch.zeros(4 * H, H))
    ref.cells[0].weight_hh = torch.nn.Parameter(torch.zeros(4 * H, H))
    torch.testing.assert_close(fast.step(x, ref.initial_state(B))[0], ref.step(x, ref.initial_state(B))[0])


def test_a_dtype_change_of_the_weights_is_checked_again():
    layer = GRU(I, H)
    x = torch.randn(B, I)
    layer.step(x)
    layer.double()
    with pytest.raises(TypeError, match=r"x_t must have dtype torch.float64 like the parameters, got torch.float32"):
        layer.step(x)
    y, s = layer.step(x.double())
    assert y.dtype == s.dtype == torch.float64


@pytest.mark.parametrize(
    "x,state,error,pattern",
    [
        (torch.randn(B, I + 1), None, ValueError, r"x_t must have input size I=3 .*got shape \(2, 4\)"),
        (torch.randn(B, 1, I), None, ValueError, r"x_t must have shape \(B, I\) with I=3.*got shape \(2, 1, 3\)"),
        (torch.randn(B, I).double(), None, TypeError, r"x_t must have dtype torch.float32 like the parameters"),
        (torch.ones(B, I, dtype=torch.long), None, TypeError, r"x_t must be a floating-point tensor"),
        ([[0.0] * I] * B, None, TypeError, r"x_t must be a torch.Tensor of shape \(B, I\), got list"),
        (torch.randn(B, I), torch.zeros(2, B, H), TypeError, r"state must be an LSTMState\(h, c\).*got Tensor"),
        (torch.randn(B, I), LSTMState(torch.zeros(2, B, H), torch.zeros(2, B + 1, H)), ValueError,
         r"state.c must have shape \(2, 2, 4\), got \(2, 3, 4\)"),
        (torch.randn(B, I), LSTMState(torch.zeros(2, B, H), torch.zeros(2, B, H).double()), TypeError,
         r"state.c must have dtype torch.float32, got torch.float64"),
        (torch.randn(B, I), (torch.zeros(2, B, H),), TypeError, r"state must be an LSTMState\(h, c\)"),
    ],
)
def test_bad_arguments_get_their_message_after_good_ones_were_remembered(x, state, error, pattern):
    layer = LSTM(I, H, num_layers=2)
    layer.step(torch.randn(B, I))
    layer.step(torch.randn(B, I), layer.initial_state(B))
    with pytest.raises(error, match=pattern):
        layer.step(x, state)
    with pytest.raises(error, match=pattern):  # and again: a failed signature is not remembered
        layer.step(x, state)


def test_bad_gru_state_after_a_good_one():
    layer = RNN(I, H)
    layer.step(torch.randn(B, I), torch.zeros(1, B, H))
    with pytest.raises(ValueError, match=r"state must have shape \(1, 2, 4\), got \(1, 3, 4\)"):
        layer.step(torch.randn(B, I), torch.zeros(1, B + 1, H))


def test_dropout_between_layers_in_training_takes_the_general_path():
    layer = GRU(I, H, num_layers=2, dropout=0.5).train()
    x = torch.randn(64, I)
    s = torch.zeros(2, 64, H)
    torch.manual_seed(1)
    y1, _ = layer.step(x, s)
    torch.manual_seed(2)
    y2, _ = layer.step(x, s)
    assert not torch.equal(y1, y2)  # a fresh dropout draw between the layers
    layer.eval()
    torch.testing.assert_close(layer.step(x, s)[0], layer.step(x, s)[0])


def test_only_the_plain_unidirectional_built_in_cells_take_it():
    assert LSTM(I, H)._fast_step is not None
    assert GRU(I, H, num_layers=2, dropout=0.2)._fast_step is not None
    assert LSTM(I, H, layer_norm=True)._fast_step is None
    assert GRU(I, H, recurrent_dropout=0.1)._fast_step is None
    assert RNN(I, H, impl="numba")._fast_step is None
    assert LSTM(I, H, bidirectional=True)._fast_step is None


def test_the_remembered_signatures_stay_few():
    layer = RNN(I, H)
    for b in range(1, 2 * _MAX_SIGNATURES):
        layer.step(torch.randn(b, I))
    assert 0 < len(layer._fast_step.checked) <= _MAX_SIGNATURES


@pytest.mark.parametrize("cell,options", KINDS[:2], ids=IDS[:2])
def test_a_returned_one_layer_state_changed_in_place_or_re_pointed_is_read_as_it_is_now(cell, options):
    """The layer remembers the one-layer state it returned last (no unbind when it comes back); what a caller
    does to that state since (an in-place reset, ``.data =``) must still count."""
    fast, ref = _pair(cell, options)
    x = torch.randn(B, I)
    with torch.no_grad():
        _, s = fast.step(x)
        assert fast._fast_step.last is not None and fast._fast_step.last[0] is s
        for t in _tensors(s):
            t[:, 1].zero_()  # reset row 1 in place
        torch.testing.assert_close(fast.step(x, s)[0], ref.step(x, s)[0])
        _, s = fast.step(x, s)
        first = _tensors(s)[0]
        first.data = torch.randn(1, B, H)
        torch.testing.assert_close(fast.step(x, s)[0], ref.step(x, s)[0])


def test_a_state_with_a_graph_is_not_kept_by_the_layer():
    layer = LSTM(I, H)
    layer.step(torch.randn(B, I))
    assert layer._fast_step.last is None  # parameters require grad: the output carries a graph
    with torch.no_grad():
        layer.step(torch.randn(B, I))
    assert layer._fast_step.last is not None

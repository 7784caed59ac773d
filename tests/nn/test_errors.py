"""Bad input gets a clear error that names the argument, what was expected and what was given."""
import pytest
import torch

from rnnlab.nn import GRU, LSTM, LSTMCell, LSTMState, RNNCell, Recurrent


@pytest.fixture
def lstm():
    return LSTM(3, 5, num_layers=2)


@pytest.mark.parametrize(
    "x,error,pattern",
    [
        (torch.randn(4, 3), ValueError, r"x must have shape \(B, T, I\) with I=3.*got shape \(4, 3\)"),
        (torch.randn(2, 4, 6, 3), ValueError, r"x must have shape \(B, T, I\).*got shape \(2, 4, 6, 3\)"),
        (torch.randn(2, 4, 7), ValueError, r"x must have input size I=3.*got shape \(2, 4, 7\)"),
        (torch.randn(2, 4, 3, dtype=torch.float64), TypeError, r"x must have dtype torch.float32.*got torch.float64"),
        (torch.ones(2, 4, 3, dtype=torch.long), TypeError, r"x must be a floating-point tensor, got dtype torch.int64"),
        ([[1.0, 2.0, 3.0]], TypeError, r"x must be a torch.Tensor.*got list"),
        (torch.randn(2, 0, 3), ValueError, r"x must have at least one time step"),
    ],
)
def test_bad_x(lstm, x, error, pattern):
    with pytest.raises(error, match=pattern):
        lstm(x)


@pytest.mark.parametrize(
    "lengths,error,pattern",
    [
        (torch.tensor([4, 5]), ValueError, r"lengths must lie in \[1, T=4\], got min 4 and max 5"),
        (torch.tensor([0, 2]), ValueError, r"lengths must lie in \[1, T=4\], got min 0"),
        (torch.tensor([[4, 2]]), ValueError, r"lengths must be 1-D of shape \(2,\).*got shape \(1, 2\)"),
        (torch.tensor([4, 2, 1]), ValueError, r"lengths must be 1-D of shape \(2,\).*got shape \(3,\)"),
        (torch.tensor([4.0, 2.0]), TypeError, r"lengths must be an integer tensor, got dtype torch.float32"),
        ("4,2", TypeError, r"lengths must be a 1-D integer tensor.*got str"),
    ],
)
def test_bad_lengths(lstm, lengths, error, pattern):
    with pytest.raises(error, match=pattern):
        lstm(torch.randn(2, 4, 3), lengths=lengths)


def test_lengths_as_list_is_accepted(lstm):
    y, _ = lstm(torch.randn(2, 4, 3), lengths=[4, 2])
    assert torch.all(y[1, 2:] == 0)


@pytest.mark.parametrize(
    "state,error,pattern",
    [
        (torch.zeros(2, 2, 5), TypeError, r"state must be an LSTMState\(h, c\).*got Tensor"),
        (LSTMState(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)), ValueError, r"state.h must have shape \(2, 2, 5\), got \(1, 2, 5\)"),
        (LSTMState(torch.zeros(2, 2, 5), torch.zeros(2, 3, 5)), ValueError, r"state.c must have shape \(2, 2, 5\), got \(2, 3, 5\)"),
        (LSTMState(torch.zeros(2, 2, 5), torch.zeros(2, 2, 5).double()), TypeError, r"state.c must have dtype torch.float32, got torch.float64"),
    ],
)
def test_bad_lstm_state(lstm, state, error, pattern):
    with pytest.raises(error, match=pattern):
        lstm(torch.randn(2, 4, 3), state)


def test_bad_gru_state():
    with pytest.raises(ValueError, match=r"state must have shape \(2, 2, 5\), got \(2, 5\)"):
        GRU(3, 5, bidirectional=True)(torch.randn(2, 4, 3), torch.zeros(2, 5))


def test_bad_cell_inputs():
    cell = LSTMCell(3, 5)
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, I\) with I=3.*got shape \(2, 4, 3\)"):
        cell(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match=r"state.h must have shape \(2, 5\), got \(2, 4\)"):
        cell(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 5\), got \(5,\)"):
        cell(torch.randn(2, 3), mask=torch.ones(5))
    with pytest.raises(ValueError, match=r"state must have shape \(2, 5\), got \(1, 2, 5\)"):
        RNNCell(3, 5)(torch.randn(2, 3), torch.zeros(1, 2, 5))


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: Recurrent("transformer", 3, 5), r"cell must be one of \('rnn', 'lstm', 'gru'\), got 'transformer'"),
        (lambda: LSTM(3, 0), r"hidden_size must be a positive integer, got 0"),
        (lambda: LSTM(3, 5, num_layers=0), r"num_layers must be a positive integer, got 0"),
        (lambda: LSTM(3, 5, dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (lambda: LSTM(3, 5, recurrent_dropout=-0.1), r"recurrent_dropout must be in \[0, 1\), got -0.1"),
        (lambda: LSTM(3, 5, impl="cudnn"), r"impl must be one of .*got 'cudnn'"),
        (lambda: LSTM(3, 5, recurrent_init="xavier"), r"recurrent_init must be one of .*got 'xavier'"),
        (lambda: RNNCell(3, 5, nonlinearity="gelu"), r"nonlinearity must be 'tanh' or 'relu', got 'gelu'"),
        (lambda: GRU(3, 5, forget_bias=1.0), r"forget_bias applies to cell='lstm' only"),
        (lambda: LSTM(3, 5, nonlinearity="relu"), r"nonlinearity applies to cell='rnn' only"),
    ],
)
def test_bad_options(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()

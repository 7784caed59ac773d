"""Golden numbers: each cell's equations pinned independently of the code under test (as Keras's lstm_test).

Constant weights given by formulas, a tiny input (B = 1, T = 3, I = 2, H = 2), zero initial state, and the
expected outputs written below as literal numbers. They were computed once, by hand-coding the equations in
pure Python (``math`` only, no rnnlab, no torch): ``python tests/nn/golden_derivation.py`` prints them, and
its docstring states the weight formulas used here. So a refactor that changes the maths fails here even if
every path of rnnlab agrees with every other (and with torch.nn), and each path is checked on its own.
"""
import pytest
import torch

from rnnlab.nn import GRU, LSTM, RNN, MinGRU

X = torch.tensor([[[0.5, -1.0], [0.25, 0.75], [-0.5, 0.125]]], dtype=torch.float64)  # (B=1, T=3, I=2)
H = 2

# y_t for t = 1, 2, 3 (rows), units 1, 2 (columns); from golden_derivation.py
RNN_TANH = [[0.07485969068749912, 0.15377052226409268], [-0.028068036155829715, -0.04347538400923826],
            [-0.030371148964588975, -0.057996204612114965]]
GRU_Y = [[0.16949886756595323, 0.190468837890646], [0.04014691726275299, 0.04232827191729825],
         [-0.04455300113175346, -0.05630143747790731]]
LSTM_Y = [[0.12225732149605308, 0.15282427596154505], [0.024643788472449055, 0.03073220234225235],
          [-0.018026792044725286, -0.020055543005424]]
LSTM_C = [-0.03968837861498379, -0.04477468149373641]  # c_3
LN_LSTM_Y = [[-0.5738138826487569, 0.6289934791050724], [0.3070842720695217, -0.27873279863778655],
             [0.2619194421236185, -0.21841686278435185]]
LN_LSTM_C = [-0.09204771126604547, -0.2688467336826011]  # c_3 (the carried one, not normalised)
MIN_GRU_Y = [[0.3864622058295087, 0.44812935418111954], [0.43573417257525476, 0.4649745162055581],
             [0.4582944425412363, 0.4704729901236451]]

TOL = dict(atol=1e-12, rtol=1e-10)


def _matrix(rows: int, cols: int, f) -> torch.Tensor:
    return torch.tensor([[f(r, j) for j in range(cols)] for r in range(rows)], dtype=torch.float64)


def _set_constants(cell) -> None:
    """The formulas of golden_derivation.py, written into a cell's torch.nn-layout parameters."""
    G = cell.weight_hh.shape[0]
    with torch.no_grad():
        cell.weight_ih.copy_(_matrix(G, 2, lambda r, j: 0.05 * (r + 1) * (-1) ** j))
        cell.weight_hh.copy_(_matrix(G, H, lambda r, j: 0.02 * (r - j)))
        cell.bias_ih.copy_(torch.tensor([0.01 * r for r in range(G)], dtype=torch.float64))
        cell.bias_hh.copy_(torch.tensor([-0.005 * r for r in range(G)], dtype=torch.float64))


def _layer(cls, **options):
    layer = cls(2, H, **options).double().eval()
    _set_constants(layer.cells[0])
    return layer


def _expected(rows):
    return torch.tensor(rows, dtype=torch.float64).unsqueeze(0)  # (1, T, H)


def _steps(layer):
    state, ys = None, []
    for t in range(X.shape[1]):
        y, state = layer.step(X[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1), state


@pytest.mark.parametrize("impl", ["torch", "loop"])
def test_rnn_tanh(impl):
    layer = _layer(RNN, impl=impl)
    y, h = layer(X)
    torch.testing.assert_close(y, _expected(RNN_TANH), **TOL)
    torch.testing.assert_close(h[0, 0], torch.tensor(RNN_TANH[-1], dtype=torch.float64), **TOL)
    torch.testing.assert_close(_steps(layer)[0], _expected(RNN_TANH), **TOL)


@pytest.mark.parametrize("impl", ["torch", "loop"])
def test_gru(impl):
    layer = _layer(GRU, impl=impl)
    torch.testing.assert_close(layer(X)[0], _expected(GRU_Y), **TOL)
    torch.testing.assert_close(_steps(layer)[0], _expected(GRU_Y), **TOL)


@pytest.mark.parametrize("impl", ["torch", "loop"])
def test_lstm(impl):
    layer = _layer(LSTM, impl=impl)
    y, s = layer(X)
    torch.testing.assert_close(y, _expected(LSTM_Y), **TOL)
    torch.testing.assert_close(s.c[0, 0], torch.tensor(LSTM_C, dtype=torch.float64), **TOL)
    torch.testing.assert_close(_steps(layer)[0], _expected(LSTM_Y), **TOL)


@pytest.mark.parametrize("impl", ["numba", "loop"])
def test_layer_norm_lstm(impl):
    layer = _layer(LSTM, impl=impl, layer_norm=True)  # LN gains 1, the c-norm's shift 0: their initial values
    y, s = layer(X)
    torch.testing.assert_close(y, _expected(LN_LSTM_Y), **TOL)
    torch.testing.assert_close(s.c[0, 0], torch.tensor(LN_LSTM_C, dtype=torch.float64), **TOL)
    torch.testing.assert_close(_steps(layer)[0], _expected(LN_LSTM_Y), **TOL)


@pytest.mark.parametrize("scan", ["numba", "log"])
def test_min_gru(scan):
    layer = MinGRU(2, H, scan=scan).double()
    linear = layer.cells[0].linear  # one Linear I -> 2H: W_ih's formula for its weight, b_ih's for its bias
    with torch.no_grad():
        linear.weight.copy_(_matrix(2 * H, 2, lambda r, j: 0.05 * (r + 1) * (-1) ** j))
        linear.bias.copy_(torch.tensor([0.01 * r for r in range(2 * H)], dtype=torch.float64))
    torch.testing.assert_close(layer(X)[0], _expected(MIN_GRU_Y), **TOL)
    torch.testing.assert_close(_steps(layer)[0], _expected(MIN_GRU_Y), **TOL)

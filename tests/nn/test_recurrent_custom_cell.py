"""A user's cell in the layer: a peephole LSTM written here, run by Recurrent with everything the built-ins get.

The cell is a plain nn.Module that keeps the cell contract of rnnlab.nn.cell (hidden_size, forward, step,
initial_state); the layer is checked against a hand-written loop over that cell's equations.
"""
import pytest
import torch
from torch import nn

from rnnlab.nn import LSTMState, Recurrent

B, T, I, H = 3, 5, 2, 4
LENGTHS = torch.tensor([5, 2, 3])


class PeepholeLSTMCell(nn.Module):
    r"""LSTM with peephole connections (Gers & Schmidhuber, 2000): the gates also read the cell state.

    i = σ(W_i x + U_i h + p_i ⊙ c_{t-1} + b_i)     f = σ(W_f x + U_f h + p_f ⊙ c_{t-1} + b_f)
    g = tanh(W_g x + U_g h + b_g)                  c_t = f ⊙ c_{t-1} + i ⊙ g
    o = σ(W_o x + U_o h + p_o ⊙ c_t + b_o)         h_t = o ⊙ tanh(c_t)
    """

    def __init__(self, input_size: int, hidden_size: int, *, peephole_scale: float = 0.5) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size) * 0.5)
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size) * 0.5)
        self.bias = nn.Parameter(torch.randn(4 * hidden_size) * 0.1)
        self.peephole = nn.Parameter(torch.randn(3, hidden_size) * peephole_scale)  # p_i, p_f, p_o

    def initial_state(self, batch_size, *, device=None, dtype=None):
        h = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype or self.bias.dtype)
        return LSTMState(h, torch.zeros_like(h))

    def forward(self, x_t, state=None, *, mask=None):
        if state is None:
            state = self.initial_state(x_t.shape[0], device=x_t.device, dtype=x_t.dtype)
        return self.step(x_t, state, mask)

    def step(self, x_t, state, mask):
        h, c = state
        a = x_t @ self.weight_ih.t() + h @ self.weight_hh.t() + self.bias
        a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
        p_i, p_f, p_o = self.peephole
        i = torch.sigmoid(a_i + p_i * c)
        f = torch.sigmoid(a_f + p_f * c)
        g = torch.tanh(a_g)
        c = f * c + i * g
        o = torch.sigmoid(a_o + p_o * c)
        h = o * torch.tanh(c)
        return h, LSTMState(h, c)


def _hand_loop(cell, x, h, c):
    """The peephole equations written out once more, one row, no layer: x (T, I), h, c (H,) -> (T, H), h, c."""
    W, U, b, (p_i, p_f, p_o) = cell.weight_ih, cell.weight_hh, cell.bias, cell.peephole
    ys = []
    for x_t in x:
        a = W @ x_t + U @ h + b
        i = torch.sigmoid(a[:H] + p_i * c)
        f = torch.sigmoid(a[H:2 * H] + p_f * c)
        g = torch.tanh(a[2 * H:3 * H])
        c = f * c + i * g
        o = torch.sigmoid(a[3 * H:] + p_o * c)
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), h, c


def _layer(**options):
    torch.manual_seed(0)
    return Recurrent(PeepholeLSTMCell, I, H, **options).double()


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, I, generator=g, dtype=torch.float64)
    return x


def test_one_layer_with_lengths_equals_the_hand_loop():
    layer = _layer()
    x = _inputs()
    h0 = torch.randn(1, B, H, dtype=torch.float64)
    c0 = torch.randn(1, B, H, dtype=torch.float64)
    y, s = layer(x, LSTMState(h0, c0), LENGTHS)
    assert layer._resolve_impl() == "loop"
    for b, n in enumerate(LENGTHS.tolist()):
        ref, h, c = _hand_loop(layer.cells[0], x[b, :n], h0[0, b], c0[0, b])
        torch.testing.assert_close(y[b, :n], ref)
        assert (y[b, n:] == 0).all()
        torch.testing.assert_close(s.h[0, b], h)
        torch.testing.assert_close(s.c[0, b], c)


def test_bidirectional_two_layers_equal_hand_loops_chained():
    layer = _layer(num_layers=2, bidirectional=True)
    x = _inputs()
    y, s = layer(x, lengths=LENGTHS)
    assert y.shape == (B, T, 2 * H)
    assert isinstance(s, LSTMState) and s.h.shape == (4, B, H) and s.c.shape == (4, B, H)
    zeros = torch.zeros(H, dtype=torch.float64)
    for b, n in enumerate(LENGTHS.tolist()):
        inp = x[b, :n]
        for l in range(2):
            fwd, h_f, c_f = _hand_loop(layer.cells[2 * l], inp, zeros, zeros)
            bwd, h_b, c_b = _hand_loop(layer.cells[2 * l + 1], inp.flip(0), zeros, zeros)
            inp = torch.cat([fwd, bwd.flip(0)], dim=1)  # (n, 2H)
            torch.testing.assert_close(s.h[2 * l, b], h_f)
            torch.testing.assert_close(s.h[2 * l + 1, b], h_b)
            torch.testing.assert_close(s.c[2 * l + 1, b], c_b)
        torch.testing.assert_close(y[b, :n], inp)
        assert (y[b, n:] == 0).all()


def test_step_equals_forward_and_state_shapes():
    layer = _layer(num_layers=2)
    x = _inputs()
    y, s = layer(x)
    state = None
    for t in range(T):
        y_t, state = layer.step(x[:, t], state)
        torch.testing.assert_close(y_t, y[:, t])
    assert state.h.shape == (2, B, H)
    torch.testing.assert_close(state.h, s.h)
    torch.testing.assert_close(state.c, s.c)
    init = layer.initial_state(B)
    assert isinstance(init, LSTMState) and init.h.shape == (2, B, H) and (init.c == 0).all()


def test_gradients_flow_to_every_parameter_and_gradcheck():
    layer = _layer(num_layers=2, bidirectional=True)
    x = _inputs().requires_grad_()
    y, s = layer(x, lengths=LENGTHS)
    (y.pow(2).sum() + s.c.sum()).backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert (x.grad[1, 2:] == 0).all() and x.grad[1, :2].abs().sum() > 0  # padding gets no gradient
    small = _layer()
    xs = torch.randn(2, 3, I, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: small(x, lengths=torch.tensor([3, 2]))[0], (xs,))


def test_a_factory_with_options_and_torch_names_in_the_state_dict():
    layer = Recurrent(lambda i, h: PeepholeLSTMCell(i, h, peephole_scale=0.0), I, H, num_layers=2)
    assert all((cell.peephole == 0).all() for cell in layer.cells)
    assert set(layer.state_dict()) == {f"{n}_l{l}" for n in ("weight_ih", "weight_hh", "bias", "peephole") for l in (0, 1)}
    as_options = Recurrent(PeepholeLSTMCell, I, H, peephole_scale=0.0)
    assert (as_options.cells[0].peephole == 0).all()


def test_the_torch_kernels_never_run_a_users_cell():
    with pytest.raises(ValueError, match=r"impl='torch' runs torch's kernels for the built-in cells only, got cell='PeepholeLSTMCell'"):
        Recurrent(PeepholeLSTMCell, I, H, impl="torch")
    with pytest.raises(ValueError, match=r"impl='numba' exists for cell='lstm', 'gru' and 'rnn' only"):
        Recurrent(PeepholeLSTMCell, I, H, impl="numba")


class _NoStep(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size

    def initial_state(self, batch_size, *, device=None, dtype=None):
        return torch.zeros(batch_size, self.hidden_size)


@pytest.mark.parametrize(
    "cell,error,pattern",
    [
        (PeepholeLSTMCell(I, H), TypeError, r"cell must be 'lstm', 'gru', 'rnn', a cell class or a factory .*got PeepholeLSTMCell"),
        (42, TypeError, r"cell must be .*got int"),
        (_NoStep, TypeError, r"cell '_NoStep' lacks step of the cell contract"),
        (lambda i, h: PeepholeLSTMCell(i, h + 1), ValueError, r"must have hidden_size=4, got 5"),
        (lambda i, h: "not a module", TypeError, r"must build a torch.nn.Module, got str"),
    ],
)
def test_a_cell_that_breaks_the_contract_gets_a_clear_error(cell, error, pattern):
    with pytest.raises(error, match=pattern):
        Recurrent(cell, I, H)

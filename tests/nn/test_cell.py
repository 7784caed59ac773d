"""What every built-in cell shares (rnnlab.nn.cell): float64 gradcheck for every option, recurrent dropout,
the checked forward against the unchecked step, and the errors of the checked forward."""
import pytest
import torch

from rnnlab.nn import GRUCell, LSTMCell, LSTMState, RNNCell

OPTIONS = [
    {},
    {"layer_norm": True},
    {"recurrent_dropout": 0.3},
    {"layer_norm": True, "recurrent_dropout": 0.3},
    {"bias": False},
    {"recurrent_init": "uniform"},
]
CELLS = [RNNCell, LSTMCell, GRUCell]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
@pytest.mark.parametrize("cls", CELLS + [lambda i, h, **o: RNNCell(i, h, nonlinearity="relu", **o)], ids=["rnn", "lstm", "gru", "rnn-relu"])
def test_cell_gradcheck_float64(cls, options):
    cell = cls(3, 4, **options).double().train()
    # perturb the layer-norm gains and biases so that their gradients are not at a special point
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mask = cell.sample_mask(2)  # fixed, so that the function is deterministic
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    params = list(cell.parameters())

    if isinstance(cell, LSTMCell):
        c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)

        def f(x, h, c, *ps):
            y, s = cell(x, LSTMState(h, c), mask=mask)
            return y, s.c

        assert torch.autograd.gradcheck(f, (x, h, c, *params))
    else:

        def f(x, h, *ps):
            return cell(x, h, mask=mask)[0]

        assert torch.autograd.gradcheck(f, (x, h, *params))


@pytest.mark.parametrize("cls", CELLS)
def test_forward_checks_and_calls_the_public_step(cls):
    cell = cls(3, 4, layer_norm=True).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    state = cell.initial_state(2)
    y, s = cell(x)  # None means zeros
    y2, s2 = cell.step(x, state, None)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(s, s2)


def test_recurrent_dropout_only_in_training():
    cell = LSTMCell(3, 4, recurrent_dropout=0.5)
    assert cell.sample_mask(2) is not None
    m = cell.sample_mask(1000)
    assert set(m.unique().tolist()) == {0.0, 2.0}
    cell.eval()
    assert cell.sample_mask(2) is None
    x, s = torch.randn(2, 3), LSTMState(torch.randn(2, 4), torch.randn(2, 4))
    torch.testing.assert_close(cell(x, s)[0], cell(x, s)[0])


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
    with pytest.raises(TypeError, match=r"x_t must have dtype torch.float32 like the parameters, got torch.float64"):
        cell(torch.randn(2, 3, dtype=torch.float64))


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: GRUCell(3, 0), r"hidden_size must be a positive integer, got 0"),
        (lambda: GRUCell(3, 5, recurrent_dropout=1.0), r"recurrent_dropout must be in \[0, 1\), got 1.0"),
        (lambda: LSTMCell(3, 5, recurrent_init="xavier"), r"recurrent_init must be one of \('orthogonal', 'uniform', 'identity'\), got 'xavier'"),
    ],
)
def test_bad_cell_options(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()

"""Cells against torch.nn with copied weights, and float64 gradcheck for every option."""
import pytest
import torch

from rnnlab.nn import GRUCell, LSTMCell, LSTMState, RNNCell

TORCH_CELLS = [
    (lambda: RNNCell(3, 5), lambda: torch.nn.RNNCell(3, 5)),
    (lambda: RNNCell(3, 5, nonlinearity="relu"), lambda: torch.nn.RNNCell(3, 5, nonlinearity="relu")),
    (lambda: LSTMCell(3, 5), lambda: torch.nn.LSTMCell(3, 5)),
    (lambda: GRUCell(3, 5), lambda: torch.nn.GRUCell(3, 5)),
    (lambda: GRUCell(3, 5, bias=False), lambda: torch.nn.GRUCell(3, 5, bias=False)),
]


@pytest.mark.parametrize("make", TORCH_CELLS)
def test_cell_matches_torch(make):
    ours, theirs = make[0](), make[1]()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 3)
    h0 = torch.randn(4, 5)
    state = LSTMState(h0, torch.randn(4, 5)) if isinstance(ours, LSTMCell) else h0
    y, new = ours(x, state)
    ref = theirs(x, tuple(state) if isinstance(state, LSTMState) else state)
    ref_h = ref[0] if isinstance(ref, tuple) else ref
    torch.testing.assert_close(y, ref_h, atol=1e-6, rtol=1e-5)
    if isinstance(ours, LSTMCell):
        torch.testing.assert_close(new.c, ref[1], atol=1e-6, rtol=1e-5)
    # gradients of every parameter
    (y * torch.arange(5.0)).sum().backward()
    (ref_h * torch.arange(5.0)).sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=name)


def test_torch_state_dict_loads_into_cell():
    theirs = torch.nn.LSTMCell(3, 5)
    ours = LSTMCell(3, 5)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0])


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


def test_forget_bias_initialisation():
    cell = LSTMCell(3, 4)
    b = cell.bias_ih + cell.bias_hh
    assert torch.equal(b[4:8], torch.ones(4))
    assert torch.equal(b[:4], torch.zeros(4)) and torch.equal(b[8:], torch.zeros(8))
    cell = LSTMCell(3, 4, forget_bias=2.5)
    assert torch.equal((cell.bias_ih + cell.bias_hh)[4:8], torch.full((4,), 2.5))


def test_orthogonal_recurrent_init():
    cell = GRUCell(3, 6)
    for block in cell.weight_hh.detach().split(6):
        torch.testing.assert_close(block @ block.t(), torch.eye(6), atol=1e-5, rtol=0)
    uniform = GRUCell(3, 6, recurrent_init="uniform").weight_hh.detach()
    assert uniform.abs().max() <= 1 / 6**0.5
    assert not torch.allclose(uniform[:6] @ uniform[:6].t(), torch.eye(6), atol=1e-2)


def test_layer_norm_normalises_preactivations():
    """With LN the pre-activations do not grow with the scale of the input weights."""
    torch.manual_seed(1)
    x = torch.randn(8, 3)
    small, big = RNNCell(3, 16, layer_norm=True), RNNCell(3, 16, layer_norm=True)
    big.load_state_dict(small.state_dict())
    with torch.no_grad():
        big.weight_ih.mul_(100.0)
    torch.testing.assert_close(small(x)[0], big(x)[0], atol=1e-4, rtol=1e-4)
    plain_small, plain_big = RNNCell(3, 16), RNNCell(3, 16)
    plain_big.load_state_dict(plain_small.state_dict())
    with torch.no_grad():
        plain_big.weight_ih.mul_(100.0)
    assert not torch.allclose(plain_small(x)[0], plain_big(x)[0], atol=1e-2)


def test_recurrent_dropout_only_in_training():
    cell = LSTMCell(3, 4, recurrent_dropout=0.5)
    assert cell.sample_mask(2) is not None
    m = cell.sample_mask(1000)
    assert set(m.unique().tolist()) == {0.0, 2.0}
    cell.eval()
    assert cell.sample_mask(2) is None
    x, s = torch.randn(2, 3), LSTMState(torch.randn(2, 4), torch.randn(2, 4))
    torch.testing.assert_close(cell(x, s)[0], cell(x, s)[0])

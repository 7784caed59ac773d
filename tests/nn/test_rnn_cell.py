"""The Elman cell against torch.nn.RNNCell with copied weights, tanh and ReLU."""
import pytest
import torch

from rnnlab.nn import RNNCell


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_matches_torch(assert_cell_matches_torch, nonlinearity):
    assert_cell_matches_torch(RNNCell(3, 5, nonlinearity=nonlinearity), torch.nn.RNNCell(3, 5, nonlinearity=nonlinearity))


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


def test_bad_nonlinearity():
    with pytest.raises(ValueError, match=r"nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        RNNCell(3, 5, nonlinearity="gelu")

"""The LSTM cell against torch.nn.LSTMCell with copied weights; its forget-gate bias."""
import torch

from rnnlab.nn import LSTMCell


def test_lstm_cell_matches_torch(assert_cell_matches_torch):
    assert_cell_matches_torch(LSTMCell(3, 5), torch.nn.LSTMCell(3, 5))


def test_torch_state_dict_loads_into_cell():
    theirs = torch.nn.LSTMCell(3, 5)
    ours = LSTMCell(3, 5)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0])


def test_forget_bias_initialisation():
    cell = LSTMCell(3, 4)
    b = cell.bias_ih + cell.bias_hh
    assert torch.equal(b[4:8], torch.ones(4))
    assert torch.equal(b[:4], torch.zeros(4)) and torch.equal(b[8:], torch.zeros(8))
    cell = LSTMCell(3, 4, forget_bias=2.5)
    assert torch.equal((cell.bias_ih + cell.bias_hh)[4:8], torch.full((4,), 2.5))

"""A recurrent-dropout LSTM out of training is a plain LSTM (the mask is 1): impl="auto" runs torch's fused kernel
there, with the same numbers as the cell loop, and the numba kernel in training."""
import pytest
import torch

from rnnlab.nn import LSTM, fused_lstm


def _no_numba(*args, **kwargs):
    raise AssertionError("the numba LSTM ran out of training")


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_eval_runs_torch_kernel_with_the_loop_numbers(monkeypatch, layers, bidirectional, with_lengths):
    torch.manual_seed(0)
    auto = LSTM(5, 7, num_layers=layers, bidirectional=bidirectional, recurrent_dropout=0.3).eval()
    loop = LSTM(5, 7, num_layers=layers, bidirectional=bidirectional, recurrent_dropout=0.3, impl="loop").eval()
    loop.load_state_dict(auto.state_dict())
    x = torch.randn(3, 6, 5)
    lengths = torch.tensor([6, 2, 4]) if with_lengths else None
    want_y, want_s = loop(x, lengths=lengths)
    monkeypatch.setattr(fused_lstm, "lstm_sequence", _no_numba)
    y, s = auto(x, lengths=lengths)
    torch.testing.assert_close(y, want_y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.h, want_s.h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.c, want_s.c, rtol=1e-5, atol=1e-6)
    if not bidirectional:  # streaming too
        y1, _ = auto.step(x[:, 0])
        torch.testing.assert_close(y1, loop(x[:, :1])[0][:, 0], rtol=1e-5, atol=1e-6)


def test_training_still_runs_numba_with_a_mask(monkeypatch):
    torch.manual_seed(0)
    layer = LSTM(4, 6, recurrent_dropout=0.5).train()
    calls = []
    real = fused_lstm.lstm_sequence

    def spy(*args, **kwargs):
        calls.append(kwargs.get("mask"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fused_lstm, "lstm_sequence", spy)
    layer(torch.randn(2, 3, 4))[0].sum().backward()
    assert len(calls) == 1 and calls[0] is not None

"""The batched LSTM step outside autograd (many streams at once): oneDNN products on packed weights give the
numbers of torch's cell kernel, for one and two layers, and follow the weights when they change."""
import pytest
import torch

from rnnlab.nn import GRU, LSTM


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_batched_step_equals_the_cell_kernel(layers, cls):
    torch.manual_seed(0)
    lstm = cls(64, 256, num_layers=layers)
    x = torch.randn(6, 64, 64)  # steps, then B=64 rows
    with torch.no_grad():
        assert lstm._fast_step._batched(x[0])
        state_new = state_ref = None
        for t in range(x.shape[0]):
            y_new, state_new = lstm.step(x[t], state_new)
            with torch.enable_grad():  # the same step in autograd mode runs torch's cell kernel
                y_ref, state_ref = lstm.step(x[t], state_ref)
            torch.testing.assert_close(y_new, y_ref.detach(), rtol=1e-5, atol=1e-5)
        last = (lambda s: s.c) if cls is LSTM else (lambda s: s)
        torch.testing.assert_close(last(state_new), last(state_ref).detach(), rtol=1e-5, atol=1e-5)


def test_packed_weights_follow_a_weight_update():
    torch.manual_seed(0)
    lstm = LSTM(64, 256)
    x, state = torch.randn(64, 64), None
    with torch.no_grad():
        before, _ = lstm.step(x, state)
        lstm.cells[0].weight_hh.mul_(0.5)  # in place: a new version of the same tensor
        lstm.cells[0].weight_ih.mul_(0.5)
        after, _ = lstm.step(x, state)
        with torch.enable_grad():
            ref, _ = lstm.step(x, state)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, ref.detach(), rtol=1e-5, atol=1e-5)


def test_small_steps_and_autograd_keep_the_cell_kernel():
    lstm = LSTM(8, 16)
    with torch.no_grad():
        assert not lstm._fast_step._batched(torch.randn(1, 8))  # far below the threshold
    big = LSTM(64, 256)
    assert not big._fast_step._batched(torch.randn(64, 64))  # grad enabled: torch's kernel (autograd)
    with torch.no_grad():
        assert not big._fast_step._batched(torch.randn(64, 64, dtype=torch.float64))

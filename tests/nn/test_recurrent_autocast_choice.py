"""Under bf16 autocast on the CPU, "auto" keeps the plain GRU/RNN on rnnlab's float32 numba kernel up to a hidden
size (training and inference up to 256; measured in benchmarks/peers.py) and hands larger layers to torch's
kernel, whose products autocast runs in bf16."""
import pytest
import torch

from rnnlab.nn import Recurrent


def _layer(kind: str, hidden: int) -> Recurrent:
    torch.manual_seed(0)
    return Recurrent(kind, 8, hidden, num_layers=2)


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_small_layers_under_autocast_run_the_float32_kernel(kind):
    layer = _layer(kind, 16)
    x = torch.randn(3, 7, 8)
    lengths = torch.tensor([7, 4, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer._impl_for(x) == "numba"
        y, h = layer(x, lengths=lengths)
    assert y.dtype == torch.float32 and h.dtype == torch.float32
    y_ref, h_ref = layer(x, lengths=lengths)  # float32, no autocast: the same kernel, the same numbers
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=0)


def test_gradients_flow_through_the_kernel_under_autocast():
    layer = _layer("gru", 16)
    x = torch.randn(2, 5, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)[0].sum().backward()
    grads = [x.grad] + [p.grad for p in layer.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    ref = x.grad.clone()
    x.grad = None
    layer(x)[0].sum().backward()
    torch.testing.assert_close(x.grad, ref, rtol=1e-6, atol=1e-6)


def test_the_choice_follows_size_and_mode():
    x = torch.randn(2, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _layer("gru", 256)._impl_for(x) == "numba"  # training (grad enabled) up to 256
        assert _layer("gru", 512)._impl_for(x) == "torch"
        with torch.no_grad():
            assert _layer("gru", 256)._impl_for(x) == "numba"  # inference up to 256
            assert _layer("gru", 512)._impl_for(x) == "torch"
    assert _layer("gru", 512)._impl_for(x) == "numba"  # float32 outside autocast: always the kernel

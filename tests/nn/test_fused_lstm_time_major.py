"""The fused LSTM's training path at the small shapes: time-major buffers (y comes back as a (B, T, H) view of a
(T, B, H) buffer, dx likewise), the per-step float32 partial sums of the parameter gradients, and both routes of the
weight gradients (the micro-kernel for small T·B·4H, oneDNN/torch.mm above), each against the reference loop."""
import pytest
import torch
from test_fused_lstm import TOL, make_case, outputs_and_grads

from rnnlab.nn import fused_lstm
from rnnlab.nn.fused_lstm import lstm_sequence, lstm_sequence_reference


@pytest.fixture(params=["ukernel", "onednn"])
def weight_grads(request, monkeypatch):
    """Force one route for dW_ih, dW_hh: the threshold on T·B·4H above or below every test shape."""
    monkeypatch.setattr(fused_lstm, "_UKERNEL_WEIGHT_GRAD_MAX", 1 << 40 if request.param == "ukernel" else 0)
    return request.param


def assert_matches_reference(args, kw, dtype, what):
    fused = outputs_and_grads(lstm_sequence, args, kw)
    ref = outputs_and_grads(lstm_sequence_reference, args, kw)
    names = ["y", "hT", "cT"] + [f"grad {i}" for i in range(len(fused) - 3)]
    for name, a, b in zip(names, fused, ref):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m, name=name: f"{what} {name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
def test_both_weight_grad_routes_match_reference(weight_grads, dtype, ln):
    """H = 13 and I = 5: panels of the packed operand (x, h ⊙ m) narrower than 32 columns; lengths and dropout."""
    torch.manual_seed(1)
    args, kw = make_case(3, 6, 5, 13, dtype=dtype, ln=ln, mask=True, lengths="mixed")
    assert_matches_reference(args, kw, dtype, weight_grads)


def test_weight_grad_ukernel_is_the_plain_product():
    """dᵀ a on the micro-kernel against the float64 product, with rows past one tile of 8 and a narrow panel."""
    torch.manual_seed(2)
    d, a = torch.randn(37, 20), torch.randn(37, 45)
    want = (d.double().t() @ a.double()).float()
    torch.testing.assert_close(fused_lstm._weight_grad_ukernel(d, a), want, rtol=1e-5, atol=1e-5)


def test_weight_grad_route_threshold():
    """The micro-kernel up to T·B·4H = 2^20 elements: (8, 500, 32, 64) of benchmarks/layers.py, not (32, 100, ·, 256)."""
    assert 500 * 8 * 256 <= fused_lstm._UKERNEL_WEIGHT_GRAD_MAX < 100 * 32 * 1024


def test_many_steps_accumulate_parameter_grads_per_step():
    """T = 40 steps of float32 partial sums folded into float64 totals: the gain and bias gradients stay within
    float32 tolerance of the reference (itself a float32 autograd sum)."""
    torch.manual_seed(3)
    args, kw = make_case(4, 40, 6, 16, dtype=torch.float32, ln=True, mask=True, lengths="mixed")
    assert_matches_reference(args, kw, torch.float32, "T=40")


def test_training_output_is_a_time_major_view_that_feeds_a_second_layer():
    """y (B, T, H) is a view of a (T, B, H) buffer; a second layer on it, and the gradients through both, match the
    reference run on contiguous tensors."""
    torch.manual_seed(4)
    args, kw = make_case(3, 5, 4, 8, dtype=torch.float64, ln=True, mask=False, lengths=None)
    args2, kw2 = make_case(3, 5, 8, 8, dtype=torch.float64, ln=True, mask=False, lengths=None)
    x = args[0].detach().requires_grad_()

    def two_layers(fn):
        y1, _, _ = fn(x, *args[1:], **kw)
        y2, _, _ = fn(y1, *args2[1:], **kw2)
        (y2 * torch.linspace(-1, 1, y2.numel(), dtype=y2.dtype).view_as(y2)).sum().backward()
        grads = [x.grad.clone()] + [p.grad.clone() for p in args[3:5] + args2[3:5]]
        for t in [x] + args[3:5] + args2[3:5]:
            t.grad = None
        return y1, y2, grads

    y1, y2, got = two_layers(lstm_sequence)
    assert y1.shape == (3, 5, 8) and y1.stride() == (8, 24, 1)  # (B, T, H) over time-major memory
    _, y2_ref, want = two_layers(lstm_sequence_reference)
    torch.testing.assert_close(y2, y2_ref, **TOL[torch.float64])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[torch.float64])

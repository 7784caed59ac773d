"""The fused LSTM's training path at the small shapes: time-major buffers (y comes back as a (B, T, H) view of a
(T, B, H) buffer, dx likewise), the per-step float32 partial sums of the parameter gradients, and both routes of the
weight gradients (summed inside the backward loop chunk by chunk for small T·B·4H, two products at the end above),
each against the reference loop."""
import numpy as np
import pytest
import torch
from test_fused_lstm import TOL, make_case, outputs_and_grads

from rnnlab.nn import fused_lstm
from rnnlab.nn._ukernel import pack_panels
from rnnlab.nn.fused_lstm import lstm_sequence, lstm_sequence_reference


@pytest.fixture(params=["in_loop", "in_loop_chunks_of_2", "end_products"])
def weight_grads(request, monkeypatch):
    """Force one route for dW_ih, dW_hh: inside the backward loop (one chunk of steps, or chunks of 2 steps), or
    two products at the end (the threshold on T·B·4H below every test shape)."""
    monkeypatch.setattr(fused_lstm, "_IN_LOOP_WEIGHT_GRAD_MAX", 0 if request.param == "end_products" else 1 << 40)
    if request.param == "in_loop_chunks_of_2":
        monkeypatch.setattr(fused_lstm, "_grad_chunk", lambda B, G, dtype, ln: 2)
    return request.param


def assert_matches_reference(args, kw, dtype, what):
    fused = outputs_and_grads(lstm_sequence, args, kw)
    ref = outputs_and_grads(lstm_sequence_reference, args, kw)
    names = ["y", "hT", "cT"] + [f"grad {i}" for i in range(len(fused) - 3)]
    for name, a, b in zip(names, fused, ref):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m, name=name: f"{what} {name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
@pytest.mark.parametrize("lengths", ["mixed", "short"])
def test_both_weight_grad_routes_match_reference(weight_grads, dtype, ln, lengths):
    """H = 13 and I = 5: panels of the packed operands (x, h ⊙ m) narrower than 32 columns; T = 7, an odd number
    of steps for chunks of 2; lengths (short: the steps past the longest row are skipped) and dropout. (Seed 1 drew
    a float32 case where one element of dW_ih cancels to 2e-4 relative error on every route, oneDNN's included.)"""
    torch.manual_seed(5)
    args, kw = make_case(3, 7, 5, 13, dtype=dtype, ln=ln, mask=True, lengths=lengths)
    assert_matches_reference(args, kw, dtype, weight_grads)


def test_pack_chunks_is_pack_panels_per_chunk():
    """Each chunk of C steps (C·B rows), zero-padded past step T, packed as pack_panels packs it."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((7, 3, 37)).astype(np.float32)  # T = 7 steps, B = 3, N = 37 (two panels, one narrow)
    got = fused_lstm._pack_chunks(A, 3, 9)
    padded = np.concatenate([A, np.zeros((2, 3, 37), np.float32)]).reshape(3, 9, 37)
    assert got.shape[0] == 3
    for c in range(3):
        np.testing.assert_array_equal(got[c], pack_panels(padded[c]))


def test_weight_grad_route_threshold():
    """In the loop up to T·B·4H = 2^20 elements: (8, 500, 32, 64) of benchmarks/layers.py, not (32, 100, ·, 256);
    chunks of ~256 KB of float32 gradients in all (32 steps at B = 8, 4H = 256; 16 with layer norm's two arrays)."""
    assert 500 * 8 * 256 <= fused_lstm._IN_LOOP_WEIGHT_GRAD_MAX < 100 * 32 * 1024
    assert fused_lstm._grad_chunk(8, 256, torch.float32, False) == 32
    assert fused_lstm._grad_chunk(8, 256, torch.float32, True) == 16
    assert fused_lstm._grad_chunk(1 << 20, 256, torch.float64, True) == 1


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

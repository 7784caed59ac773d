"""The fused GRU's element-wise step kernels where their vector code runs, and where their arithmetic could lose
precision.

test_fused_gru.py checks the kernels at H = 6-8, where every inner loop of the float32 kernels runs in its scalar
remainder; here H = 40 and 80 (loops over G = 120 and 240, over H = 40 and 80: full vector iterations and a
remainder), on both loops over time (the whole loop in numba, and the per-step product from Python), training and
inference, float32 and float64. The inference kernel takes the moments of each row of x̂ and ĥ in one pass of sums
about the row's first element; rows whose mean is large against their spread are where that must not cancel.
"""
import pytest
import torch
from test_fused_gru import TOL, make_case, outputs_and_grads

from rnnlab.nn.fused_gru import gru_sequence, gru_sequence_reference


def assert_all_close(fused, ref, dtype, what):
    names = ["y", "hT"] + [f"grad {i}" for i in range(len(fused) - 2)]
    for name, a, b in zip(names, fused, ref, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m, name=name: f"{what} {name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("H", [40, 80])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
def test_vector_widths_match_reference(gru_rnn_loop, H, ln, dtype):
    """Training (forward and backward kernels): outputs, states and every gradient, with dropout and lengths."""
    torch.manual_seed(H)
    args, kw = make_case(3, 4, 6, H, dtype=dtype, ln=ln, mask=True, lengths="mixed")
    fused = outputs_and_grads(gru_sequence, args, kw)
    ref = outputs_and_grads(gru_sequence_reference, args, kw)
    assert_all_close(fused, ref, dtype, f"{gru_rnn_loop} H={H}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("H", [40, 80])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
@pytest.mark.parametrize("mask", [False, True], ids=["nomask", "mask"])
def test_inference_vector_widths_match_reference(gru_rnn_loop, H, ln, mask, dtype):
    torch.manual_seed(H)
    args, kw = make_case(3, 5, 6, H, dtype=dtype, ln=ln, mask=mask, lengths="short")
    with torch.no_grad():
        fused, ref = gru_sequence(*args, **kw), gru_sequence_reference(*args, **kw)
    assert_all_close(fused, ref, dtype, f"{gru_rnn_loop} H={H} inference")
    y, hT = fused
    for b, n in enumerate(kw["lengths"].tolist()):  # zeros past each row's length, hT its last real step
        assert not y[b, n:].any()
        assert torch.equal(y[b, n - 1], hT[b])


def offset_case(H: int, offset: float):
    """Layer-norm GRU arguments whose products x̂ = W_ih x and ĥ = W_hh h have rows with mean ~offset·Σ and spread
    ~1: every weight shares ``offset``."""
    args, kw = make_case(4, 5, 6, H, dtype=torch.float32, ln=True, mask=False, lengths=None)
    with torch.no_grad():
        args[0].add_(1.0)  # inputs of one sign, so that the shared weight gives x̂ a large mean
        args[2].add_(offset)
        args[3].add_(offset)
    return args, kw


def as_float64(t):
    return None if t is None else t.detach().double()


@pytest.mark.parametrize("offset", [30.0, 300.0])
@pytest.mark.parametrize("H", [8, 80])
def test_layer_norm_of_rows_with_a_large_mean(gru_rnn_loop, H, offset):
    """Rows of x̂ and ĥ with mean 100-1000x their spread. Judged against the reference in float64: the float32
    kernels' error stays within 3x that of the float32 reference (torch's two-pass layer norm), which comes from
    rounding the products themselves."""
    torch.manual_seed(0)
    args, kw = offset_case(H, offset)
    with torch.no_grad():
        x_hat = args[0][:, 0] @ args[2].t()  # (B, G) the first step's input product
        assert (x_hat.mean(1) / x_hat.std(1)).abs().min() > 50  # the case is the one described
        exact = gru_sequence_reference(*map(as_float64, args), **{k: as_float64(v) for k, v in kw.items()})
        ref32 = gru_sequence_reference(*args, **kw)
        fused = {"inference": gru_sequence(*args, **kw)}
    fused["training"] = gru_sequence(*args, **kw)  # the training forward kernel (grad enabled)
    assert fused["training"][0].requires_grad
    for mode, outs in fused.items():
        for name, a, r, e in zip(["y", "hT"], outs, ref32, exact, strict=True):
            err, ref_err = (a.detach().double() - e).abs().max().item(), (r.double() - e).abs().max().item()
            assert err <= 3 * ref_err + 1e-6, f"{gru_rnn_loop} {mode} {name}: error {err:.2e}, reference's {ref_err:.2e}"

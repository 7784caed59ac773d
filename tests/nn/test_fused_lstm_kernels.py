"""The fused LSTM's element-wise step kernels where their vector code runs, and where their arithmetic could lose
precision.

test_fused_lstm.py checks the kernels at H = 8, where every inner loop of the float32 kernels runs in its scalar
remainder (LLVM vectorises them 16 lanes x 4 wide); here H = 40 and 80 (loops over G = 160 and 320, over H = 40
and 80: full vector iterations and a remainder), on both loops over time. The inference kernel takes the moments
of each row of x̂ and ĥ in one pass of sums about the row's first element; rows whose mean is large against their
spread (a shared offset in the weights) are where a one-pass variance without that shift would cancel.
"""
import numba
import numpy as np
import pytest
import torch
from test_fused_lstm import TOL, make_case, outputs_and_grads

from rnnlab.nn import fused_lstm
from rnnlab.nn.fused_lstm import lstm_sequence, lstm_sequence_reference


@pytest.fixture(params=["whole_loop", "per_step"])
def path(request, monkeypatch):
    """Force one loop over time: the threshold on B·G·H set above or below every test shape."""
    monkeypatch.setattr(fused_lstm, "_WHOLE_LOOP_MAX", 1 << 40 if request.param == "whole_loop" else 0)
    return request.param


def assert_all_close(fused, ref, dtype, what):
    names = ["y", "hT", "cT"] + [f"grad {i}" for i in range(len(fused) - 3)]
    for name, a, b in zip(names, fused, ref):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m, name=name: f"{what} {name}: {m}")


@pytest.mark.parametrize("H", [40, 80])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
def test_vector_widths_match_reference(path, H, ln):
    """Training (forward and backward kernels): outputs, states and every gradient, with dropout and lengths."""
    torch.manual_seed(H)
    args, kw = make_case(3, 4, 6, H, dtype=torch.float32, ln=ln, mask=True, lengths="mixed")
    fused = outputs_and_grads(lstm_sequence, args, kw)
    ref = outputs_and_grads(lstm_sequence_reference, args, kw)
    assert_all_close(fused, ref, torch.float32, f"{path} H={H}")


@pytest.mark.parametrize("H", [40, 80])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
def test_inference_vector_widths_match_reference(path, H, ln):
    torch.manual_seed(H)
    args, kw = make_case(3, 5, 6, H, dtype=torch.float32, ln=ln, mask=True, lengths="short")
    with torch.no_grad():
        for name, a, b in zip(["y", "hT", "cT"], lstm_sequence(*args, **kw), lstm_sequence_reference(*args, **kw)):
            torch.testing.assert_close(a, b, **TOL[torch.float32], msg=lambda m, name=name: f"{path} {name}: {m}")


def offset_case(H: int, offset: float):
    """Layer-norm LSTM arguments whose products x̂ = W_ih x and ĥ = W_hh h have rows with mean ~offset·Σ and spread
    ~1: every weight shares ``offset``."""
    args, kw = make_case(4, 5, 6, H, dtype=torch.float32, ln=True, mask=False, lengths=None)
    with torch.no_grad():
        args[0].add_(1.0)  # inputs of one sign, so that the shared weight gives x̂ a large mean
        args[3].add_(offset)
        args[4].add_(offset)
    return args, kw


def as_float64(t):
    if t is None:
        return None
    return tuple(as_float64(u) for u in t) if isinstance(t, tuple) else t.detach().double()


@pytest.mark.parametrize("offset", [30.0, 300.0])
@pytest.mark.parametrize("H", [8, 80])
def test_layer_norm_of_rows_with_a_large_mean(path, H, offset):
    """Rows of x̂ and ĥ with mean 100-1000x their spread. Judged against the reference in float64: the float32
    kernels' error stays within 3x that of the float32 reference (torch's two-pass layer norm), which comes from
    rounding the products themselves (measured: 1.2e-5 vs 3.3e-5 at H = 8, offset 30; 5.2e-4 vs 4.5e-4 at H = 80,
    offset 300). A one-pass variance without the shift would lose (mean/std)²·2^-24 of the variance: 6e-4 at
    offset 30, 6% at offset 300."""
    torch.manual_seed(0)
    args, kw = offset_case(H, offset)
    with torch.no_grad():
        x_hat = args[0][:, 0] @ args[3].t()  # (B, G) the first step's input product
        assert (x_hat.mean(1) / x_hat.std(1)).abs().min() > 50  # the case is the one described
        exact = lstm_sequence_reference(*map(as_float64, args), **{k: as_float64(v) for k, v in kw.items()})
        ref32 = lstm_sequence_reference(*args, **kw)
        fused = {"inference": lstm_sequence(*args, **kw)}
    fused["training"] = lstm_sequence(*args, **kw)  # the training forward kernel (grad enabled)
    assert fused["training"][0].requires_grad
    for mode, outs in fused.items():
        for name, a, r, e in zip(["y", "hT", "cT"], outs, ref32, exact):
            err, ref_err = (a.detach().double() - e).abs().max().item(), (r.double() - e).abs().max().item()
            assert err <= 3 * ref_err + 1e-6, f"{path} {mode} {name}: error {err:.2e}, reference's {ref_err:.2e}"


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _activations(v, th, sg):  # pragma: no cover - runs compiled
    for k in range(v.shape[0]):
        th[k] = fused_lstm._tanh(v[k])
        sg[k] = fused_lstm._sigmoid(v[k])


def test_float32_activations_against_torch():
    """The kernels' float32 tanh (Eigen's rational approximation, vectorised) and sigmoid = (1 + tanh(x/2)) / 2,
    over a dense sweep of [-20, 20] and the tails, against torch.tanh / torch.sigmoid: within 2.5e-7 absolute
    (measured 2.4e-7 and 1.8e-7: the approximation saturates at ±(1 - 2.4e-7), so σ of a very negative input is
    1.2e-7, not ~0), odd, and inside [-1, 1] and [0, 1]. Absolute, not relative: the gates multiply values of
    order one, so an error of 1e-7 in a gate near 0 moves the cell by as little as one near 1."""
    v = np.concatenate([np.linspace(-20, 20, 400_001), [-1e30, -100.0, -9.0, 0.0, 9.0, 100.0, 1e30]]).astype(np.float32)
    th, sg = np.empty_like(v), np.empty_like(v)
    _activations(v, th, sg)
    vt = torch.from_numpy(v)
    err_tanh = (torch.from_numpy(th) - torch.tanh(vt)).abs().max().item()
    err_sigmoid = (torch.from_numpy(sg) - torch.sigmoid(vt)).abs().max().item()
    assert err_tanh < 2.5e-7 and err_sigmoid < 2.5e-7, (err_tanh, err_sigmoid)
    th_neg, sg_neg = np.empty_like(v), np.empty_like(v)
    _activations(-v, th_neg, sg_neg)
    np.testing.assert_array_equal(th_neg, -th)  # odd
    np.testing.assert_allclose(sg + sg_neg, 1, atol=1.2e-7)  # σ(-x) = 1 - σ(x)
    assert np.all(np.abs(th) <= 1) and np.all((sg >= 0) & (sg <= 1))

"""The fused minGRU/minLSTM kernels (nn/_min_scan.py) against the torch reference paths.

References: the log-space scan (scan="log": torch gates, Heinsen scan, lengths by masking, the backward direction
by reversing x and the outputs), the step-by-step cell loop, and float64 gradcheck of the kernel itself.
"""
import numba
import numpy as np
import pytest
import torch

from rnnlab.nn import _min_scan
from rnnlab.nn._min_scan import _exp, min_scan
from rnnlab.nn.min_rnn import MinGRU, MinLSTM

CLASSES = [MinGRU, MinLSTM]
KIND = {MinGRU: "gru", MinLSTM: "lstm"}
KIND_WIDTH = {MinGRU: 2, MinLSTM: 3}  # blocks of H in the Linear's output


def _pair(cls, I, H, dtype, **options):
    """The same weights twice: the numba kernel and the log-space reference."""
    torch.manual_seed(0)
    kernel = cls(I, H, scan="numba", **options).to(dtype)
    ref = cls(I, H, scan="log", **options).to(dtype)
    ref.load_state_dict(kernel.state_dict())
    return kernel, ref


def _run(model, x, h0, lengths):
    """Outputs, state and every gradient (x, h0, each parameter) of a loss that reads outputs and state."""
    x, h0 = x.clone().requires_grad_(), h0.clone().requires_grad_()
    model.zero_grad(set_to_none=True)
    out, state = model(x, h0, lengths)
    w = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)  # weights so that no gradient is uniform
    (out.pow(2).mul(w).sum() + state.sum()).backward()
    return [out, state, x.grad, h0.grad] + [p.grad for p in model.parameters()]


@numba.njit(error_model="numpy", cache=True)
def _exp_all(x, y):
    for i in range(x.shape[0]):
        y[i] = _exp(x[i])


def test_float32_exp_is_within_two_ulp_and_saturates():
    x = np.concatenate([np.linspace(-87, 88, 200001), [-1e4, -100, 0, 100, 1e4]]).astype(np.float32)
    y = np.empty_like(x)
    _exp_all(x, y)
    want = np.exp(np.clip(x.astype(np.float64), -87, 88))
    assert np.all(np.abs(y - want) <= 2.5 * np.spacing(want.astype(np.float32)))
    nan = np.array([np.nan, 1.0], dtype=np.float32)
    _exp_all(nan, nan)
    assert np.isnan(nan[0]) and nan[1] == np.float32(np.e)
    y64 = np.empty(3)
    _exp_all(np.array([-1.0, 0.0, 700.0]), y64)  # float64 keeps math.exp: no clamp
    np.testing.assert_allclose(y64, np.exp([-1.0, 0.0, 700.0]), rtol=1e-15)


@pytest.mark.parametrize("block", [1 << 17, 12])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_kernel_gradcheck_float64_with_lengths(kind, reverse, block, monkeypatch):
    monkeypatch.setattr(_min_scan, "_BLOCK", block)
    n = 2 if kind == "gru" else 3
    g = torch.Generator().manual_seed(3)
    x = (2 * torch.randn(3, 5, 2, generator=g, dtype=torch.float64)).requires_grad_()
    weight = torch.randn(n * 3, 2, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(n * 3, generator=g, dtype=torch.float64).requires_grad_()
    h0 = torch.randn(3, 3, generator=g, dtype=torch.float64).requires_grad_()
    lengths = torch.tensor([5, 2, 1])
    assert torch.autograd.gradcheck(
        lambda *a: min_scan(kind, *a, lengths, reverse=reverse), (x, weight, bias, h0)
    )


# k values per block: the default (one block here), several whole rows (9·8 = 72 values a row for minGRU), and
# windows of time within a row (2 or 3 steps), so that state and gradient cross block boundaries
BLOCKS = [1 << 17, 150, 20]


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cls", CLASSES)
def test_two_layers_with_lengths_equal_the_log_scan_float64(cls, bidirectional, block, monkeypatch):
    monkeypatch.setattr(_min_scan, "_BLOCK", block)
    kernel, ref = _pair(cls, 3, 4, torch.float64, num_layers=2, bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(4, 9, 3, generator=g, dtype=torch.float64)
    h0 = torch.randn(2 * D, 4, 4, generator=g, dtype=torch.float64)
    lengths = torch.tensor([9, 4, 1, 7])
    for got, want in zip(_run(kernel, x, h0, lengths), _run(ref, x, h0, lengths), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", CLASSES)
def test_float32_larger_shape_equals_the_float64_log_scan(cls, monkeypatch):
    monkeypatch.setattr(_min_scan, "_BLOCK", 40 * 3 * 64)  # 64-step windows, a partial one at the end
    # the reference in float64: the float32 log-space scan itself is off by ~1e-2 in the weight gradient here
    kernel, ref = _pair(cls, 16, 40, torch.float32, bidirectional=True)
    ref.double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 200, 16, generator=g)
    h0 = torch.randn(2, 6, 40, generator=g)
    lengths = torch.tensor([200, 17, 150, 1, 199, 64])
    got_all = _run(kernel, x, h0, lengths)
    want_all = _run(ref, x.double(), h0.double(), lengths)
    for got, want in zip(got_all, want_all, strict=True):
        scale = want.abs().max().item()
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("cls", CLASSES)
def test_without_bias_and_only_some_gradients(cls):
    kernel, ref = _pair(cls, 3, 5, torch.float64, bias=False)
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 5, dtype=torch.float64)  # no gradient asked for h0
    out, state = kernel(x, h0)
    out.sum().backward()  # the state unused: its gradient arrives as None
    out_ref, _ = ref(x, h0)
    torch.testing.assert_close(out, out_ref)
    grad_x = x.grad.clone()
    x.grad = None
    out_ref.sum().backward()
    torch.testing.assert_close(grad_x, x.grad)
    torch.testing.assert_close(kernel.cells[0].linear.weight.grad, ref.cells[0].linear.weight.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cls", CLASSES)
def test_nan_in_the_input_comes_out_as_nan(cls, dtype):
    # a diverging run must show: NaN in x_t gives NaN from step t on, as the reference path does
    kernel, _ = _pair(cls, 3, 5, dtype)
    x = torch.randn(2, 6, 3, dtype=dtype)
    x[0, 2, 1] = float("nan")
    with torch.no_grad():
        out, state = kernel(x)
    assert out[0, 2:].isnan().all() and state[0, 0].isnan().all()
    assert not out[0, :2].isnan().any() and not out[1].isnan().any()


@pytest.mark.parametrize("cls", CLASSES)
def test_inference_keeps_no_graph_and_matches_training_forward(cls):
    kernel, _ = _pair(cls, 3, 5, torch.float32)
    x, lengths = torch.randn(3, 8, 3), torch.tensor([8, 3, 5])
    with torch.no_grad():
        out, state = kernel(x, lengths=lengths)
    assert out.grad_fn is None and state.grad_fn is None
    out_train, state_train = kernel(x, lengths=lengths)
    assert out_train.grad_fn is not None
    torch.testing.assert_close(out, out_train, rtol=0, atol=0)
    torch.testing.assert_close(state, state_train, rtol=0, atol=0)


@pytest.mark.parametrize("cls", CLASSES)
def test_step_streaming_equals_the_kernel_sequence(cls):
    kernel, _ = _pair(cls, 3, 5, torch.float32, num_layers=2)
    x = torch.randn(2, 50, 3)
    with torch.no_grad():
        out, state = kernel(x)
        s, ys = None, []
        for t in range(x.shape[1]):
            y, s = kernel.step(x[:, t], s)
            ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s, state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", CLASSES)
def test_bf16_autocast_runs_the_kernel_in_float32(cls):
    kernel, _ = _pair(cls, 3, 5, torch.float32)
    x = torch.randn(2, 6, 3)
    want, _ = kernel(x)
    for grad in (False, True):
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
            out, state = kernel(x.requires_grad_(grad))
        assert out.dtype == torch.float32 and state.dtype == torch.float32
        torch.testing.assert_close(out, want)

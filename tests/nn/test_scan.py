"""The scans of rnnlab.nn.scan against the plain loop over t, values and gradients."""
import pytest
import torch

from rnnlab.nn.scan import doubling_scan, linear_scan, log_space_scan, numba_threads, sequential_scan


def _inputs(B=3, T=37, H=5, *, dtype=torch.float64, seed=0, positive=False):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(B, T, H, generator=gen, dtype=dtype) * 0.9 + 0.05  # (B, T, H) in (0, 1)
    b = torch.randn(B, T, H, generator=gen, dtype=dtype)
    if positive:
        b = b.abs() + 0.01
    h0 = -2 * torch.rand(B, H, generator=gen, dtype=dtype)  # negative on purpose
    return a, b, h0


def _grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    (out * w).sum().backward()
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("B", [1, 4])  # B=1 splits H across threads, B=4 runs rows
def test_linear_scan_matches_loop_values_and_grads(dtype, tol, B):
    a, b, h0 = _inputs(B=B, H=40, dtype=dtype)
    h_ref, g_ref = _grads(sequential_scan, a, b, h0)
    h, g = _grads(linear_scan, a, b, h0)
    torch.testing.assert_close(h, h_ref, rtol=tol, atol=tol)
    for got, want in zip(g, g_ref):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_doubling_scan_matches_loop():
    a, b, h0 = _inputs(T=50)
    h_ref, g_ref = _grads(sequential_scan, a, b, h0)
    h, g = _grads(doubling_scan, a, b, h0)
    torch.testing.assert_close(h, h_ref)
    for got, want in zip(g, g_ref):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("h0_kind", ["negative", "zero"])
def test_log_space_scan_matches_loop(h0_kind):
    a, b, h0 = _inputs(positive=True)
    if h0_kind == "zero":
        h0 = torch.zeros_like(h0)
    h_ref, g_ref = _grads(sequential_scan, a, b, h0)
    h, g = _grads(lambda la, lb, h0: log_space_scan(la, lb, h0), a.log(), b.log(), h0)
    torch.testing.assert_close(h, h_ref)
    # the log scan's gradients are w.r.t. log a, log b: chain rule back to a, b
    torch.testing.assert_close(g[0] / a, g_ref[0])
    torch.testing.assert_close(g[1] / b, g_ref[1])
    torch.testing.assert_close(g[2], g_ref[2])


def test_linear_scan_gradcheck_float64():
    a, b, h0 = (t.requires_grad_() for t in _inputs(B=2, T=9, H=3))
    assert torch.autograd.gradcheck(linear_scan, (a, b, h0))


def test_linear_scan_non_contiguous_inputs():
    a, b, h0 = _inputs(B=3, T=20, H=6)
    a_t, b_t = a.transpose(0, 1).contiguous().transpose(0, 1), b[..., ::1]  # strided views of (B, T, H)
    assert not a_t.is_contiguous()
    h_ref, g_ref = _grads(sequential_scan, a, b, h0)
    h, g = _grads(linear_scan, a_t, b_t, h0)
    torch.testing.assert_close(h, h_ref)
    for got, want in zip(g, g_ref):
        torch.testing.assert_close(got, want)


def test_linear_scan_gradient_of_sum_and_no_grad():
    a, b, h0 = _inputs()
    a.requires_grad_()
    linear_scan(a, b, h0).sum().backward()  # expanded (stride 0) incoming gradient
    a_ref = a.detach().clone().requires_grad_()
    sequential_scan(a_ref, b, h0).sum().backward()
    torch.testing.assert_close(a.grad, a_ref.grad)
    with torch.no_grad():
        torch.testing.assert_close(linear_scan(a, b, h0), sequential_scan(a, b, h0))


def test_linear_scan_h0_none_is_zeros():
    a, b, h0 = _inputs()
    torch.testing.assert_close(linear_scan(a, b), linear_scan(a, b, torch.zeros_like(h0)))


def test_linear_scan_bfloat16_falls_back_to_torch():
    a, b, h0 = _inputs(T=16, dtype=torch.float32)
    h = linear_scan(a.bfloat16(), b.bfloat16(), h0.bfloat16())
    assert h.dtype == torch.bfloat16
    torch.testing.assert_close(h.float(), sequential_scan(a, b, h0), rtol=0.05, atol=0.05)


def test_numba_threads_never_exceed_torch_threads():
    assert 1 <= numba_threads() <= torch.get_num_threads()


def test_linear_scan_errors_name_argument_expected_and_given():
    a, b, h0 = _inputs(B=2, T=4, H=3)
    with pytest.raises(ValueError, match=r"b must have the shape of a, \(2, 4, 3\), got \(2, 4, 2\)"):
        linear_scan(a, b[..., :2], h0)
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, H\) = \(2, 3\), got \(3,\)"):
        linear_scan(a, b, h0[0])
    with pytest.raises(ValueError, match=r"a must have shape \(B, T, H\), got shape \(4, 3\)"):
        linear_scan(a[0], b[0], h0)
    with pytest.raises(TypeError, match=r"b must have the dtype of a, torch.float64, got torch.float32"):
        linear_scan(a, b.float(), h0)
    with pytest.raises(TypeError, match=r"h0 must have the dtype of a"):
        linear_scan(a, b, h0.float())

"""rnnlab.nn._gemm: the oneDNN products against torch.mm (float32), and the fallbacks (float64, small sizes)."""
import numpy as np
import pytest
import torch

from rnnlab.nn import _gemm

TOL32 = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threshold", [0, 1 << 40], ids=["onednn", "mm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_product_is_a_times_w_transposed(monkeypatch, threshold, dtype):
    monkeypatch.setattr(_gemm, "ONEDNN_MIN_MACS", threshold)
    w = torch.randn(5, 7, dtype=dtype)
    product = _gemm.step_product(w.t().contiguous().t(), 12)  # a non-contiguous w is made contiguous once
    for a in torch.randn(12, 3, 7, dtype=dtype).unbind(1):  # rows strided, as the h_t of (B, T, H)
        got = product(a)
        assert isinstance(got, np.ndarray) and got.shape == (12, 5)
        torch.testing.assert_close(torch.from_numpy(got), a @ w.t(), **TOL32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_into_writes_every_block(dtype):
    a, w = torch.randn(23, 7, dtype=dtype), torch.randn(5, 7, dtype=dtype)
    out = torch.full((23, 5), float("nan"), dtype=dtype)
    got = _gemm.linear_into(a, w, out, block=4)  # 23 rows: five full blocks and a short one
    assert got.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, a @ w.t(), **TOL32)


@pytest.mark.parametrize("need", [(True, True, True), (False, True, False), (True, False, False)])
def test_input_and_weight_grads(need):
    B, T, I, H, G = 3, 4, 5, 6, 18
    DXP, DHP = torch.randn(B, T, G, dtype=torch.float64), torch.randn(B, T, G, dtype=torch.float64)
    x, HM, W_ih = torch.randn(B, T, I, dtype=torch.float64), torch.randn(B, T, H, dtype=torch.float64), torch.randn(
        G, I, dtype=torch.float64)
    got = _gemm.input_and_weight_grads(DXP, DHP, x, HM, W_ih, *need)
    want = (DXP @ W_ih, torch.einsum("btg,bti->gi", DXP, x), torch.einsum("btg,bth->gh", DHP, HM))
    for n, g, w in zip(need, got, want, strict=True):
        if n:
            torch.testing.assert_close(g, w)
        else:
            assert g is None

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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("need", [(True, True, True), (False, True, False), (True, False, False)])
def test_input_and_weight_grads(need, dtype):
    """dx, dW_ih, dW_hh against einsum in float64 (float32: oneDNN products; float64: the torch fallback)."""
    B, T, I, H, G = 3, 4, 5, 6, 18
    DXP, DHP, x, HM = (torch.randn(B, T, n, dtype=dtype) for n in (G, G, I, H))
    W_ih = torch.randn(G, I, dtype=dtype)
    got = _gemm.input_and_weight_grads(DXP, DHP, x, HM, W_ih, *need)
    d = [t.double() for t in (DXP, DHP, x, HM, W_ih)]
    want = (d[0] @ d[4], torch.einsum("btg,bti->gi", d[0], d[2]), torch.einsum("btg,bth->gh", d[1], d[3]))
    for n, g, w in zip(need, got, want, strict=True):
        if n:
            assert g.dtype == dtype and g.is_contiguous()
            torch.testing.assert_close(g.double(), w, rtol=1e-5, atol=1e-5)
        else:
            assert g is None


def test_numba_splits_by_threads(monkeypatch):
    """One thread: one range, the whole loop up to NUMBA_MAX_MACS (2^25). Two threads: a range of at least
    NUMBA_SPLIT_MIN_ROWS (4) rows per thread, each up to NUMBA_MAX_MACS; a batch too small for a range per thread:
    one range up to NUMBA_MAX_MACS_THREADED (2^18)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert _gemm.numba_splits(64, 256, 768) == [(0, 64)]  # GRU (B, H) = (64, 256)
    assert _gemm.numba_pays(64, 256, 768)
    assert _gemm.numba_splits(64, 512, 1536) is None  # GRU (64, 100, 256, 512)
    assert not _gemm.numba_pays(64, 512, 1536)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert _gemm.numba_splits(8, 64, 192) == [(0, 4), (4, 8)]  # GRU (8, 500, 32, 64)
    assert _gemm.numba_splits(32, 256, 768) == [(0, 16), (16, 32)]  # 16 rows per range: 3.1M
    assert _gemm.numba_splits(64, 512, 1536) == [(0, 32), (32, 64)]  # 32 rows per range: 25M
    assert _gemm.numba_splits(128, 512, 1536) is None  # 64 rows per range: 50M
    assert _gemm.numba_splits(6, 64, 192) == [(0, 6)]  # one range on two threads: 74K <= 2^18
    assert _gemm.numba_splits(6, 256, 768) is None  # 1.2M > 2^18

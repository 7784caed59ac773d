"""The GRU sequence kernel's inference driver (fused_gru._infer, here for a layer whose per-step product runs from
Python): float64 equal to the reference loop and torch.nn.GRU to 1e-12, on each product path, with and without
biases, h0 and lengths; layer norm and the dropout mask take the same driver."""
import pytest
import torch

from rnnlab.nn import GRU, fused_gru
from rnnlab.nn.fused_gru import gru_sequence, gru_sequence_reference

B, T, I, H = 4, 6, 16, 128  # small; the fixture makes the layer take the per-step product from Python
PATHS = {"default": {}, "onednn": {"ONEDNN_MIN_MACS": 0}, "mm": {"ONEDNN_MIN_MACS": 1 << 62}}


@pytest.fixture
def count_plain(monkeypatch):
    """Makes every layer mid-size (no whole loop in numba) and counts the calls of the inference driver."""
    from rnnlab.nn import _gemm

    monkeypatch.setattr(_gemm, "NUMBA_MAX_MACS", -1)
    calls = []
    real = fused_gru._infer
    monkeypatch.setattr(fused_gru, "_infer", lambda *a: calls.append(1) or real(*a))
    return calls


def _weights(dtype, bias):
    g = torch.Generator().manual_seed(0)

    def r(*shape, scale):
        return scale * torch.randn(*shape, generator=g, dtype=dtype)

    return [r(3 * H, I, scale=0.3), r(3 * H, H, scale=0.1),
            r(3 * H, scale=0.5) if bias else None, r(3 * H, scale=0.5) if bias else None]


LENGTHS = {"none": None, "mixed": [T, 1, 3, T], "short": [T - 2, 1, 2, 3]}  # "short": no row runs to T


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("lengths", list(LENGTHS))
def test_plain_inference_equals_the_reference(monkeypatch, count_plain, path, bias, with_h0, lengths):
    from rnnlab.nn import _gemm

    for name, value in PATHS[path].items():
        monkeypatch.setattr(_gemm, name, value)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        torch.manual_seed(0)
        x = torch.randn(B, T, I, dtype=dtype)
        h0 = torch.randn(B, H, dtype=dtype) if with_h0 else None
        w = _weights(dtype, bias)
        L = None if LENGTHS[lengths] is None else torch.tensor(LENGTHS[lengths])
        with torch.no_grad():
            y, hT = gru_sequence(x, h0, *w, lengths=L)
            y_ref, hT_ref = gru_sequence_reference(x, h0, *w, lengths=L)
        torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
        torch.testing.assert_close(hT, hT_ref, atol=tol, rtol=tol)
        if L is None:
            assert torch.equal(y[:, -1], hT)
        else:  # zeros past each row's length, the state of its last real step
            for b, n in enumerate(L.tolist()):
                assert not y[b, n:].any()
                assert torch.equal(y[b, n - 1], hT[b])
    assert len(count_plain) == 2


def test_the_layer_in_inference_equals_torch_gru(count_plain):
    torch.manual_seed(0)
    ours = GRU(I, H, num_layers=2).double().eval()
    ref = torch.nn.GRU(I, H, num_layers=2, batch_first=True).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.randn(2, B, H, dtype=torch.float64)
    with torch.no_grad():
        y, hT = ours(x, h0)
        y_ref, hT_ref = ref(x, h0)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(hT, hT_ref, atol=1e-12, rtol=1e-12)
    assert len(count_plain) == 2  # one call per layer


def test_mask_and_layer_norm_take_the_same_driver(count_plain):
    torch.manual_seed(0)
    x = torch.randn(B, T, I, dtype=torch.float64)
    w = _weights(torch.float64, True)
    gains = {"ln_ih": torch.ones(3 * H, dtype=torch.float64), "ln_hh": torch.ones(3 * H, dtype=torch.float64)}
    mask = torch.full((B, H), 2.0, dtype=torch.float64)
    with torch.no_grad():
        for kw in (gains, {"mask": mask}):
            y, hT = gru_sequence(x, None, *w, **kw)
            y_ref, hT_ref = gru_sequence_reference(x, None, *w, **kw)
            torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
            torch.testing.assert_close(hT, hT_ref, atol=1e-10, rtol=1e-10)
    assert len(count_plain) == 2

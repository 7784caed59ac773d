"""rnnlab.nn._ukernel: the register-blocked product against numpy in float64, at shapes that hit every edge
(rows M % MR, columns N % NR, K of 0 and 1), with strided operands, in float32 and float64."""
import numpy as np
import pytest

from rnnlab.nn import _ukernel
from rnnlab.nn._ukernel import MR, matmul_packed, pack_panels, panel_width


def _product(A, Wp, out):
    # the njit function itself, called from Python: compiled and cached against _ukernel.py's own source (a jitted
    # caller here would keep a stale copy in its cache when only _ukernel.py changes)
    matmul_packed(A, Wp, out)


NR32 = panel_width(np.float32)
SHAPES = [  # (M, K, N)
    (1, 1, 1), (1, 7, 3), (MR, 1, NR32), (MR + 1, 3, NR32 + 1), (2 * MR - 1, 5, 2 * NR32 - 1),
    (8, 64, 256), (8, 256, 64), (13, 33, 130), (64, 32, 192), (3, 17, 15), (5, 2, 33),
]


def _operands(M, K, N, dtype, rng):
    return rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)


def _tolerance(dtype, K):
    return dict(rtol=1e-12, atol=1e-12 * max(K, 1)) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6 * max(K, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_numpy_float64(shape, dtype):
    M, K, N = shape
    A, W = _operands(M, K, N, dtype, np.random.default_rng(M * 1000 + K * 10 + N))
    out = np.full((M, N), np.nan, dtype=dtype)
    _product(A, pack_panels(W), out)
    np.testing.assert_allclose(out, A.astype(np.float64) @ W.astype(np.float64), **_tolerance(dtype, K))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_rows_and_columns_of_a_and_strided_rows_of_out(dtype):
    """A = HM[:, t] of a (B, T, H) buffer (rows T·H apart), A with a column stride, out rows of a wider array:
    every element outside out's (M, N) window stays as it was."""
    rng = np.random.default_rng(0)
    M, T, K, N = 7, 3, 19, 70
    HM = rng.standard_normal((M, T, K)).astype(dtype)
    W = rng.standard_normal((K, N)).astype(dtype)
    Wp = pack_panels(W)
    big = np.full((M, N + 9), -7.0, dtype=dtype)
    for A in (HM[:, 1], HM[:, 1].T.copy().T, rng.standard_normal((M, 2 * K)).astype(dtype)[:, ::2]):
        big[:] = -7.0
        _product(A, Wp, big[:, :N])
        np.testing.assert_allclose(big[:, :N], A.astype(np.float64) @ W.astype(np.float64), **_tolerance(dtype, K))
        assert (big[:, N:] == -7.0).all()


def test_pack_panels_layout():
    """Panel p, row k holds W[k, p·NR : p·NR + NR], zero past column N."""
    NR = panel_width(np.float32)
    N = NR + 6
    W = np.arange(3 * N, dtype=np.float32).reshape(3, N)
    Wp = pack_panels(W)
    assert Wp.shape == (2, 3, NR) and Wp.flags.c_contiguous
    np.testing.assert_array_equal(Wp[0], W[:, :NR])
    np.testing.assert_array_equal(Wp[1, :, :6], W[:, NR:])
    assert (Wp[1, :, 6:] == 0).all()
    assert panel_width(np.float64) == NR // 2


def test_pack_panels_rejects_other_dtypes():
    with pytest.raises(TypeError, match="float32/float64"):
        pack_panels(np.ones((2, 3), dtype=np.int64))


def test_tile_fits_the_vector_registers():
    """MR·NV accumulators + NV panel vectors + one broadcast within the registers: 32 of 64 bytes with AVX-512, else
    16 of 32 bytes (a 64-byte vector takes two)."""
    registers, per_vector = (32, 1) if _ukernel.AVX512 else (16, 2)
    assert per_vector * (_ukernel.MR * _ukernel.NV + _ukernel.NV) + 1 <= registers

"""benchmarks/ukernel.py: the two numba products it times as baselines against the micro-kernel compute A @ W."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import ukernel  # noqa: E402

TOL32 = dict(rtol=1e-5, atol=1e-5)


def test_axpy_product_matches_mm():
    A = torch.randn(6, 3, 5).unbind(1)[1]  # rows strided
    W_T = torch.randn(5, 9)
    out = np.full((6, 9), np.nan, dtype=np.float32)
    ukernel.axpy_product(A.numpy(), W_T.numpy(), out)
    torch.testing.assert_close(torch.from_numpy(out), A @ W_T, **TOL32)


def test_matmul_8rows_matches_mm():
    A, W = torch.randn(5, 19), torch.randn(19, 7)  # K = 19: two passes of 8 rows of W and a remainder of 3
    out = np.full((5, 7), np.nan, dtype=np.float32)
    ukernel.matmul_8rows(A.numpy(), W.numpy(), out)
    torch.testing.assert_close(torch.from_numpy(out), A @ W, **TOL32)

"""The fused LSTM's two loops over time agree with the reference: one numba call for the whole sequence (small
shapes) and a Python loop with one packed oneDNN product per step (larger ones), forward, backward and inference."""
import pytest
import torch
from test_fused_lstm import TOL, make_case, outputs_and_grads

from rnnlab.nn import _gemm, fused_lstm
from rnnlab.nn.fused_lstm import lstm_sequence, lstm_sequence_reference


@pytest.fixture(params=["whole_loop", "per_step"])
def path(request, monkeypatch):
    """Force one loop: the threshold on B·G·H set above or below every test shape."""
    monkeypatch.setattr(fused_lstm, "_WHOLE_LOOP_MAX", 1 << 40 if request.param == "whole_loop" else 0)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
@pytest.mark.parametrize("lengths", [None, "mixed"])
def test_both_loops_match_reference(path, dtype, ln, lengths):
    args, kw = make_case(5, 7, 6, 8, dtype=dtype, ln=ln, mask=True, lengths=lengths)
    fused = outputs_and_grads(lstm_sequence, args, kw)
    ref = outputs_and_grads(lstm_sequence_reference, args, kw)
    names = ["y", "hT", "cT"] + [f"grad {i}" for i in range(len(fused) - 3)]
    for name, a, b in zip(names, fused, ref):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m, name=name: f"{path} {name}: {m}")


def test_whole_loop_product_with_a_remainder(path):
    """H = 13: the micro-kernel's panels of 32 columns and tiles of 8 rows leave remainders (forward (3, 13) x
    (13, 52), backward (3, 52) x (52, 13))."""
    args, kw = make_case(3, 4, 5, 13, dtype=torch.float64, ln=True, mask=True, lengths="mixed")
    for a, b in zip(outputs_and_grads(lstm_sequence, args, kw), outputs_and_grads(lstm_sequence_reference, args, kw)):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
def test_both_loops_inference_match_reference(path, ln):
    args, kw = make_case(4, 6, 5, 16, dtype=torch.float32, ln=ln, mask=True, lengths="short")
    with torch.no_grad():
        got = lstm_sequence(*args, **kw)
        want = lstm_sequence_reference(*args, **kw)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def test_whole_loop_threshold_picks_small_shapes(monkeypatch):
    """One thread: up to B·G·H = 2^26. Two: one range of rows per thread, each up to rows·G·H = 2^26; a batch too
    small for a range per thread (under 2·4 rows) stays under 2^20 (oneDNN's product would use both threads)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert fused_lstm._splits(8, 256, 64) == [(0, 8)]  # (8, 500, 32, 64) of benchmarks/layers.py
    assert fused_lstm._splits(64, 2048, 512) == [(0, 64)]  # (64, 100, 256, 512), the largest there
    assert fused_lstm._splits(128, 2048, 512) is None
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert fused_lstm._splits(8, 256, 64) == [(0, 4), (4, 8)]
    assert fused_lstm._splits(16, 1024, 256) == [(0, 8), (8, 16)]  # (16, 1024, 128, 256)
    assert fused_lstm._splits(128, 2048, 512) == [(0, 64), (64, 128)]
    assert fused_lstm._splits(256, 2048, 512) is None
    assert fused_lstm._splits(5, 256, 64) == [(0, 5)]  # one range: 5·256·64 <= 2^20
    assert fused_lstm._splits(5, 1024, 256) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_packed_product_is_the_plain_product(dtype):
    a, w = torch.randn(7, 33, dtype=dtype), torch.randn(20, 33, dtype=dtype)
    packed = _gemm.pack(w, 7)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    torch.testing.assert_close(_gemm.linear_packed(a, packed), a @ w.t(), **tol)
    torch.testing.assert_close(_gemm.linear_packed(a[:, :], packed), a @ w.t(), **tol)
    strided = torch.randn(7, 3, 33, dtype=dtype)[:, 1]  # a row-strided view, as the per-step slices of (B, T, H)
    torch.testing.assert_close(_gemm.linear_packed(strided, packed), strided @ w.t(), **tol)


def test_pack_respects_the_onednn_switch(monkeypatch):
    monkeypatch.setattr(_gemm, "_ONEDNN", False)
    w = torch.randn(4, 3)
    assert not _gemm.pack(w, 2).is_mkldnn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
def test_inference_in_chunks_of_steps_matches_reference(path, dtype, ln, monkeypatch):
    """x̂ computed a few steps at a time (chunks of 1 and of 2 steps over T = 7, the last one short), with dropout
    mask, rows that end early (lengths) and a given initial state; float64 exact to the reference's tolerance."""
    args, kw = make_case(3, 7, 5, 8, dtype=dtype, ln=ln, mask=True, lengths="mixed")
    with torch.no_grad():
        want = lstm_sequence_reference(*args, **kw)
        for steps in (1, 2):
            monkeypatch.setattr(fused_lstm, "_INFER_CHUNK_BYTES", steps * 4 * 3 * 32)  # 4 bytes · B · G
            assert fused_lstm._infer_chunk(3, 32) == steps
            got = lstm_sequence(*args, **kw)
            assert got[0].shape == want[0].shape
            for name, a, b in zip(["y", "hT", "cT"], got, want):
                torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m, name=name, steps=steps: f"{steps} {name}: {m}")


def test_inference_output_feeds_a_second_layer():
    """y comes back as a time-major buffer viewed (B, T, H): usable as the next layer's input, as a contiguous y."""
    args, kw = make_case(3, 6, 5, 8, dtype=torch.float64, ln=True, mask=False, lengths=None)
    x2_args, kw2 = make_case(3, 6, 8, 8, dtype=torch.float64, ln=True, mask=False, lengths=None)
    with torch.no_grad():
        y, _, _ = lstm_sequence(*args, **kw)
        got = lstm_sequence(y, *x2_args[1:], **kw2)
        want = lstm_sequence_reference(y.contiguous(), *x2_args[1:], **kw2)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[torch.float64])

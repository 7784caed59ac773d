"""The fused LSTM's whole loop over time split into ranges of rows, one thread each (``fused_lstm._splits``,
``rnnlab.nn._parallel``): outputs, states and every gradient against the reference loop, with lengths, layer norm,
dropout, both routes of the weight gradients and uneven ranges; and the thread helper itself."""
import gc
import sys
import threading

import numpy as np
import pytest
import torch
from test_fused_lstm import TOL, make_case, outputs_and_grads

from rnnlab.nn import GRU, LSTM, _gemm, _parallel, _workspace, fused_lstm
from rnnlab.nn.fused_lstm import lstm_sequence, lstm_sequence_reference


@pytest.fixture(params=[2, 3], ids=["2_threads", "3_threads"])
def threads(request, split_threads):
    """torch at 2 or 3 threads, ranges of a single row allowed; records (kernel, ranges) of each run_split call."""
    return request.param, split_threads(request.param, (fused_lstm, "_SPLIT_MIN_ROWS"), [fused_lstm])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
@pytest.mark.parametrize("route", ["in_loop", "end_products"])
def test_split_training_matches_reference(threads, monkeypatch, dtype, ln, route):
    """B = 5 on 2 or 3 threads: ranges of 2 + 3 or 1 + 2 + 2 rows; mixed lengths and dropout; the weight gradients
    summed chunk by chunk inside each range's loop (chunks of 2 steps, T = 7) or two products at the end."""
    n, calls = threads
    monkeypatch.setattr(fused_lstm, "_IN_LOOP_WEIGHT_GRAD_MAX", 1 << 40 if route == "in_loop" else 0)
    monkeypatch.setattr(fused_lstm, "_grad_chunk", lambda B, G, dtype, ln: 2)
    torch.manual_seed(3)
    args, kw = make_case(5, 7, 6, 13, dtype=dtype, ln=ln, mask=True, lengths="mixed")
    fused = outputs_and_grads(lstm_sequence, args, kw)
    ref = outputs_and_grads(lstm_sequence_reference, args, kw)
    assert ("_forward_loop", n) in calls and ("_backward_loop", n) in calls
    names = ["y", "hT", "cT"] + [f"grad {i}" for i in range(len(fused) - 3)]
    for name, a, b in zip(names, fused, ref):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m, name=name: f"{n} threads {route} {name}: {m}")


@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
@pytest.mark.parametrize("lengths", [None, "mixed"])
def test_split_inference_matches_reference(threads, ln, lengths):
    n, calls = threads
    args, kw = make_case(5, 9, 6, 13, dtype=torch.float64, ln=ln, mask=True, lengths=lengths)
    with torch.no_grad():
        got = lstm_sequence(*args, **kw)
        want = lstm_sequence_reference(*args, **kw)
    assert calls == [("_infer_rows", n)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_split_and_single_thread_agree(monkeypatch):
    """The same float64 call on one thread and on two: equal to rounding (only the order of the parameter-gradient
    sums differs)."""
    args, kw = make_case(8, 6, 5, 16, dtype=torch.float64, ln=True, mask=True, lengths="mixed")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = outputs_and_grads(lstm_sequence, args, kw)
        torch.set_num_threads(2)
        assert fused_lstm._splits(8, 64, 16) == [(0, 4), (4, 8)]
        two = outputs_and_grads(lstm_sequence, args, kw)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_row_splits_cover_the_batch_evenly():
    assert _parallel.row_splits(8, 4, 2) == [(0, 4), (4, 8)]
    assert _parallel.row_splits(7, 1, 3) == [(0, 2), (2, 4), (4, 7)]
    assert _parallel.row_splits(7, 4, 2) == [(0, 7)]  # too few rows for two ranges of 4
    assert _parallel.row_splits(100, 4, 16) == [(100 * s // 16, 100 * (s + 1) // 16) for s in range(16)]
    assert _parallel.row_splits(3, 4, 1) == [(0, 3)]


@pytest.fixture(params=["openmp", "threads"])
def loop_threads(request, monkeypatch):
    """Both ways of running the ranges: torch's OpenMP team (where found) and the pool of Python threads."""
    if request.param == "threads":
        monkeypatch.setattr(_parallel, "_omp", None)
    elif _parallel.backend() != "openmp":
        pytest.fail("torch runs on OpenMP on Linux: its runtime should have been found in /proc/self/maps")
    return request.param


def test_both_backends_run_every_range_on_its_own_thread(loop_threads):
    seen, barrier = [], threading.Barrier(3, timeout=10)  # all three must be running at once to pass the barrier

    def work(i):
        barrier.wait()
        seen.append((i, threading.get_ident()))

    _parallel.run_split(work, [(0,), (1,), (2,)])
    assert _parallel.backend() == loop_threads
    assert sorted(i for i, _ in seen) == [0, 1, 2]
    assert len({ident for _, ident in seen}) == 3
    assert dict(seen)[0] == threading.get_ident()  # the first on the calling thread


def test_both_backends_wait_for_all_and_reraise(loop_threads):
    done = []

    def work(i):
        if i == 1:
            raise ValueError("range 1 failed")
        done.append(i)

    with pytest.raises(ValueError, match="range 1 failed"):
        _parallel.run_split(work, [(0,), (1,), (2,)])
    assert sorted(done) == [0, 2]


def test_both_backends_let_go_of_the_arguments(loop_threads):
    """Once run_split returns, nothing of it holds the ranges' arrays (no reference cycle left for the garbage
    collector): the saved-for-backward buffers among them must be free for reuse right after the backward pass."""
    gc.disable()
    try:
        arrays = [np.zeros(4) for _ in range(3)]
        before = [sys.getrefcount(a) for a in arrays]
        _parallel.run_split(lambda a: a.fill(1.0), [(a,) for a in arrays])
        assert [sys.getrefcount(a) for a in arrays] == before
        assert all(a.sum() == 4 for a in arrays)
    finally:
        gc.enable()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_split_training_reuses_its_saved_buffer(threads, cell, monkeypatch):
    """Two training steps of a split layer take the same saved-for-backward memory (no fresh pages per call; a
    cycle through the OpenMP callback once kept every step's buffer alive until the garbage collector ran)."""
    monkeypatch.setattr(_workspace._local, "saved", {}, raising=False)
    layer = LSTM(6, 8, layer_norm=True) if cell == "lstm" else GRU(6, 8)
    x = torch.randn(8, 7, 6)  # two ranges of 4 rows even at the GRU's default minimum
    ranges = fused_lstm._splits(8, 32, 8) if cell == "lstm" else _gemm.numba_splits(8, 24, 8)
    assert ranges is not None and len(ranges) >= 2
    gc.disable()
    try:
        for _ in range(3):
            layer.zero_grad(set_to_none=True)
            y, _ = layer(x)
            y.mean().backward()
        kept = _workspace._local.saved[torch.float32]
        assert len(kept) == 1 and _workspace.sole_owner(kept[0])
    finally:
        gc.enable()


def test_both_backends_match_reference(loop_threads, threads):
    args, kw = make_case(6, 5, 4, 9, dtype=torch.float64, ln=True, mask=True, lengths="mixed")
    for a, b in zip(outputs_and_grads(lstm_sequence, args, kw), outputs_and_grads(lstm_sequence_reference, args, kw)):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_aligned_arrays_start_on_a_cache_line():
    for shape, dtype in (((3, 5), "float32"), ((1, 7, 13), "float64"), ((1000,), "float32")):
        a = _parallel.aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % _parallel.CACHE_LINE == 0
    rows = _parallel.aligned_rows(3, 5, "float32")  # 20-byte rows, each padded to its own 64-byte line
    assert rows.shape == (3, 5) and not rows.any()
    assert all(rows[s].ctypes.data % _parallel.CACHE_LINE == 0 and rows[s].flags.c_contiguous for s in range(3))


def test_fresh_pages_are_touched_without_changing_them():
    """run_split writes one element per page of a ``fresh`` array (its own value) before the ranges run."""
    a = torch.arange(5000, dtype=torch.float32).numpy()
    _parallel.run_split(lambda i: None, [(0,), (1,)], fresh=(a,))
    np.testing.assert_array_equal(a, np.arange(5000, dtype=np.float32))

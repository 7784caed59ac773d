"""The fused GRU's and RNN's whole loops over time split into ranges of rows, one thread each
(``_gemm.numba_splits``, ``rnnlab.nn._parallel.run_split``): outputs, states and every gradient against the reference
loops, with lengths, layer norm, dropout and uneven ranges; inference (x W_ihᵀ inside the loop) too."""
import pytest
import test_fused_gru as gru_case
import test_fused_rnn as rnn_case
import torch

from rnnlab.nn import _gemm, _parallel, fused_gru, fused_rnn
from rnnlab.nn.fused_gru import gru_sequence, gru_sequence_reference
from rnnlab.nn.fused_rnn import rnn_sequence, rnn_sequence_reference

TOL = gru_case.TOL


@pytest.fixture(params=[2, 3], ids=["2_threads", "3_threads"])
def threads(request, split_threads):
    """torch at 2 or 3 threads, ranges of a single row allowed; records (kernel, ranges) of every run_split call of
    both modules."""
    return request.param, split_threads(request.param, (_gemm, "NUMBA_SPLIT_MIN_ROWS"), [fused_gru, fused_rnn])


def _cell(kind: str, nonlinearity: str = "tanh"):
    """(case module, fused function, reference function, extra keyword options) of the GRU or the RNN."""
    if kind == "gru":
        return gru_case, gru_sequence, gru_sequence_reference, {}
    return rnn_case, rnn_sequence, rnn_sequence_reference, {"nonlinearity": nonlinearity}


def _assert_close(got, want, dtype, what):
    names = ["y", "hT"] + [f"grad {i}" for i in range(len(got) - 2)]
    for name, a, b in zip(names, got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m, name=name: f"{what} {name}: {m}")


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
def test_split_training_matches_reference(threads, kind, dtype, ln):
    """B = 5 on 2 or 3 threads: ranges of 2 + 3 or 1 + 2 + 2 rows; mixed lengths and dropout; forward and backward
    both split."""
    n, calls = threads
    case, fused, reference, extra = _cell(kind.split("_")[0], kind.split("_")[-1])
    torch.manual_seed(3)
    args, kw = case.make_case(5, 7, 6, 8, dtype=dtype, ln=ln, mask=True, lengths="mixed", **extra)
    got = case.outputs_and_grads(fused, args, kw)
    want = case.outputs_and_grads(reference, args, kw)
    assert calls == [("_forward_loop", n), ("_backward_loop", n)]
    _assert_close(got, want, dtype, f"{kind} {n} threads")


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
@pytest.mark.parametrize("lengths", [None, "mixed"])
def test_split_inference_matches_reference(threads, kind, ln, lengths):
    """No grad: x̂_t computed inside each range's loop, one run_split per call."""
    n, calls = threads
    case, fused, reference, extra = _cell(kind.split("_")[0], kind.split("_")[-1])
    torch.manual_seed(4)
    args, kw = case.make_case(5, 9, 6, 8, dtype=torch.float64, ln=ln, mask=True, lengths=lengths, **extra)
    with torch.no_grad():
        got = fused(*args, **kw)
        want = reference(*args, **kw)
    assert calls == [("_infer_rows", n)]
    _assert_close(got, want, torch.float64, kind)


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_split_and_single_thread_agree(kind):
    """The same float64 call on one thread and on two: equal to rounding (only the order of the parameter-gradient
    sums differs); with the default minimum of rows, B = 8 splits into 4 + 4."""
    case, fused, _, extra = _cell(kind)
    torch.manual_seed(5)
    args, kw = case.make_case(8, 6, 5, 16, dtype=torch.float64, ln=True, mask=True, lengths="mixed", **extra)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = case.outputs_and_grads(fused, args, kw)
        with torch.no_grad():
            one_infer = fused(*args, **kw)
        torch.set_num_threads(2)
        assert _gemm.numba_splits(8, 16, 48) == [(0, 4), (4, 8)]
        two = case.outputs_and_grads(fused, args, kw)
        with torch.no_grad():
            two_infer = fused(*args, **kw)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one + list(one_infer), two + list(two_infer), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_per_step_path_when_a_range_is_too_large(threads, monkeypatch):
    """Above the per-range limit the per-step product from Python runs (no run_split), and still matches."""
    _, calls = threads
    monkeypatch.setattr(_gemm, "NUMBA_MAX_MACS", -1)
    monkeypatch.setattr(_gemm, "NUMBA_MAX_MACS_THREADED", -1)
    args, kw = gru_case.make_case(5, 6, 4, 8, dtype=torch.float64, ln=True, mask=True, lengths="mixed")
    _assert_close(gru_case.outputs_and_grads(gru_sequence, args, kw),
                  gru_case.outputs_and_grads(gru_sequence_reference, args, kw), torch.float64, "per step")
    assert calls == []


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_python_thread_pool_backend_matches_reference(threads, monkeypatch, kind):
    """Where no OpenMP runtime is found, run_split's pool of Python threads runs the ranges: the same numbers."""
    monkeypatch.setattr(_parallel, "_omp", None)
    assert _parallel.backend() == "threads"
    case, fused, reference, extra = _cell(kind)
    args, kw = case.make_case(6, 5, 4, 9, dtype=torch.float64, ln=True, mask=True, lengths="mixed", **extra)
    _assert_close(case.outputs_and_grads(fused, args, kw), case.outputs_and_grads(reference, args, kw),
                  torch.float64, f"{kind} python threads")
    with torch.no_grad():
        _assert_close(fused(*args, **kw), reference(*args, **kw), torch.float64, f"{kind} python threads, no grad")
    assert [name for name, _ in threads[1]] == ["_forward_loop", "_backward_loop", "_infer_rows"]

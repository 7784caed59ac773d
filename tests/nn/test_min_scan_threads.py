"""The minGRU/minLSTM scan split into ranges of rows, one per torch thread (``_min_scan._ranges``, run on
``rnnlab.nn._parallel.run_split``): each range runs its own blocks (GEMM + kernel) whole in numba. Outputs, states
and every gradient against the log-space scan, with lengths, both directions, two layers and uneven ranges."""
import pytest
import test__min_scan as case
import torch

from rnnlab.nn import _min_scan, _parallel


@pytest.fixture(params=[2, 3], ids=["2_threads", "3_threads"])
def threads(request, split_threads):
    """torch at 2 or 3 threads, a range of any size allowed; records (kernel, ranges) of every run_split call."""
    return request.param, split_threads(request.param, (_min_scan, "_SPLIT_MIN_VALUES"), [_min_scan])


@pytest.mark.parametrize("block", [1 << 17, 20], ids=["whole_rows", "windows"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cls", case.CLASSES)
def test_split_matches_the_log_scan_float64(threads, cls, bidirectional, block, monkeypatch):
    """B = 5: ranges of 2 + 3 or 1 + 2 + 2 rows; windows of 2-3 steps carry state and gradient across blocks."""
    n, calls = threads
    monkeypatch.setattr(_min_scan, "_BLOCK", block)
    kernel, ref = case._pair(cls, 3, 4, torch.float64, num_layers=2, bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    g = torch.Generator().manual_seed(6)
    x = 2 * torch.randn(5, 9, 3, generator=g, dtype=torch.float64)
    h0 = torch.randn(2 * D, 5, 4, generator=g, dtype=torch.float64)
    lengths = torch.tensor([9, 4, 1, 7, 2])
    for got, want in zip(case._run(kernel, x, h0, lengths), case._run(ref, x, h0, lengths), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    layers = 2 * D
    assert calls == [("_scan_rows", n)] * layers + [("_reverse_scan_rows", n)] * layers
    calls.clear()
    with torch.no_grad():
        got = kernel(x, h0, lengths)
        want = ref(x, h0, lengths)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert calls == [("_scan_rows", n)] * layers


@pytest.mark.parametrize("cls", case.CLASSES)
def test_python_thread_pool_backend_matches_the_log_scan(threads, cls, monkeypatch):
    """Where no OpenMP runtime is found, run_split's pool of Python threads runs the ranges: the same numbers."""
    monkeypatch.setattr(_parallel, "_omp", None)
    assert _parallel.backend() == "threads"
    kernel, ref = case._pair(cls, 3, 4, torch.float64, bidirectional=True)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(6, 8, 3, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, 6, 4, generator=g, dtype=torch.float64)
    lengths = torch.tensor([8, 3, 1, 8, 5, 2])
    for got, want in zip(case._run(kernel, x, h0, lengths), case._run(ref, x, h0, lengths), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert {n for _, n in threads[1]} == {threads[0]}


@pytest.mark.parametrize("cls", case.CLASSES)
def test_split_and_single_thread_agree_float32(cls):
    """The same float32 call on one thread and on two, with the default minimum of work per range: outputs and
    states equal exactly (a row's arithmetic does not depend on its range), gradients to rounding (the order of
    the bias-gradient sums differs)."""
    kernel, _ = case._pair(cls, 16, 32, torch.float32, bidirectional=True)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(8, 300, 16, generator=g)
    h0 = torch.randn(2, 8, 32, generator=g)
    lengths = torch.tensor([300, 17, 150, 1, 299, 64, 300, 2])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert len(_min_scan._ranges(8, 300, 32 * case.KIND_WIDTH[cls], False)) == 1
        one = case._run(kernel, x, h0, lengths)
        torch.set_num_threads(2)
        assert len(_min_scan._ranges(8, 300, 32 * case.KIND_WIDTH[cls], False)) == 2
        two = case._run(kernel, x, h0, lengths)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(one[0], two[0], rtol=0, atol=0)
    torch.testing.assert_close(one[1], two[1], rtol=0, atol=0)
    for a, b in zip(one[2:], two[2:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item())

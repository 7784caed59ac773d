import pytest
import torch

from rnnlab.nn import LSTMState, _gemm, _parallel


def _assert_cell_matches_torch(ours, theirs) -> None:
    """One step of ``ours`` and of the torch.nn cell ``theirs`` with the same weights: outputs and gradients."""
    theirs.load_state_dict(ours.state_dict())
    H = ours.hidden_size
    x = torch.randn(4, ours.input_size)
    h0 = torch.randn(4, H)
    lstm = isinstance(theirs, torch.nn.LSTMCell)
    state = LSTMState(h0, torch.randn(4, H)) if lstm else h0
    y, new = ours(x, state)
    ref = theirs(x, tuple(state) if lstm else state)
    ref_h = ref[0] if lstm else ref
    torch.testing.assert_close(y, ref_h, atol=1e-6, rtol=1e-5)
    if lstm:
        torch.testing.assert_close(new.c, ref[1], atol=1e-6, rtol=1e-5)
    # gradients of every parameter
    (y * torch.arange(float(H))).sum().backward()
    (ref_h * torch.arange(float(H))).sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.fixture
def assert_cell_matches_torch():
    """A cell against its torch.nn counterpart with copied weights (tests of lstm_cell, gru_cell, rnn_cell)."""
    return _assert_cell_matches_torch


@pytest.fixture(params=["whole_loop", "per_step"])
def gru_rnn_loop(request, monkeypatch):
    """Force one loop over time in the fused GRU and RNN: the threshold on the per-step product's multiply-adds
    (``_gemm.NUMBA_MAX_MACS``, at any thread count) set above or below every test shape."""
    limit = 1 << 40 if request.param == "whole_loop" else -1
    monkeypatch.setattr(_gemm, "NUMBA_MAX_MACS", limit)
    monkeypatch.setattr(_gemm, "NUMBA_MAX_MACS_THREADED", limit)
    return request.param


@pytest.fixture
def split_threads(request, monkeypatch):
    """A function (threads, min_rows_at, modules) -> calls for the tests of the split loops: torch at ``threads``
    threads (restored after the test), the fewest rows per range ``min_rows_at`` = (module, name) set to 1 (so that
    small batches split, unevenly), and every run_split call of ``modules`` recorded in ``calls`` as (kernel name,
    number of ranges)."""
    before = torch.get_num_threads()
    request.addfinalizer(lambda: torch.set_num_threads(before))

    def setup(threads, min_rows_at, modules):
        torch.set_num_threads(threads)
        monkeypatch.setattr(*min_rows_at, 1)
        calls = []

        def recording(fn, arg_lists, **kw):
            calls.append((fn.__name__, len(arg_lists)))
            _parallel.run_split(fn, arg_lists, **kw)

        for module in modules:
            monkeypatch.setattr(module, "run_split", recording)
        return calls

    return setup

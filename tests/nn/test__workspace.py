"""The scratch pools of the fused kernels: reused, never shared while in use (or while a graph can read it)."""
import torch

from rnnlab.nn import _workspace
from rnnlab.nn._workspace import saved_buffer, scratch


def test_scratch_is_reused_and_nested_calls_get_their_own():
    with scratch(100, torch.float32) as a:
        assert a.numel() == 100 and a.dtype == torch.float32
        with scratch(50, torch.float32) as b:  # taken while a is in use: another buffer
            assert b.data_ptr() != a.data_ptr()
        ptr = a.data_ptr()
    with scratch(80, torch.float32) as c:  # the larger buffer came back and is handed out again
        assert c.data_ptr() == ptr and c.numel() == 80
    with scratch(10, torch.float64) as d:  # one pool per dtype
        assert d.dtype == torch.float64


def test_saved_buffer_is_reused_only_once_nothing_holds_it(monkeypatch):
    import threading


    monkeypatch.setattr(_workspace, "_local", threading.local())  # an empty pool

    a = saved_buffer(1000, torch.float32)
    view = a[:10].view(2, 5)  # as a saved tensor of an autograd graph would hold it
    ptr = a.data_ptr()
    del a
    b = saved_buffer(1000, torch.float32)
    assert b.data_ptr() != ptr  # still referenced through the view: another buffer
    del view, b
    c = saved_buffer(900, torch.float32)  # the first buffer, now free, fits
    assert c.numel() == 900 and c.data_ptr() == ptr
    held = [c] + [saved_buffer(1000, torch.float32) for _ in range(3)]
    assert len({t.data_ptr() for t in held}) == len(held)  # nothing handed out twice while in use


def test_saved_buffers_survive_a_retained_graph():
    """A graph kept for a second backward keeps its saved buffer: a forward in between must not overwrite it."""
    from rnnlab.nn.fused_lstm import lstm_sequence

    torch.manual_seed(0)
    B, T, I, H = 3, 5, 4, 6
    w = [torch.randn(4 * H, I, requires_grad=True), torch.randn(4 * H, H, requires_grad=True)]
    ln = dict(ln_ih=torch.ones(4 * H), ln_hh=torch.ones(4 * H), ln_c=(torch.ones(H), torch.zeros(H)))
    x = torch.randn(B, T, I)
    y, _, _ = lstm_sequence(x, None, None, *w, None, None, **ln)
    first = torch.autograd.grad(y.sum(), w, retain_graph=True)
    lstm_sequence(torch.randn(B, T, I), None, None, *w, None, None, **ln)[0].sum().backward()  # another graph
    again = torch.autograd.grad(y.sum(), w)
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_saved_buffers_kept_are_bounded(monkeypatch):
    import threading


    monkeypatch.setattr(_workspace, "_local", threading.local())
    held = [_workspace.saved_buffer(10 + i, torch.float32) for i in range(_workspace._KEPT + 3)]  # all in use
    assert len(_workspace._local.saved[torch.float32]) == _workspace._KEPT
    assert len({t.data_ptr() for t in held}) == len(held)


def test_saved_buffer_is_not_reused_while_a_retained_gru_graph_can_still_read_it():
    """The GRU's graph kept with retain_graph=True keeps its saved tensors: a second backward pass after other
    forward passes gets the same gradients."""
    from rnnlab.nn.fused_gru import gru_sequence

    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, requires_grad=True)
    w_ih, w_hh = torch.randn(12, 3, requires_grad=True), torch.randn(12, 4, requires_grad=True)
    y, _ = gru_sequence(x, None, w_ih, w_hh, None, None)
    first = torch.autograd.grad(y.sum(), (x, w_ih, w_hh), retain_graph=True)
    for _ in range(3):  # other training forward passes of the same size, their graphs dropped
        gru_sequence(torch.randn(2, 5, 3), None, w_ih, w_hh, None, None)[0].sum().backward()
    again = torch.autograd.grad(y.sum(), (x, w_ih, w_hh))
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_release_saved_empties_the_pool(monkeypatch):
    import threading


    monkeypatch.setattr(_workspace, "_local", threading.local())
    _workspace.saved_buffer(777, torch.float64)
    assert _workspace._local.saved[torch.float64]
    _workspace.release_saved()
    assert "saved" not in _workspace._local.__dict__

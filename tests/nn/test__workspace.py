"""The scratch pools of the fused kernels: reused, never shared while in use (or while a graph can read it)."""
import torch

from rnnlab.nn import _workspace
from rnnlab.nn._workspace import release_saved, saved_buffer, scratch


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


class _Owner:
    """Stands in for an autograd ctx: the buffer goes back to the pool when it is collected."""


def test_saved_buffer_comes_back_only_when_its_owner_is_gone():
    owner = _Owner()
    a = saved_buffer(owner, 1000, torch.float32)
    assert a.numel() == 1000
    ptr = a.data_ptr()
    b = saved_buffer(_Owner(), 1000, torch.float32)  # the first is still owned: another buffer
    assert b.data_ptr() != ptr
    del owner
    c = saved_buffer(_Owner(), 900, torch.float32)  # now it is handed out again (the smallest that fits)
    assert c.data_ptr() == ptr and c.numel() == 900


def test_saved_buffer_is_not_reused_while_a_retained_graph_can_still_read_it():
    """A graph kept with retain_graph=True keeps its saved tensors: a second backward pass after other forward
    passes gets the same gradients."""
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


def test_release_saved_empties_the_pool():
    owner = _Owner()
    ptr = saved_buffer(owner, 777, torch.float64).data_ptr()
    del owner
    release_saved()
    fresh = saved_buffer(_Owner(), 777, torch.float64)
    assert fresh.numel() == 777  # a new buffer: the old one was dropped (its address may be reused by malloc)
    assert not any(b.data_ptr() == ptr for b in _workspace._saved_pool.get(torch.float64, []))

"""The scratch pool of the fused kernels' backward passes: reused, never shared while in use."""
import torch

from rnnlab.nn._workspace import scratch


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

"""The GRU cell against torch.nn.GRUCell with copied weights (the reset gate where cuDNN applies it)."""
import pytest
import torch

from rnnlab.nn import GRUCell


@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_matches_torch(assert_cell_matches_torch, bias):
    assert_cell_matches_torch(GRUCell(3, 5, bias=bias), torch.nn.GRUCell(3, 5, bias=bias))


def test_orthogonal_recurrent_init():
    cell = GRUCell(3, 6)
    for block in cell.weight_hh.detach().split(6):
        torch.testing.assert_close(block @ block.t(), torch.eye(6), atol=1e-5, rtol=0)
    uniform = GRUCell(3, 6, recurrent_init="uniform").weight_hh.detach()
    assert uniform.abs().max() <= 1 / 6**0.5
    assert not torch.allclose(uniform[:6] @ uniform[:6].t(), torch.eye(6), atol=1e-2)

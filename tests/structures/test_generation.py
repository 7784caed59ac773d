"""The bridge to the decoding algorithms: method choice, the end token, evaluation mode."""
import pytest
import torch
from torch import nn

from rnnlab.structures.generation import evaluating, resolve_end_token, run_decoding


class _Counter:
    """A decoder whose next token is always the current one plus 1 (mod V)."""

    def step(self, tokens, state):
        return nn.functional.one_hot((tokens + 1) % 6, 6).float() * 10, state

    def reorder(self, state, index):
        return state


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_every_method_decodes_up_to_the_end_token(method):
    out = run_decoding(_Counter(), torch.tensor([0, 2]), None, method=method, max_new_tokens=5, end_token=4,
                       top_k=1, beam_width=2)
    assert out.tokens.tolist() == [[1, 2, 3, 4], [3, 4, 0, 0]]
    assert out.lengths.tolist() == [4, 2]


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match=r"method must be one of \('greedy', 'beam', 'sample'\), got 'topk'"):
        run_decoding(_Counter(), torch.tensor([0]), None, method="topk", max_new_tokens=3)


def test_end_token_eos_means_the_config_s():
    assert resolve_end_token("eos", 2) == 2
    assert resolve_end_token(5, 2) == 5
    assert resolve_end_token(None, 2) is None


def test_evaluating_restores_the_mode():
    model = nn.Linear(2, 2).train()
    with evaluating(model):
        assert not model.training
    assert model.training

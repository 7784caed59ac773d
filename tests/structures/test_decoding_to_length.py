"""Greedy and sampling without an end token (decoding._decode_to_length): the same tokens and scores as a
hand-written loop over softmax/argmax, non-finite logits still named, and the banned-token wrapper."""
import pytest
import torch
from torch import nn

from rnnlab.structures.decoding import filter_logits, greedy, sample
from rnnlab.structures.encoders import EncoderConfig
from rnnlab.structures.language_model import LanguageModel, LanguageModelConfig

V, N = 7, 6


class GRUDecoder(nn.Module):
    """Embedding -> GRU cell -> linear; ``poison`` makes the logits of step ``at`` NaN or +inf."""

    def __init__(self, poison=None, at=2):
        super().__init__()
        torch.manual_seed(3)
        self.embed, self.cell, self.out = nn.Embedding(V, 8), nn.GRUCell(8, 8), nn.Linear(8, V)
        self.poison, self.at, self.t = poison, at, 0

    def step(self, tokens, state):
        h = self.cell(self.embed(tokens), state)
        logits = self.out(h)
        self.t += 1
        if self.poison is not None and self.t == self.at:
            logits = logits.clone()
            logits[0, 1] = self.poison
        return logits, h


def _reference(decoder, start, *, temperature=1.0, top_k=None, generator=None):
    """The plain loop: softmax (after the filters) and multinomial, or argmax; scores from log_softmax."""
    tokens, scores, state, x = [], torch.zeros(start.shape[0]), None, start
    for _ in range(N):
        logits, state = decoder.step(x, state)
        if temperature == 0:
            x = logits.argmax(-1)
        else:
            probs = torch.softmax(filter_logits(logits, temperature=temperature, top_k=top_k), -1)
            x = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        scores += torch.log_softmax(logits, -1).gather(1, x[:, None]).squeeze(1)
        tokens.append(x)
    return torch.stack(tokens, 1), scores


@pytest.mark.parametrize("options", [{}, {"temperature": 0.7, "top_k": 3}, {"temperature": 0.0}],
                         ids=["plain", "filtered", "argmax"])
def test_sampling_without_end_token_matches_the_plain_loop(options):
    start = torch.tensor([1, 4, 2])
    with torch.no_grad():
        want_tokens, want_scores = _reference(GRUDecoder(), start, generator=torch.Generator().manual_seed(5),
                                              **options)
        got = sample(GRUDecoder(), start, None, max_new_tokens=N, generator=torch.Generator().manual_seed(5),
                     **options)
    assert torch.equal(got.tokens, want_tokens)
    assert torch.equal(got.lengths, torch.full((3,), N))
    torch.testing.assert_close(got.scores, want_scores)


def test_greedy_without_end_token_is_the_argmax_path():
    start = torch.tensor([0, 3])
    with torch.no_grad():
        want_tokens, want_scores = _reference(GRUDecoder(), start, temperature=0)
        got = greedy(GRUDecoder(), start, None, max_new_tokens=N)
    assert torch.equal(got.tokens, want_tokens)
    torch.testing.assert_close(got.scores, want_scores)


@pytest.mark.parametrize("poison", [float("nan"), float("inf")], ids=["nan", "+inf"])
@pytest.mark.parametrize("decode", [greedy, sample], ids=["greedy", "sample"])
def test_non_finite_logits_are_named_without_a_check_per_token(decode, poison):
    with torch.no_grad(), pytest.raises(ValueError, match=r"next-token logits are not finite \(NaN or \+inf\)"):
        decode(GRUDecoder(poison), torch.tensor([1]), None, max_new_tokens=N)


def test_minus_inf_logits_are_masked_tokens_not_an_error():
    with torch.no_grad():
        got = sample(GRUDecoder(float("-inf")), torch.tensor([1]), None, max_new_tokens=N)
    assert got.tokens[0, 1] != 1 and torch.isfinite(got.scores).all()


def test_language_model_generation_bans_tokens_at_every_step():
    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=V, embedding_size=8, encoder=EncoderConfig(hidden_size=8)))
    out = lm.generate(torch.tensor([[1, 2]]), max_new_tokens=40, temperature=3.0, banned_tokens=[0, 5],
                      generator=torch.Generator().manual_seed(1))
    assert out.shape == (1, 42)
    assert not torch.isin(out[0, 2:], torch.tensor([0, 5])).any()


def test_evaluating_switches_a_model_with_any_submodule_in_training_and_leaves_an_eval_model_alone():
    from rnnlab.structures.generation import evaluating

    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).eval()
    model[1].train()  # the top says eval, a submodule trains: generation must still run without dropout
    with evaluating(model):
        assert not any(m.training for m in model.modules())
    assert not model.training and not model[1].training  # restored to the model's own mode, as before
    model.eval()
    calls = []
    model.train = lambda mode=True: calls.append(mode)  # an eval model is not walked at all
    with evaluating(model):
        pass
    assert calls == []

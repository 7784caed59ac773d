"""Decoding against references: brute-force enumeration for beam search, argmax for greedy, softmax for sampling."""
import itertools
import math

import pytest
import torch
from torch import nn

from rnnlab.nn.state import LSTMState
from rnnlab.structures.decoding import (
    Decoded,
    Decoder,
    beam_search,
    filter_logits,
    greedy,
    length_penalty_factor,
    reorder_state,
    sample,
)

END = 0  # the end token of the toy decoders


class Bigram:
    """A Markov chain: the next token's logits depend on the current token only. State: a step counter (B,)."""

    def __init__(self, logits):
        self.table = logits  # (V, V)

    def step(self, tokens, state):
        return self.table[tokens], (None if state is None else state + 1)

    def reorder(self, state, index):
        return reorder_state(state, index, batch_dim=0)


class GRUDecoder(nn.Module):
    """Embedding -> GRU cell -> linear: the state (B, H) carries the whole prefix, so reorder matters."""

    def __init__(self, vocab=4, hidden=8):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.cell = nn.GRUCell(hidden, hidden)
        self.out = nn.Linear(hidden, vocab)
        with torch.no_grad():
            self.out.weight.mul_(3.0)  # peakier distributions: fewer near-ties

    def step(self, tokens, state):
        h = self.cell(self.embed(tokens), state)  # (B, H)
        return self.out(h), h

    def reorder(self, state, index):
        return reorder_state(state, index, batch_dim=0)


@pytest.fixture
def gru():
    torch.manual_seed(1)
    return GRUDecoder().eval()


def sequence_log_prob(decoder, start, state, tokens):
    """log P(tokens | start, state) of one row by stepping the decoder: the reference for every score."""
    total, inputs = 0.0, torch.tensor([start])
    for tok in tokens:
        logits, state = decoder.step(inputs, state)
        total += logits.log_softmax(-1)[0, tok].item()
        inputs = torch.tensor([tok])
    return total


def brute_force(decoder, start, state, *, vocab, max_new_tokens, alpha=0.0):
    """Every hypothesis (ended by END at length <= max_new_tokens, or max_new_tokens tokens without END), best first."""
    words = [v for v in range(vocab) if v != END]
    hyps = []
    for n in range(max_new_tokens):
        hyps += [list(p) + [END] for p in itertools.product(words, repeat=n)]
    hyps += [list(p) for p in itertools.product(words, repeat=max_new_tokens)]
    scored = [(sequence_log_prob(decoder, start, state, h), h) for h in hyps]
    return sorted(scored, key=lambda s: -s[0] / length_penalty_factor(len(s[1]), alpha))


def as_list(decoded, row):
    return decoded.tokens[row, : decoded.lengths[row]].tolist()


# ------------------------------------------------------------------------------------------- reorder_state


def test_reorder_state_maps_nested_states_and_keeps_types():
    layer = LSTMState(torch.randn(2, 3, 4), torch.randn(2, 3, 4))  # (L, B, H)
    state = {"layer": layer, "extra": [torch.randn(2, 3), None]}
    index = torch.tensor([2, 0, 0])
    out = reorder_state(state, index, batch_dim=1)
    assert isinstance(out, dict) and isinstance(out["layer"], LSTMState) and isinstance(out["extra"], list)
    assert torch.equal(out["layer"].h, layer.h[:, index]) and torch.equal(out["layer"].c, layer.c[:, index])
    assert torch.equal(out["extra"][0], state["extra"][0][:, index]) and out["extra"][1] is None
    memory = (torch.randn(3, 5, 6),)  # (B, S, E): batch first
    assert torch.equal(reorder_state(memory, index, batch_dim=0)[0], memory[0][index])
    assert reorder_state(None, index, batch_dim=0) is None


@pytest.mark.parametrize(
    "state,index,batch_dim,error,pattern",
    [
        (torch.zeros(3, 4), torch.tensor([0.0]), 0, TypeError, r"index must be a 1-D integer tensor.*float32"),
        (torch.zeros(3, 4), torch.tensor([[0]]), 0, TypeError, r"index must be a 1-D integer tensor.*shape \(1, 1\)"),
        ((torch.zeros(3),), torch.tensor([0]), 1, ValueError, r"state\[0\] has shape \(3,\), which has no batch_dim=1"),
        ({"a": "text"}, torch.tensor([0]), 0, TypeError, r"state\['a'\] must be a tensor.*got str"),
    ],
)
def test_reorder_state_errors(state, index, batch_dim, error, pattern):
    with pytest.raises(error, match=pattern):
        reorder_state(state, index, batch_dim=batch_dim)


def test_toy_decoders_speak_the_protocol(gru):
    assert isinstance(gru, Decoder) and isinstance(Bigram(torch.zeros(2, 2)), Decoder)


# -------------------------------------------------------------------------------------------------- greedy


def test_greedy_follows_the_argmax_and_scores_log_probs(gru):
    state = torch.randn(3, 8)
    out = greedy(gru, torch.tensor([1, 2, 3]), state, max_new_tokens=5)
    assert isinstance(out, Decoded) and out.tokens.shape == (3, 5) and out.lengths.tolist() == [5, 5, 5]
    inputs, h = torch.tensor([1, 2, 3]), state
    for t in range(5):
        logits, h = gru.step(inputs, h)
        inputs = logits.argmax(-1)
        assert torch.equal(out.tokens[:, t], inputs)
    for b, start in enumerate([1, 2, 3]):
        ref = sequence_log_prob(gru, start, state[b : b + 1], out.tokens[b].tolist())
        assert out.scores[b].item() == pytest.approx(ref, abs=1e-5)


def test_greedy_end_token_pads_and_stops_early():
    # token 1 -> 2 -> END; token 3 -> 3 -> 3 ... (never ends)
    table = torch.full((4, 4), -5.0)
    table[1, 2] = table[2, END] = table[3, 3] = table[END, END] = 5.0
    out = greedy(Bigram(table), torch.tensor([1, 2]), None, max_new_tokens=6, end_token=END, pad_token=9)
    assert out.tokens.tolist() == [[2, END], [END, 9]]  # stopped after 2 steps: every row ended
    assert out.lengths.tolist() == [2, 1]
    logp = table.log_softmax(-1)
    assert out.scores.tolist() == pytest.approx([(logp[1, 2] + logp[2, END]).item(), logp[2, END].item()])

    out = greedy(Bigram(table), torch.tensor([1, 3]), None, max_new_tokens=4, end_token=END)
    assert out.tokens.tolist() == [[2, END, 0, 0], [3, 3, 3, 3]]
    assert out.lengths.tolist() == [2, 4]


# ------------------------------------------------------------------------------------------- filter_logits


def test_top_k_keeps_exactly_k():
    logits = torch.randn(5, 10)
    for k in (1, 3, 10, 50):
        out = filter_logits(logits, top_k=k)
        kept = torch.isfinite(out)
        assert kept.sum(-1).tolist() == [min(k, 10)] * 5
        assert torch.equal(out[kept], logits[kept])  # the kept logits are untouched
        assert torch.all(logits.masked_fill(~kept, math.inf).min(-1).values >= logits.masked_fill(kept, -math.inf).max(-1).values)


@pytest.mark.parametrize("p,kept", [(1e-6, [0]), (0.4, [0]), (0.49, [0]), (0.7, [0, 2]), (0.85, [0, 2, 3]), (0.97, [0, 1, 2, 3]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_minimal_nucleus(p, kept):
    probs = torch.tensor([0.5, 0.04, 0.3, 0.16])  # sorted: 0 (0.5), 2 (0.8), 3 (0.96), 1 (1.0)
    out = filter_logits(probs.log(), top_p=p)
    assert torch.isfinite(out).nonzero().flatten().tolist() == kept
    assert torch.allclose(out.softmax(-1)[kept], probs[kept] / probs[kept].sum())


def test_top_k_then_top_p_renormalises_between():
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1])
    # after top-2 the distribution is (4/7, 3/7): p=0.5 keeps only token 0, although 0.4 < 0.5
    out = filter_logits(probs.log(), top_k=2, top_p=0.5)
    assert torch.isfinite(out).tolist() == [True, False, False, False]


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])

    def entropy(t):
        p = filter_logits(logits, temperature=t).softmax(-1)
        return -(p * p.log()).sum().item()

    assert entropy(0.25) < entropy(0.5) < entropy(1.0) < entropy(2.0) < entropy(8.0) < math.log(4)
    assert torch.allclose(filter_logits(logits, temperature=2.0), logits / 2)


# -------------------------------------------------------------------------------------------------- sample


def test_sample_is_reproducible_with_a_seeded_generator(gru):
    start, state = torch.tensor([1, 2, 3, 1, 2, 3, 1, 2]), torch.zeros(8, 8)

    def draw(seed):
        return sample(gru, start, state, max_new_tokens=10, temperature=1.5, generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(123), draw(123), draw(124)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.scores, b.scores)
    assert not torch.equal(a.tokens, c.tokens)


def test_top_k_1_and_temperature_0_sample_greedily(gru):
    start, state = torch.tensor([1, 2, 3]), torch.randn(3, 8)
    ref = greedy(gru, start, state, max_new_tokens=6, end_token=END)
    for options in (dict(top_k=1, temperature=3.0), dict(temperature=0), dict(top_p=1e-9)):
        out = sample(gru, start, state, max_new_tokens=6, end_token=END, generator=torch.Generator().manual_seed(5), **options)
        assert torch.equal(out.tokens, ref.tokens) and torch.equal(out.lengths, ref.lengths)
        assert torch.allclose(out.scores, ref.scores)


@pytest.mark.parametrize("options", [{}, {"temperature": 2.0}, {"temperature": 0.7, "top_k": 3}, {"top_p": 0.8}])
def test_sample_histogram_matches_the_softmax(options):
    table = torch.zeros(4, 4)
    table[1] = torch.tensor([0.5, -1.0, 1.5, 0.2])
    n = 20_000
    out = sample(Bigram(table), torch.full((n,), 1), None, max_new_tokens=1, generator=torch.Generator().manual_seed(0), **options)
    freq = torch.bincount(out.tokens[:, 0], minlength=4).double() / n
    expected = filter_logits(table[1], **options).softmax(-1).double()
    assert (freq - expected).abs().max().item() < 0.02
    assert torch.all(freq[expected == 0] == 0)  # filtered tokens are never drawn


def test_sample_end_token_and_lengths():
    table = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, -9.0], [9.0, -9.0, -9.0]])  # 1 -> {END, 1}; 2 -> END
    out = sample(Bigram(table), torch.tensor([1] * 64 + [2]), None, max_new_tokens=5, end_token=END, pad_token=7,
                 generator=torch.Generator().manual_seed(3))
    for b in range(65):
        row = as_list(out, b)
        assert END not in row[:-1] and (len(row) == 5 or row[-1] == END)  # ends at END or at max_new_tokens
        assert out.tokens[b, out.lengths[b] :].eq(7).all()
        assert out.scores[b].item() == pytest.approx(sequence_log_prob(Bigram(table), 1 if b < 64 else 2, None, row), abs=1e-5)
    assert as_list(out, 64) == [END] and out.tokens.size(1) <= 5


# --------------------------------------------------------------------------------------------- beam search


def test_beam_width_1_is_greedy(gru):
    start, state = torch.tensor([1, 2, 3, 1]), torch.randn(4, 8)
    for end in (None, END):
        ref = greedy(gru, start, state, max_new_tokens=7, end_token=end)
        out = beam_search(gru, start, state, beam_width=1, max_new_tokens=7, end_token=end)
        assert torch.equal(out.tokens, ref.tokens) and torch.equal(out.lengths, ref.lengths)
        assert torch.allclose(out.scores, ref.scores)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5])
def test_wide_beam_finds_the_brute_force_best(gru, alpha):
    max_new_tokens, vocab = 3, 4
    for start in (1, 2, 3):
        state = torch.randn(1, 8)
        ref = brute_force(gru, start, state, vocab=vocab, max_new_tokens=max_new_tokens, alpha=alpha)
        out = beam_search(gru, torch.tensor([start]), state, beam_width=(vocab - 1) ** max_new_tokens, max_new_tokens=max_new_tokens,
                          end_token=END, length_penalty=alpha, num_return=5)
        assert [as_list(out, n) for n in range(5)] == [h for _, h in ref[:5]]
        assert out.scores.tolist() == pytest.approx([s for s, _ in ref[:5]], abs=1e-5)


def test_modest_beam_beats_or_ties_greedy_and_scores_are_exact(gru):
    start, state = torch.tensor([1, 2, 3]), torch.randn(3, 8)
    ref = greedy(gru, start, state, max_new_tokens=6, end_token=END)
    out = beam_search(gru, start, state, beam_width=4, max_new_tokens=6, end_token=END)
    assert torch.all(out.scores >= ref.scores - 1e-6)
    for b in range(3):
        assert out.scores[b].item() == pytest.approx(sequence_log_prob(gru, int(start[b]), state[b : b + 1], as_list(out, b)), abs=1e-5)


def test_beam_rows_are_independent_of_the_batch(gru):
    start, state = torch.tensor([1, 2, 3]), torch.randn(3, 8)
    batched = beam_search(gru, start, state, beam_width=3, max_new_tokens=6, end_token=END, num_return=2)
    for b in range(3):
        alone = beam_search(gru, start[b : b + 1], state[b : b + 1], beam_width=3, max_new_tokens=6, end_token=END, num_return=2)
        for n in range(2):
            assert as_list(batched, 2 * b + n) == as_list(alone, n)
            assert batched.scores[2 * b + n].item() == pytest.approx(alone.scores[n].item(), abs=1e-5)


def test_first_step_does_not_duplicate_beams():
    table = torch.tensor([[0.0, 0, 0, 0], [-9.0, 3.0, 2.0, 1.0], [-9.0, 3.0, 2.0, 1.0], [-9.0, 3.0, 2.0, 1.0]])
    out = beam_search(Bigram(table), torch.tensor([1]), torch.zeros(1), beam_width=3, max_new_tokens=1, num_return=3)
    assert out.tokens.flatten().tolist() == [1, 2, 3]  # three different tokens, not three copies of the best
    # more beams than the vocabulary can fill at step 0: the -inf beams never come back
    out = beam_search(Bigram(table), torch.tensor([1]), None, beam_width=4, max_new_tokens=1, end_token=END, num_return=4)
    assert out.tokens.flatten().tolist()[:4] == [1, 2, 3, END]
    assert torch.isfinite(out.scores).all()


def test_length_penalty_changes_the_ranking():
    # from 2: END (0.5) or 1 (0.48); from 1: END (0.98). Short: log 0.5 = -0.693; long: log 0.4704 = -0.754.
    probs = torch.full((3, 3), 1 / 3)
    probs[2] = torch.tensor([0.5, 0.48, 0.02])
    probs[1] = torch.tensor([0.98, 0.01, 0.01])
    decoder = Bigram(probs.log())
    plain = beam_search(decoder, torch.tensor([2]), None, beam_width=2, max_new_tokens=4, end_token=END)
    assert as_list(plain, 0) == [END] and plain.scores.item() == pytest.approx(math.log(0.5), abs=1e-6)
    # alpha = 1: lp(1) = 1, lp(2) = 7/6, and -0.754 / (7/6) = -0.646 > -0.693
    long = beam_search(decoder, torch.tensor([2]), None, beam_width=2, max_new_tokens=4, end_token=END, length_penalty=1.0)
    assert as_list(long, 0) == [1, END] and long.scores.item() == pytest.approx(math.log(0.48 * 0.98), abs=1e-6)


def test_beam_without_end_token_decodes_max_len(gru):
    out = beam_search(gru, torch.tensor([1, 2]), torch.randn(2, 8), beam_width=3, max_new_tokens=5, num_return=3)
    assert out.tokens.shape == (6, 5) and out.lengths.tolist() == [5] * 6
    assert torch.all(out.scores[0::3] >= out.scores[1::3]) and torch.all(out.scores[1::3] >= out.scores[2::3])


def test_beam_search_with_layer_states():
    """A decoder whose state is an LSTM layer state (L, B, H): reorder on batch_dim=1."""
    torch.manual_seed(2)
    embed, lstm, head = nn.Embedding(4, 6), nn.LSTM(6, 6, num_layers=2, batch_first=True), nn.Linear(6, 4)

    class LSTMDecoder:
        def step(self, tokens, state):
            y, (h, c) = lstm(embed(tokens)[:, None], None if state is None else tuple(state))
            return head(y[:, 0]), LSTMState(h, c)

        def reorder(self, state, index):
            return reorder_state(state, index, batch_dim=1)

    with torch.no_grad():
        out = beam_search(LSTMDecoder(), torch.tensor([1, 2]), None, beam_width=3, max_new_tokens=4, end_token=END)
        for b, start in enumerate([1, 2]):
            alone = beam_search(LSTMDecoder(), torch.tensor([start]), None, beam_width=3, max_new_tokens=4, end_token=END)
            assert as_list(out, b) == as_list(alone, 0)
            assert out.scores[b].item() == pytest.approx(sequence_log_prob(LSTMDecoder(), start, None, as_list(out, b)), abs=1e-5)


# --------------------------------------------------------------------------------------------- bad options


def _gru_call(fn, **options):
    decoder = GRUDecoder()
    start = options.pop("start_tokens", torch.tensor([1, 2]))
    return fn(decoder, start, torch.zeros(2, 8), **options)


@pytest.mark.parametrize(
    "fn,options,error,pattern",
    [
        (sample, dict(max_new_tokens=3, temperature=-1.0), ValueError, r"temperature must be >= 0.*got -1.0"),
        (sample, dict(max_new_tokens=3, temperature=float("nan")), ValueError, r"temperature must be >= 0.*got nan"),
        (sample, dict(max_new_tokens=3, top_k=0), ValueError, r"top_k must be None or an int >= 1, got 0"),
        (sample, dict(max_new_tokens=3, top_k=1.5), TypeError, r"top_k must be None or an int >= 1, got float 1.5"),
        (sample, dict(max_new_tokens=3, top_p=0.0), ValueError, r"top_p must be None or a number in \(0, 1\], got 0.0"),
        (sample, dict(max_new_tokens=3, top_p=1.5), ValueError, r"top_p must be None or a number in \(0, 1\], got 1.5"),
        (sample, dict(max_new_tokens=3, generator=0), TypeError, r"generator must be None or a torch.Generator, got int"),
        (greedy, dict(max_new_tokens=0), ValueError, r"max_new_tokens must be >= 1, got 0"),
        (greedy, dict(max_new_tokens=3, end_token=7), ValueError, r"end_token must be < V=4.*got 7"),
        (greedy, dict(max_new_tokens=3, start_tokens=torch.tensor([[1, 2]])), ValueError, r"start_tokens must have shape \(B,\).*got shape \(1, 2\)"),
        (greedy, dict(max_new_tokens=3, start_tokens=torch.tensor([1.0, 2.0])), TypeError, r"start_tokens must be an integer tensor, got dtype torch.float32"),
        (beam_search, dict(max_new_tokens=3, beam_width=0), ValueError, r"beam_width must be >= 1, got 0"),
        (beam_search, dict(max_new_tokens=3, beam_width=2, num_return=3), ValueError, r"num_return must be <= beam_width=2, got 3"),
        (beam_search, dict(max_new_tokens=3, beam_width=2, length_penalty=float("inf")), ValueError, r"length_penalty must be a finite number"),
    ],
)
def test_bad_options_raise(fn, options, error, pattern):
    with pytest.raises(error, match=pattern):
        _gru_call(fn, **options)


def test_filter_logits_rejects_zero_temperature():
    with pytest.raises(ValueError, match=r"temperature must be > 0 \(for argmax decoding use greedy\(\)\), got 0"):
        filter_logits(torch.zeros(3), temperature=0)


def test_bad_decoder_output_is_named():
    class Wrong:
        def step(self, tokens, state):
            return torch.zeros(tokens.size(0) + 1, 4), state

        def reorder(self, state, index):
            return state

    with pytest.raises(ValueError, match=r"decoder.step must return logits of shape \(B, V\) with B=2, got \(3, 4\)"):
        greedy(Wrong(), torch.tensor([1, 2]), None, max_new_tokens=2)

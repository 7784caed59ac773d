"""The linear-chain CRF against brute-force enumeration of all K^T tag sequences, gradients, errors, learning."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from rnnlab.nn.crf import LinearChainCRF


def _sgd_step(loss, params, lr):
    """Plain gradient descent by hand: building a torch.optim optimizer first imports torch._dynamo (seconds)."""
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * g


def brute_score(crf, e, y):
    """s(y) for one row: e (L, K), y a tuple of L tags, straight from the definition."""
    s = crf.start_transitions[y[0]] + crf.end_transitions[y[-1]]
    for t, j in enumerate(y):
        s = s + e[t, j]
        if t:
            s = s + crf.transitions[y[t - 1], j]
    return s


def all_scores(crf, e):
    """{y: s(y)} over all K^L sequences of one row, e (L, K)."""
    L, K = e.shape
    return {y: brute_score(crf, e, y) for y in itertools.product(range(K), repeat=L)}


@pytest.fixture
def crf():
    c = LinearChainCRF(3).double()
    with torch.no_grad():  # larger than the initial ±0.1 so that transitions matter
        for p in c.parameters():
            p.normal_()
    return c


@pytest.fixture
def batch():
    emissions = torch.randn(4, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([4, 1, 3, 2])
    tags = torch.randint(0, 3, (4, 4))
    return emissions, tags, lengths


def test_log_likelihood_and_partition_equal_brute_force(crf, batch):
    emissions, tags, lengths = batch
    log_z = crf.log_partition(emissions, lengths)
    ll = crf.log_likelihood(emissions, tags, lengths)
    for b, L in enumerate(lengths.tolist()):
        scores = all_scores(crf, emissions[b, :L])
        expected_log_z = torch.logsumexp(torch.stack(list(scores.values())), 0)
        assert torch.allclose(log_z[b], expected_log_z)
        y = tuple(tags[b, :L].tolist())
        assert torch.allclose(ll[b], scores[y] - expected_log_z)


def test_probabilities_of_all_sequences_sum_to_one(crf):
    T, K = 4, 3
    emissions = torch.randn(1, T, K, dtype=torch.float64)
    total = 0.0
    for y in itertools.product(range(K), repeat=T):
        total += crf.log_likelihood(emissions, torch.tensor([y])).exp().item()
    assert math.isclose(total, 1.0, rel_tol=1e-9)


def test_viterbi_equals_brute_force_argmax(crf, batch):
    emissions, _, lengths = batch
    best_tags, best_scores = crf.viterbi(emissions, lengths)
    decoded = crf.decode(emissions, lengths)
    assert best_tags.dtype == torch.long and best_tags.shape == (4, 4)
    for b, L in enumerate(lengths.tolist()):
        scores = all_scores(crf, emissions[b, :L])
        y_star = max(scores, key=lambda y: scores[y].item())
        assert decoded[b] == list(y_star)
        assert best_tags[b, :L].tolist() == list(y_star) and torch.all(best_tags[b, L:] == 0)
        assert torch.allclose(best_scores[b], scores[y_star])


def test_padding_changes_nothing(crf, batch):
    emissions, tags, lengths = batch
    noisy = emissions.clone()
    tags = tags.clone()
    for b, L in enumerate(lengths.tolist()):
        noisy[b, L:] = 1e3
        tags[b, L:] = -100  # an ignore index in the padding is allowed
    ll = crf.log_likelihood(noisy, tags, lengths)
    best, _ = crf.viterbi(noisy, lengths)
    for b, L in enumerate(lengths.tolist()):
        assert torch.allclose(ll[b], crf.log_likelihood(emissions[b : b + 1, :L], tags[b : b + 1, :L])[0])
        assert torch.equal(best[b, :L], crf.viterbi(emissions[b : b + 1, :L])[0][0])


def test_nll_is_minus_mean_log_likelihood(crf, batch):
    emissions, tags, lengths = batch
    assert torch.allclose(crf.nll(emissions, tags, lengths), -crf.log_likelihood(emissions, tags, lengths).mean())


def test_gradcheck_log_likelihood(crf, batch):
    emissions, tags, lengths = batch
    names = ("transitions", "start_transitions", "end_transitions")

    def log_likelihood(e, a, s, w):  # of the emissions and of the CRF's own scores
        params = dict(zip(names, (a, s, w)))
        return torch.func.functional_call(_LogLikelihood(crf), {f"crf.{k}": v for k, v in params.items()}, (e, tags, lengths))

    inputs = (emissions, *(getattr(crf, n).detach().clone() for n in names))
    inputs = tuple(t.requires_grad_(True) for t in inputs)
    assert torch.autograd.gradcheck(log_likelihood, inputs)


class _LogLikelihood(torch.nn.Module):
    """log_likelihood as a forward, so that torch.func.functional_call can swap in the CRF's scores."""

    def __init__(self, crf):
        super().__init__()
        self.crf = crf

    def forward(self, emissions, tags, lengths):
        return self.crf.log_likelihood(emissions, tags, lengths)


def test_decode_lists_have_each_rows_length():
    crf = LinearChainCRF(4)
    out = crf.decode(torch.randn(3, 5, 4), [5, 1, 3])
    assert [len(r) for r in out] == [5, 1, 3] and all(0 <= t < 4 for r in out for t in r)


@pytest.mark.parametrize(
    "emissions,tags,lengths,error,pattern",
    [
        (torch.randn(2, 4), torch.zeros(2, 4, dtype=torch.long), None, ValueError,
         r"emissions must have shape \(B, T, K\) with K=3, got shape \(2, 4\)"),
        (torch.randn(2, 4, 5), torch.zeros(2, 4, dtype=torch.long), None, ValueError,
         r"emissions must have K=3 tag scores in its last dimension, got shape \(2, 4, 5\)"),
        (torch.zeros(2, 4, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long), None, TypeError,
         r"emissions must be a floating-point tensor"),
        (torch.randn(2, 4, 3).double(), torch.zeros(2, 4, dtype=torch.long), None, TypeError,
         r"emissions must have dtype torch.float32.*got torch.float64"),
        (torch.randn(2, 4, 3), torch.zeros(2, 3, dtype=torch.long), None, ValueError,
         r"tags must have shape \(B, T\) = \(2, 4\) like emissions, got shape \(2, 3\)"),
        (torch.randn(2, 4, 3), torch.zeros(2, 4), None, TypeError, r"tags must be an integer tensor, got dtype torch.float32"),
        (torch.randn(2, 4, 3), [[0] * 4] * 2, None, TypeError, r"tags must be a torch.Tensor of shape \(2, 4\), got list"),
        (torch.randn(2, 4, 3), torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0]]), None, ValueError,
         r"tags must lie in \[0, K=3\) at real steps, got min 0 and max 3"),
        (torch.randn(2, 4, 3), torch.tensor([[0, 1, 2, -1], [0, 0, 0, 0]]), None, ValueError,
         r"tags must lie in \[0, K=3\).*got min -1"),
        (torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.long), torch.tensor([4, 0]), ValueError,
         r"lengths must lie in \[1, T=4\]"),
        (torch.randn(2, 0, 3), torch.zeros(2, 0, dtype=torch.long), None, ValueError,
         r"emissions must have at least one time step"),
    ],
)
def test_bad_input(emissions, tags, lengths, error, pattern):
    crf = LinearChainCRF(3)
    with pytest.raises(error, match=pattern):
        crf.log_likelihood(emissions, tags, lengths)


def test_bad_input_to_viterbi_and_constructor():
    with pytest.raises(ValueError, match=r"emissions must have K=2 tag scores.*got shape \(1, 3, 4\)"):
        LinearChainCRF(2).viterbi(torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match=r"num_tags must be a positive integer, got 0"):
        LinearChainCRF(0)


def _bio_data(n, T, generator):
    """Words 0 and 1 are ordinary (tag O=0); word 2 is part of a name: B=1 at the start of a run of 2s,
    I=2 inside it. B and I are invisible to per-word emissions: only the transitions can tell them apart.
    """
    words = torch.randint(0, 3, (n, T), generator=generator)
    previous = torch.cat([torch.zeros(n, 1, dtype=torch.long), words[:, :-1]], dim=1)  # nothing before t = 0
    tags = torch.where(words == 2, torch.where(previous == 2, 2, 1), 0)
    return words, tags


def test_crf_tagger_learns_a_rule_that_needs_transitions():
    g = torch.Generator().manual_seed(0)
    words, tags = _bio_data(32, 8, g)
    lengths = torch.randint(3, 9, (32,), generator=g)
    to_emissions = torch.nn.Linear(3, 3)  # emissions from the one-hot word alone
    crf = LinearChainCRF(3)
    params = [*to_emissions.parameters(), *crf.parameters()]
    losses = []
    for _ in range(100):
        loss = crf.nll(to_emissions(F.one_hot(words, 3).float()), tags, lengths)
        _sgd_step(loss, params, lr=1.0)
        losses.append(loss.item())
    assert losses[-1] < 0.02 * losses[0]

    test_words, test_tags = _bio_data(64, 10, g)
    best, _ = crf.viterbi(to_emissions(F.one_hot(test_words, 3).float()))
    assert torch.equal(best, test_tags)
    O, B, I = 0, 1, 2
    assert crf.transitions[O, I] < crf.transitions[O, B] and crf.transitions[B, B] < crf.transitions[B, I]


# -- constraints (allowed transitions) ---------------------------------------------------------------------------

from rnnlab.nn.crf import FORBIDDEN, allowed_transitions  # noqa: E402

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _valid_bio(y, tags=BIO):
    names = [tags[i] for i in y]
    return all(not n.startswith("I-") or (i and names[i - 1][2:] == n[2:] and names[i - 1] != "O")
               for i, n in enumerate(names))


def test_allowed_transitions_for_bio_and_bioes():
    start, trans, end = allowed_transitions(BIO, "bio")
    assert start.tolist() == [True, True, False, True, False] and end.all()
    assert trans[0, 2].item() is False and trans[1, 2].item() and trans[2, 2].item() and not trans[1, 4].item()
    assert trans[:, 0].all() and trans[:, 1].all()  # O and B-X may follow anything
    tags = ["O", "B-X", "I-X", "E-X", "S-X"]
    start, trans, end = allowed_transitions(tags, "bioes")
    assert start.tolist() == [True, True, False, False, True] and end.tolist() == [True, False, False, True, True]
    allowed = {(tags[i], tags[j]) for i in range(5) for j in range(5) if trans[i, j]}
    assert allowed == {("O", "O"), ("O", "B-X"), ("O", "S-X"), ("B-X", "I-X"), ("B-X", "E-X"), ("I-X", "I-X"),
                       ("I-X", "E-X"), ("E-X", "O"), ("E-X", "B-X"), ("E-X", "S-X"), ("S-X", "O"), ("S-X", "B-X"),
                       ("S-X", "S-X")}
    with pytest.raises(ValueError, match="scheme must be one of"):
        allowed_transitions(BIO, "iob1")


def constrained_crf():
    c = LinearChainCRF(len(BIO)).double()
    with torch.no_grad():
        for p in c.parameters():
            p.normal_()
    start, trans, end = allowed_transitions(BIO, "bio")
    c.constrain(trans, start=start, end=end)
    return c


def test_viterbi_never_outputs_a_forbidden_sequence_even_when_emissions_prefer_one():
    torch.manual_seed(0)
    crf = constrained_crf()
    emissions = torch.randn(6, 5, 5, dtype=torch.float64) * 3
    emissions[:, :, 2] += 50.0  # I-PER everywhere is by far the best by emissions alone
    lengths = torch.tensor([5, 4, 3, 2, 1, 5])
    best, scores = crf.viterbi(emissions, lengths)
    for b, L in enumerate(lengths.tolist()):
        y = tuple(best[b, :L].tolist())
        assert _valid_bio(y) and y[0] != 2
        # the best among the valid sequences, by brute force
        valid = {s: v for s, v in all_scores(crf, emissions[b, :L]).items() if _valid_bio(s)}
        assert y == max(valid, key=lambda s: valid[s])


def test_constrained_likelihood_equals_brute_force_over_sequences_with_forbidden_scores():
    torch.manual_seed(1)
    crf = constrained_crf()
    emissions = torch.randn(3, 3, 5, dtype=torch.float64)
    lengths = torch.tensor([3, 2, 1])
    tags = torch.tensor([[1, 2, 0], [3, 4, 0], [0, 0, 0]])  # valid BIO
    ll = crf.log_likelihood(emissions, tags, lengths)
    start, trans, end = crf._scores()
    for b, L in enumerate(lengths.tolist()):
        e = emissions[b, :L]

        def s(y, e=e):
            return start[y[0]] + end[y[-1]] + sum(e[t, j] + (trans[y[t - 1], j] if t else 0) for t, j in enumerate(y))

        seqs = list(itertools.product(range(5), repeat=L))
        log_z = torch.logsumexp(torch.stack([s(y) for y in seqs]), 0)
        assert torch.allclose(ll[b], s(tuple(tags[b, :L].tolist())) - log_z)
        # the forbidden sequences hold (almost) no probability
        p_valid = sum(torch.exp(s(y) - log_z) for y in seqs if _valid_bio(y)).detach()
        assert p_valid.item() == pytest.approx(1.0, abs=1e-9)
    assert FORBIDDEN < -1e3
    grads = torch.autograd.grad(ll.sum(), [crf.transitions, crf.start_transitions])
    assert all(torch.isfinite(g).all() for g in grads)
    assert grads[0][0, 2] == 0 and grads[1][2] == 0  # forbidden scores get no gradient


def test_constraints_travel_with_the_state_dict_and_old_state_dicts_load_unconstrained():
    crf = constrained_crf()
    other = LinearChainCRF(5).double()
    other.load_state_dict(crf.state_dict())
    assert torch.equal(other.allowed_transitions, crf.allowed_transitions) and not other.allowed_start.all()
    old = {k: v for k, v in crf.state_dict().items() if not k.startswith("allowed_")}
    fresh = LinearChainCRF(5).double()
    fresh.load_state_dict(old)  # strict: a state dict from before the constraints existed
    assert fresh.allowed_transitions.all() and "constrained" not in repr(fresh) and "constrained" in repr(crf)
    with pytest.raises(ValueError, match="bool tensor of shape"):
        fresh.constrain(torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="no first tag"):
        fresh.constrain(torch.ones(5, 5, dtype=torch.bool), start=torch.zeros(5, dtype=torch.bool))

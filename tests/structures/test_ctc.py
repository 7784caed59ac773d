"""CTC against brute force: every frame path of a tiny alphabet enumerated, collapsed and summed per labelling."""
import itertools
import math
from collections import defaultdict

import pytest
import torch

from rnnlab.structures.ctc import beam_decode, collapse, ctc_loss, greedy_decode, prefix_beam_search


def brute_force(log_probs):
    """{labelling: log p(labelling | x)} over all C^T frame paths."""
    T, C = log_probs.shape
    totals = defaultdict(float)
    for path in itertools.product(range(C), repeat=T):
        totals[tuple(collapse(path))] += math.exp(sum(float(log_probs[t, c]) for t, c in enumerate(path)))
    return {y: math.log(p) for y, p in totals.items()}


def test_collapse_merges_repeats_then_drops_blanks():
    assert collapse([0, 1, 1, 0, 1, 2, 2, 0]) == [1, 1, 2]
    assert collapse([0, 0]) == []


@pytest.mark.parametrize("seed,T,C", [(0, 4, 3), (1, 5, 3), (2, 3, 4)])
def test_a_wide_beam_gives_every_labelling_its_exact_probability(seed, T, C):
    log_probs = torch.randn(T, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).log_softmax(-1)
    exact = brute_force(log_probs)
    beams = prefix_beam_search(log_probs, beam_size=10_000)
    assert {y for y, _ in beams} == set(exact)
    for y, lp in beams:
        assert lp == pytest.approx(exact[y], abs=1e-10)
    assert beams[0][0] == max(exact, key=exact.get)


@pytest.mark.parametrize("seed", range(5))
def test_a_narrow_beam_returns_true_probabilities_of_its_labellings(seed):
    log_probs = torch.randn(5, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).log_softmax(-1)
    exact = brute_force(log_probs)
    beams = prefix_beam_search(log_probs, beam_size=3)
    assert len(beams) <= 3
    # a pruned prefix loses paths, never gains them
    for y, lp in beams:
        assert lp <= exact[y] + 1e-10


def test_beam_can_beat_the_best_path():
    # frames: p(blank) = 0.6 twice vs "a" split over two paths: best path is blank-blank (0.36),
    # but "a" has 1 - 0.36 - ... more mass: the classic case where greedy decoding is wrong
    p = torch.tensor([[0.6, 0.4], [0.6, 0.4]], dtype=torch.float64)
    assert greedy_decode(p.log()[None]) == [[]]
    assert beam_decode(p.log()[None], beam_size=4) == [[1]]  # p("a") = 0.4·0.6 + 0.6·0.4 + 0.4·0.4 = 0.64


def test_ctc_loss_is_the_brute_force_negative_log_likelihood():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, generator=g)
    targets = torch.tensor([[1, 2], [2, 0]])
    target_lengths, lengths = torch.tensor([2, 1]), torch.tensor([4, 3])
    expected = []
    for b in range(2):
        exact = brute_force(logits[b, : lengths[b]].double().log_softmax(-1))
        expected.append(-exact[tuple(targets[b, : target_lengths[b]].tolist())])
    loss = ctc_loss(logits, lengths, targets, target_lengths)
    assert float(loss) == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_greedy_decode_respects_lengths():
    logits = torch.full((2, 4, 3), -5.0)
    for t, c in enumerate([1, 1, 0, 2]):
        logits[:, t, c] = 5.0
    assert greedy_decode(logits, torch.tensor([4, 2])) == [[1, 2], [1]]


def test_min_frames_counts_a_blank_between_repeats():
    from rnnlab.structures.ctc import min_frames

    assert min_frames([1, 1, 2]) == 4 and min_frames([1, 2, 1]) == 3 and min_frames([]) == 0

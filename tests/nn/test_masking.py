"""Masked reductions and losses: padding never counts, and real positions give torch's own losses."""
import pytest
import torch
import torch.nn.functional as F

from rnnlab.nn.masking import (
    last_real,
    lengths_to_mask,
    masked_cross_entropy,
    masked_gaussian_nll,
    masked_max,
    masked_mean,
    masked_mse,
)

LENGTHS = torch.tensor([5, 2, 1])


def real(x):
    """The real positions of a (B, T, ...) tensor, concatenated: the brute-force reference."""
    return torch.cat([x[b, :n] for b, n in enumerate(LENGTHS.tolist())])


def junk(x, value):
    x = x.clone()
    for b, n in enumerate(LENGTHS.tolist()):
        x[b, n:] = value
    return x


def test_lengths_to_mask():
    assert lengths_to_mask(LENGTHS, 5).tolist() == [[True] * 5, [True, True] + [False] * 3, [True] + [False] * 4]
    assert lengths_to_mask(None, 5) is None


def test_reductions_over_real_positions():
    x = torch.randn(3, 5, 4)
    mask = lengths_to_mask(LENGTHS, 5)
    for b, n in enumerate(LENGTHS.tolist()):
        torch.testing.assert_close(masked_mean(x, mask)[b], x[b, :n].mean(0))
        torch.testing.assert_close(masked_max(junk(x, 1e6), mask)[b], x[b, :n].max(0).values)
        torch.testing.assert_close(last_real(x, LENGTHS)[b], x[b, n - 1])


def test_cross_entropy_counts_real_positions_only():
    logits, targets = torch.randn(3, 5, 7), torch.randint(0, 7, (3, 5))
    expected = F.cross_entropy(real(logits), real(targets))
    torch.testing.assert_close(masked_cross_entropy(logits, targets, LENGTHS), expected)
    torch.testing.assert_close(masked_cross_entropy(junk(logits, 50.0), junk(targets, 3), LENGTHS), expected)
    torch.testing.assert_close(masked_cross_entropy(logits, targets, LENGTHS, reduction="sum"), expected * int(LENGTHS.sum()))
    per_step = masked_cross_entropy(logits, targets, LENGTHS, reduction="none")
    assert per_step.shape == (3, 5) and per_step[1, 2:].eq(0).all()


def test_mse_counts_real_positions_only():
    pred, target = torch.randn(3, 5, 2), torch.randn(3, 5, 2)
    expected = F.mse_loss(real(pred), real(target))
    torch.testing.assert_close(masked_mse(pred, target, LENGTHS), expected)
    torch.testing.assert_close(masked_mse(junk(pred, 9.0), target, LENGTHS), expected)


def test_gaussian_nll_matches_torch_on_real_positions():
    mean, target = torch.randn(3, 5, 2), torch.randn(3, 5, 2)
    var = torch.rand(3, 5, 2) + 0.1
    expected = F.gaussian_nll_loss(real(mean), real(target), real(var), full=True)
    torch.testing.assert_close(masked_gaussian_nll(mean, var, target, LENGTHS), expected)
    torch.testing.assert_close(masked_gaussian_nll(junk(mean, 5.0), junk(var, 1e-3), target, LENGTHS), expected)


def test_unknown_reduction():
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        masked_mse(torch.zeros(1, 2), torch.zeros(1, 2), reduction="avg")

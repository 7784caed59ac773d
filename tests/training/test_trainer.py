"""Trainer: clipping, schedules, early stopping, bf16, masked losses (log.csv and curves.png: test_progress.py)."""
import csv
import math

import pytest
import torch
from _trainer_helpers import fast_config as _fast
from _trainer_helpers import lm_batches as _lm_batches
from _trainer_helpers import tiny_lm as _lm
from torch import nn

from rnnlab.training import Trainer, TrainerConfig, count_tokens, lr_at
from rnnlab.training.trainer import _clip_gradients


def test_clip_by_norm_returns_the_pre_clip_norm():
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    assert _clip_gradients([p], 1.0, 0.0) == pytest.approx(5.0)
    torch.testing.assert_close(p.grad.norm(), torch.tensor(1.0))


def test_clip_by_value_then_norm():
    p = nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([3.0, -4.0, 0.1])
    assert _clip_gradients([p], 0.0, 0.5) == pytest.approx(math.sqrt(25.01))
    torch.testing.assert_close(p.grad, torch.tensor([0.5, -0.5, 0.1]))


def test_pre_clip_norm_is_logged_every_step(tmp_path):
    Trainer(_fast(run_dir=str(tmp_path), clip_norm=1e-3, curves=False)).fit(_lm(), _lm_batches(5))
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert all(float(r["grad_norm"]) > 1e-3 for r in rows)  # the norm before clipping, not the clipped one


def test_warmup_then_cosine_and_constant():
    c = TrainerConfig(lr=1.0, warmup_steps=4, schedule="cosine", max_steps=14)
    assert [lr_at(c, s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(c, 9) == pytest.approx(0.5)  # halfway through the cosine
    assert lr_at(c, 14) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(TrainerConfig(lr=0.1), 100) == 0.1


def test_trainer_applies_the_schedule(tmp_path):
    c = _fast(lr=1.0, warmup_steps=2, schedule="cosine", max_steps=6, max_epochs=0, optimizer="sgd", run_dir=str(tmp_path), curves=False)
    Trainer(c).fit(_lm(), _lm_batches(6))
    lrs = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "log.csv"))]
    assert lrs == pytest.approx([lr_at(c, s) for s in range(6)])


class _Memorizer(nn.Module):
    """loss = (w - target)^2 on train; valid loss rises once w passes the valid target: overfitting on cue."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def loss(self, batch):
        return (self.w - batch["target"]).pow(2)


def test_early_stopping_stops_and_restores_best():
    train = [{"target": torch.tensor(10.0), "num_tokens": 1}] * 50
    valid = [{"target": torch.tensor(1.0), "num_tokens": 1}]
    model = _Memorizer()
    metrics = Trainer(_fast(optimizer="sgd", lr=0.02, eval_every=1, early_stopping_patience=3)).fit(model, train, valid)
    assert metrics["stopped_early"] and metrics["step"] < 50
    assert metrics["valid_loss"] == metrics["best_valid_loss"]
    assert (model.w.item() - 1.0) ** 2 == pytest.approx(metrics["best_valid_loss"], rel=1e-5)


def test_bf16_runs_and_the_loss_decreases():
    torch.manual_seed(0)
    data = _lm_batches(4)
    model = _lm()
    before = Trainer(_fast()).evaluate(model, data)
    metrics = Trainer(_fast(precision="bf16", lr=2e-2, max_epochs=15)).fit(model, data, data)
    assert metrics["valid_loss"] < before - 0.1
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_padding_never_counts():
    lm = _lm()
    x = torch.randint(1, 12, (2, 5))
    lengths = torch.tensor([5, 3])
    padded_a, padded_b = x.clone(), x.clone()
    padded_a[1, 3:], padded_b[1, 3:] = 0, 7  # different junk in the padding
    for junk in (padded_a, padded_b):
        assert count_tokens({"x": junk, "y": junk, "lengths": lengths}) == 8
    la = lm.loss({"x": padded_a, "y": padded_a, "lengths": lengths})
    lb = lm.loss({"x": padded_b, "y": padded_b, "lengths": lengths})
    torch.testing.assert_close(la, lb)
    batch = {"x": padded_a.clamp(max=9), "y": torch.tensor([0, 2]), "lengths": lengths}
    assert count_tokens(batch) == 2
    # validation weights by tokens: one batch of 8 real tokens and one of 2 give (8 l1 + 2 l2) / 10
    trainer = Trainer(_fast())
    b1 = {"x": padded_a, "y": padded_a, "lengths": lengths}
    b2 = {"x": x[:1, :2], "y": x[:1, :2]}
    with torch.no_grad():
        expected = (8 * lm.loss(b1) + 2 * lm.loss(b2)) / 10
    assert trainer.evaluate(lm, [b1, b2]) == pytest.approx(expected.item(), rel=1e-6)

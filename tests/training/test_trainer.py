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


class _Poisoned(torch.nn.Module):
    """A model whose loss is NaN on the batches marked ``bad`` and a plain MSE otherwise."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))

    def loss(self, batch):
        loss = (self.w * batch["x"]).sum() ** 2
        return loss * float("nan") if batch["bad"] else loss


def _poison_batches(bad_at):
    return [{"x": torch.ones(3), "bad": i in bad_at} for i in range(6)]


def test_a_non_finite_loss_stops_the_run_and_says_what_to_change(tmp_path):
    from rnnlab.training import TrainingDiverged

    model = _Poisoned()
    with pytest.raises(TrainingDiverged, match=r"diverged at step 3: loss nan.*lower --trainer.lr.*clip_norm"):
        Trainer(_fast(lr=1e-3, run_dir=str(tmp_path / "run"), curves=False)).fit(model, _poison_batches({2}))
    assert torch.isfinite(model.w).all()  # the bad step was never applied
    assert not (tmp_path / "run" / "resume").exists()  # no checkpoint of a diverged run


def test_a_few_bad_steps_can_be_skipped(tmp_path):
    model = _Poisoned()
    before = model.w.detach().clone()
    metrics = Trainer(_fast(lr=1e-3, max_bad_steps=1)).fit(model, _poison_batches({1, 3}))
    assert metrics["step"] == 6 and torch.isfinite(model.w).all() and not torch.equal(model.w, before)
    with pytest.raises(RuntimeError, match="diverged at step 3"):  # two in a row is one too many
        Trainer(_fast(lr=1e-3, max_bad_steps=1)).fit(_Poisoned(), _poison_batches({1, 2}))


def test_a_huge_learning_rate_is_caught_not_saved():
    from rnnlab.training import TrainingDiverged

    model = _lm()
    with pytest.raises(TrainingDiverged, match="lower --trainer.lr \\(now 1e\\+30\\)"):
        Trainer(_fast(lr=1e30, max_epochs=0, max_steps=200)).fit(model, _lm_batches(8))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("data", [[], iter([])])
def test_empty_training_data_is_an_error_not_a_hang(data):
    with pytest.raises(ValueError, match="yielded no batches"):
        Trainer(_fast(max_epochs=0, max_steps=10)).fit(_lm(), data)


def test_eval_tokens_bounds_each_evaluation():
    batches = _lm_batches(10)  # 4 rows x 6 steps = 24 tokens each
    seen = []

    class Counting(list):
        def __iter__(self):
            for b in super().__iter__():
                seen.append(1)
                yield b

    trainer = Trainer(_fast(eval_tokens=50))
    trainer.evaluate(_lm(), Counting(batches))
    assert len(seen) == 3  # 24 + 24 < 50 <= 72: the third batch crosses the bound, then it stops
    assert Trainer(_fast()).evaluate(_lm(), batches) > 0


def test_fit_holds_the_run_dir_lock(tmp_path):
    import fcntl
    import os

    from rnnlab.training.lock import LOCK_FILE, RunDirLocked

    (tmp_path / "run").mkdir()
    fd = os.open(tmp_path / "run" / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another writer
    try:
        with pytest.raises(RunDirLocked):
            Trainer(_fast(run_dir=str(tmp_path / "run"))).fit(_lm(), _lm_batches(2))
    finally:
        os.close(fd)


class _Signalling(list):
    """Batches that send ``sig`` to this process while the trainer takes batch ``at`` (0-based)."""

    def __init__(self, batches, sig, at):
        super().__init__(batches)
        self.sig, self.at = sig, at

    def __iter__(self):
        import os

        for i, batch in enumerate(super().__iter__()):
            if i == self.at:
                os.kill(os.getpid(), self.sig)
            yield batch


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_finishes_the_step_checkpoints_and_resumes_exactly(tmp_path, sig):
    import signal

    batches = _lm_batches(6)
    torch.manual_seed(0)
    whole = _lm()
    Trainer(_fast(run_dir=str(tmp_path / "whole"), curves=False)).fit(whole, batches)

    torch.manual_seed(0)
    model = _lm()
    before = signal.getsignal(getattr(signal, sig))
    metrics = Trainer(_fast(run_dir=str(tmp_path / "run"), curves=False)).fit(
        model, _Signalling(batches, getattr(signal, sig), at=2))
    assert metrics["interrupted"] == sig and metrics["step"] == 3  # the step in flight finished, then it stopped
    assert signal.getsignal(getattr(signal, sig)) is before  # the handlers are put back
    torch.manual_seed(0)
    resumed = _lm()
    again = Trainer(_fast(run_dir=str(tmp_path / "run"), curves=False, resume=True)).fit(resumed, batches)
    assert again["step"] == 6 and "interrupted" not in again
    for a, b in zip(whole.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)


def test_fit_takes_x_y_tuples_as_a_plain_dataloader_yields_them():
    from torch.utils.data import DataLoader, TensorDataset

    from rnnlab.structures import EncoderConfig, ManyToOne, ManyToOneConfig
    from rnnlab.training.trainer import as_batch

    x, y = torch.randn(32, 5, 3), torch.randint(0, 2, (32,))
    model = ManyToOne(ManyToOneConfig(2, input_size=3, encoder=EncoderConfig(hidden_size=8)))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    metrics = Trainer(_fast(max_epochs=2)).fit(model, loader, loader)
    assert metrics["step"] == 8 and math.isfinite(metrics["valid_loss"])
    assert set(as_batch((x, y, torch.full((32,), 5)))) == {"x", "y", "lengths"}
    with pytest.raises(TypeError, match=r"\(x, y\[, lengths\]\) tuple, got tuple of 1 items"):
        as_batch((x,))

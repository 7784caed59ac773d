"""The clipping experiment: without clipping the ReLU RNN's loss explodes, with clipping it stays finite."""
from __future__ import annotations

import json
import math

import pytest

from rnnlab.cli import main
from rnnlab.experiments.clipping import ClippingConfig, make_model, train


def test_the_recurrent_matrix_starts_at_gain_times_identity():
    model = make_model(ClippingConfig(hidden_size=5, gain=1.5))
    w = dict(model.named_parameters())["encoder.layer.cells.0.weight_hh"]
    assert w.diag().tolist() == [1.5] * 5 and (w - w.diag().diag()).abs().max() == 0


def test_no_clipping_explodes_and_clipping_bounds_it():
    config = ClippingConfig(length=100, steps=10, hidden_size=16)
    plain, by_norm, by_value = (train(config, m) for m in ("none", "norm", "value"))
    assert plain.diverged_at is not None and plain.diverged_at <= 5
    assert plain.grad_norm[0] > 100  # the first gradient is already huge
    for run in (by_norm, by_value):
        assert run.diverged_at is None and len(run.loss) == 10
        assert all(math.isfinite(v) and v < 10 for v in run.loss) and math.isfinite(run.test_mse)
    # the same weights and batches: the first step's loss and gradient agree before any clipping acts
    assert plain.loss[0] == by_norm.loss[0] and plain.grad_norm[0] == by_norm.grad_norm[0]


def test_bad_mode_and_config():
    with pytest.raises(ValueError, match="none, norm or value"):
        train(ClippingConfig(steps=1), "both")
    with pytest.raises(ValueError, match="--gain must be positive"):
        ClippingConfig(gain=0)


def test_cli_writes_the_plot_and_the_table(tmp_path, capsys):
    out = tmp_path / "clip"
    assert main(["experiment", "clipping", "--steps", "3", "--length", "20", "--hidden_size", "8",
                 "--out", str(out)]) == 0
    doc = json.loads((out / "clipping.json").read_text())
    assert [r["mode"] for r in doc["runs"]] == ["none", "norm", "value"]
    assert (out / "clipping.png").stat().st_size > 1000
    assert "diverged at" in capsys.readouterr().out

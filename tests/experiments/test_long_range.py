"""The long-range experiment: the generated problems, the parameter budgets, the training loop, the claims, the
CLI."""
from __future__ import annotations

import json

import pytest
import torch

from rnnlab.cli import main
from rnnlab.data.synthetic import COPY_BLANK, COPY_DELIMITER, copy_task, selective_copy_task
from rnnlab.experiments import long_range as lr
from rnnlab.experiments.long_range import MODELS, PROBLEMS, RunResult, check_claims, sized_model, train_one


def test_copy_task_layout():
    g = torch.Generator().manual_seed(0)
    x, y = copy_task(4, 7, symbols=5, copy_length=3, generator=g)
    assert x.shape == (4, 3 + 7 + 3) and y.shape == (4, 3)
    assert torch.equal(x[:, :3], y)  # the symbols first
    assert (y >= 2).all() and (y < 7).all()
    assert (x[:, 3 + 7 - 1] == COPY_DELIMITER).all()  # the delimiter ends the gap
    rest = torch.cat([x[:, 3:9], x[:, 10:]], dim=1)
    assert (rest == COPY_BLANK).all()


def test_selective_copy_keeps_the_order_of_the_symbols():
    g = torch.Generator().manual_seed(1)
    x, y = selective_copy_task(64, 20, symbols=8, copy_length=4, generator=g)
    assert x.shape == (64, 20 + 1 + 4)
    assert (x[:, 20] == COPY_DELIMITER).all() and (x[:, 21:] == COPY_BLANK).all()
    for row, target in zip(x, y):
        body = row[:20]
        assert torch.equal(body[body >= 2], target)  # the symbols, in order, at random places
    spread = (x[:, :20] >= 2).float().argmax(dim=1)
    assert len(set(spread.tolist())) > 1  # the positions differ between rows


@pytest.mark.parametrize("bad", [dict(delay=0), dict(copy_length=0), dict(symbols=-1)])
def test_copy_task_refuses_bad_sizes(bad):
    args = dict(delay=5, symbols=4, copy_length=2) | bad
    with pytest.raises(ValueError, match="positive integer"):
        copy_task(2, args.pop("delay"), **args)


@pytest.mark.parametrize("name", [m for m in MODELS if m != "gru-narrow"])
def test_models_meet_the_parameter_budget(name):
    problem = PROBLEMS["copy"]
    model = sized_model(name, problem, 6000)
    assert abs(lr.count_parameters(model) - 6000) / 6000 < 0.2
    out = model(torch.zeros(2, 15, problem.input_size))
    assert out.shape == (2, problem.read, problem.output_size)


def test_gru_narrow_has_the_lstm_width_and_fewer_parameters():
    problem = PROBLEMS["adding"]
    lstm, gru = sized_model("lstm", problem, 6000), sized_model("gru-narrow", problem, 6000)
    assert gru.encoder_config.hidden_size == lstm.encoder_config.hidden_size
    assert lr.count_parameters(gru) < lr.count_parameters(lstm)


def test_models_are_causal():
    """The read-out at step t must not depend on later inputs, else the copy tasks would be trivial."""
    problem = PROBLEMS["copy"]
    for name in ("lstm", "cnn", "transformer", "window", "mingru"):
        torch.manual_seed(0)
        model = sized_model(name, problem, 3000).eval()
        model.read = 12
        x = torch.randn(1, 12, problem.input_size)
        later = x.clone()
        later[:, 8:] += 1.0
        with torch.no_grad():
            a, b = model(x), model(later)
        torch.testing.assert_close(a[:, :8], b[:, :8], msg=f"{name} looks ahead")


def test_train_one_records_the_curve_and_stops_when_solved(monkeypatch):
    problem = PROBLEMS["copy"]
    model = sized_model("gru", problem, 2000)
    result = train_one(model, problem, 12, steps=6, batch_size=8, lr=1e-2, clip=1.0, eval_every=2, test_size=16,
                       seed=0, name="gru")
    assert result.steps == 6 and [c[0] for c in result.curve] == [2, 4, 6]
    assert result.parameters == lr.count_parameters(model) and 0.0 <= result.score <= 1.0
    monkeypatch.setattr(lr, "SOLVED_ACCURACY", 0.0)  # everything counts as solved: stop at the first evaluation
    result = train_one(model, problem, 12, steps=6, batch_size=8, lr=1e-2, clip=1.0, eval_every=2, test_size=16,
                       seed=0, name="gru")
    assert result.solved and result.steps_to_solve == 2 and result.steps == 2


@pytest.mark.slow
def test_a_gru_learns_the_adding_problem_at_a_short_length():
    problem = PROBLEMS["adding"]
    torch.manual_seed(0)
    model = sized_model("gru", problem, 3000)
    result = train_one(model, problem, 15, steps=600, batch_size=64, lr=1e-2, clip=1.0, eval_every=50,
                       test_size=256, seed=0, name="gru")
    assert result.solved, result.curve  # MSE < 0.04, against 0.167 for predicting the mean


def _run(model, score, solved, length=100, problem="adding", params=1000):
    metric = "mse" if problem == "adding" else "accuracy"
    return RunResult(problem, length, model, 8, params, metric, score, score, solved, 10, 10 if solved else None, 1.0)


def test_claims_follow_the_results():
    results = [_run("rnn", 0.16, False), _run("lstm", 0.01, True), _run("gru", 0.02, True),
               _run("gru-narrow", 0.02, True, params=800), _run("window", 0.15, False),
               _run("transformer", 0.12, False), _run("rnn", 0.01, True, length=20)]
    claims = {c.claim.split(":")[0]: c for c in check_claims(results)}
    by_start = {k.split(" ")[1] + k.split(" ")[2]: c.holds for k, c in claims.items()}
    assert by_start["plainRNN"] is True  # unsolved at T=100 (the T=20 run does not count)
    assert [c.holds for c in check_claims(results)] == [True, True, True, True, True, False]


def test_claims_not_run_are_not_tested():
    claims = check_claims([_run("lstm", 0.01, True)])
    assert [c.holds for c in claims] == [None] * 6


def test_cli_runs_a_tiny_grid(tmp_path, capsys):
    out = tmp_path / "lr"
    code = main(["experiment", "long-range", "--problems", "[adding]", "--lengths", "[12]", "--models", "[gru,window]",
                 "--parameters", "800", "--steps", "4", "--eval_every", "2", "--test_size", "16", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in doc["results"]] == ["gru", "window"]
    assert doc["config"]["steps"] == 4 and (out / "long_range.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "window" in printed and "not tested" in printed


@pytest.mark.parametrize("args, message", [
    (["--models", "[lstm,elman]"], "unknown model 'elman'"),
    (["--problems", "[sorting]"], "unknown problem 'sorting'"),
    (["--lengths", "[5]"], "at least 10"),
    (["--steps", "0"], "--steps must be a positive integer"),
])
def test_cli_bad_options(args, message, tmp_path, capsys):
    assert main(["experiment", "long-range", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

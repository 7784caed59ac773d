"""The forecast task: the Gaussian NLL against torch, the metrics and baselines against brute force and
statsmodels refits, a tiny run in each mode with its bundle, evaluate, predict (CLI and API), streaming equal to
re-running on the full history, and the bad-input cases (one line naming the file, exit 2)."""
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from rnnlab.cli import main
from rnnlab.data.series import read_series
from rnnlab.nn.masking import masked_gaussian_nll
from rnnlab.structures import EncoderConfig
from rnnlab.tasks import forecast
from rnnlab.tasks import forecast_baselines as fb
from rnnlab.tasks.forecast import ForecastConfig, Forecaster, ForecastModelConfig, SeriesDataConfig
from rnnlab.training import TrainerConfig


def write_series(path, n=90, seed=0, drop=()):
    """Monthly: trend + a yearly season + noise, a known covariate (promo) and a past one (temp)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    promo = (t % 5 == 0).astype(float)
    y = 10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / 12) + 0.5 * promo + 0.1 * rng.standard_normal(n)
    times = pd.date_range("2000-01-01", periods=n, freq="MS")
    lines = ["date,sales,promo,temp"] + [f"{d.date()},{v:.4f},{p:g},{20 + v / 3:.3f}"
                                         for i, (d, v, p) in enumerate(zip(times, y, promo)) if i not in drop]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def tiny_config(tmp_path, **overrides) -> ForecastConfig:
    data = SeriesDataConfig(path=write_series(tmp_path / "s.csv"), time_column="date", targets="sales",
                            known_covariates="promo", past_covariates="temp")
    config = ForecastConfig(
        data=data, input_length=12, horizon=4, baselines="naive,seasonal_naive", samples=20, batch_size=16,
        model=ForecastModelConfig(encoder=EncoderConfig(kind="gru", hidden_size=8)),
        trainer=TrainerConfig(lr=1e-2, max_steps=6, max_epochs=0, log_every=50, progress=False, curves=False,
                              device="cpu", run_dir=str(tmp_path / "run")))
    return replace(config, **overrides)


# --- references -------------------------------------------------------------------------------------------------

def test_masked_gaussian_nll_is_torchs_full_gaussian_nll():
    torch.manual_seed(0)
    mean, target, var = torch.randn(3, 5, 2), torch.randn(3, 5, 2), torch.rand(3, 5, 2) + 0.1
    ref = F.gaussian_nll_loss(mean, target, var, full=True, eps=1e-6)
    torch.testing.assert_close(masked_gaussian_nll(mean, var, target), ref)


def test_seasonal_naive_and_metrics_by_brute_force():
    y = np.arange(40, dtype=float)[:, None] ** 1.5
    origins, H, m = [20, 25], 5, 4
    sn = fb.seasonal_naive(y, origins, H, m)
    for i, o in enumerate(origins):
        for h in range(1, H + 1):
            k = (h - 1) // m + 1
            assert sn[i, h - 1, 0] == y[o + h - k * m, 0]
    actual = fb.windows_of(y, origins, H)
    scale, how = fb.mase_scale(y[:20], m)
    assert how == "seasonal naive, m=4" and scale[0] == pytest.approx(np.mean([y[t, 0] - y[t - 4, 0] for t in range(4, 20)]))
    lo, hi = sn - 1, sn + 1
    r = fb.forecast_metrics(actual, sn, scale, {0.8: (lo, hi)})
    errors = [abs(sn[i, h, 0] - actual[i, h, 0]) for i in range(2) for h in range(H)]
    assert r["mae"] == pytest.approx(np.mean(errors)) and r["mase"] == pytest.approx(np.mean(errors) / scale[0])
    assert r["rmse"] == pytest.approx(np.sqrt(np.mean(np.square(errors))))
    assert r["mae_per_horizon"][0] == pytest.approx(np.mean(errors[0::H]), abs=1e-6)
    assert r["coverage_80"] == np.mean(np.array(errors) <= 1)
    assert fb.naive(y, origins, H)[1, 3, 0] == y[25, 0]


@pytest.mark.slow  # fits statsmodels models
@pytest.mark.parametrize("kind", ["ets", "arima"])
def test_statsmodels_rolling_equals_applying_the_fit_to_each_origins_history(kind):
    rng = np.random.default_rng(1)
    t = np.arange(80)
    y = (5 + 0.1 * t + np.sin(2 * np.pi * t / 4) + 0.2 * rng.standard_normal(80))[:, None]
    mean, intervals, about = fb.statsmodels_forecast(kind, y, 60, [65, 70], 3, 4, [0.8])
    fitted, _ = (fb._fit_ets if kind == "ets" else fb._fit_arima)(y[:60, 0], 4)
    for i, o in enumerate([65, 70]):  # the fitted parameters, the history up to o only, no refit
        ref = fitted.apply(y[:o + 1, 0]).forecast(3)
        np.testing.assert_allclose(mean[i, :, 0], ref, rtol=1e-6)
    lo, hi = intervals[0.8]
    assert (lo < mean).all() and (mean < hi).all()


# --- a tiny run --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def direct_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("direct")
    config = tiny_config(tmp)
    return forecast.train(config), config


def test_train_writes_bundle_metrics_and_plot(direct_bundle):
    path, config = direct_bundle
    metrics = json.loads((path / "metrics.json").read_text())
    test = metrics["test"]
    assert test["mase_scale"] == "seasonal naive, m=12" and test["horizon"] == 4
    for name in ("model", "naive", "seasonal_naive"):
        assert len(test[name]["mase_per_horizon"]) == 4 and test[name]["origins"] == test["origins"]
    assert {"coverage_80", "coverage_95"} <= set(test["model"])
    assert (path.parent / "forecast.png").stat().st_size > 1000


def test_evaluate_reproduces_the_training_runs_test_metrics(direct_bundle, tmp_path):
    path, config = direct_bundle
    metrics = forecast.evaluate(path, plot=str(tmp_path / "e.png"))
    stored = json.loads((path / "metrics.json").read_text())["test"]
    assert metrics["model"]["mase"] == pytest.approx(stored["model"]["mase"], rel=1e-6)
    assert (tmp_path / "e.png").exists()


def test_streaming_equals_rerunning_on_the_full_history(direct_bundle):
    path, config = direct_bundle
    series = read_series(config.data.path, time_column="date", targets="sales", known_covariates="promo",
                         past_covariates="temp")
    full = Forecaster(path, series.slice(20, 80))
    stream = Forecaster(path, series.slice(20, 60))
    for t in range(60, 80):
        stream.update(series.times[t], series.targets[t], known=series.known[t], past=series.past[t])
    future = series.known[80:84]
    with pytest.raises(ValueError, match=r"reads past covariates \['temp'\]"):
        stream.update(None, [1.0], known=[0.0])
    a, b = full.forecast(known_future=future), stream.forecast(known_future=future)
    assert a["timestamps"] == b["timestamps"] == ["2006-09-01", "2006-10-01", "2006-11-01", "2006-12-01"]
    for key in ("mean", "lower_80", "upper_95"):
        np.testing.assert_allclose(a[key]["sales"], b[key]["sales"], rtol=1e-5)


def test_forecaster_on_a_window_equals_the_batched_forecast_of_evaluate(direct_bundle):
    path, config = direct_bundle
    model, scaling, cfg = forecast.load_forecaster(path)
    series = forecast.load_series(cfg.data)
    p = forecast.prepare(series, scaling)
    o = 70
    mean, intervals = forecast.forecast_origins(model, p, cfg, scaling, [o])
    got = Forecaster(path, series.slice(o - cfg.input_length, o + 1)).forecast(known_future=series.known[o + 1:o + 5])
    np.testing.assert_allclose(got["mean"]["sales"], mean[0, :, 0], rtol=1e-5)
    np.testing.assert_allclose(got["upper_80"]["sales"], intervals[0.8][1][0, :, 0], rtol=1e-5)


@pytest.mark.parametrize("transform", ["level", "diff"])
def test_autoregressive_mode_streams_and_samples_intervals(tmp_path, transform):
    config = tiny_config(tmp_path, mode="autoregressive", target_transform=transform,
                         data=replace(tiny_config(tmp_path).data, past_covariates=""))
    path = forecast.train(config)
    series = forecast.load_series(config.data)
    full, stream = Forecaster(path, series.slice(30, 80)), Forecaster(path, series.slice(30, 70))
    for t in range(70, 80):
        stream.update(None, series.targets[t], known=series.known[t])
    a, b = full.forecast(known_future=series.known[80:84]), stream.forecast(known_future=series.known[80:84])
    np.testing.assert_allclose(a["mean"]["sales"], b["mean"]["sales"], rtol=1e-5)
    np.testing.assert_allclose(a["lower_95"]["sales"], b["lower_95"]["sales"], rtol=1e-5)
    assert all(lo <= m <= hi for lo, m, hi in zip(a["lower_80"]["sales"], a["mean"]["sales"], a["upper_80"]["sales"]))


def test_autoregressive_refuses_past_covariates(tmp_path):
    with pytest.raises(ValueError, match="past-only covariates"):
        tiny_config(tmp_path, mode="autoregressive")


# --- the CLI -----------------------------------------------------------------------------------------------------

def cli_train(tmp_path, csv, *extra):
    return main(["train", "forecast", "--data.path", csv, "--data.time_column", "date", "--data.targets", "sales",
                 "--input_length", "12", "--horizon", "4", "--baselines", "naive", "--head", "point",
                 "--model.encoder.hidden_size", "8", "--trainer.max_steps", "3", "--trainer.max_epochs", "0",
                 "--trainer.progress", "false", "--trainer.curves", "false",
                 "--trainer.run_dir", str(tmp_path / "cli"), *extra])


@pytest.mark.slow  # trains and runs three commands
def test_cli_train_and_predict_past_the_end(tmp_path, capsys, monkeypatch):
    csv = write_series(tmp_path / "s.csv")
    assert cli_train(tmp_path, csv) == 0
    capsys.readouterr()
    bundle = str(tmp_path / "cli" / "bundle")
    assert main(["predict", bundle, csv, "--data", csv]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and lines[0]["timestamps"][0] == "2007-07-01" and len(lines[0]["mean"]["sales"]) == 4
    monkeypatch.setattr("sys.stdin", None)  # --data alone: standard input is not read
    assert main(["predict", bundle, "--data", csv]) == 0
    assert json.loads(capsys.readouterr().out)["timestamps"][-1] == "2007-10-01"
    assert main(["evaluate", bundle, "--data", csv]) == 0
    assert "model" in json.loads(capsys.readouterr().out)


def test_predict_reads_future_known_covariates_from_trailing_rows(direct_bundle, tmp_path):
    path, config = direct_bundle
    series = read_series(config.data.path, time_column="date", targets="sales", known_covariates="promo",
                         past_covariates="temp")
    lines = open(config.data.path).read().splitlines()
    csv = tmp_path / "future.csv"
    csv.write_text("\n".join(lines[:71]) + "\n" + "".join(f"{d},,{p},\n" for d, p in
                   (("2005-11-01", 1), ("2005-12-01", 0), ("2006-01-01", 0), ("2006-02-01", 0))))
    (got,) = forecast.predict(path, [], data=str(csv))
    want = Forecaster(path, series.slice(70 - config.input_length - 1, 70)).forecast(
        known_future=np.array([[1.0], [0.0], [0.0], [0.0]]))
    assert got["timestamps"] == want["timestamps"] == ["2005-11-01", "2005-12-01", "2006-01-01", "2006-02-01"]
    np.testing.assert_allclose(got["mean"]["sales"], want["mean"]["sales"], rtol=1e-6)
    csv.write_text("\n".join(lines[:71]) + "\n")
    with pytest.raises(ValueError, match="end the file with 4 rows of their future values"):
        list(forecast.predict(path, [str(csv)]))


@pytest.mark.parametrize("problem,drop,options,expected", [
    ("gap", (40,), [], "a gap of 1 missing monthly step(s)"),
    ("text", (), [], "row 31, column 'sales': 'lots' is not a number"),
    ("short", (), [], "rows are too few"),
    ("target", (), ["--data.targets", "revenue"], "no target column 'revenue' (the columns are: date, sales, promo, temp)"),
    ("time", (), [], "time column 'date': 'sometime' is not a date"),
])
def test_cli_bad_input_is_one_line_naming_the_file_exit_2(tmp_path, capsys, problem, drop, options, expected):
    csv = write_series(tmp_path / "bad.csv", n=14 if problem == "short" else 90, drop=drop)
    text = open(csv).read()
    if problem == "text":
        lines = text.splitlines()
        lines[30] = lines[30].split(",")[0] + ",lots,0,1"
        text = "\n".join(lines) + "\n"
    if problem == "time":
        text = text.replace("2001-03-01", "sometime")
    open(csv, "w").write(text)
    assert cli_train(tmp_path, csv, *options) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnlab: error: ") and "bad.csv" in err and expected in err and "\n" not in err


def test_the_presets_parse_and_the_default_preset_is_the_default_config():
    from pathlib import Path

    from rnnlab.cli import build_parser

    root = Path(__file__).resolve().parents[2]

    def parse(preset):
        parser = build_parser()
        ns = parser.instantiate(parser.parse_args(["train", "forecast", "--config", str(root / "configs" / preset)]))
        return ns.train.forecast

    default = parse("forecast.yaml")
    assert ForecastConfig(**{k: default[k] for k in ForecastConfig.__dataclass_fields__}) == ForecastConfig()
    sunspots = parse("forecast-sunspots.yaml")
    assert sunspots.data.path == "sunspots" and sunspots.trainer.run_dir == "runs/forecast-sunspots"

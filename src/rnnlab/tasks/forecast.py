"""Time-series forecasting (prices, weather, traffic, load, any series): an RNN over windows, against baselines.

``train(config)`` reads a series (a CSV with a time column, targets and covariates, see
:mod:`rnnlab.data.series`; or an embedded statsmodels series), splits it by time into train, validation and test
parts (never shuffled across time), fits the scaling on the training part only, and trains on windows of
``input_length`` steps followed by ``horizon`` steps:

- ``mode=direct``: a :class:`~rnnlab.structures.ManyToOne` reads the window (and, when there are known-in-advance
  covariates, the H future steps with their known covariates, a future flag set and the targets zeroed) and its
  head emits all H steps at once;
- ``mode=autoregressive``: a :class:`~rnnlab.structures.ManyToMany` predicts the next step at every step (trained
  with teacher forcing) and forecasts by feeding its predictions back. Its input at step t is ``[z_t,
  known_{t+1}]``; past-only covariates cannot be rolled forward, so this mode refuses them.

Targets are modelled as ``z``: levels standardised with the training part's mean and deviation
(``target_transform=level``), or first differences standardised likewise (``diff``; a forecast is the last level
plus the cumulated differences). ``head=gaussian`` emits a mean and a variance per step (softplus), trained by
the Gaussian NLL of :func:`rnnlab.nn.masking.masked_gaussian_nll`; intervals are mean ± z·sd. With ``diff`` the
variances of the steps are summed (independent steps); in autoregressive mode the intervals are the empirical
quantiles of ``samples`` sampled paths (the point forecast feeds back the means).

The test part is scored at every origin o (the last observed step) whose H steps lie in it, h = 1..H, for the RNN
and the baselines of :mod:`rnnlab.tasks.forecast_baselines` by the same metric code (MAE, RMSE, MASE, coverage);
``<run_dir>/forecast.png`` shows the history, the forecast from the last origin and its intervals.

Streaming: :class:`Forecaster` carries the RNN state; ``update`` feeds one new observation, ``forecast`` gives the
next H steps, without re-reading the history. Its state after a history is the state of running the model over
that whole history (from the first row given), so it equals the windowed forecast of ``evaluate``/``predict``
when given the window alone (``predict`` gives it the last ``input_length`` rows).
"""
from __future__ import annotations

import dataclasses
import logging
import sys
import time as _time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from rnnlab.data.errors import DataError
from rnnlab.data.series import (
    EMBEDDED_SERIES,
    Frequency,
    Missing,
    Series,
    advance,
    calendar_features,
    calendar_names,
    embedded_csv,
    parse_series,
    read_series,
    time_text,
)
from rnnlab.nn.masking import masked_gaussian_nll
from rnnlab.nn.state import LSTMState
from rnnlab.structures import EncoderConfig, ManyToMany, ManyToManyConfig, ManyToOne, ManyToOneConfig
from rnnlab.structures.base import check_choice
from rnnlab.structures.encoders import RECURRENT_KINDS
from rnnlab.training import Trainer, TrainerConfig
from rnnlab.training.checkpoint import from_dict

from . import forecast_baselines as fb
from ._common import check_data_unchanged, check_positive, check_run_dir, load_task_bundle, locked, save_task_bundle

log = logging.getLogger(__name__)

TASK = "forecast"
DESCRIPTION = "time-series forecasting from CSV (targets, covariates): direct or autoregressive RNN, intervals, " \
              "baselines"
EMBEDDED_DATA = "Mauna Loa CO2 (statsmodels), weekly 1958-2001 as 526 monthly means; also co2|sunspots|elnino|nile"
EMBEDDED_NAMES = EMBEDDED_SERIES
Mode = Literal["direct", "autoregressive"]
Head = Literal["point", "gaussian"]
Transform = Literal["level", "diff"]


@dataclass(frozen=True)
class SeriesDataConfig:
    """Where the series is and how to read it (``--data.path``, ``--data.targets``, ...)."""

    path: Optional[str] = None
    """A CSV file with a header row; None = co2; or an embedded statsmodels series: co2 | sunspots | elnino | nile."""
    time_column: str = "time"
    """The column of times: dates (2024-01-31, 2024-01-31 13:00) or numbers (1700, 1701: a step index)."""
    targets: str = ""
    """Comma-separated target columns; empty = every column besides the time and the covariates."""
    known_covariates: str = ""
    """Comma-separated columns known in advance (holidays, planned prices): the model sees their future values."""
    past_covariates: str = ""
    """Comma-separated columns observed only up to the present (other sensors): direct mode only."""
    calendar: str = "auto"
    """Calendar features as known covariates (sin/cos of the phase): none | auto (month for monthly data, quarter,
    weekofyear, dayofweek+dayofyear for daily, hour+dayofweek below a day) | a comma list of month, quarter,
    weekofyear, dayofweek, dayofyear, hour."""
    missing: Missing = "error"
    """Gaps in the time grid and empty/NA cells: error (naming the first) | ffill (carry the last value forward)
    | interpolate (linear in time)."""

    def __post_init__(self) -> None:
        check_choice("--data.missing", self.missing, Missing)


@dataclass(frozen=True)
class ForecastModelConfig:
    """The network: a recurrent encoder (unidirectional, so it can stream) and a linear head."""

    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(kind="lstm", hidden_size=64))
    """The recurrent encoder: lstm | gru | rnn | rnn-relu | mingru | minlstm (unidirectional)."""
    dropout: float = 0.0
    """Dropout on the encoder's output before the head."""

    def __post_init__(self) -> None:
        if self.encoder.kind not in RECURRENT_KINDS or self.encoder.bidirectional:
            raise ValueError(f"--model.encoder.kind must be a unidirectional recurrent kind "
                             f"({', '.join(RECURRENT_KINDS)}) so that the forecaster can stream, got "
                             f"{self.encoder.kind!r}"
                             f"{' bidirectional' if self.encoder.bidirectional else ''}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--model.dropout must be in [0, 1), got {self.dropout!r}")


def _default_trainer() -> TrainerConfig:
    return TrainerConfig(optimizer="adamw", lr=3e-3, weight_decay=1e-4, max_epochs=200, max_time=120.0,
                         clip_norm=1.0, early_stopping_patience=20, log_every=50, run_dir="runs/forecast")


@dataclass(frozen=True)
class ForecastConfig:
    """Train an RNN forecaster on a series and score it against naive, seasonal naive, ETS and ARIMA."""

    data: SeriesDataConfig = field(default_factory=SeriesDataConfig)
    input_length: int = 36
    """L: the steps of history the model reads (a few seasons)."""
    horizon: int = 12
    """H: the steps forecast from each origin."""
    mode: Mode = "direct"
    """direct (the head emits all H steps) | autoregressive (one step, fed back H times)."""
    head: Head = "gaussian"
    """gaussian (mean and variance: prediction intervals, Gaussian NLL) | point (mean only, MSE)."""
    target_transform: Transform = "diff"
    """diff: model the first differences (trends extrapolate) | level: the standardised values."""
    season_length: int = 0
    """m for seasonal naive, ETS, ARIMA and MASE; 0 = from the frequency (12 monthly, 4 quarterly, 52 weekly,
    7 daily, 24 hourly, else 1)."""
    valid_fraction: float = 0.1
    """The validation part: this fraction of the steps before the test part (early stopping)."""
    test_fraction: float = 0.1
    """The test part: the last fraction of the steps, scored at every origin."""
    intervals: tuple[float, ...] = (0.8, 0.95)
    """Central prediction intervals to report (gaussian head), as fractions."""
    baselines: str = "naive,seasonal_naive,ets,arima"
    """Comma-separated baselines scored on the same test origins: naive, seasonal_naive, ets, arima ('' = none)."""
    samples: int = 200
    """autoregressive + gaussian: sampled paths for the intervals."""
    batch_size: int = 32
    """B: windows per batch."""
    model: ForecastModelConfig = field(default_factory=ForecastModelConfig)
    trainer: TrainerConfig = field(default_factory=_default_trainer)

    def __post_init__(self) -> None:
        check_positive(self, "input_length", "horizon", "samples", "batch_size")
        check_choice("--mode", self.mode, Mode)
        check_choice("--head", self.head, Head)
        check_choice("--target_transform", self.target_transform, Transform)
        if not isinstance(self.season_length, int) or self.season_length < 0:
            raise ValueError(f"--season_length must be 0 (from the frequency) or a positive integer, got "
                             f"{self.season_length!r}")
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ValueError(f"--{name} must be in (0, 0.5), got {getattr(self, name)!r}")
        for level in self.intervals:
            if not 0.0 < level < 1.0:
                raise ValueError(f"--intervals must be fractions in (0, 1), e.g. [0.8, 0.95], got {level!r}")
        for name in fb_names(self.baselines):
            if name not in fb.BASELINES:
                raise ValueError(f"--baselines: unknown baseline {name!r}; choose from {', '.join(fb.BASELINES)}")
        if self.mode == "autoregressive" and self.data.past_covariates:
            raise ValueError("--mode autoregressive cannot roll past-only covariates forward (--data.past_covariates "
                             f"{self.data.past_covariates!r}): use --mode direct or make them known covariates")
        check_run_dir(self)


Config = ForecastConfig


def fb_names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def config_from_dict(data: dict) -> ForecastConfig:
    return from_dict(ForecastConfig, data)


@dataclass(frozen=True)
class EvaluateOptions:
    """How ``rnnlab evaluate`` scores a forecast bundle on --data (a CSV read as the bundle's training data was)."""

    plot: Optional[str] = None
    """Write the history, forecast and interval PNG to this path."""
    baselines: Optional[str] = None
    """Baselines to score beside the model (None = those of the training run)."""


@dataclass(frozen=True)
class PredictOptions:
    """How ``rnnlab predict`` forecasts past the end of a series."""

    data: Optional[str] = None
    """A CSV of the series (the bundle's columns); its last input_length rows are the history. CSV paths given as
    INPUT are forecast too."""
    plot: Optional[str] = None
    """Write a PNG of the history and the forecast here (the last input only)."""


# --- data: series -> scaled arrays -----------------------------------------------------------------------------

def load_series(data: SeriesDataConfig, path: Optional[str] = None, *, future_rows: bool = False) -> Series:
    """The series that ``data`` names (``path`` overrides data.path): a CSV file or an embedded one."""
    path = data.path if path is None else path
    options = dict(time_column=data.time_column, targets=data.targets, known_covariates=data.known_covariates,
                   past_covariates=data.past_covariates, missing=data.missing, future_rows=future_rows)
    if path is None or path in EMBEDDED_SERIES:
        name = path or "co2"
        return parse_series(embedded_csv(name), name, **{**options, "time_column": "time", "targets": ""})
    return read_series(path, **options)


def embedded_text(config: ForecastConfig) -> str:
    return embedded_csv(config.data.path or "co2")


@dataclass
class Prepared:
    """A series as the model sees it: ``z`` (N, K) (NaN at row 0 with diff), covariates scaled, calendar added."""

    series: Series
    levels: np.ndarray
    z: np.ndarray
    known: np.ndarray
    """(N, Ck): calendar features then the scaled user known covariates."""
    past: np.ndarray
    first: int
    """The first row with a z: 1 with diff, else 0."""


def fit_scaling(series: Series, config: ForecastConfig, train_end: int) -> dict:
    """Means and deviations of the model's inputs, from the training part only (rows < train_end)."""
    y = series.targets[:train_end]
    y = np.diff(y, axis=0) if config.target_transform == "diff" else y

    def stats(a: np.ndarray) -> list:
        sd = a.std(axis=0) if len(a) else np.ones(a.shape[1])
        return [a.mean(axis=0).tolist() if len(a) else [0.0] * a.shape[1], np.where(sd > 0, sd, 1.0).tolist()]

    return {"target": stats(y), "known": stats(series.known[:train_end]), "past": stats(series.past[:train_end]),
            "calendar": calendar_names(config.data.calendar, series.frequency), "transform": config.target_transform,
            "target_names": series.target_names, "known_names": series.known_names, "past_names": series.past_names,
            "frequency": series.frequency.to_json()}


def prepare(series: Series, scaling: dict) -> Prepared:
    mu, sd = (np.array(a) for a in scaling["target"])
    y = series.targets
    if scaling["transform"] == "diff":
        z = np.vstack([np.full((1, y.shape[1]), np.nan), (np.diff(y, axis=0) - mu) / sd])
    else:
        z = (y - mu) / sd
    known = np.hstack([calendar_features(series.times, scaling["calendar"]),
                       (series.known - np.array(scaling["known"][0])) / np.array(scaling["known"][1])])
    past = (series.past - np.array(scaling["past"][0])) / np.array(scaling["past"][1])
    return Prepared(series, y, z, known, past, int(scaling["transform"] == "diff"))


def input_rows(p: Prepared, mode: Mode, start: int, stop: int, known_next: Optional[np.ndarray] = None) -> np.ndarray:
    """The model's input rows for steps start..stop-1: direct [z, past, known, flag 0]; autoregressive
    [z, known of the next step] (``known_next`` (stop-start, Ck) when the next step lies past the data)."""
    z = p.z[start:stop]
    if mode == "direct":
        flag = np.zeros((stop - start, 1 if p.known.shape[1] else 0))
        return np.hstack([z, p.past[start:stop], p.known[start:stop], flag])
    nxt = p.known[start + 1:stop + 1] if known_next is None else known_next
    return np.hstack([z, nxt])


def future_rows(p: Prepared, known: np.ndarray) -> np.ndarray:
    """direct: the rows of the H future steps: targets and past covariates zero, known covariates, flag 1."""
    K, Cp = p.z.shape[1], p.past.shape[1]
    return np.hstack([np.zeros((len(known), K + Cp)), known, np.ones((len(known), 1))])


def input_size(scaling: dict, mode: Mode) -> int:
    K, Cp = len(scaling["target_names"]), len(scaling["past_names"])
    Ck = 2 * len(scaling["calendar"]) + len(scaling["known_names"])
    return K + Ck if mode == "autoregressive" else K + Cp + Ck + (1 if Ck else 0)


def window(p: Prepared, config: ForecastConfig, o: int) -> dict:
    """The training example at origin o: direct x (L [+ H], F), y (H, K); autoregressive x (L, F), y (L, K)."""
    L, H = config.input_length, config.horizon
    if config.mode == "direct":
        x = input_rows(p, "direct", o - L + 1, o + 1)
        if p.known.shape[1]:
            x = np.vstack([x, future_rows(p, p.known[o + 1:o + H + 1])])
        y = p.z[o + 1:o + H + 1]
    else:
        x, y = input_rows(p, "autoregressive", o - L + 1, o + 1), p.z[o - L + 2:o + 2]
    return {"x": torch.tensor(x, dtype=torch.float32), "y": torch.tensor(y, dtype=torch.float32)}


@dataclass(frozen=True)
class Split:
    train_end: int
    valid_end: int
    n: int


def split(n: int, config: ForecastConfig, source: str) -> Split:
    """Chronological parts: train [0, train_end), valid [train_end, valid_end), test [valid_end, n)."""
    test = max(config.horizon, round(config.test_fraction * n))
    valid = max(config.horizon, round(config.valid_fraction * n))
    s = Split(n - test - valid, n - test, n)
    window = config.input_length + config.horizon + 1
    if s.train_end < window:
        raise DataError(source, f"{n} rows are too few: one window of --input_length {config.input_length} + "
                                f"--horizon {config.horizon} (+1 with diff) in the training part, then {valid} "
                                f"validation and {test} test rows, need at least {window + valid + test} rows; "
                                "give a longer series or shorten --input_length/--horizon")
    return s


def origins(lo: int, hi: int, p: Prepared, config: ForecastConfig) -> list[int]:
    """Origins o whose window starts at or after p.first and whose H steps end before ``hi`` (o >= lo)."""
    start = max(lo, p.first + config.input_length - 1)
    return list(range(start, hi - config.horizon))


# --- the model --------------------------------------------------------------------------------------------------

def build_model(config: ForecastConfig, scaling: dict) -> nn.Module:
    K, P = len(scaling["target_names"]), 2 if config.head == "gaussian" else 1
    F_ = input_size(scaling, config.mode)
    if config.mode == "direct":
        return ManyToOne(ManyToOneConfig(output_size=config.horizon * K * P, input_size=F_,
                                         encoder=config.model.encoder, pooling="last", dropout=config.model.dropout,
                                         task="regression"))
    return ManyToMany(ManyToManyConfig(output_size=K * P, input_size=F_, encoder=config.model.encoder,
                                       dropout=config.model.dropout, task="regression"))


def encode(model: nn.Module, x: Tensor, state=None):
    """x (B, T, F) from ``state`` -> (outputs (B, T, E), state): the structure's input layer and encoder."""
    return model.encoder.forward_with_state(model.inputs(x), state)


def head(model: nn.Module, h: Tensor, gaussian: bool, K: int) -> tuple[Tensor, Optional[Tensor]]:
    """h (..., E) -> mean, variance (..., [H,] K): the direct head emits H steps, the autoregressive one step."""
    out = model.head(model.dropout(h))
    P = 2 if gaussian else 1
    out = out.view(*out.shape[:-1], -1, K, P) if isinstance(model, ManyToOne) else out.view(*out.shape[:-1], K, P)
    mean = out[..., 0]
    return mean, (F.softplus(out[..., 1]) + 1e-6 if gaussian else None)


class ForecastObjective(nn.Module):
    """The training loss around the bundle's plain structure: MSE, or the Gaussian NLL with the gaussian head."""

    def __init__(self, model: nn.Module, gaussian: bool, K: int) -> None:
        super().__init__()
        self.model, self.gaussian, self.K = model, gaussian, K

    def loss(self, batch: dict) -> Tensor:
        outputs, _ = encode(self.model, batch["x"])  # (B, T, E)
        h = outputs[:, -1] if isinstance(self.model, ManyToOne) else outputs
        mean, var = head(self.model, h, self.gaussian, self.K)  # (B, H, K) or (B, T, K)
        y = batch["y"]
        return masked_gaussian_nll(mean, var, y) if self.gaussian else F.mse_loss(mean, y)


def _copy_state(state):
    if isinstance(state, LSTMState):
        return LSTMState(state.h.clone(), state.c.clone())
    return None if state is None else state.clone()


def _repeat_state(state, n: int):
    if isinstance(state, LSTMState):
        return LSTMState(state.h.repeat_interleave(n, 1), state.c.repeat_interleave(n, 1))
    return state.repeat_interleave(n, 1)


@torch.no_grad()
def rollout(model: nn.Module, state, x: Tensor, known: Tensor, horizon: int, gaussian: bool, K: int,
            samples: int = 0, seed: int = 0) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Autoregressive forecast: x (B, T, F) the rows up to the origin (the last one holds z_o and known_{o+1}),
    known (B, H-1, Ck) the known covariates of o+2..o+H -> means (B, H, K) fed back, variances (B, H, K) of each
    step, and with ``samples`` sampled paths (S, B, H, K)."""
    outputs, state = encode(model, x, state)
    mean, var = head(model, outputs[:, -1], gaussian, K)  # (B, K)
    means, vars_, s = [mean], [var], _copy_state(state)
    for h in range(horizon - 1):
        step = torch.cat([means[-1], known[:, h]], dim=-1).unsqueeze(1)  # (B, 1, F)
        out, s = encode(model, step, s)
        m, v = head(model, out[:, -1], gaussian, K)
        means.append(m)
        vars_.append(v)
    paths = None
    if samples and gaussian:
        g = torch.Generator().manual_seed(seed)
        B = x.shape[0]
        st = _repeat_state(state, samples)  # (L, B·S, H)
        m, v = mean.repeat_interleave(samples, 0), var.repeat_interleave(samples, 0)
        kn = known.repeat_interleave(samples, 0)
        draws = []
        for h in range(horizon):
            zs = m + v.sqrt() * torch.randn(m.shape, generator=g)
            draws.append(zs)
            if h < horizon - 1:
                out, st = encode(model, torch.cat([zs, kn[:, h]], dim=-1).unsqueeze(1), st)
                m, v = head(model, out[:, -1], gaussian, K)
        paths = torch.stack(draws, 1).view(B, samples, horizon, K).transpose(0, 1)  # (S, B, H, K)
    return torch.stack(means, 1), (torch.stack(vars_, 1) if gaussian else None), paths


def to_levels(z: np.ndarray, last: np.ndarray, scaling: dict) -> np.ndarray:
    """z (..., H, K) -> levels (..., H, K); ``last`` (..., K) the level at the origin (used with diff)."""
    mu, sd = (np.array(a) for a in scaling["target"])
    y = z * sd + mu
    return last[..., None, :] + np.cumsum(y, axis=-2) if scaling["transform"] == "diff" else y


def level_intervals(mean: np.ndarray, var: Optional[np.ndarray], paths: Optional[np.ndarray], last: np.ndarray,
                    scaling: dict, levels) -> dict:
    """{level: (lower, upper)} in the series' units, from Gaussian variances or from sampled paths."""
    if paths is not None:
        ys = to_levels(paths, last[None], scaling)  # (S, ..., H, K)
        return {lv: (np.quantile(ys, 0.5 - lv / 2, axis=0), np.quantile(ys, 0.5 + lv / 2, axis=0)) for lv in levels}
    if var is None:
        return {}
    sd2 = var * np.array(scaling["target"][1]) ** 2
    sd = np.sqrt(np.cumsum(sd2, axis=-2) if scaling["transform"] == "diff" else sd2)
    return {lv: (mean - fb.normal_quantile(lv) * sd, mean + fb.normal_quantile(lv) * sd) for lv in levels}


@torch.no_grad()
def forecast_origins(model: nn.Module, p: Prepared, config: ForecastConfig, scaling: dict, points: list[int]):
    """(mean (O, H, K), intervals) of the model at each origin, in the series' units, batched."""
    model.eval()
    K, gaussian, H = p.z.shape[1], config.head == "gaussian", config.horizon
    if config.mode == "direct":
        x = torch.stack([window(p, config, o)["x"] for o in points])
        outputs, _ = encode(model, x)
        zm, zv = head(model, outputs[:, -1], gaussian, K)
        paths = None
    else:
        x = torch.stack([window(p, config, o)["x"] for o in points])
        kn = torch.tensor(np.stack([p.known[o + 2:o + H + 1] for o in points]), dtype=torch.float32)
        zm, zv, paths = rollout(model, None, x, kn, H, gaussian, K, config.samples, config.trainer.seed)
    last = p.levels[points]  # (O, K)
    mean = to_levels(zm.numpy().astype(np.float64), last, scaling)
    intervals = level_intervals(mean, None if zv is None else zv.numpy(), None if paths is None else
                                paths.numpy().astype(np.float64), last, scaling, config.intervals)
    return mean, intervals


# --- scoring ----------------------------------------------------------------------------------------------------

def season(config: ForecastConfig, series: Series) -> int:
    return config.season_length or series.frequency.season_length


def score(model: nn.Module, p: Prepared, config: ForecastConfig, scaling: dict, s: Split, baselines: list[str],
          lo: Optional[int] = None) -> tuple[dict, dict]:
    """The model's and the baselines' metrics over the test origins; and the arrays behind them (for the plot)."""
    points = origins(s.valid_end - 1 if lo is None else lo, s.n, p, config)
    if not points:
        raise DataError(p.series.source, "no test origin: the test part is shorter than --horizon")
    y, m, H = p.levels, season(config, p.series), config.horizon
    actual = fb.windows_of(y, points, H)
    scale, how = fb.mase_scale(y[:s.train_end], m)
    mean, intervals = forecast_origins(model, p, config, scaling, points)
    results = {"model": fb.forecast_metrics(actual, mean, scale, intervals)}
    for name in baselines:
        started = _time.perf_counter()
        about = None
        if name == "naive":
            bm, bi = fb.naive(y, points, H), {}
        elif name == "seasonal_naive":
            bm, bi = fb.seasonal_naive(y, points, H, m), {}
        else:
            bm, bi, about = fb.statsmodels_forecast(name, y, s.train_end, points, H, m, config.intervals)
        results[name] = fb.forecast_metrics(actual, bm, scale, bi)
        results[name]["seconds"] = round(_time.perf_counter() - started, 2)
        if about:
            results[name]["model"] = ", ".join(about.values())
    info = {"mase_scale": how, "season_length": m, "test_start": time_text(p.series.times[s.valid_end]),
            "horizon": H, "origins": len(points)}
    return {**info, **results}, {"points": points, "mean": mean, "intervals": intervals}


def plot_forecast(series: Series, arrays: dict, path: Path, title: str, history: int = 0) -> None:
    """History, the h=1 forecasts over the test origins, and the forecast (with intervals) from the last origin."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no %s", path)
        return
    points, mean, intervals = arrays["points"], arrays["mean"], arrays["intervals"]
    t = np.arange(len(series))
    start = max(0, (points[0] if points else len(series)) - (history or 3 * mean.shape[1]))
    K = series.targets.shape[1]
    fig, axes = plt.subplots(K, 1, figsize=(10, 3.2 * K), squeeze=False)
    o = points[-1]
    h = np.arange(o + 1, o + 1 + mean.shape[1])
    for k, ax in enumerate(axes[:, 0]):
        ax.plot(t[start:], series.targets[start:, k], color="black", lw=1, label="history")
        if len(points) > 1:
            ax.plot(np.array(points) + 1, mean[:, 0, k], color="tab:blue", lw=0.8, alpha=0.6, label="h=1 forecasts")
        for level, (lo, hi) in sorted(intervals.items(), reverse=True):
            ax.fill_between(h, lo[-1, :, k], hi[-1, :, k], color="tab:orange", alpha=0.25,
                            label=f"{round(100 * level)}% interval")
        ax.plot(h, mean[-1, :, k], color="tab:orange", lw=1.6, label=f"forecast from step {o}")
        ax.set_ylabel(series.target_names[k])
    axes[0, 0].set_title(title)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel(f"step ({series.frequency.describe()}; 0 = {time_text(series.times[0])})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- train, evaluate --------------------------------------------------------------------------------------------

@locked
def train(config: ForecastConfig) -> Path:
    """Train a forecaster as ``config`` says; returns the bundle's path (``<run_dir>/bundle``)."""
    series = load_series(config.data)
    s = split(len(series), config, series.source)
    scaling = fit_scaling(series, config, s.train_end)
    p = prepare(series, scaling)
    train_w = [window(p, config, o) for o in origins(0, s.train_end, p, config)]
    valid_w = [window(p, config, o) for o in origins(s.train_end - 1, s.valid_end, p, config)]
    log.info("data: %s, %d steps (%s), %d targets; train %d / valid %d / test %d steps; %d + %d windows; %s",
             series.source, len(series), series.frequency.describe(), len(series.target_names), s.train_end,
             s.valid_end - s.train_end, s.n - s.valid_end, len(train_w), len(valid_w), series.report)
    torch.manual_seed(config.trainer.seed)
    model = build_model(config, scaling)
    objective = ForecastObjective(model, config.head == "gaussian", len(series.target_names))
    loader = DataLoader(train_w, batch_size=config.batch_size, shuffle=True)
    valid = DataLoader(valid_w, batch_size=256) if valid_w else None
    metrics = dict(Trainer(config.trainer).fit(objective, loader, valid))
    model.eval()
    test, arrays = score(model, p, config, scaling, s, fb_names(config.baselines))
    metrics.update(test_mase=test["model"]["mase"], test_mae=test["model"]["mae"], test=test,
                   data_report=series.report)
    for name, r in test.items():
        if isinstance(r, dict):
            log.info("test %-15s MASE %.3f  MAE %.4g  RMSE %.4g", name, r["mase"], r["mae"], r["rmse"])
    plot_forecast(series, arrays, Path(config.trainer.run_dir) / "forecast.png",
                  f"{series.source}: test MASE {test['model']['mase']:.3f} ({test['mase_scale']})")
    history = {"times": [time_text(t) for t in series.times[-config.input_length - 1:]]}
    return save_task_bundle(TASK, config, model, assets={"scaling": scaling, "history": history}, metrics=metrics)


def load_forecaster(bundle_path: Union[str, Path]) -> tuple[nn.Module, dict, ForecastConfig]:
    bundle = load_task_bundle(bundle_path, TASK)
    scaling = bundle.assets.get("scaling")
    if not isinstance(scaling, dict) or not isinstance(bundle.model, (ManyToOne, ManyToMany)):
        raise ValueError(f"{bundle.path} is not a forecast bundle (it lacks scaling.json or a ManyToOne/ManyToMany)")
    return bundle.model, scaling, config_from_dict(bundle.task_config)


def _check_columns(series: Series, scaling: dict) -> None:
    for what in ("target", "known", "past"):
        have, want = getattr(series, f"{what}_names"), scaling[f"{what}_names"]
        if have != want:
            raise DataError(series.source, f"{what} columns {have} differ from the bundle's {want}: give a CSV "
                                           "with the columns the model was trained on")


def evaluate(bundle_path: Union[str, Path], data: Optional[str] = None, *, plot: Optional[str] = None,
             baselines: Optional[str] = None) -> dict:
    """Metrics of a bundle (and the baselines) on ``data``: a CSV read as the training data was, scored at every
    origin of its last test_fraction (the bundle's scaling kept); None = the test part of the training series."""
    model, scaling, config = load_forecaster(bundle_path)
    if data is None:
        check_data_unchanged(bundle_path, config, sys.modules[__name__])
    series = load_series(config.data, data)
    _check_columns(series, scaling)
    s = split(len(series), config, series.source)
    names = fb_names(config.baselines if baselines is None else baselines)
    metrics, arrays = score(model, prepare(series, scaling), config, scaling, s, names)
    if plot:
        plot_forecast(series, arrays, Path(plot).expanduser(), f"{series.source}: MASE {metrics['model']['mase']:.3f}")
    return metrics


# --- streaming and predict --------------------------------------------------------------------------------------

class Forecaster:
    """A forecaster that carries the RNN state: feed observations one by one, forecast at any time.

    ``Forecaster(bundle, history)`` runs the model over ``history`` (a :class:`Series`, at least 1 row, 2 with
    diff); ``update(time, targets, known=..., past=...)`` feeds one new observation (one RNN step, the history is
    not read again); ``forecast()`` returns the next H steps as a dict (timestamps, mean, lower/upper per interval).
    """

    def __init__(self, bundle: Union[str, Path], history: Series) -> None:
        self.model, self.scaling, self.config = load_forecaster(bundle)
        _check_columns(history, self.scaling)
        self.freq = Frequency(**self.scaling["frequency"])
        self.K = len(self.scaling["target_names"])
        self.gaussian = self.config.head == "gaussian"
        p = prepare(history, self.scaling)
        if len(history) <= p.first:
            raise DataError(history.source, f"{len(history)} rows are too few to forecast from (need {p.first + 1})")
        self.time, self.level = history.times[-1], p.levels[-1].copy()
        self.known_user = history.known[-1].copy()
        self.state, self.last_out, self.pending = None, None, None
        n = len(history)
        if self.config.mode == "direct":
            self._feed(input_rows(p, "direct", p.first, n))
        else:
            self._feed(input_rows(p, "autoregressive", p.first, n - 1) if n - 1 > p.first else None)
            self.pending = p.z[n - 1].copy()

    @torch.no_grad()
    def _feed(self, rows: Optional[np.ndarray]) -> None:
        if rows is None or not len(rows):
            return
        out, self.state = encode(self.model, torch.tensor(rows, dtype=torch.float32)[None], self.state)
        self.last_out = out[:, -1]

    def _known(self, times: list, user: np.ndarray) -> np.ndarray:
        """(n, Ck) scaled known covariates of ``times`` (calendar) with the user's known values (n, Cu)."""
        cal = calendar_features(times, self.scaling["calendar"])
        mu, sd = (np.array(a) for a in self.scaling["known"])
        return np.hstack([cal, (user - mu) / sd]) if user.shape[1] else cal

    def _z(self, values: np.ndarray) -> np.ndarray:
        mu, sd = (np.array(a) for a in self.scaling["target"])
        return ((values - self.level) if self.scaling["transform"] == "diff" else values) / sd - mu / sd

    def update(self, time: Any, targets, *, known=None, past=None) -> None:
        """Feed the observation at ``time`` (the next step of the grid; None = the next step) of the targets (K,)
        and its known (Cu,) and past (Cp,) covariates."""
        for what, given in (("known", known), ("past", past)):
            names = self.scaling[f"{what}_names"]
            if len(np.atleast_1d(given if given is not None else [])) != len(names):
                raise ValueError(f"update: this model reads {what} covariates {names}: give {what}= with "
                                 f"{len(names)} values, got {given!r}")
        time = advance(self.time, self.freq, 1) if time is None else time
        values = np.asarray(targets, dtype=np.float64).reshape(self.K)
        user = np.asarray(known if known is not None else np.zeros(0), dtype=np.float64).reshape(1, -1)
        z = self._z(values)
        if self.config.mode == "direct":
            mu, sd = (np.array(a) for a in self.scaling["past"])
            pst = (np.asarray(past if past is not None else np.zeros(0), dtype=np.float64) - mu) / sd
            kn = self._known([time], user)[0]
            flag = [0.0] if len(kn) else []
            self._feed(np.concatenate([z, pst, kn, flag])[None])
        else:
            self._feed(np.concatenate([self.pending, self._known([time], user)[0]])[None])
            self.pending = z
        self.time, self.level, self.known_user = time, values, user[0]

    @torch.no_grad()
    def forecast(self, known_future: Optional[np.ndarray] = None) -> dict:
        """The next H steps: {"timestamps", "mean": {target: [...]}, "lower_80": {...}, "upper_80": {...}, ...}.
        ``known_future`` (H, Cu): the user's known covariates of those steps (required when the model has them)."""
        H = self.config.horizon
        times = [advance(self.time, self.freq, h) for h in range(1, H + 1)]
        Cu = len(self.scaling["known_names"])
        if Cu and known_future is None:
            raise ValueError(f"this model reads known covariates {self.scaling['known_names']}: give their values "
                             f"for the next {H} steps (known_future)")
        user = np.zeros((H, 0)) if not Cu else np.asarray(known_future, dtype=np.float64).reshape(H, Cu)
        kn = self._known(times, user)
        if self.config.mode == "direct":
            h = self.last_out
            if kn.shape[1]:
                fut = np.hstack([np.zeros((H, self.K + len(self.scaling["past_names"]))), kn, np.ones((H, 1))])
                out, _ = encode(self.model, torch.tensor(fut, dtype=torch.float32)[None], _copy_state(self.state))
                h = out[:, -1]
            zm, zv = head(self.model, h, self.gaussian, self.K)
            paths = None
        else:
            x = torch.tensor(np.concatenate([self.pending, kn[0]]), dtype=torch.float32)[None, None]
            zm, zv, paths = rollout(self.model, _copy_state(self.state), x,
                                    torch.tensor(kn[1:], dtype=torch.float32)[None], H, self.gaussian, self.K,
                                    self.config.samples, self.config.trainer.seed)
        last = self.level[None]
        mean = to_levels(zm.numpy().astype(np.float64), last, self.scaling)
        intervals = level_intervals(mean, None if zv is None else zv.numpy(),
                                    None if paths is None else paths.numpy().astype(np.float64), last, self.scaling,
                                    self.config.intervals)
        names = self.scaling["target_names"]

        def per_target(a: np.ndarray) -> dict:
            return {n: [round(float(v), 6) for v in a[0, :, k]] for k, n in enumerate(names)}

        out = {"timestamps": [time_text(t) for t in times], "mean": per_target(mean)}
        for level, (lo, hi) in intervals.items():
            out[f"lower_{round(100 * level)}"], out[f"upper_{round(100 * level)}"] = per_target(lo), per_target(hi)
        return out


def predict(bundle_path: Union[str, Path], inputs: Iterable[str], *, data: Optional[str] = None,
            plot: Optional[str] = None) -> Iterator[dict]:
    """Forecast past the end of each CSV (``data`` and the CSV paths among ``inputs``): one dict per file with
    the timestamps of the next H steps, the mean and the lower/upper bounds of each interval. The history is the
    file's last input_length rows (+1 with diff), read with the bundle's data options. A model with known
    covariates reads their future values from the file's trailing rows whose targets are empty (H or more)."""
    _, scaling, config = load_forecaster(bundle_path)
    files = ([data] if data else []) + [i.strip() for i in inputs if isinstance(i, str) and i.strip()]
    if not files:
        raise ValueError("give the series to forecast: --data FILE.csv (or CSV paths as inputs)")
    for file in files:
        series = load_series(config.data, file, future_rows=True)
        known_future = None
        if scaling["known_names"]:
            if len(series.future_known) < config.horizon:
                raise DataError(series.source, f"the model reads known covariates {scaling['known_names']}: end the "
                                               f"file with {config.horizon} rows of their future values and empty "
                                               f"targets (it has {len(series.future_known)})")
            known_future = series.future_known[:config.horizon]
        keep = config.input_length + (1 if config.target_transform == "diff" else 0)
        if len(series) < keep:
            plus = " (+1 with diff)" if keep > config.input_length else ""
            raise DataError(series.source, f"{len(series)} rows are too few for one window of --input_length "
                                           f"{config.input_length}{plus}")
        history = series.slice(len(series) - keep, len(series))
        result = Forecaster(bundle_path, history).forecast(known_future=known_future)
        if plot:
            _plot_prediction(series, result, Path(plot).expanduser())
        yield {"file": file, **result}


def _plot_prediction(series: Series, result: dict, path: Path) -> None:
    H = len(result["timestamps"])
    mean = np.array([result["mean"][n] for n in series.target_names]).T[None]  # (1, H, K)
    intervals = {}
    for key in result:
        if key.startswith("lower_"):
            lv = int(key[6:]) / 100
            lo = np.array([result[key][n] for n in series.target_names]).T[None]
            hi = np.array([result[f"upper_{key[6:]}"][n] for n in series.target_names]).T[None]
            intervals[lv] = (lo, hi)
    extended = dataclasses.replace(series, targets=np.vstack([series.targets, np.full((H, mean.shape[2]), np.nan)]),
                                   times=list(series.times) + [None] * H)
    plot_forecast(extended, {"points": [len(series) - 1], "mean": mean, "intervals": intervals}, path,
                  f"{series.source}: forecast of the next {H} steps")


__all__ = ["ForecastConfig", "SeriesDataConfig", "ForecastModelConfig", "EvaluateOptions", "PredictOptions",
           "Forecaster", "train", "evaluate", "predict"]

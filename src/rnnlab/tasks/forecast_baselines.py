"""Forecast metrics over test origins, and the baselines scored by the same code.

Every forecaster (the RNN and each baseline) produces, for each test origin o (the last observed step) and each
h = 1..H, a forecast of y[o + h] from y[..o] alone: arrays (O, H, K) for O origins and K targets.

Metrics (Hyndman and Koehler, 2006): MAE, RMSE and MASE, per horizon and overall (the mean over origins, horizons
and targets). MASE divides each target's MAE by the in-sample MAE of the seasonal naive forecast on the training
part, ``mean |y_t - y_{t-m}|`` (the M4 convention, m the season length); with m = 1 (no season) that is the
naive forecast's. Interval coverage: the share of actual values inside each central prediction interval.

Baselines:

- ``naive``: y[o] for every h.
- ``seasonal_naive``: y[o + h - m·ceil(h/m)], the value one season before (naive when m = 1).
- ``ets``: exponential smoothing as a state-space model (statsmodels'
  ``tsa.statespace.exponential_smoothing.ExponentialSmoothing``): damped additive trend, additive seasonality
  of period m when m > 1 and the training part holds at least 2 seasons.
- ``arima``: SARIMAX chosen by AIC over a bounded grid: p, q in 0..2, d = 1 when a KPSS test rejects level
  stationarity of the training part (else 0); when m > 1, seasonal (0, 1, 1)_m, then (1, 1, 1)_m tried for the
  best (p, d, q). That is at most 10 fits.

Both statsmodels models are fitted once, on the training part only; the results are then extended with the rest
of the series by ``results.append(rest, refit=False)`` (the fitted parameters kept, the state filtered through the
new observations), and the forecast from origin o is the dynamic prediction from o + 1, which uses y[..o] only.
"""
from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)

BASELINES = ("naive", "seasonal_naive", "ets", "arima")


def normal_quantile(level: float) -> float:
    """z such that a central interval mean ± z·sd holds ``level`` of a normal distribution."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def mase_scale(train: np.ndarray, m: int) -> tuple[np.ndarray, str]:
    """(K,) in-sample MAE of the seasonal naive forecast on the training part (naive when m = 1 or the part is
    shorter than 2 seasons), and which one."""
    if m > 1 and len(train) > 2 * m:
        scale, how = np.abs(train[m:] - train[:-m]).mean(axis=0), f"seasonal naive, m={m}"
    else:
        scale, how = np.abs(np.diff(train, axis=0)).mean(axis=0), "naive (m=1)"
    return np.where(scale > 0, scale, 1.0), how


def forecast_metrics(actual: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                     intervals: Optional[dict] = None) -> dict:
    """actual, mean (O, H, K); scale (K,); intervals {level: (lower, upper)} -> MAE, RMSE, MASE overall and per
    horizon (lists over h = 1..H), and the coverage of each interval."""
    err = mean - actual  # (O, H, K)
    out = {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err ** 2).mean())),
        "mase": float((np.abs(err).mean(axis=(0, 1)) / scale).mean()),
        "mae_per_horizon": np.abs(err).mean(axis=(0, 2)).round(6).tolist(),
        "rmse_per_horizon": np.sqrt((err ** 2).mean(axis=(0, 2))).round(6).tolist(),
        "mase_per_horizon": (np.abs(err).mean(axis=0) / scale).mean(axis=1).round(6).tolist(),
        "origins": int(actual.shape[0]),
    }
    for level, (lower, upper) in (intervals or {}).items():
        inside = (actual >= lower) & (actual <= upper)
        out[f"coverage_{round(100 * level)}"] = float(inside.mean())
    return out


def windows_of(y: np.ndarray, origins: Sequence[int], horizon: int) -> np.ndarray:
    """(O, H, K): y[o + 1 .. o + H] for each origin."""
    return np.stack([y[o + 1:o + 1 + horizon] for o in origins])


def naive(y: np.ndarray, origins: Sequence[int], horizon: int) -> np.ndarray:
    return np.stack([np.repeat(y[o][None], horizon, axis=0) for o in origins])  # (O, H, K)


def seasonal_naive(y: np.ndarray, origins: Sequence[int], horizon: int, m: int) -> np.ndarray:
    h = np.arange(1, horizon + 1)
    back = h - m * np.ceil(h / m).astype(int)  # in [1 - m, 0]
    return np.stack([y[o + back] for o in origins])  # (O, H, K)


def statsmodels_forecast(kind: str, y: np.ndarray, train_end: int, origins: Sequence[int], horizon: int, m: int,
                         levels: Sequence[float]) -> tuple[np.ndarray, dict, dict]:
    """(mean (O, H, K), {level: (lower, upper)}, description) of ETS or ARIMA, fitted on y[:train_end] per target
    and rolled over the origins without refitting (see the module docstring)."""
    means, bounds, about = [], {lv: ([], []) for lv in levels}, {}
    for k in range(y.shape[1]):
        fitted, desc = (_fit_ets if kind == "ets" else _fit_arima)(y[:train_end, k], m)
        about[k] = desc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            full = fitted.append(y[train_end:, k], refit=False)
            mk, lk = [], {lv: ([], []) for lv in levels}
            for o in origins:
                pred = full.get_prediction(start=o + 1, end=o + horizon, dynamic=True)
                mk.append(np.asarray(pred.predicted_mean))
                for lv in levels:
                    ci = np.asarray(pred.conf_int(alpha=1 - lv))
                    lk[lv][0].append(ci[:, 0])
                    lk[lv][1].append(ci[:, 1])
        means.append(np.stack(mk))
        for lv in levels:
            bounds[lv][0].append(np.stack(lk[lv][0]))
            bounds[lv][1].append(np.stack(lk[lv][1]))
    intervals = {lv: (np.stack(lo, -1), np.stack(hi, -1)) for lv, (lo, hi) in bounds.items()}
    return np.stack(means, -1), intervals, about


def _fit_ets(train: np.ndarray, m: int):
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    seasonal = m if m > 1 and len(train) >= 2 * m else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ExponentialSmoothing(train, trend=True, damped_trend=True, seasonal=seasonal).fit(disp=False)
    return res, f"ETS(A,Ad,{'A' if seasonal else 'N'}){f'_{seasonal}' if seasonal else ''}"


def _differences(train: np.ndarray) -> int:
    from statsmodels.tsa.stattools import kpss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return int(kpss(train, regression="c", nlags="auto")[1] < 0.05)


def _fit_arima(train: np.ndarray, m: int):
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    d = _differences(train)
    seasonal = m > 1 and len(train) >= 3 * m
    best, best_aic, best_order = None, math.inf, None

    def attempt(order, sorder):
        nonlocal best, best_aic, best_order
        trend = "c" if d == 0 and not seasonal else "n"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = SARIMAX(train, order=order, seasonal_order=sorder, trend=trend).fit(disp=False)
        except (np.linalg.LinAlgError, ValueError):
            return
        if np.isfinite(res.aic) and res.aic < best_aic:
            best, best_aic, best_order = res, res.aic, (order, sorder)

    s0 = (0, 1, 1, m) if seasonal else (0, 0, 0, 0)
    for p in range(3):
        for q in range(3):
            attempt((p, d, q), s0)
    if seasonal:
        attempt(best_order[0], (1, 1, 1, m))
    (order, sorder) = best_order
    text = f"ARIMA{order}" + (f"{sorder[:3]}_{m}" if seasonal else "")
    log.info("arima: %s chosen by AIC %.1f", text, best_aic)
    return best, text

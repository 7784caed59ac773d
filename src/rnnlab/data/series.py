"""Time series from CSV: a time column, target columns, covariates; the grid, gaps and missing values.

:func:`read_series` reads a CSV with a header row. The time column holds dates (anything pandas parses:
``1958-03-01``, ``2024-01-05 13:00``) or plain numbers (``1700``, ``1701``: a step index). The frequency is
inferred from the most common step: monthly (step 28-31 days), quarterly (89-92 days) and yearly (365-366 days)
are calendar steps; any other common step (an hour, a day, a week, 15 minutes, or a number) is a fixed step.

The rules (stated, not guessed):

- times must increase; a repeated or earlier time is an error naming its line;
- a time off the grid (e.g. 10:07 in an hourly series) is *irregular*: an error naming the line and the
  inferred step (resample the file to a regular grid first);
- a *gap* (steps with no row) and an empty or ``NA``/``nan`` cell are *missing values*, handled by ``missing``:
  ``error`` (an error naming the first one), ``ffill`` (carry the last value forward; leading missing values take
  the first real one) or ``interpolate`` (linear in time; the ends held at the nearest real value). The count of
  rows inserted and cells filled is reported in :attr:`Series.report`;
- any other cell that is not a number is an error naming its line and column.

The embedded series (:func:`embedded_csv`) come from ``statsmodels.datasets``: ``co2`` (Mauna Loa, weekly
1958-2001 resampled to monthly means; the 5 months without any reading are linearly interpolated), ``sunspots``
(yearly 1700-2008), ``elnino`` (monthly sea surface temperature 1950-2010) and ``nile`` (yearly flow 1871-1970).
"""
from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np

from .errors import DataError, read_text

Missing = Literal["error", "ffill", "interpolate"]
EMBEDDED_SERIES = ("co2", "sunspots", "elnino", "nile")
CALENDAR = ("month", "quarter", "weekofyear", "dayofweek", "dayofyear", "hour")
_NA = {"", "na", "nan", "null", "none", "n/a", "?"}


@dataclass(frozen=True)
class Frequency:
    """The grid of a series: ``kind`` month | quarter | year (calendar steps), fixed (a pandas Timedelta of
    ``seconds``) or number (a numeric step of ``step``)."""

    kind: Literal["month", "quarter", "year", "fixed", "number"]
    step: float = 1.0
    """number: the step; fixed: the step in seconds; calendar kinds: 1."""

    @property
    def season_length(self) -> int:
        """The usual season m: 12 months, 4 quarters, 52 weeks, 7 days, 24 hours; else 1 (no season)."""
        if self.kind == "month":
            return 12
        if self.kind == "quarter":
            return 4
        if self.kind == "fixed":
            return {7 * 86400.0: 52, 86400.0: 7, 3600.0: 24}.get(self.step, 1)
        return 1

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"every {_seconds_text(self.step)}"
        if self.kind == "number":
            return f"numeric step {self.step:g}"
        return {"month": "monthly", "quarter": "quarterly", "year": "yearly"}[self.kind]

    def to_json(self) -> dict:
        return {"kind": self.kind, "step": self.step}


def _seconds_text(s: float) -> str:
    for unit, n in (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if s % n == 0:
            return f"{int(s // n)} {unit}{'s' if s // n != 1 else ''}"
    return f"{s:g} seconds"


@dataclass(frozen=True)
class Series:
    """A regular series: times on one grid, targets (N, K), known and past covariates (N, C), no missing values."""

    source: str
    times: list
    """N times: ``pandas.Timestamp`` or floats (number kind)."""
    frequency: Frequency
    targets: np.ndarray
    target_names: list[str]
    known: np.ndarray
    """(N, Ck) covariate columns known in advance (user columns; calendar features are computed separately)."""
    known_names: list[str]
    past: np.ndarray
    """(N, Cp) covariates observed only up to the present."""
    past_names: list[str]
    report: dict = field(default_factory=dict)
    """What was repaired: rows inserted for gaps, cells filled, the rule."""
    future_known: Optional[np.ndarray] = None
    """With ``future_rows=True``: (F, Ck) known covariates of the trailing rows whose targets are all empty (the
    steps after the end, for forecasting); else None."""

    def __len__(self) -> int:
        return len(self.times)

    def slice(self, start: int, stop: int) -> Series:
        return Series(self.source, self.times[start:stop], self.frequency, self.targets[start:stop],
                      self.target_names, self.known[start:stop], self.known_names, self.past[start:stop],
                      self.past_names, self.report)


def split_names(text: Optional[str]) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c'] (empty or None -> [])."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def read_series(path: str, *, time_column: str = "time", targets: str = "", known_covariates: str = "",
                past_covariates: str = "", missing: Missing = "error", future_rows: bool = False) -> Series:
    """The series in CSV file ``path`` (see the module docstring for the rules and :func:`parse_series`)."""
    return parse_series(read_text(path, what="CSV file"), str(path), time_column=time_column, targets=targets,
                        known_covariates=known_covariates, past_covariates=past_covariates, missing=missing,
                        future_rows=future_rows)


def parse_series(text: str, source: str, *, time_column: str = "time", targets: str = "", known_covariates: str = "",
                 past_covariates: str = "", missing: Missing = "error", future_rows: bool = False) -> Series:
    """:func:`read_series` on the CSV ``text``; errors name ``source``. ``future_rows``: trailing rows whose
    targets are all empty are the future steps: their known covariates go to :attr:`Series.future_known`."""
    if missing not in ("error", "ffill", "interpolate"):
        raise ValueError(f"--data.missing must be error, ffill or interpolate, got {missing!r}")
    rows = [r for r in csv.reader(io.StringIO(text))]
    lines = [i + 1 for i, r in enumerate(rows) if any(c.strip() for c in r)]
    rows = [rows[i - 1] for i in lines]
    if not rows:
        raise DataError(source, "the CSV file is empty")
    header = [h.strip() for h in rows[0]]
    column = {name: i for i, name in enumerate(header)}
    known, past = split_names(known_covariates), split_names(past_covariates)

    def index_of(name: str, what: str) -> int:
        if name not in column:
            raise DataError(source, f"no {what} column {name!r} (the columns are: {', '.join(header)})", line=lines[0])
        return column[name]

    t_col = index_of(time_column, "time")
    target_names = split_names(targets) or [h for h in header if h not in {time_column, *known, *past}]
    for name in target_names:
        index_of(name, "target")
    for name in known + past:
        index_of(name, "covariate")
    if not target_names:
        raise DataError(source, f"no target column: the header has only {', '.join(header)}", line=lines[0])
    body, body_lines = rows[1:], lines[1:]
    for row, line in zip(body, body_lines):
        if len(row) != len(header):
            raise DataError(source, f"{len(row)} cells where the header has {len(header)}", line=line)
    future = None
    if future_rows:
        empty = [all(row[column[n]].strip().lower() in _NA for n in target_names) for row in body]
        f = next((i for i, e in enumerate(reversed(empty)) if not e), len(empty))  # trailing rows without targets
        future = _numbers(body[len(body) - f:], body_lines[len(body) - f:], [column[n] for n in known], known, source)
        if np.isnan(future).any():
            i = int(np.argwhere(np.isnan(future))[0][0])
            raise DataError(source, "a future row (targets empty) needs every known covariate", line=body_lines[-f + i])
        body, body_lines = body[:len(body) - f], body_lines[:len(body) - f]
    times, freq, positions = _parse_times([r[t_col].strip() for r in body], body_lines, source, time_column)
    names = target_names + known + past
    values = _numbers(body, body_lines, [column[n] for n in names], names, source)  # (N, C)
    values, times, report = _regularise(values, times, positions, freq, body_lines, names, source, missing)
    K, Ck = len(target_names), len(known)
    return Series(source, times, freq, values[:, :K], target_names, values[:, K:K + Ck], known, values[:, K + Ck:],
                  past, report, future)


def _numbers(rows, lines, cols: list[int], names: list[str], source: str) -> np.ndarray:
    out = np.empty((len(rows), len(cols)), dtype=np.float64)
    for i, (row, line) in enumerate(zip(rows, lines)):
        for j, c in enumerate(cols):
            cell = row[c].strip()
            if cell.lower() in _NA:
                out[i, j] = np.nan
                continue
            try:
                out[i, j] = float(cell)
            except ValueError:
                raise DataError(source, f"row {line}, column {names[j]!r}: {cell!r} is not a number",
                                line=line) from None
            if not math.isfinite(out[i, j]):
                raise DataError(source, f"row {line}, column {names[j]!r}: {cell!r} is not a finite number", line=line)
    return out


def _parse_times(cells: list[str], lines: list[int], source: str, name: str):
    """(times, frequency, grid positions (N,) float) of the time column."""
    if not cells:
        raise DataError(source, "the CSV file has a header but no rows")
    try:
        numbers = [float(c) for c in cells]
    except ValueError:
        numbers = None
    if numbers is not None:
        t = np.array(numbers)
        _check_increasing(t, lines, cells, source)
        step = _mode(np.diff(t)) if len(t) > 1 else 1.0
        return [float(x) for x in t], Frequency("number", step), (t - t[0]) / step
    import pandas as pd

    stamps = []
    for cell, line in zip(cells, lines):
        try:
            stamp = pd.Timestamp(cell)
        except (ValueError, TypeError, OverflowError):
            stamp = None
        if stamp is None or pd.isna(stamp):
            raise DataError(source, f"time column {name!r}: {cell!r} is not a date or time (e.g. 2024-01-31 or "
                                    "2024-01-31 13:00) nor a number", line=line)
        stamps.append(stamp.tz_localize(None) if stamp.tzinfo else stamp)
    seconds = np.array([s.value / 1e9 for s in stamps])
    _check_increasing(seconds, lines, cells, source)
    step = _mode(np.diff(seconds)) if len(seconds) > 1 else 86400.0
    days = step / 86400
    if 28 <= days <= 31:
        freq, pos = Frequency("month"), np.array([s.year * 12 + s.month - 1 for s in stamps], dtype=float)
    elif 89 <= days <= 92:
        freq, pos = Frequency("quarter"), np.array([s.year * 4 + (s.month - 1) // 3 for s in stamps], dtype=float)
    elif 365 <= days <= 366:
        freq, pos = Frequency("year"), np.array([s.year for s in stamps], dtype=float)
    else:
        freq, pos = Frequency("fixed", float(step)), seconds / step
    return stamps, freq, pos - pos[0]


def _check_increasing(t: np.ndarray, lines, cells, source: str) -> None:
    bad = np.nonzero(np.diff(t) <= 0)[0]
    if len(bad):
        i = int(bad[0]) + 1
        raise DataError(source, f"time {cells[i]!r} does not come after {cells[i - 1]!r} (line {lines[i - 1]}): "
                                "times must increase; sort the file and remove repeated times", line=lines[i])


def _mode(d: np.ndarray) -> float:
    return float(Counter(np.round(d, 6).tolist()).most_common(1)[0][0])


def _regularise(values, times, positions, freq, lines, names, source, missing: Missing):
    """Put rows on the grid: insert missing rows for gaps, fill missing cells by the rule, report."""
    off = np.nonzero(np.abs(positions - np.round(positions)) > 1e-6)[0]
    if len(off):
        i = int(off[0])
        raise DataError(source, f"irregular time steps: {times[i]} is off the {freq.describe()} grid started at "
                                f"{times[0]} ({len(off)} such rows); resample the file to a regular grid",
                        line=lines[i])
    pos = np.round(positions).astype(np.int64)
    gaps = np.nonzero(np.diff(pos) > 1)[0]
    nan = np.isnan(values)
    if missing == "error":
        if len(gaps):
            i = int(gaps[0])
            raise DataError(source, f"a gap of {int(pos[i + 1] - pos[i] - 1)} missing {freq.describe()} step(s) "
                                    f"between {times[i]} and {times[i + 1]} ({len(gaps)} gaps in all); set "
                                    "--data.missing ffill or interpolate to fill them", line=lines[i + 1])
        if nan.any():
            i, j = map(int, np.argwhere(nan)[0])
            raise DataError(source, f"row {lines[i]}, column {names[j]!r}: missing value ({int(nan.sum())} in all); "
                                    "set --data.missing ffill or interpolate to fill them", line=lines[i])
    n = int(pos[-1]) + 1
    full = np.full((n, values.shape[1]), np.nan)
    full[pos] = values
    all_times = _grid_times(times, pos, freq) if n != len(times) else list(times)
    filled = int(np.isnan(full).sum())
    for j in range(full.shape[1]):
        col = full[:, j]
        real = np.nonzero(~np.isnan(col))[0]
        if len(real) == 0:
            raise DataError(source, f"column {names[j]!r} has no values at all")
        if missing == "ffill":
            idx = np.maximum.accumulate(np.where(np.isnan(col), 0, np.arange(n)))
            idx = np.where(np.isnan(col[idx]), real[0], idx)
            full[:, j] = col[idx]
        else:
            full[:, j] = np.interp(np.arange(n), real, col[real])
    report = {"missing": missing, "rows_inserted": n - len(times), "cells_filled": filled,
              "frequency": freq.describe()}
    return full, all_times, report


def _grid_times(times, pos, freq: Frequency) -> list:
    first = times[0]
    return [advance(first, freq, int(k)) for k in range(int(pos[-1]) + 1)]


def advance(time, freq: Frequency, k: int):
    """The time ``k`` steps after ``time`` on the grid of ``freq``."""
    if freq.kind == "number":
        return float(time) + k * freq.step
    import pandas as pd

    if freq.kind == "month":
        return time + pd.DateOffset(months=k)
    if freq.kind == "quarter":
        return time + pd.DateOffset(months=3 * k)
    if freq.kind == "year":
        return time + pd.DateOffset(years=k)
    return time + pd.Timedelta(seconds=freq.step * k)


def time_text(time) -> str:
    """A time as JSON shows it: ISO 8601 (date only at midnight) or the number."""
    if isinstance(time, float):
        return f"{time:g}"
    return time.isoformat() if (time.hour or time.minute or time.second) else time.date().isoformat()


# --- calendar features: known in advance ----------------------------------------------------------------------

def calendar_names(spec: str, freq: Frequency) -> list[str]:
    """The calendar features that ``spec`` names: none, auto (by the frequency) or a comma list of CALENDAR."""
    if spec == "none" or freq.kind == "number":
        if spec not in ("none", "auto"):
            raise ValueError(f"--data.calendar {spec!r} needs a time column of dates, the series has numbers")
        return []
    if spec == "auto":
        if freq.kind == "month":
            return ["month"]
        if freq.kind == "quarter":
            return ["quarter"]
        if freq.kind == "fixed" and freq.step == 7 * 86400:
            return ["weekofyear"]
        if freq.kind == "fixed" and freq.step == 86400:
            return ["dayofweek", "dayofyear"]
        if freq.kind == "fixed" and freq.step < 86400:
            return ["hour", "dayofweek"]
        return []
    names = split_names(spec)
    for name in names:
        if name not in CALENDAR:
            raise ValueError(f"--data.calendar: unknown feature {name!r}; choose none, auto or a comma list of "
                             f"{', '.join(CALENDAR)}")
    return names


_PERIOD = {"month": 12, "quarter": 4, "weekofyear": 52.18, "dayofweek": 7, "dayofyear": 365.25, "hour": 24}


def calendar_features(times: Sequence, names: Sequence[str]) -> np.ndarray:
    """(N, 2·len(names)): sin and cos of each feature's phase (month 1..12 -> angle), so December meets January."""
    out = np.zeros((len(times), 2 * len(names)))
    for j, name in enumerate(names):
        if name == "weekofyear":
            v = np.array([t.isocalendar()[1] for t in times], dtype=float)
        else:
            v = np.array([getattr(t, name) for t in times], dtype=float)
        angle = 2 * np.pi * v / _PERIOD[name]
        out[:, 2 * j], out[:, 2 * j + 1] = np.sin(angle), np.cos(angle)
    return out


# --- the embedded series ----------------------------------------------------------------------------------------

def embedded_csv(name: str) -> str:
    """The CSV text (time + one column) of an embedded statsmodels series: co2, sunspots, elnino, nile."""
    try:
        import statsmodels.api as sm
    except ImportError:
        raise ImportError("the embedded series come from statsmodels: pip install statsmodels") from None
    if name == "co2":
        weekly = sm.datasets.co2.load_pandas().data["co2"]
        monthly = weekly.resample("MS").mean().interpolate("linear")
        rows = [(t.date().isoformat(), v) for t, v in monthly.items()]
        column = "co2"
    elif name == "sunspots":
        d = sm.datasets.sunspots.load_pandas().data
        rows, column = [(int(y), v) for y, v in zip(d["YEAR"], d["SUNACTIVITY"])], "sunactivity"
    elif name == "nile":
        d = sm.datasets.nile.load_pandas().data
        rows, column = [(int(y), v) for y, v in zip(d["year"], d["volume"])], "volume"
    elif name == "elnino":
        d = sm.datasets.elnino.load_pandas().data
        months = list(d.columns[1:])
        rows = [(f"{int(y)}-{m + 1:02d}-01", v) for y, vals in zip(d["YEAR"], d[months].to_numpy())
                for m, v in enumerate(vals)]
        column = "temperature"
    else:
        raise ValueError(f"unknown embedded series {name!r}; choose one of {', '.join(EMBEDDED_SERIES)}")
    return f"time,{column}\n" + "".join(f"{t},{float(v):.6g}\n" for t, v in rows)

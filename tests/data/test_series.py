"""The series reader: grid and frequency, gaps and missing cells by the stated rule, calendar features, and a
DataError naming the file, line and problem for each kind of bad input."""
import numpy as np
import pandas as pd
import pytest

from rnnlab.data.errors import DataError
from rnnlab.data.series import (
    advance,
    calendar_features,
    calendar_names,
    embedded_csv,
    parse_series,
    read_series,
    time_text,
)


def monthly(n=30, start="2000-01-01", drop=(), blank=()):
    times = pd.date_range(start, periods=n, freq="MS")
    rows = ["time,sales,price,temp"]
    for i, t in enumerate(times):
        if i in drop:
            continue
        sales = "" if i in blank else f"{i * 2.0}"
        rows.append(f"{t.date()},{sales},{i % 3},{10 + i}")
    return "\n".join(rows) + "\n"


def test_monthly_dates_targets_and_covariates():
    s = parse_series(monthly(), "m.csv", targets="sales", known_covariates="price", past_covariates="temp")
    assert s.frequency.kind == "month" and s.frequency.season_length == 12
    assert s.target_names == ["sales"] and s.known_names == ["price"] and s.past_names == ["temp"]
    assert s.targets.shape == (30, 1) and s.targets[3, 0] == 6.0 and s.past[2, 0] == 12
    assert time_text(s.times[1]) == "2000-02-01" and time_text(advance(s.times[-1], s.frequency, 2)) == "2002-08-01"


def test_default_targets_are_the_other_columns_and_numeric_times():
    s = parse_series("year,a,b\n1700,1,2\n1701,3,4\n1702,5,6\n", "y.csv", time_column="year")
    assert s.target_names == ["a", "b"] and s.frequency.kind == "number" and s.frequency.season_length == 1
    assert time_text(advance(s.times[-1], s.frequency, 1)) == "1703"


@pytest.mark.parametrize("freq,step,m", [("D", 86400, 7), ("h", 3600, 24), ("W-SUN", 7 * 86400, 52)])
def test_fixed_frequencies_give_their_season(freq, step, m):
    times = pd.date_range("2021-01-03", periods=10, freq=freq)
    s = parse_series("time,y\n" + "".join(f"{t},{i}\n" for i, t in enumerate(times)), "f.csv")
    assert s.frequency.kind == "fixed" and s.frequency.step == step and s.frequency.season_length == m


def test_gaps_fill_by_the_rule_like_pandas():
    text = monthly(drop=(5, 6), blank=(10,))
    ref = pd.Series([i * 2.0 if i not in (5, 6, 10) else np.nan for i in range(30)])
    s = parse_series(text, "g.csv", targets="sales", missing="interpolate")
    np.testing.assert_allclose(s.targets[:, 0], ref.interpolate().to_numpy())
    assert s.report["rows_inserted"] == 2 and s.report["cells_filled"] == 3
    assert time_text(s.times[5]) == "2000-06-01"
    s = parse_series(text, "g.csv", targets="sales", missing="ffill")
    np.testing.assert_allclose(s.targets[:, 0], ref.ffill().to_numpy())


def test_leading_missing_values_take_the_first_real_one():
    s = parse_series("t,y\n1,\n2,\n3,5\n4,6\n", "l.csv", time_column="t", missing="ffill")
    assert s.targets[:, 0].tolist() == [5, 5, 5, 6]


@pytest.mark.parametrize("text,options,expected", [
    (monthly(drop=(5,)), {}, "g.csv:7: a gap of 1 missing monthly step(s) between 2000-05-01"),
    (monthly(blank=(4,)), {}, "g.csv:6: row 6, column 'sales': missing value"),
    (monthly().replace("2000-03-01,4.0", "2000-03-01,abc"), {}, "g.csv:4: row 4, column 'sales': 'abc' is not a number"),
    (monthly(), {"targets": "revenue"}, "g.csv:1: no target column 'revenue' (the columns are: time, sales, price, temp)"),
    (monthly().replace("2000-04-01", "April the first"), {}, "g.csv:5: time column 'time': 'April the first' is not"),
    (monthly().replace("2000-04-01", "2000-02-01"), {}, "g.csv:5: time '2000-02-01' does not come after"),
    ("t,y\n0,1\n1,1\n2,1\n2.5,1\n3,1\n", {"time_column": "t"}, "g.csv:5: irregular time steps: 2.5 is off"),
    ("t,y\n0,1\n1,1,7\n", {"time_column": "t"}, "g.csv:3: 3 cells where the header has 2"),
])
def test_bad_input_names_file_line_and_problem(text, options, expected):
    with pytest.raises(DataError) as e:
        parse_series(text, "g.csv", **options)
    assert str(e.value).startswith(expected), str(e.value)
    assert "\n" not in str(e.value)


def test_read_series_from_a_file(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(monthly(), encoding="utf-8")
    assert read_series(str(path), targets="sales").targets.shape == (30, 1)
    with pytest.raises(FileNotFoundError):
        read_series(str(tmp_path / "nope.csv"))


def test_calendar_features_are_sin_cos_of_the_phase():
    times = list(pd.date_range("2000-01-01", periods=12, freq="MS"))
    f = calendar_features(times, ["month"])
    np.testing.assert_allclose(f[:, 0], np.sin(2 * np.pi * np.arange(1, 13) / 12), atol=1e-12)
    np.testing.assert_allclose(f[:, 1], np.cos(2 * np.pi * np.arange(1, 13) / 12), atol=1e-12)
    s = parse_series(monthly(), "m.csv")
    assert calendar_names("auto", s.frequency) == ["month"] and calendar_names("none", s.frequency) == []
    with pytest.raises(ValueError, match="unknown feature 'moon'"):
        calendar_names("month,moon", s.frequency)


@pytest.mark.slow  # imports statsmodels
def test_embedded_co2_is_monthly_means_without_gaps():
    s = parse_series(embedded_csv("co2"), "co2")
    assert len(s) == 526 and s.frequency.kind == "month" and s.report["cells_filled"] == 0
    assert time_text(s.times[0]) == "1958-03-01" and time_text(s.times[-1]) == "2001-12-01"
    assert 310 < s.targets.min() and s.targets.max() < 375

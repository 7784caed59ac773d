"""The UEA/UCR .ts reader on small hand-written files that follow the archive's specification (sktime's ts
format v1.0): univariate and multivariate, equal and variable lengths, missing values, timestamps, and the
errors that name the line."""
import numpy as np
import pytest

from rnnlab.data.errors import DataError
from rnnlab.data.ts_format import read_ts

UNIVARIATE = """# Two toy series.
#   one more comment line
@problemName Toy
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 4
@classLabel true 1 2
@data
1.0,2.0,3.0,4.0:1
-1,0.5,1e-1,2:2
"""

MULTIVARIATE = """@problemName Walk
@timestamps false
@missing true
@univariate false
@dimensions 2
@equallength false
@classlabel true up down
@data
1,2,3:4,?,6:up

7,8:9,10:down
0.5,?:1:down
"""

TIMESTAMPED = """@problemName Stamps
@timeStamps true
@univariate true
@classLabel true a b
@data
(2004-08-10 18:00:00,1130.0),(2004-08-10 19:00:00,1217.75):a
(2004-08-10 18:00:00,5),(2004-08-10 19:00:00,?),(2004-08-10 20:00:00,7):b
"""


def write(tmp_path, text, name="x.ts"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_univariate_equal_length(tmp_path):
    ts = read_ts(write(tmp_path, UNIVARIATE))
    assert ts.problem_name == "Toy" and ts.class_labels == ["1", "2"] and ts.dimensions == 1
    assert ts.labels == ["1", "2"] and ts.lines == [11, 12]
    np.testing.assert_array_equal(ts.series[0], [[1], [2], [3], [4]])
    np.testing.assert_allclose(ts.series[1][:, 0], [-1, 0.5, 0.1, 2])


def test_multivariate_variable_length_missing_values_and_lower_case_identifiers(tmp_path):
    ts = read_ts(write(tmp_path, MULTIVARIATE))
    assert ts.dimensions == 2 and ts.labels == ["up", "down", "down"]
    np.testing.assert_array_equal(ts.series[0], [[1, 4], [2, np.nan], [3, 6]])  # '?' is NaN
    np.testing.assert_array_equal(ts.series[1], [[7, 9], [8, 10]])
    # a dimension shorter than its instance's longest is padded with NaN (missing) at the end
    np.testing.assert_array_equal(ts.series[2], [[0.5, 1], [np.nan, np.nan]])


def test_timestamps_are_dropped_and_values_kept_in_order(tmp_path):
    ts = read_ts(write(tmp_path, TIMESTAMPED))
    np.testing.assert_array_equal(ts.series[0][:, 0], [1130.0, 1217.75])
    np.testing.assert_array_equal(ts.series[1][:, 0], [5, np.nan, 7])


def test_unlabelled_file_reads_for_prediction_only(tmp_path):
    path = write(tmp_path, "@problemName P\n@univariate true\n@classLabel false\n@data\n1,2,3\n4,5\n")
    ts = read_ts(path, labels=False)
    assert ts.labels == ["", ""] and [len(s) for s in ts.series] == [3, 2]
    with pytest.raises(DataError, match=r"x.ts:3: @classLabel false"):
        read_ts(path)


@pytest.mark.parametrize("text, message", [
    (UNIVARIATE.replace("3.0,4.0:1", "3.0,abc:1"), r"x.ts:11: dimension 1, value 4: 'abc' is not a number"),
    (UNIVARIATE.replace("2:2\n", "2:3\n"), r"x.ts:12: class label '3' is not among those @classLabel declares"),
    (UNIVARIATE.replace("-1,0.5,1e-1,2:2", "-1,0.5:2"), r"x.ts:12: 2 values, but @seriesLength says 4"),
    (UNIVARIATE.replace("@data\n", ""), r"x.ts:10: expected a @identifier .* \(is the @data line missing\?\)"),
    ("@problemName X\n@classLabel true a\n", r"x.ts: no @data line"),
    (UNIVARIATE.replace("@univariate true", "@univariate maybe"), r"x.ts:6: @univariate must be true or false"),
    (MULTIVARIATE.replace("7,8:9,10:down", "7,8:down"), r"x.ts:11: 1 dimensions, expected 2"),
    (MULTIVARIATE.replace("@dimensions 2", "@dimensions two"), r"x.ts:5: @dimensions must be a positive integer"),
    (UNIVARIATE.replace("@classLabel true 1 2\n", ""), r"x.ts: no @classLabel line"),
    (UNIVARIATE.replace("1.0,2.0,3.0,4.0:1", "1.0 2.0"), r"x.ts:11: an instance is DIMENSION:...:LABEL"),
    ("@problemName X\n@classLabel true a\n@data\n", r"x.ts: no instances after @data"),
    ("@problemName X\n@targetLabel true\n@data\n1,2:0.5\n", r"x.ts:2: @targetLabel true: a regression file"),
    ("1,2,3:a\n", r"x.ts:1: expected a @identifier or comment before @data"),
])
def test_malformed_files_name_the_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_ts(write(tmp_path, text))

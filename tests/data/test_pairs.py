"""Sentence-pair files and the embedded dates task."""
import datetime

import pytest

from rnnlab.data.dates import STYLES, date_pairs, ordinal_suffix, ordinal_words, year_words
from rnnlab.data.errors import DataError
from rnnlab.data.pairs import Pair, read_pairs


def write(tmp_path, text, name="pairs.tsv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_reads_pairs_with_line_numbers_skipping_blank_lines_and_extra_columns(tmp_path):
    path = write(tmp_path, "Go.\tGeh.\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\n\n Hi. \tHallo!\r\n")
    assert read_pairs(path) == [Pair("Go.", "Geh.", 1), Pair("Hi.", "Hallo!", 3)]
    assert read_pairs(path, reverse=True) == [Pair("Geh.", "Go.", 1), Pair("Hallo!", "Hi.", 3)]
    assert read_pairs(path, source_column=1, target_column=0)[0] == Pair("Geh.", "Go.", 1)


def test_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path, "a\tb\n")
    assert read_pairs("~/pairs.tsv") == [Pair("a", "b", 1)]


@pytest.mark.parametrize("text, message", [
    ("", "pairs.tsv: the pairs file is empty"),
    ("\n  \n", "pairs.tsv: the pairs file is empty"),
    ("a\tb\nonly a source\n", r"pairs.tsv:2: 1 tab-separated column\(s\), expected at least 2"),
    ("a\tb\nc\t \n", r"pairs.tsv:2: the target \(column 1\) is empty"),
    ("\tb\n", r"pairs.tsv:1: the source \(column 0\) is empty"),
    (b"a\tb\nc\t\xe4\n", r"pairs.tsv:2: not UTF-8 text \(byte 0xe4"),
])
def test_bad_files_name_the_file_line_and_problem(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_pairs(write(tmp_path, text))


def test_bad_columns_name_the_option(tmp_path):
    path = write(tmp_path, "a\tb\n")
    with pytest.raises(ValueError, match="--source_column and --target_column are both 1"):
        read_pairs(path, source_column=1, target_column=1)
    with pytest.raises(ValueError, match="--target_column must be a column index >= 0"):
        read_pairs(path, target_column=-1)
    with pytest.raises(FileNotFoundError, match="pairs file not found"):
        read_pairs(tmp_path / "missing.tsv")


def test_numbers_in_words():
    assert [ordinal_words(n) for n in (1, 2, 3, 12, 20, 21, 23, 30, 31)] == [
        "first", "second", "third", "twelfth", "twentieth", "twenty-first", "twenty-third", "thirtieth",
        "thirty-first"]
    assert [ordinal_suffix(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd"]
    assert [year_words(y) for y in (1990, 1905, 1900, 2000, 2007, 2016)] == [
        "nineteen ninety", "nineteen oh five", "nineteen hundred", "two thousand", "two thousand seven",
        "twenty sixteen"]


def test_every_style_spells_the_date():
    day = datetime.date(1990, 3, 23)
    assert {name: style(day) for name, style in STYLES.items()} == {
        "the-ordinal-of-month-words": "the twenty-third of March, nineteen ninety",
        "month-ordinal-words": "march twenty-third, nineteen ninety",
        "month-suffix": "March 23rd 1990",
        "day-month-year": "23 March 1990",
        "abbreviated": "Mar 23, 1990",
        "slashes": "23/03/1990",
        "dots": "23.3.1990",
    }


def test_date_pairs_are_seeded_and_the_test_dates_are_never_trained_on():
    train = date_pairs(3000, "train", seed=0)
    assert train == date_pairs(3000, "train", seed=0) and train != date_pairs(3000, "train", seed=1)
    test = date_pairs(500, "test", seed=0)
    assert not {t for _, t in train} & {t for _, t in test}
    for source, target in train[:50]:
        assert datetime.date.fromisoformat(target) and source
    with pytest.raises(ValueError, match="split must be one of"):
        date_pairs(3, "dev")


def test_pairs_with_an_empty_side_can_be_skipped(tmp_path, caplog):
    f = tmp_path / "p.tsv"
    f.write_text("Haus\thouse\n\tempty source\nBaum\t\nKatze\tcat\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p.tsv:2: the source \(column 0\) is empty.*--empty_pairs skip"):
        read_pairs(f)
    pairs = read_pairs(f, empty="skip")
    assert [(p.source, p.target, p.line) for p in pairs] == [("Haus", "house", 1), ("Katze", "cat", 4)]
    assert "skipped 2 pair(s) with an empty side (lines 2, 3)" in caplog.text

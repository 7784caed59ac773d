"""Labelled-text readers: CSV (quotes, embedded newlines), TSV, JSONL, label folders, the embedded set, and
every kind of bad input named by file and line."""
from collections import Counter

import pytest

from rnnlab.data.errors import DataError
from rnnlab.data.labelled import CHAPTERS, pydoc_chapters, read_labelled


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_csv_with_quotes_commas_and_newlines_keeps_the_starting_line(tmp_path):
    f = write(tmp_path / "d.csv", 'id,text,label\n1,"good, very ""good""",pos\n2,"two\nlines",neg\n\n3,plain,pos\n')
    examples = read_labelled(f)
    assert [(e.text, e.label, e.line) for e in examples] == [
        ('good, very "good"', "pos", 2), ("two\nlines", "neg", 3), ("plain", "pos", 6)]
    assert examples[0].where == f"{f}:2"


def test_tsv_jsonl_and_configurable_columns(tmp_path):
    tsv = write(tmp_path / "d.tsv", "review\tstars\nfine film\t5\nbad\t1\n")
    assert [(e.text, e.label) for e in read_labelled(tsv, text_column="review", label_column="stars")] == [
        ("fine film", "5"), ("bad", "1")]
    jl = write(tmp_path / "d.jsonl", '{"t": "a b", "y": 1}\n\n{"t": "c", "y": "x"}\n')
    examples = read_labelled(jl, text_column="t", label_column="y")
    assert [(e.text, e.label, e.line) for e in examples] == [("a b", "1", 1), ("c", "x", 3)]
    other = write(tmp_path / "d.txt", "text,label\na,b\n")
    assert len(read_labelled(other, format="csv")) == 1


def test_aclimdb_folder_layout(tmp_path):
    for label, texts in {"pos": ["great<br />film", "loved it"], "neg": ["dull"], "unsup": ["no label"]}.items():
        (tmp_path / label).mkdir()
        for i, text in enumerate(texts):
            write(tmp_path / label / f"{i}_7.txt", text)
    examples = read_labelled(tmp_path)
    assert Counter(e.label for e in examples) == {"pos": 2, "neg": 1}  # unsup is skipped
    assert examples[0].source.endswith("0_7.txt") and examples[0].line is None


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", "the data file is empty"),
    ("blank.csv", "\n\n  \n", "the data file is empty"),
    ("cols.csv", "review,stars\na,1\n", r"cols.csv:1: no column 'text' \(columns found: review, stars\); set --text_column"),
    ("nolabel.csv", "text,stars\na,1\n", r"no column 'label' \(columns found: text, stars\); set --label_column"),
    ("emptylabel.csv", "text,label\na,x\nb,\n", r"emptylabel.csv:3: empty label \(set --empty_rows skip"),
    ("emptytext.csv", "text,label\n  ,x\n", r"emptytext.csv:2: empty text"),
    ("fields.csv", "text,label\na,b,c\n", "fields.csv:2: 3 fields where the header has 2"),
    ("quote.csv", 'text,label\n"never closed,x\n', "quote.csv:.*malformed CSV"),
    ("bad.jsonl", '{"text": "a", "label": "b"}\n{"text": \n', "bad.jsonl:2: not a JSON object"),
    ("field.jsonl", '{"body": "a", "label": "b"}\n', r"field.jsonl:1: no field 'text' \(fields found: body, label\)"),
    ("list.jsonl", '["a", "b"]\n', "list.jsonl:1: expected a JSON object per line, got list"),
    ("notes.txt", "text,label\na,b\n", "cannot tell the format from the suffix '.txt'"),
])
def test_bad_files_name_the_file_line_and_problem(tmp_path, name, content, message):
    with pytest.raises(DataError, match=message):
        read_labelled(write(tmp_path / name, content))


def test_non_utf8_bytes_name_the_line(tmp_path):
    f = write(tmp_path / "latin.csv", "text,label\nok,a\ncaf\xe9,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv:3: not UTF-8 text \(byte 0xe9"):
        read_labelled(f)


def test_empty_rows_can_be_skipped_with_a_warning(tmp_path, caplog):
    f = write(tmp_path / "d.csv", "text,label\na,x\n,y\nb,\nc,z\n")
    examples = read_labelled(f, empty="skip")
    assert [e.text for e in examples] == ["a", "c"]
    assert "skipped 2 rows" in caplog.text and f"{f}:3" in caplog.text
    with pytest.raises(DataError, match="no examples"):
        read_labelled(write(tmp_path / "e.csv", "text,label\n,y\n"), empty="skip")


def test_missing_paths_and_bad_options(tmp_path):
    with pytest.raises(FileNotFoundError, match="data not found"):
        read_labelled(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="--format must be one of"):
        read_labelled(tmp_path, format="xml")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match="no label folders"):
        read_labelled(tmp_path)


def test_embedded_set_is_labelled_by_chapter_deduplicated_and_split_stably():
    train, test = pydoc_chapters()
    assert 1000 < len(train) and 150 < len(test) < 400
    assert {e.label for e in train} == set(CHAPTERS) == {e.label for e in test}
    texts = [e.text for e in train + test]
    assert len(texts) == len(set(texts))  # no paragraph in two splits or twice
    assert pydoc_chapters() == (train, test)


def test_a_csv_without_header_by_column_indices_joins_text_columns(tmp_path):
    """AG News's layout: class index, title, description; no header row."""
    f = tmp_path / "train.csv"
    f.write_text('"3","Wall St. Bears","Short-sellers are back."\n"4","New Chip","Faster, cooler."\n', encoding="utf-8")
    rows = read_labelled(f, text_column="1,2", label_column="0")
    assert [(r.text, r.label, r.line) for r in rows] == [
        ("Wall St. Bears Short-sellers are back.", "3", 1), ("New Chip Faster, cooler.", "4", 2)]
    with pytest.raises(DataError, match=r"train.csv:1: 3 fields, but the columns asked for reach index 5"):
        read_labelled(f, text_column="5", label_column="0")


def test_several_named_text_columns(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("title,body,label\nHi,there,pos\n", encoding="utf-8")
    assert read_labelled(f, text_column="title,body")[0].text == "Hi there"
    with pytest.raises(DataError, match="no column 'summary'"):
        read_labelled(f, text_column="title,summary")

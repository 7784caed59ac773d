"""DataError and the UTF-8 reader."""
import pytest

from rnnlab.data.errors import DataError, read_text


def test_data_error_names_file_and_line():
    e = DataError("a.csv", "bad label", line=3)
    assert str(e) == "a.csv:3: bad label" and isinstance(e, ValueError)
    assert str(DataError("a.csv", "empty")) == "a.csv: empty"


def test_read_text_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="folder"):
        read_text(tmp_path)
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("ok\nok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt:3: not UTF-8"):
        read_text(tmp_path / "latin1.txt")
    (tmp_path / "bom.txt").write_bytes("\ufeffhello".encode("utf-8"))
    assert read_text(tmp_path / "bom.txt") == "hello"

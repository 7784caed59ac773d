"""Data fingerprints: the same bytes give the same fingerprint, any change is named."""
import pytest

from rnnlab.data.errors import DataError
from rnnlab.data.fingerprint import describe_change, fingerprint_path, fingerprint_text


def test_a_file_is_fingerprinted_by_resolved_path_size_and_sha256(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_bytes(b"abc")
    monkeypatch.chdir(tmp_path)
    fp = fingerprint_path("a.txt")
    assert fp == {"path": str((tmp_path / "a.txt").resolve()), "size": 3,
                  "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
    assert describe_change(fp, fingerprint_path(tmp_path / "a.txt")) is None


def test_a_changed_file_is_named_with_both_sizes(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("abc")
    before = fingerprint_path(f)
    f.write_text("abd!")
    change = describe_change(before, fingerprint_path(f))
    assert str(f) in change and "3 bytes" in change and "4 bytes" in change


def test_same_size_different_bytes_is_a_change(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("abc")
    before = fingerprint_path(f)
    f.write_text("abd")
    assert describe_change(before, fingerprint_path(f)) is not None


def test_a_folder_lists_its_files_and_names_what_changed(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "one.txt").write_text("1")
    (tmp_path / "d" / "sub" / "two.txt").write_text("2")
    (tmp_path / "d" / ".hidden").write_text("ignored")
    before = fingerprint_path(tmp_path / "d")
    assert sorted(before["files"]) == ["one.txt", "sub/two.txt"]
    (tmp_path / "d" / "one.txt").write_text("changed")
    (tmp_path / "d" / "three.txt").write_text("3")
    change = describe_change(before, fingerprint_path(tmp_path / "d"))
    assert "changed: one.txt" in change and "added: three.txt" in change


def test_embedded_text_and_special_files():
    assert describe_change(fingerprint_text("pydoc", "x"), fingerprint_text("pydoc", "y")).startswith(
        "the embedded pydoc data differs")
    with pytest.raises(DataError, match="not a regular file"):
        fingerprint_path("/dev/null")
    with pytest.raises(FileNotFoundError):
        fingerprint_path("/does/not/exist")

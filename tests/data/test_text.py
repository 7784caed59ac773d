"""Corpora: the embedded pydoc corpus, files and folders, the held-out split, and errors that name the file."""
import pytest

from rnnlab.data.text import Document, load_corpus, pydoc_corpus, read_text_file, split_documents


def test_embedded_corpus_is_pythons_documentation_in_sorted_topic_order():
    docs = pydoc_corpus()
    assert len(docs) > 50
    names = [d.name for d in docs]
    assert names == sorted(names) and all(n.startswith("pydoc:") for n in names)
    assert sum(len(d.text) for d in docs) > 100_000
    assert load_corpus(None) == docs and load_corpus("pydoc") == docs


def test_file_is_one_document_and_folder_one_per_txt_file(tmp_path):
    (tmp_path / "b.txt").write_text("second\r\nfile\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("nested", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
    docs = load_corpus(tmp_path)
    assert [d.text for d in docs] == ["first", "second\nfile\n", "nested"]  # sorted paths, \r\n normalised
    assert load_corpus(str(tmp_path / "a.txt")) == [Document(str(tmp_path / "a.txt"), "first")]


def test_split_holds_out_the_last_fraction_of_a_single_file():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    train, valid = split_documents([Document("f", text)], 0.1)
    assert train[0].text == text[:900] and valid[0].text == text[900:]
    assert train[0].text + valid[0].text == text


def test_split_cuts_the_document_that_straddles_the_boundary():
    docs = [Document("a", "x" * 50), Document("b", "y" * 40), Document("c", "z" * 10)]
    train, valid = split_documents(docs, 0.2)  # the last 20 of 100 characters
    assert [d.name for d in train] == ["a", "b[train]"] and [d.name for d in valid] == ["b[valid]", "c"]
    assert "".join(d.text for d in valid) == "y" * 10 + "z" * 10
    assert split_documents(docs, 0.0) == (docs, [])


def test_split_errors():
    with pytest.raises(ValueError, match="valid_fraction must be in"):
        split_documents([Document("a", "abc")], 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        split_documents([Document("a", "abc")], 0.1)


def test_missing_empty_and_binary_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_corpus(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        read_text_file(empty)
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ValueError, match="blob.txt looks like a binary file"):
        load_corpus(binary)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt is not UTF-8"):
        load_corpus(latin1)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "good.txt").write_text("fine", encoding="utf-8")
    (folder / "void.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="void.txt is empty"):  # one bad file in a folder fails the folder
        load_corpus(folder)
    (tmp_path / "none").mkdir()
    with pytest.raises(FileNotFoundError, match="no .txt files"):
        load_corpus(tmp_path / "none")

"""Word vectors from GloVe and word2vec text files, and malformed files named by line."""
import pytest

from rnnlab.data.errors import DataError
from rnnlab.data.vectors import read_vectors


def write(path, text):
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_glove_and_word2vec_text_formats(tmp_path):
    glove = write(tmp_path / "g.txt", "the 0.1 0.2 0.3\ncat 1 2 3\nnew york 4 5 6\n")
    found, dim = read_vectors(glove, ["the", "new york", "dog"])
    assert dim == 3 and sorted(found) == ["new york", "the"] and found["the"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    w2v = write(tmp_path / "w.txt", "2 2\nthe 1 2\ncat 3 4\n")
    found, dim = read_vectors(w2v, {"cat"})
    assert dim == 2 and found["cat"].tolist() == [3.0, 4.0]


@pytest.mark.parametrize("content, message", [
    ("", "the embeddings file is empty"),
    ("the 0.1 0.2\ncat 0.3\n", r"v.txt:2: 1 values where the vectors have 2"),
    ("the 0.1 zz\n", r"v.txt:1: 'zz' is not a number"),
    (b"the 0.1\ncaf\xe9 0.2\n", r"v.txt:2: not UTF-8"),
    ("the\n", "v.txt:1: expected a word followed by its vector"),
])
def test_malformed_vectors_name_the_line(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        read_vectors(write(tmp_path / "v.txt", content), {"the", "cat"})

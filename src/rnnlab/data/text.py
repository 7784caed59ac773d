"""Text corpora for language models: a list of documents, and a train/validation split.

The embedded corpus needs nothing but Python: the text of Python's own documentation that ships in the
standard library (``pydoc_data.topics.topics``, the pages that ``help("assert")`` shows), one document per
topic, topics in sorted order. Otherwise a plain-text file (one document) or a folder of ``.txt`` files
(each file one document, in sorted path order). Line endings are normalised to ``\\n``.

The split holds out the *end* of the text, as language-model benchmarks do: the last ``valid_fraction`` of
the characters, so the document that straddles the cut is split in two.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

EMBEDDED = "pydoc"
"""The name of the embedded corpus (what ``data=None`` means)."""


@dataclass(frozen=True)
class Document:
    name: str
    """Where the text came from: a file path, or ``pydoc:<topic>``."""
    text: str


def pydoc_corpus() -> list[Document]:
    """Python's documentation topics from the standard library: ~80 documents, ~465k characters."""
    from pydoc_data.topics import topics

    return [Document(f"{EMBEDDED}:{key}", _normalise(topics[key])) for key in sorted(topics) if topics[key].strip()]


def read_text_file(path: Union[str, Path]) -> Document:
    """One UTF-8 text file as a document. Missing, empty and binary files raise errors that name the file."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a device or a pipe: reading it would never end
        raise ValueError(f"{path} is not a regular file (a device, pipe or socket?): give a UTF-8 text file")
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise ValueError(f"{path} looks like a binary file (it contains NUL bytes); expected UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (invalid byte at offset {e.start}); expected UTF-8 text") from None
    text = _normalise(text)
    if not text.strip():
        raise ValueError(f"{path} is empty; expected some text")
    return Document(str(path), text)


def load_corpus(path: Optional[Union[str, Path]] = None) -> list[Document]:
    """The documents of ``path``: a ``.txt``-like file, a folder of ``.txt`` files (searched recursively),
    or the embedded pydoc corpus when ``path`` is None or ``"pydoc"``."""
    if path is None or str(path) == EMBEDDED:
        return pydoc_corpus()
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.txt") if f.is_file())
        if not files:
            raise FileNotFoundError(f"no .txt files in the folder {p}")
        return [read_text_file(f) for f in files]
    if not p.exists():
        raise FileNotFoundError(f"data not found: {p} (give a text file, a folder of .txt files, or omit it for the embedded corpus)")
    return [read_text_file(p)]


def split_documents(documents: list[Document], valid_fraction: float = 0.1) -> tuple[list[Document], list[Document]]:
    """(train, valid): the last ``valid_fraction`` of all the characters is held out for validation.

    Documents keep their order; the one that contains the cut is split in two (its name gets ``[train]`` and
    ``[valid]``). ``valid_fraction=0`` gives an empty validation list.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if not documents:
        raise ValueError("no documents to split")
    total = sum(len(d.text) for d in documents)
    n_valid = round(total * valid_fraction)
    if valid_fraction > 0 and not 2 <= n_valid <= total - 2:
        raise ValueError(
            f"valid_fraction={valid_fraction} of {total} characters leaves {n_valid} for validation and "
            f"{total - n_valid} for training; both need at least 2: use more text or another fraction"
        )
    cut = total - n_valid  # characters before the cut are for training
    train, valid, seen = [], [], 0
    for doc in documents:
        start, end = seen, seen + len(doc.text)
        seen = end
        if end <= cut:
            train.append(doc)
        elif start >= cut:
            valid.append(doc)
        else:
            k = cut - start
            train.append(Document(f"{doc.name}[train]", doc.text[:k]))
            valid.append(Document(f"{doc.name}[valid]", doc.text[k:]))
    return train, valid


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")

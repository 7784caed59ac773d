"""Text corpora for language models: a list of documents, and a train/validation split.

The embedded corpus needs nothing but Python: the text of Python's own documentation that ships in the
standard library (``pydoc_data.topics.topics``, the pages that ``help("assert")`` shows), one document per
topic, topics in sorted order. Otherwise a plain-text file (one document) or a folder of ``.txt`` files
(each file one document, in sorted path order). Line endings are normalised to ``\\n``.

The split holds out the *end* of the text, as language-model benchmarks do: the last ``valid_fraction`` of
the characters, so the document that straddles the cut is split in two.

For corpora larger than memory, :func:`corpus_sources` names the same documents as :class:`TextSource` s that
are read in chunks (a file is streamed and decoded incrementally, never read whole), and :func:`split_lengths`
makes the same split from the documents' lengths alone, as (document, start, end) character ranges.
"""
from __future__ import annotations

import codecs
from collections.abc import Iterator
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


def _check_file(path: Path) -> None:
    if path.exists() and not path.is_file():  # a device or a pipe: reading it would never end
        raise ValueError(f"{path} is not a regular file (a device, pipe or socket?): give a UTF-8 text file")
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")


def read_text_file(path: Union[str, Path]) -> Document:
    """One UTF-8 text file as a document. Missing, empty and binary files raise errors that name the file."""
    path = Path(path)
    _check_file(path)
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
    return [read_text_file(f) for f in _corpus_files(path)]


def _corpus_files(path: Union[str, Path]) -> list[Path]:
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.txt") if f.is_file())
        if not files:
            raise FileNotFoundError(f"no .txt files in the folder {p}")
        return files
    if not p.exists():
        raise FileNotFoundError(f"data not found: {p} (give a text file, a folder of .txt files, or omit it for the "
                                "embedded corpus)")
    return [p]


CHUNK_CHARS = 1 << 20
"""How many characters (about) a :class:`TextSource` reads at a time."""


@dataclass(frozen=True)
class TextSource:
    """One document, read in chunks of normalised text: a file streamed from disk, or a text in memory."""

    name: str
    path: Optional[Path] = None
    text: Optional[str] = None

    def chunks(self, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
        if self.text is not None:
            for i in range(0, len(self.text), chunk_chars):
                yield self.text[i:i + chunk_chars]
        else:
            yield from _stream_file(self.path, chunk_chars)

    def piece(self, start: int, end: int, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
        """The characters [start, end) of the document, in chunks."""
        seen = 0
        for chunk in self.chunks(chunk_chars):
            a, b = max(start - seen, 0), min(end - seen, len(chunk))
            seen += len(chunk)
            if a < b:
                yield chunk[a:b]
            if seen >= end:
                return

    def num_chars(self) -> int:
        """The document's length in characters (one streaming pass); an empty file raises a ValueError."""
        n, blank = 0, True
        for chunk in self.chunks():
            n += len(chunk)
            blank = blank and chunk.isspace()
        if blank and self.path is not None:
            raise ValueError(f"{self.path} is empty; expected some text")
        return n


def corpus_sources(path: Optional[Union[str, Path]] = None) -> list[TextSource]:
    """The documents of :func:`load_corpus`, as sources to stream (the embedded corpus is held in memory)."""
    if path is None or str(path) == EMBEDDED:
        return [TextSource(d.name, text=d.text) for d in pydoc_corpus()]
    files = _corpus_files(path)
    for f in files:
        _check_file(f)
    return [TextSource(str(f), path=f) for f in files]


def _stream_file(path: Path, chunk_chars: int) -> Iterator[str]:
    """The normalised text of a UTF-8 file, decoded incrementally: no more than one chunk is in memory."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    consumed, held = 0, ""
    with open(path, "rb") as f:
        while True:
            raw = f.read(chunk_chars)
            if b"\x00" in raw:
                raise ValueError(f"{path} looks like a binary file (it contains NUL bytes); expected UTF-8 text")
            pending = len(decoder.getstate()[0])
            try:
                text = held + decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                raise ValueError(f"{path} is not UTF-8 text (invalid byte at offset {consumed - pending + e.start}); "
                                 "expected UTF-8 text") from None
            consumed += len(raw)
            held = ""
            if raw and text.endswith("\r"):  # a "\r\n" may straddle the chunks
                text, held = text[:-1], "\r"
            if text:
                yield _normalise(text)
            if not raw:
                return


def split_documents(documents: list[Document], valid_fraction: float = 0.1) -> tuple[list[Document], list[Document]]:
    """(train, valid): the last ``valid_fraction`` of all the characters is held out for validation.

    Documents keep their order; the one that contains the cut is split in two (its name gets ``[train]`` and
    ``[valid]``). ``valid_fraction=0`` gives an empty validation list.
    """
    train, valid = split_lengths([len(d.text) for d in documents], valid_fraction)
    return _pieces(documents, train, "[train]"), _pieces(documents, valid, "[valid]")


Piece = tuple[int, int, int]
"""(document index, start, end): a range of one document's characters."""


def _pieces(documents: list[Document], pieces: list[Piece], tag: str) -> list[Document]:
    out = []
    for i, a, b in pieces:
        doc = documents[i]
        out.append(doc if (a, b) == (0, len(doc.text)) else Document(f"{doc.name}{tag}", doc.text[a:b]))
    return out


def split_lengths(lengths: list[int], valid_fraction: float = 0.1) -> tuple[list[Piece], list[Piece]]:
    """(train, valid) pieces of documents of these lengths, cut as :func:`split_documents` cuts them."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if not lengths:
        raise ValueError("no documents to split")
    total = sum(lengths)
    n_valid = round(total * valid_fraction)
    if valid_fraction > 0 and not 2 <= n_valid <= total - 2:
        raise ValueError(
            f"valid_fraction={valid_fraction} of {total} characters leaves {n_valid} for validation and "
            f"{total - n_valid} for training; both need at least 2: use more text or another fraction"
        )
    cut = total - n_valid  # characters before the cut are for training
    train, valid, seen = [], [], 0
    for i, n in enumerate(lengths):
        start, end = seen, seen + n
        seen = end
        if end <= cut:
            train.append((i, 0, n))
        elif start >= cut:
            valid.append((i, 0, n))
        else:
            train.append((i, 0, cut - start))
            valid.append((i, cut - start, n))
    return train, valid


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")

"""Token ids on disk: a corpus tokenised chunk by chunk into a file of the smallest unsigned dtype, opened as a
``numpy.memmap``, so that a text larger than memory can be trained on.

A cache entry is three files in ``cache_dir``: ``<name>.<key>.ids.<u8|u16|u32>`` (every document's ids, one
after another), ``<name>.<key>.docs.npy`` ((D, 2) int64: each document's start and length in the ids) and
``<name>.<key>.json`` (characters, tokens, dtype), written last, so an entry without it is rebuilt. ``key``
hashes what the ids depend on (the data's fingerprint, the tokenizer, the split), so a resume or a second run
reuses the entry and a changed corpus or tokenizer builds a new one (and deletes the old).

Chunks are cut where no token can straddle the cut: anywhere for characters; for words and byte-level BPE just
before a whitespace character that follows a non-whitespace one (both tokenizers attach a space to the word
after it, and neither merges across "word|space"), so the ids equal those of encoding the whole text.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tokenize import Tokenizer

log = logging.getLogger(__name__)

FORMAT = 1
"""Bumped whenever the files' layout changes, so old cache entries are not read."""


@dataclass(frozen=True)
class TokenIds:
    """Documents of token ids: document d is ``ids[starts[d]:starts[d] + lengths[d]]``."""

    ids: np.ndarray
    """(N,) the ids of every document, in the smallest unsigned dtype (a read-only memmap)."""
    starts: np.ndarray
    lengths: np.ndarray
    chars: int
    """The characters these ids were encoded from."""

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


def smallest_dtype(vocab_size: int) -> np.dtype:
    """uint8, uint16 or uint32: the smallest unsigned dtype that holds ids 0 .. vocab_size - 1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"vocab_size must be below 2**32, got {vocab_size}")


def whole_tokens(chunks: Iterable[str], kind: str) -> Iterator[str]:
    """``chunks`` re-cut so that no token of a ``kind`` tokenizer straddles two of them (see the module doc)."""
    if kind == "char":
        yield from chunks
        return
    carry = ""
    for chunk in chunks:
        text = carry + chunk
        cut = _last_word_boundary(text)
        yield text[:cut]
        carry = text[cut:]
    if carry:
        yield carry


def _last_word_boundary(text: str) -> int:
    """The last i > 0 with text[i] whitespace and text[i - 1] not; 0 when there is none."""
    for i in range(len(text) - 1, 0, -1):
        if text[i].isspace() and not text[i - 1].isspace():
            return i
    return 0


def cache_key(**parts) -> str:
    """A short hash of ``parts`` (JSON-serialisable): the data fingerprint, the tokenizer's JSON, the split."""
    raw = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(raw).hexdigest()[:16]


def cached_ids(cache_dir: Path, name: str, key: str, tokenizer: Tokenizer,
               documents: Callable[[], Iterable[Iterable[str]]]) -> TokenIds:
    """The ids of ``documents()`` (each an iterable of text chunks) from ``cache_dir``, encoded and written
    there first when no complete entry for ``name`` and ``key`` exists."""
    cache_dir = Path(cache_dir)
    dtype = smallest_dtype(tokenizer.vocab_size)
    stem = cache_dir / f"{name}.{key}"
    ids_path, docs_path, meta_path = (Path(f"{stem}.ids.u{dtype.itemsize * 8}"), Path(f"{stem}.docs.npy"),
                                      Path(f"{stem}.json"))
    if not meta_path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale(cache_dir, name, key)
        log.info("tokenising %s into %s (%s)", name, ids_path, dtype.name)
        lengths, chars = _write_ids(tokenizer, documents(), ids_path, dtype)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        np.save(docs_path, np.stack([starts, np.asarray(lengths, np.int64)], axis=1))
        _write_atomic(meta_path, json.dumps({"chars": chars, "tokens": int(sum(lengths)), "dtype": dtype.name}))
    else:
        log.info("token ids of %s from the cache %s", name, ids_path)
    meta = json.loads(meta_path.read_text())
    docs = np.load(docs_path)
    ids = (np.memmap(ids_path, dtype=dtype, mode="r") if meta["tokens"] else np.zeros(0, dtype))
    return TokenIds(ids, docs[:, 0].copy(), docs[:, 1].copy(), int(meta["chars"]))


def _remove_stale(cache_dir: Path, name: str, key: str) -> None:
    """Delete ``name``'s entries for other keys (a corpus or tokenizer since changed): ids files are large."""
    for path in cache_dir.glob(f"{name}.*"):
        if path.name.split(".")[1] != key:
            log.info("removing the stale cache file %s", path)
            path.unlink(missing_ok=True)


def _write_ids(tokenizer: Tokenizer, documents: Iterable[Iterable[str]], path: Path,
               dtype: np.dtype) -> tuple[list[int], int]:
    """Encode each document chunk by chunk, appending its ids to ``path``; -> (ids per document, characters)."""
    lengths, chars = [], 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        for chunks in documents:
            n = 0
            for chunk in whole_tokens(chunks, tokenizer.kind):
                chars += len(chunk)
                ids = np.asarray(tokenizer.encode(chunk), dtype=dtype)
                f.write(ids.tobytes())
                n += ids.size
            lengths.append(n)
    os.replace(tmp, path)
    return lengths, chars


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

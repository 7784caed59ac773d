"""Pretrained word vectors from a text file: GloVe (``word v1 ... vD`` per line) or word2vec's text format
(the same, after a first line ``N D``).

Only the vectors of the words asked for are kept, so a 400,000-word GloVe file costs one pass and little
memory. Every line is checked for its count of values (fewer than the first line's), bytes that are not UTF-8,
and, for the words kept, values that are not numbers: each raises a :class:`~rnnlab.data.errors.DataError`
naming the line. The word is everything before the last D values, so words that contain spaces (as in some
GloVe files) still read.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Union

import torch

from .errors import DataError


def read_vectors(path: Union[str, os.PathLike], words: Iterable[str]) -> tuple[dict[str, torch.Tensor], int]:
    """(word -> vector (D,) for each of ``words`` found in the file, D). ``~`` in ``path`` is expanded."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file not found: {path} (a GloVe or word2vec text file)")
    wanted = set(words)
    found: dict[str, torch.Tensor] = {}
    dim = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(path, f"not UTF-8 text (byte 0x{raw[e.start]:02x}); convert the file to UTF-8",
                                line=number) from None
            parts = line.rstrip(" ").split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):  # word2vec header "N D"
                dim = int(parts[1])
                continue
            if not line.strip():
                continue
            if not dim:
                dim = len(parts) - 1
                if dim < 1:
                    raise DataError(path, "expected a word followed by its vector's values", line=number)
            if len(parts) < dim + 1:
                raise DataError(path, f"{len(parts) - 1} values where the vectors have {dim} "
                                      "(a truncated line, or not a GloVe/word2vec text file?)", line=number)
            word = " ".join(parts[:-dim])
            if word in wanted and word not in found:
                found[word] = _values(parts[-dim:], path, number)
    if not dim:
        raise DataError(path, "the embeddings file is empty")
    return found, dim


def _values(fields: list[str], path: Path, number: int) -> torch.Tensor:
    try:
        return torch.tensor([float(v) for v in fields], dtype=torch.float32)
    except ValueError:
        bad = next(v for v in fields if not _is_number(v))
        raise DataError(
            path, f"{bad!r} is not a number (each line: a word, then its vector's values)", line=number
        ) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

"""Sentence pairs for translation: tab-separated files, one ``source<TAB>target`` pair a line.

The format of the Tatoeba/ManyThings exports (``Go.<TAB>Geh.<TAB>CC-BY 2.0 (France) Attribution: ...``) and of
most parallel-corpus dumps: columns beyond the two in use are ignored, and which columns hold the source and the
target is configurable (Tatoeba puts English first: read German -> English with ``reverse=True``). Blank lines
are skipped; each side is stripped of surrounding spaces. Bad data raises :class:`~rnnlab.data.errors.DataError`
naming the file and the line.

    >>> pairs = read_pairs("deu_eng.train.tsv")          # doctest: +SKIP
    >>> pairs[0]
    Pair(source='Vergoldung', target='gilt', line=1)
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, NamedTuple, Union

from .errors import DataError, read_text

log = logging.getLogger(__name__)


class Pair(NamedTuple):
    source: str
    target: str
    line: int
    """The 1-based line of the file it came from (0 for pairs not read from a file)."""


def expand(path: Union[str, os.PathLike]) -> Path:
    """``~`` expanded: presets write data paths as ``~/.cache/rnnlab-data/...``."""
    return Path(os.path.expanduser(str(path)))


def read_pairs(path: Union[str, os.PathLike], *, source_column: int = 0, target_column: int = 1,
               reverse: bool = False, empty: Literal["error", "skip"] = "error") -> list[Pair]:
    """The pairs of a UTF-8 tab-separated file (see the module docstring).

    ``source_column``/``target_column``: 0-based columns of the two sides. ``reverse`` swaps the sides after
    reading (translate the other way). A DataError for a missing, empty or non-UTF-8 file, a line without the
    needed columns, or a pair with an empty side; with ``empty="skip"`` such pairs (as real parallel corpora
    have a few) are dropped with one warning naming how many and the first lines.
    """
    if empty not in ("error", "skip"):
        raise ValueError(f"--empty_pairs must be 'error' or 'skip', got {empty!r}")
    for name, value in (("source_column", source_column), ("target_column", target_column)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"--{name} must be a column index >= 0, got {value!r}")
    if source_column == target_column:
        raise ValueError(f"--source_column and --target_column are both {source_column}: they must differ")
    path = expand(path)
    text = read_text(path, what="pairs file")
    need = max(source_column, target_column) + 1
    pairs, skipped = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) < need:
            raise DataError(path, f"{len(columns)} tab-separated column(s), expected at least {need} "
                                  f"(source in column {source_column}, target in column {target_column}); "
                                  "is the file tab-separated?", line=number)
        source, target = columns[source_column].strip(), columns[target_column].strip()
        if not (source and target) and empty == "skip":
            skipped.append(number)
            continue
        for side, value, column in (("source", source, source_column), ("target", target, target_column)):
            if not value:
                raise DataError(path, f"the {side} (column {column}) is empty: every pair needs both sides "
                                      "(--empty_pairs skip drops such pairs)", line=number)
        pairs.append(Pair(target, source, number) if reverse else Pair(source, target, number))
    if skipped:
        first = ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else "")
        log.warning("%s: skipped %d pair(s) with an empty side (lines %s)", path, len(skipped), first)
    if not pairs:
        raise DataError(path, "the pairs file holds no pairs (only blank lines or pairs with an empty side)")
    return pairs

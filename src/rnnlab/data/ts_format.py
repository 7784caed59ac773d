"""The ``.ts`` format of the UEA/UCR time-series classification archive (timeseriesclassification.com), as
sktime's file specification v1.0 describes it.

A file holds, in this order: comment lines starting with ``#``; metadata lines ``@identifier value``
(identifiers case-insensitive, any order, ``@data`` last); then one line per instance. An instance's
dimensions are separated by ``:``, the values of a dimension by ``,``, a missing value is ``?`` (read as NaN),
and the class label comes after the last ``:``. With ``@timeStamps true`` each value is written
``(timestamp,value)``; the values are kept in their order and the timestamps dropped.

    @problemName Walk
    @timeStamps false
    @missing true
    @univariate false
    @dimension 2
    @equalLength false
    @classLabel true up down
    @data
    1,2,3:4,?,6:up
    7,8:9,10:down

Identifiers read: ``@problemName``, ``@timeStamps``, ``@missing``, ``@univariate``, ``@dimension(s)``,
``@equalLength``, ``@seriesLength``, ``@classLabel``, ``@targetLabel`` (regression files are refused: this
reader is for classification); others are ignored, as sktime does. A dimension shorter than the longest one of
its instance is padded at the end with NaN (missing). Every problem is a :class:`~rnnlab.data.errors.DataError`
naming the file and line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .errors import DataError, read_text

_TRUE_FALSE = {"true": True, "false": False}
_TIMESTAMPED = re.compile(r"\(([^()]*),([^(),]*)\)")


@dataclass
class TsFile:
    """What :func:`read_ts` returns: one (T_i, F) float array per instance (NaN = missing), the class labels
    as strings, and the header."""

    series: list[np.ndarray]
    labels: list[str]
    problem_name: str = ""
    class_labels: list[str] = field(default_factory=list)
    """The labels @classLabel declares, in its order (empty when it declares none)."""
    dimensions: int = 1
    """F."""
    equal_length: Optional[bool] = None
    series_length: Optional[int] = None
    lines: list[int] = field(default_factory=list)
    """The file line of each instance (for messages)."""


def _flag(path: Path, line: int, key: str, value: str) -> bool:
    word = value.strip().lower()
    if word not in _TRUE_FALSE:
        raise DataError(path, f"@{key} must be true or false, got {value.strip()!r}", line=line)
    return _TRUE_FALSE[word]


def _count(path: Path, line: int, key: str, value: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise DataError(path, f"@{key} must be a positive integer, got {value.strip()!r}", line=line)
    return n


def _header(path: Path, lines: list[str]) -> tuple[dict, int]:
    """The metadata as a dict and the index of the first data line (after @data)."""
    meta: dict = {}
    for i, raw in enumerate(lines):
        n = i + 1
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if not text.startswith("@"):
            raise DataError(path, f"expected a @identifier or comment before @data, got {text[:40]!r} (is the "
                                  "@data line missing?)", line=n)
        key, _, value = text[1:].partition(" ")
        key = key.lower()
        if key == "data":
            return meta, i + 1
        if key in ("timestamps", "missing", "univariate", "equallength"):
            meta[key] = _flag(path, n, key, value)
        elif key in ("dimension", "dimensions", "serieslength"):
            meta["dimension" if key.startswith("dimension") else key] = _count(path, n, key, value)
        elif key == "classlabel":
            words = value.split()
            if not words or words[0].lower() not in _TRUE_FALSE:
                raise DataError(path, f"@classLabel must be 'true LABEL ...' or 'false', got {value.strip()!r}",
                                line=n)
            meta["classlabel"] = words[1:] if _TRUE_FALSE[words[0].lower()] else False
            meta["classlabel_line"] = n
        elif key == "targetlabel" and value.strip().lower() == "true":
            raise DataError(path, "@targetLabel true: a regression file; seqclass needs @classLabel true ...",
                            line=n)
        elif key == "problemname":
            meta["problemname"] = value.strip()
    raise DataError(path, "no @data line: a .ts file lists its metadata, then @data, then one instance per line")


def _values(path: Path, line: int, text: str, timestamps: bool, dim: int) -> np.ndarray:
    if timestamps:
        pairs = _TIMESTAMPED.findall(text)
        if text.strip() and not pairs:
            raise DataError(path, f"dimension {dim + 1}: @timeStamps true, so values must be written "
                                  f"(timestamp,value), got {text[:40]!r}", line=line)
        cells = [v for _, v in pairs]
    else:
        cells = text.split(",") if text.strip() else []
    out = np.empty(len(cells), dtype=np.float64)
    for j, cell in enumerate(cells):
        cell = cell.strip()
        if cell in ("?", "NaN", "nan"):
            out[j] = np.nan
            continue
        try:
            out[j] = float(cell)
        except ValueError:
            raise DataError(path, f"dimension {dim + 1}, value {j + 1}: {cell[:30]!r} is not a number (missing "
                                  "values are written ?)", line=line) from None
    return out


def read_ts(path: Union[str, os.PathLike], *, labels: bool = True) -> TsFile:
    """Read a classification ``.ts`` file (see the module docstring). ``labels=False`` (for prediction) also
    reads a file with ``@classLabel false``, whose instances have no label field (their labels are "")."""
    path = Path(path).expanduser()
    lines = read_text(path, what=".ts file").splitlines()
    meta, start = _header(path, lines)
    timestamps = meta.get("timestamps", False)
    declared_dims = 1 if meta.get("univariate") else meta.get("dimension")
    known = meta.get("classlabel")
    has_labels = isinstance(known, list)
    if labels and not has_labels:
        if known is False:
            raise DataError(path, "@classLabel false: the file has no class labels, and training and evaluation "
                                  "need them", line=meta["classlabel_line"])
        raise DataError(path, "no @classLabel line before @data: a classification file declares "
                              "'@classLabel true LABEL ...'")
    known = known or []
    result = TsFile([], [], problem_name=meta.get("problemname", ""), class_labels=list(known),
                    equal_length=meta.get("equallength"), series_length=meta.get("serieslength"))
    dims: Optional[int] = declared_dims
    for i in range(start, len(lines)):
        n = i + 1
        text = lines[i].strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(":") if not timestamps else _split_timestamped(text)
        if has_labels and len(parts) < 2:
            raise DataError(path, "an instance is DIMENSION:...:LABEL; this line has no ':' before a label", line=n)
        label = parts[-1].strip() if has_labels else ""
        if has_labels:
            parts = parts[:-1]
        if known and label not in known:
            raise DataError(path, f"class label {label!r} is not among those @classLabel declares "
                                  f"({', '.join(known)})", line=n)
        values = [_values(path, n, p, timestamps, d) for d, p in enumerate(parts)]
        if dims is None:
            dims = len(values)
        if len(values) != dims:
            raise DataError(path, f"{len(values)} dimensions, expected {dims} (as @dimension or the first instance "
                                  "says); dimensions are separated by ':'", line=n)
        T = max(len(v) for v in values)
        if T == 0:
            raise DataError(path, "the instance has no values", line=n)
        if result.equal_length and result.series_length and T != result.series_length:
            raise DataError(path, f"{T} values, but @seriesLength says {result.series_length}", line=n)
        series = np.full((T, dims), np.nan)
        for d, v in enumerate(values):
            series[: len(v), d] = v
        result.series.append(series)
        result.labels.append(label)
        result.lines.append(n)
    if not result.series:
        raise DataError(path, "no instances after @data")
    result.dimensions = dims or 1
    return result


def _split_timestamped(text: str) -> list[str]:
    """Split on the ':' outside brackets (timestamps hold ':' themselves)."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == ":" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


__all__ = ["TsFile", "read_ts"]

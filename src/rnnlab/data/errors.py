"""The error every reader raises for bad data: it names the file, the line and the problem in one line.

``DataError`` is a ``ValueError``, so the CLI turns it into one line on stderr and exit code 2, and code that
catches ValueError for bad input catches it too.

    >>> str(DataError("reviews.csv", "no column 'text' (columns: review, stars)", line=1))
    "reviews.csv:1: no column 'text' (columns: review, stars)"
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union


class DataError(ValueError):
    """Bad data in a file: ``path[:line]: problem``."""

    def __init__(self, path: Union[str, os.PathLike], problem: str, *, line: Optional[int] = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.line = line
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {problem}")


def read_text(path: Union[str, os.PathLike], *, what: str = "file") -> str:
    """A UTF-8 text file's contents, or a DataError (missing, a folder, empty, or not UTF-8, with the line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not path.is_file():
        raise DataError(path, f"expected a {what}, got a folder or a special file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                              "convert the file to UTF-8", line=line) from None
    if not text.strip():
        raise DataError(path, f"the {what} is empty")
    return text

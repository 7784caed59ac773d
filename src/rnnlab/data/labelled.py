"""Labelled texts for classification: CSV, TSV, JSON lines, a folder of label sub-folders, or the embedded set.

Every reader returns a list of :class:`Example` (text, label, source file, line), so that a later check (a
label the model never saw) can name the file and line.

Formats, chosen by ``format`` or, with ``format="auto"``, by the file's suffix:

- ``csv`` (``.csv``): a header row naming the columns, then one row per example, read by Python's ``csv``
  module (quoted fields, doubled quotes and newlines inside quotes work). Line numbers are the file's lines.
  Columns are named, or given as 0-based indices for a file without a header row (AG News:
  ``--text_column 1,2 --label_column 0``). Several text columns (a comma-separated list) are joined by a space.
- ``tsv`` (``.tsv``, ``.tab``): the same with tabs (quotes are honoured as in CSV, as pandas writes them).
- ``jsonl`` (``.jsonl``, ``.ndjson``): one JSON object per line; labels that are numbers become strings.
- ``folder`` (a directory): the aclImdb layout, ``DIR/<label>/*.txt``; each sub-folder that holds ``.txt``
  files is a label (its name), each file one example. ``unsup`` (aclImdb's unlabelled reviews) is skipped.

Rows with an empty text or label (only whitespace counts as empty) raise a :class:`DataError` naming the line,
or, with ``empty="skip"``, are dropped with one warning that lists the first lines dropped.

The embedded set (:func:`pydoc_chapters`) needs only Python: the paragraphs of the documentation that ships in
the standard library (``pydoc_data.topics``), each labelled with the chapter of the Python documentation its
topic comes from.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

from .errors import DataError, read_text

log = logging.getLogger(__name__)

FORMATS = ("auto", "csv", "tsv", "jsonl", "folder")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
SKIPPED_FOLDERS = ("unsup",)
"""Sub-folders that hold no labelled examples (aclImdb's ``train/unsup``)."""

EMBEDDED = "pydoc-chapters"
"""The name of the embedded data set (what ``data=None`` means)."""

Format = Literal["auto", "csv", "tsv", "jsonl", "folder"]
Empty = Literal["error", "skip"]


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str
    """The file it was read from (or ``pydoc-chapters:<topic>``)."""
    line: Optional[int] = None
    """Its first line in ``source`` (None for a whole-file example)."""

    @property
    def where(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"


# --- files ------------------------------------------------------------------------------------------------

def read_labelled(
    path: Union[str, os.PathLike], *, text_column: str = "text", label_column: str = "label", format: Format = "auto",
    empty: Empty = "error",
) -> list[Example]:
    """The examples of a CSV/TSV/JSONL file or a folder of label sub-folders (see the module docstring).

    ``~`` in ``path`` is expanded. Errors name the file, the line and the problem (:class:`DataError`).
    """
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {format!r}")
    if empty not in ("error", "skip"):
        raise ValueError(f"--empty_rows must be 'error' or 'skip', got {empty!r}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data not found: {path}")
    kind = format if format != "auto" else _format_of(path)
    if kind == "folder":
        if not path.is_dir():
            raise DataError(path, "format 'folder' needs a directory of label sub-folders")
        rows = _read_folder(path)
    else:
        text = read_text(path, what="data file")
        rows = _read_jsonl(path, text, text_column, label_column) if kind == "jsonl" else \
            _read_delimited(path, text, "," if kind == "csv" else "\t", text_column, label_column)
    examples = _drop_empty(rows, empty, path)
    if not examples:
        raise DataError(path, "no examples: every row was empty")
    return examples


def _format_of(path: Path) -> str:
    if path.is_dir():
        return "folder"
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(path, f"cannot tell the format from the suffix {path.suffix!r}: name it .csv, .tsv or .jsonl, "
                              "or set --format csv|tsv|jsonl|folder")
    return kind


def _columns(path: Path, option: str, spec: str, names: Optional[list[str]]) -> list[int]:
    """The 0-based indices that ``spec`` (names or indices, comma-separated) names in the header ``names``."""
    parts = [part.strip() for part in str(spec).split(",")]
    if not all(parts):
        raise ValueError(f"--{option} must name columns (comma-separated names or 0-based indices), got {spec!r}")
    if names is None:
        return [int(part) for part in parts]
    missing = [part for part in parts if part not in names]
    if missing:
        raise DataError(path, f"no column {missing[0]!r} (columns found: {', '.join(names)}); set --{option}", line=1)
    return [names.index(part) for part in parts]


def _read_delimited(path: Path, text: str, delimiter: str, text_column: str, label_column: str) -> Iterator[tuple]:
    """(text, label, path, line) per row; the line is where the row starts (rows may span lines inside quotes).

    When every column is given as an index the file has no header: its first line is data.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    headerless = all(part.strip().lstrip("-").isdigit() for spec in (text_column, label_column)
                     for part in str(spec).split(","))
    try:
        names = None
        if not headerless:
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise DataError(path, "the first line must be a header naming the columns (or give --text_column "
                                      "and --label_column as 0-based indices for a file without one)", line=1)
            names = [h.strip() for h in header]
        text_at = _columns(path, "text_column", text_column, names)
        label_at = _columns(path, "label_column", label_column, names)
        if len(label_at) != 1:
            raise ValueError(f"--label_column must name one column, got {label_column!r}")
        width = len(names) if names is not None else None
        line = reader.line_num + 1
        for row in reader:
            start, line = line, reader.line_num + 1
            if not row:  # a blank line
                continue
            if width is not None and len(row) != width:
                raise DataError(path, f"{len(row)} fields where the header has {width} "
                                      f"(a stray {'comma' if delimiter == ',' else 'tab'} or quote?)", line=start)
            needed = max(text_at + label_at)
            if needed >= len(row) or min(text_at + label_at) < -len(row):
                raise DataError(path, f"{len(row)} fields, but the columns asked for reach index {needed}", line=start)
            yield " ".join(row[i] for i in text_at), row[label_at[0]], path, start
    except csv.Error as e:
        raise DataError(path, f"malformed {'CSV' if delimiter == ',' else 'TSV'}: {e}", line=reader.line_num) from None


def _read_jsonl(path: Path, text: str, text_column: str, label_column: str) -> Iterator[tuple]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"not a JSON object: {e.msg} at column {e.colno}", line=number) from None
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object per line, got {type(record).__name__}", line=number)
        for option, name in (("text_column", text_column), ("label_column", label_column)):
            if name not in record:
                raise DataError(
                    path, f"no field {name!r} (fields found: {', '.join(record)}); set --{option}", line=number
                )
        yield _as_text(record[text_column]), _as_text(record[label_column]), path, number


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _read_folder(path: Path) -> Iterator[tuple]:
    labels = sorted(d for d in path.iterdir() if d.is_dir() and d.name not in SKIPPED_FOLDERS and any(d.glob("*.txt")))
    if not labels:
        raise DataError(path, "no label folders (sub-folders holding .txt files, e.g. pos/ and neg/); "
                              "for aclImdb give the train or test folder")
    for folder in labels:
        for file in sorted(folder.glob("*.txt")):
            text = read_text(file, what="text file") if file.read_bytes().strip() else ""  # empty: by the rule
            yield text, folder.name, file, None


def _drop_empty(rows, empty: str, path: Path) -> list[Example]:
    examples, dropped = [], []
    for text, label, file, line in rows:
        where = str(file) if line is None else f"{file}:{line}"
        if not text.strip() or not label.strip():
            if empty == "error":
                what = "text" if not text.strip() else "label"
                raise DataError(file, f"empty {what} (set --empty_rows skip to drop such rows)", line=line)
            dropped.append(where)
            continue
        examples.append(Example(text, label.strip(), str(file), line))
    if dropped:
        log.warning(
            "%s: skipped %d rows with an empty text or label (first: %s)", path, len(dropped), ", ".join(dropped[:5])
        )
    return examples


# --- the embedded set -------------------------------------------------------------------------------------

# The chapter of the Python documentation each pydoc topic comes from (CPython's Doc/reference/*.rst,
# Doc/library/stdtypes.rst, string.rst and pdb.rst). Topics a newer Python adds are left out.
CHAPTERS: dict[str, tuple[str, ...]] = {
    "lexical": ("identifiers", "id-classes", "strings", "numbers", "integers", "floating", "imaginary"),
    "datamodel": ("objects", "types", "specialnames", "customization", "attribute-access", "callable-types",
                  "numeric-types", "sequence-types", "context-managers"),
    "execution": ("execmodel", "naming", "dynamic-features", "exceptions"),
    "expressions": ("atom-identifiers", "atom-literals", "lists", "dict", "attribute-references", "subscriptions",
                    "slicings", "calls", "await", "power", "unary", "binary", "shifting", "bitwise", "comparisons",
                    "in", "booleans", "lambda", "exprlists", "conversions", "operator-summary"),
    "simple-statements": ("assert", "assignment", "augassign", "pass", "del", "return", "yield", "raise", "break",
                          "continue", "import", "global", "nonlocal"),
    "compound-statements": ("compound", "if", "else", "while", "for", "try", "with", "function", "class", "async"),
    "builtin-types": ("truth", "typesseq", "typesseq-mutable", "string-methods", "typesmapping", "typesmodules",
                      "typesfunctions", "typesmethods", "bltin-code-objects", "bltin-ellipsis-object",
                      "bltin-null-object", "bltin-type-objects", "specialattrs"),
    "format-strings": ("formatstrings",),
    "debugger": ("debugger",),
}
MIN_WORDS = 6
"""Shorter paragraphs (headings, underlines, one-line code) are left out of the embedded set."""
TEST_PERCENT = 15


def pydoc_chapters() -> tuple[list[Example], list[Example]]:
    """(train, test): the paragraphs of ``pydoc_data.topics`` labelled with their documentation chapter.

    A paragraph is a block between blank lines, whitespace collapsed, of at least :data:`MIN_WORDS` words.
    Topics overlap (``compound`` holds the text of ``if``, ``while``...): each distinct paragraph is kept once,
    and the few that appear under two chapters are dropped. About 1,500 paragraphs in 9 chapters on Python 3.11,
    from ``datamodel`` (~375) down to ``execution`` (~34). The test set is the paragraphs whose CRC-32 falls in
    the first :data:`TEST_PERCENT` of 100: a split that any Python reproduces.
    """
    from pydoc_data.topics import topics

    chapter_of = {topic: chapter for chapter, names in CHAPTERS.items() for topic in names}
    seen: dict[str, set] = defaultdict(set)
    first: dict[str, str] = {}
    for topic in sorted(topics):
        if topic not in chapter_of:
            continue
        for paragraph in re.split(r"\n\s*\n", topics[topic]):
            text = " ".join(paragraph.split())
            if len(text.split()) >= MIN_WORDS:
                seen[text].add(chapter_of[topic])
                first.setdefault(text, topic)
    train, test = [], []
    for text, chapters in seen.items():
        if len(chapters) != 1:
            continue
        example = Example(text, next(iter(chapters)), f"{EMBEDDED}:{first[text]}")
        (test if zlib.crc32(text.encode("utf-8")) % 100 < TEST_PERCENT else train).append(example)
    return train, test


def is_embedded(data: Optional[str]) -> bool:
    return data is None or str(data) == EMBEDDED

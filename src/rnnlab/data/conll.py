"""CoNLL column files: one token per line, its tag in another column, a blank line between sentences.

The format of the CoNLL-2000 chunking and CoNLL-2002/2003 NER shared tasks, of Penn-Treebank-style POS files
(``token<TAB>tag``) and of CoNLL-U (Universal Dependencies: word form in column 1, UPOS in column 3):

- Columns are separated by tabs when the line holds a tab (so a token may contain spaces), else by whitespace.
  ``token_column`` and ``tag_column`` pick the columns (0-based; negative counts from the end: -1 is the last).
- ``-DOCSTART-`` lines (CoNLL-2003 document breaks) are skipped.
- Comment lines start with ``#`` (CoNLL-U's ``# sent_id = 1``, ``# text = ...``). A line ``#<TAB>#`` is the
  token ``#`` tagged ``#`` (the Penn tag of the pound sign), so a ``#`` line is read as a token when its
  first column is exactly ``#``, it holds no `` = `` and it has as many columns as the file's token lines;
  otherwise it is a comment.
- CoNLL-U multi-word token lines (``1-2``) and empty nodes (``8.1``) are skipped: the tagged words follow them.
- UTF-8 (any language); a byte-order mark is ignored.

Tag schemes (``detect_scheme``, ``repair_tags``): ``bio`` (IOB2: ``B-X`` begins an entity, ``I-X`` continues
it, ``O`` is outside), ``bioes`` (also ``E-X`` ends one, ``S-X`` is a single-token one) and ``plain`` (any
tags: POS, chunk labels without prefixes...). IOB1 files, where ``I-X`` may begin an entity, read as bio: every
``I-X`` that does not continue an ``X`` entity becomes ``B-X`` (the IOB1 -> IOB2 conversion, which also
repairs a broken BIO file; a warning says how many tags changed and where the first one is). A bioes file with
an invalid sequence is an error (there is no single repair for it).
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

from .errors import DataError, read_text

log = logging.getLogger(__name__)

Scheme = Literal["bio", "bioes", "plain"]
SCHEMES = ("auto", "bio", "bioes", "plain")
_CONLLU_SKIP = re.compile(r"\d+[-.]\d+")  # 1-2 (a multi-word token), 8.1 (an empty node)
_PREFIXED = re.compile(r"([BIES])-(.+)")


@dataclass(frozen=True)
class Sentence:
    """One sentence: its tokens, their tags, and the line of each token in its file (1-based)."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    lines: tuple[int, ...]


def _fields(line: str) -> list[str]:
    return [f.strip() for f in line.split("\t")] if "\t" in line else line.split()


def read_conll(path: Union[str, os.PathLike], *, token_column: int = 0, tag_column: int = -1) -> list[Sentence]:
    """The sentences of a CoNLL column file (see the module docstring). A DataError names the file and line
    for an empty file, a line with too few columns, or bytes that are not UTF-8."""
    path = Path(os.path.expanduser(str(path)))
    text = read_text(path, what="CoNLL file")
    lines = text.splitlines()
    needed = max(token_column if token_column >= 0 else -token_column - 1,
                 tag_column if tag_column >= 0 else -tag_column - 1, 1) + 1  # a token and a tag: 2 at least
    width = Counter(len(_fields(l)) for l in lines if l.strip() and not l.startswith("#"))
    columns = width.most_common(1)[0][0] if width else 0  # the usual number of columns of a token line
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    where: list[int] = []

    def close() -> None:
        if tokens:
            sentences.append(Sentence(tuple(tokens), tuple(tags), tuple(where)))
            tokens.clear(), tags.clear(), where.clear()

    for number, line in enumerate(lines, start=1):
        line = line.rstrip()
        if not line:
            close()
            continue
        fields = _fields(line)
        if line.startswith("#") and not (fields[0] == "#" and len(fields) == columns and " = " not in line):
            continue  # a comment
        if fields[0] == "-DOCSTART-":
            close()
            continue
        if len(fields) == 10 and _CONLLU_SKIP.fullmatch(fields[0]):
            continue
        if len(fields) < needed or (token_column % len(fields)) == (tag_column % len(fields)):
            raise DataError(path, f"this line has {len(fields)} column(s); --token_column {token_column} and "
                                  f"--tag_column {tag_column} need at least {needed}, with the token and the tag in "
                                  "different columns (a blank line separates sentences)",
                            line=number)
        token, tag = fields[token_column], fields[tag_column]
        if not token or not tag:
            raise DataError(path, "an empty token or tag column (two tabs in a row?)", line=number)
        tokens.append(token)
        tags.append(tag)
        where.append(number)
    close()
    if not sentences:
        raise DataError(path, "no sentences: every line is blank, a comment or -DOCSTART-")
    return sentences


# --- tag schemes ----------------------------------------------------------------------------------------------

def detect_scheme(tags: Sequence[str]) -> Scheme:
    """bioes when every tag is O or B-/I-/E-/S-X and some are E- or S-; bio when every tag is O or B-/I-X and
    some are prefixed; plain otherwise (POS tags, unprefixed labels)."""
    prefixes = set()
    for tag in set(tags):
        if tag == "O":
            continue
        m = _PREFIXED.fullmatch(tag)
        if m is None:
            return "plain"
        prefixes.add(m.group(1))
    if not prefixes:
        return "plain"
    return "bioes" if prefixes & {"E", "S"} else "bio"


def check_scheme_tags(sentences: Sequence[Sentence], scheme: Scheme, path: Union[str, os.PathLike]) -> None:
    """Every tag fits ``scheme`` (O or an allowed prefix), or a DataError naming the first one that does not."""
    if scheme == "plain":
        return
    allowed = "BI" if scheme == "bio" else "BIES"
    for s in sentences:
        for tag, line in zip(s.tags, s.lines):
            m = _PREFIXED.fullmatch(tag)
            if tag != "O" and (m is None or m.group(1) not in allowed):
                raise DataError(path, f"tag {tag!r} is not O or {'/'.join(allowed)}-TYPE as --tag_scheme {scheme} "
                                      "needs (use --tag_scheme plain for tags without prefixes)", line=line)


def repair_tags(sentences: Sequence[Sentence], scheme: Scheme, path: Union[str, os.PathLike]) -> list[Sentence]:
    """bio: IOB1 -> IOB2, every I-X that does not continue an X entity becomes B-X (a warning counts them).
    bioes: a DataError at the first invalid transition. plain: unchanged."""
    if scheme == "plain":
        return list(sentences)
    if scheme == "bioes":
        for s in sentences:
            _check_bioes(s, path)
        return list(sentences)
    out, changed, first = [], 0, None
    for s in sentences:
        tags = list(s.tags)
        for i, tag in enumerate(tags):
            if tag.startswith("I-") and (i == 0 or tags[i - 1] not in ("B-" + tag[2:], tag)):
                tags[i] = "B-" + tag[2:]
                changed += 1
                first = first or s.lines[i]
        out.append(Sentence(s.tokens, tuple(tags), s.lines) if changed else s)
    if changed:
        log.warning(
            "%s:%d: %d I- tag(s) begin an entity (IOB1, or broken BIO): read as B- (IOB2)", path, first, changed
        )
    return out


def _check_bioes(s: Sentence, path) -> None:
    prev = "O"
    for tag, line in zip(s.tags, s.lines):
        open_entity = prev[:2] in ("B-", "I-")
        continues = tag[:2] in ("I-", "E-")
        if open_entity != continues or (continues and tag[2:] != prev[2:]):
            raise DataError(path, f"BIOES tag {tag!r} cannot follow {prev!r}: after B-X or I-X only I-X or E-X may "
                                  "come, and I-X or E-X only after B-X or I-X", line=line)
        prev = tag
    if prev[:2] in ("B-", "I-"):
        raise DataError(path, f"the sentence ends inside an entity ({prev!r}): a BIOES entity ends with E- or S-",
                        line=s.lines[-1])


def read_tagged(path: Union[str, os.PathLike], *, token_column: int = 0, tag_column: int = -1,
                scheme: Literal["auto", "bio", "bioes", "plain"] = "auto") -> tuple[list[Sentence], Scheme]:
    """Read, detect the scheme (when ``auto``), check and repair the tags -> (sentences, scheme)."""
    if scheme not in SCHEMES:
        raise ValueError(f"--tag_scheme must be one of {SCHEMES}, got {scheme!r}")
    sentences = read_conll(path, token_column=token_column, tag_column=tag_column)
    if scheme == "auto":
        scheme = detect_scheme([t for s in sentences for t in s.tags])
    check_scheme_tags(sentences, scheme, path)
    return repair_tags(sentences, scheme, path), scheme

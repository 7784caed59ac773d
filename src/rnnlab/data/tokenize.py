"""Tokenizers: text -> ids -> text. Characters (the default), words, or byte-level BPE (Sennrich et al., 2016).

Every tokenizer speaks :class:`Tokenizer`: ``encode(str) -> list[int]``, ``decode(list[int]) -> str``,
``vocab_size`` and ``to_json() -> dict``; :func:`tokenizer_from_json` rebuilds it from that dict (a model
bundle's ``vocab.json``) without running any code. Round trips are exact for text whose tokens are in the
vocabulary: the word tokenizer keeps the whitespace as tokens, and byte-level BPE covers every byte.
BPE comes from the ``tokenizers`` package (an optional install), imported only when it is used.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Optional, Protocol, runtime_checkable

from .vocab import Vocab

KINDS = ("char", "word", "bpe")

# A word with its leading space (as GPT-2 does, so "the" and " the" are different tokens), one punctuation
# mark with its leading space, or one whitespace character. Every character matches exactly one of the three,
# so joining the tokens gives the text back.
_WORD = re.compile(r" ?\w+| ?[^\w\s]|\s")


@runtime_checkable
class Tokenizer(Protocol):
    kind: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def to_json(self) -> dict: ...


def _check_text(text, where: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{where} takes a str, got {type(text).__name__}")
    return text


class CharTokenizer:
    """One token per character; characters not seen in training map to ``<unk>``."""

    kind = "char"

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        chars: set[str] = set()
        for text in texts:
            chars.update(_check_text(text, "CharTokenizer.train"))
        return cls(Vocab(sorted(chars)))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(_check_text(text, "CharTokenizer.encode"))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab.decode(ids))

    def to_json(self) -> dict:
        return {"kind": self.kind, "vocab": self.vocab.to_json()}


class WordTokenizer:
    """Words (with their leading space), punctuation marks and whitespace characters; the most frequent
    ``vocab_size`` of them are kept and the rest map to ``<unk>``."""

    kind = "word"

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    @staticmethod
    def split(text: str) -> list[str]:
        return _WORD.findall(_check_text(text, "WordTokenizer"))

    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int) -> WordTokenizer:
        counts: Counter = Counter()
        for text in texts:
            counts.update(cls.split(text))
        return cls(Vocab.from_counts(counts, max_size=vocab_size))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.split(text))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab.decode(ids))

    def to_json(self) -> dict:
        return {"kind": self.kind, "vocab": self.vocab.to_json()}


def _tokenizers():
    try:
        import tokenizers
    except ImportError as e:  # an optional dependency: say how to get it
        raise ModuleNotFoundError(
            "the bpe tokenizer needs the 'tokenizers' package: pip install tokenizers (or rnnlab[train])"
        ) from e
    return tokenizers


class BPETokenizer:
    """Byte-level BPE trained on the corpus with the ``tokenizers`` package: every byte is in the base
    alphabet, so nothing is ever unknown."""

    kind = "bpe"

    def __init__(self, backend) -> None:
        self.backend = backend  # a tokenizers.Tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int) -> BPETokenizer:
        tk = _tokenizers()
        if vocab_size < 257:
            raise ValueError(f"bpe vocab_size must be at least 257 (the 256 bytes and one merge), got {vocab_size}")
        backend = tk.Tokenizer(tk.models.BPE())
        backend.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        )
        backend.train_from_iterator((_check_text(t, "BPETokenizer.train") for t in texts), trainer=trainer)
        return cls(backend)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(_check_text(text, "BPETokenizer.encode")).ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        n = self.vocab_size
        for i in ids:
            if not 0 <= i < n:
                raise ValueError(f"token id must be in [0, {n}), got {i}")
        return self.backend.decode(ids)

    def to_json(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self.backend.to_str())}

    @classmethod
    def from_json(cls, data: Mapping) -> BPETokenizer:
        tk = _tokenizers()
        if not isinstance(data.get("tokenizer"), dict):
            raise ValueError("a bpe tokenizer JSON needs a 'tokenizer' object (the tokenizers package's JSON)")
        try:
            return cls(tk.Tokenizer.from_str(json.dumps(data["tokenizer"])))
        except Exception as e:  # the tokenizers package raises its own exception type
            raise ValueError(f"the bpe tokenizer JSON is malformed: {e}") from None


def train_tokenizer(kind: str, texts: Iterable[str], *, vocab_size: Optional[int] = None) -> Tokenizer:
    """A tokenizer of ``kind`` ('char' | 'word' | 'bpe') fitted to ``texts``.

    ``vocab_size``: the most ids for 'word' and 'bpe' (required for them); 'char' keeps every character.
    """
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind in ("word", "bpe"):
        if vocab_size is None or vocab_size < 2:
            raise ValueError(f"the {kind} tokenizer needs vocab_size >= 2, got {vocab_size}")
        return (WordTokenizer if kind == "word" else BPETokenizer).train(texts, vocab_size=vocab_size)
    raise ValueError(f"tokenizer must be one of {KINDS}, got {kind!r}")


def tokenizer_from_json(data: Mapping) -> Tokenizer:
    """Rebuild a tokenizer from its :meth:`to_json` dict (a bundle's ``vocab.json``)."""
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind in ("char", "word"):
        if "vocab" not in data:
            raise ValueError(f"a {kind} tokenizer JSON needs a 'vocab' object, got keys {sorted(data)}")
        return (CharTokenizer if kind == "char" else WordTokenizer)(Vocab.from_json(data["vocab"]))
    if kind == "bpe":
        return BPETokenizer.from_json(data)
    raise ValueError(f"tokenizer JSON must have 'kind' in {KINDS}, got {kind!r}")

"""Tokenizers: text -> ids -> text. Characters (the default), words, byte-level BPE (Sennrich et al., 2016), or
the whitespace-separated tokens of a pre-tokenised corpus (Penn Treebank as Mikolov distributes it, WikiText).

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

KINDS = ("char", "word", "bpe", "whitespace")
EOS = "<eos>"
"""The end-of-line token of the whitespace tokenizer (Mikolov's convention: it counts as a word)."""

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


class WhitespaceTokenizer:
    """The tokens of a pre-tokenised corpus: the text split on whitespace, every line break an ``<eos>`` token
    (so "a b\\nc\\n" is a, b, <eos>, c, <eos>), as word-level language modelling on Penn Treebank or WikiText
    does. A corpus's own ``<unk>`` is one token and is the unknown token (id 0); beyond ``vocab_size`` the
    rarest words map to it too. ``decode`` joins with single spaces and turns ``<eos>`` into a line break, so a
    round trip keeps the tokens but not the original spacing.
    """

    kind = "whitespace"

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    @staticmethod
    def split(text: str) -> list[str]:
        return _check_text(text, "WhitespaceTokenizer").replace("\n", f" {EOS} ").split()

    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int) -> WhitespaceTokenizer:
        counts: Counter = Counter()
        for text in texts:
            counts.update(cls.split(text))
        return cls(Vocab.from_counts(counts, max_size=vocab_size, specials=(EOS,)))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.split(text))

    def decode(self, ids: Iterable[int]) -> str:
        out: list[str] = []
        for token in self.vocab.decode(ids):
            if token == EOS:
                out.append("\n")
            else:
                out.append(token if not out or out[-1] == "\n" else " " + token)
        return "".join(out)

    def to_json(self) -> dict:
        return {"kind": self.kind, "vocab": self.vocab.to_json()}


def count_words(text: str) -> int:
    """Words in the sense of word-level perplexity: whitespace-separated tokens plus one ``<eos>`` per line
    break (what :class:`WhitespaceTokenizer` makes of the text)."""
    return len(text.split()) + text.count("\n")


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
    """A tokenizer of ``kind`` ('char' | 'word' | 'bpe' | 'whitespace') fitted to ``texts``.

    ``vocab_size``: the most ids for 'word', 'bpe' and 'whitespace' (required); 'char' keeps every character.
    """
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind in ("word", "bpe", "whitespace"):
        if vocab_size is None or vocab_size < 2:
            raise ValueError(f"the {kind} tokenizer needs vocab_size >= 2, got {vocab_size}")
        cls = {"word": WordTokenizer, "bpe": BPETokenizer, "whitespace": WhitespaceTokenizer}[kind]
        return cls.train(texts, vocab_size=vocab_size)
    raise ValueError(f"tokenizer must be one of {KINDS}, got {kind!r}")


def tokenizers_json(tokenizer: Tokenizer) -> dict:
    """``tokenizer`` in the Hugging Face ``tokenizers`` format (what ``tokenizers.Tokenizer.from_file`` reads, a
    bundle's ``tokenizer.json``), so that other tools can tokenise text as the model was trained.

    bpe: the backend's own JSON (identical ids). char and word: a WordLevel model on the same vocabulary (the
    same ids, ``<unk>`` as the unknown token) behind a pre-tokenizer that splits as rnnlab does: char isolates
    every character (``[\\s\\S]``), word isolates the matches of the word pattern; the ``Fuse`` decoder joins the
    tokens without spaces, as ``decode`` does. Where ids can differ (word): ``\\w`` means Python's ``str.isalnum``
    plus ``_`` in rnnlab and Unicode's word class (letters, marks, decimal digits, connectors) in the Oniguruma
    regex engine of ``tokenizers``; they agree on ASCII and on precomposed letters of every script, and differ on
    combining marks (a decomposed "é") and on numerals that are not decimal digits ("½", "²"). A text
    normalised to NFC without such numerals encodes to the same ids in both. whitespace: a normalizer turns each
    line break into " <eos> " and the WhitespaceSplit pre-tokenizer splits; the same ids, except that Python's
    ``str.split`` also splits on the control characters U+001C..U+001F, which Unicode's White_Space does not
    hold. (Its decode joins with spaces and leaves ``<eos>`` as it is.)
    """
    if isinstance(tokenizer, BPETokenizer):
        return json.loads(tokenizer.backend.to_str())
    tk = _tokenizers()
    vocab = tokenizer.vocab
    backend = tk.Tokenizer(tk.models.WordLevel({vocab.token(i): i for i in range(len(vocab))}, unk_token=vocab.unk))
    if tokenizer.kind == "whitespace":  # each line break becomes " <eos> ", then split on whitespace
        backend.normalizer = tk.normalizers.Replace("\n", f" {EOS} ")
        backend.pre_tokenizer = tk.pre_tokenizers.WhitespaceSplit()
        return json.loads(backend.to_str())
    pattern = {"char": r"[\s\S]", "word": _WORD.pattern}.get(tokenizer.kind)
    if pattern is None:
        raise ValueError(f"no tokenizers-format equivalent for a {tokenizer.kind!r} tokenizer")
    backend.pre_tokenizer = tk.pre_tokenizers.Split(tk.Regex(pattern), behavior="isolated")
    backend.decoder = tk.decoders.Fuse()
    return json.loads(backend.to_str())


def tokenizer_from_json(data: Mapping) -> Tokenizer:
    """Rebuild a tokenizer from its :meth:`to_json` dict (a bundle's ``vocab.json``)."""
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind in ("char", "word", "whitespace"):
        if "vocab" not in data:
            raise ValueError(f"a {kind} tokenizer JSON needs a 'vocab' object, got keys {sorted(data)}")
        cls = {"char": CharTokenizer, "word": WordTokenizer, "whitespace": WhitespaceTokenizer}[kind]
        return cls(Vocab.from_json(data["vocab"]))
    if kind == "bpe":
        return BPETokenizer.from_json(data)
    raise ValueError(f"tokenizer JSON must have 'kind' in {KINDS}, got {kind!r}")

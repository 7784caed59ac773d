"""Vocabulary: the two-way map between tokens (strings) and ids (integers), stored as JSON in a bundle.

The special tokens come first, the unknown token ``unk`` always at id 0, so that a token never seen in
training (a new character in the validation text, a rare word) still has an id.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional


class Vocab:
    """token <-> id. ids: ``unk`` = 0, then ``specials``, then ``tokens`` in the order given.

    >>> v = Vocab(["a", "b"])
    >>> v.encode(["a", "z"]), v.decode([2, 0])
    ([1, 0], ['b', '<unk>'])
    """

    def __init__(self, tokens: Iterable[str], *, unk: str = "<unk>", specials: Sequence[str] = ()) -> None:
        if not isinstance(unk, str) or not unk:
            raise ValueError(f"unk must be a non-empty string, got {unk!r}")
        self.unk = unk
        self.specials = tuple(dict.fromkeys(s for s in specials if s != unk))
        self._itos: list[str] = []
        self._stoi: dict[str, int] = {}
        for token in (unk, *self.specials, *tokens):
            if not isinstance(token, str):
                raise TypeError(f"vocabulary tokens must be strings, got {token!r} ({type(token).__name__})")
            if token not in self._stoi:  # a corpus token equal to a special keeps the special's id
                self._stoi[token] = len(self._itos)
                self._itos.append(token)

    @classmethod
    def from_counts(
        cls, counts: Mapping[str, int], *, max_size: Optional[int] = None, min_count: int = 1, unk: str = "<unk>",
        specials: Sequence[str] = (),
    ) -> Vocab:
        """The most frequent tokens (ties broken by the token, so the order is deterministic).

        ``max_size`` counts every id, ``unk`` and the specials included.
        """
        reserved = 1 + len(specials)
        if max_size is not None and max_size <= reserved:
            raise ValueError(f"max_size must exceed the {reserved} reserved ids (unk and specials), got {max_size}")
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max_size - reserved]
        return cls(ranked, unk=unk, specials=specials)

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], **options) -> Vocab:
        """Count ``tokens`` and keep them by frequency (see :meth:`from_counts`)."""
        return cls.from_counts(Counter(tokens), **options)

    @property
    def unk_id(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: str) -> bool:
        return token in self._stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, unk={self.unk!r}, specials={self.specials!r})"

    def id(self, token: str) -> int:
        """The id of ``token``; the unknown token's id when it is not in the vocabulary."""
        return self._stoi.get(token, 0)

    def token(self, index: int) -> str:
        if not 0 <= index < len(self._itos):
            raise ValueError(f"token id must be in [0, {len(self._itos)}), got {index}")
        return self._itos[index]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        get = self._stoi.get
        return [get(t, 0) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        n, itos = len(self._itos), self._itos
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"token id must be in [0, {n}), got {i}")
            out.append(itos[i])
        return out

    def to_json(self) -> dict:
        """A JSON-ready dict: ``{"unk", "specials", "tokens"}`` with every token in id order."""
        return {"unk": self.unk, "specials": list(self.specials), "tokens": self._itos[1 + len(self.specials):]}

    @classmethod
    def from_json(cls, data: Mapping) -> Vocab:
        if not isinstance(data, Mapping) or not isinstance(data.get("tokens"), list):
            given = (
                f"'tokens' of type {type(data.get('tokens')).__name__}"
                if isinstance(data, Mapping)
                else type(data).__name__
            )
            raise ValueError(f"a vocabulary JSON must be an object with a 'tokens' list, got {given}")
        specials = data.get("specials", [])
        if not isinstance(specials, list):
            raise ValueError(f"a vocabulary JSON's 'specials' must be a list, got {type(specials).__name__}")
        return cls(data["tokens"], unk=data.get("unk", "<unk>"), specials=specials)

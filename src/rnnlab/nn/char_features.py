"""Character-level word features: one vector per word from its characters, for taggers.

Two classic forms: a character CNN with max-pooling over the word (Ma and Hovy, 2016, "End-to-end Sequence
Labeling via Bi-directional LSTM-CNNs-CRF", ACL, §2.1), and a character BiLSTM whose two final states are
concatenated (Lample et al., 2016, "Neural Architectures for Named Entity Recognition", NAACL, §4.1). Either
sees a word's spelling, case, prefixes and suffixes, so it gives a useful vector for words the word vocabulary
has never seen.

Char id 0 is padding: a word's characters are the non-zero ids of its row, at the start of the row; a row of
zeros (a padded time step) gets a zero vector. Only real words are computed.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .recurrent import Recurrent

__all__ = ["CharFeatures", "CHAR_ENCODERS"]

CHAR_ENCODERS = ("cnn", "lstm")


class CharFeatures(nn.Module):
    """chars (B, T, W) long -> word features (B, T, F).

    Symbols: W the longest word in characters, C = ``embedding_size``, H = ``hidden_size``.

    cnn:  e = Embed(chars) (W, C);  f = max_w Conv1d_k(e)[:, w]  over the word's real characters   F = H
    lstm: (h→, h←) = BiLSTM(Embed(chars)) final states;  f = [h→_last ; h←_first]                  F = 2H

    ``output_size`` is F.
    """

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, *,
                 kind: Literal["cnn", "lstm"] = "cnn", kernel_size: int = 3) -> None:
        super().__init__()
        if kind not in CHAR_ENCODERS:
            raise ValueError(f"kind must be one of {CHAR_ENCODERS}, got {kind!r}")
        for name, value in (("vocab_size", vocab_size), ("embedding_size", embedding_size),
                            ("hidden_size", hidden_size), ("kernel_size", kernel_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if kind == "cnn" and kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the same padding on both sides of a word), got {kernel_size}")
        self.kind = kind
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=0)
        if kind == "cnn":
            self.conv = nn.Conv1d(embedding_size, hidden_size, kernel_size, padding=kernel_size // 2)
            self.output_size = hidden_size
        else:
            self.lstm = Recurrent("lstm", embedding_size, hidden_size, bidirectional=True)
            self.output_size = 2 * hidden_size

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, output_size={self.output_size}"

    def forward(self, chars: Tensor) -> Tensor:
        if not isinstance(chars, Tensor) or chars.dtype not in (torch.int64, torch.int32) or chars.dim() != 3:
            got = (
                f"dtype {chars.dtype}, shape {tuple(chars.shape)}"
                if isinstance(chars, Tensor)
                else type(chars).__name__
            )
            raise ValueError(f"chars must be a (B, T, W) integer tensor of char ids (0 = padding), got {got}")
        if chars.numel() and (int(chars.min()) < 0 or int(chars.max()) >= self.vocab_size):
            raise ValueError(f"char ids must lie in [0, {self.vocab_size}), got min {int(chars.min())} "
                             f"and max {int(chars.max())}")
        B, T, W = chars.shape
        flat = chars.reshape(B * T, W).long()
        lengths = (flat != 0).sum(1)  # (B·T,): characters per word
        real = lengths > 0
        out = flat.new_zeros((B * T, self.output_size), dtype=self.embedding.weight.dtype)
        if bool(real.any()):
            words, n = flat[real], lengths[real]
            words = words[:, : int(n.max())]  # (N, W'): the real words, trimmed to the longest
            out[real] = self._cnn(words) if self.kind == "cnn" else self._lstm(words, n)
        return out.view(B, T, self.output_size)  # (B, T, F)

    def _cnn(self, words: Tensor) -> Tensor:
        e = self.embedding(words).transpose(1, 2)  # (N, C, W)
        h = self.conv(e)  # (N, H, W); the padding id embeds to zeros, like the conv's own zero padding
        pad = (words == 0).unsqueeze(1)  # (N, 1, W)
        return h.masked_fill(pad, float("-inf")).amax(dim=2)  # (N, H): max over the word's real characters

    def _lstm(self, words: Tensor, lengths: Tensor) -> Tensor:
        _, state = self.lstm(self.embedding(words), lengths=lengths)  # h (2, N, H): forward at the end, backward at 0
        return torch.cat([state.h[0], state.h[1]], dim=-1)  # (N, 2H)

"""Attention: the seq2seq scores of Bahdanau and Luong, and multi-head scaled dot-product attention.

Seq2seq attention (one decoder state against all encoder states). Every class has the same call,

    attn(query, keys, mask=None) -> (context, weights)

    query   (B, Q)     the decoder state s (Bahdanau: s_{i-1}; Luong: h_t)
    keys    (B, S, K)  the encoder states h_1 … h_S, also the values
    mask    (B, S)     bool, True at real positions; None means every position is real
    context (B, K)     c = Σ_s α_s h_s
    weights (B, S)     α = softmax(e) over the real positions, exactly 0 on padding

and differs only in the score e_s:

    additive (Bahdanau et al., 2015, eq. 6 / App. A.1.2):  e_s = vᵀ tanh(W_q q + W_k h_s + b)
    dot      (Luong et al., 2015, §3.1, "dot"):            e_s = qᵀ h_s
    general  (Luong et al., 2015, §3.1, "general"):        e_s = qᵀ W h_s

``precompute(keys)`` returns the part of the score that depends on the keys alone (W_k h_s + b for
additive, W h_s for general, the keys themselves for dot); a decoder computes it once per source sequence
and passes it back as ``attn(query, keys, mask, precomputed=...)`` at every step.

A row with no real position at all gets weights 0 and context 0 (never NaN).

:class:`MultiHeadAttention` (Vaswani et al., 2017, §3.2.2) is the Transformer's attention over whole
sequences, on ``torch.nn.functional.scaled_dot_product_attention``.
"""
from __future__ import annotations

from typing import Literal, Optional, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_tensor

__all__ = [
    "AdditiveAttention",
    "DotAttention",
    "GeneralAttention",
    "MultiHeadAttention",
    "ATTENTION_NAMES",
    "build_attention",
    "masked_softmax",
]

AttentionName = Literal["bahdanau", "luong-dot", "luong-general"]
ATTENTION_NAMES = get_args(AttentionName)


def masked_softmax(scores: Tensor, mask: Optional[Tensor]) -> Tensor:
    """softmax over the last dim of ``scores`` (B, S), restricted to ``mask`` (B, S) True; exactly 0 elsewhere.

    A row with no True gets all zeros (softmax of all −∞ is NaN; the final masked_fill replaces it, and its
    backward zeroes the NaN gradient on the same positions).
    """
    if mask is None:
        return torch.softmax(scores, dim=-1)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return weights.masked_fill(~mask, 0.0)


def _check_mask(mask, batch_size: int, length: int, *, name: str = "mask") -> Optional[Tensor]:
    """mask: None or a bool tensor (B, S), True at real positions."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a bool tensor of shape ({batch_size}, {length}), got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True at real positions), got dtype {mask.dtype}")
    if tuple(mask.shape) != (batch_size, length):
        raise ValueError(f"{name} must have shape (B, S) = ({batch_size}, {length}), got {tuple(mask.shape)}")
    return mask


def _check_positive(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class _Seq2SeqAttention(nn.Module):
    """The common call; subclasses define ``precompute`` and ``_score``."""

    query_size: int
    key_size: int

    def precompute(self, keys: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def _score(self, query: Tensor, precomputed: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(
        self, query: Tensor, keys: Tensor, mask: Optional[Tensor] = None, *, precomputed: Optional[Tensor] = None
    ) -> tuple[Tensor, Tensor]:
        check_tensor("query", query, ndim=2, last=self.query_size)
        check_tensor("keys", keys, ndim=3, last=self.key_size)
        B, S, _ = keys.shape
        if query.shape[0] != B:
            raise ValueError(f"query and keys must have the same batch size, got {query.shape[0]} and {B}")
        mask = _check_mask(mask, B, S)
        if precomputed is None:
            precomputed = self.precompute(keys)
        elif tuple(precomputed.shape[:2]) != (B, S):
            raise ValueError(
                f"precomputed must be self.precompute(keys) of shape ({B}, {S}, ·), got {tuple(precomputed.shape)}"
            )
        e = self._score(query, precomputed)  # (B, S)
        alpha = masked_softmax(e, mask)  # (B, S)
        context = torch.bmm(alpha.unsqueeze(1), keys).squeeze(1)  # (B, K)
        return context, alpha


class AdditiveAttention(_Seq2SeqAttention):
    """Additive attention (Bahdanau et al., 2015, §3.1 and App. A.1.2).

        e_s = vᵀ tanh(W_q q + W_k h_s + b)        α = softmax(e)        c = Σ_s α_s h_s

    W_q (A × Q), W_k (A × K), b (A) (the bias sits in W_k's Linear), v (A). Bahdanau's W_a, U_a, v_a.

    Args:
        query_size: Q. key_size: K. attention_size: A, the width of the hidden layer inside the score.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        for name, value in (("query_size", query_size), ("key_size", key_size), ("attention_size", attention_size)):
            _check_positive(name, value)
        self.query_size, self.key_size, self.attention_size = query_size, key_size, attention_size
        self.W_q = nn.Linear(query_size, attention_size, bias=False)
        self.W_k = nn.Linear(key_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def precompute(self, keys: Tensor) -> Tensor:
        """keys (B, S, K) -> W_k h_s + b (B, S, A)."""
        return self.W_k(keys)

    def _score(self, query: Tensor, precomputed: Tensor) -> Tensor:
        hidden = torch.tanh(self.W_q(query).unsqueeze(1) + precomputed)  # (B, S, A)
        return self.v(hidden).squeeze(-1)  # (B, S)


class DotAttention(_Seq2SeqAttention):
    """Dot-product attention (Luong et al., 2015, §3.1, "dot"): e_s = qᵀ h_s. No parameters; needs Q = K.

    Unscaled, as in the paper (the Transformer's 1/√d scaling is :class:`MultiHeadAttention`'s).
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        _check_positive("query_size", query_size)
        _check_positive("key_size", key_size)
        if query_size != key_size:
            raise ValueError(
                f"dot attention needs query_size == key_size, got query_size={query_size} and key_size={key_size}; "
                "use 'luong-general' or 'bahdanau' for different sizes"
            )
        self.query_size = self.key_size = query_size

    def precompute(self, keys: Tensor) -> Tensor:
        return keys

    def _score(self, query: Tensor, precomputed: Tensor) -> Tensor:
        return _row_scores(query, precomputed)


class GeneralAttention(_Seq2SeqAttention):
    """Bilinear attention (Luong et al., 2015, §3.1, "general"): e_s = qᵀ W h_s with W (Q × K), no bias."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        _check_positive("query_size", query_size)
        _check_positive("key_size", key_size)
        self.query_size, self.key_size = query_size, key_size
        self.W = nn.Linear(key_size, query_size, bias=False)  # weight (Q, K): W h_s

    def precompute(self, keys: Tensor) -> Tensor:
        """keys (B, S, K) -> W h_s (B, S, Q)."""
        return self.W(keys)

    def _score(self, query: Tensor, precomputed: Tensor) -> Tensor:
        return _row_scores(query, precomputed)


def _row_scores(query: Tensor, precomputed: Tensor) -> Tensor:
    """e_s = qᵀ p_s for every s: query (B, Q), precomputed (B, S, Q) -> (B, S).

    As a row vector times a matrix (qᵀ Pᵀ): on the CPU, bmm runs that about 10× faster than the matrix-vector
    form P q (measured at B=64, S=25..36, Q=128..256)."""
    return torch.bmm(query.unsqueeze(1), precomputed.transpose(1, 2)).squeeze(1)


def build_attention(
    name: AttentionName, query_size: int, key_size: int, attention_size: Optional[int] = None
) -> nn.Module:
    """The seq2seq attention called ``name``: "bahdanau" | "luong-dot" | "luong-general".

    ``attention_size`` (A) is for "bahdanau" only; None means A = key_size.
    """
    if name == "bahdanau":
        return AdditiveAttention(query_size, key_size, key_size if attention_size is None else attention_size)
    if name == "luong-dot":
        return DotAttention(query_size, key_size)
    if name == "luong-general":
        return GeneralAttention(query_size, key_size)
    raise ValueError(f"attention name must be one of {ATTENTION_NAMES}, got {name!r}")


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017, §3.2.1–3.2.2).

        head_i = softmax(Q W_i^Q (K W_i^K)ᵀ / √d + M) V W_i^V        d = E / h
        MHA(Q, K, V) = Concat(head_1, …, head_h) W^O

    M is 0 where a query may see a key and −∞ elsewhere: at padded keys (``key_padding_mask`` False) and,
    with ``causal=True``, at keys after the query (key j > query i, aligned top-left as torch's
    ``is_causal``). A query that may see no key at all gets a zero attention output (so only W^O's bias),
    where ``torch.nn.MultiheadAttention`` would give NaN.

    Weights load from ``torch.nn.MultiheadAttention``: ``in_proj_weight.chunk(3)`` are q/k/v_proj's weights.

    Args:
        embed_size: E. num_heads: h, dividing E. dropout: on the attention weights (training only).

    Shapes: query (B, Tq, E), key and value (B, Tk, E), key_padding_mask (B, Tk) bool, True at real keys
    -> (B, Tq, E).
    """

    def __init__(self, embed_size: int, num_heads: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        _check_positive("embed_size", embed_size)
        _check_positive("num_heads", num_heads)
        if embed_size % num_heads:
            raise ValueError(f"embed_size ({embed_size}) must be divisible by num_heads ({num_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.embed_size, self.num_heads, self.head_size = embed_size, num_heads, embed_size // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_size, embed_size)
        self.k_proj = nn.Linear(embed_size, embed_size)
        self.v_proj = nn.Linear(embed_size, embed_size)
        self.out_proj = nn.Linear(embed_size, embed_size)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        *,
        key_padding_mask: Optional[Tensor] = None,
        causal: bool = False,
    ) -> Tensor:
        E, h, d = self.embed_size, self.num_heads, self.head_size
        check_tensor("query", query, ndim=3, last=E)
        check_tensor("key", key, ndim=3, last=E)
        check_tensor("value", value, ndim=3, last=E)
        B, Tq, _ = query.shape
        Tk = key.shape[1]
        if key.shape[0] != B or tuple(value.shape[:2]) != tuple(key.shape[:2]):
            raise ValueError(
                f"query, key and value must share the batch size and key and value the length, got shapes "
                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        key_padding_mask = _check_mask(key_padding_mask, B, Tk, name="key_padding_mask")

        q = self.q_proj(query).view(B, Tq, h, d).transpose(1, 2)  # (B, h, Tq, d)
        k = self.k_proj(key).view(B, Tk, h, d).transpose(1, 2)  # (B, h, Tk, d)
        v = self.v_proj(value).view(B, Tk, h, d).transpose(1, 2)  # (B, h, Tk, d)

        allowed = self._allowed(key_padding_mask, causal, B, Tq, Tk, query.device)  # (B, 1, Tq, Tk) or None
        empty = None
        if allowed is not None:
            # A query row with no visible key would be softmax over all −∞ = NaN: let it see every key, then zero it.
            empty = ~allowed.any(dim=-1, keepdim=True)  # (B, 1, Tq, 1)
            allowed = allowed | empty
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)  # (B, h, Tq, d)
        if empty is not None:
            y = y.masked_fill(empty, 0.0)
        y = y.transpose(1, 2).reshape(B, Tq, E)  # (B, Tq, E): concatenated heads
        return self.out_proj(y)

    @staticmethod
    def _allowed(
        key_padding_mask: Optional[Tensor], causal: bool, B: int, Tq: int, Tk: int, device
    ) -> Optional[Tensor]:
        """One boolean mask for SDPA, True where query i may attend to key j: (B, 1, Tq, Tk), or None for all."""
        allowed = None
        if causal:
            allowed = torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril()  # (Tq, Tk)
            allowed = allowed.expand(B, 1, Tq, Tk)
        if key_padding_mask is not None:
            pad = key_padding_mask.to(device)[:, None, None, :]  # (B, 1, 1, Tk)
            allowed = pad.expand(B, 1, Tq, Tk) if allowed is None else allowed & pad
        return allowed


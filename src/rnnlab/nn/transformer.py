"""The Transformer baseline (Vaswani et al., 2017): encoder and decoder blocks, positions, encoder, decoder.

Each block is post-norm, as in the paper (§3.1, "LayerNorm(x + Sublayer(x))"), or pre-norm (Xiong et al.,
2020, "On Layer Normalization in the Transformer Architecture"), which trains without a learning-rate
warm-up and is what GPT-2 and most later models use; with pre-norm a final norm follows the last block.
The norm is LayerNorm (Ba et al., 2016) or RMSNorm (Zhang & Sennrich, 2019), both from ``torch.nn``.

Deviations from the paper: the feed-forward uses GELU (Hendrycks & Gimpel, 2016) rather than ReLU; inputs
are real vectors mapped by a Linear I → H rather than token embeddings, and are not scaled by √H.

Shapes: B batch, T (target) time, S source time, I input, H hidden (the model width, E in attention).
"""
from __future__ import annotations

import math
from typing import Literal, Optional, get_args

import torch
from torch import Tensor, nn

from ._checks import check_input, check_lengths, check_tensor
from .attention import MultiHeadAttention
from .masking import last_real, lengths_to_mask, masked_mean

__all__ = [
    "RMSNorm",
    "FeedForward",
    "TransformerEncoderBlock",
    "TransformerDecoderBlock",
    "SinusoidalPositions",
    "LearnedPositions",
    "TransformerEncoder",
    "TransformerDecoder",
    "NORMS",
    "NORM_POSITIONS",
    "POSITIONS",
]

RMSNorm = nn.RMSNorm  # y = x / sqrt(mean(x²) + ε) ⊙ g (Zhang & Sennrich, 2019); torch's own
Norm = Literal["layer", "rms"]
NormPosition = Literal["pre", "post"]
Positions = Literal["sinusoidal", "learned"]
NORMS = get_args(Norm)
NORM_POSITIONS = get_args(NormPosition)
POSITIONS = get_args(Positions)


def _check_choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_block_options(size, num_heads, ff_size, dropout, norm, norm_position) -> None:
    for name, value in (("hidden_size", size), ("num_heads", num_heads), ("ff_size", ff_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if size % num_heads:
        raise ValueError(
            f"hidden_size ({size}) must be divisible by num_heads ({num_heads}); "
            f"pick num_heads among the divisors of {size} or change hidden_size"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    _check_choice("norm", norm, NORMS)
    _check_choice("norm_position", norm_position, NORM_POSITIONS)


def make_norm(norm: Norm, size: int) -> nn.Module:
    """``"layer"`` -> ``torch.nn.LayerNorm(size)``; ``"rms"`` -> ``torch.nn.RMSNorm(size)``."""
    _check_choice("norm", norm, NORMS)
    return nn.LayerNorm(size) if norm == "layer" else RMSNorm(size)


class FeedForward(nn.Module):
    """FF(x) = W_2 Drop(GELU(W_1 x + b_1)) + b_2, position-wise (Vaswani et al., 2017, §3.3). (…, H) -> (…, H)."""

    def __init__(self, size: int, ff_size: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(size, ff_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_size, size))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TransformerEncoderBlock(nn.Module):
    """Self-attention and feed-forward, each with a residual connection and a norm N.

        pre-norm  (Xiong et al., 2020):   x = x + Drop(SA(N₁(x)));   x = x + Drop(FF(N₂(x)))
        post-norm (Vaswani et al., 2017): x = N₁(x + Drop(SA(x)));   x = N₂(x + Drop(FF(x)))

    SA is :class:`MultiHeadAttention` of x on itself; with ``causal=True`` position t sees positions ≤ t only.

    Args:
        size: H. num_heads: h, dividing H. ff_size: the feed-forward width (4H in the paper).
        dropout: on each sub-layer's output, inside FF and on the attention weights.
        norm: ``"layer"`` | ``"rms"``. norm_position: ``"pre"`` | ``"post"``.

    Shapes: x (B, T, H), key_padding_mask (B, T) bool True at real positions -> (B, T, H).
    """

    def __init__(
        self, size: int, num_heads: int, ff_size: int, *, dropout: float = 0.0, norm: Norm = "layer",
        norm_position: NormPosition = "pre",
    ) -> None:
        super().__init__()
        _check_block_options(size, num_heads, ff_size, dropout, norm, norm_position)
        self.norm_position = norm_position
        self.attn = MultiHeadAttention(size, num_heads, dropout=dropout)
        self.ff = FeedForward(size, ff_size, dropout=dropout)
        self.norm1 = make_norm(norm, size)
        self.norm2 = make_norm(norm, size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, key_padding_mask: Optional[Tensor] = None, causal: bool = False) -> Tensor:
        def sa(z):
            return self.attn(z, z, z, key_padding_mask=key_padding_mask, causal=causal)

        return self._sublayers(x, sa)

    def step(self, x: Tensor, cache: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """One new position of a causal stack: x (B, 1, H) -> (B, 1, H) and the grown cache of self-attention
        inputs (B, t + 1, H), as :meth:`TransformerDecoderBlock.step`."""
        sa, grown = _cached_self_attention(self.attn, cache)
        return self._sublayers(x, sa), grown[0]

    def _sublayers(self, x: Tensor, sa) -> Tensor:
        return _residual_sublayers(x, (sa, self.ff), (self.norm1, self.norm2), self.dropout, self.norm_position)


class TransformerDecoderBlock(nn.Module):
    """Causal self-attention, cross-attention over the encoder's memory, feed-forward (Vaswani et al., 2017, §3.1).

        pre-norm:  x = x + Drop(SA(N₁(x)));   x = x + Drop(CA(N₂(x), m));   x = x + Drop(FF(N₃(x)))
        post-norm: x = N₁(x + Drop(SA(x)));   x = N₂(x + Drop(CA(x, m)));   x = N₃(x + Drop(FF(x)))

    SA is causal (position t sees targets ≤ t); CA(x, m) attends from each target position to the memory m.

    Args: as :class:`TransformerEncoderBlock`.

    Shapes: x (B, T, H), memory (B, S, H), key_padding_mask (B, T) and memory_mask (B, S) bool True at real
    positions -> (B, T, H).
    """

    def __init__(
        self, size: int, num_heads: int, ff_size: int, *, dropout: float = 0.0, norm: Norm = "layer",
        norm_position: NormPosition = "pre",
    ) -> None:
        super().__init__()
        _check_block_options(size, num_heads, ff_size, dropout, norm, norm_position)
        self.norm_position = norm_position
        self.self_attn = MultiHeadAttention(size, num_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(size, num_heads, dropout=dropout)
        self.ff = FeedForward(size, ff_size, dropout=dropout)
        self.norm1 = make_norm(norm, size)
        self.norm2 = make_norm(norm, size)
        self.norm3 = make_norm(norm, size)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, memory: Tensor, *, key_padding_mask: Optional[Tensor] = None,
        memory_mask: Optional[Tensor] = None,
    ) -> Tensor:
        def sa(z):
            return self.self_attn(z, z, z, key_padding_mask=key_padding_mask, causal=True)

        return self._sublayers(x, sa, memory, memory_mask)

    def step(
        self, x: Tensor, memory: Tensor, cache: Optional[Tensor], *, memory_mask: Optional[Tensor] = None
    ) -> tuple[Tensor, Tensor]:
        """One new position for incremental decoding: x (B, 1, H) -> (B, 1, H), and the grown cache.

        ``cache`` (B, t, H) holds the self-attention inputs of the positions before (see
        :func:`_cached_self_attention`), so a step does not re-run them. The same numbers as :meth:`forward`'s
        last position.
        """
        sa, grown = _cached_self_attention(self.self_attn, cache)
        return self._sublayers(x, sa, memory, memory_mask), grown[0]

    def _sublayers(self, x: Tensor, sa, memory: Tensor, memory_mask: Optional[Tensor]) -> Tensor:
        def ca(z):
            return self.cross_attn(z, memory, memory, key_padding_mask=memory_mask)

        norms = (self.norm1, self.norm2, self.norm3)
        return _residual_sublayers(x, (sa, ca, self.ff), norms, self.dropout, self.norm_position)


def _residual_sublayers(x: Tensor, sublayers, norms, dropout: nn.Module, norm_position: NormPosition) -> Tensor:
    """Each sublayer f with a residual connection and its norm N: x + Drop(f(N(x))) (pre) or N(x + Drop(f(x)))
    (post)."""
    for f, norm in zip(sublayers, norms):
        x = x + dropout(f(norm(x))) if norm_position == "pre" else norm(x + dropout(f(x)))
    return x


def _cached_self_attention(attn: MultiHeadAttention, cache: Optional[Tensor]):
    """Self-attention for one new position over the cached inputs of the positions before it.

    Returns ``sa`` for :func:`_residual_sublayers` and a list that holds, once ``sa`` has run, the grown cache
    (B, t + 1, H): the self-attention inputs so far (N₁(x) for pre-norm, x for post-norm). The new position sees
    every cached one, so the causal mask is implicit.
    """
    grown: list = []

    def sa(z):
        grown.append(z if cache is None else torch.cat([cache, z], dim=1))
        return attn(z, grown[0], grown[0])

    return sa, grown


def sinusoids(length: int, size: int, *, device=None, dtype=None) -> Tensor:
    """PE(t, 2i) = sin(t / 10000^{2i/H}), PE(t, 2i+1) = cos(t / 10000^{2i/H}) (Vaswani et al., 2017, §3.5). (T, H)"""
    t = torch.arange(length, device=device, dtype=torch.float64).unsqueeze(1)  # (T, 1)
    inv_freq = torch.exp(torch.arange(0, size, 2, device=device, dtype=torch.float64) * (-math.log(10000.0) / size))
    angles = t * inv_freq  # (T, ⌈H/2⌉)
    pe = torch.zeros(length, size, device=device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : size // 2])
    return pe.to(dtype or torch.get_default_dtype())


class SinusoidalPositions(nn.Module):
    """x + PE[:T] with the fixed sinusoids of :func:`sinusoids`. A table of ``max_len`` rows is kept (not saved
    in the state dict); longer sequences get their sinusoids computed on the fly. (B, T, H) -> (B, T, H)."""

    def __init__(self, size: int, max_len: int = 1024) -> None:
        super().__init__()
        self.size, self.max_len = size, max_len
        self.register_buffer("pe", sinusoids(max_len, size), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        pe = self.pe[:T] if T <= self.max_len else sinusoids(T, self.size, device=x.device)
        return x + pe.to(x.dtype)  # (B, T, H)


class LearnedPositions(nn.Module):
    """x + P[:T], P a learned (max_len, H) table (Gehring et al., 2017; BERT, GPT). (B, T, H) -> (B, T, H)."""

    def __init__(self, size: int, max_len: int = 1024) -> None:
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, size)
        nn.init.normal_(self.embedding.weight, std=0.02)  # small next to the inputs, as GPT-2

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        if T > self.max_len:
            raise ValueError(
                f"sequence length T={T} exceeds max_len={self.max_len} of the learned positions; "
                "build the model with a larger max_len or use positions='sinusoidal'"
            )
        return x + self.embedding.weight[:T]  # (B, T, H)


def _make_positions(positions: Positions, size: int, max_len: int) -> nn.Module:
    _check_choice("positions", positions, POSITIONS)
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive integer, got {max_len!r}")
    return SinusoidalPositions(size, max_len) if positions == "sinusoidal" else LearnedPositions(size, max_len)


class _TransformerStack(nn.Module):
    """What the encoder and the decoder share: input Linear I → H, positions, dropout, blocks, final norm."""

    def __init__(
        self,
        block_cls,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int,
        num_heads: int,
        ff_size: Optional[int],
        dropout: float,
        norm: Norm,
        norm_position: NormPosition,
        positions: Positions,
        max_len: int,
    ) -> None:
        super().__init__()
        if not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be at least 1 (the number of Transformer blocks), got {num_layers!r}")
        ff_size = 4 * hidden_size if ff_size is None else ff_size
        _check_block_options(hidden_size, num_heads, ff_size, dropout, norm, norm_position)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.input_proj = nn.Linear(input_size, hidden_size)
        self.positions = _make_positions(positions, hidden_size, max_len)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            block_cls(hidden_size, num_heads, ff_size, dropout=dropout, norm=norm, norm_position=norm_position)
            for _ in range(num_layers)
        )
        # Pre-norm leaves the residual stream un-normalised; the final norm is standard (GPT-2, Xiong et al.).
        self.final_norm = make_norm(norm, hidden_size) if norm_position == "pre" else nn.Identity()

    def _embed(self, x: Tensor) -> Tensor:
        return self.dropout(self.positions(self.input_proj(x)))  # (B, T, H)

    def _embed_at(self, x_t: Tensor, t: int) -> Tensor:
        """One input (B, I) at position t -> (B, 1, H), the same as row t of :meth:`_embed`."""
        h = self.input_proj(x_t).unsqueeze(1)  # (B, 1, H)
        return self.dropout(h + self.positions(h.new_zeros(1, t + 1, h.shape[-1]))[:, -1:])


class TransformerEncoder(_TransformerStack):
    """A Transformer encoder under the encoder contract: ``encoder(x, lengths=None) -> (outputs, summary)``.

        h⁰ = Drop(W_in x + P)        hˡ = Blockˡ(hˡ⁻¹), l = 1 … L        outputs = N(hᴸ) (pre-norm) or hᴸ

    Padded positions are masked out as keys, so they never change a real position; their outputs are zero.
    summary: with ``causal=True`` each row's output at its last real position (it has seen the whole row);
    otherwise the mean of the outputs over the real positions.

    Args:
        input_size: I. hidden_size: H (= ``output_size``). num_layers: L blocks. num_heads: h, dividing H.
        ff_size: feed-forward width, None for 4H. dropout: see :class:`TransformerEncoderBlock`.
        norm: ``"layer"`` | ``"rms"``. norm_position: ``"pre"`` | ``"post"``.
        positions: ``"sinusoidal"`` | ``"learned"``. max_len: rows of the position table (learned: the longest T).
        causal: position t sees positions ≤ t only (language models).

    Shapes: x (B, T, I), lengths (B,) integers in [1, T] or None -> outputs (B, T, H), summary (B, H).
    """

    def __init__(
        self, input_size: int, hidden_size: int, *, num_layers: int = 2, num_heads: int = 4,
        ff_size: Optional[int] = None, dropout: float = 0.0, norm: Norm = "layer", norm_position: NormPosition = "pre",
        positions: Positions = "sinusoidal", max_len: int = 1024, causal: bool = False,
    ) -> None:
        super().__init__(
            TransformerEncoderBlock, input_size, hidden_size, num_layers=num_layers, num_heads=num_heads,
            ff_size=ff_size, dropout=dropout, norm=norm, norm_position=norm_position, positions=positions,
            max_len=max_len,
        )
        self.causal = causal

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        check_input(x, self.input_size, ndim=3)
        B, T, _ = x.shape
        lengths = check_lengths(lengths, B, T)
        mask = lengths_to_mask(lengths, T, device=x.device)  # (B, T) or None
        h = self._embed(x)  # (B, T, H)
        for block in self.blocks:
            h = block(h, key_padding_mask=mask, causal=self.causal)
        h = self.final_norm(h)
        if mask is not None:
            h = h * mask.unsqueeze(-1).to(h.dtype)  # zero past each length
        summary = last_real(h, lengths) if self.causal else masked_mean(h, mask)  # (B, H)
        return h, summary

    def step(self, x_t: Tensor, caches: Optional[list] = None) -> tuple[Tensor, list]:
        """Incremental encoding for a causal encoder (generation): x_t (B, I) -> (output (B, H), caches).

        ``caches`` (None at the first step) holds each block's self-attention inputs so far; the output equals
        :meth:`forward`'s at this position.
        """
        if not self.causal:
            raise ValueError("step() needs a causal encoder (causal=True): a bidirectional one reads the future")
        h = self._embed_at(x_t, 0 if caches is None else caches[0].shape[1])  # (B, 1, H)
        new = []
        for l, block in enumerate(self.blocks):
            h, cache = block.step(h, None if caches is None else caches[l])
            new.append(cache)
        return self.final_norm(h)[:, 0], new  # (B, H)


class TransformerDecoder(_TransformerStack):
    """A Transformer decoder for seq2seq, teacher-forced: causal self-attention and cross-attention to memory.

        h⁰ = Drop(W_in y + P)        hˡ = Blockˡ(hˡ⁻¹, m)        outputs = N(hᴸ) (pre-norm) or hᴸ

    Position t sees inputs y_1 … y_t only, so feeding the targets shifted right trains next-step prediction;
    greedy decoding re-runs it on the growing prefix. Outputs past each ``lengths`` are zero.

    Args: as :class:`TransformerEncoder` (``hidden_size`` is also the memory's width), without ``causal``.

    Shapes: y (B, T, I), memory (B, S, H), memory_lengths (B,) in [1, S] or None, lengths (B,) in [1, T]
    or None -> (B, T, H).
    """

    def __init__(
        self, input_size: int, hidden_size: int, *, num_layers: int = 2, num_heads: int = 4,
        ff_size: Optional[int] = None, dropout: float = 0.0, norm: Norm = "layer", norm_position: NormPosition = "pre",
        positions: Positions = "sinusoidal", max_len: int = 1024,
    ) -> None:
        super().__init__(
            TransformerDecoderBlock, input_size, hidden_size, num_layers=num_layers, num_heads=num_heads,
            ff_size=ff_size, dropout=dropout, norm=norm, norm_position=norm_position, positions=positions,
            max_len=max_len,
        )

    def forward(
        self, y: Tensor, memory: Tensor, *, memory_lengths: Optional[Tensor] = None, lengths: Optional[Tensor] = None
    ) -> Tensor:
        check_input(y, self.input_size, ndim=3, name="y")
        check_tensor("memory", memory, ndim=3, last=self.hidden_size)
        B, T, _ = y.shape
        if memory.shape[0] != B:
            raise ValueError(f"memory must have the batch size of y ({B}), got shape {tuple(memory.shape)}")
        S = memory.shape[1]
        lengths = check_lengths(lengths, B, T)
        try:
            memory_lengths = check_lengths(memory_lengths, B, S)
        except (TypeError, ValueError) as err:  # the message starts with "lengths"
            raise type(err)(f"memory_{err}") from None
        mask = lengths_to_mask(lengths, T, device=y.device)  # (B, T) or None
        memory_mask = lengths_to_mask(memory_lengths, S, device=y.device)  # (B, S) or None
        h = self._embed(y)  # (B, T, H)
        for block in self.blocks:
            h = block(h, memory, key_padding_mask=mask, memory_mask=memory_mask)
        h = self.final_norm(h)
        if mask is not None:
            h = h * mask.unsqueeze(-1).to(h.dtype)
        return h

    def step(
        self, y_t: Tensor, memory: Tensor, caches: Optional[list], *, memory_mask: Optional[Tensor] = None
    ) -> tuple[Tensor, list]:
        """Incremental decoding: the next input y_t (B, I) -> its output (B, H) and the grown per-block caches.

        ``caches`` is None at the first step; position t is the length of the caches. Equal to :meth:`forward`
        on the whole prefix, at its last position, for the cost of one position per block.
        """
        h = self._embed_at(y_t, 0 if caches is None else caches[0].shape[1])  # (B, 1, H)
        new = []
        for l, block in enumerate(self.blocks):
            h, cache = block.step(h, memory, None if caches is None else caches[l], memory_mask=memory_mask)
            new.append(cache)
        return self.final_norm(h)[:, 0], new  # (B, H)

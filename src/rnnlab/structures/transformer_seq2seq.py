"""The Transformer encoder-decoder (Vaswani et al., 2017): the baseline that seq2seq with attention is compared to.

Same interface and batch keys as :class:`~rnnlab.structures.seq2seq.Seq2Seq`. Decoding is incremental: each
block caches its self-attention inputs, so a step runs one position through the blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.masking import lengths_to_mask, masked_cross_entropy
from rnnlab.nn.transformer import TransformerDecoder, TransformerEncoder

from .base import InputLayer, batch_lengths, check_input_fields, check_special_tokens, require
from .seq2seq import generate_target


@dataclass(frozen=True)
class TransformerSeq2SeqConfig:
    tgt_vocab_size: int
    src_vocab_size: int = 0
    src_input_size: int = 0
    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 2
    """Blocks in the encoder and in the decoder."""
    num_heads: int = 4
    ff_size: int = 0
    """0 means 4 * hidden_size."""
    dropout: float = 0.0
    norm: str = "layer"
    norm_position: str = "pre"
    positions: str = "sinusoidal"
    max_len: int = 512
    bos_token: int = 1
    eos_token: int = 2

    def __post_init__(self) -> None:
        check_input_fields(self, "src_vocab_size", "src_input_size")
        check_special_tokens(self, self.tgt_vocab_size)


class TransformerSeq2Seq(nn.Module):
    """source (B, S) or (B, S, I) -> target logits (B, T, V); ``forward`` returns {"logits", "attention": None}."""

    def __init__(self, config: TransformerSeq2SeqConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.inputs = InputLayer(vocab_size=c.src_vocab_size, input_size=c.src_input_size, embedding_size=c.embedding_size)
        options = dict(num_layers=c.num_layers, num_heads=c.num_heads, ff_size=c.ff_size or None, dropout=c.dropout,
                       norm=c.norm, norm_position=c.norm_position, positions=c.positions, max_len=c.max_len)
        self.encoder = TransformerEncoder(self.inputs.output_size, c.hidden_size, **options)
        self.embedding = nn.Embedding(c.tgt_vocab_size, c.embedding_size)
        self.decoder = TransformerDecoder(c.embedding_size, c.hidden_size, **options)
        self.head = nn.Linear(c.hidden_size, c.tgt_vocab_size)

    def encode(self, src: Tensor, lengths: Optional[Tensor]) -> dict:
        memory, _ = self.encoder(self.inputs(src, name="x"), lengths)  # (B, S, H)
        mask = lengths_to_mask(lengths, memory.shape[1], device=memory.device)
        return {"memory": memory, "mask": mask, "lengths": lengths, "caches": None}

    def decode(self, prev: Tensor, state: dict) -> Tensor:
        """prev (B, t) = the begin token and the targets so far -> logits (B, t, V)."""
        h = self.decoder(self.embedding(prev), state["memory"], memory_lengths=state["lengths"])
        return self.head(h)

    def forward(self, batch: dict) -> dict:
        src = require(batch, "x", "the source sequences", "TransformerSeq2Seq")
        y = require(batch, "y", "target tokens (B, T) ending in the end token", "TransformerSeq2Seq")
        state = self.encode(src, batch_lengths(batch, src))
        prev = torch.cat([torch.full_like(y[:, :1], self.config.bos_token), y[:, :-1]], dim=1)  # shifted right
        return {"logits": self.decode(prev, state), "attention": None}

    def loss(self, batch: dict) -> Tensor:
        return masked_cross_entropy(self(batch)["logits"], batch["y"], batch.get("y_lengths"))

    @torch.no_grad()
    def generate(self, src: Tensor, lengths: Optional[Tensor] = None, *, max_len: int = 50, method: str = "greedy", **options) -> Tensor:
        """-> target tokens (B, ≤ max_len), each row ending at the end token. Options as in decoding."""
        return generate_target(self, _Decoder(self), src, lengths, max_len=max_len, method=method, **options)


class _Decoder:
    """Incremental decoding with a cache of each block's self-attention inputs (no prefix re-run)."""

    def __init__(self, model: TransformerSeq2Seq) -> None:
        self.model = model

    def step(self, tokens: Tensor, state: dict):
        m = self.model
        h, caches = m.decoder.step(m.embedding(tokens), state["memory"], state["caches"], memory_mask=state["mask"])
        return m.head(h), dict(state, caches=caches)  # (B, V)

    def reorder(self, state: dict, index: Tensor) -> dict:
        def rows(t):
            return None if t is None else t.index_select(0, index.to(t.device))

        caches = state["caches"]
        return {"memory": rows(state["memory"]), "mask": rows(state["mask"]), "lengths": rows(state["lengths"]),
                "caches": None if caches is None else [rows(c) for c in caches]}

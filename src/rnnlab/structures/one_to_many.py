"""One-to-many: a vector in (an image feature, a class, a seed), a token sequence out (captioning, generation).

The vector v conditions the decoder in one of the seed's two ways (Karpathy & Fei-Fei, 2015 feed it at the
first step; Mao et al., 2015 at every step), and optionally through the initial state as well
(Vinyals et al., 2015 "Show and Tell" start the LSTM from the image):

    u = W_v v                                       (the conditioning input)
    input_t = [embed(y_{t-1}); u]  if condition == "every" or t == 0,  else [embed(y_{t-1}); 0]
    h_0 = tanh(W_s v) for every layer              if init_state, else zeros

y_{-1} is the begin token. Training is teacher-forced; generation is greedy, beam or sampling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn import Recurrent
from rnnlab.nn.masking import masked_cross_entropy
from rnnlab.nn.state import LSTMState, map_state

from .base import batch_lengths, check_special_tokens, require
from .generation import evaluating, run_decoding

CONDITIONS = ("first", "every")


@dataclass(frozen=True)
class OneToManyConfig:
    feature_size: int
    """F: the size of the conditioning vector."""
    vocab_size: int
    """V: output tokens, including the begin and end tokens."""
    embedding_size: int = 64
    hidden_size: int = 128
    cell: str = "lstm"
    """lstm | gru | rnn"""
    num_layers: int = 1
    condition: str = "first"
    """first: the vector is an input at the first step only; every: at every step."""
    init_state: bool = False
    """Also start the decoder from h_0 = tanh(W_s v)."""
    dropout: float = 0.0
    bos_token: int = 1
    eos_token: int = 2

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if self.cell not in ("lstm", "gru", "rnn"):
            raise ValueError(f"cell must be 'lstm', 'gru' or 'rnn', got {self.cell!r}")
        check_special_tokens(self, self.vocab_size)


class OneToMany(nn.Module):
    """features (B, F) -> token logits (B, T, V). Batch keys: ``features``, ``y`` (B, T) tokens ending in eos, ``lengths``."""

    def __init__(self, config: OneToManyConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size)
        self.condition = nn.Linear(c.feature_size, c.embedding_size)  # W_v
        self.init = nn.Linear(c.feature_size, c.hidden_size) if c.init_state else None  # W_s
        self.decoder = Recurrent(c.cell, 2 * c.embedding_size, c.hidden_size, num_layers=c.num_layers, dropout=c.dropout)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_size, c.vocab_size)

    def _features(self, batch: dict) -> Tensor:
        v = require(batch, "features", "the conditioning vectors (B, F)", "OneToMany")
        if not isinstance(v, Tensor) or v.dim() != 2 or v.shape[1] != self.config.feature_size:
            raise ValueError(f"features must have shape (B, {self.config.feature_size}), got {tuple(getattr(v, 'shape', ()))}")
        return v

    def initial_state(self, v: Tensor):
        """h_0 from the vector (init_state=True) or zeros."""
        if self.init is None:
            return None
        h = torch.tanh(self.init(v)).unsqueeze(0).expand(self.config.num_layers, -1, -1).contiguous()  # (L, B, H)
        return LSTMState(h, torch.zeros_like(h)) if self.config.cell == "lstm" else h

    def _inputs(self, tokens: Tensor, u: Tensor, first: bool) -> Tensor:
        """tokens (B, T) of y_{t-1}, u (B, E) -> decoder inputs (B, T, 2E)."""
        emb = self.dropout(self.embedding(tokens))  # (B, T, E)
        cond = u.unsqueeze(1).expand(-1, tokens.shape[1], -1)  # (B, T, E)
        if self.config.condition == "first":
            keep = torch.zeros(tokens.shape[1], 1, device=u.device, dtype=u.dtype)
            if first:
                keep[0] = 1.0
            cond = cond * keep  # only the first step sees u
        return torch.cat([emb, cond], dim=-1)

    def forward(self, batch: dict) -> Tensor:
        v = self._features(batch)
        y = require(batch, "y", "target tokens (B, T)", "OneToMany")
        lengths = batch_lengths(batch, y)
        bos = torch.full_like(y[:, :1], self.config.bos_token)
        inputs = self._inputs(torch.cat([bos, y[:, :-1]], dim=1), self.condition(v), first=True)
        outputs, _ = self.decoder(inputs, self.initial_state(v), lengths)  # (B, T, H)
        return self.head(self.dropout(outputs))  # (B, T, V)

    def loss(self, batch: dict) -> Tensor:
        return masked_cross_entropy(self(batch), batch["y"], batch.get("lengths"))

    @torch.no_grad()
    def generate(self, features: Tensor, *, max_len: int = 30, method: str = "greedy", **options) -> Tensor:
        """features (B, F) -> tokens (B, ≤ max_len), ending at the end token (padded with it)."""
        v = self._features({"features": features})
        with evaluating(self):
            start = torch.full((v.shape[0],), self.config.bos_token, dtype=torch.long, device=v.device)
            state = {"h": self.initial_state(v), "u": self.condition(v), "t": 0}
            options.setdefault("end_token", self.config.eos_token)
            return run_decoding(_Decoder(self), start, state, method=method, max_len=max_len, **options).tokens


class _Decoder:
    """state: {"h": layer state (batch dim 1) or None, "u": (B, E), "t": steps taken}."""

    def __init__(self, model: OneToMany) -> None:
        self.model = model

    def step(self, tokens: Tensor, state: dict):
        m = self.model
        x = m._inputs(tokens.unsqueeze(1), state["u"], first=state["t"] == 0)[:, 0]  # (B, 2E)
        y, h = m.decoder.step(x, state["h"])
        return m.head(y), {"h": h, "u": state["u"], "t": state["t"] + 1}

    def reorder(self, state: dict, index: Tensor) -> dict:
        h = state["h"]
        return {
            "h": None if h is None else map_state(lambda t: t.index_select(1, index), h),
            "u": state["u"].index_select(0, index),
            "t": state["t"],
        }

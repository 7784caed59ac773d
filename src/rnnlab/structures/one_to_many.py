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

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.masking import masked_cross_entropy
from rnnlab.nn.state import State

from .base import Output, batch_lengths, check_choice, check_special_tokens, require
from .decoders import DecoderConfig, build_decoder, state_from_vector
from .decoding import reorder_state
from .generation import EndToken, Method, StepDecoder, evaluating, resolve_end_token, run_decoding

Condition = Literal["first", "every"]


@dataclass(frozen=True)
class OneToManyConfig:
    """The generator from a vector: its sizes, decoder, and how the vector conditions the decoder."""

    feature_size: int
    """F: the size of the conditioning vector."""
    vocab_size: int
    """V: output tokens, including the begin and end tokens."""
    embedding_size: int = 64
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The decoder's cell, hidden size H and layers."""
    condition: Condition = "first"
    """first: the vector is an input at the first step only; every: at every step."""
    init_state: bool = False
    """Also start the decoder from h_0 = tanh(W_s v)."""
    dropout: float = 0.0
    bos_token: int = 1
    eos_token: int = 2

    def __post_init__(self) -> None:
        check_choice("condition", self.condition, Condition)
        check_special_tokens(self, self.vocab_size)


class OneToMany(nn.Module):
    """features (B, F) -> token logits (B, T, V).

    Batch keys: ``features`` (B, F), ``y`` (B, T) tokens ending in the end token, ``lengths`` (optional).

    ``forward`` returns :class:`~rnnlab.structures.Output` with ``logits`` (B, T, V) (teacher-forced);
    ``state`` and ``attention`` are None.
    """

    def __init__(self, config: OneToManyConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size)
        self.condition = nn.Linear(c.feature_size, c.embedding_size)  # W_v
        self.init = nn.Linear(c.feature_size, c.decoder.hidden_size) if c.init_state else None  # W_s
        self.decoder = build_decoder(c.decoder, 2 * c.embedding_size, dropout=c.dropout)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.decoder.hidden_size, c.vocab_size)

    def _features(self, batch: dict) -> Tensor:
        v = require(batch, "features", "the conditioning vectors (B, F)", "OneToMany")
        if not isinstance(v, Tensor) or v.dim() != 2 or v.shape[1] != self.config.feature_size:
            given = tuple(getattr(v, "shape", ()))
            raise ValueError(f"features must have shape (B, {self.config.feature_size}), got {given}")
        return v

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        """The decoder's zero state: (L, B, H), or an LSTMState of two such tensors."""
        return self.decoder.initial_state(batch_size, device=device, dtype=dtype)

    def start_state(self, v: Tensor) -> Optional[State]:
        """The decoder's state before the first token: h_0 = tanh(W_s v) (init_state=True), else None (zeros)."""
        if self.init is None:
            return None
        return state_from_vector(torch.tanh(self.init(v)), self.config.decoder)  # (L, B, H)

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

    def forward(self, batch: dict) -> Output:
        v = self._features(batch)
        y = require(batch, "y", "target tokens (B, T)", "OneToMany")
        lengths = batch_lengths(batch, y)
        bos = torch.full_like(y[:, :1], self.config.bos_token)
        inputs = self._inputs(torch.cat([bos, y[:, :-1]], dim=1), self.condition(v), first=True)
        outputs, _ = self.decoder(inputs, self.start_state(v), lengths)  # (B, T, H)
        return Output(self.head(self.dropout(outputs)))  # (B, T, V)

    def loss(self, batch: dict) -> Tensor:
        return masked_cross_entropy(self(batch).logits, batch["y"], batch.get("lengths"))

    @torch.no_grad()
    def generate(
        self,
        features: Tensor,
        *,
        max_new_tokens: int = 30,
        method: Method = "greedy",
        beam_width: int = 4,
        length_penalty: float = 0.0,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        end_token: EndToken = "eos",
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """features (B, F) -> tokens (B, ≤ max_new_tokens), rows ending at the end token and padded with 0 after it.

        The options are those of :func:`~rnnlab.structures.generation.run_decoding`; ``end_token`` defaults to
        ``config.eos_token`` (see :data:`~rnnlab.structures.generation.EndToken`).
        """
        v = self._features({"features": features})
        with evaluating(self):
            start = torch.full((v.shape[0],), self.config.bos_token, dtype=torch.long, device=v.device)
            state = {"h": self.start_state(v), "u": self.condition(v), "t": 0}
            return run_decoding(
                _Decoder(self), start, state, method=method, max_new_tokens=max_new_tokens,
                end_token=resolve_end_token(end_token, self.config.eos_token), beam_width=beam_width,
                length_penalty=length_penalty, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
            ).tokens


class _Decoder(StepDecoder):
    """state: {"h": layer state (batch dim 1) or None, "u": (B, E), "t": steps taken}."""

    def step(self, tokens: Tensor, state: dict):
        m = self.model
        x = m._inputs(tokens.unsqueeze(1), state["u"], first=state["t"] == 0)[:, 0]  # (B, 2E)
        y, h = m.decoder.step(x, state["h"])
        return m.head(y), {"h": h, "u": state["u"], "t": state["t"] + 1}

    def reorder(self, state: dict, index: Tensor) -> dict:
        return {
            "h": reorder_state(state["h"], index, batch_dim=1),  # (L, B, H)
            "u": reorder_state(state["u"], index, batch_dim=0),  # (B, E)
            "t": state["t"],
        }

"""One-to-many: a vector in (an image feature, a class, a seed), a token sequence out (captioning, generation).

The vector v conditions the decoder in one of the seed's two ways (Karpathy & Fei-Fei, 2015 feed it at the
first step; Mao et al., 2015 at every step), and optionally through the initial state as well
(Vinyals et al., 2015 "Show and Tell" start the LSTM from the image):

    u = W_v v                                       (the conditioning input)
    input_t = [embed(y_{t-1}); u]  if condition == "every" or t == 0,  else [embed(y_{t-1}); 0]
    h_0 = tanh(W_s v) for every layer              if init_state, else zeros

y_{-1} is the begin token. Training is teacher-forced; generation is greedy, beam or sampling.

With ``memory_size`` > 0 the decoder also attends, at every step, over a set of S positions a_1 … a_S of width
K (``batch["memory"]`` (B, S, K), e.g. the cells of an image's CNN feature map): the soft attention of
"Show, Attend and Tell" (Xu et al., 2015, §4.2), scored by Bahdanau's additive attention on the top layer's
h_{t-1}:

    α_t = softmax_s(vᵀ tanh(W_q h_{t-1} + W_k a_s + b))          (B, S), summing to 1 over the positions
    ẑ_t = β_t Σ_s α_ts a_s,   β_t = σ(w_β h_{t-1} + b_β) if attention_gate else 1      (§4.2.1)
    h_t = cell([input_t; ẑ_t], h_{t-1});   logits = W_o [h_t; ẑ_t]

and ``attention_penalty`` λ adds the doubly stochastic regulariser λ · mean_b Σ_s (1 - Σ_t α_ts)² to the loss
(§4.2.1, eq. 14: every position should be looked at about once over the whole caption). Deviation: the paper's
deep output layer L_o(E y_{t-1} + L_h h_t + L_z ẑ_t) is W_o [h_t; ẑ_t] here, as in Seq2Seq's Bahdanau decoder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.attention import AdditiveAttention
from rnnlab.nn.masking import lengths_to_mask, masked_cross_entropy
from rnnlab.nn.state import LSTMState, State

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
    memory_size: int = 0
    """K: the width of each position of batch["memory"] (B, S, K) to attend over (e.g. an image's CNN feature
    map); 0 = no attention, the vector alone."""
    attention_size: int = 0
    """A: the width inside the additive attention score; 0 = decoder.hidden_size."""
    attention_gate: bool = False
    """Scale the attended context by β_t = σ(w_β h_{t-1} + b_β) (Xu et al., 2015, §4.2.1)."""
    attention_penalty: float = 0.0
    """λ of the doubly stochastic attention regulariser λ Σ_s (1 - Σ_t α_ts)², added to the loss (0 = off)."""

    def __post_init__(self) -> None:
        check_choice("condition", self.condition, Condition)
        check_special_tokens(self, self.vocab_size)
        for name in ("memory_size", "attention_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not self.attention_penalty >= 0:
            raise ValueError(f"attention_penalty must be >= 0, got {self.attention_penalty!r}")
        if self.memory_size == 0 and (self.attention_gate or self.attention_penalty):
            raise ValueError("attention_gate and attention_penalty need attention: set memory_size > 0")


class OneToMany(nn.Module):
    """features (B, F) -> token logits (B, T, V).

    Batch keys: ``features`` (B, F), ``y`` (B, T) tokens ending in the end token, ``lengths`` (optional), and
    with ``memory_size`` > 0 ``memory`` (B, S, K), the positions to attend over.

    ``forward`` returns :class:`~rnnlab.structures.Output` with ``logits`` (B, T, V) (teacher-forced) and, with
    attention, ``attention`` (B, T, S): the weights over the positions at each step (else None); ``state`` is None.
    """

    def __init__(self, config: OneToManyConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size)
        self.condition = nn.Linear(c.feature_size, c.embedding_size)  # W_v
        self.init = nn.Linear(c.feature_size, c.decoder.hidden_size) if c.init_state else None  # W_s
        H, K = c.decoder.hidden_size, c.memory_size
        self.attention = AdditiveAttention(H, K, c.attention_size or H) if K else None
        self.gate = nn.Linear(H, 1) if c.attention_gate else None  # w_β, b_β
        self.decoder = build_decoder(c.decoder, 2 * c.embedding_size + K, dropout=c.dropout)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(H + K, c.vocab_size)  # W_o

    def _features(self, batch: dict) -> Tensor:
        v = require(batch, "features", "the conditioning vectors (B, F)", "OneToMany")
        if not isinstance(v, Tensor) or v.dim() != 2 or v.shape[1] != self.config.feature_size:
            given = tuple(getattr(v, "shape", ()))
            raise ValueError(f"features must have shape (B, {self.config.feature_size}), got {given}")
        return v

    def _memory(self, memory: Optional[Tensor], batch_size: int) -> Optional[Tensor]:
        """The checked positions (B, S, K) to attend over; None without attention."""
        K = self.config.memory_size
        if K == 0:
            if memory is not None:
                raise ValueError("this OneToMany has no attention (memory_size=0): it takes no memory")
            return None
        if memory is None:
            raise ValueError(f"OneToMany with memory_size={K} needs the memory (B, S, {K}) to attend over")
        if not isinstance(memory, Tensor) or memory.dim() != 3 or memory.shape[0] != batch_size or memory.shape[2] != K:
            given = tuple(getattr(memory, "shape", ()))
            raise ValueError(f"memory must have shape ({batch_size}, S, {K}), got {given}")
        if memory.shape[1] == 0:
            raise ValueError("memory must have at least one position (S >= 1), got S = 0")
        return memory

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

    def start(self, v: Tensor, memory: Optional[Tensor] = None) -> dict:
        """The decoding state before the first token: {"h", "u" (B, E), "t": 0, "memory", "keys"}."""
        memory = self._memory(memory, v.shape[0])
        h = self.start_state(v)
        keys = None
        if self.attention is not None:
            if h is None:  # attention scores h_{t-1}, so the zero state must exist as a tensor
                h = self.initial_state(v.shape[0], device=v.device, dtype=v.dtype)
            keys = self.attention.precompute(memory)  # (B, S, A), once per caption
        return {"h": h, "u": self.condition(v), "t": 0, "memory": memory, "keys": keys}

    def step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict, Optional[Tensor]]:
        """tokens (B,) = y_{t-1} -> (logits (B, V), the next state, attention weights (B, S) or None)."""
        x = self._inputs(tokens.unsqueeze(1), state["u"], first=state["t"] == 0)[:, 0]  # (B, 2E)
        weights = None
        if self.attention is not None:
            h = state["h"]
            top = (h.h if isinstance(h, LSTMState) else h)[-1]  # h_{t-1} of the top layer, (B, H)
            z, weights = self.attention(top, state["memory"], precomputed=state["keys"])  # (B, K), (B, S)
            if self.gate is not None:
                z = torch.sigmoid(self.gate(top)) * z  # β_t ẑ_t
            x = torch.cat([x, z], dim=-1)  # (B, 2E + K)
        y, h = self.decoder.step(x, state["h"])  # (B, H)
        out = y if self.attention is None else torch.cat([y, z], dim=-1)  # (B, H + K)
        return self.head(self.dropout(out)), dict(state, h=h, t=state["t"] + 1), weights

    def forward(self, batch: dict) -> Output:
        v = self._features(batch)
        y = require(batch, "y", "target tokens (B, T)", "OneToMany")
        lengths = batch_lengths(batch, y)
        if self.attention is None:
            self._memory(batch.get("memory"), v.shape[0])
            # nothing depends on the step before but the recurrence: one call runs the fused kernel
            bos = torch.full_like(y[:, :1], self.config.bos_token)
            inputs = self._inputs(torch.cat([bos, y[:, :-1]], dim=1), self.condition(v), first=True)
            outputs, _ = self.decoder(inputs, self.start_state(v), lengths)  # (B, T, H)
            return Output(self.head(self.dropout(outputs)))  # (B, T, V)
        state = self.start(v, batch.get("memory"))
        prev = torch.full_like(y[:, 0], self.config.bos_token)  # y_{-1}
        logits, weights = [], []
        for t in range(y.shape[1]):
            step_logits, state, w = self.step(prev, state)
            logits.append(step_logits)
            weights.append(w)
            prev = y[:, t]
        return Output(torch.stack(logits, dim=1), attention=torch.stack(weights, dim=1))  # (B, T, V), (B, T, S)

    def loss(self, batch: dict) -> Tensor:
        out = self(batch)
        loss = masked_cross_entropy(out.logits, batch["y"], batch.get("lengths"))
        if self.config.attention_penalty > 0:
            loss = loss + self.config.attention_penalty * attention_penalty(out.attention, batch.get("lengths"))
        return loss

    @torch.no_grad()
    def generate(
        self,
        features: Tensor,
        *,
        memory: Optional[Tensor] = None,
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

        ``memory`` (B, S, K): the positions to attend over (models with ``memory_size`` > 0 only).

        The options are those of :func:`~rnnlab.structures.generation.run_decoding`; ``end_token`` defaults to
        ``config.eos_token`` (see :data:`~rnnlab.structures.generation.EndToken`).
        """
        v = self._features({"features": features})
        with evaluating(self):
            start = torch.full((v.shape[0],), self.config.bos_token, dtype=torch.long, device=v.device)
            state = self.start(v, memory)
            return run_decoding(
                _Decoder(self), start, state, method=method, max_new_tokens=max_new_tokens,
                end_token=resolve_end_token(end_token, self.config.eos_token), beam_width=beam_width,
                length_penalty=length_penalty, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
            ).tokens


def attention_penalty(weights: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """The doubly stochastic regulariser (Xu et al., 2015, eq. 14): weights (B, T, S) -> mean_b Σ_s (1 - Σ_t α_ts)²,
    summing over the real steps t < length only."""
    mask = lengths_to_mask(lengths, weights.shape[1], device=weights.device)
    if mask is not None:
        weights = weights * mask.unsqueeze(-1).to(weights.dtype)  # (B, T, S), zero past each length
    return ((1.0 - weights.sum(dim=1)) ** 2).sum(dim=-1).mean()


class _Decoder(StepDecoder):
    """state: the dict of :meth:`OneToMany.start`; its layer state "h" has the batch in dim 1, the rest in dim 0."""

    def step(self, tokens: Tensor, state: dict):
        logits, state, _ = self.model.step(tokens, state)
        return logits, state

    def reorder(self, state: dict, index: Tensor) -> dict:
        rest = reorder_state({k: v for k, v in state.items() if k not in ("h", "t")}, index, batch_dim=0)
        return {"h": reorder_state(state["h"], index, batch_dim=1), "t": state["t"], **rest}  # h: (L, B, H)

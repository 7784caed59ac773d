"""Encoder-decoder (seq2seq): a source sequence in, a target sequence of another length out (translation).

The context vector c starts the decoder (Sutskever et al., 2014; Cho et al., 2014), in one of three ways:

    context="last"    h_0 = s                  the encoder's summary (its last hidden state), as it is
    context="linear"  h_0 = tanh(W_c s)        a learned transform of it (the bridge for a bidirectional
                                               encoder or different sizes)
    context="pool"    h_0 = tanh(W_c mean_s(o_s))   a transform of all encoder states o_s (masked mean)

With attention the decoder also looks back at every encoder state at every step:

    bahdanau (Bahdanau et al., 2015):  ĉ_t = attn(h_{t-1}, o);  h_t = cell([e(y_{t-1}); ĉ_t], h_{t-1});
                                       logits = W_o [h_t; ĉ_t]
    luong-dot / luong-general (Luong et al., 2015, with input feeding, §3.3):
                                       h_t = cell([e(y_{t-1}); h̃_{t-1}], h_{t-1});  ĉ_t = attn(h_t, o);
                                       h̃_t = tanh(W_h [ĉ_t; h_t]);  logits = W_o h̃_t
    none:                              h_t = cell(e(y_{t-1}), h_{t-1});  logits = W_o h_t

Teacher forcing with a ratio (Bengio et al., 2015 scheduled sampling's per-step coin): each step feeds the
true previous token with probability ``teacher_forcing``, else the model's own greedy choice.

How ``forward`` runs: with the whole target known (teacher forcing 1, and always in evaluation) the decoder
without attention is one call of the recurrent layer; with attention, :mod:`.teacher_forcing` computes every
product that does not depend on the previous step once (the embeddings' input product, the keys, the head) and
keeps only the recurrence in the loop (for a one-layer LSTM as one autograd Function with a hand-written
backward, :mod:`.fused_attention_decoder`). With teacher forcing < 1 in training, ``decode_step`` runs step by
step (``_forward_steps``, also the reference the tests compare the other paths with); generation uses it too.
For an LSTM decoder, c_0 is zero; h_0 is repeated for every decoder layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.attention import build_attention
from rnnlab.nn.masking import lengths_to_mask, masked_cross_entropy, masked_mean
from rnnlab.nn.state import LSTMState

from .base import InputLayer, Output, batch_lengths, check_choice, check_input_fields, check_special_tokens, require
from .decoders import DecoderConfig, build_decoder, state_from_vector
from .decoding import reorder_state
from .encoders import EncoderConfig, build_encoder
from .generation import StepDecoder, TargetGenerator
from .teacher_forcing import teacher_forced

Context = Literal["last", "linear", "pool"]
Attention = Literal["none", "bahdanau", "luong-dot", "luong-general"]


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The encoder-decoder: its inputs, encoder, decoder, how the context reaches the decoder, and attention."""

    tgt_vocab_size: int
    """Target vocabulary, including the begin and end tokens."""
    src_vocab_size: int = 0
    """Source tokens (0 for feature inputs)."""
    src_input_size: int = 0
    """Source features per step (0 for token inputs)."""
    embedding_size: int = 64
    """The width of the source and target token embeddings."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The decoder's cell, hidden size H and layers."""
    context: Context = "linear"
    """last | linear | pool (see the module docstring)."""
    attention: Attention = "bahdanau"
    """none | bahdanau | luong-dot | luong-general"""
    attention_size: int = 0
    """bahdanau: the width inside the score; 0 means decoder.hidden_size."""
    teacher_forcing: float = 1.0
    """The probability of feeding the true previous token during training."""
    dropout: float = 0.0
    bos_token: int = 1
    eos_token: int = 2

    def __post_init__(self) -> None:
        check_input_fields(self, "src_vocab_size", "src_input_size")
        check_choice("context", self.context, Context)
        check_choice("attention", self.attention, Attention)
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be a probability in [0, 1], got {self.teacher_forcing}")
        enc_size = self.encoder.hidden_size * (2 if self.encoder.bidirectional else 1)
        H = self.decoder.hidden_size
        if self.context == "last" and enc_size != H:
            raise ValueError(
                f"context='last' passes the encoder's state as it is, so the encoder output size ({enc_size}) must "
                f"equal decoder.hidden_size ({H}): change one, or use context='linear'"
            )
        if self.attention == "luong-dot" and enc_size != H:
            raise ValueError(
                f"attention='luong-dot' scores h_tᵀ o_s, so the encoder output size ({enc_size}) must equal "
                f"decoder.hidden_size ({H}): change one, or use 'luong-general'"
            )
        check_special_tokens(self, self.tgt_vocab_size)


class Seq2Seq(TargetGenerator, nn.Module):
    """source (B, S) or (B, S, I) -> target logits (B, T, V).

    Batch keys: ``x`` the source, ``lengths`` its lengths (optional), ``y`` (B, T) target tokens ending in the
    end token, ``y_lengths`` (optional). ``forward`` returns :class:`~rnnlab.structures.Output` with ``logits``
    (B, T, V) and ``attention`` (B, T, S), the weights over the source (None with ``attention="none"``).
    ``generate(src, lengths, *, max_new_tokens=50, method="greedy", ...)``: see :class:`TargetGenerator`.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.inputs = InputLayer(vocab_size=c.src_vocab_size, input_size=c.src_input_size,
                                 embedding_size=c.embedding_size, dropout=c.dropout)
        self.encoder = build_encoder(c.encoder, self.inputs.output_size)
        E, H = self.encoder.output_size, c.decoder.hidden_size
        self.bridge = nn.Linear(E, H) if c.context != "last" else None  # W_c
        self.embedding = nn.Embedding(c.tgt_vocab_size, c.embedding_size)
        self.attention = None if c.attention == "none" else build_attention(c.attention, H, E, c.attention_size or H)
        extra = {"none": 0, "bahdanau": E}.get(c.attention, H)  # what joins e(y_{t-1}) at the decoder input
        self.decoder = build_decoder(c.decoder, c.embedding_size + extra, dropout=c.dropout)
        self.combine = nn.Linear(E + H, H) if c.attention.startswith("luong") else None  # W_h
        out_size = H + E if c.attention == "bahdanau" else H
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(out_size, c.tgt_vocab_size)  # W_o

    # -- encoder side -----------------------------------------------------------------------------
    def encode(self, src: Tensor, lengths: Optional[Tensor]) -> dict:
        """-> the decoder's starting state: {"h", "memory" (B, S, E), "mask", "keys", "feed"}."""
        x = self.inputs(src, name="x")
        outputs, summary = self.encoder(x, lengths)  # (B, S, E), (B, E)
        mask = lengths_to_mask(lengths, x.shape[1], device=x.device)
        c = self.config
        if c.context == "last":
            h0 = summary
        elif c.context == "linear":
            h0 = torch.tanh(self.bridge(summary))
        else:
            h0 = torch.tanh(self.bridge(masked_mean(outputs, mask)))
        keys = self.attention.precompute(outputs) if self.attention is not None else None
        feed = outputs.new_zeros(outputs.shape[0], c.decoder.hidden_size) if self.combine is not None else None
        return {"h": state_from_vector(h0, c.decoder), "memory": outputs, "mask": mask, "keys": keys, "feed": feed}

    # -- one decoder step -------------------------------------------------------------------------
    def decode_step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict, Optional[Tensor]]:
        """tokens (B,) = y_{t-1} -> (logits (B, V), new state, attention weights (B, S) or None)."""
        c = self.config
        e = self.dropout(self.embedding(tokens))  # (B, Emb)
        h = state["h"]
        weights = None
        if c.attention == "none":
            y, h = self.decoder.step(e, h)
            out = y
        elif c.attention == "bahdanau":
            top = (h.h if isinstance(h, LSTMState) else h)[-1]  # h_{t-1} of the top layer, (B, H)
            ctx, weights = self.attention(top, state["memory"], state["mask"], precomputed=state["keys"])
            y, h = self.decoder.step(torch.cat([e, ctx], dim=-1), h)
            out = torch.cat([y, ctx], dim=-1)  # (B, H + E)
        else:
            y, h = self.decoder.step(torch.cat([e, state["feed"]], dim=-1), h)
            ctx, weights = self.attention(y, state["memory"], state["mask"], precomputed=state["keys"])
            out = torch.tanh(self.combine(torch.cat([ctx, y], dim=-1)))  # h̃_t (B, H)
        new = dict(state, h=h, feed=out if self.combine is not None else None)
        return self.head(self.dropout(out)), new, weights

    # -- the interface ----------------------------------------------------------------------------
    def forward(self, batch: dict) -> Output:
        src = require(batch, "x", "the source sequences", "Seq2Seq")
        y = require(batch, "y", "target tokens (B, T) ending in the end token", "Seq2Seq")
        lengths = batch_lengths(batch, src)
        state = self.encode(src, lengths)
        force = self.training and self.config.teacher_forcing < 1.0
        if force:  # the previous token may be the model's own guess: step by step
            return self._forward_steps(y, state, force=True)
        if self.config.attention == "none":
            # nothing depends on the step before but the recurrence: one call over the whole target runs the
            # decoder on torch's fused kernel instead of T Python steps (the same numbers, see the tests)
            prev = torch.cat([torch.full_like(y[:, :1], self.config.bos_token), y[:, :-1]], dim=1)  # (B, T)
            outputs, _ = self.decoder(self.dropout(self.embedding(prev)), state["h"])  # (B, T, H)
            return Output(self.head(self.dropout(outputs)))
        # attention: every product that does not depend on the previous step runs once (teacher_forcing.py)
        logits, weights = teacher_forced(self, y, state)
        return Output(logits, attention=weights)

    def _forward_steps(self, y: Tensor, state: dict, *, force: bool) -> Output:
        """The decoder one :meth:`decode_step` at a time: with ``force`` each row's previous token is the truth
        with probability ``teacher_forcing``, else the model's greedy guess; without, always the truth (the
        reference that :func:`~rnnlab.structures.teacher_forcing.teacher_forced` is tested against)."""
        prev = torch.full_like(y[:, 0], self.config.bos_token)  # y_{-1}
        logits, weights = [], []
        for t in range(y.shape[1]):
            step_logits, state, w = self.decode_step(prev, state)
            logits.append(step_logits)
            weights.append(w)
            prev = y[:, t]
            if force:  # a per-row coin: the truth with probability teacher_forcing, else the model's guess
                coin = torch.rand(y.shape[0], device=y.device) < self.config.teacher_forcing
                prev = torch.where(coin, y[:, t], step_logits.argmax(-1))
        attention = None if weights[0] is None else torch.stack(weights, dim=1)  # (B, T, S)
        return Output(torch.stack(logits, dim=1), attention=attention)  # (B, T, V)

    def loss(self, batch: dict) -> Tensor:
        return masked_cross_entropy(self(batch).logits, batch["y"], batch.get("y_lengths"))

    def step_decoder(self) -> _Decoder:
        """This model as a :class:`~rnnlab.structures.decoding.Decoder` (one target token per step)."""
        return _Decoder(self)


class _Decoder(StepDecoder):
    """state: the dict of :meth:`Seq2Seq.encode`; its layer state "h" has the batch in dim 1, the rest in dim 0."""

    def step(self, tokens: Tensor, state: dict):
        logits, state, _ = self.model.decode_step(tokens, state)
        return logits, state

    def reorder(self, state: dict, index: Tensor) -> dict:
        rest = reorder_state({k: v for k, v in state.items() if k != "h"}, index, batch_dim=0)
        return {"h": reorder_state(state["h"], index, batch_dim=1), **rest}  # (L, B, H): batch is dim 1

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
For an LSTM decoder, c_0 is zero; h_0 is repeated for every decoder layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn import Recurrent
from rnnlab.nn.attention import build_attention
from rnnlab.nn.masking import lengths_to_mask, masked_cross_entropy, masked_mean
from rnnlab.nn.state import LSTMState, map_state

from .base import InputLayer, batch_lengths, check_input_fields, check_special_tokens, require
from .encoders import EncoderConfig, build_encoder
from .generation import evaluating, run_decoding

CONTEXTS = ("last", "linear", "pool")
ATTENTIONS = ("none", "bahdanau", "luong-dot", "luong-general")


@dataclass(frozen=True)
class Seq2SeqConfig:
    tgt_vocab_size: int
    """Target vocabulary, including the begin and end tokens."""
    src_vocab_size: int = 0
    """Source tokens (0 for feature inputs)."""
    src_input_size: int = 0
    """Source features per step (0 for token inputs)."""
    embedding_size: int = 64
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder_cell: str = "lstm"
    """lstm | gru | rnn"""
    decoder_hidden_size: int = 128
    decoder_layers: int = 1
    context: str = "linear"
    """last | linear | pool (see the module docstring)."""
    attention: str = "bahdanau"
    """none | bahdanau | luong-dot | luong-general"""
    attention_size: int = 0
    """bahdanau: the width inside the score; 0 means decoder_hidden_size."""
    teacher_forcing: float = 1.0
    """The probability of feeding the true previous token during training."""
    dropout: float = 0.0
    bos_token: int = 1
    eos_token: int = 2

    def __post_init__(self) -> None:
        check_input_fields(self, "src_vocab_size", "src_input_size")
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {self.context!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.decoder_cell not in ("lstm", "gru", "rnn"):
            raise ValueError(f"decoder_cell must be 'lstm', 'gru' or 'rnn', got {self.decoder_cell!r}")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be a probability in [0, 1], got {self.teacher_forcing}")
        enc_size = self.encoder.hidden_size * (2 if self.encoder.bidirectional else 1)
        if self.context == "last" and enc_size != self.decoder_hidden_size:
            raise ValueError(
                f"context='last' passes the encoder's state as it is, so the encoder output size ({enc_size}) must "
                f"equal decoder_hidden_size ({self.decoder_hidden_size}): change one, or use context='linear'"
            )
        if self.attention == "luong-dot" and enc_size != self.decoder_hidden_size:
            raise ValueError(
                f"attention='luong-dot' scores h_tᵀ o_s, so the encoder output size ({enc_size}) must equal "
                f"decoder_hidden_size ({self.decoder_hidden_size}): change one, or use 'luong-general'"
            )
        check_special_tokens(self, self.tgt_vocab_size)


class Seq2Seq(nn.Module):
    """source (B, S) or (B, S, I) -> target logits (B, T, V).

    Batch keys: ``x`` the source, ``lengths`` its lengths (optional), ``y`` (B, T) target tokens ending in the
    end token, ``y_lengths`` (optional). ``forward`` returns ``{"logits": (B, T, V), "attention": (B, T, S) or None}``.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.inputs = InputLayer(vocab_size=c.src_vocab_size, input_size=c.src_input_size, embedding_size=c.embedding_size, dropout=c.dropout)
        self.encoder = build_encoder(c.encoder, self.inputs.output_size)
        E, H = self.encoder.output_size, c.decoder_hidden_size
        self.bridge = nn.Linear(E, H) if c.context != "last" else None  # W_c
        self.embedding = nn.Embedding(c.tgt_vocab_size, c.embedding_size)
        self.attention = None if c.attention == "none" else build_attention(c.attention, H, E, c.attention_size or H)
        extra = {"none": 0, "bahdanau": E}.get(c.attention, H)  # what joins e(y_{t-1}) at the decoder input
        self.decoder = Recurrent(c.decoder_cell, c.embedding_size + extra, H, num_layers=c.decoder_layers, dropout=c.dropout)
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
        h0 = h0.unsqueeze(0).expand(c.decoder_layers, -1, -1).contiguous()  # (L, B, H)
        state = LSTMState(h0, torch.zeros_like(h0)) if c.decoder_cell == "lstm" else h0
        keys = self.attention.precompute(outputs) if self.attention is not None else None
        feed = outputs.new_zeros(outputs.shape[0], c.decoder_hidden_size) if self.combine is not None else None
        return {"h": state, "memory": outputs, "mask": mask, "keys": keys, "feed": feed}

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
    def forward(self, batch: dict) -> dict:
        src = require(batch, "x", "the source sequences", "Seq2Seq")
        y = require(batch, "y", "target tokens (B, T) ending in the end token", "Seq2Seq")
        lengths = batch_lengths(batch, src)
        state = self.encode(src, lengths)
        force = self.training and self.config.teacher_forcing < 1.0
        if self.config.attention == "none" and not force:
            # nothing depends on the step before but the recurrence: one call over the whole target runs the
            # decoder on torch's fused kernel instead of T Python steps (the same numbers, see the tests)
            prev = torch.cat([torch.full_like(y[:, :1], self.config.bos_token), y[:, :-1]], dim=1)  # (B, T)
            outputs, _ = self.decoder(self.dropout(self.embedding(prev)), state["h"])  # (B, T, H)
            return {"logits": self.head(self.dropout(outputs)), "attention": None}
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
        return {"logits": torch.stack(logits, dim=1), "attention": attention}  # (B, T, V)

    def loss(self, batch: dict) -> Tensor:
        out = self(batch)
        return masked_cross_entropy(out["logits"], batch["y"], batch.get("y_lengths"))

    @torch.no_grad()
    def generate(self, src: Tensor, lengths: Optional[Tensor] = None, *, max_len: int = 50, method: str = "greedy", **options) -> Tensor:
        """-> target tokens (B, ≤ max_len), each row ending at the end token. Options as in decoding."""
        return generate_target(self, _Decoder(self), src, lengths, max_len=max_len, method=method, **options)


def generate_target(model, decoder, src: Tensor, lengths: Optional[Tensor], *, max_len: int, method: str, **options) -> Tensor:
    """What every encoder-decoder's ``generate`` does: encode, start from the begin token, decode."""
    with evaluating(model):
        lengths = batch_lengths({"lengths": lengths}, model.inputs(src, name="x"))
        state = model.encode(src, lengths)
        start = torch.full((src.shape[0],), model.config.bos_token, dtype=torch.long, device=src.device)
        options.setdefault("end_token", model.config.eos_token)
        return run_decoding(decoder, start, state, method=method, max_len=max_len, **options).tokens


class _Decoder:
    def __init__(self, model: Seq2Seq) -> None:
        self.model = model

    def step(self, tokens: Tensor, state: dict):
        logits, state, _ = self.model.decode_step(tokens, state)
        return logits, state

    def reorder(self, state: dict, index: Tensor) -> dict:
        def rows(t):
            return None if t is None else t.index_select(0, index)

        return {
            "h": map_state(lambda t: t.index_select(1, index), state["h"]),  # (L, B, H): batch is dim 1
            "memory": rows(state["memory"]),
            "mask": rows(state["mask"]),
            "keys": rows(state["keys"]),
            "feed": rows(state["feed"]),
        }

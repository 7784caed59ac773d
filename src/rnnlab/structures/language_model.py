"""Language model: predict the next token at every step (Mikolov et al., 2010; the char-RNN of Karpathy, 2015).

Stateful: with a recurrent encoder the state comes in with the batch and goes out with the loss, so the
trainer can carry it across chunks (truncated BPTT) and a server across requests (streaming).
Weight tying (Press & Wolf, 2017; Inan et al., 2017) shares the embedding with the output layer.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.masking import lengths_to_mask, masked_cross_entropy, to_device
from rnnlab.nn.state import reset_rows

from .base import InputLayer, Output, batch_lengths, require
from .decoding import reorder_state
from .encoders import RECURRENT_KINDS, EncoderConfig, build_encoder
from .generation import Method, StepDecoder, evaluating, run_decoding


@dataclass(frozen=True)
class LanguageModelConfig:
    """The language model: vocabulary, embedding, a causal encoder, weight tying."""

    vocab_size: int
    """V: tokens in the vocabulary."""
    embedding_size: int = 128
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Must be causal: a unidirectional recurrent encoder, the window model, or a causal CNN/Transformer."""
    tie_weights: bool = False
    """Share the embedding matrix with the output layer (needs embedding_size == the encoder's output size)."""
    dropout: float = 0.0
    """Dropout on the embeddings and on the encoder's outputs."""

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {self.vocab_size}")
        e = self.encoder
        if e.bidirectional:
            raise ValueError("a language model cannot read the future: set encoder.bidirectional=False")
        if e.kind in ("cnn", "transformer") and not e.causal:
            raise ValueError(f"a language model needs a causal encoder: set encoder.causal=True for kind={e.kind!r}")
        if self.tie_weights and self.embedding_size != e.hidden_size:
            raise ValueError(
                "tie_weights needs embedding_size == encoder.hidden_size, "
                f"got {self.embedding_size} and {e.hidden_size}"
            )


class LanguageModel(nn.Module):
    """tokens (B, T) -> next-token logits (B, T, V).

    Batch keys for ``loss``: ``x`` (B, T) tokens, ``y`` (B, T) the next tokens, optional ``lengths`` (B,),
    ``state`` (the carried state of a recurrent encoder), ``reset`` (B,) bool (rows whose state starts
    from zeros: a document boundary) and ``ends`` (B,) bool (rows whose document ends in this chunk: their
    state is not carried on, it is zeros; with ``lengths`` this lets the recurrence run over the padding,
    see :func:`_ends`).

    ``forward`` returns :class:`~rnnlab.structures.Output` with ``logits`` (B, T, V) and ``state``, the encoder's
    state after the last step to pass on as the next batch's ``state`` (None for encoders without one);
    ``attention`` is None.
    """

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        self.config = config
        self.inputs = InputLayer(vocab_size=config.vocab_size, input_size=0, embedding_size=config.embedding_size,
                                 dropout=config.dropout)
        self.encoder = build_encoder(config.encoder, config.embedding_size)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, config.vocab_size)
        if config.tie_weights:
            self.head.weight = self.inputs.embedding.weight

    @property
    def stateful(self) -> bool:
        """True when the encoder is recurrent: the state can be carried across calls."""
        return self.config.encoder.kind in RECURRENT_KINDS

    def forward(self, batch: dict) -> Output:
        """-> Output(logits (B, T, V), state). The state is None for encoders without one."""
        x = self.inputs(require(batch, "x", "token ids (B, T)", "LanguageModel"))
        lengths = batch_lengths(batch, x)
        state = batch.get("state")
        if self.stateful:
            if state is not None and batch.get("reset") is not None:
                state = reset_rows(state, to_device(batch["reset"], x.device))
            ends = _ends(batch.get("ends"), x)
            # on the CPU (lengths are there; the Trainer keeps ends there too): no wait for a GPU
            if ends is not None and lengths is not None and bool((batch["ends"].cpu() | (lengths == x.shape[1])).all()):
                lengths = None  # every row cut short ends its document: one call over the padding (_ends)
            outputs, state = self.encoder.forward_with_state(x, state, lengths)  # (B, T, H)
            if ends is not None:
                state = reset_rows(state, ends)  # the ended documents' state is not carried on
        else:
            outputs, _ = self.encoder(x, lengths)
            state = None
        return Output(self.head(self.dropout(outputs)), state)  # (B, T, V)

    def loss_and_state(self, batch: dict):
        """The mean cross-entropy (nats per token) over real positions, and the state to carry on."""
        x = require(batch, "x", "token ids (B, T)", "LanguageModel")
        if not (isinstance(x, Tensor) and x.dim() == 2):
            self(batch)  # raises the input layer's message
        y = require(batch, "y", "the next tokens (B, T)", "LanguageModel.loss")
        if tuple(y.shape) != tuple(x.shape):
            raise ValueError(f"y must have shape {tuple(x.shape)} like x, got {tuple(y.shape)}")
        # checked before the forward: on a GPU the range check waits for the device, idle at this point
        lengths = batch_lengths(batch, x)
        y = _real_targets(y, lengths, self.config.vocab_size)
        logits, state, _ = self(batch)
        return masked_cross_entropy(logits, y, lengths), state

    def loss(self, batch: dict) -> Tensor:
        return self.loss_and_state(batch)[0]

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        *,
        max_new_tokens: int,
        method: Method = "sample",
        beam_width: int = 4,
        length_penalty: float = 0.0,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        end_token: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        banned_tokens: Sequence[int] = (),
    ) -> Tensor:
        """prompt (B, P) long, P ≥ 1 -> (B, P + N) with the N ≤ max_new_tokens generated tokens appended.

        ``method``: 'greedy' | 'beam' | 'sample'; the options are those of
        :func:`~rnnlab.structures.generation.run_decoding`. ``end_token`` None (the default) generates exactly
        ``max_new_tokens`` tokens; a token id finishes a row there (later positions hold 0). ``banned_tokens``
        are never generated (their logits are set to -inf): e.g. ``<unk>``, which is no text.
        """
        if not isinstance(prompt, Tensor) or prompt.dim() != 2 or prompt.shape[1] < 1:
            raise ValueError(
                f"prompt must be a (B, P) tensor of token ids with P >= 1, got {getattr(prompt, 'shape', prompt)}"
            )
        self.inputs(prompt, name="prompt")  # validates the ids
        with evaluating(self):
            if self.stateful:
                decoder = _RecurrentLMDecoder(self)
            elif self.config.encoder.kind == "transformer":
                decoder = _TransformerLMDecoder(self)
            else:
                decoder = _PrefixLMDecoder(self)
            state = decoder.prime(prompt[:, :-1])
            if banned_tokens:
                decoder = _Banning(decoder, banned_tokens, self.config.vocab_size)
            out = run_decoding(
                decoder, prompt[:, -1], state, method=method, max_new_tokens=max_new_tokens, end_token=end_token,
                beam_width=beam_width, length_penalty=length_penalty, temperature=temperature, top_k=top_k,
                top_p=top_p, generator=generator,
            )
        return torch.cat([prompt, out.tokens.to(prompt.device)], dim=1)


class _Banning:
    """A decoder whose ``banned`` tokens have logits -inf: no decoding method can choose them."""

    def __init__(self, decoder, banned: Sequence[int], vocab_size: int) -> None:
        ids = sorted({int(i) for i in banned})
        if any(not 0 <= i < vocab_size for i in ids) or len(ids) >= vocab_size:
            raise ValueError(f"banned_tokens must be ids in [0, {vocab_size}) leaving at least one allowed, got {ids}")
        self.decoder, self.ids = decoder, ids
        self.index: Optional[Tensor] = None  # the ids as a tensor on the logits' device, made at the first step

    def step(self, tokens: Tensor, state):
        logits, state = self.decoder.step(tokens, state)
        if self.index is None or self.index.device != logits.device:
            self.index = torch.tensor(self.ids, device=logits.device)
        return logits.index_fill(1, self.index, float("-inf")), state  # (B, V)

    def reorder(self, state, index: Tensor):
        return self.decoder.reorder(state, index)


class _RecurrentLMDecoder(StepDecoder):
    """One recurrent step per token; the state is the layer state (batch is its dim 1)."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__(model)
        # looked up once: at batch 1 a token costs tens of microseconds, and each module attribute lookup counts
        self.embedding, self.encoder_step, self.head = model.inputs.embedding, model.encoder.step, model.head

    def prime(self, tokens: Tensor):
        if tokens.shape[1] == 0:
            return None
        return self.model({"x": tokens}).state

    def step(self, tokens: Tensor, state):
        y, state = self.encoder_step(self.embedding(tokens), state)  # (B, E) -> (B, H)
        return self.head(y), state  # (B, V)

    def reorder(self, state, index: Tensor):
        return reorder_state(state, index, batch_dim=1)  # (L, B, H)


class _TransformerLMDecoder(StepDecoder):
    """A causal Transformer steps incrementally: the state is each block's cache of self-attention inputs."""

    def prime(self, tokens: Tensor):
        caches = None
        for t in range(tokens.shape[1]):
            _, caches = self.step(tokens[:, t], caches)
        return caches

    def step(self, tokens: Tensor, caches):
        m = self.model
        h, caches = m.encoder.step(m.inputs.embedding(tokens), caches)  # (B, H)
        return m.head(h), caches  # (B, V)

    def reorder(self, caches, index: Tensor):
        return reorder_state(caches, index, batch_dim=0)  # a list of (B, t, H), or None before the first step


class _PrefixLMDecoder(StepDecoder):
    """The window and CNN encoders re-read the prefix: the state is the tokens so far (B, t)."""

    def prime(self, tokens: Tensor):
        return tokens

    def step(self, tokens: Tensor, prefix: Tensor):
        prefix = torch.cat([prefix, tokens.unsqueeze(1)], dim=1)  # (B, t + 1)
        logits = self.model({"x": prefix}).logits  # (B, t + 1, V)
        return logits[:, -1], prefix

    def reorder(self, prefix: Tensor, index: Tensor):
        return reorder_state(prefix, index, batch_dim=0)


def _ends(ends: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    """The batch's ``ends`` (B,) bool on ``x``'s device, checked (None when absent).

    Rows whose document ends in this chunk hand on zeros (their next chunk would reset them anyway). That makes
    the padding of a batch with ``lengths`` harmless when every row cut short ends its document: a causal
    encoder's outputs at a row's real positions do not depend on what follows them, the masked loss gives the
    padding's outputs no gradient, and the only other difference, the state after the padding instead of after
    the row's last real token, is replaced by zeros. So such a batch runs in one uncut call with the same loss,
    gradients and carried state as running every row to its length; on the CPU torch's kernel per distinct
    length, or its packed kernel, cost 1.2-4.7x that (issue 12, benchmarks/bf16_split.py)."""
    if ends is None:
        return None
    if tuple(ends.shape) != (x.shape[0],):
        raise ValueError(f"ends must be a (B,) bool tensor, B={x.shape[0]}, got shape {tuple(ends.shape)}")
    return to_device(ends, x.device).bool()


def _real_targets(y: Tensor, lengths: Optional[Tensor], V: int) -> Tensor:
    """``y`` with padding positions set to 0, after checking that the targets at real positions are token ids
    in [0, V): cross-entropy would fail with an index error (or a device assert on CUDA) that names neither y
    nor the vocabulary."""
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"y must hold token ids (an integer tensor (B, T)), got dtype {y.dtype}")
    mask = lengths_to_mask(lengths, y.shape[1], device=y.device)
    real = y if mask is None else y.masked_fill(~mask, 0)
    if real.numel():
        low, high = torch.stack(torch.aminmax(real)).tolist()  # one wait on a GPU
        if low < 0 or high >= V:
            raise ValueError(f"y (the next tokens) must lie in [0, {V}) (vocab_size, the model's vocabulary), "
                             f"got min {low} and max {high}")
    return real

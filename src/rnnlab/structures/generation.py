"""The bridge from structures to the decoding algorithms: one call that picks greedy, beam or sampling.

Every structure that generates names its options the same way (explicit keywords, no ``**options``):
``max_new_tokens`` (the most tokens to generate), ``method`` ('greedy' | 'beam' | 'sample'), ``beam_width``,
``length_penalty``, ``temperature``, ``top_k``, ``top_p``, ``end_token`` and ``generator``; their meaning is
that of :mod:`rnnlab.structures.decoding`.
"""
from __future__ import annotations

import typing
from contextlib import contextmanager
from typing import Any, Literal, Optional, Union

import torch
from torch import Tensor

from . import decoding
from .base import batch_lengths, check_choice

Method = Literal["greedy", "beam", "sample"]
METHODS = typing.get_args(Method)

EndToken = Union[int, None, Literal["eos"]]
"""``"eos"``: stop a row at the structure's ``config.eos_token``; an int: at that token; None: never
(every row gets exactly ``max_new_tokens`` tokens)."""


@contextmanager
def evaluating(model):
    """Run the block in eval mode (no dropout), then put the model back in the mode it was in.

    A model already in eval mode throughout is left alone: switching walks every submodule twice, which costs
    more than a few generated tokens at batch 1."""
    was_training = model.training
    switch = was_training or any(m.training for m in model.modules())
    if switch:
        model.eval()
    try:
        yield model
    finally:
        if switch:
            model.train(was_training)


class StepDecoder:
    """The base of the structures' adapters to :class:`decoding.Decoder`: it holds the model it steps."""

    def __init__(self, model: Any) -> None:
        self.model = model


def run_decoding(
    decoder: decoding.Decoder,
    start_tokens: Tensor,
    state: Any,
    *,
    method: Method,
    max_new_tokens: int,
    end_token: Optional[int] = None,
    beam_width: int = 4,
    length_penalty: float = 0.0,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> decoding.Decoded:
    """Decode with ``method`` ('greedy' | 'beam' | 'sample'); returns :class:`decoding.Decoded`."""
    check_choice("method", method, Method)
    if method == "greedy":
        return decoding.greedy(decoder, start_tokens, state, max_new_tokens=max_new_tokens, end_token=end_token)
    if method == "beam":
        return decoding.beam_search(
            decoder, start_tokens, state, beam_width=beam_width, max_new_tokens=max_new_tokens, end_token=end_token,
            length_penalty=length_penalty,
        )
    return decoding.sample(
        decoder, start_tokens, state, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
        top_p=top_p, end_token=end_token, generator=generator,
    )


def resolve_end_token(end_token: EndToken, eos_token: int) -> Optional[int]:
    """``"eos"`` -> the structure's end token; an int or None as given."""
    return eos_token if isinstance(end_token, str) and end_token == "eos" else end_token


class TargetGenerator:
    """``generate`` of the encoder-decoders (Seq2Seq, TransformerSeq2Seq): encode, start from the begin token, decode.

    The structure provides ``inputs`` (its input layer), ``encode(src, lengths) -> state``, ``config.bos_token``,
    ``config.eos_token`` and ``step_decoder() -> decoding.Decoder``.
    """

    @torch.no_grad()
    def generate(
        self,
        src: Tensor,
        lengths: Optional[Tensor] = None,
        *,
        max_new_tokens: int = 50,
        method: Method = "greedy",
        beam_width: int = 4,
        length_penalty: float = 0.0,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        end_token: EndToken = "eos",
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """src (B, S) or (B, S, I) -> target tokens (B, ≤ max_new_tokens), rows ending at the end token and
        padded with 0 after it. The options are those of :func:`run_decoding`; ``end_token`` see :data:`EndToken`."""
        with evaluating(self):
            lengths = batch_lengths({"lengths": lengths}, self.inputs(src, name="x"))
            state = self.encode(src, lengths)
            start = torch.full((src.shape[0],), self.config.bos_token, dtype=torch.long, device=src.device)
            return run_decoding(
                self.step_decoder(), start, state, method=method, max_new_tokens=max_new_tokens,
                end_token=resolve_end_token(end_token, self.config.eos_token), beam_width=beam_width,
                length_penalty=length_penalty, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
            ).tokens

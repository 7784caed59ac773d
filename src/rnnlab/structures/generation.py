"""The bridge from structures to the decoding algorithms: one call that picks greedy, beam or sampling."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import torch
from torch import Tensor

from . import decoding



METHODS = ("greedy", "beam", "sample")


@contextmanager
def evaluating(model):
    """Run the block in eval mode (no dropout), then put the model back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def run_decoding(
    decoder,
    start_tokens: Tensor,
    state,
    *,
    method: str,
    max_len: int,
    end_token: Optional[int] = None,
    beam_width: int = 4,
    length_penalty: float = 0.0,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
):
    """Decode with ``method`` ('greedy' | 'beam' | 'sample'); returns :class:`decoding.Decoded`."""
    if method == "greedy":
        return decoding.greedy(decoder, start_tokens, state, max_len=max_len, end_token=end_token)
    if method == "beam":
        return decoding.beam_search(
            decoder, start_tokens, state, beam_width=beam_width, max_len=max_len, end_token=end_token,
            length_penalty=length_penalty,
        )
    if method == "sample":
        return decoding.sample(
            decoder, start_tokens, state, max_len=max_len, temperature=temperature, top_k=top_k, top_p=top_p,
            end_token=end_token, generator=generator,
        )
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")

"""Text generation one token at a time, so that a response can stream each token as it is sampled.

The same numbers as :meth:`LanguageModel.generate` (and so ``rnnlab generate``) for the same seed: the prompt
primes the state with one forward, each step runs the encoder's ``step``, and tokens are chosen as
:func:`rnnlab.structures.decoding.sample` chooses them (temperature 0 or ``method='greedy'``: argmax).
Models without a recurrent state (window, CNN, Transformer) re-read the prefix at every step.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any, Optional

import torch

from rnnlab.structures.decoding import filter_logits

from .stepping import TokenStepper


@dataclass(frozen=True)
class Sampling:
    """The sampling options of one generation (the bundle's ``sample`` settings overridden by the request)."""

    max_new_tokens: int
    temperature: float
    top_k: Optional[int]
    top_p: Optional[float]
    method: str
    seed: int


def sampling(config: dict, request: dict, max_tokens: int) -> Sampling:
    """The bundle's settings (config.json ``textgen.sample``) with the request's non-None values on top."""
    from rnnlab.tasks.textgen import SampleConfig
    from rnnlab.training.checkpoint import from_dict

    stored = (config.get("textgen") or {}).get("sample") or {}
    sample = from_dict(SampleConfig, stored) if stored else SampleConfig()
    names = {f.name for f in fields(SampleConfig)}
    sample = replace(sample, **{k: v for k, v in request.items() if k in names and v is not None})
    n = min(sample.max_new_tokens, max_tokens) if request.get("max_new_tokens") is None else sample.max_new_tokens
    seed = sample.seed if request.get("seed") is None else request["seed"]
    method = request.get("method") or "sample"
    if sample.temperature == 0:
        method = "greedy"
    return Sampling(n, sample.temperature or 1.0, sample.top_k, sample.top_p, method, seed)


class TokenText:
    """Token ids -> text pieces, decoding the whole so far: a BPE token that ends inside a character waits."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.ids, self.text = tokenizer, [], ""

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        piece, self.text = text[len(self.text):], text
        return piece


@torch.no_grad()
def generate_tokens(model: Any, stepper: Optional[TokenStepper], prompt_ids: list[int], s: Sampling, *,
                    banned: list[int], probe: bool = False, deadline: Optional[float] = None) -> Iterator[dict]:
    """Yield ``{"id", "hidden"?, "gates"?}`` per generated token; stops after ``s.max_new_tokens`` or at ``deadline``
    (time.monotonic()), raising TimeoutError there."""
    device = next(model.parameters()).device
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(s.seed)
    banned_index = torch.tensor(sorted(set(banned)), dtype=torch.long, device=device)
    stateful = stepper is not None
    if stateful:
        state = model({"x": prompt[:, :-1]}).state if prompt.shape[1] > 1 else stepper.initial_state()
    token = prompt[:, -1]  # (1,)
    prefix = prompt
    for _ in range(s.max_new_tokens):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        extra: dict = {}
        if stateful:
            out, state = stepper.step(token, state, probe=probe)
            logits = out["logits"]  # (1, V), banned already -inf
            if probe:
                extra = {"hidden": _row(out["hidden"]),
                         "gates": {k[5:]: _row(v) for k, v in out.items() if k.startswith("gate_")}}
        else:
            logits = model({"x": prefix}).logits[:, -1]  # (1, V)
            if len(banned_index):
                logits = logits.index_fill(1, banned_index, float("-inf"))
        token = _choose(logits, s, generator)  # (1,)
        if not stateful:
            prefix = torch.cat([prefix, token.unsqueeze(1)], dim=1)
        yield {"id": int(token), **extra}


def _choose(logits: torch.Tensor, s: Sampling, generator: torch.Generator) -> torch.Tensor:
    if s.method == "greedy":
        return logits.argmax(-1)
    filtered = filter_logits(logits.float(), temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
    probs = torch.log_softmax(filtered, dim=-1).exp()  # (1, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _row(t: torch.Tensor) -> list[float]:
    return [round(float(v), 4) for v in t[0]]

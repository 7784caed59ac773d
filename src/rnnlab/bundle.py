"""``rnnlab.load(path) -> Bundle``: a trained model with everything needed to use it from Python.

A bundle directory (written by ``rnnlab train TASK``, see ``training/checkpoint.py``) loads into a
:class:`Bundle`: the model in eval mode, its tokenizer, the whole config, the metrics, the task, and
``predict``/``generate`` that run the task's own code on the loaded model (nothing is loaded twice).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch

from rnnlab.training.checkpoint import Bundle as _StoredBundle
from rnnlab.training.checkpoint import load_bundle

GENERATIVE = ("textgen",)
"""The tasks whose bundles ``generate`` text from a prompt."""


@dataclasses.dataclass(frozen=True)
class Bundle(_StoredBundle):
    """A loaded bundle: ``model`` (eval mode, on ``map_location``), ``tokenizer`` (the text tokenizer the model
    reads, None for tasks without one), ``config`` (config.json), ``metrics``, ``task``, ``path``, ``assets``.

    >>> bundle = rnnlab.load("runs/textgen/bundle")                    # doctest: +SKIP
    >>> bundle.generate("The ", max_new_tokens=50, temperature=0.7)    # doctest: +SKIP
    >>> list(rnnlab.load("runs/classify/bundle").predict(["a fine film"]))  # doctest: +SKIP
    """

    tokenizer: Any = None

    def predict(self, inputs: Union[str, Iterable[str]], **options) -> list[dict]:
        """The task's predictions for ``inputs`` (one string or several), one dict each, as ``rnnlab predict``
        prints them; ``options`` are the task's predict options (``rnnlab predict BUNDLE --help``)."""
        from rnnlab import tasks

        if self.task is None:
            raise ValueError(f"{self.path} records no task, so it has no predict: use bundle.model directly")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        return list(tasks.get(self.task).predict(self, inputs, **options))

    def generate(self, prompt: str, *, max_new_tokens: Optional[int] = None, temperature: Optional[float] = None,
                 top_k: Optional[int] = None, top_p: Optional[float] = None,
                 method: Optional[Literal["sample", "greedy", "beam"]] = None, seed: Optional[int] = None) -> str:
        """``prompt`` and its continuation. Every option left None takes the bundle's own sample setting
        (``config.json``, ``sample``), as ``rnnlab generate`` does. Only generative tasks (textgen)."""
        if self.task not in GENERATIVE:
            raise ValueError(f"generate is for text-generation bundles ({', '.join(GENERATIVE)}); {self.path} is a "
                             f"{self.task or 'task-less'!r} bundle: use bundle.predict(...)")
        from rnnlab.tasks import textgen

        options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                   "method": method, "seed": seed}
        sample, seed, method = textgen._sampler(self.config, options)
        return textgen.generate_text(self.model, self.tokenizer, prompt, sample, seed=seed, method=method)


def load(path: Union[str, Path], map_location: Union[str, torch.device, None] = None) -> Bundle:
    """Load the bundle directory ``path``; the weights go to ``map_location`` (None = the CPU). Nothing is
    unpickled. The tokenizer is the bundle's ``vocab`` (or, for translation, ``source_vocab``) asset."""
    stored = load_bundle(path, map_location=map_location if map_location is not None else "cpu")
    fields = {f.name: getattr(stored, f.name) for f in dataclasses.fields(_StoredBundle)}
    return Bundle(**fields, tokenizer=_tokenizer(stored))


def _tokenizer(stored: _StoredBundle) -> Any:
    from rnnlab.data.tokenize import KINDS, tokenizer_from_json

    for name in ("vocab", "source_vocab"):
        data = stored.assets.get(name)
        if isinstance(data, dict) and data.get("kind") in KINDS:
            try:
                return tokenizer_from_json(data)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{stored.path / (name + '.json')} is not a valid tokenizer: {e}") from None
    return None

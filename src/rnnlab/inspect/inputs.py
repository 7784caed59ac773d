"""A bundle and an input text -> the model and one complete batch to inspect, with the input's units as strings.

The only task-specific part of inspection: each task tokenizes its input its own way (the bundle's tokenizer or
vocabularies, its normalisation and length limit) and needs a target for the loss whose gradient is shown. The
target is what the model itself predicts (the next characters of the text for a language model; the predicted
class, tags or translation otherwise), so the gradients show what drives the model's own answer.

Bad input is stated, never silent: an input longer than the model's limit (or ``max_length``) is cut, with a
warning naming both lengths; characters or words the tokenizer never saw are mapped to ``<unk>`` with a warning
naming them (``unknown="error"``: a ValueError naming them instead).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import torch
from torch import nn

from rnnlab import tasks

Unknown = Literal["unk", "error"]

DEFAULT_INPUTS = {
    "textgen": ('The "print()" function (see [1] and (2)) writes text.\n'
                'Call print("hello", end="") to stay on the line.'),
    "classify": "The function returns a list of strings (see the tutorial) and raises an error.",
    "tag": "John Smith flew from Paris to Berlin on 3 May 2021 .",
    "translate": "March 3, 2021",
}
"""What is inspected when no input is given, per task (quotes and brackets for the built-in signals)."""


@dataclass
class Inspected:
    """A bundle's model and one batch of one input, ready for every inspect function."""

    task: str
    model: nn.Module
    batch: dict
    """x (1, T), lengths (1,), and the target the loss reads (y, plus chars for a tagger)."""
    units: list
    """The T input units as strings (characters, words or subwords), aligned with the batch's steps."""
    target_units: Optional[list] = None
    """Per output step (tags, translation tokens, the next characters), or None for one output per sequence."""
    prediction: str = ""
    """The model's answer, in words, for the report."""
    warnings: list = field(default_factory=list)
    """Stated changes to the input: truncation, unknown characters."""
    text: str = ""
    """The text as inspected (after normalisation and truncation)."""
    bundle: str = ""


def load_inspected(bundle: Union[str, Path], text: Optional[str] = None, *, max_length: int = 300,
                   unknown: Unknown = "unk") -> Inspected:
    """The bundle's model (eval mode) and a batch of ``text`` (None: the task's :data:`DEFAULT_INPUTS`)."""
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"--max_length must be an integer of at least 2, got {max_length!r}")
    if unknown not in ("unk", "error"):
        raise ValueError(f"--unknown must be 'unk' or 'error', got {unknown!r}")
    task = tasks.task_of(bundle)
    builder = _BUILDERS.get(task)
    if builder is None:
        raise ValueError(f"rnnlab inspect does not know how to read an input for task {task!r} yet; it reads "
                         f"{', '.join(_BUILDERS)} bundles (use the Python API rnnlab.inspect with your own batch)")
    text = DEFAULT_INPUTS[task] if text is None else text
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the input is empty: give --input TEXT or a file with some text")
    out = builder(str(bundle), text, max_length, unknown)
    out.model.eval()
    out.bundle = str(bundle)
    return out


# --- shared pieces ---------------------------------------------------------------------------------------

def _split_units(tokenizer, text: str, ids: list) -> list:
    """The tokens of ``text`` as strings, one per id."""
    if tokenizer.kind == "char":
        return list(text)
    if tokenizer.kind == "word":
        units = tokenizer.split(text)
        if len(units) == len(ids):
            return units
    return [tokenizer.decode([i]) for i in ids]


def _check_unknown(tokenizer, ids: list, units: list, unknown: str, warnings: list, where: str = "tokenizer") -> None:
    """Warn about (or refuse) the units that the char/word tokenizer maps to <unk> (id 0)."""
    if getattr(tokenizer, "kind", None) not in ("char", "word"):
        return  # byte-level BPE knows every byte
    unseen = list(dict.fromkeys(u for i, u in zip(ids, units) if i == 0 and u != "<unk>"))
    _report_unknown(unseen, "character" if tokenizer.kind == "char" else "word", unknown, warnings, where)


def _report_unknown(unseen: list, what: str, unknown: str, warnings: list, where: str) -> None:
    if not unseen:
        return
    shown = ", ".join(repr(u) for u in unseen[:8]) + (f" and {len(unseen) - 8} more" if len(unseen) > 8 else "")
    if unknown == "error":
        raise ValueError(f"the input holds {what}s the bundle's {where} never saw: {shown} (use --unknown unk to "
                         "map them to <unk>)")
    warnings.append(f"{len(unseen)} {what}(s) the bundle's {where} never saw, mapped to <unk>: {shown}")


def _cut(ids: list, units: list, limit: int, why: str, warnings: list) -> tuple[list, list]:
    if len(ids) <= limit:
        return ids, units
    warnings.append(f"the input has {len(ids)} tokens; inspecting the first {limit} ({why})")
    return ids[:limit], units[:limit]


def _long(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


# --- per task ----------------------------------------------------------------------------------------------

def _textgen(bundle: str, text: str, max_length: int, unknown: str) -> Inspected:
    from rnnlab.tasks.textgen import load_textgen

    model, tokenizer, _ = load_textgen(bundle)
    warnings: list = []
    ids = tokenizer.encode(text)
    units = _split_units(tokenizer, text, ids)
    _check_unknown(tokenizer, ids, units, unknown, warnings)
    enc = model.config.encoder
    limit, why = max_length + 1, f"--max_length {max_length}"
    if enc.kind == "transformer" and enc.positions == "learned" and enc.max_len + 1 < limit:
        limit, why = enc.max_len + 1, f"the model's learned positions reach {enc.max_len}"
    ids, units = _cut(ids, units, limit, why, warnings)
    if len(ids) < 2:
        raise ValueError(f"a language model is inspected on the next-token loss: the input needs at least 2 tokens, "
                         f"got {len(ids)}")
    x, y = _long([ids[:-1]]), _long([ids[1:]])
    return Inspected("textgen", model, {"x": x, "y": y, "lengths": _long([len(ids) - 1])}, units[:-1],
                     target_units=units[1:], prediction="next-token loss on the input itself", warnings=warnings,
                     text="".join(units))


def _classify(bundle: str, text: str, max_length: int, unknown: str) -> Inspected:
    from rnnlab.tasks.classify import load_classifier, normalise

    model, pipeline, labels, _ = load_classifier(bundle)
    tokenizer = pipeline.tokenizer
    warnings: list = []
    clean = normalise(text, lowercase=pipeline.lowercase, leading_space=tokenizer.kind == "word")
    ids = tokenizer.encode(clean) or [0]
    units = _split_units(tokenizer, clean, ids) if clean else ["<unk>"]
    _check_unknown(tokenizer, ids, units, unknown, warnings)
    limit = min(pipeline.max_length, max_length)
    why = f"the bundle's --max_length {pipeline.max_length}" if limit == pipeline.max_length else \
        f"--max_length {max_length}"
    ids, units = _cut(ids, units, limit, why, warnings)
    batch = {"x": _long([ids]), "lengths": _long([len(ids)])}
    with torch.no_grad():
        probs = model(batch).logits.softmax(-1)[0]
    k = int(probs.argmax())
    batch["y"] = _long([k])
    return Inspected("classify", model, batch, units, prediction=f"{labels[k]} (p = {float(probs[k]):.3f})",
                     warnings=warnings, text="".join(units))


def _tag(bundle: str, text: str, max_length: int, unknown: str) -> Inspected:
    from rnnlab.data.batching import pad_collate
    from rnnlab.tasks.tag import load_tagger

    model, encoder, _, _ = load_tagger(bundle)
    warnings: list = []
    tokens = text.split()
    if len(tokens) > max_length:
        warnings.append(f"the input has {len(tokens)} words; inspecting the first {max_length} "
                        f"(--max_length {max_length})")
        tokens = tokens[:max_length]
    example = encoder.example(tokens)
    unseen = list(dict.fromkeys(t for t, i in zip(tokens, example["x"]) if i == encoder.words.unk_id))
    _report_unknown(unseen, "word", unknown, warnings, "word vocabulary")
    batch = pad_collate([example])
    batch["lengths"] = _long([len(tokens)])
    with torch.no_grad():
        tags = model.predict(batch["x"], batch["lengths"], batch.get("chars"))
    batch["y"] = tags
    names = [encoder.tags[int(i)] for i in tags[0]]
    return Inspected("tag", model, batch, [t + " " for t in tokens], target_units=names,
                     prediction=" ".join(f"{w}/{t}" for w, t in zip(tokens, names)), warnings=warnings,
                     text=" ".join(tokens))


def _translate(bundle: str, text: str, max_length: int, unknown: str) -> Inspected:
    from rnnlab.tasks.translate import EOS, SPECIALS, _truncate, decode_target, load_translator, translate_ids

    t = load_translator(bundle)
    warnings: list = []
    source = text.strip()
    ids = t.source.encode(source)
    units = _split_units(t.source, source, ids)
    _check_unknown(t.source, ids, units, unknown, warnings, "source tokenizer")
    limit = min(t.config.max_source_length, max_length)
    why = f"the bundle's --max_source_length {t.config.max_source_length}" \
        if limit == t.config.max_source_length else f"--max_length {max_length}"
    ids, units = _cut(ids, units, limit, why, warnings)
    out = _truncate(translate_ids(t.model, [ids], batch_size=1, max_new_tokens=t.config.max_target_length + 1)[0])
    if not out:
        out = [EOS]
    batch = {"x": _long([ids]), "lengths": _long([len(ids)]), "y": _long([out]), "y_lengths": _long([len(out)])}
    target = [t.target.decode([i - SPECIALS]) if i >= SPECIALS else "</s>" for i in out]
    return Inspected("translate", t.model, batch, units, target_units=target,
                     prediction=decode_target(t.target, out), warnings=warnings, text="".join(units))


_BUILDERS: dict[str, Callable] = {"textgen": _textgen, "classify": _classify, "tag": _tag, "translate": _translate}

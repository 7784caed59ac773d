"""The bundles a server was started with: loaded once, named, described for ``/models``, run per task.

A request names a model only by the name it was given at start-up; nothing here reads a path from a request.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch
from torch import nn

from rnnlab import tasks

# Tasks whose predict inputs are values (text lines), so the generic /predict endpoint may pass them on.
# A task whose inputs name files (audio, images) must not receive strings from the network as paths; a new
# task opts in by setting ``SERVE_INPUTS = "text"`` in its module.
TEXT_INPUT_TASKS = frozenset({"textgen", "classify", "tag", "translate"})


@dataclass
class Served:
    """One bundle as the server holds it."""

    name: str
    task: str
    path: Path
    module: Any
    """The task module (its ``predict`` and ``PredictOptions``)."""
    model: nn.Module
    config: dict
    metrics: dict
    extra: dict = field(default_factory=dict)
    """What the task's loader returned besides the model (tokenizer, pipeline, labels, encoder, ...)."""

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict:
        """The ``/models`` entry: task, sizes, metrics, what it can do."""
        from .stepping import stepper_for

        stepper = stepper_for(self)
        return {
            "name": self.name, "task": self.task, "parameters": self.parameters,
            "model_type": self.config.get("model_type"), "sizes": _sizes(self.config.get("model_config", {})),
            "metrics": _json_safe(self.metrics), "endpoints": endpoints(self),
            "streaming": stepper is not None,
            "session_state_bytes": stepper.state_bytes() if stepper is not None else None,
            "predict_options": predict_options(self.module),
        }


def default_name(path: Path) -> str:
    """``runs/poems/bundle`` -> ``poems`` (the run's name); any other folder -> its own name."""
    path = path.resolve()
    return path.parent.name if path.name == "bundle" and path.parent.name else path.name


def load_models(bundles: dict[str, Union[str, Path]]) -> dict[str, Served]:
    """name -> :class:`Served`. A missing or damaged bundle raises FileNotFoundError/ValueError naming it."""
    served = {}
    for name, path in bundles.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"model name {name!r} must be a non-empty string without '/'")
        served[name] = load_one(name, Path(path).expanduser())
    return served


def name_bundles(paths: list[str], names: Optional[list[str]] = None) -> dict[str, Path]:
    """The names of ``paths`` (``names`` where given, else :func:`default_name`); duplicates refused."""
    names = list(names or [])
    if len(names) > len(paths):
        raise ValueError(f"--name was given {len(names)} times for {len(paths)} bundle(s): one name per bundle at most")
    out: dict[str, Path] = {}
    for i, p in enumerate(paths):
        path = Path(p).expanduser()
        name = names[i] if i < len(names) else default_name(path)
        if name in out:
            raise ValueError(f"two bundles are named {name!r} ({out[name]} and {path}): give each a name with "
                             "--name NAME (in the order of the bundles)")
        out[name] = path
    return out


def load_one(name: str, path: Path) -> Served:
    task = tasks.task_of(path)  # FileNotFoundError / ValueError naming config.json
    module = tasks.get(task)
    loader = _LOADERS.get(task)
    if loader is not None:
        model, extra = loader(path)
    else:
        from rnnlab.tasks._common import load_task_bundle

        model, extra = load_task_bundle(path, task).model, {}
    from rnnlab.training.checkpoint import load_bundle

    bundle = load_bundle(path)  # config and metrics as stored (cheap next to the loader's work)
    model.eval()
    return Served(name, task, path, module, model, bundle.config, bundle.metrics, extra)


def _load_textgen(path: Path):
    from rnnlab.tasks import textgen

    model, tokenizer, config = textgen.load_textgen(path)
    return model, {"tokenizer": tokenizer, "banned": textgen.special_ids(tokenizer)}


def _load_classify(path: Path):
    from rnnlab.tasks import classify

    model, pipeline, labels, _ = classify.load_classifier(path)
    return model, {"pipeline": pipeline, "labels": labels}


def _load_tag(path: Path):
    from rnnlab.tasks import tag

    model, encoder, scheme, _ = tag.load_tagger(path)
    return model, {"encoder": encoder, "scheme": scheme}


def _load_translate(path: Path):
    from rnnlab.tasks import translate

    t = translate.load_translator(path)
    return t.model, {"translator": t}


_LOADERS = {"textgen": _load_textgen, "classify": _load_classify, "tag": _load_tag, "translate": _load_translate}
DEDICATED = {"textgen": ["generate", "generate/stream"], "classify": ["classify"], "tag": ["tag"],
             "translate": ["translate"]}


def endpoints(m: Served) -> list[str]:
    """The paths under /models/{name}/ that this model answers."""
    out = list(DEDICATED.get(m.task, []))
    if accepts_text_inputs(m):
        out.append("predict")
    from .stepping import stepper_for

    if stepper_for(m) is not None:
        out.append("sessions")
    return out


def accepts_text_inputs(m: Served) -> bool:
    return m.task in TEXT_INPUT_TASKS or getattr(m.module, "SERVE_INPUTS", None) == "text"


# --- PredictOptions over HTTP -----------------------------------------------------------------------------

_PLAIN = (bool, int, float)


def _option_kind(annotation: Any) -> Optional[tuple]:
    """The accepted JSON types of a PredictOptions field, None when the field takes free text (a path)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kinds: list = []
    for a in args:
        if typing.get_origin(a) is Literal:
            kinds.append(("literal", typing.get_args(a)))
        elif a in _PLAIN:
            kinds.append(a)
        else:
            return None  # str or anything else: may name a file; never taken from a request
    return tuple(kinds)


def predict_options(module: Any) -> dict:
    """name -> a short description of what the option takes, for the options a request may set."""
    options = getattr(module, "PredictOptions", None)
    if options is None:
        return {}
    hints = typing.get_type_hints(options)
    out = {}
    for f in fields(options):
        kind = _option_kind(hints[f.name])
        if kind is not None:
            out[f.name] = " | ".join(
                "one of " + ", ".join(map(repr, k[1])) if isinstance(k, tuple) else k.__name__ for k in kind
            )
    return out


def check_options(module: Any, given: dict, limits) -> dict:
    """The request's ``options`` checked against the task's PredictOptions: names, JSON types, limits."""
    options = getattr(module, "PredictOptions", None)
    allowed = {} if options is None else {f.name: f for f in fields(options)}
    hints = typing.get_type_hints(options) if options is not None else {}
    out = {}
    for name, value in given.items():
        if name not in allowed:
            raise ValueError(f"options.{name} is not an option of this task; known: {sorted(allowed)}")
        kind = _option_kind(hints[name])
        if kind is None:
            raise ValueError(f"options.{name} takes a path or free text, which the server never accepts from a "
                             "request")
        if value is not None and not _matches(value, kind):
            raise ValueError(f"options.{name} must be {predict_options(module)[name]}, got {value!r}")
        out[name] = value
    for name in ("max_new_tokens", "batch_size"):
        value = out.get(name)
        if isinstance(value, int) and value > limits.max_new_tokens:
            raise ValueError(f"options.{name}={value} exceeds the server's limit of {limits.max_new_tokens} "
                             "(--limits.max_new_tokens)")
    return out


def _matches(value: Any, kind: tuple) -> bool:
    for k in kind:
        if isinstance(k, tuple):
            if value in k[1]:
                return True
        elif k is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        elif k is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        elif k is bool and isinstance(value, bool):
            return True
    return False


def _sizes(model_config: dict) -> dict:
    """The scalar sizes of a model config and of its encoder (kind, hidden_size, num_layers, ...)."""
    out = {k: v for k, v in model_config.items() if isinstance(v, (int, float, str, bool)) or v is None}
    encoder = model_config.get("encoder")
    if isinstance(encoder, dict):
        out["encoder"] = {k: encoder[k] for k in ("kind", "hidden_size", "num_layers", "bidirectional")
                          if k in encoder}
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value

"""What every task shares: its bundle (saved with the task's name, config and data fingerprint, loaded with a
check of the task), a seeded validation split, the checks of a config that every task repeats, and the guard
around ``train`` (:func:`locked`): size check, resolved data paths, run-dir lock, resume check.

A task module may define ``embedded_text(config) -> str`` (the text of its embedded default data, fingerprinted
like a file) and ``EMBEDDED_NAMES`` (the ``--data`` values, besides None, that name the embedded data)."""
from __future__ import annotations

import contextvars
import dataclasses
import functools
import importlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

from torch import nn

from rnnlab.data.fingerprint import describe_change, fingerprint_path, fingerprint_text, resolve
from rnnlab.structures.size import estimate_size, memory_bytes
from rnnlab.training import Bundle, load_bundle, save_bundle
from rnnlab.training.checkpoint import RESUME_DIR, RESUME_FILE, write_atomic, write_json_atomic
from rnnlab.training.lock import is_main_process, lock_run_dir

log = logging.getLogger(__name__)

T = TypeVar("T")

DATA_FIELDS = ("data", "valid_data", "test_data")
"""The config fields that name data files: stored resolved (absolute) and fingerprinted."""
RUN_RECORD = "task.json"
"""``<run_dir>/resume/task.json``: the task config and data fingerprint a resumable run started with."""
RESUMABLE = ("trainer.resume", "trainer.max_steps", "trainer.max_epochs", "trainer.max_time",
             "trainer.checkpoint_every", "trainer.log_every", "trainer.progress", "trainer.curves",
             "trainer.tensorboard", "trainer.eval_every", "trainer.eval_tokens", "trainer.device",
             "trainer.early_stopping_patience", "trainer.max_memory_fraction", "trainer.max_bad_steps",
             "trainer.divergence_ratio", "sample.", "decode.", "test_data")
"""Options a resumed run may change (how long, how often, what to report); any other change breaks exact
resume and is refused. A name ending in '.' covers its whole group."""

_fingerprint: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar("rnnlab_data_fingerprint", default=None)


def save_task_bundle(task: str, config: Any, model: nn.Module, *, assets: Optional[dict] = None,
                     metrics: Optional[dict] = None) -> Path:
    """Write ``<config.trainer.run_dir>/bundle`` recording the task, its whole config and the fingerprint of
    its data (taken when training started); returns its path."""
    path = Path(config.trainer.run_dir) / "bundle"
    if not is_main_process():
        return path  # data parallel: the weights are the same in every process, rank 0 writes them
    assets = {**(assets or {}), **_tokenizers_files(assets or {})}
    extra = {"task": task, task: dataclasses.asdict(config)}
    fingerprint = _fingerprint.get()
    if fingerprint is not None:
        extra["data_fingerprint"] = fingerprint
    save_bundle(path, model.cpu(), extra_config=extra, assets=assets, metrics=metrics)
    return path


def _tokenizers_files(assets: dict) -> dict:
    """Each tokenizer asset (``vocab``, ``source_vocab``, ...) again in the ``tokenizers`` format, as
    ``tokenizer`` (``source_tokenizer``, ...), so that other tools read it (``tokenizers.Tokenizer.from_file``).
    Without the tokenizers package there is none (logged)."""
    from rnnlab.data.tokenize import KINDS, tokenizer_from_json, tokenizers_json

    out = {}
    for name, value in assets.items():
        if (name == "vocab" or name.endswith("_vocab")) and isinstance(value, dict) and value.get("kind") in KINDS:
            try:
                out[name[: -len("vocab")] + "tokenizer"] = tokenizers_json(tokenizer_from_json(value))
            except ModuleNotFoundError:
                log.info("the tokenizers package is not installed: the bundle has no tokenizer.json")
    return out


def current_fingerprint() -> Optional[dict]:
    """The data fingerprint of the run in progress (inside a :func:`locked` ``train``), else None."""
    return _fingerprint.get()


def load_task_bundle(path: Union[str, Path, Bundle], task: str) -> Bundle:
    """Load a bundle written by task ``task`` (an already loaded one is used as it is); a ValueError naming both
    tasks when it was written by another."""
    if isinstance(path, Bundle):
        bundle, path = path, path.path
    else:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"bundle not found: {path} (a folder written by 'rnnlab train {task}', e.g. "
                                    f"runs/{task}/bundle)")
        bundle = load_bundle(path)
    if bundle.task != task:
        raise ValueError(f"{path} is a {bundle.task or 'task-less'!r} bundle, not a {task!r} one: "
                         f"use it with the commands of its own task")
    return bundle


def split_off(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """(kept, held out): a seeded random ``fraction`` of ``items`` held out (at least one item when fraction > 0
    and there are two or more items; none when fraction is 0)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
    items = list(items)
    if fraction == 0.0 or len(items) < 2:
        return items, []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n = min(len(items) - 1, max(1, round(fraction * len(items))))
    held = set(order[:n])
    return [x for i, x in enumerate(items) if i not in held], [items[i] for i in sorted(held)]


def check_run_dir(config: Any) -> None:
    """Every task writes its bundle under trainer.run_dir: it must be set."""
    if not config.trainer.run_dir:
        raise ValueError("--trainer.run_dir must be set: the bundle is saved in <run_dir>/bundle")


def check_positive(config: Any, *names: str) -> None:
    """Each named field of ``config`` is a positive integer, or a ValueError naming the option."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"--{name} must be a positive integer, got {value!r}")


def check_decoding(beam_size: Any, max_new_tokens: Any, zero_means: str) -> None:
    """``--beam_size`` is a positive integer and ``--max_new_tokens`` an integer >= 0 (0 = ``zero_means``)."""
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"--beam_size must be a positive integer (1 = greedy), got {beam_size!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"--max_new_tokens must be an integer >= 0 (0 = {zero_means}), got {max_new_tokens!r}")


def write_config(path: Path, config: Any) -> None:
    """The resolved config as YAML (every field, defaults included): ``rnnlab train TASK --config`` replays it."""
    import yaml

    text = "# the resolved configuration of this run: rnnlab train TASK --config this_file replays it\n"
    text += yaml.safe_dump(json.loads(json.dumps(dataclasses.asdict(config))), sort_keys=False)
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# --- the size of the model, before it exists -----------------------------------------------------------------

def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_model_size(config: Any) -> None:
    """Refuse, before anything is allocated, a model whose estimated training memory exceeds
    ``trainer.max_memory_fraction`` of the machine's RAM. The vocabulary is taken at its bound ``vocab_size``
    (10,000 for tasks without one) and the time steps at ``bptt`` or ``max_length`` (or 128)."""
    fraction = config.trainer.max_memory_fraction
    total = memory_bytes()
    if not fraction or not total or getattr(config, "model", None) is None:
        return
    vocab = getattr(config, "vocab_size", None) or 10_000
    steps = next((getattr(config, n) for n in ("bptt", "max_length", "max_source_length") if hasattr(config, n)), 128)
    batch = getattr(config, "batch_size", 32)
    est = estimate_size(config.model, vocab_size=vocab, batch_size=batch, time_steps=steps,
                        optimizer=config.trainer.optimizer)
    if est.training_bytes > fraction * total:
        raise ValueError(
            f"the model is too big for this machine: about {est.parameters:,} parameters and {est.activations:,} "
            f"activations per batch (B={batch}, T={steps}) need about {_gib(est.training_bytes)} to train, more than "
            f"{fraction:g} of the {_gib(total)} of memory (--trainer.max_memory_fraction): make the model smaller "
            "(--model.encoder.hidden_size, num_layers, window, --model.embedding_size, --batch_size) or raise "
            "--trainer.max_memory_fraction (0 = no check)")


# --- data: resolved paths and fingerprints -------------------------------------------------------------------

def _data_path(value: Any) -> Any:
    """A data field's path: the field itself, or the ``path`` of a nested data config (forecast's ``--data.path``)."""
    return value.path if dataclasses.is_dataclass(value) and hasattr(value, "path") else value


def resolve_data_paths(config: Any) -> Any:
    """``config`` with each data path that exists made absolute, so a bundle finds its data from any folder."""
    changes = {}
    for name in DATA_FIELDS:
        value = getattr(config, name, None)
        path = _data_path(value)
        if isinstance(path, str) and path and Path(path).expanduser().exists():
            changes[name] = str(resolve(path)) if path is value else dataclasses.replace(value, path=str(resolve(path)))
    return dataclasses.replace(config, **changes) if changes else config


def data_fingerprints(config: Any, module: Any) -> dict:
    """``{field: fingerprint}`` of each data field of ``config`` that names data: a file or folder by its
    contents, the embedded default (None, or one of ``module.EMBEDDED_NAMES``) by ``module.embedded_text``."""
    out = {}
    embedded_text = getattr(module, "embedded_text", None)
    for name in DATA_FIELDS:
        if not hasattr(config, name):
            continue
        value = _data_path(getattr(config, name))
        if value is None or value in getattr(module, "EMBEDDED_NAMES", ()):
            if name == "data" and embedded_text is not None:
                out[name] = fingerprint_text(value or "default", embedded_text(config))
        elif Path(value).expanduser().exists():
            out[name] = fingerprint_path(value)
    return out


def check_data_unchanged(bundle_path: Union[str, Path], config: Any, module: Any, *,
                         fields: Sequence[str] = DATA_FIELDS) -> None:
    """Before scoring a bundle on its own held-out data: a ValueError naming the file and what changed when the
    data at the stored paths is not what it was trained on (bundles without a fingerprint are not checked)."""
    stored = _read_json(Path(bundle_path) / "config.json").get("data_fingerprint")
    if not isinstance(stored, dict):
        log.info("%s records no data fingerprint: the held-out data is not checked", bundle_path)
        return
    current = data_fingerprints(config, module)
    for name in fields:
        if name not in stored:
            continue
        if name not in current:
            raise ValueError(f"the bundle's --{name} {stored[name].get('path', '')} is gone: evaluate scores the "
                             f"held-out part of it; give --data FILE to score another file")
        change = describe_change(stored[name], current[name])
        if change:
            raise ValueError(f"the bundle's --{name}: {change}; evaluate without --data would score other data "
                             "than the held-out part of the training data: restore it, or give --data FILE")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- resume: the same run, or a refusal that says what differs ----------------------------------------------

def _flatten(data: Any, prefix: str = "") -> dict:
    if not isinstance(data, dict):
        return {prefix[:-1]: data}
    out = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def _may_change(name: str) -> bool:
    return any(name == r or (r.endswith(".") and name.startswith(r)) for r in RESUMABLE)


def check_resume(config: Any, fingerprint: dict) -> None:
    """With ``--trainer.resume true`` and a checkpoint in run_dir: a ValueError listing every option and data
    file that differs from the run that wrote the checkpoint (exact resume needs the same model and data)."""
    folder = Path(config.trainer.run_dir) / RESUME_DIR
    if not (config.trainer.resume and (folder / RESUME_FILE).exists()):
        return
    record = _read_json(folder / RUN_RECORD)
    if not record:
        return  # a checkpoint from before run records: the trainer checks the weights' shapes
    old, new = _flatten(record.get("config", {})), _flatten(dataclasses.asdict(config))
    diffs = [f"{k} {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
             for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k) and not _may_change(k)]
    stored = record.get("data_fingerprint", {})
    for name in sorted(stored.keys() | fingerprint.keys()):
        if name in stored and name in fingerprint:
            change = describe_change(stored[name], fingerprint[name])
            if change and not _may_change(name):
                diffs.append(f"{name}: {change}")
    if diffs:
        raise ValueError(
            f"cannot resume {config.trainer.run_dir}: its checkpoint was written with other settings: "
            f"{'; '.join(diffs)}. Set them back, or start afresh (a new --trainer.run_dir, or --trainer.resume false)")


def locked(train: Callable[[Any], Path]) -> Callable[[Any], Path]:
    """Decorate a task's ``train(config)``: check the model's size before any data is read; make the data paths
    absolute; hold ``config.trainer.run_dir``'s lock from start to bundle (a second run with the same run_dir
    is refused at once instead of interleaving logs and overwriting the bundle); fingerprint the data; refuse a
    resume whose settings or data differ from the checkpoint's; record them for the next resume, and write the
    resolved config to ``run_dir/config.yaml`` (``rnnlab train TASK --config`` replays it). The other ranks of
    a data-parallel run train without the lock and write nothing there."""
    module = importlib.import_module(train.__module__)

    @functools.wraps(train)
    def run(config: Any) -> Path:
        check_run_dir(config)
        check_model_size(config)
        config = resolve_data_paths(config)
        if not is_main_process():  # another rank of a data-parallel run: rank 0 holds the lock and writes
            token = _fingerprint.set(data_fingerprints(config, module))
            try:
                return train(config)
            finally:
                _fingerprint.reset(token)
        with lock_run_dir(config.trainer.run_dir) as folder:
            fingerprint = data_fingerprints(config, module)
            check_resume(config, fingerprint)
            (folder / RESUME_DIR).mkdir(exist_ok=True)
            write_config(folder / "config.yaml", config)
            write_json_atomic(folder / RESUME_DIR / RUN_RECORD,
                              {"config": dataclasses.asdict(config), "data_fingerprint": fingerprint})
            token = _fingerprint.set(fingerprint)
            try:
                return train(config)
            finally:
                _fingerprint.reset(token)

    return run

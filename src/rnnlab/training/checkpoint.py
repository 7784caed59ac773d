"""Model bundles (load without running code) and the trainer's resume file, written atomically.

A bundle is a directory (DESIGN.md, "Model bundle"):

    config.json        {"rnnlab_version", "model_type", "model_config", "bundle_files", "assets", **extra_config}
    model.safetensors  the weights; tied weights are stored once (safetensors.torch.save_model)
    NAME.json          one JSON file per asset: a task's vocabularies, tokenizers, label names (``vocab.json``...)
    metrics.json       the metrics, {} when none

A task's bundle also records ``"task": NAME`` and its config under that name (see :mod:`rnnlab.tasks`).

``load`` rebuilds the structure from config.json through a registry of the structures in
``rnnlab.structures`` and their config dataclasses: nothing is unpickled. Every file is written to a temporary
file in the same directory, fsynced and renamed; the bundle directory is built beside its destination and
renamed into place, so a crash leaves either the old bundle or the new one, never a mix.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import tempfile
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from rnnlab.nn.state import LSTMState, State

PathLike = Union[str, os.PathLike]

CONFIG, WEIGHTS, VOCAB, METRICS = "config.json", "model.safetensors", "vocab.json", "metrics.json"


# ----- atomic files ---------------------------------------------------------------------------------------

def write_atomic(path: PathLike, write: typing.Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, and rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes 0600 (and a writer may replace the file): give it the mode a plain open() would
        os.chmod(tmp, _umasked(0o666))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: PathLike, data: Any) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2)))


def _umasked(mode: int) -> int:
    """``mode`` less the process's umask: what a plain open() or mkdir() would create."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----- bundles --------------------------------------------------------------------------------------------

_ASSET_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # a plain file stem: no path can hide in an asset name
_RESERVED = {"config", "metrics", "model"}


@dataclasses.dataclass(frozen=True)
class Bundle:
    """What :func:`load_bundle` returns: the model (eval mode) and everything saved beside it."""

    model: nn.Module
    config: dict
    """The whole config.json: ``model_type``, ``model_config``, ``task`` and the task's config under its name."""
    assets: dict
    """Asset name -> its parsed JSON (``"vocab"`` for a text model's tokenizer, a task's label names, ...)."""
    metrics: dict
    path: Path

    @property
    def task(self) -> Optional[str]:
        """The task that wrote the bundle (``"textgen"``, ``"classify"``, ...), None for a bare model."""
        task = self.config.get("task")
        return task if isinstance(task, str) else None

    @property
    def task_config(self) -> dict:
        """The task's config as stored (``asdict`` of the task's Config), {} when absent."""
        data = self.config.get(self.task) if self.task else None
        return data if isinstance(data, dict) else {}

    @property
    def vocab(self) -> Any:
        """The ``vocab`` asset, None when the bundle has none."""
        return self.assets.get("vocab")


def save_bundle(path: PathLike, model: nn.Module, *, extra_config: Optional[dict] = None, vocab: Optional[dict] = None,
                assets: Optional[dict] = None, metrics: Optional[dict] = None) -> Path:
    """Write ``model`` as a bundle directory at ``path`` (replacing an existing bundle atomically).

    ``assets`` maps names (lower-case letters, digits, ``_``) to JSON-ready values, each written to NAME.json;
    ``vocab`` is the asset ``"vocab"``.
    """
    from safetensors.torch import save_model

    import rnnlab

    path = Path(path)
    if not dataclasses.is_dataclass(getattr(model, "config", None)):
        raise TypeError(
            f"model must carry its config dataclass as model.config, got {type(model).__name__} without one"
        )
    assets = dict(assets or {})
    if vocab is not None:
        assets["vocab"] = vocab
    for name in assets:
        if not isinstance(name, str) or not _ASSET_NAME.fullmatch(name) or name in _RESERVED:
            raise ValueError(f"asset names must match {_ASSET_NAME.pattern} and not be {sorted(_RESERVED)}, got "
                             f"{name!r}")
    files = [CONFIG, WEIGHTS, METRICS] + [f"{name}.json" for name in assets]
    config = {
        "rnnlab_version": rnnlab.__version__,
        "torch_version": torch.__version__,
        "model_type": type(model).__name__,
        "model_config": dataclasses.asdict(model.config),
        "bundle_files": files,
        "assets": sorted(assets),
        **(extra_config or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"{path.name}.tmp-", dir=path.parent))
    try:
        os.chmod(tmp_dir, _umasked(0o777))  # mkdtemp makes 0700: the bundle gets the mode mkdir would give
        write_json_atomic(tmp_dir / CONFIG, config)
        write_atomic(tmp_dir / WEIGHTS, lambda tmp: save_model(model, tmp))
        write_json_atomic(tmp_dir / METRICS, metrics or {})
        for name, value in assets.items():
            write_json_atomic(tmp_dir / f"{name}.json", value)
        _swap_in(tmp_dir, path)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return path


def _swap_in(new: Path, path: Path) -> None:
    """Rename ``new`` to ``path``; an existing ``path`` is moved aside first and removed after."""
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{path.name}.old-", dir=path.parent))
        os.rename(path, old / "bundle")
    os.rename(new, path)
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load(path: PathLike, *, map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    """Rebuild the model of a bundle directory (see :func:`save_bundle`), in eval mode."""
    return load_bundle(path, map_location=map_location).model


def load_bundle(path: PathLike, *, map_location: Union[str, torch.device] = "cpu") -> Bundle:
    """The model and its assets, config and metrics. Missing or damaged files raise an error naming them."""
    from safetensors.torch import load_model

    path = _bundle_dir(Path(path))
    config = _read_json(path / CONFIG)
    for key in ("model_type", "model_config"):
        if key not in config:
            raise ValueError(f"{path / CONFIG} has no {key!r}: it is not an rnnlab bundle config")
    _warn_if_newer(path / CONFIG, config.get("rnnlab_version"))
    model_cls, config_cls = _registry().get(config["model_type"], (None, None))
    if model_cls is None:
        raise ValueError(f"{path / CONFIG}: unknown model_type {config['model_type']!r}; known: {sorted(_registry())}")
    try:
        model_config = from_dict(config_cls, config["model_config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path / CONFIG}: model_config does not build a {config['model_type']}: {e}") from None
    weights = path / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"bundle file missing: {weights}")
    _check_size(path / CONFIG, model_config, weights.stat().st_size)
    try:
        model = model_cls(model_config)
    except (TypeError, ValueError, RuntimeError, ArithmeticError) as e:  # sizes torch refuses (negative, ...)
        raise ValueError(f"{path / CONFIG}: model_config does not build a {config['model_type']}: {e}") from None
    try:
        load_model(model, str(weights), strict=True, device=str(map_location))
    except Exception as e:  # safetensors raises its own error type for truncated or corrupted files
        raise ValueError(f"{weights} is corrupted, truncated or does not match the config: {e}") from None
    names = config.get("assets", ["vocab"] if (path / VOCAB).exists() else [])
    if not isinstance(names, list) or not all(isinstance(n, str) and _ASSET_NAME.fullmatch(n) for n in names):
        raise ValueError(f"{path / CONFIG}: 'assets' must be a list of plain names, got {names!r}")
    assets = {name: _read_json(path / f"{name}.json") for name in names}
    listed = config.get("bundle_files", [])
    metrics = _read_json(path / METRICS) if METRICS in listed or (path / METRICS).exists() else {}
    return Bundle(model.eval(), config, assets, metrics, path)


def _version(text: Any) -> Optional[tuple[int, ...]]:
    """(major, minor, patch) of a version string such as '0.2.0' or '2.5.1+cpu'; None when it is not one."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text) if isinstance(text, str) else None
    return tuple(int(g or 0) for g in match.groups()) if match else None


def _warn_if_newer(where: Path, written_by: Any) -> None:
    """A bundle from a newer rnnlab may hold what this one cannot read right: say so (it still loads if it can)."""
    import rnnlab

    theirs, ours = _version(written_by), _version(rnnlab.__version__)
    if theirs and ours and theirs > ours:
        warnings.warn(f"{where} was written by rnnlab {written_by}, newer than this rnnlab {rnnlab.__version__}: "
                      "it may not load or behave as intended; upgrade rnnlab (pip install -U rnnlab)", stacklevel=3)


def _check_size(where: Path, model_config: Any, weights_bytes: int) -> None:
    """Refuse, before allocating, a model_config that describes far more weights than the weights file holds or
    than this machine's memory: a damaged or hostile config.json must not hang the loader or exhaust memory."""
    from rnnlab.structures.size import FLOAT_BYTES, estimate_size, memory_bytes

    sizes = [v for k, v in vars(model_config).items() if isinstance(v, int) and not isinstance(v, bool)
             and (k.endswith("vocab_size") or k == "output_size")]
    estimate = estimate_size(model_config, vocab_size=max(sizes, default=1), batch_size=1, time_steps=1)
    need = estimate.parameters * FLOAT_BYTES
    memory = memory_bytes()
    if need > 16 * weights_bytes + 2**20 or (memory and need > memory):
        raise ValueError(f"{where}: model_config describes about {estimate.parameters:,} parameters "
                         f"({need / 2**20:,.0f} MiB), far more than the {weights_bytes / 2**20:,.1f} MiB weights "
                         "file holds: the config is corrupted")


def _bundle_dir(path: Path) -> Path:
    if path.is_dir():
        return path
    # A crash between the two renames of _swap_in leaves the previous bundle aside: use it.
    aside = sorted(path.parent.glob(f"{path.name}.old-*/bundle"), key=lambda p: p.stat().st_mtime)
    if aside:
        return aside[-1]
    raise FileNotFoundError(f"no model bundle at {path} (expected a directory with {CONFIG} and {WEIGHTS})")


def _read_json(file: Path) -> Any:
    if not file.is_file():
        raise FileNotFoundError(f"bundle file missing: {file}")
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file} is not valid JSON (corrupted or truncated?): {e}") from None


def _registry() -> dict[str, tuple[type, type]]:
    """model_type -> (structure class, config class) for every pair X, XConfig in rnnlab.structures.__all__."""
    from rnnlab import structures

    names = set(structures.__all__)
    return {n: (getattr(structures, n), getattr(structures, n + "Config")) for n in names if n + "Config" in names}


def from_dict(cls: type, data: dict, *, where: str = "") -> Any:
    """Rebuild a (frozen, possibly nested) config dataclass from ``dataclasses.asdict`` output, by its field types.
    A value of the wrong JSON type (a string for an int, null for a nested config) is a ValueError naming the
    field, so a damaged config.json never reaches a constructor as something it cannot handle."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be given as a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where} has no field(s) {sorted(unknown)}")
    return cls(**{k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()})


_SCALARS = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None:
        if tp is Any or tp is type(None) or (origin in (typing.Union, types.UnionType) and type(None) in args):
            return None
        raise ValueError(f"{where} must not be null")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where) if len(inner) == 1 else value
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {args}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a JSON list, got {type(value).__name__}")
        if origin is list:
            return [_coerce(args[0], v, where) for v in value] if args else list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=False)) if args else tuple(value)
    if tp in _SCALARS:
        ok = isinstance(value, _SCALARS[tp]) and (tp is bool or not isinstance(value, bool))
        if not ok:
            raise ValueError(f"{where} must be a {tp.__name__}, got {value!r} ({type(value).__name__})")
        return float(value) if tp is float else value
    return value


# ----- the trainer's resume file ----------------------------------------------------------------------------
# It loads with ``weights_only=True``, so everything in it is a tensor or a plain Python value: the helpers
# below turn RNG states and carried recurrent states into such values and back.

RESUME_DIR, RESUME_FILE = "resume", "trainer.pt"


def save_resume(run_dir: PathLike, state: dict) -> None:
    """Write ``run_dir/resume/trainer.pt`` atomically. ``state`` holds only tensors and plain Python values."""
    folder = Path(run_dir) / RESUME_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / RESUME_FILE, lambda tmp: torch.save(state, tmp))


def load_resume(run_dir: PathLike) -> Optional[dict]:
    """The saved trainer state, or None when the run has none. Loads with ``weights_only=True``."""
    file = Path(run_dir) / RESUME_DIR / RESUME_FILE
    if not file.exists():
        return None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{file} is corrupted or truncated: {e}") from None


def capture_rng() -> dict:
    """The states of python's, numpy's and torch's (CPU and CUDA) random generators, as plain values."""
    np_state = np.random.get_state()  # (name, uint32 keys, pos, has_gauss, cached_gaussian)
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(rng: dict) -> None:
    """Put back the generator states of :func:`capture_rng`."""
    random.setstate(rng["python"])
    np.random.set_state((rng["numpy"][0], rng["numpy"][1].numpy().astype(np.uint32), *rng["numpy"][2:]))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])


def pack_state(state: Optional[State]) -> Union[None, Tensor, dict]:
    """A carried recurrent state as plain tensors: a tensor as it is, ``LSTMState(h, c)`` as ``{"h", "c"}``."""
    if state is None or isinstance(state, Tensor):
        return state
    return {"h": state.h, "c": state.c}


def unpack_state(packed: Union[None, Tensor, dict], device: Union[str, torch.device, None]) -> Optional[State]:
    """The state of :func:`pack_state` again, on ``device``."""
    if packed is None:
        return None
    if isinstance(packed, dict):
        return LSTMState(packed["h"].to(device), packed["c"].to(device))
    return packed.to(device)

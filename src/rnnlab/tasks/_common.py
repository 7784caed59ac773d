"""What every task shares: its bundle (saved with the task's name and config, loaded with a check of the task),
a seeded validation split, and the checks of a config that every task repeats."""
from __future__ import annotations

import dataclasses
import functools
import json
import random
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

from torch import nn

from rnnlab.training import Bundle, load_bundle, save_bundle
from rnnlab.training.checkpoint import write_atomic
from rnnlab.training.lock import lock_run_dir

T = TypeVar("T")


def save_task_bundle(task: str, config: Any, model: nn.Module, *, assets: Optional[dict] = None,
                     metrics: Optional[dict] = None) -> Path:
    """Write ``<config.trainer.run_dir>/bundle`` recording the task and its whole config; returns its path."""
    path = Path(config.trainer.run_dir) / "bundle"
    save_bundle(path, model.cpu(), extra_config={"task": task, task: dataclasses.asdict(config)}, assets=assets,
                metrics=metrics)
    return path


def load_task_bundle(path: Union[str, Path], task: str) -> Bundle:
    """Load a bundle written by task ``task``; a ValueError naming both tasks when it was written by another."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bundle not found: {path} (a folder written by 'rnnlab train {task}', e.g. runs/{task}/bundle)")
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


def write_config(path: Path, config: Any) -> None:
    """The resolved config as YAML (every field, defaults included): ``rnnlab train TASK --config`` replays it."""
    import yaml

    text = "# the resolved configuration of this run: rnnlab train TASK --config this_file replays it\n"
    text += yaml.safe_dump(json.loads(json.dumps(dataclasses.asdict(config))), sort_keys=False)
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def locked(train: Callable[[Any], Path]) -> Callable[[Any], Path]:
    """Decorate a task's ``train(config)``: it holds ``config.trainer.run_dir``'s lock from start to bundle, so a
    second run with the same run_dir is refused at once instead of interleaving logs and overwriting the bundle,
    and it writes the resolved config to ``run_dir/config.yaml`` first."""

    @functools.wraps(train)
    def run(config: Any) -> Path:
        check_run_dir(config)
        with lock_run_dir(config.trainer.run_dir) as folder:
            write_config(folder / "config.yaml", config)
            return train(config)

    return run

"""rnnlab.tasks: one module per application, wiring data, a structure, the trainer and metrics together.

The task contract (every module named in :data:`TASKS` follows it):

- ``TASK``: the task's name, as ``rnnlab train TASK`` spells it and as its bundles record it.
- ``DESCRIPTION``: one line for ``rnnlab train --help``. ``EMBEDDED_DATA``: one line on the embedded default data
  (``rnnlab datasets`` lists it).
- ``Config``: a frozen config dataclass with a docstring per field. ``rnnlab train TASK`` generates its options
  from it (``--a.b value``), a YAML preset (``--config FILE``) sets any of them, and the bundle stores it.
- ``train(config) -> Path``: trains and writes a bundle (``<config.trainer.run_dir>/bundle``), returns its path.
- ``evaluate(bundle, data=None, **options) -> dict``: metrics of a bundle on ``data`` (a file in the task's
  format), or on the held-out data of its training run when ``data`` is None. JSON-ready values.
- ``predict(bundle, inputs, **options) -> Iterator[dict]``: one JSON-ready dict per input string.
- ``PredictOptions`` and ``EvaluateOptions`` (optional): frozen dataclasses whose fields are the keyword
  options of ``predict`` and ``evaluate``; the CLI makes them ``rnnlab predict BUNDLE --option value``.
- ``embedded_text(config) -> str`` and ``EMBEDDED_NAMES`` (optional): the text of the embedded default data and
  the ``--data`` values besides None that name it. ``train`` is decorated with ``_common.locked`` (size check,
  absolute data paths, run-dir lock, data fingerprint, resume check); the bundle stores the fingerprint and
  ``evaluate`` without data calls ``_common.check_data_unchanged`` first.

:data:`TASKS` is the one list of tasks: the CLI, the bundle loader and every command that takes a bundle find a
task through :func:`get`, so adding a task means writing its module and naming it here.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Union

# name -> module. The order is the order of `rnnlab train --help`.
TASKS: dict[str, str] = {
    "textgen": "rnnlab.tasks.textgen",
    "classify": "rnnlab.tasks.classify",
    "tag": "rnnlab.tasks.tag",
    "translate": "rnnlab.tasks.translate",
    "forecast": "rnnlab.tasks.forecast",
    "seqclass": "rnnlab.tasks.seqclass",
    "speech": "rnnlab.tasks.speech",
    "action": "rnnlab.tasks.action",
    "caption": "rnnlab.tasks.caption",
}


def names() -> tuple[str, ...]:
    """The task names, in :data:`TASKS` order."""
    return tuple(TASKS)


def get(name: str) -> ModuleType:
    """The module of task ``name``; a ValueError listing the tasks when there is none by that name."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the tasks are: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name])


def task_of(bundle: Union[str, Path]) -> str:
    """The task a bundle directory records in its config.json (read without loading the model)."""
    path = Path(bundle)
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"no model bundle at {path} (expected a folder written by 'rnnlab train', holding config.json)"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config} is not valid JSON (corrupted or truncated?): {e}") from None
    task = data.get("task") if isinstance(data, dict) else None
    if not isinstance(task, str):
        raise ValueError(f"{config} records no task: it was not written by 'rnnlab train TASK'")
    if task not in TASKS:
        raise ValueError(f"{config} records task {task!r}, which this rnnlab does not know ({', '.join(TASKS)})")
    return task

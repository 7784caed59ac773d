"""One writer per run directory: an OS file lock on ``run_dir/.lock``, held for the whole run.

Two runs with the same ``run_dir`` would interleave log.csv, overwrite each other's resume file and bundle.
``lock_run_dir`` takes an exclusive, non-blocking ``flock`` (``msvcrt.locking`` on Windows) on
``run_dir/.lock`` and writes the holder's pid, host and start time into it; a second writer gets a
:class:`RunDirLocked` error naming the holder. The operating system releases the lock when the holding process
exits, however it dies, so a lock file left by a dead process is stale by construction and is simply taken
over: no pid guessing is needed. The lock is re-entrant within a process (a task's ``train`` and the
trainer it calls may both take it).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Union

LOCK_FILE = ".lock"

_held: dict[str, tuple[int, int]] = {}  # resolved run_dir -> (fd, depth), this process's locks
_guard = threading.Lock()


def is_main_process(environ=None) -> bool:
    """Whether this process writes the run directory: not one of the other ranks of a data-parallel run.

    Known before any process group exists, from the launcher's environment: ``RANK`` (torchrun, Fabric),
    ``SLURM_PROCID``, or ``LOCAL_RANK``/``NODE_RANK`` (Fabric's own launcher starts ranks 1.. with LOCAL_RANK
    set). A process with none of them is the main one."""
    env = os.environ if environ is None else environ
    for key in ("RANK", "SLURM_PROCID"):
        if env.get(key, "").strip():
            return int(env[key]) == 0
    return int(env.get("LOCAL_RANK") or 0) == 0 and int(env.get("NODE_RANK") or env.get("GROUP_RANK") or 0) == 0


class RunDirLocked(RuntimeError):
    """Another process is writing to this run directory."""


def _try_lock(fd: int) -> bool:
    try:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        return f"process {info['pid']} on {info['host']}, started {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def lock_run_dir(run_dir: Union[str, os.PathLike]) -> Iterator[Path]:
    """Hold the run directory's lock for the ``with`` block (creating the directory); yields its path."""
    folder = Path(run_dir)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--trainer.run_dir {folder} is a file, not a folder: choose another run_dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"--trainer.run_dir {folder} cannot be created ({e.strerror}): choose a writable folder"
        ) from None
    key = str(folder.resolve())
    with _guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if not reentered:
        path = folder / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise RunDirLocked(f"{folder} is in use by {_holder(path)}: wait for that run to end, or choose "
                               "another --trainer.run_dir")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode())
        with _guard:
            _held[key] = (fd, 1)
    try:
        yield folder
    finally:
        with _guard:
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
            else:
                del _held[key]
                os.close(fd)  # closing releases the lock; the file stays (removing it would race a new writer)

"""rnnlab: recurrent neural networks on PyTorch.

``rnnlab.nn`` holds the cells and layers, ``rnnlab.structures`` the models, ``rnnlab.training`` the trainer,
``rnnlab.tasks`` the applications. ``rnnlab.load(path)`` loads a bundle directory (the model, its tokenizer,
config and metrics, with ``predict`` and ``generate``) without unpickling anything.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

__version__ = "0.2.0"  # the one version: pyproject.toml reads it from here


def numba_cache_dir(package_dir: Path, environ: dict) -> Optional[str]:
    """Where numba should cache rnnlab's compiled kernels, or None to leave numba's own choice.

    numba caches beside the source (``__pycache__``); in a read-only install (a system site-packages, a
    container image) that fails unless ``NUMBA_CACHE_DIR`` is set. A user's setting is kept; otherwise a
    writable package directory keeps numba's default, and a read-only one gets ``~/.cache/rnnlab/numba``, or a
    folder in the temporary directory when the home directory is not writable either.
    """
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    if os.access(package_dir, os.W_OK):
        return None
    for candidate in (Path.home() / ".cache" / "rnnlab" / "numba",
                      Path(tempfile.gettempdir()) / f"rnnlab-numba-{os.getuid() if hasattr(os, 'getuid') else 0}"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return str(candidate)
    return None


_cache = numba_cache_dir(Path(__file__).resolve().parent, dict(os.environ))
if _cache is not None:  # before any module imports numba
    os.environ["NUMBA_CACHE_DIR"] = _cache


def load(path, map_location=None):
    """Load the bundle directory ``path`` -> :class:`rnnlab.bundle.Bundle` (``model``, ``tokenizer``, ``config``,
    ``metrics``, ``task``, ``predict(...)``, ``generate(...)``); weights on ``map_location`` (None = the CPU)."""
    from rnnlab.bundle import load as _load

    return _load(path, map_location)


def __getattr__(name):  # rnnlab.Bundle without importing torch at `import rnnlab`
    if name == "Bundle":
        from rnnlab.bundle import Bundle

        return Bundle
    raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")

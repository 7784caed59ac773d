"""Packaging: one version, typed, and numba's cache falls back to a writable place in a read-only install."""
import os
from pathlib import Path

import rnnlab

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_source_and_py_typed():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and 'attr = "rnnlab.__version__"' in text
    assert "\nversion =" not in text.split("[tool.setuptools.dynamic]")[0]  # no second, literal version
    assert (ROOT / "src" / "rnnlab" / "py.typed").is_file()
    assert rnnlab.__version__.count(".") == 2


def test_numba_cache_dir_keeps_a_user_setting_and_a_writable_install(tmp_path):
    assert rnnlab.numba_cache_dir(tmp_path, {"NUMBA_CACHE_DIR": "/somewhere"}) is None
    assert rnnlab.numba_cache_dir(tmp_path, {}) is None  # writable: numba's own __pycache__ works


def test_numba_cache_dir_falls_back_for_a_read_only_install(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == "/read-only/rnnlab" else real_access(p, mode))
    chosen = rnnlab.numba_cache_dir(Path("/read-only/rnnlab"), {})
    assert chosen == str(tmp_path / "home" / ".cache" / "rnnlab" / "numba") and Path(chosen).is_dir()

"""What a run's data was: the resolved path, size and SHA-256 of each data file (or of an embedded default's
text), stored in a bundle so that ``evaluate`` and a resumed run can tell when the data has changed.

    >>> fp = fingerprint_text("pydoc", "some text")
    >>> fp["size"], fp["sha256"][:12]
    (9, 'b94f6f125c79')
    >>> describe_change(fp, fp) is None
    True

A folder's fingerprint lists every regular file below it (hidden ones skipped), by relative path.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

from .errors import DataError

_CHUNK = 1 << 20


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def resolve(path: Union[str, os.PathLike]) -> Path:
    """The absolute path, ``~`` expanded and links resolved: what a bundle stores, so it works from any folder."""
    return Path(path).expanduser().resolve()


def fingerprint_path(path: Union[str, os.PathLike]) -> dict:
    """``{"path", "size", "sha256"}`` of a file; ``{"path", "files": {relative: {"size", "sha256"}}}`` of a
    folder. A FileNotFoundError when there is nothing at ``path``."""
    p = resolve(path)
    if p.is_file():
        return {"path": str(p), "size": p.stat().st_size, "sha256": _sha256_file(p)}
    if p.is_dir():
        files = {}
        for f in sorted(p.rglob("*")):
            rel = f.relative_to(p)
            if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                files[rel.as_posix()] = {"size": f.stat().st_size, "sha256": _sha256_file(f)}
        return {"path": str(p), "files": files}
    if p.exists():  # reading a device or a pipe would never end
        raise DataError(p, "not a regular file or folder (a device, pipe or socket?): give a data file")
    raise FileNotFoundError(f"data not found: {p}")


def fingerprint_text(name: str, text: str) -> dict:
    """``{"embedded", "size", "sha256"}`` of an embedded data set's text (UTF-8 bytes)."""
    raw = text.encode("utf-8")
    return {"embedded": name, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def _short(fp: dict) -> str:
    return f"{fp.get('size')} bytes, SHA-256 {str(fp.get('sha256'))[:12]}"


def describe_change(stored: dict, current: dict) -> Optional[str]:
    """None when both fingerprints describe the same data, else one phrase saying what changed."""
    if stored == current:
        return None
    if "embedded" in stored or "embedded" in current:
        name = stored.get("embedded") or current.get("embedded")
        return (f"the embedded {name} data differs (size {stored.get('size')} -> {current.get('size')} bytes, "
                f"SHA-256 {str(stored.get('sha256'))[:12]} -> {str(current.get('sha256'))[:12]})")
    where = stored.get("path") or current.get("path")
    if "files" in stored or "files" in current:
        old, new = stored.get("files") or {}, current.get("files") or {}
        changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
        parts = []
        for label, names in (("changed", changed), ("removed", sorted(old.keys() - new.keys())),
                             ("added", sorted(new.keys() - old.keys()))):
            if names:
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                parts.append(f"{label}: {shown}")
        return f"the files in {where} changed ({'; '.join(parts) or 'a file became a folder'})"
    return f"{where} changed since training (then {_short(stored)}; now {_short(current)})"

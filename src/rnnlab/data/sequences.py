"""Labelled numeric sequences from files: NumPy ``.npz`` archives and the IDX files of MNIST/Fashion-MNIST.

``.npz`` (``read_npz``), arrays by name:

- ``X``: (N, T, F) dense, or (N, T) for one feature; with an optional ``lengths`` (N,) the row i keeps its
  first lengths[i] steps (the rest is padding);
- or ``X`` flat: the sequences concatenated along time, (ΣT, F) or (ΣT,), with ``lengths`` (N,) saying where
  each ends;
- or ``X`` an object array of N arrays (T_i, F) (a ragged list, as ``np.savez(f, X=np.array(list, dtype=object))``
  writes it). Loading an object array runs pickle, which can run code: it is refused unless
  ``allow_pickle=True`` (only for files you trust); the flat form with ``lengths`` needs no pickle.
- ``y`` (N,): integer or string class labels.

IDX (``read_idx``), LeCun's format of MNIST and Fashion-MNIST (optionally gzipped): a magic number
``0x00000800 | type << 8 | ndim``, ndim big-endian int32 sizes, then the values. An images file (N, 28, 28)
read as sequences gives N sequences of 28 steps (the rows) of 28 features (the pixels of a row); the labels
are in the matching ``*-labels-idx1-ubyte[.gz]`` file.
"""
from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path
from typing import Union

import numpy as np

from .errors import DataError

PathLike = Union[str, os.PathLike]


def _label_strings(path: Path, y: np.ndarray) -> list[str]:
    if y.ndim != 1:
        raise DataError(path, f"y must be one label per sequence, shape (N,), got shape {y.shape}")
    if y.dtype.kind in "iub":
        return [str(int(v)) for v in y]
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(path, "y holds non-integer numbers: class labels must be integers or strings")
        return [str(int(v)) for v in y]
    if y.dtype.kind in "US":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in y]
    raise DataError(path, f"y has dtype {y.dtype}: class labels must be integers or strings")


def _as_float(path: Path, a, what: str) -> np.ndarray:
    try:
        out = np.asarray(a, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(path, f"{what} is not numeric (dtype {np.asarray(a).dtype})") from None
    return out[:, None] if out.ndim == 1 else out


def read_npz(path: PathLike, *, allow_pickle: bool = False,
             labels: bool = True) -> tuple[list[np.ndarray], list[str]]:
    """(sequences (T_i, F) float32, labels as strings) from an ``.npz`` (see the module docstring).
    ``labels=False``: ``y`` may be absent (for prediction); the labels are then empty strings."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=allow_pickle)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(path, f"not a readable .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(path, "an .npy array, not an .npz archive of named arrays (X, y[, lengths])")
    with archive:
        names = list(archive.files)
        for key in ("X", "y") if labels else ("X",):
            if key not in names:
                raise DataError(path, f"no array {key!r} (the archive has {', '.join(names) or 'none'}); expected X "
                                      "(N, T, F) or a ragged/flat X with lengths, and y (N,)")
        try:
            X = archive["X"]
            y = archive["y"] if "y" in names else None
            lengths = archive["lengths"] if "lengths" in names else None
        except ValueError as e:
            if "pickle" in str(e).lower():
                raise DataError(path, "X or y is an object array (a ragged list), and loading it runs pickle: save "
                                      "the sequences concatenated with a 'lengths' array, or pass --allow_pickle true "
                                      "for a file you trust") from None
            raise DataError(path, f"cannot read the arrays: {e}") from None
    sequences = _split(path, X, lengths)
    names_ = _label_strings(path, np.asarray(y)) if y is not None else [""] * len(sequences)
    if len(sequences) != len(names_):
        raise DataError(path, f"X holds {len(sequences)} sequences but y holds {len(names_)} labels: one label per "
                              "sequence")
    if not sequences:
        raise DataError(path, "no sequences (X is empty)")
    return sequences, names_


def _split(path: Path, X: np.ndarray, lengths) -> list[np.ndarray]:
    if X.dtype == object:
        seqs = [_as_float(path, s, f"X[{i}]") for i, s in enumerate(X)]
        widths = {s.shape[1:] for s in seqs}
        if len(widths) > 1 or any(s.ndim != 2 for s in seqs):
            raise DataError(path, f"the sequences of X must all be (T, F) with one F, got shapes "
                                  f"{sorted({s.shape for s in seqs})[:4]}")
        return seqs
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths.size and lengths.min() < 1):
            raise DataError(path, "lengths must be positive integers, one per sequence, shape (N,)")
    if X.ndim in (1, 2) and lengths is not None:  # flat: (ΣT, F) or (ΣT,)
        flat = _as_float(path, X, "X")
        if int(lengths.sum()) != len(flat):
            raise DataError(path, f"lengths sum to {int(lengths.sum())} but the flat X has {len(flat)} steps")
        return np.split(flat, np.cumsum(lengths)[:-1])
    if X.ndim == 2:
        X = X[:, :, None]  # (N, T) -> (N, T, 1)
    if X.ndim != 3:
        raise DataError(path, f"X must be (N, T, F), (N, T), or flat (ΣT, F) with lengths; got shape {X.shape}")
    X = _as_float(path, X, "X")
    if lengths is None:
        return list(X)
    if len(lengths) != len(X) or lengths.max(initial=0) > X.shape[1]:
        raise DataError(path, f"lengths must be (N,) = ({len(X)},) with values at most T = {X.shape[1]}, got "
                              f"shape {lengths.shape} and max {lengths.max(initial=0)}")
    return [X[i, : int(n)] for i, n in enumerate(lengths)]


# --- IDX ---------------------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: PathLike) -> np.ndarray:
    """The array of an IDX file (``.gz`` read through gzip)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(path, f"not a readable gzip file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] < 1:
        raise DataError(path, "not an IDX file (its magic number should be 0x0000TTNN: type TT, NN dimensions)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(raw[4:header], dtype=">i4"))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != need:
        raise DataError(path, f"the header says shape {shape} ({need} bytes of data), the file holds "
                              f"{len(raw) - header}: truncated?")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def idx_labels_path(images: PathLike) -> Path:
    """The labels file beside an images file: ``train-images-idx3-ubyte.gz`` -> ``train-labels-idx1-ubyte.gz``."""
    images = Path(images).expanduser()
    return images.with_name(images.name.replace("images-idx3", "labels-idx1"))


def read_idx_sequences(images: PathLike) -> tuple[list[np.ndarray], list[str]]:
    """An IDX images file (N, H, W) as N sequences of H steps of W features, and the labels of the labels file."""
    images = Path(images).expanduser()
    labels_path = idx_labels_path(images)
    if labels_path == images:
        raise DataError(images, "cannot find the labels: an IDX images file is named *-images-idx3-ubyte[.gz] and "
                                "its labels *-labels-idx1-ubyte[.gz] beside it")
    X = read_idx(images)
    y = read_idx(labels_path)
    if X.ndim != 3:
        raise DataError(images, f"expected images (N, H, W), got shape {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise DataError(labels_path, f"expected {len(X)} labels (N,), got shape {y.shape}")
    return list(X.astype(np.float32)), [str(int(v)) for v in y]


__all__ = ["read_npz", "read_idx", "read_idx_sequences", "idx_labels_path"]

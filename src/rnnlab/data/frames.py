"""Labelled clips of frames for action recognition: a folder per clip of images, or an array per clip.

Layout (the UCF101 / Something-Something style after frame extraction)::

    root/<label>/<clip>/0001.png, 0002.png, ...     frames of one clip (PNG or JPEG), in natural order
    root/<label>/<clip>.npy                          an array (T, H, W) or (T, H, W, C)
    root/<label>/<clip>.npz                          the same, as the array 'frames' (or the archive's only array)

The label is the name of the folder above the clip. Frames are sorted naturally (``frame2`` before
``frame10``). Pixels become float32: 8-bit values divided by 255, float arrays kept as they are. ``color``
decides the channels: grey (C = 1; RGB frames are converted with PIL's luma), rgb (C = 3; grey frames
repeated), or auto (rgb when the first clip has colour). ``frame_size`` > 0 resizes every frame to a square
of that side (bilinear); with 0 every frame of the data set must have one size. ``max_frames`` > 0 keeps that
many frames spread evenly over a longer clip.

Errors name the clip and, where it applies, the frame: a clip whose frames differ in size, an empty clip
folder, an unreadable image, an array of the wrong shape.
"""
from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz")
Color = Literal["auto", "grey", "rgb"]


def natural_key(name: str) -> list:
    """'frame10.png' -> ['frame', 10, '.png'], so that frame2 sorts before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class ClipOptions:
    """How clips are read (the ``action`` task's config holds the same fields)."""

    color: Color = "auto"
    frame_size: int = 0
    max_frames: int = 0


def _image(path: Path, clip: Path, color: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("L" if color == "grey" else "RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(path, f"clip {clip}: cannot read this frame as an image ({type(e).__name__}: {e})") from None


def _has_colour(path: Path) -> bool:
    if path.suffix.lower() in ARRAY_SUFFIXES:
        a = _load_array(path)
        return a.ndim == 4 and a.shape[-1] >= 3
    from PIL import Image

    frames = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                    key=lambda p: natural_key(p.name))
    if not frames:
        return False
    try:
        with Image.open(frames[0]) as image:
            return image.mode not in ("1", "L", "LA", "I", "I;16", "F", "P")
    except OSError:
        return False  # _read_folder names the unreadable frame


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) float -> (size, size, C), bilinear per channel."""
    from PIL import Image

    channels = [np.asarray(Image.fromarray(frame[..., c].astype(np.float32), mode="F").resize((size, size),
                                                                                              Image.BILINEAR))
                for c in range(frame.shape[-1])]
    return np.stack(channels, axis=-1)


def _read_folder(clip: Path, options: ClipOptions, color: str) -> list[np.ndarray]:
    files = sorted((p for p in clip.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise DataError(clip, f"empty clip folder: no frames ({', '.join(IMAGE_SUFFIXES)}) in it")
    frames, first = [], None
    for path in files:
        image = _image(path, clip, color)
        if first is None:
            first = (path.name, image.size)
        elif image.size != first[1]:
            raise DataError(clip, f"frame {path.name} is {image.size[0]}x{image.size[1]} but frame {first[0]} is "
                                  f"{first[1][0]}x{first[1][1]}: every frame of a clip needs one size")
        a = np.asarray(image, dtype=np.float32) / 255.0
        frames.append(a[..., None] if a.ndim == 2 else a)  # (H, W, C)
    return frames


def _load_array(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(path, f"not a readable NumPy file ({e})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = loaded.files
            if "frames" in names:
                return loaded["frames"]
            if len(names) == 1:
                return loaded[names[0]]
            raise DataError(path, f"an .npz clip holds the array 'frames' (or one array only), this one has "
                                  f"{', '.join(names) or 'none'}")
    return loaded


def _read_array(path: Path, color: str) -> list[np.ndarray]:
    a = _load_array(path)
    if a.ndim not in (3, 4) or a.shape[0] == 0 or (a.ndim == 4 and a.shape[-1] not in (1, 3, 4)):
        raise DataError(path, f"a clip array must be (T, H, W) or (T, H, W, C) with C 1, 3 or 4 and T >= 1, got "
                              f"shape {a.shape}")
    if a.dtype.kind not in "uif":
        raise DataError(path, f"a clip array must be numeric, got dtype {a.dtype}")
    x = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    x = x[..., :3]  # drop alpha
    if color == "grey" and x.shape[-1] == 3:
        x = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None]  # ITU-R 601 luma, as PIL's "L"
    elif color == "rgb" and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return list(x)


def read_clip(path: Union[str, os.PathLike], options: ClipOptions = ClipOptions(), *,
              color: str = "grey") -> np.ndarray:
    """One clip (a folder of frames or an array file) as (T, C, H, W) float32; ``color`` 'grey' or 'rgb'."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"clip not found: {path}")
    frames = _read_folder(path, options, color) if path.is_dir() else _read_array(path, color)
    if options.max_frames and len(frames) > options.max_frames:
        keep = np.linspace(0, len(frames) - 1, options.max_frames).round().astype(int)
        frames = [frames[i] for i in keep]
    if options.frame_size:
        frames = [_resize(f, options.frame_size) for f in frames]
    return np.stack(frames).transpose(0, 3, 1, 2).copy()  # (T, C, H, W)


def find_clips(root: Union[str, os.PathLike]) -> list[tuple[Path, str]]:
    """(clip path, label) for every clip under ``root/<label>/``, sorted by label, then naturally by name."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(root, "expected a folder of label folders (root/<label>/<clip>/frames or "
                              "root/<label>/<clip>.npy)")
    clips = []
    for label_dir in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        for entry in sorted(label_dir.iterdir(), key=lambda p: natural_key(p.name)):
            if entry.is_dir() or entry.suffix.lower() in ARRAY_SUFFIXES:
                clips.append((entry, label_dir.name))
    if not clips:
        raise DataError(root, "no clips: expected root/<label>/<clip>/ folders of frames or root/<label>/<clip>.npy "
                              "arrays")
    return clips


def read_clips(root: Union[str, os.PathLike], options: ClipOptions = ClipOptions(),
               color: Optional[str] = None) -> tuple[list[np.ndarray], list[str], str]:
    """(clips (T_i, C, H, W), labels, the color used) of every clip under ``root``. With ``frame_size`` 0 every
    clip must have the frame size of the first (the error names the first clip that differs)."""
    found = find_clips(root)
    if color is None:
        color = options.color if options.color != "auto" else ("rgb" if _has_colour(found[0][0]) else "grey")
    clips, labels = [], []
    for path, label in found:
        clip = read_clip(path, options, color=color)
        if clips and clip.shape[1:] != clips[0].shape[1:]:
            raise DataError(path, f"frames of {clip.shape[3]}x{clip.shape[2]} but clip {found[0][0]} has "
                                  f"{clips[0].shape[3]}x{clips[0].shape[2]}: give --frame_size N to resize every "
                                  "frame to N x N")
        clips.append(clip)
        labels.append(label)
    return clips, labels, color


__all__ = ["ClipOptions", "read_clip", "read_clips", "find_clips", "natural_key", "IMAGE_SUFFIXES",
           "ARRAY_SUFFIXES"]

"""Captioned images: a captions file (CSV or JSON) naming images in a folder, several captions per image allowed.

Formats (chosen by the file's suffix):

- ``.csv`` / ``.txt``: a header row with an ``image`` column (also ``file_name`` or ``filename``) and a
  ``caption`` column, one caption per row (Flickr8k's ``captions.txt`` is this). A caption holding commas
  should be quoted; when it is not and ``caption`` is the last column, the extra fields are joined back with
  commas.
- ``.json``: a list of ``{"image": NAME, "caption": TEXT}`` objects (``"captions": [TEXT, ...]`` also works),
  or the COCO captions layout ``{"images": [{"id", "file_name"}, ...], "annotations": [{"image_id",
  "caption"}, ...]}``.

Image names are relative to ``images`` (a folder; default the captions file's own folder). Rows of the same
image are gathered into one :class:`CaptionedImage`, in the order the images first appear, so that a split by
image (never the same image in training and test) is a split of the list. :func:`load_image` reads a picture
resized to a fixed size, RGB or grey, as a uint8 tensor (C, H, W). Every problem is a :class:`DataError`
naming the file (and the line of a CSV) and what is wrong.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch
from torch import Tensor

from .errors import DataError, read_text

__all__ = ["CaptionedImage", "read_captions", "load_image", "IMAGE_COLUMNS", "CAPTION_COLUMNS"]

IMAGE_COLUMNS = ("image", "file_name", "filename")
CAPTION_COLUMNS = ("caption",)
Colour = Literal["rgb", "grey"]
PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class CaptionedImage:
    """One image (its path) and all of its captions."""

    image: str
    captions: tuple[str, ...]


def read_captions(path: PathLike, *, images: Optional[PathLike] = None,
                  lowercase: bool = False) -> list[CaptionedImage]:
    """The captioned images of a CSV or JSON captions file (see the module docstring), every image checked to
    exist. ``lowercase`` lower-cases the captions."""
    path = Path(path).expanduser()
    folder = Path(images).expanduser() if images is not None else path.parent
    text = read_text(path, what="captions file")
    if images is not None and not folder.is_dir():
        raise FileNotFoundError(f"images folder not found: {folder} (the folder the image names of {path} are in)")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        rows = _csv_rows(path, text)
    elif suffix == ".json":
        rows = _json_rows(path, text)
    else:
        raise DataError(path, f"unknown captions format {suffix or '(no suffix)'!r}: give a .csv, .txt or .json file")
    grouped: dict[str, list[str]] = {}
    for name, caption, line in rows:
        caption = " ".join(caption.split())
        if not name.strip():
            raise DataError(path, "empty image name", line=line)
        if not caption:
            raise DataError(path, f"empty caption for image {name!r}", line=line)
        image = folder / name.strip()
        key = str(image)
        if key not in grouped:
            if not image.is_file():
                raise DataError(path, f"image {name.strip()!r} not found in {folder}", line=line)
            grouped[key] = []
        grouped[key].append(caption.lower() if lowercase else caption)
    if not grouped:
        raise DataError(path, "no captions in the file (only a header?)")
    return [CaptionedImage(image, tuple(caps)) for image, caps in grouped.items()]


def _column(path: Path, header: list[str], names: tuple[str, ...], what: str) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    raise DataError(path, f"no {what} column (expected one named {' or '.join(names)}); the header has "
                          f"{', '.join(repr(h) for h in header)}", line=1)


def _csv_rows(path: Path, text: str) -> list[tuple[str, str, int]]:
    """(image name, caption, line) per data row of a CSV with a header."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
        image_col = _column(path, header, IMAGE_COLUMNS, "image")
        caption_col = _column(path, header, CAPTION_COLUMNS, "caption")
        rows = []
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) > len(header) and caption_col == len(header) - 1:
                fields = fields[:caption_col] + [",".join(fields[caption_col:])]  # an unquoted caption with commas
            if len(fields) <= max(image_col, caption_col):
                raise DataError(path, f"{len(fields)} field(s), expected {len(header)} (the header's columns)",
                                line=line)
            rows.append((fields[image_col], fields[caption_col], line))
    except csv.Error as e:
        raise DataError(path, f"not a valid CSV file: {e}", line=reader.line_num) from None
    return rows


def _json_rows(path: Path, text: str) -> list[tuple[str, str, Optional[int]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None
    if isinstance(data, dict) and "annotations" in data and "images" in data:
        return _coco_rows(path, data)
    if not isinstance(data, list):
        raise DataError(path, "expected a JSON list of {\"image\", \"caption\"} objects or the COCO captions layout "
                              "{\"images\": [...], \"annotations\": [...]}")
    rows = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "image" not in item or not ("caption" in item or "captions" in item):
            raise DataError(path, f"item {i} must be an object with \"image\" and \"caption\" (or \"captions\"), "
                                  f"got {str(item)[:60]}")
        caps = item.get("captions", [item.get("caption")])
        strings = isinstance(caps, list) and all(isinstance(c, str) for c in caps)
        if not strings or not isinstance(item["image"], str):
            raise DataError(path, f"item {i}: \"image\" must be a string and the captions strings")
        rows += [(item["image"], c, None) for c in caps]
    return rows


def _coco_rows(path: Path, data: dict) -> list[tuple[str, str, Optional[int]]]:
    names = {}
    for i, image in enumerate(data["images"] if isinstance(data["images"], list) else []):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise DataError(path, f"images[{i}] must be an object with \"id\" and \"file_name\"")
        names[image["id"]] = image["file_name"]
    rows = []
    for i, ann in enumerate(data["annotations"] if isinstance(data["annotations"], list) else []):
        if not isinstance(ann, dict) or not isinstance(ann.get("caption"), str) or "image_id" not in ann:
            raise DataError(path, f"annotations[{i}] must be an object with \"image_id\" and \"caption\"")
        if ann["image_id"] not in names:
            raise DataError(path, f"annotations[{i}] names image_id {ann['image_id']!r}, which \"images\" does "
                                  "not list")
        rows.append((names[ann["image_id"]], ann["caption"], None))
    return rows


def _zero_size(raw: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from a PNG or PPM/PGM header when one of them is 0 (Pillow refuses such files without
    saying why), else None."""
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24:
        width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    elif raw[:2] in (b"P5", b"P6"):
        parts = raw[2:64].split()
        if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        width, height = int(parts[0]), int(parts[1])
    else:
        return None
    return (width, height) if width == 0 or height == 0 else None


def load_image(path: PathLike, *, size: int, colour: Colour = "rgb") -> Tensor:
    """The picture at ``path`` resized to ``size`` × ``size`` (bilinear), as uint8 (C, size, size), C = 3 for
    RGB or 1 for grey. A missing, empty, zero-size or unreadable file is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image not found")
    raw = path.read_bytes()
    if not raw:
        raise DataError(path, "empty image file (0 bytes)")
    zero = _zero_size(raw)
    if zero is not None:
        raise DataError(path, f"zero-size image ({zero[0]} × {zero[1]} pixels)")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            if img.width == 0 or img.height == 0:
                raise DataError(path, f"zero-size image ({img.width} × {img.height} pixels)")
            img = img.convert("L" if colour == "grey" else "RGB").resize((size, size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(path, f"not a readable image (corrupt, truncated or not a picture): {e}") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy())  # (C, H, W)

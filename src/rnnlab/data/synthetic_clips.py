"""Generated clips of a moving shape whose class is its motion: the embedded data of the ``action`` task.

Six classes: ``left``, ``right``, ``up``, ``down`` (a translation by 0.6-1.2 pixels per frame at 32×32),
``rotate`` (20°-35° per frame, either way) and ``grow`` (the size rising by 3-5% per frame). Each clip draws
its shape (a bar, a triangle, an L or an arrow head), its size, its orientation and its start position at
random, for every class alike, so that any single frame could belong to any class: only the change between
frames tells the class. Distractors: 2-4 small dots at fresh random places in every frame, a random
background level, and Gaussian pixel noise (σ = 0.08). Shapes are drawn at 4× and averaged down (anti-aliased),
so sub-pixel motion still changes the pixels.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("left", "right", "up", "down", "rotate", "grow")

# Shapes in unit coordinates (about [-1, 1]), none with a rotational symmetry of 90° or less.
SHAPES = {
    "bar": [(-1.0, -0.3), (1.0, -0.3), (1.0, 0.3), (-1.0, 0.3)],
    "triangle": [(-1.0, -0.8), (1.0, 0.0), (-1.0, 0.8)],
    "ell": [(-1.0, -1.0), (-0.35, -1.0), (-0.35, 0.4), (1.0, 0.4), (1.0, 1.0), (-1.0, 1.0)],
    "arrow": [(-1.0, -0.9), (1.0, 0.0), (-1.0, 0.9), (-0.4, 0.0)],
}
_SUPER = 4


def _polygon(shape: str, cx: float, cy: float, size: float, angle: float) -> list[tuple[float, float]]:
    c, s = np.cos(angle), np.sin(angle)
    return [(_SUPER * (cx + size * (c * x - s * y)), _SUPER * (cy + size * (s * x + c * y))) for x, y in SHAPES[shape]]


def _frame(polygon, dots, size: int) -> np.ndarray:
    canvas = Image.new("L", (size * _SUPER, size * _SUPER), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon(polygon, fill=255)
    for x, y in dots:
        draw.ellipse([_SUPER * (x - 1), _SUPER * (y - 1), _SUPER * (x + 1), _SUPER * (y + 1)], fill=200)
    a = np.asarray(canvas, dtype=np.float32).reshape(size, _SUPER, size, _SUPER).mean(axis=(1, 3))
    return a / 255.0  # (H, W) in [0, 1]


def _clip(c: int, frames: int, size: int, rng: np.random.Generator, speed: float = 1.0) -> np.ndarray:
    scale = size / 32.0
    shape = str(rng.choice(list(SHAPES)))
    r0 = rng.uniform(3.5, 6.0) * scale  # the shape's half-extent in pixels
    angle0 = rng.uniform(0, 2 * np.pi)
    t = np.arange(frames, dtype=np.float64)
    radius, angle = np.full(frames, r0), np.full(frames, angle0)
    dx = dy = np.zeros(frames)
    if c < 4:
        v = rng.uniform(0.6, 1.2) * scale * speed * t
        dx, dy = [(-v, dy), (v, dy), (dx, -v), (dx, v)][c]
    elif c == 4:
        angle = angle0 + rng.choice([-1, 1]) * np.radians(rng.uniform(20, 35)) * t
    else:
        radius = r0 * (1 + rng.uniform(0.03, 0.05)) ** t
    # a start position that keeps the whole path inside the frame
    reach = radius.max() + 1
    lo_x, hi_x = reach - dx.min(), size - reach - dx.max()
    lo_y, hi_y = reach - dy.min(), size - reach - dy.max()
    cx = rng.uniform(lo_x, max(lo_x, hi_x))
    cy = rng.uniform(lo_y, max(lo_y, hi_y))
    background = rng.uniform(0.0, 0.2)
    out = np.empty((frames, size, size), dtype=np.float32)
    for k in range(frames):
        dots = rng.uniform(1, size - 1, (int(rng.integers(2, 5)), 2))
        poly = _polygon(shape, cx + dx[k], cy + dy[k], radius[k], angle[k])
        frame = background + (1 - background) * _frame(poly, dots, size)
        out[k] = frame + rng.normal(0, 0.08, (size, size))
    return np.clip(out, 0.0, 1.0)


def synthetic_clips(n: int, seed: int, *, frames: int = 12, size: int = 32,
                    classes: Sequence[str] = CLASSES, speed: float = 1.0) -> tuple[list[np.ndarray], list[str]]:
    """``n`` clips (T, 1, H, W) float32 in [0, 1] with T = ``frames`` and H = W = ``size``, and their class names
    (balanced: the ``classes``, a subset of :data:`CLASSES`, in turn). ``speed`` multiplies the translations'
    speed (0.6-1.2 pixels per frame at 32x32, in proportion at other sizes)."""
    unknown = set(classes) - set(CLASSES)
    if unknown or not classes:
        raise ValueError(f"classes must be among {CLASSES}, got {list(classes)}")
    rng = np.random.default_rng(seed)
    clips, labels = [], []
    for i in range(n):
        name = classes[i % len(classes)]
        clips.append(_clip(CLASSES.index(name), frames, size, rng, speed)[:, None])
        labels.append(name)
    return clips, labels


__all__ = ["CLASSES", "SHAPES", "synthetic_clips"]

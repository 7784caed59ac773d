"""Generated scenes for image captioning: 1–3 coloured shapes on a noisy canvas, captioned by a small grammar.

A scene places each shape in a cell of a 3 × 3 grid (top / middle / bottom × left / center / right), with a
colour (red, green, blue, yellow, white), a kind (circle, square, triangle) and a size (small, large):

- one shape: its place, e.g. "a small red circle in the top left", "there is a red circle in the top left";
- two shapes in one row or one column: their relation, e.g. "a red circle left of a blue square",
  "a blue square to the right of a red circle";
- three shapes, one per column: their order, e.g. "a red circle , a blue square and a green triangle from left
  to right".

Every scene gets four paraphrases (:data:`CAPTIONS_PER_SCENE`), so BLEU has several references, and getting
a caption right needs the colour, kind, size and place of each shape: what attention over the image's
regions should find. The scene (:class:`Scene`) is drawn separately from its picture (:func:`render`), so the
captions of a data set are cheap to list (the bundle's fingerprint of the embedded data).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

__all__ = ["Shape", "Scene", "CAPTIONS_PER_SCENE", "random_scene", "captions", "render", "scenes"]

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40),
           "white": (235, 235, 235)}
KINDS = ("circle", "square", "triangle")
SIZES = {"small": 0.09, "large": 0.15}  # the radius as a fraction of the canvas side
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
CAPTIONS_PER_SCENE = 4


@dataclass(frozen=True)
class Shape:
    """One shape: kind, colour, size name and its grid cell (row, column), each in 0..2; x, y its centre in
    [0, 1] (fractions of the canvas, x to the right, y down)."""

    kind: str
    colour: str
    size: str
    row: int
    column: int
    x: float
    y: float


@dataclass(frozen=True)
class Scene:
    """The shapes of one picture, and how they are arranged: "one", "row" or "column" (two shapes side by
    side or one above the other, the first one left or top) or "three" (left to right)."""

    shapes: tuple[Shape, ...]
    layout: str


def _shape(rng: random.Random, row: int, column: int) -> Shape:
    # centre near the middle of the cell (a quarter cell of jitter), so its place is never ambiguous
    x = (column + 0.5 + rng.uniform(-0.15, 0.15)) / 3
    y = (row + 0.5 + rng.uniform(-0.15, 0.15)) / 3
    return Shape(rng.choice(KINDS), rng.choice(list(COLOURS)), rng.choice(list(SIZES)), row, column, x, y)


def random_scene(rng: random.Random) -> Scene:
    """A scene of 1, 2 or 3 shapes in distinct cells (see the module docstring)."""
    n = rng.choice((1, 2, 3))
    if n == 1:
        return Scene((_shape(rng, rng.randrange(3), rng.randrange(3)),), "one")
    if n == 2:
        line, (a, b) = rng.randrange(3), sorted(rng.sample(range(3), 2))
        if rng.random() < 0.5:
            return Scene((_shape(rng, line, a), _shape(rng, line, b)), "row")  # first is left
        return Scene((_shape(rng, a, line), _shape(rng, b, line)), "column")  # first is on top
    return Scene(tuple(_shape(rng, rng.randrange(3), c) for c in range(3)), "three")


def _place(s: Shape) -> str:
    row, column = ROWS[s.row], COLUMNS[s.column]
    if row == "middle" and column == "center":
        return "in the center"
    if row == "middle":
        return f"on the {column}"
    if column == "center":
        return f"at the {row}"
    return f"in the {row} {column}"


def _noun(s: Shape, *, sized: bool) -> str:
    return f"a {s.size} {s.colour} {s.kind}" if sized else f"a {s.colour} {s.kind}"


def captions(scene: Scene, rng: random.Random) -> list[str]:
    """The :data:`CAPTIONS_PER_SCENE` paraphrases of a scene; ``rng`` picks which of them name the sizes."""
    sized = [rng.random() < 0.5 for _ in range(CAPTIONS_PER_SCENE)]
    n = [lambda s, i=i: _noun(s, sized=sized[i]) for i in range(CAPTIONS_PER_SCENE)]
    s = scene.shapes
    if scene.layout == "one":
        where = _place(s[0])
        return [f"{n[0](s[0])} {where}", f"there is {n[1](s[0])} {where}", f"{where} there is {n[2](s[0])}",
                f"a picture of {n[3](s[0])} {where}"]
    if scene.layout == "row":
        a, b = s
        return [f"{n[0](a)} left of {n[1](b)}", f"{n[1](b)} right of {n[0](a)}",
                f"{n[2](a)} to the left of {n[3](b)}", f"{n[3](b)} to the right of {n[2](a)}"]
    if scene.layout == "column":
        a, b = s
        return [f"{n[0](a)} above {n[1](b)}", f"{n[1](b)} below {n[0](a)}",
                f"{n[2](a)} is above {n[3](b)}", f"{n[3](b)} is below {n[2](a)}"]
    a, b, c = s
    return [f"{n[0](a)} , {n[0](b)} and {n[0](c)} from left to right",
            f"from left to right {n[1](a)} , {n[1](b)} and {n[1](c)}",
            f"{n[2](a)} left of {n[2](b)} left of {n[2](c)}",
            f"{n[3](c)} right of {n[3](b)} right of {n[3](a)}"]


def render(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """The scene's picture: (3, size, size) uint8 RGB, shapes on a dark background with pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    image = np.full((size, size, 3), 30.0, dtype=np.float32)
    for s in scene.shapes:
        cx, cy, r = s.x * size, s.y * size, SIZES[s.size] * size
        if s.kind == "circle":
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif s.kind == "square":
            inside = (np.abs(xx - cx) <= 0.85 * r) & (np.abs(yy - cy) <= 0.85 * r)
        else:  # a triangle pointing up: its half-width grows from 0 at the apex to r at the base
            depth = (yy - (cy - r)) / (2 * r)
            inside = (depth >= 0) & (depth <= 1) & (np.abs(xx - cx) <= depth * r)
        colour = np.array(COLOURS[s.colour], dtype=np.float32) + rng.uniform(-20, 20, 3)
        image[inside] = colour
    image += rng.normal(0.0, 12.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8).transpose(2, 0, 1)  # (3, H, W)


def scenes(n: int, seed: int) -> list[tuple[Scene, list[str]]]:
    """``n`` random scenes with their captions, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        scene = random_scene(rng)
        out.append((scene, captions(scene, rng)))
    return out

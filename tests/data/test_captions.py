"""Captions reader: CSV (Flickr8k's captions.txt), JSON lists and COCO, grouping by image, images resized; and
every bad input as a DataError naming the file."""
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from rnnlab.data.captions import load_image, read_captions
from rnnlab.data.errors import DataError
from rnnlab.data.scenes import CAPTIONS_PER_SCENE, captions, random_scene, render, scenes


def _png(path, size=(8, 6), colour=(255, 0, 0)):
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", size=(20, 5), colour=(0, 0, 255))
    return tmp_path


def test_flickr8k_csv_groups_captions_by_image(folder):
    f = folder / "captions.txt"
    f.write_text('image,caption\na.png,A red box .\nb.png,"A blue bar , wide ."\na.png,Red square\n'
                 "b.png,unquoted, with a comma\n")
    items = read_captions(f, lowercase=True)
    assert [i.image for i in items] == [str(folder / "a.png"), str(folder / "b.png")]
    assert items[0].captions == ("a red box .", "red square")
    assert items[1].captions == ("a blue bar , wide .", "unquoted, with a comma")


def test_json_list_and_coco_layouts(folder):
    f = folder / "caps.json"
    f.write_text(json.dumps([{"image": "a.png", "caption": "one"}, {"image": "b.png", "captions": ["two", "three"]}]))
    assert [i.captions for i in read_captions(f)] == [("one",), ("two", "three")]
    coco = {"images": [{"id": 7, "file_name": "b.png"}, {"id": 9, "file_name": "a.png"}],
            "annotations": [{"image_id": 9, "caption": "x"}, {"image_id": 7, "caption": "y"},
                            {"image_id": 9, "caption": "z"}]}
    f.write_text(json.dumps(coco))
    items = read_captions(f)
    assert [(i.image.rsplit("/", 1)[1], i.captions) for i in items] == [("a.png", ("x", "z")), ("b.png", ("y",))]


def test_images_folder_option(tmp_path):
    (tmp_path / "Images").mkdir()
    _png(tmp_path / "Images" / "a.png")
    f = tmp_path / "captions.txt"
    f.write_text("image,caption\na.png,hello\n")
    assert read_captions(f, images=tmp_path / "Images")[0].image == str(tmp_path / "Images" / "a.png")


def test_images_of_any_size_are_resized(folder):
    a = load_image(folder / "a.png", size=16)
    b = load_image(folder / "b.png", size=16, colour="grey")
    assert a.shape == (3, 16, 16) and a.dtype == torch.uint8 and int(a[0].min()) == 255 and int(a[2].max()) == 0
    assert b.shape == (1, 16, 16)


@pytest.mark.parametrize("text, problem", [
    ("image,caption\nmissing.png,hello\n", "captions.csv:2: image 'missing.png' not found in"),
    ("", "captions.csv: the captions file is empty"),
    ("image,caption\n", "captions.csv: no captions in the file"),
    ("picture,text\na.png,hello\n", "captions.csv:1: no image column (expected one named image or file_name or "
                                    "filename); the header has 'picture', 'text'"),
    ("image,text\na.png,hello\n", "captions.csv:1: no caption column"),
    ("image,caption\na.png,\n", "captions.csv:2: empty caption for image 'a.png'"),
])
def test_bad_csv_names_the_file_and_line(folder, text, problem):
    f = folder / "captions.csv"
    f.write_text(text)
    with pytest.raises(DataError) as e:
        read_captions(f)
    assert problem in str(e.value) and str(folder) in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_json_and_suffix(folder):
    f = folder / "caps.json"
    f.write_text('{"images": []}')
    with pytest.raises(DataError, match="caps.json: expected a JSON list"):
        read_captions(f)
    g = folder / "caps.xml"
    g.write_text("<x/>")
    with pytest.raises(DataError, match="unknown captions format '.xml'"):
        read_captions(g)


def test_corrupt_empty_and_zero_size_images(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a picture")
    with pytest.raises(DataError, match="bad.png: not a readable image"):
        load_image(bad, size=8)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.jpg: empty image file \(0 bytes\)"):
        load_image(empty, size=8)
    zero = tmp_path / "zero.png"  # a PNG whose header says 0 x 4 pixels
    zero.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (0).to_bytes(4, "big") + (4).to_bytes(4, "big")
                     + b"\x08\x02\x00\x00\x00" + b"\x00" * 4)
    with pytest.raises(DataError, match=r"zero.png: zero-size image \(0 × 4 pixels\)"):
        load_image(zero, size=8)


def test_scenes_are_seeded_and_captions_name_what_is_drawn():
    assert [c for _, c in scenes(20, 3)] == [c for _, c in scenes(20, 3)]
    rng = random.Random(0)
    for _ in range(50):
        scene = random_scene(rng)
        caps = captions(scene, rng)
        assert len(caps) == CAPTIONS_PER_SCENE
        for shape in scene.shapes:
            assert all(f"{shape.colour} {shape.kind}" in c for c in caps)
    one = next(s for s in (random_scene(rng) for _ in range(100)) if s.layout == "one")
    image = render(one, 32, np.random.default_rng(0))
    assert image.shape == (3, 32, 32) and image.dtype == np.uint8
    s = one.shapes[0]
    # the shape's colour is at its centre, the background far from it
    cx, cy = int(s.x * 32), int(s.y * 32)
    assert image[:, cy, cx].astype(int).max() > 150

"""The caption task end to end: a tiny train run on the embedded scenes and on a CSV of images, the bundle,
evaluate (BLEU against every reference), predict with the attention figure, the CLI and every bad input."""
import json

import pytest
from PIL import Image

from rnnlab import cli
from rnnlab.tasks import caption
from rnnlab.tasks.caption import score

TINY = ["--embedded_size", "24", "--embedded_held_out", "6", "--image_size", "16", "--batch_size", "16", "--model.channels", "[4, 8]",
        "--model.feature_size", "8", "--model.embedding_size", "8", "--model.decoder.hidden_size", "16",
        "--trainer.max_steps", "3", "--trainer.warmup_steps", "0", "--trainer.progress", "false", "--trainer.curves", "false",
        "--decode.max_new_tokens", "6"]


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("caption") / "run"
    assert cli.main(["train", "caption", "--trainer.run_dir", str(run_dir), *TINY]) == 0
    return run_dir / "bundle"


@pytest.fixture
def images(tmp_path):
    """Three images of different sizes and a Flickr8k-style captions.txt naming them, two captions each."""
    folder = tmp_path / "Images"
    folder.mkdir()
    for i, (size, colour) in enumerate([((20, 16), "red"), ((9, 30), "blue"), ((16, 16), "green")]):
        Image.new("RGB", size, colour).save(folder / f"{i}.png")
    rows = [f"{i}.png,a {c} picture\n{i}.png,\"a {c} square, plain\"" for i, c in enumerate(["red", "blue", "green"])]
    (tmp_path / "captions.txt").write_text("image,caption\n" + "\n".join(rows) + "\n")
    return tmp_path


def test_train_writes_a_bundle_with_bleu_on_the_held_out_scenes(bundle):
    metrics = json.loads((bundle / "metrics.json").read_text())
    for key in ("valid_bleu", "test_bleu", "test_precision_4", "test_brevity_penalty"):
        assert key in metrics
    assert metrics["test_images"] == 6
    stored = json.loads((bundle / "config.json").read_text())
    assert stored["task"] == "caption" and stored["model_type"] == "Captioner"


def test_predict_prints_a_caption_and_draws_the_attention(bundle, images, tmp_path, capsys):
    figure = tmp_path / "attention.png"
    code, out, err = run(["predict", str(bundle), str(images / "Images" / "0.png"), str(images / "Images" / "1.png"),
                          "--attention", str(figure), "--beam_size", "2"], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["image"] for line in lines] == [str(images / "Images" / "0.png"), str(images / "Images" / "1.png")]
    assert all(isinstance(line["caption"], str) for line in lines)
    assert figure.stat().st_size > 1000 and Image.open(figure).size[0] > 100


def test_evaluate_scores_the_held_out_images_and_a_given_file(bundle, images, capsys):
    code, out, err = run(["evaluate", str(bundle)], capsys)
    assert code == 0, err
    held_out = json.loads(out)
    assert held_out["images"] == 6 and 0 <= held_out["bleu"] <= 100
    code, out, err = run(["evaluate", str(bundle), "--data", str(images / "captions.txt"), "--images",
                          str(images / "Images")], capsys)
    assert code == 0, err
    scored = json.loads(out)
    assert scored["images"] == 3 and "precision_1" in scored


@pytest.mark.slow  # a second train run: ~5 s on a busy machine
def test_train_on_a_captions_file_splits_by_image(images, tmp_path):
    config = caption.CaptionConfig(
        data=str(images / "captions.txt"), images=str(images / "Images"), valid_fraction=0.34, test_fraction=0.34,
        image_size=8, model=caption.CaptionModelConfig(channels=(4,), feature_size=4, embedding_size=4,
                                                       attention="none", condition="every"),
        trainer=caption.TrainerConfig(max_steps=2, warmup_steps=0, progress=False, curves=False, run_dir=str(tmp_path / "run")))
    train, valid, test = caption.load_data(config)
    assert len(train.images) == len(valid.images) == len(test.images) == 1
    assert {train.captions[0], valid.captions[0], test.captions[0]} == {
        ("a red picture", "a red square, plain"), ("a blue picture", "a blue square, plain"),
        ("a green picture", "a green square, plain")}
    path = caption.train(config)
    assert json.loads((path / "metrics.json").read_text())["test_images"] == 1


def test_score_uses_every_reference_of_an_image():
    refs = [("a red circle on the left", "there is a red circle on the left"), ("a blue square at the top",)]
    assert score(["there is a red circle on the left", "a blue square at the top"], refs)["bleu"] == pytest.approx(100)
    assert score(["a green triangle", "a green triangle"], refs)["bleu"] < 20


def _bad_csv(folder, text):
    f = folder / "bad.csv"
    f.write_text(text)
    return f


@pytest.mark.parametrize("case, message", [
    ("missing", "bad.csv:5: image 'nowhere.png' not found in"),
    ("corrupt", "broken.png: not a readable image"),
    ("empty", "bad.csv: the captions file is empty"),
    ("columns", "bad.csv:1: no caption column"),
    ("zero", "zero.png: zero-size image (0 × 4 pixels)"),
])
def test_bad_input_is_one_line_naming_the_file_and_exit_2(images, tmp_path, capsys, case, message):
    folder = images / "Images"
    if case == "corrupt":
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    if case == "zero":
        (folder / "zero.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (0).to_bytes(4, "big")
                                          + (4).to_bytes(4, "big") + b"\x08\x02\x00\x00\x00\x00\x00\x00\x00")
    good = "image,caption\n0.png,a\n1.png,b\n2.png,c\n"
    text = {"missing": good + "nowhere.png,hi\n", "corrupt": good + "broken.png,hi\n", "empty": "",
            "columns": "image,text\n0.png,hi\n", "zero": good + "zero.png,hi\n"}[case]
    f = _bad_csv(folder, text)
    code, out, err = run(["train", "caption", "--data", str(f), "--trainer.run_dir", str(tmp_path / "run"), *TINY],
                         capsys)
    assert code == 2
    assert err.startswith("rnnlab: error: ") and message in err and str(folder) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_predict_on_a_bad_image_and_attention_without_attention(bundle, images, tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    code, _, err = run(["predict", str(bundle), str(tmp_path / "broken.jpg")], capsys)
    assert code == 2 and "broken.jpg: not a readable image" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["predict", str(bundle), str(tmp_path / "missing.png")], capsys)
    assert code == 2 and "missing.png: image not found" in err


def test_options_that_need_data_or_attention_are_refused(tmp_path, capsys):
    code, _, err = run(["train", "caption", "--images", str(tmp_path), "--trainer.run_dir", str(tmp_path)], capsys)
    assert code == 2 and "need --data" in err
    code, _, err = run(["train", "caption", "--model.attention", "none", "--model.attention_penalty", "1",
                        "--trainer.run_dir", str(tmp_path)], capsys)
    assert code == 2 and "need attention='soft'" in err

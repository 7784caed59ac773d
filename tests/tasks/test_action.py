"""The action task end to end: clip folders of PNG frames and .npy/.npz arrays, a tiny run and its bundle,
evaluate and predict, the frame-averaging baseline staying at chance on motion while the recurrent model
learns, and the bad-input errors (one line naming the clip and frame, exit 2)."""
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from rnnlab.cli import main
from rnnlab.data.errors import DataError
from rnnlab.data.frames import ClipOptions, natural_key, read_clip, read_clips
from rnnlab.data.synthetic_clips import CLASSES, synthetic_clips
from rnnlab.structures import EncoderConfig
from rnnlab.tasks import action
from rnnlab.tasks.action import ActionConfig, ActionModelConfig
from rnnlab.training import TrainerConfig

MOTIONS = ("left", "right", "up", "down")


def write_arrays(root, clips, labels):
    for i, (clip, label) in enumerate(zip(clips, labels)):
        (root / label).mkdir(parents=True, exist_ok=True)
        np.save(root / label / f"clip{i}.npy", (clip[:, 0] * 255).astype(np.uint8))  # (T, H, W) uint8
    return str(root)


def write_pngs(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame{k + 1}.png")
    return folder


def tiny_config(tmp_path, **overrides) -> ActionConfig:
    root = tmp_path / "clips"
    if not root.exists():
        write_arrays(root, *synthetic_clips(48, 0, frames=4, size=12, classes=MOTIONS, speed=3.0))
    config = ActionConfig(
        data=str(root), batch_size=8, valid_fraction=0.25,
        model=ActionModelConfig(frame_features=8, channels=(4,), encoder=EncoderConfig(kind="gru", hidden_size=8)),
        trainer=TrainerConfig(lr=1e-2, max_steps=4, max_epochs=0, log_every=100, progress=False, curves=False,
                              device="cpu", run_dir=str(tmp_path / "run")),
    )
    return replace(config, **overrides)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("action")
    config = tiny_config(tmp_path)
    return action.train(config), config, tmp_path


def test_train_evaluate_predict(run, tmp_path):
    path, config, run_tmp = run
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["valid"]["examples"] == 12 and (run_tmp / "run" / "confusion.png").is_file()
    model, labels, stored, color = action.load_classifier(path)
    assert labels == sorted(MOTIONS) and stored == config and color == "grey"
    assert 0.0 < float(model.pixel_std[0]) < 1.0  # fitted on the training pixels (in [0, 1])
    again = action.evaluate(path, plot=str(tmp_path / "c.png"))
    assert again["confusion"] == metrics["valid"]["confusion"] and (tmp_path / "c.png").is_file()
    clip = next((run_tmp / "clips" / "up").iterdir())
    out = list(action.predict(path, [str(clip)]))
    assert out[0]["input"] == str(clip) and set(out[0]["probabilities"]) == set(MOTIONS)


def test_frame_folders_sort_naturally_and_convert_colour(tmp_path):
    frames = [np.full((6, 5, 3), 10 * k, dtype=np.uint8) for k in range(11)]
    clip = write_pngs(tmp_path / "wave" / "c1", frames)
    grey = read_clip(clip, color="grey")
    assert grey.shape == (11, 1, 6, 5)
    np.testing.assert_allclose(grey[:, 0, 0, 0] * 255, [10 * k for k in range(11)], atol=0.6)  # frame2 < frame10
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]
    clips, labels, color = read_clips(tmp_path, ClipOptions(frame_size=4, max_frames=3))
    assert color == "rgb" and labels == ["wave"] and clips[0].shape == (3, 3, 4, 4)
    np.savez(tmp_path / "wave" / "c2.npz", frames=np.zeros((2, 6, 5, 3), dtype=np.uint8))
    assert read_clips(tmp_path)[0][1].shape == (2, 3, 6, 5)


def test_generated_clips_keep_the_class_in_the_motion_only():
    clips, labels = synthetic_clips(12, 0)
    assert labels[:6] == list(CLASSES) and clips[0].shape == (12, 1, 32, 32)
    assert all(0.0 <= c.min() and c.max() <= 1.0 for c in clips)


@pytest.mark.slow
def test_frame_averaging_stays_near_chance_while_the_recurrent_model_learns(tmp_path):
    root = tmp_path / "motion"
    write_arrays(root, *synthetic_clips(192, 1, frames=6, size=16, classes=MOTIONS, speed=3.0))
    test_root = tmp_path / "motion_test"
    write_arrays(test_root, *synthetic_clips(64, 2, frames=6, size=16, classes=MOTIONS, speed=3.0))
    accuracy = {}
    for temporal in ("encoder", "average"):
        config = tiny_config(
            tmp_path, data=str(root), test_data=str(test_root), valid_fraction=0.0, batch_size=32,
            model=ActionModelConfig(frame_features=16, channels=(8,), temporal=temporal,
                                    encoder=EncoderConfig(kind="gru", hidden_size=16), dropout=0.0),
            trainer=replace(tiny_config(tmp_path).trainer, max_steps=150, run_dir=str(tmp_path / temporal)))
        accuracy[temporal] = json.loads((action.train(config) / "metrics.json").read_text())["test_accuracy"]
    assert accuracy["average"] < 0.4  # chance is 0.25: left/right/up/down have the same frames
    assert accuracy["encoder"] > 0.6, accuracy


def bad_inputs(tmp_path):
    train = ["train", "action", "--trainer.run_dir", str(tmp_path / "r"), "--data"]
    sizes = tmp_path / "sizes"
    write_pngs(sizes / "a" / "clip1", [np.zeros((8, 8), np.uint8), np.zeros((8, 6), np.uint8)])
    empty = tmp_path / "empty"
    (empty / "a" / "clip1").mkdir(parents=True)
    broken = tmp_path / "broken"
    write_pngs(broken / "a" / "clip1", [np.zeros((8, 8), np.uint8)])
    (broken / "a" / "clip1" / "frame2.png").write_bytes(b"not a png")
    bad_array = tmp_path / "bad_array"
    (bad_array / "a").mkdir(parents=True)
    np.save(bad_array / "a" / "c.npy", np.zeros((3, 4)))
    return [
        (train + [str(sizes)], "clip1: frame frame2.png is 6x8 but frame frame1.png is 8x8"),
        (train + [str(empty)], "clip1: empty clip folder"),
        (train + [str(broken)], "frame2.png: clip"),
        (train + [str(bad_array)], "c.npy: a clip array must be (T, H, W) or (T, H, W, C)"),
        (train + [str(tmp_path / "nowhere")], "data folder not found"),
    ]


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    for argv, message in bad_inputs(tmp_path):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("rnnlab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        assert message in err, (message, err)


def test_reader_errors_name_clip_and_frame(tmp_path):
    clip = write_pngs(tmp_path / "x" / "c", [np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.uint8)])
    with pytest.raises(DataError, match=r"c: frame frame2.png is 4x5 but frame frame1.png is 4x4"):
        read_clip(clip)

"""The seqclass task end to end: a tiny run on an .npz, its bundle (normalisation inside), evaluate and predict,
the readers (.npz dense/ragged/flat, .ts, IDX), the CLI path and its bad-input errors (one line, exit 2)."""
import gzip
import json
import struct
from dataclasses import replace

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.data.errors import DataError
from rnnlab.data.sequences import read_idx, read_idx_sequences, read_npz
from rnnlab.data.synthetic_signals import CLASSES, synthetic_signals
from rnnlab.structures import EncoderConfig
from rnnlab.tasks import seqclass
from rnnlab.tasks._sequence_classifier import SequenceModelConfig
from rnnlab.tasks.seqclass import SeqclassConfig, label_names, parse_inline
from rnnlab.training import TrainerConfig


def toy(n, seed):
    """Sequences (T, 2) on a large offset and scale whose class is the sign of their mean's first feature."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        label = i % 2
        T = int(rng.integers(5, 9))
        x = rng.normal(0, 1, (T, 2))
        x[:, 0] += 1.5 if label else -1.5
        xs.append((1000 + 50 * x).astype(np.float32))  # far from zero mean / unit scale: normalisation matters
        ys.append(["neg", "pos"][label])
    return xs, ys


def save_flat(path, xs, ys):
    np.savez(path, X=np.concatenate(xs), lengths=np.array([len(x) for x in xs]), y=np.array(ys))
    return str(path)


def tiny_config(tmp_path, **overrides) -> SeqclassConfig:
    config = SeqclassConfig(
        data=save_flat(tmp_path / "train.npz", *toy(80, 0)), test_data=save_flat(tmp_path / "test.npz", *toy(30, 1)),
        batch_size=16, valid_fraction=0.25,
        model=SequenceModelConfig(encoder=EncoderConfig(kind="gru", hidden_size=8), pooling="mean", dropout=0.0),
        trainer=TrainerConfig(lr=3e-2, max_steps=30, max_epochs=0, log_every=100, progress=False, curves=False,
                              device="cpu", run_dir=str(tmp_path / "run")),
    )
    return replace(config, **overrides)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("seqclass")
    config = tiny_config(tmp_path)
    return seqclass.train(config), config, tmp_path


# --- the run and its bundle -----------------------------------------------------------------------------------

def test_train_writes_bundle_with_normalisation_metrics_and_confusion(run):
    path, config, tmp_path = run
    for name in ("config.json", "model.safetensors", "labels.json", "metrics.json"):
        assert (path / name).is_file()
    assert (tmp_path / "run" / "confusion.png").is_file() and (tmp_path / "run" / "confusion_test.png").is_file()
    assert json.loads((path / "labels.json").read_text()) == ["neg", "pos"]
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["valid"]["examples"] == 20 and metrics["test"]["examples"] == 30
    assert metrics["test_accuracy"] > 0.9
    model, labels, stored = seqclass.load_classifier(path)
    assert stored == config
    # the normalisation was fitted on the 60 training sequences only
    train_x, _ = seqclass.load_splits(config)[0]
    flat = np.concatenate(train_x)
    np.testing.assert_allclose(model.feature_mean.numpy(), flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(model.feature_std.numpy(), flat.std(0), rtol=1e-4)


def test_evaluate_without_data_repeats_the_valid_metrics(run, tmp_path):
    path, _, _ = run
    metrics = seqclass.evaluate(path, plot=str(tmp_path / "c.png"))
    stored = json.loads((path / "metrics.json").read_text())["valid"]
    assert metrics["accuracy"] == stored["accuracy"] and metrics["confusion"] == stored["confusion"]
    assert (tmp_path / "c.png").is_file()


def test_predict_files_and_inline_sequences(run):
    path, config, _ = run
    out = list(seqclass.predict(path, [config.test_data, "900,1000;880,990", "1100,1000;1120,1000"]))
    assert len(out) == 32 and out[0]["input"].endswith("test.npz#0")
    assert [o["label"] for o in out[-2:]] == ["neg", "pos"]
    assert abs(sum(out[-1]["probabilities"].values()) - 1) < 1e-4


def test_every_encoder_and_pooling_trains(tmp_path):
    for kind, pooling in (("lstm", "last"), ("cnn", "max"), ("transformer", "attention"), ("mingru", "mean")):
        enc = EncoderConfig(kind=kind, hidden_size=8, num_heads=2)
        config = tiny_config(tmp_path, model=SequenceModelConfig(projection_size=4, encoder=enc, pooling=pooling),
                             trainer=replace(tiny_config(tmp_path).trainer, max_steps=2,
                                             run_dir=str(tmp_path / kind)))
        assert json.loads((seqclass.train(config) / "metrics.json").read_text())["test"]["examples"] == 30


# --- readers ------------------------------------------------------------------------------------------------

def test_npz_dense_with_lengths_ragged_and_integer_labels(tmp_path):
    X = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([10, 2]), lengths=np.array([3, 1]))
    seqs, labels = read_npz(tmp_path / "d.npz")
    assert labels == ["10", "2"] and [s.shape for s in seqs] == [(3, 2), (1, 2)]
    assert label_names(labels) == ["2", "10"]  # integers sort as numbers
    np.savez(tmp_path / "u.npz", X=np.zeros((4, 6)), y=np.array(["a", "b", "a", "b"]))
    assert read_npz(tmp_path / "u.npz")[0][0].shape == (6, 1)  # (N, T): one feature
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.ones((3, 2)), np.zeros((5, 2))
    np.savez(tmp_path / "r.npz", X=ragged, y=np.array([0, 1]))
    with pytest.raises(DataError, match="loading it runs pickle"):
        read_npz(tmp_path / "r.npz")
    assert [s.shape for s in read_npz(tmp_path / "r.npz", allow_pickle=True)[0]] == [(3, 2), (5, 2)]


def test_idx_reader_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">4B3i", 0, 0, 0x08, 3, 3, 4, 5) + images.tobytes())
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">4Bi", 0, 0, 0x08, 1, 3) + bytes([7, 0, 9]))
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), images)
    seqs, labels = read_idx_sequences(tmp_path / "train-images-idx3-ubyte.gz")
    assert labels == ["7", "0", "9"] and seqs[1].shape == (4, 5)  # 4 rows (steps) of 5 pixels (features)
    np.testing.assert_array_equal(seqs[2], images[2])


def test_embedded_signals_differ_only_by_order_within_a_pair():
    xs, ys = synthetic_signals(12, seed=0)
    assert ys[:6] == list(CLASSES) and all(x.shape[1] == 3 and 48 <= len(x) <= 96 for x in xs)
    assert parse_inline("1,2;3,?").shape == (2, 2)


# --- the CLI and bad input ----------------------------------------------------------------------------------

def test_cli_train_evaluate_predict(tmp_path, capsys):
    save_flat(tmp_path / "t.npz", *toy(40, 2))
    assert main(["train", "seqclass", "--data", str(tmp_path / "t.npz"), "--model.encoder.kind", "gru",
                 "--model.encoder.hidden_size", "4", "--trainer.max_steps", "2", "--trainer.max_epochs", "0",
                 "--trainer.progress", "false", "--trainer.curves", "false",
                 "--trainer.run_dir", str(tmp_path / "run")]) == 0
    assert "valid_accuracy" in capsys.readouterr().out
    bundle = str(tmp_path / "run" / "bundle")
    assert main(["evaluate", bundle, "--data", str(tmp_path / "t.npz")]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 40
    assert main(["predict", bundle, "1,2;3,4"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == "inline"


def bad_inputs(tmp_path, bundle):
    def npz(name, **arrays):
        np.savez(tmp_path / name, **arrays)
        return str(tmp_path / name)

    def text(name, content):
        (tmp_path / name).write_text(content)
        return str(tmp_path / name)

    train = ["train", "seqclass", "--trainer.run_dir", str(tmp_path / "r"), "--data"]
    return [
        (train + [npz("nox.npz", y=np.zeros(3))], "nox.npz: no array 'X' (the archive has y)"),
        (train + [npz("len.npz", X=np.zeros((4, 5, 2)), y=np.zeros(3, dtype=int))],
         "len.npz: X holds 4 sequences but y holds 3 labels"),
        (train + [text("bad.ts", "@problemName B\n@univariate true\n@classLabel true a b\n@data\n1,2,x:a\n")],
         "bad.ts:5: dimension 1, value 3: 'x' is not a number"),
        (train + [text("what.csv", "a,b\n")], "cannot tell the format of"),
        (["evaluate", bundle, "--data", npz("wide.npz", X=np.zeros((2, 3, 5)), y=np.array(["neg", "pos"]))],
         "wide.npz: 5 features per step, but the model reads 2"),
        (["evaluate", bundle, "--data", npz("new.npz", X=np.zeros((2, 3, 2)), y=np.array(["neg", "mixed"]))],
         "new.npz: label 'mixed' (example 1) was never seen in training"),
    ]


def test_cli_bad_input_is_one_line_and_exit_2(run, tmp_path, capsys):
    path, _, _ = run
    for argv, message in bad_inputs(tmp_path, str(path)):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("rnnlab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        assert message in err, (message, err)

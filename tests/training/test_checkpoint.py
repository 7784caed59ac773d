"""Model bundles: round trip without pickle, tied weights, atomic replacement, clear errors for damaged files."""
import json

import pytest
import torch

from rnnlab.structures import (
    DecoderConfig,
    EncoderConfig,
    LanguageModel,
    LanguageModelConfig,
    OneToOne,
    OneToOneConfig,
    Seq2Seq,
    Seq2SeqConfig,
)
from rnnlab.training import load, load_bundle, save_bundle


def _tied():
    return LanguageModel(LanguageModelConfig(11, embedding_size=6, tie_weights=True, encoder=EncoderConfig(kind="gru", hidden_size=6)))


@pytest.mark.parametrize("make", [
    _tied,
    lambda: OneToOne(OneToOneConfig(3, 2, hidden_sizes=(5, 4))),
    lambda: Seq2Seq(Seq2SeqConfig(9, src_vocab_size=7, embedding_size=4, decoder=DecoderConfig(hidden_size=6),
                                  encoder=EncoderConfig(hidden_size=6))),
])
def test_round_trip(tmp_path, make):
    model = make()
    save_bundle(tmp_path / "b", model, extra_config={"task": "demo"}, vocab={"a": 0}, metrics={"valid_loss": 1.5})
    bundle = load_bundle(tmp_path / "b")
    loaded, config, vocab, metrics = bundle.model, bundle.config, bundle.vocab, bundle.metrics
    assert bundle.task == "demo" and bundle.path == tmp_path / "b" and bundle.assets == {"vocab": {"a": 0}}
    assert type(loaded) is type(model) and loaded.config == model.config
    assert config["task"] == "demo" and vocab == {"a": 0} and metrics == {"valid_loss": 1.5}
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_tied_weights_stay_tied(tmp_path):
    save_bundle(tmp_path / "b", _tied())
    model = load(tmp_path / "b")
    assert model.head.weight is model.inputs.embedding.weight


def test_replacing_a_bundle_leaves_no_temporaries(tmp_path):
    save_bundle(tmp_path / "b", _tied(), vocab={"x": 1})
    second = _tied()
    save_bundle(tmp_path / "b", second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    assert torch.equal(load(tmp_path / "b").head.bias, second.head.bias)


def test_truncated_weights(tmp_path):
    save_bundle(tmp_path / "b", _tied())
    f = tmp_path / "b" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(ValueError, match="model.safetensors"):
        load(tmp_path / "b")


def test_garbage_config(tmp_path):
    save_bundle(tmp_path / "b", _tied())
    (tmp_path / "b" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        load(tmp_path / "b")
    (tmp_path / "b" / "config.json").write_text(json.dumps({"model_type": "LanguageModel", "model_config": {"vocab_size": 11, "colour": 1}}))
    with pytest.raises(ValueError, match="colour"):
        load(tmp_path / "b")


def test_missing_files(tmp_path):
    save_bundle(tmp_path / "b", _tied(), vocab={"a": 1})
    (tmp_path / "b" / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        load_bundle(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load(tmp_path / "nowhere")


def test_assets_round_trip_and_names_cannot_hold_paths(tmp_path):
    assets = {"labels": ["neg", "pos"], "tgt_vocab": {"tokens": ["a"]}}
    save_bundle(tmp_path / "b", _tied(), assets=assets)
    bundle = load_bundle(tmp_path / "b")
    assert bundle.assets == assets and bundle.vocab is None and bundle.task is None
    assert (tmp_path / "b" / "labels.json").is_file()
    for bad in ("../x", "Labels", "config", "a/b", ""):
        with pytest.raises(ValueError, match="asset names"):
            save_bundle(tmp_path / "c", _tied(), assets={bad: 1})
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    config["assets"] = ["../../etc/passwd"]
    (tmp_path / "b" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="plain names"):
        load_bundle(tmp_path / "b")


def test_rng_states_come_back():
    import random

    import numpy as np

    from rnnlab.training.checkpoint import capture_rng, restore_rng

    saved = capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(saved)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_carried_states_pack_to_plain_tensors_and_back(tmp_path):
    from rnnlab.nn.state import LSTMState
    from rnnlab.training.checkpoint import load_resume, pack_state, save_resume, unpack_state

    h, c = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    save_resume(tmp_path, {"lstm": pack_state(LSTMState(h, c)), "gru": pack_state(h), "none": pack_state(None)})
    saved = load_resume(tmp_path)  # weights_only=True: only plain values load
    lstm = unpack_state(saved["lstm"], "cpu")
    assert isinstance(lstm, LSTMState) and torch.equal(lstm.h, h) and torch.equal(lstm.c, c)
    assert torch.equal(unpack_state(saved["gru"], "cpu"), h) and unpack_state(saved["none"], "cpu") is None



def test_a_save_that_fails_midway_leaves_the_old_bundle_whole(tmp_path, monkeypatch):
    import safetensors.torch

    first = _tied()
    save_bundle(tmp_path / "b", first, metrics={"run": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_model", crash)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(tmp_path / "b", _tied(), metrics={"run": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no half-written directory left
    bundle = load_bundle(tmp_path / "b")
    assert bundle.metrics == {"run": 1} and torch.equal(bundle.model.head.bias, first.head.bias)


def test_a_crash_between_the_two_renames_still_loads_the_previous_bundle(tmp_path, monkeypatch):
    import os

    save_bundle(tmp_path / "b", _tied(), metrics={"run": 1})
    real_rename, calls = os.rename, []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the old bundle is aside, the new one not yet in place: the process dies here
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(tmp_path / "b", _tied(), metrics={"run": 2})
    monkeypatch.setattr(os, "rename", real_rename)
    assert not (tmp_path / "b").exists()
    assert load_bundle(tmp_path / "b").metrics == {"run": 1}

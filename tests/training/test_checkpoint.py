"""Model bundles: round trip without pickle, tied weights, atomic replacement, clear errors for damaged files."""
import json

import pytest
import torch

from rnnlab.structures import (
    DecoderConfig, EncoderConfig, LanguageModel, LanguageModelConfig, OneToOne, OneToOneConfig, Seq2Seq, Seq2SeqConfig,
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
    loaded, config, vocab, metrics = load_bundle(tmp_path / "b")
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

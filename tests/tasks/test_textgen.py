"""The text-generation task end to end: a tiny train run, its bundle, generate and evaluate."""
import json
import math
from dataclasses import asdict, replace

import pytest

from rnnlab.structures import EncoderConfig
from rnnlab.tasks import textgen
from rnnlab.tasks.textgen import SampleConfig, TextgenConfig, TextModelConfig
from rnnlab.training import TrainerConfig

TEXT = "".join(f"def f{i % 7}(x):\n    return x + {i % 5}\n\nThe cat sat on the mat {i}.\n" for i in range(120))


def tiny_config(tmp_path, **overrides) -> TextgenConfig:
    data = tmp_path / "corpus.txt"
    data.write_text(TEXT, encoding="utf-8")
    config = TextgenConfig(
        data=str(data), batch_size=4, bptt=16,
        model=TextModelConfig(embedding_size=8, encoder=EncoderConfig(kind="lstm", hidden_size=16)),
        trainer=TrainerConfig(lr=1e-2, max_steps=30, max_epochs=0, eval_every=0, log_every=10, progress=False,
                              device="cpu", run_dir=str(tmp_path / "run")),
    )
    return replace(config, **overrides)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("textgen")
    config = tiny_config(tmp_path)
    return textgen.train(config), config


def test_train_writes_a_bundle_with_vocab_config_and_metrics(bundle):
    path, config = bundle
    assert path.name == "bundle" and str(path.parent) == config.trainer.run_dir
    for name in ("config.json", "model.safetensors", "vocab.json", "metrics.json"):
        assert (path / name).is_file()
    stored = json.loads((path / "config.json").read_text())
    assert stored["task"] == "textgen" and textgen.config_from_dict(stored["textgen"]) == config
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["step"] == 30
    vocab_size = 1 + len(json.loads((path / "vocab.json").read_text())["vocab"]["tokens"])  # <unk> + characters
    assert metrics["valid_loss"] < math.log(vocab_size)  # it learned something
    # char tokenizer: one token per character, so bits per char is nats / ln 2
    assert metrics["valid_bits_per_char"] == pytest.approx(metrics["valid_loss"] / math.log(2))


def test_generate_continues_the_prompt_reproducibly(bundle):
    path, _ = bundle
    a = textgen.generate(path, "def ", max_new_tokens=30, temperature=0.8, top_k=5, seed=1)
    b = textgen.generate(path, "def ", max_new_tokens=30, temperature=0.8, top_k=5, seed=1)
    assert a == b and a.startswith("def ") and len(a) > len("def ")
    greedy = textgen.generate(path, "The ", max_new_tokens=10, method="greedy")
    assert greedy.startswith("The ")
    assert textgen.generate(path, "The ", max_new_tokens=0) == "The "
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        textgen.generate(path, "", max_new_tokens=5)
    outputs = list(textgen.predict(path, ["def ", "", "The "], max_new_tokens=5))
    assert [o["prompt"] for o in outputs] == ["def ", "The "]
    assert all(o["text"].startswith(o["prompt"]) for o in outputs)
    # temperature 0 is greedy, as in the sample settings
    assert textgen.generate(path, "The ", max_new_tokens=10, temperature=0.0) == greedy
    # options not given come from the bundle's sample settings (seed 0, 200 new tokens at most)
    assert textgen.generate(path, "def ") == textgen.generate(path, "def ", seed=0, max_new_tokens=200)
    with pytest.raises(TypeError, match="unknown textgen option"):
        textgen.generate(path, "def ", max_len=3)


def test_a_bundle_of_another_task_is_refused(bundle, tmp_path):
    import shutil

    path, _ = bundle
    other = tmp_path / "other"
    shutil.copytree(path, other)
    config = json.loads((other / "config.json").read_text())
    config["task"] = "classify"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="is a 'classify' bundle, not a 'textgen' one"):
        textgen.evaluate(other)


def test_evaluate_matches_the_training_valid_loss(bundle, tmp_path):
    path, config = bundle
    metrics = json.loads((path / "metrics.json").read_text())
    scored = textgen.evaluate(path)
    assert scored["loss"] == pytest.approx(metrics["valid_loss"], rel=1e-5)
    assert scored["bits_per_char"] == pytest.approx(scored["loss"] / math.log(2) * scored["tokens_per_char"])
    other = tmp_path / "other.txt"
    other.write_text(TEXT[:2000], encoding="utf-8")
    whole = textgen.evaluate(path, str(other))
    assert whole["chars"] == 2000 and whole["tokens"] > 1000 and math.isfinite(whole["loss"])


def test_missing_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="bundle not found"):
        textgen.generate(tmp_path / "nope", "x")


def test_bpe_tokenizer_reports_bits_per_char_by_rescaling(tmp_path):
    config = tiny_config(tmp_path, tokenizer="bpe", vocab_size=300)
    config = replace(config, trainer=replace(config.trainer, max_steps=3))
    path = textgen.train(config)
    metrics = json.loads((path / "metrics.json").read_text())
    assert 0 < metrics["valid_tokens_per_char"] < 1  # BPE tokens span several characters
    assert metrics["valid_bits_per_char"] == pytest.approx(
        metrics["valid_loss"] / math.log(2) * metrics["valid_tokens_per_char"])
    assert textgen.generate(path, "The cat", max_new_tokens=5).startswith("The cat")


def test_config_validation_and_round_trip():
    config = TextgenConfig()
    assert textgen.config_from_dict(json.loads(json.dumps(asdict(config)))) == config
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        TextgenConfig(tokenizer="sentencepiece")
    with pytest.raises(ValueError, match="valid_fraction"):
        TextgenConfig(valid_fraction=1.5)
    with pytest.raises(ValueError, match="run_dir"):
        TextgenConfig(trainer=TrainerConfig(max_steps=1, run_dir=""))
    with pytest.raises(ValueError, match="temperature"):
        SampleConfig(temperature=-1)
    with pytest.raises(ValueError, match="tie_weights"):
        TextModelConfig(tie_weights=True).build(10)


def test_train_refuses_a_run_dir_another_writer_holds(tmp_path):
    import fcntl
    import os
    from pathlib import Path

    from rnnlab.training.lock import LOCK_FILE, RunDirLocked

    config = tiny_config(tmp_path)
    Path(config.trainer.run_dir).mkdir(parents=True)
    fd = os.open(Path(config.trainer.run_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: another writer, as far as flock knows
    try:
        with pytest.raises(RunDirLocked, match="in use by another process"):
            textgen.train(config)
    finally:
        os.close(fd)
    assert not (Path(config.trainer.run_dir) / "bundle").exists()


def test_the_embedded_corpus_is_fingerprinted_by_its_text():
    from rnnlab.tasks._common import data_fingerprints

    config = TextgenConfig()
    fp = data_fingerprints(config, textgen)["data"]
    assert fp["embedded"] == "default" and fp["size"] > 400_000 and len(fp["sha256"]) == 64
    assert data_fingerprints(replace(config, data="pydoc"), textgen)["data"]["sha256"] == fp["sha256"]


def test_token_ids_are_cached_in_the_run_dir_and_rebuilt_when_the_data_changes(tmp_path):
    config = tiny_config(tmp_path, trainer=replace(tiny_config(tmp_path).trainer, max_steps=2))
    textgen.train(config)
    cache = tmp_path / "run" / "cache"
    first = sorted(p.name for p in cache.iterdir())
    assert any(n.startswith("train.") and n.endswith(".ids.u8") for n in first)  # < 256 characters: one byte each
    assert any(n.startswith("valid.") and n.endswith(".docs.npy") for n in first)
    textgen.evaluate(tmp_path / "run" / "bundle")  # the held-out ids come from the cache
    assert sorted(p.name for p in cache.iterdir()) == first
    (tmp_path / "corpus.txt").write_text(TEXT + "More text.\n", encoding="utf-8")
    textgen.train(replace(config, trainer=replace(config.trainer, run_dir=str(tmp_path / "run"), resume=False)))
    again = sorted(p.name for p in cache.iterdir())
    assert len(again) == len(first) and not set(again) & set(first)  # a changed corpus: new entries, old ones gone

"""The tagging task end to end: a tiny run on CoNLL files, its bundle, evaluate, predict, the CLI and bad input."""
import json
import random
import shutil
from dataclasses import asdict, replace

import pytest

from rnnlab.cli import main
from rnnlab.data import synthetic_ner
from rnnlab.structures import EncoderConfig
from rnnlab.tasks import tag
from rnnlab.tasks.tag import TagConfig, TagModelConfig
from rnnlab.training import TrainerConfig


def conll(sentences) -> str:
    return "".join("".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, s.tags)) + "\n" for s in sentences)


def tiny_model(**overrides) -> TagModelConfig:
    return replace(TagModelConfig(embedding_size=8, char_embedding_size=6, char_hidden_size=8, dropout=0.0,
                                  encoder=EncoderConfig(kind="lstm", hidden_size=16, bidirectional=True)), **overrides)


def tiny_config(tmp_path, **overrides) -> TagConfig:
    train, test = synthetic_ner.generate(150, "train", seed=1), synthetic_ner.generate(40, "test", seed=1)
    (tmp_path / "train.conll").write_text("-DOCSTART- O\n\n" + conll(train), encoding="utf-8")
    (tmp_path / "test.conll").write_text(conll(test), encoding="utf-8")
    config = TagConfig(
        data=str(tmp_path / "train.conll"), test_data=str(tmp_path / "test.conll"), batch_size=16, model=tiny_model(),
        trainer=TrainerConfig(optimizer="adam", lr=1e-2, max_steps=20, max_epochs=0, progress=False, curves=False,
                              device="cpu", run_dir=str(tmp_path / "run")),
    )
    return replace(config, **overrides)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tag")
    config = tiny_config(tmp_path)
    return tag.train(config), config, tmp_path


def test_train_writes_a_bundle_with_vocabularies_tags_and_metrics(bundle):
    path, config, _ = bundle
    stored = json.loads((path / "config.json").read_text())
    assert stored["task"] == "tag" and stored["model_config"]["char_encoder"] == "cnn"
    assert json.loads((path / "tags.json").read_text())["scheme"] == "bio"
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["step"] == 20 and metrics["valid_sentences"] == 15  # 10% of 150, seeded
    assert metrics["test_accuracy"] > 0.5 and 0 <= metrics["test_f1"] <= 1
    assert set(metrics["test_per_type"]) <= {"PER", "LOC", "ORG", "DATE"}


def test_evaluate_defaults_to_the_test_data_and_reads_any_file(bundle):
    path, config, tmp_path = bundle
    scored = tag.evaluate(path)
    metrics = json.loads((path / "metrics.json").read_text())
    assert scored["data"] == config.test_data and scored["f1"] == pytest.approx(metrics["test_f1"])
    assert scored["accuracy"] == pytest.approx(metrics["test_accuracy"])
    other = tmp_path / "three_columns.conll"
    other.write_text("Anna X B-PER\nflew X O\nto X O\nOslo X B-LOC\n. X O\n", encoding="utf-8")
    scored = tag.evaluate(path, str(other), tag_column=2)
    assert scored["tokens"] == 5 and scored["sentences"] == 1


def test_predict_tags_whitespace_tokens_and_lists_entities(bundle):
    path, _, _ = bundle
    out = list(tag.predict(path, ["Anna Smith flew to Oslo on Monday .", "", "  "]))
    assert len(out) == 1
    result = out[0]
    assert result["tokens"] == ["Anna", "Smith", "flew", "to", "Oslo", "on", "Monday", "."]
    assert len(result["tags"]) == 8 and set(result) == {"tokens", "tags", "entities"}
    for tags in [result["tags"]]:  # the constrained CRF never outputs I-X after O or a different type
        for prev, cur in zip(["O"] + tags, tags):
            assert not cur.startswith("I-") or prev[2:] == cur[2:]
    for e in result["entities"]:
        assert e["text"] == " ".join(result["tokens"][e["start"] : e["end"]]) and e["type"] in {"PER", "LOC", "ORG", "DATE"}


def test_cli_train_predict_evaluate(bundle, tmp_path, capsys):
    path, config, data_dir = bundle
    assert main(["predict", str(path), "Anna flew to Oslo .", "--batch_size", "1"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["tokens"] == ["Anna", "flew", "to", "Oslo", "."]
    assert main(["evaluate", str(path), "--data", config.test_data]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] > 100
    run = tmp_path / "cli"
    assert main(["train", "tag", "--data", config.data, "--tag_scheme", "bio", "--model.char_encoder", "lstm",
                 "--model.crf", "false", "--model.embedding_size", "8", "--model.encoder.hidden_size", "8",
                 "--trainer.max_steps", "2", "--trainer.max_epochs", "0", "--trainer.progress", "false",
                 "--trainer.curves", "false", "--trainer.run_dir", str(run)]) == 0
    assert "bundle:" in capsys.readouterr().out and (run / "bundle" / "model.safetensors").is_file()


def test_a_plain_tag_set_gives_no_entities(tmp_path):
    rng = random.Random(0)
    lines = "".join(f"the\tDT\n{w}\tNN\nruns\tVBZ\n.\t.\n\n" for w in rng.choices(["dog", "cat", "man"], k=40))
    (tmp_path / "pos.conll").write_text(lines, encoding="utf-8")
    config = replace(tiny_config(tmp_path), data=str(tmp_path / "pos.conll"), test_data=None,
                     model=tiny_model(char_encoder="none"))
    path = tag.train(config)
    assert json.loads((path / "tags.json").read_text())["scheme"] == "plain"
    out = next(tag.predict(path, ["the cat runs ."]))
    assert out["tags"] == ["DT", "NN", "VBZ", "."] and out["entities"] == []
    assert "f1" not in tag.evaluate(path) and tag.evaluate(path)["accuracy"] == 1.0


def cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnlab: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_is_one_line_and_exit_2(bundle, tmp_path, capsys):
    path, config, _ = bundle
    run = ["--trainer.run_dir", str(tmp_path / "r"), "--trainer.max_steps", "1"]
    empty = tmp_path / "empty.conll"
    empty.write_text("", encoding="utf-8")
    assert "empty.conll: the CoNLL file is empty" in cli_error(["train", "tag", "--data", str(empty), *run], capsys)
    short = tmp_path / "short.conll"
    short.write_text("Anna B-PER\nflew\n", encoding="utf-8")
    assert "short.conll:2: this line has 1 column(s)" in cli_error(["train", "tag", "--data", str(short), *run], capsys)
    latin = tmp_path / "latin.conll"
    latin.write_bytes("Anna B-PER\n\nM\xfcnchen B-LOC\n".encode("latin-1"))
    assert "latin.conll:3: not UTF-8 text" in cli_error(["evaluate", str(path), "--data", str(latin)], capsys)
    unseen = tmp_path / "unseen.conll"
    unseen.write_text("Anna B-PER\n\nEU B-MISC\n", encoding="utf-8")
    err = cli_error(["evaluate", str(path), "--data", str(unseen)], capsys)
    assert "unseen.conll:3: tag 'B-MISC' never occurs in the training data" in err
    bioes = tmp_path / "bad.bioes"
    bioes.write_text("Anna B-PER\nSmith S-PER\n", encoding="utf-8")
    assert "bad.bioes:2: BIOES tag 'S-PER' cannot follow 'B-PER'" in cli_error(["train", "tag", "--data", str(bioes), *run], capsys)
    other = tmp_path / "other"
    shutil.copytree(path, other)
    stored = json.loads((other / "config.json").read_text())
    stored["task"] = "textgen"
    (other / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="is a 'textgen' bundle, not a 'tag' one"):
        tag.evaluate(other)
    assert "--batch_size must be a positive integer" in cli_error(["predict", str(path), "x", "--batch_size", "0"], capsys)


def test_a_bundle_of_another_task_is_refused_by_evaluate(tmp_path):
    from rnnlab.tasks import textgen
    from rnnlab.tasks.textgen import TextgenConfig, TextModelConfig

    text = tmp_path / "t.txt"
    text.write_text("abc abd abe " * 100, encoding="utf-8")
    path = textgen.train(TextgenConfig(
        data=str(text), batch_size=2, bptt=8, model=TextModelConfig(embedding_size=4, encoder=EncoderConfig(hidden_size=8)),
        trainer=TrainerConfig(max_steps=1, max_epochs=0, progress=False, curves=False, device="cpu", run_dir=str(tmp_path / "tg"))))
    with pytest.raises(ValueError, match="is a 'textgen' bundle, not a 'tag' one"):
        tag.evaluate(path)
    # the CLI dispatches on the bundle's own task: 'rnnlab evaluate' scores a textgen bundle as textgen


def test_embedded_task_holds_out_names_and_config_round_trips():
    train = {t for s in synthetic_ner.generate(400, "train") for t, g in zip(s.tokens, s.tags) if g == "B-PER"}
    test = {t for s in synthetic_ner.generate(200, "test") for t, g in zip(s.tokens, s.tags) if g == "B-PER"}
    assert train and test and len(test - train) > len(test) // 2  # mostly unseen first names (and Mr/Ms/Dr)
    both = {t for s in synthetic_ner.generate(600, "train") for t, g in zip(s.tokens, s.tags) if g.endswith("LOC")}
    assert train & both  # the same word as a person and as a place
    config = TagConfig()
    from rnnlab.training.checkpoint import from_dict

    assert from_dict(TagConfig, json.loads(json.dumps(asdict(config)))) == config
    with pytest.raises(ValueError, match="--token_column and --tag_column are both 1"):
        TagConfig(token_column=1, tag_column=1)
    with pytest.raises(ValueError, match="--batch_size must be a positive integer"):
        TagConfig(batch_size=0)


def test_the_bundle_fingerprints_its_data_and_evaluate_refuses_changed_data(bundle):
    from pathlib import Path

    path, config, _ = bundle
    stored = json.loads((path / "config.json").read_text())["data_fingerprint"]
    assert stored["data"]["path"] == str(Path(config.data).resolve()) and len(stored["data"]["sha256"]) == 64
    data = Path(config.data)
    original = data.read_bytes()
    try:
        data.write_bytes(original + b"\n")
        with pytest.raises(ValueError, match="changed since training"):
            tag.evaluate(path)
    finally:
        data.write_bytes(original)

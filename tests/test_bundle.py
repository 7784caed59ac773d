"""rnnlab.load(path) -> Bundle: the model, its tokenizer (also as a tokenizers-format tokenizer.json), config,
metrics, task; predict and generate through the task's own code; versions recorded; a newer bundle warns."""
import json

import pytest
import torch

import rnnlab
from rnnlab.structures import EncoderConfig
from rnnlab.tasks import textgen
from rnnlab.tasks.textgen import TextgenConfig, TextModelConfig
from rnnlab.training import TrainerConfig, load_bundle, save_bundle

TEXT = "".join(f"The cat's well-known hat {i} costs $5.20!\nÉté à Zürich, naïve café_{i % 3}.\n" for i in range(40))
PROBE = "The cat's hat costs $9.99 at Zürich's café!\n\tNew words: zebra, Ωmega."


def _train(tmp_path, tokenizer="char"):
    data = tmp_path / "corpus.txt"
    data.write_text(TEXT, encoding="utf-8")
    config = TextgenConfig(
        data=str(data), tokenizer=tokenizer, vocab_size=300 if tokenizer == "bpe" else 40, batch_size=2, bptt=8,
        model=TextModelConfig(embedding_size=8, encoder=EncoderConfig(kind="gru", hidden_size=8)),
        trainer=TrainerConfig(max_steps=2, max_epochs=0, eval_every=0, progress=False, curves=False, device="cpu",
                              run_dir=str(tmp_path / "run")),
    )
    return textgen.train(config)


@pytest.fixture(scope="module")
def char_bundle(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("bundle"))


def test_load_gives_model_tokenizer_config_metrics_and_task(char_bundle):
    bundle = rnnlab.load(char_bundle, map_location="cpu")
    assert isinstance(bundle, rnnlab.Bundle) and bundle.task == "textgen" and bundle.path == char_bundle
    assert not bundle.model.training and next(bundle.model.parameters()).device.type == "cpu"
    assert bundle.tokenizer.kind == "char" and bundle.tokenizer.encode("cat") == textgen.load_textgen(char_bundle)[
        1].encode("cat")
    assert bundle.metrics["step"] == 2 and bundle.config["textgen"]["bptt"] == 8
    assert bundle.config["rnnlab_version"] == rnnlab.__version__ and bundle.config["torch_version"] == torch.__version__
    assert set(bundle.assets) >= {"vocab", "tokenizer"}
    old = load_bundle(char_bundle)  # the lower-level loader still works, and its fields are the same
    assert old.metrics == bundle.metrics and old.task == bundle.task


def test_generate_and_predict_run_the_tasks_code_on_the_loaded_model(char_bundle):
    bundle = rnnlab.load(char_bundle)
    text = bundle.generate("The ", max_new_tokens=12, temperature=0.8, seed=3)
    assert text == textgen.generate(char_bundle, "The ", max_new_tokens=12, temperature=0.8, seed=3)
    assert bundle.generate("The ", max_new_tokens=0) == "The "
    default = bundle.generate("The ")  # the bundle's own sample settings (max_new_tokens=200)
    assert default == textgen.generate(char_bundle, "The ")
    out = bundle.predict(["The ", "cat"], max_new_tokens=4, seed=1)
    assert [o["prompt"] for o in out] == ["The ", "cat"] and all(len(o["text"]) > len(o["prompt"]) for o in out)
    assert bundle.predict("The ", max_new_tokens=2)[0]["prompt"] == "The "


def test_generate_on_a_bundle_of_another_kind_says_what_to_use(tmp_path):
    from rnnlab.structures import ManyToOne, ManyToOneConfig

    save_bundle(tmp_path / "b", ManyToOne(ManyToOneConfig(input_size=3, output_size=2)))
    bundle = rnnlab.load(tmp_path / "b")
    assert bundle.tokenizer is None and bundle.task is None
    with pytest.raises(ValueError, match="generate is for text-generation bundles"):
        bundle.generate("x")
    with pytest.raises(ValueError, match="records no task"):
        bundle.predict(["x"])


def test_a_bundle_from_a_newer_rnnlab_warns(char_bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(char_bundle, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "rnnlab_version": "99.1.0"}))
    with pytest.warns(UserWarning, match=r"written by rnnlab 99\.1\.0, newer than this rnnlab"):
        rnnlab.load(copy)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_tokenizer_json_is_read_by_tokenizers_with_the_same_ids(kind, tmp_path, char_bundle):
    tokenizers = pytest.importorskip("tokenizers")
    path = char_bundle if kind == "char" else _train(tmp_path, kind)
    bundle = rnnlab.load(path)
    hf = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    ids = bundle.tokenizer.encode(PROBE)
    assert hf.encode(PROBE).ids == ids  # unknown characters and words included: both give <unk>'s id
    assert hf.get_vocab_size() == bundle.tokenizer.vocab_size
    assert hf.decode(ids) == bundle.tokenizer.decode(ids)
    if kind != "bpe":
        assert hf.token_to_id("<unk>") == 0 and 0 in ids


def test_word_tokenizer_json_differs_only_where_the_regex_engines_word_class_does():
    """rnnlab's \\w is Python's (str.isalnum and _), tokenizers' is Oniguruma's Unicode word class: they part on
    combining marks and on non-decimal numerals (see tokenizers_json); NFC text without those agrees."""
    tokenizers = pytest.importorskip("tokenizers")
    from rnnlab.data.tokenize import WordTokenizer, tokenizers_json

    tok = WordTokenizer.train([TEXT + " cafe\u0301 x\u00bd"], vocab_size=60)
    hf = tokenizers.Tokenizer.from_str(json.dumps(tokenizers_json(tok)))
    assert hf.encode("naïve café").ids == tok.encode("naïve café")  # precomposed
    assert hf.encode("cafe\u0301").ids != tok.encode("cafe\u0301")  # decomposed: the documented difference

"""The classify task end to end: a tiny run, its bundle and metrics, evaluate, predict, word vectors, every
encoder and pooling, the CLI path and its bad-input errors (one line, exit 2)."""
import itertools
import json
import random
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from rnnlab.cli import main
from rnnlab.data.errors import DataError
from rnnlab.structures import EncoderConfig
from rnnlab.tasks import classify
from rnnlab.tasks.classify import (
    ClassifierModelConfig,
    ClassifyConfig,
    SameLengthBatchSampler,
    TextPipeline,
    balanced_weights,
    collate,
    fit_tokenizer,
    normalise,
)
from rnnlab.training import TrainerConfig
from rnnlab.training.classification_metrics import classification_metrics, confusion_matrix

WORDS = {"positive": ["good", "great", "fine"], "negative": ["bad", "awful", "poor"], "neutral": ["a", "the", "some"]}


def rows(n, seed):
    """Short texts whose label is the kind of adjective they hold."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = ["positive", "negative", "neutral"][i % 3]
        words = [rng.choice(["film", "plot", "cast", "it"]), rng.choice(WORDS[label]), rng.choice(["!", ".", "so"])]
        out.append((" ".join(words), label))
    return out


def write_csv(path, data):
    with open(path, "w", encoding="utf-8") as f:
        f.write("text,label\n" + "".join(f'"{t}",{l}\n' for t, l in data))
    return str(path)


def tiny_config(tmp_path, **overrides) -> ClassifyConfig:
    config = ClassifyConfig(
        data=write_csv(tmp_path / "train.csv", rows(120, 0)), test_data=write_csv(tmp_path / "test.csv", rows(30, 1)),
        batch_size=16, min_count=1,
        model=ClassifierModelConfig(embedding_size=8, encoder=EncoderConfig(kind="gru", hidden_size=8, bidirectional=True)),
        trainer=TrainerConfig(lr=3e-2, max_steps=40, max_epochs=0, log_every=20, progress=False, curves=False,
                              device="cpu", run_dir=str(tmp_path / "run")),
    )
    return replace(config, **overrides)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("classify")
    config = tiny_config(tmp_path)
    return classify.train(config), config, tmp_path


# --- the run and its bundle -----------------------------------------------------------------------------------

def test_train_writes_a_bundle_with_labels_metrics_and_confusion_plots(run):
    path, config, _ = run
    for name in ("config.json", "model.safetensors", "vocab.json", "labels.json", "metrics.json"):
        assert (path / name).is_file()
    assert json.loads((path / "labels.json").read_text()) == ["negative", "neutral", "positive"]  # sorted
    stored = json.loads((path / "config.json").read_text())
    assert stored["task"] == "classify" and classify.config_from_dict(stored["classify"]) == config
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["valid"]["examples"] == 12 and metrics["test"]["examples"] == 30  # 10% of 120 held out
    assert metrics["test_accuracy"] > 0.9 and metrics["valid_macro_f1"] > 0.9  # a task this easy is learned
    assert set(metrics["test"]["per_class"]) == {"negative", "neutral", "positive"}
    assert (path.parent / "confusion.png").stat().st_size > 1000 and (path.parent / "confusion_test.png").is_file()


def test_log_csv_has_the_validation_accuracy_curve(run):
    import csv

    path, _, _ = run
    rows = [r for r in csv.DictReader(open(path.parent / "log.csv")) if r["valid_loss"]]
    assert rows and all(0.0 <= float(r["valid_accuracy"]) <= 1.0 for r in rows)
    final = json.loads((path / "metrics.json").read_text())["valid_accuracy"]
    assert float(rows[-1]["valid_accuracy"]) == pytest.approx(final)  # the last evaluation is the final model


def test_evaluate_reproduces_the_validation_metrics_and_scores_a_file(run, tmp_path):
    path, config, _ = run
    metrics = json.loads((path / "metrics.json").read_text())
    again = classify.evaluate(path)
    assert again["accuracy"] == metrics["valid_accuracy"] and again["confusion"] == metrics["valid"]["confusion"]
    png = tmp_path / "c.png"
    scored = classify.evaluate(path, config.test_data, plot=str(png))
    assert scored["accuracy"] == pytest.approx(metrics["test_accuracy"]) and png.stat().st_size > 1000


def test_predict_gives_a_label_and_probabilities_per_text(run):
    path, _, _ = run
    out = list(classify.predict(path, ["the plot is great !", "", "awful cast", "some film"], batch_size=2))
    assert [o["text"] for o in out] == ["the plot is great !", "awful cast", "some film"]  # empty skipped
    assert [o["label"] for o in out] == ["positive", "negative", "neutral"]
    for o in out:
        assert set(o["probabilities"]) == {"negative", "neutral", "positive"}
        assert sum(o["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert o["label"] == max(o["probabilities"], key=o["probabilities"].get)
    # one at a time or in a batch: the same numbers (no padding leaks in)
    alone = [next(classify.predict(path, [o["text"]])) for o in out]
    assert all(a["probabilities"] == pytest.approx(o["probabilities"], abs=1e-5) for a, o in zip(alone, out))


# --- bad input at evaluation ------------------------------------------------------------------------------

def test_a_label_training_never_saw_is_named_with_its_line(run, tmp_path):
    path, _, _ = run
    f = write_csv(tmp_path / "new.csv", [("good film", "positive"), ("meh", "mixed")])
    with pytest.raises(DataError, match=r"new.csv:3: label 'mixed' was never seen in training "
                                        r"\(known labels: negative, neutral, positive\)"):
        classify.evaluate(path, f)


def test_a_bundle_of_another_task_is_refused(run, tmp_path):
    path, _, _ = run
    other = tmp_path / "other"
    shutil.copytree(path, other)
    config = json.loads((other / "config.json").read_text())
    config["task"] = "textgen"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="is a 'textgen' bundle, not a 'classify' one"):
        classify.evaluate(other)


# --- the CLI ----------------------------------------------------------------------------------------------

def test_cli_train_evaluate_predict(tmp_path, capsys):
    data = write_csv(tmp_path / "train.csv", rows(60, 2))
    run_dir = tmp_path / "run"
    assert main(["train", "classify", "--data", data, "--model.embedding_size", "8", "--model.encoder.kind", "cnn", "--model.encoder.bidirectional", "false",
                 "--model.encoder.hidden_size", "8", "--trainer.max_steps", "5", "--trainer.max_epochs", "0",
                 "--trainer.progress", "false", "--trainer.run_dir", str(run_dir)]) == 0
    assert "valid_accuracy" in capsys.readouterr().out
    bundle = str(run_dir / "bundle")
    assert main(["evaluate", bundle, "--data", data, "--plot", str(tmp_path / "c.png")]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 60 and (tmp_path / "c.png").is_file()
    assert main(["predict", bundle, "good film", "bad plot"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["good film", "bad plot"] and all("probabilities" in x for x in lines)


def bad_inputs(tmp_path, bundle):
    """(argv, what the one-line message must contain) for each bad input of the task."""
    def f(name, text, encoding="utf-8"):
        (tmp_path / name).write_bytes(text.encode(encoding))
        return str(tmp_path / name)

    train = ["train", "classify", "--trainer.max_steps", "1", "--trainer.run_dir", str(tmp_path / "r")]
    return [
        (train + ["--data", f("empty.csv", "")], "empty.csv: the data file is empty"),
        (train + ["--data", f("cols.csv", "review,stars\na,b\n")], "cols.csv:1: no column 'text' (columns found: review, stars)"),
        (train + ["--data", f("lab.csv", "text,label\na,x\nb,\n")], "lab.csv:3: empty label"),
        (train + ["--data", f("txt.csv", "text,label\n,x\n")], "txt.csv:2: empty text"),
        (train + ["--data", f("latin.csv", "text,label\ncaf\xe9,x\n", "latin-1")], "latin.csv:2: not UTF-8 text"),
        (train + ["--data", f("one.csv", "text,label\na,x\nb,x\nc,x\n")], "at least 2 labels"),
        (train + ["--data", f("ok.csv", "text,label\na b,x\nc d,y\ne,x\nf,y\n"), "--model.embeddings",
                  f("vec.txt", "a 0.1 0.2\nb 0.3\n")], "vec.txt:2: 1 values where the vectors have 2"),
        (["evaluate", bundle, "--data", f("new.csv", "text,label\ngood,positive\nmeh,mixed\n")],
         "new.csv:3: label 'mixed' was never seen in training"),
        (["evaluate", bundle, "--data", f("what.xml", "<a/>")], "cannot tell the format from the suffix '.xml'"),
    ]


def test_cli_bad_input_is_one_line_and_exit_2(run, tmp_path, capsys):
    path, _, _ = run
    for argv, message in bad_inputs(tmp_path, str(path)):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("rnnlab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        assert message in err, (message, err)


def test_cli_refuses_another_tasks_bundle_in_classify_evaluate(run, tmp_path, capsys):
    path, _, _ = run
    other = tmp_path / "tg"
    shutil.copytree(path, other)
    config = json.loads((other / "config.json").read_text())
    config["task"] = "textgen"
    (other / "config.json").write_text(json.dumps(config))
    # `rnnlab evaluate` dispatches on the recorded task; the textgen reader then refuses the classify model
    assert main(["evaluate", str(other)]) == 2
    assert "rnnlab: error:" in capsys.readouterr().err


# --- pretrained vectors -------------------------------------------------------------------------------------

def test_word_vectors_are_loaded_frozen_and_their_coverage_reported(tmp_path):
    vectors = {"good": [1.0, 0.0, 0.0, 0.5], "bad": [-1.0, 0.0, 0.0, 0.5], "film": [0.0, 1.0, 0.0, 0.0], "!": [0, 0, 1, 0]}
    vec = tmp_path / "vec.txt"
    vec.write_text(f"{len(vectors)} 4\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in vectors.items()))
    config = tiny_config(tmp_path, model=ClassifierModelConfig(embeddings=str(vec), freeze_embeddings=True,
                                                             encoder=EncoderConfig(kind="lstm", hidden_size=8)))
    config = replace(config, trainer=replace(config.trainer, max_steps=3))
    path = classify.train(config)
    metrics = json.loads((path / "metrics.json").read_text())
    model, pipeline, _, _ = classify.load_classifier(path)
    assert model.config.embedding_size == 4 and metrics["embeddings_dim"] == 4
    vocab = pipeline.tokenizer.vocab
    types = vocab.decode(range(1, len(vocab)))
    assert metrics["embeddings_type_coverage"] == pytest.approx(sum(t.strip() in vectors for t in types) / len(types))
    assert 0 < metrics["embeddings_token_coverage"] < 1
    weight = model.inputs.embedding.weight
    assert weight[vocab.id(" good")].tolist() == vectors["good"]  # frozen: unchanged by training
    assert weight[vocab.id(" film")].tolist() == vectors["film"]


def test_word_vectors_need_the_word_tokenizer():
    with pytest.raises(ValueError, match="--model.embeddings .* needs --tokenizer word"):
        ClassifyConfig(tokenizer="char", model=ClassifierModelConfig(embeddings="v.txt"))


# --- encoders, poolings, tokenizers, class weights ----------------------------------------------------------

@pytest.mark.parametrize("kind, pooling, tokenizer, weights", [
    ("lstm", "last", "word", "balanced"), ("rnn", "mean", "char", "none"), ("mingru", "attention", "word", "none"),
    ("minlstm", "max", "word", "none"), ("cnn", "max", "bpe", "none"), ("transformer", "mean", "word", "balanced"),
    ("window", "last", "word", "none"),
])
def test_every_encoder_pooling_and_tokenizer_trains(tmp_path, kind, pooling, tokenizer, weights):
    encoder = EncoderConfig(kind=kind, hidden_size=8, num_heads=2)
    config = tiny_config(tmp_path, tokenizer=tokenizer, vocab_size=300, class_weights=weights, test_data=None,
                         model=ClassifierModelConfig(embedding_size=8, encoder=encoder, pooling=pooling))
    config = replace(config, trainer=replace(config.trainer, max_steps=2))
    metrics = json.loads((classify.train(config) / "metrics.json").read_text())
    assert np.isfinite(metrics["valid_loss"]) and 0 <= metrics["valid_accuracy"] <= 1


def test_balanced_class_weights_are_sklearns():
    w = balanced_weights([0, 0, 0, 1], 3)  # n / (C * n_c); an absent class gets 1
    assert w.tolist() == pytest.approx([4 / 9, 4 / 3, 1.0])


def test_normalisation_gives_the_first_word_the_same_token_as_the_others():
    assert normalise("Good  film<br />OK", lowercase=True, leading_space=True) == " good film ok"
    config = ClassifyConfig(min_count=1)
    tokenizer = fit_tokenizer(config, ["Good film", "a good film"])
    pipeline = TextPipeline(tokenizer, lowercase=True, max_length=2)
    ids, cut = pipeline.encode("GOOD film , really")
    assert ids == [tokenizer.vocab.id(" good"), tokenizer.vocab.id(" film")] and cut
    assert pipeline.encode("zzz")[0] == [0]  # unknown word: <unk>


def test_same_length_batches_cover_every_text_once():
    lengths = [3] * 10 + [4] * 7 + [5] * 2 + [9]
    torch.manual_seed(0)
    sampler = SameLengthBatchSampler(lengths, 4)
    batches = list(sampler)
    assert sorted(itertools.chain(*batches)) == list(range(len(lengths))) and len(batches) == len(sampler)
    pure = [b for b in batches if len({lengths[i] for i in b}) == 1 and len(b) == 4]
    assert len(pure) == 3  # two of length 3, one of length 4
    batch = collate([{"x": [1, 2], "y": 0}, {"x": [3, 4], "y": 1}])
    assert "lengths" not in batch  # no padding: the fused kernels run
    assert collate([{"x": [1, 2], "y": 0}, {"x": [3], "y": 1}])["lengths"].tolist() == [2, 1]


# --- metrics against a brute-force count (and scikit-learn when it is installed) --------------------------------

def test_metrics_match_a_brute_force_count():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 3, 200)  # class 3 is never predicted
    labels = ["a", "b", "c", "d"]
    m = classification_metrics(confusion_matrix(y, p, 4), labels)
    f1s = []
    for c, name in enumerate(labels):
        tp = sum(1 for t, q in zip(y, p) if t == c and q == c)
        pred, true = sum(1 for q in p if q == c), sum(1 for t in y if t == c)
        precision, recall = (tp / pred if pred else 0.0), (tp / true if true else 0.0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        assert m["per_class"][name] == pytest.approx({"precision": precision, "recall": recall, "f1": f1, "support": true})
    assert m["accuracy"] == pytest.approx(np.mean(y == p)) and m["macro_f1"] == pytest.approx(np.mean(f1s))
    sklearn = pytest.importorskip("sklearn.metrics")
    assert m["macro_f1"] == pytest.approx(sklearn.f1_score(y, p, average="macro", labels=range(4), zero_division=0))
    assert m["confusion"] == sklearn.confusion_matrix(y, p, labels=range(4)).tolist()


def test_config_validation_names_the_option():
    for kwargs, message in [({"tokenizer": "sentencepiece"}, "--tokenizer"), ({"valid_fraction": 1.0}, "--valid_fraction"),
                            ({"max_length": 0}, "--max_length"), ({"class_weights": "inverse"}, "--class_weights"),
                            ({"text_column": "x", "label_column": "x"}, "two different names")]:
        with pytest.raises(ValueError, match=message):
            ClassifyConfig(**kwargs)
    with pytest.raises(ValueError, match="--model.pooling"):
        ClassifierModelConfig(pooling="sum")


def test_the_bundle_fingerprints_its_data_and_evaluate_refuses_changed_data(run):
    from pathlib import Path

    path, config, _ = run
    stored = json.loads((path / "config.json").read_text())["data_fingerprint"]
    assert stored["data"]["path"] == str(Path(config.data).resolve()) and len(stored["data"]["sha256"]) == 64
    data = Path(config.data)
    original = data.read_bytes()
    try:
        data.write_bytes(original + b"\n")
        with pytest.raises(ValueError, match="changed since training"):
            classify.evaluate(path)
    finally:
        data.write_bytes(original)


def test_rnnlab_load_predicts_as_the_task_does_and_has_a_tokenizer_json(run):
    import rnnlab

    path, _, _ = run
    bundle = rnnlab.load(path)
    texts = ["the plot is great !", "awful cast"]
    assert bundle.predict(texts, batch_size=2) == list(classify.predict(path, texts, batch_size=2))
    assert bundle.tokenizer is not None and (path / "tokenizer.json").is_file()
    with pytest.raises(ValueError, match="generate is for text-generation bundles"):
        bundle.generate("the plot")

"""Word-level language modelling as the field does it: the whitespace tokenizer (<eos> per line, the corpus's
<unk> one token), separate valid/test files, and perplexity per word checked against a hand computation."""
import math
import random
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from rnnlab.cli import main
from rnnlab.data.tokenize import EOS, WhitespaceTokenizer, count_words, train_tokenizer
from rnnlab.structures import EncoderConfig
from rnnlab.tasks import textgen
from rnnlab.tasks.textgen import TextgenConfig, TextModelConfig
from rnnlab.training import TrainerConfig

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "N", "<unk>", "co-operate", "u.s.", "$"]


def _corpus(seed: int, lines: int) -> str:
    """A pre-tokenised corpus as PTB lays it out: a leading space, words joined by spaces, one sentence a line."""
    rng = random.Random(seed)
    return "".join(" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + " \n" for _ in range(lines))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ptb")
    for name, seed, lines in (("train", 0, 150), ("valid", 1, 30), ("test", 2, 30)):
        (folder / f"{name}.txt").write_text(_corpus(seed, lines), encoding="utf-8")
    return folder


def _config(folder, tmp_path, **over) -> TextgenConfig:
    return TextgenConfig(
        data=str(folder / "train.txt"), valid_data=str(folder / "valid.txt"), test_data=str(folder / "test.txt"),
        tokenizer="whitespace", vocab_size=1000, batch_size=4, bptt=8,
        model=TextModelConfig(embedding_size=8, encoder=EncoderConfig(kind="gru", hidden_size=12)),
        trainer=TrainerConfig(lr=1e-2, max_steps=15, max_epochs=0, eval_every=0, progress=False, curves=False,
                              device="cpu", run_dir=str(tmp_path / "run")), **over)


def test_whitespace_tokenizer_keeps_unk_whole_and_ends_each_line_with_eos():
    tok = train_tokenizer("whitespace", [" the cat <unk> sat \n a co-operate u.s. $ N \n"], vocab_size=100)
    assert isinstance(tok, WhitespaceTokenizer)
    assert tok.split(" the <unk> \n dog\n") == ["the", "<unk>", EOS, "dog", EOS]
    ids = tok.encode(" the <unk> co-operate zebra \n")
    assert ids[1] == ids[3] == tok.vocab.unk_id == 0  # the corpus's <unk> and an unseen word: one id
    assert ids[-1] == tok.vocab.id(EOS) and len(ids) == 5
    assert tok.decode(tok.encode(" the cat \n sat \n")) == "the cat\nsat\n"
    assert count_words(" the cat \n sat \n") == 5 == len(tok.encode(" the cat \n sat \n"))


def test_rare_words_beyond_vocab_size_become_the_corpus_unk():
    tok = train_tokenizer("whitespace", ["a a a b b c <unk>\n"], vocab_size=4)  # <unk>, <eos>, a, b
    assert tok.vocab_size == 4 and tok.encode("c <unk>") == [0, 0]


def test_per_word_perplexity_equals_exp_of_the_mean_nll_by_hand(corpus, tmp_path):
    path = textgen.train(_config(corpus, tmp_path))
    metrics = textgen.evaluate(path)  # the bundle's valid_data
    assert metrics["ppl_per_word"] == pytest.approx(metrics["ppl_per_token"])  # a token is a word
    model, tokenizer, _ = textgen.load_textgen(path)
    text = (corpus / "test.txt").read_text()
    scored = textgen.evaluate(path, str(corpus / "test.txt"), batch_size=1)  # one stream: every token but the first
    ids = torch.tensor([tokenizer.encode(text)])
    with torch.no_grad():
        logits = model({"x": ids[:, :-1]}).logits
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))  # the mean, by hand
    assert scored["words"] == count_words(text) == ids.shape[1]
    assert scored["ppl_per_word"] == pytest.approx(math.exp(float(nll)), rel=1e-5)


def test_train_reports_valid_and_test_perplexity_per_word_from_their_own_files(corpus, tmp_path):
    path = textgen.train(_config(corpus, tmp_path))
    import json

    metrics = json.loads((path / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert metrics[f"{split}_ppl_per_word"] == pytest.approx(math.exp(metrics[f"{split}_loss"]))
        assert metrics[f"{split}_words"] == count_words((corpus / f"{split}.txt").read_text())
    assert metrics["valid_loss"] == pytest.approx(textgen.evaluate(path)["loss"])
    text = textgen.generate(path, "the", max_new_tokens=5, seed=0)
    assert text.startswith("the ") and "<unk>" not in text


def test_char_model_reports_per_word_perplexity_through_its_tokens_per_word(corpus, tmp_path):
    config = replace(_config(corpus, tmp_path), tokenizer="char", test_data=None)
    path = textgen.train(config)
    scored = textgen.evaluate(path)
    text = (corpus / "valid.txt").read_text()
    total_nll = scored["loss"] * len(text)  # char: one token per character
    assert scored["words"] == len(text.split()) + text.count("\n")
    assert scored["ppl_per_word"] == pytest.approx(math.exp(total_nll / scored["words"]))
    assert scored["ppl_per_token"] == pytest.approx(math.exp(scored["loss"]))


def test_cli_takes_valid_and_test_data(corpus, tmp_path, capsys):
    code = main(["train", "textgen", "--data", str(corpus / "train.txt"), "--valid_data", str(corpus / "valid.txt"),
                 "--test_data", str(corpus / "test.txt"), "--tokenizer", "whitespace", "--batch_size", "2",
                 "--bptt", "8", "--model.embedding_size", "8", "--model.encoder.hidden_size", "8",
                 "--trainer.max_steps", "2", "--trainer.max_time", "0", "--trainer.progress", "false",
                 "--trainer.run_dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0 and "test_ppl_per_word" in out and "valid_ppl_per_word" in out
    assert main(["train", "textgen", "--valid_data", str(tmp_path / "missing.txt"),
                 "--trainer.run_dir", str(tmp_path / "r2")]) == 2
    assert "missing.txt" in capsys.readouterr().err


def test_log_csv_has_the_perplexity_curve_in_its_unit(corpus, tmp_path):
    import csv

    config = replace(_config(corpus, tmp_path), test_data=None)
    config = replace(config, trainer=replace(config.trainer, eval_every=5, curves=True))
    textgen.train(config)
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "log.csv")) if r["valid_loss"]]
    assert len(rows) == 3
    for r in rows:  # whitespace tokens are words: the curve is per word
        assert float(r["valid_ppl_per_word"]) == pytest.approx(math.exp(float(r["valid_loss"])))
    assert (tmp_path / "run" / "curves.png").is_file()

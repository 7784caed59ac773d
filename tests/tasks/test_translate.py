"""The translation task end to end: tiny train runs, the bundle, evaluate, predict with the attention map, the CLI
and every bad input."""
import json
import logging
import shutil
from dataclasses import replace

import pytest
import torch

from rnnlab import cli
from rnnlab.data.dates import date_pairs
from rnnlab.data.tokenize import train_tokenizer
from rnnlab.structures import DecoderConfig, EncoderConfig, Seq2Seq, TransformerSeq2Seq
from rnnlab.tasks import translate
from rnnlab.tasks.translate import (
    DecodeConfig,
    TransformerOptions,
    TranslateConfig,
    TranslateModelConfig,
    decode_target,
    encode_target,
    score,
)
from rnnlab.training import TrainerConfig

TINY_MODEL = TranslateModelConfig(
    embedding_size=8, encoder=EncoderConfig(kind="lstm", hidden_size=8, bidirectional=True), decoder=DecoderConfig(hidden_size=16),
    transformer=TransformerOptions(hidden_size=16, num_layers=1, num_heads=2),
)


def write_pairs(path, pairs):
    path.write_text("".join(f"{s}\t{t}\textra column\n" for s, t in pairs), encoding="utf-8")
    return path


def tiny_config(tmp_path, **overrides) -> TranslateConfig:
    data = write_pairs(tmp_path / "train.tsv", date_pairs(120, "train"))
    test = write_pairs(tmp_path / "test.tsv", date_pairs(12, "test"))
    config = TranslateConfig(
        data=str(data), test_data=str(test), valid_fraction=0.1, batch_size=16, max_target_length=12, model=TINY_MODEL,
        trainer=TrainerConfig(lr=1e-2, max_steps=8, max_epochs=0, eval_every=0, log_every=10, progress=False,
                              curves=False, device="cpu", run_dir=str(tmp_path / "run")),
    )
    return replace(config, **overrides)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("translate")
    config = tiny_config(tmp_path)
    return translate.train(config), config


def test_train_writes_a_bundle_with_both_vocabularies_and_the_scores(bundle):
    path, config = bundle
    for name in ("config.json", "model.safetensors", "source_vocab.json", "target_vocab.json", "metrics.json"):
        assert (path / name).is_file()
    stored = json.loads((path / "config.json").read_text())
    assert stored["task"] == "translate" and translate.config_from_dict(stored["translate"]) == config
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["step"] == 8 and metrics["valid_pairs"] == 12 and metrics["test_pairs"] == 12
    for prefix in ("valid", "test"):
        for name in ("bleu", "chrf", "exact_match"):
            assert 0.0 <= metrics[f"{prefix}_{name}"] <= 100.0


def test_evaluate_scores_the_test_pairs_by_default_and_any_file(bundle, tmp_path):
    path, config = bundle
    metrics = json.loads((path / "metrics.json").read_text())
    default = translate.evaluate(path)
    assert default["pairs"] == 12 and default["data"].endswith("test.tsv")
    assert default["chrf"] == pytest.approx(metrics["test_chrf"])
    again = translate.evaluate(path, config.test_data, beam_size=3, length_penalty=0.6, batch_size=5)
    assert again["pairs"] == 12 and 0.0 <= again["chrf"] <= 100.0
    with pytest.raises(TypeError, match="unknown translate option"):
        translate.evaluate(path, max_len=3)
    with pytest.raises(ValueError, match="--beam_size must be a positive integer"):
        translate.evaluate(path, beam_size=0)


def test_predict_translates_each_input_and_draws_the_first_alignment(bundle, tmp_path):
    path, _ = bundle
    png = tmp_path / "align.png"
    out = list(translate.predict(path, ["the first of May, nineteen ninety", "", "3/4/2001"], attention=str(png)))
    assert [o["source"] for o in out] == ["the first of May, nineteen ninety", "3/4/2001"]
    assert all(isinstance(o["translation"], str) for o in out)
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    beam = list(translate.predict(path, ["3/4/2001"], beam_size=1))
    assert beam[0]["translation"] == out[1]["translation"]  # one beam is greedy


def test_the_replayed_attention_is_the_one_greedy_decoding_used(bundle):
    path, _ = bundle
    t = translate.load_translator(path)
    model = t.model
    ids = t.source.encode("March 23rd 1990")
    out = translate._truncate(translate.translate_ids(model, [ids], batch_size=1, max_new_tokens=12)[0])
    state = model.encode(torch.tensor([ids]), torch.tensor([len(ids)]))
    prev, steps = torch.tensor([translate.BOS]), []
    for token in out:  # decode step by step, collecting the weights as decoding sees them
        logits, state, w = model.decode_step(prev, state)
        assert int(logits.argmax(-1)) == token
        steps.append(w[0])
        prev = torch.tensor([token])
    replayed = translate.attention_weights(model, ids, out)
    assert replayed.shape == (len(out), len(ids))
    torch.testing.assert_close(replayed, torch.stack(steps))
    torch.testing.assert_close(replayed.sum(-1), torch.ones(len(out)))


def test_the_transformer_baseline_trains_on_the_same_data_and_has_no_alignment(tmp_path):
    config = tiny_config(tmp_path, model=replace(TINY_MODEL, kind="transformer"), test_data=None)
    path = translate.train(config)
    t = translate.load_translator(path)
    assert isinstance(t.model, TransformerSeq2Seq)
    assert [o["source"] for o in translate.predict(path, ["1 May 1990"])] == ["1 May 1990"]
    with pytest.raises(ValueError, match="--attention needs an rnn model with attention.*a Transformer"):
        list(translate.predict(path, ["1 May 1990"], attention=str(tmp_path / "a.png")))
    assert translate.evaluate(path)["data"].endswith("(validation part)")


def test_options_build_the_seq2seq_they_name():
    model = replace(TINY_MODEL, context="pool", attention="luong-general", decoder=DecoderConfig(cell="gru")).build(10, 7, 64)
    assert isinstance(model, Seq2Seq)
    assert (model.config.context, model.config.attention, model.config.decoder.cell) == ("pool", "luong-general", "gru")
    assert (model.config.bos_token, model.config.eos_token, model.config.tgt_vocab_size) == (1, 2, 7)
    forced = replace(TINY_MODEL, teacher_forcing=0.5).build(10, 7, 64).train()
    batch = {"x": torch.randint(0, 10, (2, 5)), "lengths": torch.tensor([5, 3]), "y": torch.randint(3, 7, (2, 4))}
    forced.loss(batch).backward()  # half the steps feed the model's own guess
    assert forced.config.teacher_forcing == 0.5 and forced.embedding.weight.grad is not None


def test_targets_encode_after_the_specials_and_decode_up_to_the_end():
    tok = train_tokenizer("char", ["1990-03-23"])
    ids = encode_target(tok, "1990")
    assert ids[-1] == translate.EOS and min(ids[:-1]) >= translate.SPECIALS
    assert decode_target(tok, ids + ids) == "1990"
    assert decode_target(tok, [translate.BOS] + ids[:2] + [translate.PAD]) == "19"


def test_score_uses_sacrebleu_and_exact_match():
    perfect = score(["1990-03-23", "2001-04-03"], ["1990-03-23", "2001-04-03"])
    assert perfect["exact_match"] == 100.0 and perfect["chrf"] == pytest.approx(100.0)
    half = score(["1990-03-23", "2001-04-30"], ["1990-03-23", "2001-04-03"])
    assert half["exact_match"] == 50.0 and half["chrf"] < 100.0 and half["pairs"] == 2


def test_length_filter_logs_the_dropped_pairs(tmp_path, caplog):
    config = tiny_config(tmp_path, max_source_length=12, trainer=replace(tiny_config(tmp_path).trainer, max_steps=1))
    with caplog.at_level(logging.INFO, logger="rnnlab.tasks.translate"):
        translate.train(config)
    assert any("train.tsv: dropped" in r.message and "--max_source_length 12" in r.message for r in caplog.records)


def test_shared_vocabulary_is_one_tokenizer_for_both_sides(tmp_path):
    config = tiny_config(tmp_path, shared_vocab=True)
    src, tgt = translate.fit_tokenizers(config, translate.load_data(config)[0].pairs)
    assert src is tgt and "M" in src.vocab and "-" in src.vocab


def test_config_errors_name_the_option(tmp_path):
    with pytest.raises(ValueError, match="--shared_vocab needs the same units"):
        tiny_config(tmp_path, shared_vocab=True, target_tokenizer="word")
    with pytest.raises(ValueError, match="--batch_size must be a positive integer"):
        tiny_config(tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="--valid_data and --test_data need --data"):
        TranslateConfig(test_data="x.tsv")
    with pytest.raises(ValueError, match="--beam_size must be a positive integer"):
        DecodeConfig(beam_size=0)


# --- the CLI and bad input ----------------------------------------------------------------------------------

TINY_ARGS = ["--model.embedding_size", "8", "--model.encoder.hidden_size", "8", "--model.decoder.hidden_size", "16",
             "--batch_size", "16", "--max_target_length", "12", "--trainer.max_steps", "2", "--trainer.max_epochs", "0",
             "--trainer.progress", "false", "--trainer.curves", "false", "--trainer.device", "cpu"]


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # a train run, then evaluate and predict through the CLI: ~3 s on a busy machine
def test_cli_train_evaluate_predict(tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs.tsv", date_pairs(40, "train"))
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "translate", "--data", data, "--reverse", "true",
                             "--trainer.run_dir", run, *TINY_ARGS)
    assert code == 0, err
    assert "valid_chrf" in out
    code, out, _ = run_cli(capsys, "evaluate", run / "bundle", "--beam_size", "2")
    assert code == 0 and set(json.loads(out)) >= {"bleu", "chrf", "exact_match", "pairs", "data"}
    png = tmp_path / "a.png"
    code, out, _ = run_cli(capsys, "predict", run / "bundle", "1990-03-23", "2001-04-03", "--attention", png)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line["source"] for line in lines] == ["1990-03-23", "2001-04-03"]
    assert set(lines[0]) == {"source", "translation"} and png.is_file()


@pytest.mark.parametrize("content, message", [
    (b"", "train.tsv: the pairs file is empty"),
    (b"a\tb\nc\n", "train.tsv:2: 1 tab-separated column(s), expected at least 2"),
    (b"a\tb\nc\t\n", "train.tsv:2: the target (column 1) is empty"),
    (b"a\tb\n\xff\tb\n", "train.tsv:2: not UTF-8 text (byte 0xff"),
    ("".join(f"{'x' * 30}\ty{i}\n" for i in range(5)).encode(),
     ("train.tsv: all 4 pairs are filtered out by length: the longest source has 30 char units "
      "(--max_source_length 10)")),
])
def test_cli_bad_data_is_one_line_naming_the_file_and_line(tmp_path, capsys, content, message):
    (tmp_path / "train.tsv").write_bytes(content)
    code, out, err = run_cli(capsys, "train", "translate", "--data", tmp_path / "train.tsv", "--max_source_length", "10",
                             "--trainer.run_dir", tmp_path / "run", *TINY_ARGS)
    assert code == 2 and out == ""
    assert err.startswith("rnnlab: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_a_bundle_of_another_task(bundle, tmp_path, capsys):
    path, _ = bundle
    other = tmp_path / "other"
    shutil.copytree(path, other)
    stored = json.loads((other / "config.json").read_text())
    stored["task"] = "textgen"
    (other / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="is a 'textgen' bundle, not a 'translate' one"):
        translate.evaluate(other)
    # the CLI dispatches on the recorded task, whose own loader refuses the Seq2Seq inside
    code, _, err = run_cli(capsys, "evaluate", other)
    assert code == 2 and "is not a text-generation bundle (it holds a Seq2Seq)" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_evaluate_refuses_a_bad_test_file(bundle, tmp_path, capsys):
    path, _ = bundle
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nonly\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "evaluate", path, "--data", bad)
    assert code == 2 and "bad.tsv:2:" in err and len(err.strip().splitlines()) == 1


def test_the_embedded_default_needs_no_file():
    config = TranslateConfig()
    train, valid, test = translate.load_data(replace(config, embedded_size=50))
    assert len(train.pairs) == 50 and len(valid.pairs) == len(test.pairs) == translate.EMBEDDED_HELD_OUT
    assert not {p.target for p in train.pairs} & {p.target for p in test.pairs}
    assert config.model.kind == "rnn" and config.model.attention == "bahdanau"


def test_word_and_bpe_units_train_and_decode(tmp_path):
    pairs = [(f"the {w} cat sat", f"die {w} Katze sass") for w in ("big", "small", "old", "young", "red", "grey")] * 5
    data = write_pairs(tmp_path / "words.tsv", pairs)
    config = replace(tiny_config(tmp_path), data=str(data), test_data=None, source_tokenizer="word",
                     target_tokenizer="bpe", target_vocab_size=300, max_target_length=20,
                     trainer=replace(tiny_config(tmp_path).trainer, max_steps=2))
    path = translate.train(config)
    t = translate.load_translator(path)
    assert (t.source.kind, t.target.kind) == ("word", "bpe")
    out = list(translate.predict(path, ["the old cat sat"], max_new_tokens=5))
    assert out[0]["source"] == "the old cat sat" and isinstance(out[0]["translation"], str)


def test_the_bundle_fingerprints_its_data_and_evaluate_refuses_changed_data(bundle):
    from pathlib import Path

    path, config = bundle
    stored = json.loads((path / "config.json").read_text())["data_fingerprint"]
    assert stored["data"]["path"] == str(Path(config.data).resolve()) and len(stored["data"]["sha256"]) == 64
    data = Path(config.data)
    original = data.read_bytes()
    try:
        data.write_bytes(original + b"\n")
        with pytest.raises(ValueError, match="changed since training"):
            translate.evaluate(path)
    finally:
        data.write_bytes(original)

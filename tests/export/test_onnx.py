"""ONNX export: onnxruntime against PyTorch, the step graph against the sequence graph, the CLI and bad input.

Exporting one graph takes torch.onnx's dynamo exporter several seconds, so every test that exports is marked
slow; the bad-input tests fail before exporting and stay in the fast set (the graphs' maths is checked fast,
in PyTorch, by test_graphs.py).
"""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from conftest import ENCODERS, classifier, language_model, tagger
from rnnlab.cli import main
from rnnlab.data.tokenize import CharTokenizer
from rnnlab.export import onnx_export, step_reason, to_onnx, unsupported_reason
from rnnlab.export.onnx_export import _sequence_example, reference_sequence, run, session
from rnnlab.structures import OneToOne, OneToOneConfig, Seq2Seq, Seq2SeqConfig
from rnnlab.structures.decoders import DecoderConfig
from rnnlab.structures.encoders import EncoderConfig
from rnnlab.training.checkpoint import save_bundle

TOL = 1e-4
_HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


def slow(test):
    """Exports: slow, and skipped without the export extra."""
    return pytest.mark.slow(pytest.mark.skipif(not _HAVE_ONNX, reason="needs the export extra")(test))


def _textgen_bundle(path, encoder=ENCODERS["lstm"]):
    tokenizer = CharTokenizer.train(["hello world"])
    model = language_model(encoder, vocab=tokenizer.vocab_size)
    return save_bundle(path, model, extra_config={"task": "textgen"}, assets={"vocab": tokenizer.to_json()})


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# -- parity: onnxruntime vs PyTorch, with variable lengths -------------------------------------------------------
@pytest.fixture(scope="module", params=list(ENCODERS))
def exported(request, tmp_path_factory):
    """A tagger (feature inputs) of each encoder, exported once: (model, ExportResult)."""
    model = tagger(ENCODERS[request.param])
    return model, to_onnx(model, tmp_path_factory.mktemp(request.param) / "tagger.onnx")


@slow
def test_onnxruntime_equals_pytorch_at_new_batch_sizes_and_lengths(exported):
    model, result = exported
    assert result.max_error and all(e <= TOL for g in result.max_error.values() for e in g.values())
    names = ["x", "lengths", "h0"] + (["c0"] if len(result.max_error["sequence"]) == 3 else [])
    sess = session(result.sequence)
    for B, T in [(1, 1), (2, 9), (5, 3)]:
        args = _sequence_example(model, B, T, seed=B + T, zero_state=True)
        got = run(sess, names, args)
        for a, b in zip(got, reference_sequence(model, args)):
            np.testing.assert_allclose(a, b.numpy(), atol=TOL, rtol=0)
        y, lengths = got[0], args[1].numpy()
        for row, n in enumerate(lengths):  # zero past each row's length, as rnnlab's layers give
            assert not np.any(y[row, n:] - model.head.bias.detach().numpy())


@slow
def test_stepping_the_step_graph_equals_the_sequence_graph(exported):
    model, result = exported
    if model.encoder.num_directions == 2:
        assert result.step is None and "bidirectional" in result.step_skipped
        return
    lstm = "cN" in result.max_error["sequence"]
    state_names = ["h0", "c0"] if lstm else ["h0"]
    x, lengths, *state = _sequence_example(model, 3, 6, seed=7)
    lengths = torch.full_like(lengths, 6)
    y, *final = run(result.sequence, ["x", "lengths", *state_names], (x, lengths, *state))
    step, s = session(result.step), [t.numpy() for t in state]
    for t in range(6):
        y_t, *s = step.run(None, {"x": x[:, t].numpy(), **dict(zip(state_names, s))})
        np.testing.assert_allclose(y_t, y[:, t], atol=TOL, rtol=0)
    for a, b in zip(s, final):
        np.testing.assert_allclose(a, b, atol=TOL, rtol=0)


@slow
def test_classifier_with_attention_pooling_and_a_crf_tagger(tmp_path):
    model = classifier(ENCODERS["gru"], pooling="attention")
    result = to_onnx(model, tmp_path / "c.onnx")
    assert result.step is None and "pooling='attention'" in result.step_skipped
    crf = tagger(ENCODERS["rnn"], crf=True, task="classification")
    result = to_onnx(crf, tmp_path / "t.onnx", step=False)
    meta = json.loads(result.metadata.read_text())
    assert np.allclose(meta["crf"]["transitions"], crf.crf.transitions.detach().numpy())
    assert meta["sequence"]["outputs"]["y"] == "float32 (B, T, 4)"


@slow
def test_cli_exports_a_textgen_bundle(tmp_path, capsys):
    bundle = _textgen_bundle(tmp_path / "bundle", ENCODERS["gru"])
    assert main(["export", str(bundle), "--format", "onnx", "--out", str(tmp_path / "out" / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "m.step.onnx" in out and "max |difference|" in out
    meta = json.loads((tmp_path / "out" / "m.json").read_text())
    assert meta["task"] == "textgen" and meta["assets"]["vocab"]["kind"] == "char"
    assert meta["step"]["inputs"] == {"x": "int64 (B,) token ids", "h0": "float32 (1, B, 6)"}
    # the default output goes into the bundle
    assert main(["export", str(bundle), "--step", "false", "--check", "false"]) == 0
    assert (bundle / "model.onnx").is_file() and not (bundle / "model.step.onnx").exists()


@slow
@pytest.mark.parametrize("attention, cell", [("bahdanau", "lstm"), ("luong-general", "gru")])
def test_seq2seq_greedy_decoding_in_onnxruntime_equals_generate(tmp_path, attention, cell):
    torch.manual_seed(0)
    config = Seq2SeqConfig(tgt_vocab_size=9, src_vocab_size=8, embedding_size=5, attention=attention,
                           encoder=EncoderConfig(kind="gru", hidden_size=6, bidirectional=True),
                           decoder=DecoderConfig(cell=cell, hidden_size=6))
    model = Seq2Seq(config).eval()
    result = to_onnx(model, tmp_path / "s2s.onnx")
    src, lengths = torch.randint(0, 8, (3, 6)), torch.tensor([6, 2, 4])
    want = model.generate(src, lengths, max_new_tokens=8, end_token=None)  # (B, 8)
    enc = dict(zip([o.name for o in session(result.sequence).get_outputs()],
                   run(result.sequence, ["x", "lengths"], (src, lengths))))
    step = session(result.step)
    inputs = {i.name for i in step.get_inputs()}
    feed = {k: v for k, v in enc.items() if k in inputs} | {"lengths": lengths.numpy()}
    token, tokens = np.full(3, config.bos_token), []
    for _ in range(8):
        out = dict(zip([o.name for o in step.get_outputs()], step.run(None, {**feed, "x": token})))
        token = out["y"].argmax(-1)
        tokens.append(token)
        feed.update({"h0": out["hN"], **({"c0": out["cN"]} if "cN" in out else {}),
                     **({"feed": out["feedN"]} if "feedN" in out else {})})
    assert np.array_equal(np.stack(tokens, 1), want.numpy())


# -- what does not export, and bad input (fast: nothing is exported) ----------------------------------------
def test_unsupported_structures_and_options_name_themselves():
    one = OneToOne(OneToOneConfig(input_size=3, output_size=2))
    assert unsupported_reason(one).startswith("OneToOne does not export to ONNX")
    s2s = Seq2Seq(Seq2SeqConfig(tgt_vocab_size=7, src_vocab_size=7, encoder=EncoderConfig(kind="window")))
    assert "Seq2Seq with encoder.kind='window' does not export" in unsupported_reason(s2s)
    cnn = classifier(EncoderConfig(kind="cnn", hidden_size=4))
    assert "encoder.kind='cnn'" in unsupported_reason(cnn)
    chars = ManyToManyWithChars()
    assert "char_encoder='cnn'" in unsupported_reason(chars)
    assert unsupported_reason(language_model(ENCODERS["mingru"])) is None
    assert "bidirectional" in step_reason(tagger(ENCODERS["bi-gru"]))
    assert "pooling='mean'" in step_reason(classifier(ENCODERS["gru"], pooling="mean"))
    assert step_reason(classifier(ENCODERS["gru"])) is None
    with pytest.raises(ValueError, match="OneToOne does not export"):
        to_onnx(one, "x.onnx")


def ManyToManyWithChars():
    from rnnlab.structures import ManyToMany, ManyToManyConfig

    return ManyToMany(ManyToManyConfig(output_size=3, vocab_size=5, char_encoder="cnn", char_vocab_size=4))


def test_the_python_api_rejects_a_bad_path_and_argument(tmp_path):
    with pytest.raises(ValueError, match="must end in .onnx"):
        to_onnx(language_model(ENCODERS["gru"]), tmp_path / "model.bin")
    with pytest.raises(TypeError, match="model_or_bundle"):
        to_onnx(3, tmp_path / "m.onnx")


def test_cli_missing_bundle(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert "bundle not found" in _error(capsys)


def test_cli_corrupt_bundle(tmp_path, capsys):
    bundle = _textgen_bundle(tmp_path / "bundle")
    (bundle / "config.json").write_text("{not json")
    assert main(["export", str(bundle)]) == 2
    assert "config.json is not valid JSON" in _error(capsys)
    bundle = _textgen_bundle(tmp_path / "bundle2")
    (bundle / "model.safetensors").write_bytes(b"\x00" * 20)
    assert main(["export", str(bundle)]) == 2
    assert "model.safetensors" in _error(capsys)


def test_cli_unsupported_structure(tmp_path, capsys):
    bundle = save_bundle(tmp_path / "b", classifier(EncoderConfig(kind="transformer", hidden_size=4, num_heads=2)),
                         extra_config={"task": "classify"})
    assert main(["export", str(bundle), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "encoder.kind='transformer' does not export" in _error(capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_cli_unknown_format(tmp_path, capsys):
    bundle = _textgen_bundle(tmp_path / "bundle")
    assert main(["export", str(bundle), "--format", "tflite"]) == 2
    assert "unknown --format 'tflite'" in _error(capsys)


def test_cli_says_how_to_install_onnx_when_missing(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert main(["export", str(_textgen_bundle(tmp_path / "bundle"))]) == 2
    err = _error(capsys)
    assert "needs onnxruntime" in err and "pip install 'rnnlab[export]'" in err


def test_a_graph_that_disagrees_is_an_error():
    with pytest.raises(RuntimeError, match="disagrees with PyTorch"):
        onnx_export._compare("sequence", ["y"], [np.ones((2, 3), np.float32)], [torch.zeros(2, 3)])

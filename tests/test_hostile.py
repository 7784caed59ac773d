"""Hostile input, end to end: every case is one line on stderr naming the cause and the option, a non-zero exit,
never a traceback. The CLI cases are one table; the library (API) cases follow it."""
import json
import logging
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main
from rnnlab.nn import LSTM
from rnnlab.structures import EncoderConfig, LanguageModel, LanguageModelConfig
from rnnlab.tasks import textgen
from rnnlab.tasks.textgen import SampleConfig
from rnnlab.training import load_bundle, save_bundle

TEXT = "hello world. the cat sat on the mat. " * 60
SMALL = ["--batch_size", "4", "--bptt", "16", "--model.embedding_size", "8", "--model.encoder.hidden_size", "16",
         "--trainer.max_steps", "4", "--trainer.max_time", "0", "--trainer.eval_every", "0", "--trainer.device", "cpu",
         "--trainer.progress", "false", "--trainer.curves", "false"]


def run_main(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _train(capsys, data: Path, run_dir: Path, *extra: str) -> Path:
    code, _, err = run_main(["train", "textgen", "--data", str(data), *SMALL, "--trainer.run_dir", str(run_dir),
                             *extra], capsys)
    assert code == 0, err
    return run_dir / "bundle"


def _copy_bundle(bundle: Path, to: Path) -> Path:
    shutil.copytree(bundle, to)
    return to


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny textgen run and bundles broken in each way the table needs; {name} placeholders in the argv."""
    tmp = tmp_path_factory.mktemp("hostile")
    capsys = _NoCapture()
    data = tmp / "tiny.txt"
    data.write_text(TEXT, encoding="utf-8")
    bundle = _train(capsys, data, tmp / "run", "--trainer.checkpoint_every", "2")

    changed_data = tmp / "changing.txt"
    changed_data.write_text(TEXT, encoding="utf-8")
    changed = _train(capsys, changed_data, tmp / "run_changed")
    changed_data.write_text(TEXT.replace("cat", "dog"), encoding="utf-8")

    diverged = _copy_bundle(bundle, tmp / "diverged")
    model = load_bundle(diverged).model
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    from safetensors.torch import save_model
    save_model(model, str(diverged / "model.safetensors"))

    char_no_vocab = _copy_bundle(bundle, tmp / "char_no_vocab")
    (char_no_vocab / "vocab.json").write_text(json.dumps({"kind": "char"}))
    bad_bpe = _copy_bundle(bundle, tmp / "bad_bpe")
    (bad_bpe / "vocab.json").write_text(json.dumps({"kind": "bpe", "tokenizer": {"model": {"type": "nonsense"}}}))
    small_vocab = _copy_bundle(bundle, tmp / "small_vocab")
    vocab = json.loads((small_vocab / "vocab.json").read_text())
    vocab["vocab"]["tokens"] = vocab["vocab"]["tokens"][:-2]
    (small_vocab / "vocab.json").write_text(json.dumps(vocab))

    quoted = tmp / "quoted.yaml"
    quoted.write_text('vocab_size: "28"\n')
    return {"tmp": str(tmp), "data": str(data), "bundle": str(bundle), "run": str(tmp / "run"),
            "changed": str(changed), "diverged": str(diverged), "char_no_vocab": str(char_no_vocab),
            "bad_bpe": str(bad_bpe), "small_vocab": str(small_vocab), "quoted": str(quoted)}


class _NoCapture:
    """capsys for a module fixture (which cannot use the function-scoped capsys): output just passes."""

    def readouterr(self):
        return type("Out", (), {"out": "", "err": ""})()


TRAIN = ["train", "textgen", "--data", "{data}", *SMALL]
DEFAULT_SIZES = ["train", "textgen", "--data", "{data}"]  # the default model: E=64, H=256, B=32, T=64

# (case, argv, exit code, fragments the one line must hold)
CASES = [
    ("transformer num_heads 0", [*TRAIN, "--trainer.run_dir", "{tmp}/h0", "--model.encoder.kind", "transformer",
                                 "--model.encoder.causal", "true", "--model.encoder.num_heads", "0"], 2, ["num_heads"]),
    ("window 1000000", [*DEFAULT_SIZES, "--trainer.run_dir", "{tmp}/w", "--model.encoder.kind", "window",
                        "--model.encoder.window", "1000000"], 2, ["too big", "GiB", "max_memory_fraction"]),
    ("num_layers 1000000", [*DEFAULT_SIZES, "--trainer.run_dir", "{tmp}/l", "--model.encoder.num_layers", "1000000"], 2,
     ["too big", "num_layers", "max_memory_fraction"]),
    ("hidden_size 10000000", [*DEFAULT_SIZES, "--trainer.run_dir", "{tmp}/hs", "--model.encoder.hidden_size", "10000000"], 2,
     ["too big", "hidden_size", "max_memory_fraction"]),
    ("vocab.json {kind: char}", ["generate", "{char_no_vocab}", "--max_new_tokens", "3"], 2,
     ["vocab.json", "'vocab'"]),
    ("malformed BPE vocab.json", ["generate", "{bad_bpe}", "--max_new_tokens", "3"], 2, ["vocab.json", "malformed"]),
    ("vocab.json smaller than the model", ["generate", "{small_vocab}", "--max_new_tokens", "3"], 2,
     ["vocab.json", "tokens but the model"]),
    ("run_dir is a file", [*TRAIN, "--trainer.run_dir", "{data}"], 2, ["--trainer.run_dir", "is a file"]),
    ("run_dir under /proc", [*TRAIN, "--trainer.run_dir", "/proc/x"], 2, ["--trainer.run_dir", "cannot be created"]),
    ("run_dir checked before the data", ["train", "textgen", "--data", "/does/not/exist.txt", *SMALL,
                                         "--trainer.run_dir", "/proc/x"], 2, ["--trainer.run_dir"]),
    ("generate from a diverged bundle", ["generate", "{diverged}", "--max_new_tokens", "3"], 2,
     ["not finite", "diverged"]),
    ("evaluate --batch_size 0", ["evaluate", "{bundle}", "--batch_size", "0"], 2, ["--batch_size"]),
    ("evaluate --batch_size -3", ["evaluate", "{bundle}", "--batch_size", "-3"], 2, ["--batch_size", "-3"]),
    ("generate --seed 2**70", ["generate", "{bundle}", "--seed", str(2**70)], 2, ["--seed", str(2**70)]),
    ("train --trainer.seed 2**70", [*TRAIN, "--trainer.run_dir", "{tmp}/s", "--trainer.seed", str(2**70)], 2,
     ["seed", "[0, 4294967295]"]),
    ("embedding_size 0", [*TRAIN, "--trainer.run_dir", "{tmp}/e", "--model.embedding_size", "0"], 2,
     ["--model.embedding_size"]),
    ("--data /dev/zero", ["train", "textgen", "--data", "/dev/zero", *SMALL, "--trainer.run_dir", "{tmp}/z"], 2,
     ["/dev/zero", "not a regular file"]),
    ('YAML vocab_size: "28"', ["train", "textgen", "--config", "{quoted}", "--trainer.run_dir", "{tmp}/q"], 2,
     ["vocab_size", "int", "'28'"]),
    ("evaluate after the data changed", ["evaluate", "{changed}"], 2, ["changing.txt", "changed since training",
                                                                        "--data"]),
    ("resume with another hidden_size", [*TRAIN, "--model.encoder.hidden_size", "32", "--trainer.run_dir", "{run}",
                                         "--trainer.resume", "true"], 2,
     ["cannot resume", "model.encoder.hidden_size 16 -> 32"]),
    ("resume with another batch_size", [*TRAIN, "--batch_size", "8", "--trainer.run_dir", "{run}",
                                        "--trainer.resume", "true"], 2, ["cannot resume", "batch_size 4 -> 8"]),
]


@pytest.mark.parametrize("argv, code, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_cli_input_is_one_line_naming_the_cause(env, capsys, argv, code, fragments):
    got, _, err = run_main([a.format(**env) for a in argv], capsys)
    lines = err.strip().splitlines()
    assert got == code, err
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def test_evaluate_on_unchanged_data_still_works(env, capsys):
    code, out, err = run_main(["evaluate", env["bundle"]], capsys)
    assert code == 0 and json.loads(out)["loss"] > 0, err


def test_bundles_store_absolute_data_paths_and_their_fingerprint(env, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("here.txt").write_text(TEXT, encoding="utf-8")
    bundle = _train(capsys, Path("here.txt"), Path("rel_run"))
    stored = json.loads((bundle / "config.json").read_text())
    assert stored["textgen"]["data"] == str((tmp_path / "here.txt").resolve())
    fp = stored["data_fingerprint"]["data"]
    assert fp["size"] == len(TEXT.encode()) and len(fp["sha256"]) == 64
    monkeypatch.chdir(env["tmp"])  # another folder: evaluate still finds the data
    assert run_main(["evaluate", str(tmp_path / "rel_run" / "bundle")], capsys)[0] == 0


def test_resume_with_only_the_length_changed_is_allowed(env, capsys):
    code, _, err = run_main([*[a.format(**env) for a in TRAIN], "--trainer.max_steps", "6", "--trainer.run_dir",
                             env["run"], "--trainer.resume", "true"], capsys)
    assert code == 0, err


def test_train_and_generate_agree_on_temperature_0(env, capsys):
    model, tokenizer, _ = textgen.load_textgen(env["bundle"])
    library = textgen.generate_text(model, tokenizer, "the ", SampleConfig(max_new_tokens=20, temperature=0.0), seed=5)
    outs = []
    for extra in (["--seed", "1"], ["--seed", "2"], ["--method", "greedy"]):
        code, out, err = run_main(["generate", env["bundle"], "--prompt", "the ", "--temperature", "0",
                                   "--max_new_tokens", "20", *extra], capsys)
        assert code == 0, err
        outs.append(out.rstrip("\n"))
    assert outs == [library] * 3


def test_unseen_prompt_characters_warn_once_and_unk_is_never_generated(env, caplog):
    model, tokenizer, _ = textgen.load_textgen(env["bundle"])
    with torch.no_grad():
        model.head.bias[tokenizer.vocab.unk_id] = 1e4  # the model would always say <unk>
    caplog.set_level(logging.WARNING, logger="rnnlab")
    warned: set = set()
    sample = SampleConfig(max_new_tokens=30, temperature=1.0)
    texts = [textgen.generate_text(model, tokenizer, p, sample, warned=warned) for p in ("QZ the", "Q the")]
    unseen = [r.getMessage() for r in caplog.records if "never seen in training" in r.getMessage()]
    assert len(unseen) == 1 and "'Q'" in unseen[0] and "'Z'" in unseen[0]
    assert all("<unk>" not in t[len(p):] for t, p in zip(texts, ("QZ the", "Q the")))


def test_bundle_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        model = LanguageModel(LanguageModelConfig(vocab_size=5, embedding_size=4, encoder=EncoderConfig(hidden_size=4)))
        path = save_bundle(tmp_path / "b", model, vocab={"kind": "char", "vocab": {"tokens": list("abcd")}})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert {stat.S_IMODE(f.stat().st_mode) for f in path.iterdir()} == {0o644}


# --- the library --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_lstm_with_an_empty_batch_returns_empty_outputs_like_torch(layer_norm, with_lengths):
    layer = LSTM(3, 5, num_layers=2, layer_norm=layer_norm)
    x = torch.zeros(0, 4, 3)
    out, state = layer(x, lengths=torch.zeros(0, dtype=torch.long) if with_lengths else None)
    ref_out, (ref_h, _) = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)(x)
    assert out.shape == ref_out.shape and state.h.shape == ref_h.shape == state.c.shape


def test_language_model_target_outside_the_vocabulary_is_a_clear_error():
    model = LanguageModel(LanguageModelConfig(vocab_size=5, embedding_size=4, encoder=EncoderConfig(hidden_size=4)))
    x = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"y .*\[0, 5\).*max 7"):
        model.loss({"x": x, "y": torch.full((2, 3), 7)})
    # padding positions are not targets: any value there is fine
    y = torch.tensor([[1, 2, 3], [1, 99, 99]])
    assert torch.isfinite(model.loss({"x": x, "y": y, "lengths": torch.tensor([3, 1])}))


def test_a_vocab_json_of_another_size_fails_at_load_not_mid_generation(env):
    with pytest.raises(ValueError, match="tokens but the model"):
        textgen.load_textgen(env["small_vocab"])

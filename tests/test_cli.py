"""The rnnlab command: help for every subcommand, one-line errors, --print_config, a tiny run end to end."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rnnlab.cli import build_parser, main
from rnnlab.tasks.textgen import TextgenConfig

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = {
    "train": ["textgen"],
    "train textgen": ["--config", "--print_config", "--data", "--tokenizer", "--model.encoder.hidden_size",
                      "--trainer.max_time", "--bptt", "--sample.prompts", "{char,word,bpe,whitespace}"],
    "evaluate": ["bundle", "--data"],
    "generate": ["bundle", "--prompt", "--temperature", "--top_k", "--top_p", "--max_new_tokens", "--seed", "--method"],
    "predict": ["bundle", "inputs", "--file", "standard input"],
    "datasets": [],
    "demo": ["--task", "--max_time", "--run_dir"],
}


def run_main(argv, capsys):
    """-> (exit status, stdout, stderr), whether main returns or raises SystemExit (--help does)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_top_level_help_lists_every_subcommand(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for name in SUBCOMMANDS:
        assert name.split()[0] in out


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_subcommand_help_names_its_options(command, capsys):
    code, out, _ = run_main([*command.split(), "--help"], capsys)
    assert code == 0
    for option in SUBCOMMANDS[command]:
        assert option in out, f"{command} --help does not mention {option}"


@pytest.mark.parametrize("argv", [
    ["train", "textgen", "--bogus", "1"],
    ["train", "textgen", "--model.encoder.hidden_size", "big"],
    ["train", "textgen", "--tokenizer", "sentencepiece"],
    ["train", "textgen", "--data", "/does/not/exist.txt"],
    ["train", "nosuchtask"],
    ["evaluate", "/does/not/exist"],
    ["predict", "/does/not/exist", "x"],
    ["generate", "/does/not/exist"],
    ["nosuchcommand"],
    [],
])
def test_errors_are_one_line_and_non_zero(argv, capsys):
    code, _, err = run_main(argv, capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: "), err


def test_print_config_prints_yaml_of_the_defaults(capsys):
    code, out, _ = run_main(["train", "textgen", "--print_config", "--model.encoder.hidden_size", "512"], capsys)
    assert code == 0
    config = yaml.safe_load(out)
    assert config["model"]["encoder"]["hidden_size"] == 512
    assert config["tokenizer"] == "char" and config["trainer"]["max_time"] == 120


def _parse_train(*args) -> TextgenConfig:
    parser = build_parser()
    ns = parser.instantiate(parser.parse_args(["train", "textgen", *args])).train.textgen
    return TextgenConfig(**{k: ns[k] for k in TextgenConfig.__dataclass_fields__})


def test_the_default_preset_is_the_default_config():
    assert _parse_train("--config", str(ROOT / "configs" / "textgen.yaml")) == TextgenConfig()
    shakespeare = _parse_train("--config", str(ROOT / "configs" / "textgen-shakespeare.yaml"))
    assert shakespeare.data.endswith("rnnlab-data/text/shakespeare.txt")
    assert shakespeare.trainer.max_time == 1200 and shakespeare.valid_fraction == 0.1


def test_datasets_describes_the_embedded_corpus(capsys):
    code, out, _ = run_main(["datasets"], capsys)
    assert code == 0 and "pydoc" in out and "shakespeare.txt" in out


def test_train_generate_predict_evaluate_end_to_end(tmp_path, capsys, monkeypatch):
    data = tmp_path / "tiny.txt"
    data.write_text("hello world. " * 300, encoding="utf-8")
    run = tmp_path / "run"
    code, out, err = run_main([
        "train", "textgen", "--data", str(data), "--batch_size", "4", "--bptt", "16", "--model.embedding_size", "8",
        "--model.encoder.hidden_size", "16", "--trainer.max_steps", "20", "--trainer.max_time", "0",
        "--trainer.eval_every", "0", "--trainer.device", "cpu", "--trainer.run_dir", str(run),
    ], capsys)
    assert code == 0, err
    bundle = run / "bundle"
    assert str(bundle) in out and "valid_bits_per_char" in out

    code, out, err = run_main(["generate", str(bundle), "--prompt", "hel", "--max_new_tokens", "12", "--top_k", "3"], capsys)
    assert code == 0 and out.startswith("hel"), err

    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n\nwor\n"))
    code, out, err = run_main(["predict", str(bundle), "--max_new_tokens", "5"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["prompt"] for r in rows] == ["hello", "wor"]
    assert all(r["text"].startswith(r["prompt"]) for r in rows)

    code, out, err = run_main(["predict", str(bundle), "he", "wo", "--max_new_tokens", "3", "--seed", "2"], capsys)
    assert code == 0 and [json.loads(line)["prompt"] for line in out.splitlines()] == ["he", "wo"]

    code, out, err = run_main(["predict", str(bundle), "--help"], capsys)
    assert code == 0 and "--temperature" in out and "--max_new_tokens" in out  # the bundle's task's options

    code, out, err = run_main(["evaluate", str(bundle), "--batch_size", "2"], capsys)
    assert code == 0 and json.loads(out)["bits_per_char"] > 0

    code, out, err = run_main(["evaluate", str(bundle), "--batch_size", "0"], capsys)
    assert code == 2 and "--batch_size" in err


@pytest.mark.slow
def test_console_errors_have_no_traceback():
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "generate", "/does/not/exist"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("rnnlab: error: bundle not found") and "Traceback" not in result.stderr


@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_embedded_corpus(tmp_path, capsys):
    """README command one, cut to a few seconds: trains on pydoc's text, saves a bundle, samples, plots."""
    run = tmp_path / "demo"
    code, out, err = run_main(["demo", "--max_time", "3", "--run_dir", str(run)], capsys)
    assert code == 0, err
    assert (run / "bundle" / "model.safetensors").is_file() and (run / "curves.png").is_file()
    assert "valid_bits_per_char" in out and "prompt 'def '" in out


def test_adding_demo_runs(capsys):
    code, out, err = run_main(["demo", "--task", "adding", "--steps", "3", "--length", "6"], capsys)
    assert code == 0, err
    assert "test MSE" in out and "baseline 0.167" in out


def test_runtime_failures_exit_1_with_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    from rnnlab.tasks import textgen

    def boom(config):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(textgen, "train", boom)
    code, _, err = run_main(["train", "textgen"], capsys)
    assert code == 1 and err.strip() == "rnnlab: error: RuntimeError: disk on fire (run with --debug for the traceback)"
    code, _, err = run_main(["--debug", "train", "textgen"], capsys)
    assert code == 1 and "Traceback" in err


def test_sigterm_saves_the_bundle_and_says_how_to_resume_and_config_yaml_replays(tmp_path, capsys, monkeypatch):
    import os
    import signal

    from rnnlab.training import trainer as trainer_module

    data = tmp_path / "tiny.txt"
    data.write_text("hello world. " * 300, encoding="utf-8")
    run = tmp_path / "run"
    args = ["train", "textgen", "--data", str(data), "--batch_size", "4", "--bptt", "16", "--model.embedding_size", "8",
            "--model.encoder.hidden_size", "16", "--trainer.max_steps", "50", "--trainer.max_time", "0",
            "--trainer.eval_every", "0", "--trainer.device", "cpu", "--trainer.run_dir", str(run)]
    real_step = trainer_module.Trainer._train_step

    def step(self, p, batch, state):
        if state.step == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, p, batch, state)

    monkeypatch.setattr(trainer_module.Trainer, "_train_step", step)
    code, out, err = run_main(args, capsys)
    assert code == 143 and (run / "bundle" / "model.safetensors").is_file() and (run / "resume").is_dir()
    assert "SIGTERM at step 5" in err and "--trainer.resume true" in err
    monkeypatch.setattr(trainer_module.Trainer, "_train_step", real_step)

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"] == str(data) and saved["trainer"]["max_steps"] == 50
    assert _parse_train("--config", str(run / "config.yaml")) == _parse_train(*args[2:])
    code, out, err = run_main(["train", "textgen", "--config", str(run / "config.yaml"), "--trainer.resume", "true"],
                              capsys)
    assert code == 0, err
    assert json.loads((run / "bundle" / "metrics.json").read_text())["step"] == 50


def test_log_level_quiets_the_progress_lines(tmp_path, capsys, caplog):
    data = tmp_path / "tiny.txt"
    data.write_text("hello world. " * 300, encoding="utf-8")
    args = ["train", "textgen", "--data", str(data), "--batch_size", "4", "--bptt", "16", "--model.embedding_size", "8",
            "--model.encoder.hidden_size", "16", "--trainer.max_steps", "3", "--trainer.max_time", "0",
            "--trainer.eval_every", "0", "--trainer.device", "cpu", "--trainer.run_dir", str(tmp_path / "run")]
    import logging

    try:
        code, _, err = run_main(["--log_level", "ERROR", *args], capsys)
    finally:
        logging.getLogger("rnnlab").setLevel(logging.INFO)  # main() set it for the whole process
    assert code == 0, err
    assert not [r for r in caplog.records if r.name.startswith("rnnlab") and r.levelname == "INFO"]
    code, _, err = run_main(["--log_level", "LOUD", *args], capsys)
    assert code == 2 and "log_level" in err


@pytest.mark.parametrize("argv", [["train", "textgen"], ["train", "classify"], ["train", "tag"], ["train", "translate"],
                                  ["generate"], ["evaluate"], ["predict"]])
def test_help_is_plain_text_without_docstring_markup(argv, capsys):
    code, out, _ = run_main([*argv, "--help"], capsys)
    assert code == 0
    for markup in ("``", ":class:", ":func:", ":meth:", ":mod:"):
        assert markup not in out, f"{' '.join(argv)} --help shows {markup}"


def test_plain_strips_roles_and_literals():
    from rnnlab.cli import plain

    assert plain("see :class:`~rnnlab.nn.LSTM` and ``max_len``") == "see LSTM and max_len"
    assert plain(":func:`train` ok") == "train ok"

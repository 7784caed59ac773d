"""The speech task end to end on tiny generated tones: classify and transcribe runs, their bundles, evaluate,
predict, the CLI, the embedded espeak-ng data (cache, missing program), and every bad-input case (one line
naming the file, exit 2)."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.data import espeak
from rnnlab.data.audio import write_wav
from rnnlab.structures import EncoderConfig
from rnnlab.tasks import speech
from rnnlab.tasks.speech import AugmentConfig, FeatureConfig, SpeechConfig, SpeechModelConfig
from rnnlab.training import TrainerConfig

RATE = 8000
TONES = {"low": 300.0, "mid": 900.0, "high": 2000.0}
SPEAKERS = ("ann", "bob", "cy", "dee", "eve")


def tone(freqs, seed, seconds=0.25):
    """Consecutive tones (one per symbol) with a speaker-ish random pitch shift, level and noise."""
    rng = np.random.default_rng(seed)
    shift, level = rng.uniform(0.9, 1.1), rng.uniform(0.2, 0.6)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = np.concatenate([np.sin(2 * np.pi * f * shift * t) for f in freqs])
    return level * x + 0.01 * rng.standard_normal(len(x))


def label_folder(root, takes=2, rate=RATE):
    for i, (label, f) in enumerate(TONES.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for s, speaker in enumerate(SPEAKERS):
            for take in range(takes):
                write_wav(root / label / f"{speaker}_{take}.wav", tone([f], 100 * i + 10 * s + take), rate)
    return str(root)


def transcript_csv(root, n=24):
    """Utterances of one to three tones 'l', 'm', 'h' with their letters as transcripts."""
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["file,transcript,speaker"]
    for k in range(n):
        letters = "".join(rng.choice(list("lmh"), size=rng.integers(1, 4)))
        freqs = [{"l": 300.0, "m": 900.0, "h": 2000.0}[c] for c in letters]
        write_wav(root / "wav" / f"u{k}.wav", tone(freqs, k, seconds=0.15), RATE)
        rows.append(f"wav/u{k}.wav,{letters},{SPEAKERS[k % len(SPEAKERS)]}")
    (root / "t.csv").write_text("\n".join(rows) + "\n")
    return str(root / "t.csv")


def tiny_config(data, run_dir, **overrides) -> SpeechConfig:
    config = SpeechConfig(
        data=data, valid_fraction=0.2, batch_size=8,
        features=FeatureConfig(sample_rate=RATE, n_fft=200, hop_length=80, n_mels=16, stack=2),
        augment=AugmentConfig(freq_masks=1, freq_width=2, time_masks=1, time_width=2),
        model=SpeechModelConfig(encoder=EncoderConfig(kind="gru", hidden_size=12, bidirectional=True)),
        trainer=TrainerConfig(lr=2e-2, max_steps=30, max_epochs=0, log_every=50, progress=False, curves=False,
                              device="cpu", run_dir=str(run_dir)),
    )
    return replace(config, **overrides)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    return root, label_folder(root / "train"), label_folder(root / "test", takes=1)


@pytest.fixture(scope="module")
def run(data_dir):
    root, train, test = data_dir
    return speech.train(tiny_config(train, root / "run", test_data=test))


def test_classify_bundle_metrics_confusion_and_unseen_validation_speakers(run, data_dir):
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["valid_accuracy"] <= 1.0 and "test_accuracy" in metrics
    assert metrics["valid_accuracy"] > 0.6  # three tones are easy
    assert json.loads((run / "labels.json").read_text()) == ["high", "low", "mid"]
    assert (run.parent / "confusion.png").is_file() and (run.parent / "confusion_test.png").is_file()
    train, valid, _ = speech.load_splits(speech.load_speech(run)[4])
    assert {c.speaker for c in train}.isdisjoint({c.speaker for c in valid}) and valid


def test_evaluate_reproduces_validation_and_scores_a_folder(run, data_dir, tmp_path):
    metrics = json.loads((run / "metrics.json").read_text())
    assert speech.evaluate(run)["accuracy"] == pytest.approx(metrics["valid_accuracy"])
    out = speech.evaluate(run, data_dir[2], plot=str(tmp_path / "c.png"))
    assert out["accuracy"] == pytest.approx(metrics["test_accuracy"]) and (tmp_path / "c.png").is_file()


def test_predict_gives_the_label_and_top_k(run, data_dir):
    path = f"{data_dir[2]}/high/ann_0.wav"
    (result,) = speech.predict(run, [path], top_k=2)
    assert result["file"] == path and len(result["top"]) == 2
    assert result["label"] == result["top"][0]["label"]
    assert result["top"][0]["probability"] >= result["top"][1]["probability"]


def test_cli_evaluate_and_predict(run, data_dir, capsys):
    assert main(["evaluate", str(run), "--data", data_dir[2]]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out)
    assert main(["predict", str(run), f"{data_dir[2]}/low/bob_0.wav", "--top_k", "1"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert set(line) == {"file", "label", "top"} and len(line["top"]) == 1


@pytest.mark.slow  # a whole CLI training run (about 5 s on a busy machine)
def test_cli_train_with_a_resampled_folder(tmp_path, capsys):
    data = label_folder(tmp_path / "d", takes=1, rate=11025)  # files at 11,025 Hz, features at 8 kHz
    assert main(["train", "speech", "--data", data, "--features.sample_rate", "8000", "--features.n_fft", "200",
                 "--features.hop_length", "80", "--features.n_mels", "16", "--model.encoder.hidden_size", "8",
                 "--trainer.max_steps", "3", "--trainer.max_epochs", "0", "--trainer.progress", "false",
                 "--trainer.curves", "false", "--trainer.device", "cpu",
                 "--trainer.run_dir", str(tmp_path / "r")]) == 0
    assert "valid_accuracy" in capsys.readouterr().out


def test_transcribe_trains_ctc_and_decodes_letters(tmp_path):
    csv = transcript_csv(tmp_path)
    bundle = speech.train(tiny_config(csv, tmp_path / "run", beam_size=4))
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert {"valid_cer", "valid_wer"} <= set(metrics)
    assert json.loads((bundle / "alphabet.json").read_text()) == ["h", "l", "m"]
    (greedy,) = speech.predict(bundle, [str(tmp_path / "wav" / "u0.wav")], decoder="greedy")
    (beam,) = speech.predict(bundle, [str(tmp_path / "wav" / "u0.wav")], beam_size=4)
    assert set(greedy["transcript"]) <= set("hlm") and set(beam["transcript"]) <= set("hlm")
    out = speech.evaluate(bundle, csv, decoder="greedy")
    assert 0.0 <= out["cer"] and out["examples"] == 24


# --- bad input: one line naming the file and the problem, exit 2 -------------------------------------------------

def cli_error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    return err


def bad_run(data, tmp_path, *extra):
    return ["train", "speech", "--data", str(data), "--trainer.max_steps", "1", "--trainer.max_epochs", "0",
            "--trainer.progress", "false", "--trainer.run_dir", str(tmp_path / "run"), *extra]


def test_bad_wavs_are_named_with_exit_2(tmp_path, capsys):
    root = tmp_path / "d"
    label_folder(root, takes=1)
    (root / "low" / "ann_0.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    assert "ann_0.wav: not a readable PCM WAV file" in cli_error(bad_run(root, tmp_path), capsys)
    (root / "low" / "ann_0.wav").write_bytes(b"")
    assert "ann_0.wav: the WAV file is empty" in cli_error(bad_run(root, tmp_path), capsys)
    write_wav(root / "low" / "ann_0.wav", tone([300.0], 0), 22050)
    err = cli_error(bad_run(root, tmp_path, "--features.resample", "false", "--features.sample_rate", "8000"), capsys)
    assert "ann_0.wav: sample rate 22050 Hz, but the model reads 8000 Hz" in err


def test_a_folder_without_wavs_and_a_csv_naming_a_missing_file(tmp_path, capsys):
    (tmp_path / "empty" / "yes").mkdir(parents=True)
    assert "no .wav files found" in cli_error(bad_run(tmp_path / "empty", tmp_path), capsys)
    csv = tmp_path / "t.csv"
    write_wav(tmp_path / "a_0.wav", tone([300.0], 0), RATE)
    csv.write_text("file,transcript\na_0.wav,hi\nmissing.wav,there\n")
    err = cli_error(bad_run(csv, tmp_path), capsys)
    assert "t.csv:3: the audio file 'missing.wav' does not exist" in err


def test_predict_on_a_bad_wav_is_named(run, tmp_path, capsys):
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"")
    assert "x.wav: the WAV file is empty" in cli_error(["predict", str(run), str(bad)], capsys)


def test_config_errors_name_the_option():
    with pytest.raises(ValueError, match="--features.f_min and --features.f_max"):
        FeatureConfig(f_min=9000.0)
    with pytest.raises(ValueError, match="--mode must be one of"):
        SpeechConfig(mode="spell")
    with pytest.raises(ValueError, match="--augment.time_masks"):
        AugmentConfig(time_masks=-1)


# --- the embedded data ---------------------------------------------------------------------------------------

def test_without_espeak_the_command_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(espeak.shutil, "which", lambda name: None)
    monkeypatch.setenv("RNNLAB_SPEECH_CACHE", str(tmp_path / "cache"))  # nothing cached: it must synthesise
    err = cli_error(["train", "speech", "--trainer.run_dir", str(tmp_path / "run")], capsys)
    assert "apt-get install espeak-ng" in err and "brew install espeak-ng" in err


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_embedded_clips_are_synthesised_once_and_cached(tmp_path, monkeypatch):
    recipe = espeak.Recipe("digits", ("en-us+m1", "en+f2", "en-029+m3"), takes=1, test_voices=1)
    folder = espeak.build(recipe, tmp_path)
    wavs = sorted(folder.rglob("*.wav"))
    assert len(wavs) == 30 and (folder / "test" / "7" / "en-029_m3_0.wav").is_file()
    calls = []
    monkeypatch.setattr(espeak, "_synthesise", lambda *a: calls.append(a))
    assert espeak.build(recipe, tmp_path) == folder and not calls  # the second call reads the cache


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_the_default_run_recognises_unseen_voices(tmp_path, capsys):
    assert main(["train", "speech", "--trainer.run_dir", str(tmp_path / "run"), "--trainer.progress", "false"]) == 0
    metrics = json.loads((tmp_path / "run" / "bundle" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95


def test_the_presets_parse_and_the_default_one_is_the_default_config():
    from pathlib import Path

    from rnnlab.cli import build_parser

    root = Path(__file__).resolve().parents[2] / "configs"
    parser = build_parser()

    def parse(name):
        ns = parser.instantiate(parser.parse_args(["train", "speech", "--config", str(root / name)])).train.speech
        return SpeechConfig(**{k: ns[k] for k in SpeechConfig.__dataclass_fields__})

    assert parse("speech.yaml") == replace(SpeechConfig(), data="espeak-digits", mode="classify")
    assert speech.resolve_mode(parse("speech-numbers.yaml")) == "transcribe"
    digits = parse("speech-digits.yaml")
    assert digits.test_data.endswith("speech/digits/test") and digits.model.encoder.bidirectional


def test_speech_commands_lists_and_the_flat_fsdd_layout_split_as_stated(tmp_path):
    sc = tmp_path / "sc"
    for name in ("yes/a_nohash_0.wav", "yes/b_nohash_0.wav", "no/c_nohash_0.wav", "no/a_nohash_1.wav"):
        (sc / name).parent.mkdir(parents=True, exist_ok=True)
        write_wav(sc / name, tone([300.0], 0), RATE)
    (sc / "validation_list.txt").write_text("yes/b_nohash_0.wav\n")
    (sc / "testing_list.txt").write_text("no/c_nohash_0.wav\n")
    train, valid, test = speech.load_splits(tiny_config(str(sc), tmp_path / "r"))
    assert [len(train), len(valid), len(test)] == [2, 1, 1] and valid[0].path.endswith("b_nohash_0.wav")

    fsdd = tmp_path / "fsdd"
    fsdd.mkdir()
    for digit in range(3):
        for speaker in ("jackson", "theo", "nicolas", "yweweler"):
            for i in range(2):
                write_wav(fsdd / f"{digit}_{speaker}_{i}.wav", tone([300.0 * (digit + 1)], i), RATE)
    train, valid, _ = speech.load_splits(tiny_config(str(fsdd), tmp_path / "r", valid_fraction=0.25))
    assert {c.speaker for c in valid} and {c.speaker for c in train}.isdisjoint({c.speaker for c in valid})
    assert {c.target for c in train} == {"0", "1", "2"}

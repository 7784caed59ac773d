"""Speech data layouts: label folders, the flat FSDD folder, Speech Commands' lists, transcript CSVs, and the
speaker split (no speaker on both sides)."""
import numpy as np
import pytest

from rnnlab.data.audio import write_wav
from rnnlab.data.errors import DataError
from rnnlab.data.speech_data import read_label_folder, read_transcripts, speaker_of, split_by_speaker, split_lists


def wav(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_wav(path, np.full(160, 0.1), 16000)


def test_label_folders_skip_background_noise_and_name_speakers(tmp_path):
    for label in ("yes", "no"):
        for speaker in ("0a7c2a8d", "0b09edd3"):
            wav(tmp_path / label / f"{speaker}_nohash_0.wav")
    wav(tmp_path / "_background_noise_" / "white_noise.wav")
    clips = read_label_folder(str(tmp_path))
    assert [(c.target, c.speaker) for c in clips] == [("no", "0a7c2a8d_nohash"), ("no", "0b09edd3_nohash"),
                                                      ("yes", "0a7c2a8d_nohash"), ("yes", "0b09edd3_nohash")]


def test_speaker_rule():
    assert speaker_of("en-029_f5_0.wav") == "en-029_f5"
    assert speaker_of("0a7c2a8d_nohash_3.wav") == "0a7c2a8d_nohash"
    assert speaker_of("plain.wav") == "plain"


def test_the_flat_fsdd_layout(tmp_path):
    wav(tmp_path / "7_jackson_12.wav")
    wav(tmp_path / "3_theo_0.wav")
    clips = read_label_folder(str(tmp_path))
    assert [(c.target, c.speaker) for c in clips] == [("3", "theo"), ("7", "jackson")]
    wav(tmp_path / "odd.wav")
    with pytest.raises(DataError, match="odd.wav: a WAV file directly in the data folder must be named"):
        read_label_folder(str(tmp_path))


def test_a_folder_without_wavs_is_named(tmp_path):
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=f"{tmp_path}: no .wav files found"):
        read_label_folder(str(tmp_path))


def test_a_folder_of_split_folders_says_which_to_give(tmp_path):
    wav(tmp_path / "train" / "3" / "v_0.wav")
    wav(tmp_path / "test" / "3" / "w_0.wav")
    with pytest.raises(DataError, match=r"test, train hold label folders: give --data .*/train --valid_data"):
        read_label_folder(str(tmp_path))


def test_speech_commands_lists_pick_valid_and_test(tmp_path):
    for name in ("yes/a_nohash_0.wav", "yes/b_nohash_0.wav", "no/c_nohash_0.wav", "no/a_nohash_1.wav"):
        wav(tmp_path / name)
    (tmp_path / "validation_list.txt").write_text("yes/b_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("no/c_nohash_0.wav\n")
    parts = split_lists(str(tmp_path), read_label_folder(str(tmp_path)))
    rel = {k: sorted(c.path[len(str(tmp_path)) + 1 :] for c in v) for k, v in parts.items()}
    assert rel == {"train": ["no/a_nohash_1.wav", "yes/a_nohash_0.wav"], "valid": ["yes/b_nohash_0.wav"],
                   "test": ["no/c_nohash_0.wav"]}


def test_transcript_csv_resolves_paths_and_names_a_missing_file(tmp_path):
    wav(tmp_path / "audio" / "a_0.wav")
    csv = tmp_path / "t.csv"
    csv.write_text("file,transcript,speaker\naudio/a_0.wav,Hello there,alice\n")
    (clip,) = read_transcripts(str(csv))
    assert (clip.target, clip.speaker, clip.line) == ("Hello there", "alice", 2)
    csv.write_text("file,transcript\naudio/a_0.wav,hi\naudio/gone.wav,bye\n")
    with pytest.raises(DataError, match=r"t.csv:3: the audio file 'audio/gone.wav' does not exist"):
        read_transcripts(str(csv))
    csv.write_text("path,text\naudio/a_0.wav,hi\n")
    with pytest.raises(DataError, match=r"t.csv:1: no column 'file' in the header"):
        read_transcripts(str(csv))


def test_split_by_speaker_never_shares_a_speaker(tmp_path):
    from rnnlab.data.speech_data import Clip

    clips = [Clip(f"{s}_{i}.wav", str(i % 3), s) for s in "abcdefghij" for i in range(4)]
    kept, held = split_by_speaker(clips, 0.2, seed=3)
    assert {c.speaker for c in kept}.isdisjoint({c.speaker for c in held})
    assert len(held) >= 8 and len(kept) + len(held) == len(clips)
    assert split_by_speaker(clips, 0.2, seed=3) == (kept, held)  # seeded
    assert split_by_speaker(clips, 0.0, seed=3) == (clips, [])

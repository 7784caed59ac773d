"""WAV reading (every PCM width, stereo to mono) and resampling, and the errors for files that are not WAVs."""
import wave

import numpy as np
import pytest

from rnnlab.data.audio import load_audio, read_wav, resample, write_wav
from rnnlab.data.errors import DataError


@pytest.mark.parametrize("width,tolerance", [(1, 1 / 128), (2, 1 / 32768), (3, 2**-23), (4, 2**-31)])
@pytest.mark.parametrize("channels", [1, 2])
def test_every_pcm_width_reads_back_within_one_step(tmp_path, width, tolerance, channels):
    x = 0.9 * np.sin(np.linspace(0, 20, 500))
    path = write_wav(tmp_path / "a.wav", x, 8000, sample_width=width, channels=channels)
    y, rate = read_wav(path)
    assert rate == 8000 and y.dtype == np.float32 and y.shape == (500,)
    np.testing.assert_allclose(y, x, atol=tolerance + 1e-7)


def test_known_16_bit_values_and_stereo_channels_are_averaged(tmp_path):
    path = tmp_path / "s.wav"
    frames = np.array([[16384, -16384], [32767, 32767], [-32768, 0]], dtype="<i2")  # (N, 2) left, right
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(frames.tobytes())
    y, _ = read_wav(path)
    np.testing.assert_allclose(y, [0.0, 32767 / 32768, -0.5])


def test_resampling_keeps_a_tone_and_scales_the_length():
    rate, new = 22050, 16000
    t = np.arange(rate) / rate
    y = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), rate, new)
    assert len(y) == new
    expected = np.sin(2 * np.pi * 440 * np.arange(new) / new)
    np.testing.assert_allclose(y[500:-500], expected[500:-500], atol=2e-3)  # edges see the filter's zero padding


def test_load_audio_resamples_or_names_both_rates(tmp_path):
    path = write_wav(tmp_path / "a.wav", np.zeros(800) + 0.1, 8000)
    assert len(load_audio(path, 16000)) == 1600
    with pytest.raises(DataError, match=r"a\.wav: sample rate 8000 Hz, but the model reads 16000 Hz"):
        load_audio(path, 16000, resample_audio=False)


def test_bad_files_are_named_with_their_problem(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.wav: the WAV file is empty"):
        read_wav(empty)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not a RIFF file at all" * 3)
    with pytest.raises(DataError, match="junk.wav: not a readable PCM WAV file"):
        read_wav(junk)
    silent = write_wav(tmp_path / "none.wav", np.zeros(0), 16000)
    with pytest.raises(DataError, match="none.wav: the WAV file holds no samples"):
        read_wav(silent)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_wav(tmp_path / "missing.wav")

"""WAV files in, float samples out: reading with the standard library's ``wave`` module and numpy, resampling.

:func:`read_wav` reads PCM WAV files of 8 bits (unsigned), 16, 24 or 32 bits (signed), any number of channels,
and returns mono float32 samples in [-1, 1) with their sample rate; several channels are averaged into one.
Anything else (a compressed or float WAV, a truncated header, an empty file, no samples) is a
:class:`~rnnlab.data.errors.DataError` naming the file and the problem.

:func:`resample` converts a sample rate with a polyphase windowed-sinc filter (``scipy.signal.resample_poly``,
a Kaiser window with β = 5, the filter scipy designs for the ratio up/down after reducing it by their
greatest common divisor). :func:`load_audio` reads and, when asked, resamples; with ``resample=False`` a file
at another rate is an error that says which rate it has and which the model needs.
"""
from __future__ import annotations

import math
import os
import wave
from pathlib import Path
from typing import Union

import numpy as np

from .errors import DataError

PathLike = Union[str, os.PathLike]


def _pcm_to_float(raw: bytes, sample_width: int, channels: int) -> np.ndarray:
    """Interleaved little-endian PCM bytes -> (N, channels) float32 in [-1, 1)."""
    if sample_width == 1:  # 8-bit WAV is unsigned, centred on 128
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif sample_width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif sample_width == 3:  # 24-bit: three bytes per sample, sign-extended into int32
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif sample_width == 4:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    else:
        raise ValueError(f"unsupported sample width {sample_width}")
    return x.reshape(-1, channels)


def read_wav(path: PathLike) -> tuple[np.ndarray, int]:
    """(samples (N,) float32 mono in [-1, 1), sample rate in Hz) of a PCM WAV file; channels are averaged."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"WAV file not found: {path}")
    if not path.is_file():
        raise DataError(path, "expected a WAV file, got a folder or a special file")
    if path.stat().st_size == 0:
        raise DataError(path, "the WAV file is empty (0 bytes)")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as e:
        raise DataError(path, f"not a readable PCM WAV file ({e}); convert it, e.g. "
                              "'sox IN -b 16 -c 1 OUT.wav' or 'ffmpeg -i IN -acodec pcm_s16le OUT.wav'") from None
    if width not in (1, 2, 3, 4):
        raise DataError(path, f"unsupported sample width of {8 * width} bits (8, 16, 24 or 32-bit PCM are read)")
    if rate <= 0 or channels <= 0:
        raise DataError(path, f"bad WAV header: {channels} channels at {rate} Hz")
    usable = len(raw) - len(raw) % (width * channels)  # a truncated last frame is dropped
    if usable == 0:
        raise DataError(path, "the WAV file holds no samples (an empty recording)")
    x = _pcm_to_float(raw[:usable], width, channels)  # (N, C)
    return (x.mean(axis=1) if channels > 1 else x[:, 0]).astype(np.float32), rate


def resample(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """``x`` (N,) at ``orig_rate`` Hz -> about N·new/orig samples at ``new_rate`` Hz (polyphase windowed sinc)."""
    if orig_rate == new_rate:
        return x
    try:
        from scipy.signal import resample_poly
    except ImportError:
        raise ImportError("resampling needs scipy: pip install scipy (or give WAVs at the model's rate)") from None
    g = math.gcd(int(orig_rate), int(new_rate))
    return resample_poly(x, int(new_rate) // g, int(orig_rate) // g).astype(np.float32)


def load_audio(path: PathLike, sample_rate: int, *, resample_audio: bool = True) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate`` Hz: resampled when the file has another rate, or with
    ``resample_audio=False`` a DataError naming both rates."""
    x, rate = read_wav(path)
    return to_rate(x, rate, sample_rate, path=path, resample_audio=resample_audio)


def to_rate(x: np.ndarray, rate: int, sample_rate: int, *, path: PathLike, resample_audio: bool = True) -> np.ndarray:
    """Samples ``x`` read from ``path`` at ``rate`` Hz, brought to ``sample_rate`` Hz (or the DataError of
    :func:`load_audio` when ``resample_audio`` is off and the rates differ)."""
    if rate == sample_rate:
        return x
    if not resample_audio:
        raise DataError(path, f"sample rate {rate} Hz, but the model reads {sample_rate} Hz; resample the file "
                              f"(sox IN -r {sample_rate} OUT.wav) or turn resampling on (--features.resample true)")
    return resample(x, rate, sample_rate)


def write_wav(path: PathLike, x: np.ndarray, sample_rate: int, *, sample_width: int = 2, channels: int = 1) -> Path:
    """Write mono ``x`` (N,) in [-1, 1] as PCM (``channels`` identical copies); for tests and generated data."""
    path = Path(path)
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0 - 1e-9)
    if sample_width == 1:
        data = np.round(x * 128.0 + 128.0).clip(0, 255).astype(np.uint8).tobytes()
    elif sample_width == 2:
        data = np.round(x * 32768.0).astype("<i2").tobytes()
    elif sample_width == 3:
        v = np.round(x * (1 << 23)).astype(np.int64) & 0xFFFFFF
        data = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    elif sample_width == 4:
        data = np.round(x * float(1 << 31)).astype("<i4").tobytes()
    else:
        raise ValueError(f"sample_width must be 1, 2, 3 or 4 bytes, got {sample_width}")
    if channels > 1:
        frame = np.frombuffer(data, dtype=np.uint8).reshape(-1, sample_width)
        data = np.repeat(frame, channels, axis=0).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sample_width)
        w.setframerate(sample_rate)
        w.writeframes(data)
    return path

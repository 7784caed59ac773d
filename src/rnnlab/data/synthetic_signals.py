"""Generated multivariate signals whose class is a temporal pattern: the embedded data of ``seqclass``.

Six classes in three time-reversed pairs, on three channels, each sequence 48-96 steps long:

    a_then_b / b_then_a       a bump on channel 0 and a bump on channel 1, in this order or the other
    chirp_up / chirp_down     a sine on channel 2 whose frequency rises / falls over the sequence
    slow_rise / slow_fall     a sawtooth on channels 0 and 1 (opposite signs): slow rise and sudden drop, or
                              sudden rise and slow fall

Within a pair, one class is the other read backwards, so both have the same distribution of single frames:
only the order of the frames tells them apart, and a model that pools frames without order (a bag of frames)
can do no better than 50%. Event times, widths, amplitudes, frequencies, offsets and lengths are drawn at
random, with Gaussian noise (σ = 0.25) and a slow random drift on every channel as distractors.
"""
from __future__ import annotations

import numpy as np

CLASSES = ("a_then_b", "b_then_a", "chirp_up", "chirp_down", "slow_rise", "slow_fall")
CHANNELS = 3


def _bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


def _pattern(kind: int, T: int, rng: np.random.Generator) -> np.ndarray:
    """The forward member of pair ``kind`` (0, 1, 2): (T, 3)."""
    t = np.arange(T, dtype=np.float64)
    x = np.zeros((T, CHANNELS))
    amp = rng.uniform(0.7, 1.5)
    if kind == 0:  # bump on channel 0, then on channel 1
        first = rng.uniform(0.1, 0.4) * T
        second = first + rng.uniform(0.25, 0.5) * T
        width = rng.uniform(0.03, 0.07) * T
        x[:, 0] = amp * _bump(t, first, width)
        x[:, 1] = amp * _bump(t, second, width)
    elif kind == 1:  # a rising chirp: phase φ(t) = 2π (f0 t + (f1 - f0) t² / 2T)
        f0, f1 = rng.uniform(0.02, 0.05), rng.uniform(0.15, 0.25)
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * T)) + rng.uniform(0, 2 * np.pi)
        x[:, 2] = amp * np.sin(phase)
    else:  # a sawtooth with slow rises and sudden drops
        period = rng.uniform(0.25, 0.45) * T
        saw = ((t + rng.uniform(0, period)) % period) / period - 0.5
        x[:, 0], x[:, 1] = amp * saw, -amp * saw
    return x


def synthetic_signals(n: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """``n`` sequences (T_i, 3) float32 with T_i in [48, 96], and their class names (balanced: the classes in turn)."""
    rng = np.random.default_rng(seed)
    sequences, labels = [], []
    for i in range(n):
        c = i % len(CLASSES)
        T = int(rng.integers(48, 97))
        x = _pattern(c // 2, T, rng)
        if c % 2:
            x = x[::-1]  # the reversed member of the pair
        t = np.linspace(0, 1, T)[:, None]
        drift = rng.normal(0, 0.3, (1, CHANNELS)) * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t
                                                           + rng.uniform(0, 2 * np.pi, (1, CHANNELS)))
        x = x + drift + rng.normal(0, 0.5, (1, CHANNELS)) + rng.normal(0, 0.25, x.shape)
        sequences.append(x.astype(np.float32))
        labels.append(CLASSES[c])
    return sequences, labels


__all__ = ["CLASSES", "synthetic_signals"]

"""Log-mel features against references: the mel filter bank against librosa (when installed) and against its
formulas written out here in float64 loops; the whole log-mel against a brute-force float64 DFT; SpecAugment's
masks against their definition."""
import math

import numpy as np
import pytest
import torch

from rnnlab.nn.features import LogMel, hz_to_mel, mel_filter_bank, mel_to_hz, spec_augment


def import_librosa():
    """librosa, or a skip that says why: it is not a dependency (the brute-force references always run)."""
    return pytest.importorskip("librosa", reason="librosa is not installed (pip install librosa): the filter bank "
                               "and log-mel are still checked against the formulas and the DFT written out here")


def htk_mel(f):
    return 2595.0 * math.log10(1.0 + f / 700.0)


def htk_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def slaney_mel(f):  # Slaney's Auditory Toolbox: 3 mels per 200 Hz below 1 kHz, 27 steps per factor 6.4 above
    return f / (200.0 / 3.0) if f < 1000.0 else 15.0 + math.log(f / 1000.0) / (math.log(6.4) / 27.0)


def slaney_hz(m):
    return m * (200.0 / 3.0) if m < 15.0 else 1000.0 * math.exp((m - 15.0) * math.log(6.4) / 27.0)


def reference_filter_bank(sr, n_fft, n_mels, f_min, f_max, scale, norm):
    """Triangles written out bin by bin: filter m rises from corner m to m+1 and falls to m+2 (in Hz)."""
    to_mel, to_hz = (htk_mel, htk_hz) if scale == "htk" else (slaney_mel, slaney_hz)
    lo, hi = to_mel(f_min), to_mel(f_max)
    corners = [to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    W = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        left, centre, right = corners[m], corners[m + 1], corners[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if left < f <= centre:
                W[m, k] = (f - left) / (centre - left)
            elif centre < f < right:
                W[m, k] = (right - f) / (right - centre)
        if norm == "slaney":
            W[m] *= 2.0 / (right - left)
    return W


@pytest.mark.parametrize("scale", ["htk", "slaney"])
def test_mel_scale_round_trips_and_matches_the_written_formulas(scale):
    f = torch.tensor([0.0, 100.0, 999.0, 1000.0, 1500.0, 8000.0], dtype=torch.float64)
    to_mel = htk_mel if scale == "htk" else slaney_mel
    assert torch.allclose(hz_to_mel(f, scale), torch.tensor([to_mel(v) for v in f.tolist()], dtype=torch.float64))
    assert torch.allclose(mel_to_hz(hz_to_mel(f, scale), scale), f)


@pytest.mark.parametrize("scale,norm,n_fft,f_min,f_max", [("htk", "none", 400, 20.0, 8000.0),
                                                          ("slaney", "slaney", 512, 0.0, 7600.0),
                                                          ("htk", "slaney", 255, 50.0, 4000.0)])
def test_filter_bank_matches_the_triangles_written_out(scale, norm, n_fft, f_min, f_max):
    ours = mel_filter_bank(16000, n_fft, 24, f_min=f_min, f_max=f_max, scale=scale, norm=norm, dtype=torch.float64)
    ref = reference_filter_bank(16000, n_fft, 24, f_min, f_max, scale, norm)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-9, atol=1e-12)


@pytest.mark.slow  # importing librosa takes seconds
@pytest.mark.parametrize("htk,norm", [(True, None), (False, "slaney"), (True, "slaney"), (False, None)])
def test_filter_bank_matches_librosa(htk, norm):
    librosa = import_librosa()
    ref = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=40, fmin=30.0, fmax=9000.0, htk=htk, norm=norm,
                              dtype=np.float64)
    ours = mel_filter_bank(22050, 1024, 40, f_min=30.0, f_max=9000.0, scale="htk" if htk else "slaney",
                           norm="slaney" if norm else "none", dtype=torch.float64)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-7, atol=1e-12)


@pytest.mark.slow  # importing librosa takes seconds
def test_power_mel_spectrogram_matches_librosa():
    librosa = import_librosa()
    x = np.random.default_rng(0).standard_normal(4000)
    ref = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=400, hop_length=160, n_mels=20, fmin=20.0, htk=True,
                                         norm=None, center=True, pad_mode="reflect", power=2.0)  # (M, T)
    lm = LogMel(16000, n_fft=400, hop_length=160, n_mels=20, log_offset=0.0, normalize=False, dtype=torch.float64)
    ours = torch.exp(lm(torch.from_numpy(x)))  # (T, M)
    np.testing.assert_allclose(ours.numpy().T, ref, rtol=1e-6)


def brute_force_log_mel(x, sr, n_fft, hop, W, eps):
    """float64 DFT of each reflect-padded, Hann-windowed frame, |X|², filter bank, log(· + eps)."""
    pad = n_fft // 2
    xp = np.pad(x, pad, mode="reflect")
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    K = n_fft // 2 + 1
    dft = np.exp(-2j * np.pi * np.outer(np.arange(K), np.arange(n_fft)) / n_fft)  # (K, N)
    frames = [xp[t * hop : t * hop + n_fft] * w for t in range(1 + len(x) // hop)]
    P = np.abs(np.stack(frames) @ dft.T) ** 2  # (T, K)
    return np.log(P @ W.T + eps)


@pytest.mark.parametrize("normalize", [False, True])
def test_log_mel_matches_a_brute_force_dft(normalize):
    rng = np.random.default_rng(1)
    x = np.sin(2 * np.pi * 440 * np.arange(3000) / 8000) + 0.1 * rng.standard_normal(3000)
    lm = LogMel(8000, n_fft=256, hop_length=80, n_mels=16, f_min=0.0, log_offset=1e-6, normalize=normalize,
                dtype=torch.float64)
    ours = lm(torch.from_numpy(x)).numpy()
    W = reference_filter_bank(8000, 256, 16, 0.0, 4000.0, "htk", "none")
    ref = brute_force_log_mel(x, 8000, 256, 80, W, 1e-6)
    if normalize:
        ref = (ref - ref.mean(0)) / (ref.std(0) + 1e-5)
    assert ours.shape == ref.shape == (1 + 3000 // 80, 16)
    np.testing.assert_allclose(ours, ref, rtol=1e-7, atol=1e-7)


def test_log_mel_batches_and_short_clips():
    lm = LogMel(16000, n_fft=400, hop_length=160, n_mels=40)
    x = torch.randn(3, 1600)
    assert torch.allclose(lm(x)[1], lm(x[1]), atol=1e-5)
    short = lm(torch.randn(50))  # shorter than half a window: zero-padded to 201 samples, 1 + 201 // 160 frames
    assert short.shape == (2, 40) and torch.isfinite(short).all()


def test_spec_augment_masks_whole_channels_and_frames_within_the_length():
    x = torch.ones(4, 30, 20)
    lengths = torch.tensor([30, 20, 10, 5])
    y = spec_augment(x, lengths, freq_masks=2, freq_width=5, time_masks=2, time_width=8, max_time_fraction=0.3,
                     generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, torch.ones(4, 30, 20))  # not changed in place
    for b, n in enumerate(lengths.tolist()):
        masked_channels = (y[b, :n] == 0).all(0)  # (M,)
        frames = (y[b] == 0).all(1)  # (T,): masked frames
        assert int(masked_channels.sum()) <= 10
        assert int(frames[n:].sum()) == 0 or masked_channels.all()  # padding is never time-masked
        # each time mask covers at most min(T, p·length) frames: two masks at most twice that
        assert int(frames[:n].sum()) <= 2 * min(8, int(0.3 * n)) or masked_channels.all()
        # a cell is zero only when its whole channel or its whole frame is masked
        zero = y[b] == 0
        assert torch.equal(zero, masked_channels[None, :] | frames[:, None])


def test_spec_augment_off_is_the_identity_and_masks_do_happen():
    x = torch.randn(2, 40, 16)
    assert torch.equal(spec_augment(x, freq_masks=0, time_masks=0), x)
    y = spec_augment(x, freq_masks=3, freq_width=8, time_masks=3, time_width=10,
                     generator=torch.Generator().manual_seed(3))
    assert (y == 0).any()

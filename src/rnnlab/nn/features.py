"""Log-mel features and SpecAugment, in torch (``torch.stft`` + a mel filter bank built here).

Pipeline of :class:`LogMel`, for samples x at ``sample_rate`` Hz:

    X[t, k] = Σ_n w[n] x[t·hop + n − n_fft/2] e^{−2πi kn/n_fft}    (periodic Hann window w, reflect padding)
    P[t, k] = |X[t, k]|²                                           (power spectrum, k = 0 .. n_fft/2)
    M[t, m] = Σ_k P[t, k] W[m, k]                                  (W: the mel filter bank (n_mels, n_fft/2+1))
    L[t, m] = log(M[t, m] + ε)                                     (natural log, ε = log_offset)
    y[t, m] = (L[t, m] − mean_t L[·, m]) / (std_t L[·, m] + 1e-5)  (per-utterance normalisation, optional)

The filter bank is librosa's ``filters.mel`` (Slaney, 1998, Auditory Toolbox): ``n_mels`` triangles whose
corners are ``n_mels + 2`` points equally spaced on the mel scale between f_min and f_max, drawn in Hz over the
FFT bin frequencies. ``mel_scale``: "htk" (m = 2595 log10(1 + f/700), O'Shaughnessy, 1987) or "slaney"
(linear below 1 kHz, logarithmic above: librosa's default). ``norm="slaney"`` scales each triangle to unit
area (2 / (f_{m+2} − f_m)); None leaves peaks of 1 (HTK's, torchaudio's default).

Deviations: the log is natural with an additive ε instead of librosa's 10·log10 with a floor and a top_db cut,
and normalisation per utterance (cepstral mean and variance normalisation) replaces a global one, so a clip's
loudness and channel do not matter.

:func:`spec_augment`: frequency and time masking of SpecAugment (Park et al., 2019, §2); time warping is left
out (the paper found it the least useful). Masked cells are set to 0, the mean of normalised features.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from torch import Tensor, nn

MelScale = Literal["htk", "slaney"]
MelNorm = Literal["slaney", "none"]

# Slaney's mel scale: linear (f / (200/3)) up to 1 kHz, then logarithmic with 27 steps per factor of 6.4
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(f: Tensor, scale: MelScale = "htk") -> Tensor:
    """Hz -> mel on the HTK or Slaney scale (elementwise)."""
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    linear = f / _F_SP
    log = _MIN_LOG_MEL + torch.log(torch.clamp(f, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(f >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(m: Tensor, scale: MelScale = "htk") -> Tensor:
    """mel -> Hz, the inverse of :func:`hz_to_mel`."""
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    linear = _F_SP * m
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (torch.clamp(m, min=_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(m >= _MIN_LOG_MEL, log, linear)


def mel_filter_bank(sample_rate: int, n_fft: int, n_mels: int, *, f_min: float = 0.0, f_max: Optional[float] = None,
                    scale: MelScale = "htk", norm: MelNorm = "none", dtype=torch.float32) -> Tensor:
    """W (n_mels, n_fft // 2 + 1): triangular filters on the mel scale (see the module docstring)."""
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"mel filter bank: need 0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2:g} Hz, "
                         f"got f_min={f_min:g}, f_max={f_max:g}")
    fft_freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # (K,): bin k's frequency
    lo, hi = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64), scale)
    corners = mel_to_hz(torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64), scale)  # (M+2,)
    widths = corners.diff()  # (M+1,)
    ramps = corners[:, None] - fft_freqs[None, :]  # (M+2, K)
    lower = -ramps[:-2] / widths[:-1, None]  # rising edge of filter m: (f - f_m) / (f_{m+1} - f_m)
    upper = ramps[2:] / widths[1:, None]  # falling edge: (f_{m+2} - f) / (f_{m+2} - f_{m+1})
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)  # (M, K)
    if norm == "slaney":
        weights = weights * (2.0 / (corners[2:] - corners[:-2]))[:, None]
    return weights.to(dtype)


class LogMel(nn.Module):
    """Samples (N,) or (B, N) -> log-mel features (T, M) or (B, T, M), T = 1 + N // hop_length (see the module
    docstring). The filter bank and window are buffers that are not saved: the config rebuilds them."""

    def __init__(self, sample_rate: int = 16000, *, n_fft: int = 400, hop_length: int = 160, n_mels: int = 40,
                 f_min: float = 20.0, f_max: Optional[float] = None, scale: MelScale = "htk",
                 norm: MelNorm = "none", log_offset: float = 1e-6, normalize: bool = True,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.log_offset, self.normalize = n_fft, hop_length, log_offset, normalize
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True, dtype=dtype), persistent=False)
        fb = mel_filter_bank(sample_rate, n_fft, n_mels, f_min=f_min, f_max=f_max, scale=scale, norm=norm, dtype=dtype)
        self.register_buffer("filters", fb, persistent=False)  # (M, K)

    def power_spectrum(self, x: Tensor) -> Tensor:
        """(B, N) -> |STFT|² (B, T, K)."""
        if x.shape[-1] < self.n_fft // 2 + 1:  # reflect padding needs more samples than half a window
            x = torch.nn.functional.pad(x, (0, self.n_fft // 2 + 1 - x.shape[-1]))
        spec = torch.stft(x, self.n_fft, self.hop_length, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)  # (B, K, T)
        return spec.abs().pow(2).transpose(1, 2)  # (B, T, K)

    def forward(self, x: Tensor) -> Tensor:
        single = x.dim() == 1
        x = x[None] if single else x  # (B, N)
        mel = self.power_spectrum(x) @ self.filters.T  # (B, T, M)
        y = torch.log(mel + self.log_offset)
        if self.normalize:
            y = (y - y.mean(dim=1, keepdim=True)) / (y.std(dim=1, keepdim=True, unbiased=False) + 1e-5)
        return y[0] if single else y


def spec_augment(x: Tensor, lengths: Optional[Tensor] = None, *, freq_masks: int = 2, freq_width: int = 8,
                 time_masks: int = 2, time_width: int = 10, max_time_fraction: float = 0.2,
                 generator: Optional[torch.Generator] = None) -> Tensor:
    """SpecAugment's masks on features x (B, T, M); returns a masked copy (x is not changed).

    Per example (Park et al., 2019, §2): ``freq_masks`` times, f ~ U{0..F} channels [f0, f0 + f) are zeroed,
    f0 ~ U{0..M − f}; ``time_masks`` times, t ~ U{0..T'} frames [t0, t0 + t) with T' = min(time_width,
    ⌊max_time_fraction · length⌋) (the paper's upper bound p·τ), t0 ~ U{0..length − t}. Padding is never masked
    into: time masks stay inside each row's length.
    """
    B, T, M = x.shape
    n = (torch.full((B,), T, dtype=torch.long) if lengths is None else lengths.cpu().long())[:, None]  # (B, 1)

    def draw(high: Tensor) -> Tensor:  # elementwise uniform on {0, ..., high}
        u = torch.rand(high.shape, generator=generator, dtype=torch.float64)
        return torch.minimum((u * (high + 1)).floor().long(), high)

    # all masks of the batch at once: a few tensor ops instead of a Python loop of small ones
    f = draw(torch.full((B, freq_masks), min(freq_width, M), dtype=torch.long))  # (B, F): widths
    f0 = draw(M - f)  # (B, F): first channels
    channels = torch.arange(M)[None, None, :]  # (1, 1, M)
    masked_channels = ((channels >= f0[..., None]) & (channels < (f0 + f)[..., None])).any(1)  # (B, M)
    widest = torch.clamp(torch.floor(max_time_fraction * n.double()).long(), max=time_width)  # (B, 1)
    t = draw(widest.expand(B, time_masks))  # (B, K): widths
    t0 = draw(n - t)  # (B, K): first frames, inside each row's length
    frames = torch.arange(T)[None, None, :]  # (1, 1, T)
    masked_frames = ((frames >= t0[..., None]) & (frames < (t0 + t)[..., None])).any(1)  # (B, T)
    keep = ~(masked_frames[:, :, None] | masked_channels[:, None, :])  # (B, T, M)
    return x * keep.to(x.device, x.dtype)

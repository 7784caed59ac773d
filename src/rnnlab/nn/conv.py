"""Convolutional baselines: a temporal CNN encoder over sequences and a small 2-D CNN for images and frames.

:class:`TemporalCNNEncoder` follows the temporal convolutional network of Bai, Kolter and Koltun (2018),
"An Empirical Evaluation of Generic Convolutional and Recurrent Networks for Sequence Modeling"
(arXiv:1803.01271), §3: dilated 1-D convolutions whose dilation doubles with depth (§3.2), causal when a
position may see only the past (§3.1), and residual connections (§3.3). Deviations: each residual block is
one convolution (the paper's has two, with weight norm), and the residual is the identity, added only where
the shapes match (every layer but the first when I ≠ H); the paper uses a 1×1 convolution otherwise.

:class:`ConvNet2d` is the usual small image CNN (LeCun et al., 1998, in today's form: ReLU and max pooling),
used as the feature extractor of image captioning and of action recognition from frames.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.nn._checks import check_dtype_match, check_input, check_lengths, check_tensor
from rnnlab.nn.masking import last_real, lengths_to_mask, to_device

__all__ = ["TemporalCNNEncoder", "ConvNet2d"]


def _positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_dropout(dropout) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")


class TemporalCNNEncoder(nn.Module):
    """Dilated 1-D convolutions over time with ReLU and residual connections (Bai et al., 2018, §3).

    Layer l = 0 … L-1, with kernel width k and dilation d_l = dilation_base**l:

        z^(l) = ReLU(Conv1d_{k, d_l}(m ⊙ h^(l-1)))        h^(-1) = x
        h^(l) = z^(l) + h^(l-1)   when both are (B, T, H), else h^(l) = z^(l)

    where m zeroes every step past a row's length, so padding never reaches a real position. With
    ``causal=True`` the convolution is padded on the left only, by (k-1)·d_l steps, and position t sees
    x_{t-R+1} … x_t, R = ``receptive_field`` = 1 + (k-1)·Σ_l d_l. Otherwise the padding is split between
    both sides ('same', the extra step on the right for an even k) and t sees R steps around itself.

    Args:
        input_size: I. hidden_size: H, the channels of every layer (also ``output_size``).
        num_layers: L. kernel_size: k. dilation_base: ≥ 1; 1 means no dilation.
        causal: left padding only. dropout: on the input of every layer but the first (training only).

    Shapes: x (B, T, I), lengths (B,) -> outputs (B, T, H), zero past each length, and summary (B, H):
    the output at the last real step if causal (the only one that has seen the whole row), else the
    maximum over the real steps (max-over-time pooling, Collobert et al., 2011).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 2,
        kernel_size: int = 3,
        dilation_base: int = 2,
        causal: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers),
            ("kernel_size", kernel_size), ("dilation_base", dilation_base),
        ):
            _positive_int(name, value)
        _check_dropout(dropout)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.dilation_base = dilation_base
        self.causal = causal
        self.dilations = [dilation_base**l for l in range(num_layers)]
        self.convs = nn.ModuleList(
            nn.Conv1d(input_size if l == 0 else hidden_size, hidden_size, kernel_size, dilation=d)
            for l, d in enumerate(self.dilations)
        )
        self.dropout = nn.Dropout(dropout)

    @property
    def receptive_field(self) -> int:
        """R = 1 + (k-1)·Σ_l d_l: how many input steps one output step depends on."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def _pad(self, dilation: int) -> tuple[int, int]:
        total = (self.kernel_size - 1) * dilation
        if self.causal:
            return total, 0
        return total // 2, total - total // 2

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, I), lengths: (B,) ints in [1, T] or None -> (outputs (B, T, H), summary (B, H))."""
        check_input(x, self.input_size, ndim=3)
        check_dtype_match("x", x, self.convs[0].weight)
        B, T, _ = x.shape
        if T == 0:
            raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")
        lengths = check_lengths(lengths, B, T)
        if lengths is None:
            valid = None
        else:
            lengths = to_device(lengths, x.device)
            valid = lengths_to_mask(lengths, T).unsqueeze(1)  # (B, 1, T)

        h = x.transpose(1, 2)  # (B, I, T): Conv1d wants channels before time
        for l, (conv, d) in enumerate(zip(self.convs, self.dilations)):
            if valid is not None:
                # where, not a product, so that inf or nan in the padding cannot turn into nan
                h = torch.where(valid, h, h.new_zeros(()))  # (B, C, T)
            inp = self.dropout(h) if l else h
            z = F.relu(conv(F.pad(inp, self._pad(d))))  # (B, H, T)
            h = z + h if z.shape == h.shape else z  # residual (§3.3) where the shapes match
        outputs = h.transpose(1, 2)  # (B, T, H)

        if valid is None:
            summary = outputs[:, -1] if self.causal else outputs.amax(dim=1)  # (B, H)
            return outputs, summary
        valid = valid.transpose(1, 2)  # (B, T, 1)
        if self.causal:
            summary = last_real(outputs, lengths)  # (B, H)
        else:
            summary = outputs.masked_fill(~valid, float("-inf")).amax(dim=1)  # (B, H)
        return torch.where(valid, outputs, outputs.new_zeros(())), summary


class ConvNet2d(nn.Module):
    """A small 2-D CNN: one [Conv2d → ReLU → MaxPool2d(2)] block per entry of ``channels``, then global
    average pooling and a Linear to ``output_size``.

        a^(0) = images,  a^(l) = MaxPool_2(ReLU(Conv2d_k(a^(l-1)))),  y = W · mean_{h,w} a^(L) + b

    The convolutions keep the spatial size ('same' padding for an odd k); the pooling halves it, rounding up
    (ceil mode), so that images of any size ≥ 1×1 pass every block. Global average pooling makes the
    output independent of the image size.

    Args:
        in_channels: C (3 for RGB). output_size: the feature size E.
        channels: the output channels of each block. kernel_size: k.
        dropout: on the pooled features before the Linear (training only).

    Shapes: ``forward(images (B, C, H, W)) -> (B, E)``; ``encode_frames(video (B, T, C, H, W)) -> (B, T, E)``;
    ``encode(images) -> (positions (B, S, C_L), summary (B, E))``, the last feature map before pooling with its
    S = H'·W' positions in row-major order (what attention over image regions reads, Xu et al., 2015), and the
    same summary as ``forward``.
    """

    def __init__(
        self,
        in_channels: int,
        output_size: int,
        *,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _positive_int("in_channels", in_channels)
        _positive_int("output_size", output_size)
        _positive_int("kernel_size", kernel_size)
        channels = tuple(channels)
        if not channels or not all(isinstance(c, int) and c >= 1 for c in channels):
            raise ValueError(f"channels must be a non-empty sequence of positive integers, got {channels!r}")
        _check_dropout(dropout)
        self.in_channels = in_channels
        self.output_size = output_size
        self.channels = channels
        blocks = []
        for c_in, c_out in zip((in_channels,) + channels[:-1], channels):
            blocks += [
                nn.Conv2d(c_in, c_out, kernel_size, padding="same"),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels[-1], output_size)

    def forward(self, images: Tensor) -> Tensor:
        """images: (B, C, H, W) -> (B, output_size)."""
        self._check(images, "images", "(B, C, H, W)")
        a = self.features(images)  # (B, C_L, H', W')
        pooled = a.mean(dim=(2, 3))  # (B, C_L): global average pooling
        return self.head(self.dropout(pooled))  # (B, E)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images: (B, C, H, W) -> (positions (B, H'·W', C_L), summary (B, output_size)); position s = i·W' + j."""
        self._check(images, "images", "(B, C, H, W)")
        a = self.features(images)  # (B, C_L, H', W')
        summary = self.head(self.dropout(a.mean(dim=(2, 3))))  # (B, E), as forward
        return a.flatten(2).transpose(1, 2), summary  # (B, H'·W', C_L)

    def encode_frames(self, video: Tensor) -> Tensor:
        """video: (B, T, C, H, W) -> (B, T, output_size): every frame on its own, T folded into the batch."""
        self._check(video, "video", "(B, T, C, H, W)")
        B, T = video.shape[:2]
        features = self(video.reshape(B * T, *video.shape[2:]))  # (B·T, E)
        return features.reshape(B, T, self.output_size)  # (B, T, E)

    def _check(self, t: Tensor, name: str, shape: str) -> None:
        check_tensor(name, t)
        ndim = shape.count(",") + 1
        if t.dim() != ndim:
            raise ValueError(f"{name} must have shape {shape} with C={self.in_channels}, got shape {tuple(t.shape)}")
        if t.shape[-3] != self.in_channels:
            raise ValueError(
                f"{name} must have C={self.in_channels} channels in dimension {ndim - 3} of {shape}, "
                f"got shape {tuple(t.shape)}"
            )
        check_dtype_match(name, t, self.head.weight)

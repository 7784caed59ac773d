"""Classifiers of numeric sequences (sensor series, speech features) and of frame sequences (video clips).

:class:`SequenceClassifier` is a many-to-one model over feature vectors that carries its own input
normalisation, so a bundle scores raw data exactly as training saw it:

    z_t = (x_t - μ) / σ                  per feature, μ and σ fitted on the training data (buffers, saved)
    u_t = ReLU(W_p z_t + b_p)            optional input projection (projection_size > 0), else u_t = z_t
    (h_1..h_T, s) = encoder(u, lengths)  any encoder by EncoderConfig
    p = pool(h, s);  logits = W_o dropout(p) + b_o          (the pooling and head are ManyToOne's)

:class:`FrameClassifier` reads clips of images: a :class:`~rnnlab.nn.conv.ConvNet2d` turns each frame into
a feature vector, and a :class:`SequenceClassifier` over those vectors (``temporal="encoder"``) classifies
the clip; ``temporal="average"`` is the frame-averaging baseline (Karpathy et al., 2014, the "single frame"
model pooled over time): the mean of the frame features, then a linear layer. It cannot see the order of
the frames, so it cannot tell motions apart whose frames look alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.nn.conv import ConvNet2d
from rnnlab.nn.masking import lengths_to_mask, masked_mean

from .base import Output, batch_lengths, check_choice, require
from .encoders import EncoderConfig
from .many_to_one import ManyToOne, ManyToOneConfig, Pooling

Temporal = Literal["encoder", "average"]


def _check_positive(name: str, value, *, zero: bool = False) -> None:
    low = 0 if zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class SequenceClassifierConfig:
    """A classifier of (B, T, I) feature sequences with per-feature normalisation inside."""

    input_size: int
    """I: features per time step."""
    num_classes: int
    """C: the classes."""
    projection_size: int = 0
    """P: a Linear + ReLU from I to P features before the encoder; 0 = none (the encoder reads the I features)."""
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(kind="gru", hidden_size=128))
    """The sequence encoder (any kind)."""
    pooling: Pooling = "last"
    """last (the encoder's summary) | mean | max | attention, over the real steps."""
    dropout: float = 0.0
    """Dropout on the pooled vector."""

    def __post_init__(self) -> None:
        _check_positive("input_size", self.input_size)
        _check_positive("num_classes", self.num_classes)
        _check_positive("projection_size", self.projection_size, zero=True)
        check_choice("pooling", self.pooling, Pooling)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")


class SequenceClassifier(nn.Module):
    """x (B, T, I) raw features -> logits (B, C). Batch keys: ``x``, ``lengths`` (optional), ``y`` (B,) ids.

    ``feature_mean`` and ``feature_std`` (I,) are buffers saved with the weights; they start at 0 and 1 (no
    normalisation) and :meth:`set_normalization` sets them from the training data.
    """

    def __init__(self, config: SequenceClassifierConfig) -> None:
        super().__init__()
        self.config = config
        I, P = config.input_size, config.projection_size
        self.register_buffer("feature_mean", torch.zeros(I))
        self.register_buffer("feature_std", torch.ones(I))
        self.projection = nn.Linear(I, P) if P else None
        self.body = ManyToOne(ManyToOneConfig(output_size=config.num_classes, input_size=P or I,
                                              encoder=config.encoder, pooling=config.pooling,
                                              dropout=config.dropout, task="classification"))

    @torch.no_grad()
    def set_normalization(self, mean: Tensor, std: Tensor) -> None:
        """Use μ = ``mean`` and σ = ``std`` (I,) from now on (σ below 1e-8, a constant feature, counts as 1)."""
        I = self.config.input_size
        if tuple(mean.shape) != (I,) or tuple(std.shape) != (I,):
            raise ValueError(f"mean and std must have shape ({I},), got {tuple(mean.shape)} and {tuple(std.shape)}")
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def normalize(self, x: Tensor, lengths: Optional[Tensor]) -> Tensor:
        """(x - μ) / σ, with the padding past each length kept at zero. x (B, T, I) -> (B, T, I)."""
        z = (x - self.feature_mean) / self.feature_std
        mask = lengths_to_mask(lengths, x.shape[1], device=x.device)
        return z if mask is None else z * mask.unsqueeze(-1).to(z.dtype)

    def forward(self, batch: dict) -> Output:
        x = require(batch, "x", "feature sequences (B, T, I)", "SequenceClassifier")
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 3 \
                or x.shape[-1] != self.config.input_size:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a float tensor (B, T, {self.config.input_size}), got {shape}")
        lengths = batch_lengths(batch, x)
        u = self.normalize(x, lengths)  # (B, T, I)
        if self.projection is not None:
            u = F.relu(self.projection(u))  # (B, T, P)
        return self.body({"x": u, "lengths": lengths})  # logits (B, C)

    def loss(self, batch: dict) -> Tensor:
        y = require(batch, "y", "class ids (B,)", "SequenceClassifier.loss")
        return F.cross_entropy(self(batch).logits, y)

    @torch.no_grad()
    def predict(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """Class ids (B,)."""
        return self({"x": x, "lengths": lengths}).logits.argmax(-1)


def _coordinates(video: Tensor) -> Tensor:
    """(B, T, C, H, W) -> (B, T, 2, H, W): x and y of each pixel, from -1 to 1."""
    B, T, _, H, W = video.shape
    ys = torch.linspace(-1, 1, H, device=video.device, dtype=video.dtype)
    xs = torch.linspace(-1, 1, W, device=video.device, dtype=video.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # (2, H, W)
    return grid.expand(B, T, 2, H, W)


@dataclass(frozen=True)
class FrameClassifierConfig:
    """A classifier of clips (B, T, C, H, W): a CNN per frame, then a sequence model over the frame features."""

    in_channels: int
    """C: channels per frame (1 grey, 3 RGB)."""
    num_classes: int
    """The classes."""
    frame_features: int = 64
    """E: the CNN's output per frame."""
    channels: tuple[int, ...] = (16, 32)
    """The CNN's channels per block (each block halves the frame's height and width)."""
    kernel_size: int = 3
    """The CNN's kernel size."""
    coordinates: bool = True
    """Give the CNN two more input channels holding each pixel's x and y in [-1, 1] (CoordConv, Liu et al.,
    2018): the CNN ends in a global average, which is blind to where a shape is; with the coordinates its
    features can say where, so the model can follow a shape that moves."""
    temporal: Temporal = "encoder"
    """encoder: a sequence encoder over the frame features | average: their mean (the frame-averaging baseline,
    blind to order)."""
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(kind="gru", hidden_size=64))
    """temporal=encoder: the encoder over frames."""
    pooling: Pooling = "last"
    """temporal=encoder: how the encoder's outputs become one vector."""
    dropout: float = 0.0
    """Dropout on the CNN features and on the pooled vector."""

    def __post_init__(self) -> None:
        _check_positive("in_channels", self.in_channels)
        _check_positive("num_classes", self.num_classes)
        _check_positive("frame_features", self.frame_features)
        check_choice("temporal", self.temporal, Temporal)
        check_choice("pooling", self.pooling, Pooling)
        if not self.channels or not all(isinstance(c, int) and c >= 1 for c in self.channels):
            raise ValueError(f"channels must be positive integers, got {self.channels!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")


class FrameClassifier(nn.Module):
    """video (B, T, C, H, W) -> logits (B, C_out). Batch keys: ``x`` (the clips, padded in time), ``lengths``
    (frames per clip, optional), ``y`` (B,) class ids.

    Pixels are normalised per channel with ``pixel_mean``/``pixel_std`` (C,) buffers, set from the training
    clips by :meth:`set_normalization`.
    """

    def __init__(self, config: FrameClassifierConfig) -> None:
        super().__init__()
        self.config = config
        C, E = config.in_channels, config.frame_features
        self.register_buffer("pixel_mean", torch.zeros(C))
        self.register_buffer("pixel_std", torch.ones(C))
        self.cnn = ConvNet2d(C + 2 * config.coordinates, E, channels=config.channels, kernel_size=config.kernel_size,
                             dropout=config.dropout)
        if config.temporal == "encoder":
            self.sequence = SequenceClassifier(SequenceClassifierConfig(
                input_size=E, num_classes=config.num_classes, encoder=config.encoder, pooling=config.pooling,
                dropout=config.dropout))
            self.head = None
        else:
            self.sequence = None
            self.head = nn.Linear(E, config.num_classes)

    @torch.no_grad()
    def set_normalization(self, mean: Tensor, std: Tensor) -> None:
        """Per-channel μ and σ (C,) of the training pixels."""
        C = self.config.in_channels
        if tuple(mean.shape) != (C,) or tuple(std.shape) != (C,):
            raise ValueError(f"mean and std must have shape ({C},), got {tuple(mean.shape)} and {tuple(std.shape)}")
        self.pixel_mean.copy_(mean)
        self.pixel_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def frame_features(self, video: Tensor) -> Tensor:
        """(B, T, C, H, W) -> (B, T, E): the CNN on every frame."""
        z = (video - self.pixel_mean.view(-1, 1, 1)) / self.pixel_std.view(-1, 1, 1)
        if self.config.coordinates:
            z = torch.cat([z, _coordinates(video)], dim=2)  # (B, T, C + 2, H, W)
        return F.relu(self.cnn.encode_frames(z))  # (B, T, E)

    def forward(self, batch: dict) -> Output:
        video = require(batch, "x", "clips (B, T, C, H, W)", "FrameClassifier")
        if not isinstance(video, Tensor) or video.dim() != 5 or video.shape[2] != self.config.in_channels:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise ValueError(f"x must be clips of shape (B, T, {self.config.in_channels}, H, W), got {shape}")
        lengths = batch_lengths(batch, video)
        features = self.frame_features(video)  # (B, T, E)
        if self.sequence is not None:
            return self.sequence({"x": features, "lengths": lengths})
        mask = lengths_to_mask(lengths, features.shape[1], device=features.device)
        return Output(self.head(masked_mean(features, mask)))  # (B, C_out)

    def loss(self, batch: dict) -> Tensor:
        y = require(batch, "y", "class ids (B,)", "FrameClassifier.loss")
        return F.cross_entropy(self(batch).logits, y)

    @torch.no_grad()
    def predict(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """Class ids (B,)."""
        return self({"x": x, "lengths": lengths}).logits.argmax(-1)

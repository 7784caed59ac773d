"""Action recognition from frames: a CNN per frame, a recurrent encoder over time (Donahue et al., 2015, LRCN).

``train(config)`` reads labelled clips (a folder per clip of PNG/JPEG frames, or ``.npy``/``.npz`` arrays
(T, H, W[, C]), under ``root/<label>/``; see :mod:`rnnlab.data.frames`) or generates the embedded set, holds
out a seeded validation split when no validation folder is given, fits a per-channel pixel normalisation on
the training clips, trains a :class:`~rnnlab.structures.FrameClassifier` (:class:`~rnnlab.nn.conv.ConvNet2d`
on each frame, with coordinate channels, then any encoder over the frame features, or, with
``--model.temporal average``, the frame-averaging baseline), and saves a bundle (weights with the
normalisation, ``config.json``, ``labels.json``, ``metrics.json``) in ``<run_dir>/bundle``, with the
confusion matrices beside it (``confusion.png``, ``confusion_test.png``).

Metrics: accuracy, macro-F1, per-class figures and the confusion matrix.
"""
from __future__ import annotations

import functools
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from rnnlab.data.errors import DataError
from rnnlab.data.frames import ClipOptions, Color, read_clip, read_clips
from rnnlab.data.synthetic_clips import synthetic_clips
from rnnlab.structures import EncoderConfig, FrameClassifier, FrameClassifierConfig
from rnnlab.structures.base import check_choice
from rnnlab.structures.many_to_one import Pooling
from rnnlab.structures.sequence_classifier import Temporal
from rnnlab.training import TrainerConfig
from rnnlab.training.checkpoint import from_dict

from . import _sequence_classifier as sc
from ._common import (
    check_data_unchanged,
    check_positive,
    check_run_dir,
    load_task_bundle,
    locked,
    save_task_bundle,
    split_off,
)

log = logging.getLogger(__name__)

TASK = "action"
DESCRIPTION = "action recognition from clips of frames (image folders or .npy/.npz arrays): a CNN per frame, an RNN"
EMBEDDED = "moving-shapes"
EMBEDDED_NAMES = (EMBEDDED,)
"""--data values, besides None, that name the embedded data set."""
EMBEDDED_DATA = ("generated 12-frame 32x32 clips of a moving shape, 6 classes by the motion (left, right, up, down, "
                 "rotate, grow) with random shapes, sizes, positions, distractor dots and noise: 1,200 training and "
                 "300 test clips")
EMBEDDED_SIZES = (1200, 300)
"""(training, test) clips of the embedded set."""


@dataclass(frozen=True)
class ActionModelConfig:
    """A CNN on every frame, then a sequence model over the frame features (or their average)."""

    frame_features: int = 64
    """E: the CNN's feature vector per frame."""
    channels: tuple[int, ...] = (16, 32)
    """The CNN's output channels per block (Conv 3x3, ReLU, MaxPool 2: each block halves height and width)."""
    kernel_size: int = 3
    """The CNN's kernel size."""
    coordinates: bool = True
    """Feed each pixel's x and y to the CNN as two more channels (CoordConv), so its pooled features say where
    things are and the encoder can follow a motion."""
    temporal: Temporal = "encoder"
    """encoder: a sequence encoder over the frame features | average: the frame-averaging baseline (the mean of
    the frame features, then a linear layer; blind to the order of the frames)."""
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(kind="gru", hidden_size=64))
    """The encoder over frames: lstm | gru | rnn | mingru | minlstm | cnn | transformer | window."""
    pooling: Pooling = "last"
    """last (the encoder's final state) | mean | max | attention, over the frames."""
    dropout: float = 0.1
    """Dropout on the frame features and on the pooled vector."""

    def __post_init__(self) -> None:
        check_choice("--model.temporal", self.temporal, Temporal)
        check_choice("--model.pooling", self.pooling, Pooling)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--model.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.channels or not all(isinstance(c, int) and c >= 1 for c in self.channels):
            raise ValueError(f"--model.channels must be positive integers, e.g. [16, 32], got {self.channels!r}")

    def build(self, in_channels: int, num_classes: int) -> FrameClassifierConfig:
        return FrameClassifierConfig(in_channels=in_channels, num_classes=num_classes,
                                     frame_features=self.frame_features, channels=tuple(self.channels),
                                     kernel_size=self.kernel_size, coordinates=self.coordinates,
                                     temporal=self.temporal, encoder=self.encoder, pooling=self.pooling,
                                     dropout=self.dropout)


def _default_trainer() -> TrainerConfig:
    # The embedded default: about two minutes on two CPU cores; early stopping keeps the best epoch.
    return TrainerConfig(optimizer="adamw", lr=2e-3, weight_decay=0.01, max_epochs=25, max_time=120.0,
                         clip_norm=1.0, eval_every=0, early_stopping_patience=4, log_every=20, run_dir="runs/action")


@dataclass(frozen=True)
class ActionConfig:
    """Train an action classifier on clips of frames and score it on validation and test clips."""

    data: Optional[str] = None
    """Training clips: a folder root/<label>/<clip>/ of frames (PNG/JPEG) or root/<label>/<clip>.npy|.npz arrays
    (T, H, W[, C]); None (or 'moving-shapes') = the embedded generated clips."""
    valid_data: Optional[str] = None
    """Validation clips in the same layout; None = a seeded valid_fraction of the training clips."""
    test_data: Optional[str] = None
    """Test clips, scored once at the end; None = none (the embedded set has its own)."""
    color: Color = "auto"
    """grey (1 channel) | rgb (3) | auto (rgb when the first clip has colour)."""
    frame_size: int = 0
    """Resize every frame to frame_size x frame_size (bilinear); 0 = keep the size (all clips must agree)."""
    max_frames: int = 0
    """Keep at most this many frames per clip, spread evenly over it; 0 = every frame."""
    valid_fraction: float = 0.1
    """Without valid_data: hold out this seeded random fraction of the training clips (0 = no validation)."""
    batch_size: int = 16
    """B: clips per batch."""
    model: ActionModelConfig = field(default_factory=ActionModelConfig)
    trainer: TrainerConfig = field(default_factory=_default_trainer)

    def __post_init__(self) -> None:
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"--valid_fraction must be in [0, 1), got {self.valid_fraction!r}")
        check_choice("--color", self.color, Color)
        check_positive(self, "batch_size")
        for name in ("frame_size", "max_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"--{name} must be 0 or a positive integer, got {value!r}")
        check_run_dir(self)

    @property
    def clip_options(self) -> ClipOptions:
        return ClipOptions(color=self.color, frame_size=self.frame_size, max_frames=self.max_frames)


Config = ActionConfig


def config_from_dict(data: dict) -> ActionConfig:
    """Rebuild an :class:`ActionConfig` from ``asdict(config)`` (as stored in a bundle's config.json)."""
    return from_dict(ActionConfig, data)


@dataclass(frozen=True)
class EvaluateOptions:
    """What ``rnnlab evaluate`` writes besides the metrics."""

    plot: Optional[str] = None
    """Write the confusion matrix as a PNG to this path."""
    batch_size: int = 16
    """Clips per batch while scoring."""


@dataclass(frozen=True)
class PredictOptions:
    """How ``rnnlab predict`` runs an action bundle; each input is a clip: a folder of frames or an .npy/.npz."""

    batch_size: int = 16
    """Clips per batch."""


# --- data --------------------------------------------------------------------------------------------------

Labelled = tuple[list[np.ndarray], list[str]]


def is_embedded(data: Optional[str]) -> bool:
    return data is None or data == EMBEDDED


@functools.lru_cache(maxsize=1)  # train, the fingerprint and evaluate all ask for it
def embedded_splits() -> tuple[Labelled, Labelled]:
    """The embedded set: (training, test) generated clips with fixed seeds."""
    return synthetic_clips(EMBEDDED_SIZES[0], seed=1), synthetic_clips(EMBEDDED_SIZES[1], seed=2)


def embedded_text(config: ActionConfig) -> str:
    """A digest of the embedded clips and labels, as the bundle fingerprints them."""
    return f"{EMBEDDED} {EMBEDDED_SIZES} {sc.labelled_digest(embedded_splits())}"


def _read(path: str, config: ActionConfig, color: Optional[str] = None) -> tuple[list[np.ndarray], list[str], str]:
    return read_clips(path, config.clip_options, color)


def load_splits(config: ActionConfig) -> tuple[Labelled, Labelled, Labelled, str]:
    """(train, valid, test, color) as ``config`` names them (valid from a seeded split when not given)."""
    test: Labelled = ([], [])
    if is_embedded(config.data):
        train, test = embedded_splits()
        color = "grey"
    else:
        clips, labels, color = _read(config.data, config)
        train = (clips, labels)
    if config.valid_data:
        valid = _read(config.valid_data, config, color)[:2]
    else:
        kept, held = split_off(list(zip(*train)), config.valid_fraction, config.trainer.seed)
        train = ([c for c, _ in kept], [label for _, label in kept])
        valid = ([c for c, _ in held], [label for _, label in held])
    if config.test_data:
        test = _read(config.test_data, config, color)[:2]
    return train, valid, test, color


def _check_frames(where: str, clips: list[np.ndarray], shape: tuple) -> None:
    for clip in clips:
        if clip.shape[1:] != shape:
            raise DataError(where, f"clips of shape (C, H, W) = {clip.shape[1:]}, but the model was trained on "
                                   f"{shape}: use frames of that size (or --frame_size when training)")


def _examples(clips: list[np.ndarray], ids: list[int]) -> list[dict]:
    return [{"x": torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32)), "y": y} for c, y in zip(clips, ids)]


# --- train, evaluate, predict ------------------------------------------------------------------------------

@locked
def train(config: ActionConfig) -> Path:
    """Train an action classifier as ``config`` says; returns the bundle's path (``<run_dir>/bundle``)."""
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y), color = load_splits(config)
    where = str(config.data or EMBEDDED)
    labels = sorted(set(train_y))
    if len(labels) < 2:
        raise DataError(where, f"classification needs at least 2 labels, the training clips have {labels}")
    shape = train_x[0].shape[1:]  # (C, H, W)
    _check_frames(str(config.valid_data or where), valid_x, shape)
    _check_frames(str(config.test_data or where), test_x, shape)
    frames = [len(c) for c in train_x]
    log.info("data: %d training, %d validation, %d test clips of %d-%d frames, %s %dx%d; %d labels: %s",
             len(train_x), len(valid_x), len(test_x), min(frames), max(frames), color, shape[2], shape[1],
             len(labels), ", ".join(f"{label} ({n})" for label, n in sorted(Counter(train_y).items())))
    mean, std = sc.fit_normalization(train_x, axis=1)
    torch.manual_seed(config.trainer.seed)
    model = FrameClassifier(config.model.build(shape[0], len(labels)))
    model.set_normalization(mean, std)
    train_ex = _examples(train_x, sc.label_ids(train_y, where, labels))
    valid_ex = _examples(valid_x, sc.label_ids(valid_y, str(config.valid_data or where), labels))
    test_ex = _examples(test_x, sc.label_ids(test_y, str(config.test_data or where), labels))
    log.info("model: ConvNet2d %s per frame, %s over frames, %d parameters", config.model.channels,
             config.model.encoder.kind if config.model.temporal == "encoder" else "averaging",
             sum(p.numel() for p in model.parameters()))
    metrics = sc.fit(model, train_ex, valid_ex, config.trainer, config.batch_size)
    metrics.update(sc.score_splits(model, {"valid": valid_ex, "test": test_ex}, labels,
                                   Path(config.trainer.run_dir)))
    return save_task_bundle(TASK, config, model, assets={"labels": labels, "frames": {"color": color}},
                            metrics=metrics)


def load_classifier(bundle_path: Union[str, Path]) -> tuple[FrameClassifier, list[str], ActionConfig, str]:
    """(model in eval mode, label names, the run's config, the color its clips were read in) of an action
    bundle."""
    bundle = load_task_bundle(bundle_path, TASK)
    labels = bundle.assets.get("labels")
    frames = bundle.assets.get("frames")
    if not isinstance(bundle.model, FrameClassifier) or not isinstance(labels, list) or not isinstance(frames, dict):
        raise ValueError(f"{bundle.path} is not an action bundle (it lacks a FrameClassifier, labels.json or "
                         "frames.json)")
    return bundle.model, labels, config_from_dict(bundle.task_config), str(frames.get("color", "grey"))


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch_size must be a positive integer, got {batch_size!r}")


def evaluate(bundle_path: Union[str, Path], data: Optional[str] = None, *, plot: Optional[str] = None,
             batch_size: int = 16) -> dict:
    """Metrics of a bundle on ``data`` (a folder of labelled clips; 'moving-shapes' = the embedded test split),
    or on the validation clips of its training run when ``data`` is None. ``plot``: also write the confusion PNG."""
    model, labels, config, color = load_classifier(bundle_path)
    _check_batch_size(batch_size)
    if data is None:
        check_data_unchanged(bundle_path, config, sys.modules[__name__])
        clips, names = load_splits(config)[1]
        if not clips:
            raise ValueError(f"{bundle_path} was trained without validation data: give --data FOLDER to score")
    elif is_embedded(data):
        clips, names = embedded_splits()[1]
    else:
        clips, names, _ = _read(data, config, color)
    shape = (model.config.in_channels, *clips[0].shape[2:])
    _check_frames(str(data or config.data), clips, shape)
    examples = _examples(clips, sc.label_ids(names, str(data or "valid"), labels))
    metrics = sc.score(model, examples, labels, batch_size)
    if plot:
        sc.plot(metrics, Path(plot).expanduser())
    return metrics


def predict(bundle_path: Union[str, Path], inputs: Iterable[str], *, batch_size: int = 16) -> Iterator[dict]:
    """``{"input", "label", "probabilities": {label: p}}`` per clip (a folder of frames or an array file)."""
    model, labels, config, color = load_classifier(bundle_path)
    _check_batch_size(batch_size)
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> Iterator[dict]:
        probs = sc.probabilities(model, [torch.from_numpy(c) for _, c in pending], batch_size)
        for (name, _), p in zip(pending, probs):
            yield {"input": name, "label": labels[int(p.argmax())],
                   "probabilities": {label: round(float(q), 6) for label, q in zip(labels, p)}}

    for text in inputs:
        if not isinstance(text, str):
            raise TypeError(f"predict takes clip paths (strings), got {type(text).__name__}")
        if not text.strip():
            continue
        clip = read_clip(text.strip(), config.clip_options, color=color)
        if clip.shape[1] != model.config.in_channels:
            raise ValueError(f"{text.strip()}: {clip.shape[1]} channels, the model reads {model.config.in_channels}")
        pending.append((text.strip(), clip))
        if len(pending) == batch_size:
            yield from flush()
            pending = []
    if pending:
        yield from flush()


__all__ = ["ActionConfig", "ActionModelConfig", "EvaluateOptions", "PredictOptions", "train", "evaluate", "predict",
           "load_classifier", "EMBEDDED"]

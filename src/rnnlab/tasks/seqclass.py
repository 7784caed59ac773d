"""Sequence classification of numeric series (sensors, accelerometers, speech features, any multivariate series).

``train(config)`` reads labelled sequences (T_i, F): a NumPy ``.npz`` (``X`` dense (N, T, F), ragged, or flat
with ``lengths``; ``y`` integers or strings), a ``.ts`` file of the UEA/UCR archive (variable lengths and
missing values included), or IDX images (MNIST/Fashion-MNIST, each image read row by row: H steps of W
features). It holds out a seeded validation split when no validation file is given, fits a per-feature
normalisation on the training sequences only (kept in the model, so the bundle scores raw data), trains a
:class:`~rnnlab.structures.SequenceClassifier` (an optional input projection, any encoder, any pooling, a linear
layer), and saves a bundle (weights with the normalisation, ``config.json``, ``labels.json``, ``metrics.json``)
in ``<run_dir>/bundle``, with the confusion matrices of the validation and test data as
``<run_dir>/confusion.png`` and ``confusion_test.png``. Missing values (NaN, ``?`` in ``.ts``) become the
feature's training mean.

Metrics (scikit-learn's definitions): accuracy, macro-F1, per-class precision/recall/F1, confusion matrix.
"""
from __future__ import annotations

import functools
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch

from rnnlab.data.errors import DataError
from rnnlab.data.sequences import read_idx_sequences, read_npz
from rnnlab.data.synthetic_signals import synthetic_signals
from rnnlab.data.ts_format import read_ts
from rnnlab.structures import EncoderConfig, SequenceClassifier
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
from ._sequence_classifier import SequenceModelConfig

log = logging.getLogger(__name__)

TASK = "seqclass"
DESCRIPTION = "classify numeric sequences (sensors, any multivariate series) from .npz, UEA/UCR .ts or IDX files"
EMBEDDED = "signals"
EMBEDDED_NAMES = (EMBEDDED,)
"""--data values, besides None, that name the embedded data set."""
EMBEDDED_DATA = ("generated 3-channel signals, 6 classes told apart only by the order of events (bump order, chirp "
                 "direction, sawtooth direction): 1,200 training and 400 test sequences of 48-96 steps")
EMBEDDED_SIZES = (1200, 400)
"""(training, test) sequences of the embedded set."""

Format = Literal["auto", "npz", "ts", "idx"]


def _default_model() -> SequenceModelConfig:
    return SequenceModelConfig(encoder=EncoderConfig(kind="gru", hidden_size=128), pooling="last", dropout=0.1)


def _default_trainer() -> TrainerConfig:
    # The embedded default: about a minute on two CPU cores; early stopping keeps the best epoch.
    return TrainerConfig(optimizer="adamw", lr=2e-3, weight_decay=0.01, schedule="constant", max_epochs=30,
                         max_time=90.0, clip_norm=1.0, eval_every=0, early_stopping_patience=5, log_every=20,
                         run_dir="runs/seqclass")


@dataclass(frozen=True)
class SeqclassConfig:
    """Train a classifier of numeric sequences and score it on validation and test data."""

    data: Optional[str] = None
    """Training data: an .npz (X, y[, lengths]), a UEA/UCR .ts file, or an IDX images file
    (*-images-idx3-ubyte[.gz], labels beside it); None (or 'signals') = the embedded generated signals."""
    valid_data: Optional[str] = None
    """Validation data in the same format; None = a seeded valid_fraction of the training data."""
    test_data: Optional[str] = None
    """Test data, scored once at the end (e.g. the archive's *_TEST.ts); None = none (the embedded set has its own)."""
    format: Format = "auto"
    """auto = by the suffix (.npz, .ts, *-idx3-ubyte[.gz]) | npz | ts | idx."""
    allow_pickle: bool = False
    """.npz with a ragged object array X: loading it runs pickle, which can run code; allow it for files you trust."""
    valid_fraction: float = 0.1
    """Without valid_data: hold out this seeded random fraction of the training sequences (0 = no validation)."""
    batch_size: int = 64
    """B: sequences per batch (batches group sequences of similar length)."""
    model: SequenceModelConfig = field(default_factory=_default_model)
    trainer: TrainerConfig = field(default_factory=_default_trainer)

    def __post_init__(self) -> None:
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"--valid_fraction must be in [0, 1), got {self.valid_fraction!r}")
        check_positive(self, "batch_size")
        check_run_dir(self)


Config = SeqclassConfig


def config_from_dict(data: dict) -> SeqclassConfig:
    """Rebuild a :class:`SeqclassConfig` from ``asdict(config)`` (as stored in a bundle's config.json)."""
    return from_dict(SeqclassConfig, data)


@dataclass(frozen=True)
class EvaluateOptions:
    """How ``rnnlab evaluate`` reads --data and what it writes."""

    format: Optional[Format] = None
    """The format of --data (None = as the bundle's training data)."""
    plot: Optional[str] = None
    """Write the confusion matrix as a PNG to this path."""
    batch_size: int = 64
    """Sequences per batch while scoring."""


@dataclass(frozen=True)
class PredictOptions:
    """How ``rnnlab predict`` runs a seqclass bundle. Each input is a file (.npz, .ts, IDX: every sequence in it)
    or one sequence written inline: steps separated by ';', the features of a step by ',' ('1,2;3,4;5,6')."""

    format: Optional[Format] = None
    """The format of input files (None = by the suffix)."""
    batch_size: int = 64
    """Sequences per batch."""


# --- data --------------------------------------------------------------------------------------------------

Labelled = tuple[list[np.ndarray], list[str]]


def detect_format(path: str, format: str) -> str:
    if format != "auto":
        return format
    name = Path(path).name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".ts"):
        return "ts"
    if "-idx" in name and (name.endswith("-ubyte") or name.endswith("-ubyte.gz")):
        return "idx"
    raise ValueError(f"cannot tell the format of {path} from its name: give --format npz, ts or idx "
                     "(.npz, .ts and *-idx3-ubyte[.gz] are recognised)")


def read_sequences(path: str, format: str = "auto", *, allow_pickle: bool = False, labels: bool = True) -> Labelled:
    """(sequences (T_i, F), labels) of a file in any of the formats; F must be one number for all sequences."""
    kind = detect_format(path, format)
    if kind == "npz":
        seqs, names = read_npz(path, allow_pickle=allow_pickle, labels=labels)
    elif kind == "ts":
        ts = read_ts(path, labels=labels)
        seqs, names = ts.series, ts.labels
    else:
        seqs, names = read_idx_sequences(path)
    widths = Counter(s.shape[1] for s in seqs)
    if len(widths) > 1:
        common = widths.most_common(1)[0][0]
        odd = next(i for i, s in enumerate(seqs) if s.shape[1] != common)
        raise DataError(path, f"sequence {odd} has {seqs[odd].shape[1]} features, the others {common}: every "
                              "sequence needs the same F")
    return seqs, names


def is_embedded(data: Optional[str]) -> bool:
    return data is None or data == EMBEDDED


@functools.lru_cache(maxsize=1)  # train, the fingerprint and evaluate all ask for it
def embedded_splits() -> tuple[Labelled, Labelled]:
    """The embedded set: (training, test) generated signals with fixed seeds."""
    return synthetic_signals(EMBEDDED_SIZES[0], seed=1), synthetic_signals(EMBEDDED_SIZES[1], seed=2)


def embedded_text(config: SeqclassConfig) -> str:
    """A digest of the embedded set's sequences and labels, as the bundle fingerprints them."""
    return f"{EMBEDDED} {EMBEDDED_SIZES} {sc.labelled_digest(embedded_splits())}"


def _read(path: str, config: SeqclassConfig, format: Optional[str] = None) -> Labelled:
    return read_sequences(path, format or config.format, allow_pickle=config.allow_pickle)


def load_splits(config: SeqclassConfig) -> tuple[Labelled, Labelled, Labelled]:
    """(train, valid, test) as ``config`` names them (valid from a seeded split when not given)."""
    test: Labelled = ([], [])
    if is_embedded(config.data):
        train, test = embedded_splits()
    else:
        train = _read(config.data, config)
    if config.valid_data:
        valid = _read(config.valid_data, config)
    else:
        kept, held = split_off(list(zip(*train)), config.valid_fraction, config.trainer.seed)
        train = ([s for s, _ in kept], [label for _, label in kept])
        valid = ([s for s, _ in held], [label for _, label in held])
    if config.test_data:
        test = _read(config.test_data, config)
    return train, valid, test


def label_names(labels: Iterable[str]) -> list[str]:
    """The training labels in a stable order: numerically when every label is an integer, else as strings."""
    unique = set(labels)
    if all(label.lstrip("-").isdigit() for label in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def _check_width(where: str, seqs: list[np.ndarray], width: int) -> None:
    if seqs and seqs[0].shape[1] != width:
        raise DataError(where, f"{seqs[0].shape[1]} features per step, but the model reads {width}")


# --- train, evaluate, predict ------------------------------------------------------------------------------

@locked
def train(config: SeqclassConfig) -> Path:
    """Train a sequence classifier as ``config`` says; returns the bundle's path (``<run_dir>/bundle``)."""
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = load_splits(config)
    where = config.data or EMBEDDED
    labels = label_names(train_y)
    if len(labels) < 2:
        raise DataError(where, f"classification needs at least 2 labels, the training data has {labels}")
    F = train_x[0].shape[1]
    _check_width(str(config.valid_data or where), valid_x, F)
    _check_width(str(config.test_data or where), test_x, F)
    lengths = [len(s) for s in train_x]
    log.info("data: %d training, %d validation, %d test sequences of %d-%d steps, F=%d; %d labels: %s",
             len(train_x), len(valid_x), len(test_x), min(lengths), max(lengths), F, len(labels),
             ", ".join(f"{label} ({n})" for label, n in sorted(Counter(train_y).items())))
    model = sc.build_sequence_classifier(config.model, train_x, len(labels), seed=config.trainer.seed)
    mean = model.feature_mean
    train_ex = sc.examples_of(train_x, sc.label_ids(train_y, where, labels), mean)
    valid_ex = sc.examples_of(valid_x, sc.label_ids(valid_y, str(config.valid_data or where), labels), mean)
    test_ex = sc.examples_of(test_x, sc.label_ids(test_y, str(config.test_data or where), labels), mean)
    log.info("model: %s encoder, %s pooling, %d parameters", config.model.encoder.kind, config.model.pooling,
             sum(p.numel() for p in model.parameters()))
    metrics = sc.fit(model, train_ex, valid_ex, config.trainer, config.batch_size)
    metrics.update(sc.score_splits(model, {"valid": valid_ex, "test": test_ex}, labels,
                                   Path(config.trainer.run_dir)))
    return save_task_bundle(TASK, config, model, assets={"labels": labels}, metrics=metrics)


def load_classifier(bundle_path: Union[str, Path]) -> tuple[SequenceClassifier, list[str], SeqclassConfig]:
    """(model in eval mode, label names, the run's config) of a seqclass bundle."""
    bundle = load_task_bundle(bundle_path, TASK)
    labels = bundle.assets.get("labels")
    if not isinstance(bundle.model, SequenceClassifier) or not isinstance(labels, list):
        raise ValueError(f"{bundle.path} is not a seqclass bundle (it lacks a SequenceClassifier or labels.json)")
    return bundle.model, labels, config_from_dict(bundle.task_config)


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch_size must be a positive integer, got {batch_size!r}")


def evaluate(bundle_path: Union[str, Path], data: Optional[str] = None, *, format: Optional[str] = None,
             plot: Optional[str] = None, batch_size: int = 64) -> dict:
    """Metrics of a bundle on ``data`` (a file in a format :func:`read_sequences` reads; 'signals' = the embedded
    set's test split), or on the validation data of its training run when ``data`` is None (the same seeded
    split, so the figures equal the bundle's ``valid`` metrics). ``plot``: also write the confusion matrix PNG."""
    model, labels, config = load_classifier(bundle_path)
    _check_batch_size(batch_size)
    if data is None:
        check_data_unchanged(bundle_path, config, sys.modules[__name__])
        seqs, names = load_splits(config)[1]
        if not seqs:
            raise ValueError(f"{bundle_path} was trained without validation data: give --data FILE to score")
    elif is_embedded(data):
        seqs, names = embedded_splits()[1]
    else:
        seqs, names = _read(data, config, format)
    _check_width(str(data or config.data), seqs, model.config.input_size)
    examples = sc.examples_of(seqs, sc.label_ids(names, str(data or "valid"), labels), model.feature_mean)
    metrics = sc.score(model, examples, labels, batch_size)
    if plot:
        sc.plot(metrics, Path(plot).expanduser())
    return metrics


def parse_inline(text: str) -> np.ndarray:
    """'1,2;3,4;5,6' -> (3, 2): steps separated by ';', features by ','; '?' or 'nan' is missing."""
    try:
        rows = [[float("nan") if v.strip() in ("?", "nan") else float(v) for v in step.split(",")]
                for step in text.strip().split(";") if step.strip()]
    except ValueError:
        raise ValueError(f"input {text[:40]!r} is neither a file nor a sequence written as numbers: steps "
                         "separated by ';', features by ','") from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise ValueError(f"input {text[:40]!r}: every step needs the same number of features")
    return np.array(rows, dtype=np.float32)


def _inputs(inputs: Iterable[str], format: Optional[str]) -> Iterator[tuple[str, np.ndarray]]:
    for text in inputs:
        if not isinstance(text, str):
            raise TypeError(f"predict takes strings (file paths or inline sequences), got {type(text).__name__}")
        if not text.strip():
            continue
        path = Path(text.strip()).expanduser()
        if path.is_file():
            seqs, _ = read_sequences(str(path), format or "auto", labels=False)
            for i, s in enumerate(seqs):
                yield f"{path}#{i}", s
        else:
            yield "inline", parse_inline(text)


def predict(bundle_path: Union[str, Path], inputs: Iterable[str], *, format: Optional[str] = None,
            batch_size: int = 64) -> Iterator[dict]:
    """``{"input", "label", "probabilities": {label: p}}`` per sequence of each input (a file or inline)."""
    model, labels, _ = load_classifier(bundle_path)
    _check_batch_size(batch_size)
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> Iterator[dict]:
        for name, s in pending:
            if s.shape[1] != model.config.input_size:
                raise ValueError(f"{name}: {s.shape[1]} features per step, the model reads {model.config.input_size}")
        xs = [torch.from_numpy(sc.fill_missing(s, model.feature_mean)) for _, s in pending]
        probs = sc.probabilities(model, xs, batch_size)
        for (name, _), p in zip(pending, probs):
            yield {"input": name, "label": labels[int(p.argmax())],
                   "probabilities": {label: round(float(q), 6) for label, q in zip(labels, p)}}

    for item in _inputs(inputs, format):
        pending.append(item)
        if len(pending) == batch_size:
            yield from flush()
            pending = []
    if pending:
        yield from flush()


__all__ = ["SeqclassConfig", "EvaluateOptions", "PredictOptions", "train", "evaluate", "predict", "load_classifier",
           "read_sequences", "EMBEDDED"]

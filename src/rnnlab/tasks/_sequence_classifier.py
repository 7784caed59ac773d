"""What the tasks that classify numeric sequences share (seqclass, speech, action): the model section of their
config, the per-feature normalisation fitted on the training data, batching, training, scoring and the
confusion-matrix picture.

A sequence here is a float array (T, F) (or (T, C, H, W) for clips); ``NaN`` marks a missing value. The
normalisation statistics are fitted on the training sequences only (over every real step, missing values left
out) and stored in the model's buffers, so that a bundle scores raw data as training saw it; a missing value
becomes the training mean (0 after normalisation).

    model = build_sequence_classifier(config.model, train_sequences, num_classes)   # fits μ, σ
    metrics = fit(model, train_examples, valid_examples, config.trainer, batch_size)
    result = score(model, test_examples, labels)          # accuracy, macro-F1, confusion
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from rnnlab.data.batching import LengthBucketSampler, pad_collate
from rnnlab.structures import EncoderConfig
from rnnlab.structures.base import check_choice
from rnnlab.structures.many_to_one import Pooling
from rnnlab.structures.sequence_classifier import SequenceClassifier, SequenceClassifierConfig
from rnnlab.training import Trainer, TrainerConfig
from rnnlab.training.classification_metrics import classification_metrics, confusion_matrix, plot_confusion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceModelConfig:
    """The classifier of feature sequences: normalised features, an optional projection, an encoder, a pooling
    of its outputs and a linear layer over the classes."""

    projection_size: int = 0
    """A Linear + ReLU from the F input features to this many before the encoder; 0 = none."""
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(kind="gru", hidden_size=128))
    """The sequence encoder: lstm | gru | rnn | mingru | minlstm | cnn | transformer | window."""
    pooling: Pooling = "last"
    """last (the encoder's summary: a recurrent encoder's final state) | mean | max (over the real steps) |
    attention (a learned query)."""
    dropout: float = 0.1
    """Dropout on the pooled vector, before the output layer."""

    def __post_init__(self) -> None:
        check_choice("--model.pooling", self.pooling, Pooling)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--model.dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.projection_size, bool) or not isinstance(self.projection_size, int) \
                or self.projection_size < 0:
            raise ValueError(f"--model.projection_size must be 0 (none) or a positive integer, "
                             f"got {self.projection_size!r}")

    def build(self, input_size: int, num_classes: int) -> SequenceClassifierConfig:
        return SequenceClassifierConfig(input_size=input_size, num_classes=num_classes,
                                        projection_size=self.projection_size, encoder=self.encoder,
                                        pooling=self.pooling, dropout=self.dropout)


# --- normalisation -------------------------------------------------------------------------------------------

def labelled_digest(splits: Sequence[tuple[Sequence[np.ndarray], Sequence[str]]]) -> str:
    """SHA-256 over every (label, array) of ``splits``: how a bundle fingerprints a generated embedded set."""
    import hashlib

    digest = hashlib.sha256()
    for arrays, labels in splits:
        for array, label in zip(arrays, labels):
            digest.update(label.encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def fit_normalization(sequences: Sequence[np.ndarray], axis: int = -1) -> tuple[Tensor, Tensor]:
    """(μ, σ) per feature (the entries of ``axis``, the last by default: F of (T, F) sequences; use ``axis=1``
    for the channels of (T, C, H, W) clips) over every value of the training sequences, NaN left out.
    Float64 sums, so a million steps do not lose precision."""
    if not sequences:
        raise ValueError("fit_normalization needs at least one training sequence")
    F = sequences[0].shape[axis]
    total, total_sq, count = np.zeros(F), np.zeros(F), np.zeros(F)
    for s in sequences:
        a = np.moveaxis(np.asarray(s, dtype=np.float64), axis, -1).reshape(-1, F)  # (N, F)
        ok = ~np.isnan(a)
        a = np.where(ok, a, 0.0)
        total += a.sum(0)
        total_sq += (a * a).sum(0)
        count += ok.sum(0)
    n = np.maximum(count, 1)
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


def fill_missing(sequence: np.ndarray, mean: Tensor) -> np.ndarray:
    """The (T, F) sequence as float32 with each NaN replaced by its feature's training mean."""
    a = np.asarray(sequence, dtype=np.float32)
    if np.isnan(a).any():
        a = np.where(np.isnan(a), mean.numpy().astype(np.float32), a)
    return a


def build_sequence_classifier(model: SequenceModelConfig, train_sequences: Sequence[np.ndarray],
                              num_classes: int, *, seed: int = 0) -> SequenceClassifier:
    """A seeded :class:`SequenceClassifier` for (T, F) sequences, its normalisation fitted on
    ``train_sequences``."""
    mean, std = fit_normalization(train_sequences)
    torch.manual_seed(seed)
    classifier = SequenceClassifier(model.build(len(mean), num_classes))
    classifier.set_normalization(mean, std)
    return classifier


def examples_of(sequences: Sequence[np.ndarray], labels: Sequence[int], mean: Tensor) -> list[dict]:
    """``{"x": (T, F) float tensor, "y": class id}`` per sequence, missing values filled with ``mean``."""
    return [{"x": torch.from_numpy(fill_missing(s, mean)), "y": int(y)} for s, y in zip(sequences, labels)]


# --- batches -------------------------------------------------------------------------------------------------

def collate(examples: Sequence[dict]) -> dict:
    """:func:`pad_collate`, without ``lengths`` when every sequence has the same length (no padding to mask:
    the recurrent layers then take their fastest path)."""
    batch = pad_collate(examples)
    if bool((batch["lengths"] == batch["x"].shape[1]).all()):
        del batch["lengths"]
    return batch


def make_batches(examples: Sequence[dict], batch_size: int, *, shuffle: bool) -> DataLoader:
    """Length-bucketed batches (shuffled between epochs from torch's RNG, which the trainer saves)."""
    sampler = LengthBucketSampler([len(e["x"]) for e in examples], batch_size, shuffle=shuffle)
    return DataLoader(list(examples), batch_sampler=sampler, collate_fn=collate)


def fit(model: nn.Module, train: Sequence[dict], valid: Sequence[dict], trainer: TrainerConfig,
        batch_size: int) -> dict:
    """Train ``model`` (whose ``loss(batch)`` is cross-entropy) with the :class:`Trainer`; its metrics."""
    train_loader = make_batches(train, batch_size, shuffle=True)
    valid_loader = make_batches(valid, batch_size, shuffle=False) if valid else None
    metrics = dict(Trainer(trainer).fit(model, train_loader, valid_loader))
    model.eval()
    return metrics


# --- scoring -------------------------------------------------------------------------------------------------

@torch.no_grad()
def probabilities(model: nn.Module, sequences: Sequence[Tensor], batch_size: int = 64) -> np.ndarray:
    """(N, C) class probabilities of float sequences (T, ...), in their order (batched by length inside)."""
    model.eval()
    device = next(model.parameters()).device
    out: Optional[np.ndarray] = None
    sampler = LengthBucketSampler([len(s) for s in sequences], batch_size, shuffle=False)
    for chunk in sampler:
        batch = collate([{"x": sequences[i]} for i in chunk])
        p = model({k: v.to(device) for k, v in batch.items()}).logits.float().softmax(-1).cpu().numpy()  # (B, C)
        if out is None:
            out = np.zeros((len(sequences), p.shape[1]))
        out[chunk] = p
    return out if out is not None else np.zeros((0, 0))


def score(model: nn.Module, examples: Sequence[dict], labels: Sequence[str], batch_size: int = 64) -> dict:
    """Accuracy, macro-F1, per-class figures, the confusion matrix and the mean loss (nats) on ``examples``."""
    probs = probabilities(model, [e["x"] for e in examples], batch_size)
    y = np.array([e["y"] for e in examples], dtype=np.int64)
    metrics = classification_metrics(confusion_matrix(y, probs.argmax(-1), len(labels)), list(labels))
    metrics["loss"] = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    return metrics


def summary(prefix: str, metrics: dict) -> dict:
    """Flat figures for metrics.json's top level and the whole under ``prefix``."""
    return {f"{prefix}_accuracy": metrics["accuracy"], f"{prefix}_macro_f1": metrics["macro_f1"], prefix: metrics}


def plot(metrics: dict, path: Union[str, Path], title: str = "") -> None:
    """The confusion matrix as a PNG (a warning instead when matplotlib is not installed)."""
    title = title or f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"
    try:
        plot_confusion(np.array(metrics["confusion"]), metrics["labels"], Path(path), title=title)
    except ImportError:
        log.warning("matplotlib is not installed: no %s", path)


def score_splits(model: nn.Module, splits: dict, labels: Sequence[str], run_dir: Path) -> dict:
    """Score each non-empty split (name -> examples); metrics.json entries, with confusion PNGs in run_dir
    (``confusion.png`` for valid, ``confusion_NAME.png`` for the others)."""
    out: dict = {}
    for name, examples in splits.items():
        if not examples:
            continue
        result = score(model, examples, labels)
        out.update(summary(name, result))
        png = "confusion.png" if name == "valid" else f"confusion_{name}.png"
        plot(result, run_dir / png, f"{name}: accuracy {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}")
        log.info("%s: accuracy %.4f, macro-F1 %.4f (%d examples)", name, result["accuracy"], result["macro_f1"],
                 result["examples"])
    return out


def label_ids(labels: Sequence[str], where: str, known: Sequence[str]) -> list[int]:
    """Ids of ``labels`` in ``known``; a ValueError naming ``where`` and the first unknown label."""
    index = {label: i for i, label in enumerate(known)}
    out = []
    for i, label in enumerate(labels):
        if label not in index:
            raise ValueError(f"{where}: label {label!r} (example {i}) was never seen in training (labels: "
                             f"{', '.join(known[:20])})")
        out.append(index[label])
    return out


__all__ = ["SequenceModelConfig", "fit_normalization", "fill_missing", "build_sequence_classifier", "examples_of",
           "collate", "make_batches", "fit", "probabilities", "score", "summary", "plot", "score_splits",
           "label_ids"]

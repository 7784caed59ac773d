"""Classification metrics from a confusion matrix: accuracy, per-class precision/recall/F1, macro averages.

The definitions are scikit-learn's (``precision_recall_fscore_support``, ``f1_score(average="macro")``), with
``zero_division=0``: a class never predicted has precision 0, a class absent from the references recall 0,
and an F1 whose precision and recall are both 0 is 0. The macro averages are the unweighted means over every
class the model knows, absent ones included (as scikit-learn does when given ``labels=``).

    C[i, j] = #examples of true class i predicted as class j
    precision_j = C[j, j] / Σ_i C[i, j]     recall_i = C[i, i] / Σ_j C[i, j]     F1 = 2 P R / (P + R)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows the true class and columns the predicted one."""
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-d and of one length, got shapes {t.shape} and {p.shape}")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} must hold class ids in [0, {num_classes}), got min {a.min()} and max {a.max()}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


def classification_metrics(confusion: np.ndarray, labels: Sequence[str]) -> dict:
    """JSON-ready metrics of a confusion matrix whose classes are named ``labels`` (in id order)."""
    C = np.asarray(confusion, dtype=np.int64)
    if C.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion must be ({len(labels)}, {len(labels)}) for {len(labels)} labels, got {C.shape}")
    tp = np.diag(C).astype(np.float64)
    support, predicted = C.sum(axis=1), C.sum(axis=0)
    precision, recall = _ratio(tp, predicted.astype(np.float64)), _ratio(tp, support.astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = int(C.sum())
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1.mean()),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "examples": total,
        "per_class": {
            label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                    "support": int(support[i])}
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "confusion": C.tolist(),
    }


def plot_confusion(confusion: np.ndarray, labels: Sequence[str], path: Union[str, Path], *, title: str = "") -> Path:
    """Write the confusion matrix as a PNG (counts in the cells, rows normalised for the colour). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    C = np.asarray(confusion)
    rows = C / np.maximum(C.sum(axis=1, keepdims=True), 1)  # the colour: the share of each true class
    n = len(labels)
    size = max(4.0, 0.6 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(C[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if rows[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

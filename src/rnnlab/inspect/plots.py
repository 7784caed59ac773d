"""The figures of ``rnnlab inspect``, each from one result of the API, written as a PNG (matplotlib, Agg).

Every function takes the dataclass an API call returned, the input units as strings where the figure is aligned
with the text, and the path to write; it returns the path.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import numpy as np

MAX_TICKS = 90
"""Steps up to which every step gets its unit as a tick label; longer inputs get numbered ticks."""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def shown(unit: str) -> str:
    """A unit as a tick label: whitespace made visible."""
    return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(unit, unit.replace("\n", "⏎"))


def _text_ticks(ax, units: Optional[Sequence[str]], n: int, axis: str = "x") -> None:
    if units is None or n > MAX_TICKS:
        return
    labels = [shown(u) for u in list(units)[:n]]
    if axis == "x":
        wide = max(map(len, labels), default=1) > 2
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=90 if wide else 0)
    else:
        ax.set_yticks(range(len(labels)), labels, fontsize=7)


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def plot_gradient_flow(flow, path, units: Optional[Sequence[str]] = None) -> Path:
    """‖∂L/∂h_t‖ against t, one line per layer-direction (log scale): vanishing shows as a fall to the left."""
    plt = _plt()
    mean = flow.mean().numpy()  # (K, T)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for name, row in zip(flow.names, mean):
        ax.plot(np.arange(len(row)), np.maximum(row, 1e-30), marker=".", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("input step t")
    ax.set_ylabel("‖∂L/∂h_t‖")
    ax.set_title(f"gradient of the loss (L = {flow.loss:.3f}) with respect to each step's hidden state")
    _text_ticks(ax, units, mean.shape[1])
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_jacobian(jac, path, units: Optional[Sequence[str]] = None, title: Optional[str] = None) -> Path:
    """‖∂h_T/∂h_t‖_F against t ≤ T per layer (log scale)."""
    plt = _plt()
    mean = jac.mean().numpy()  # (K, T + 1)
    fig, ax = plt.subplots(figsize=(10, 3.4))
    for name, row in zip(jac.names, mean):
        ax.plot(np.arange(len(row)), np.maximum(row, 1e-30), marker=".", label=name)
    ax.set_yscale("log")
    ax.set_xlabel(f"step t (T = {jac.T})")
    ax.set_ylabel("‖∂h_T/∂h_t‖_F")
    ax.set_title(title or f"how much h_T still depends on h_t ({jac.method} Jacobian norm)")
    _text_ticks(ax, units, mean.shape[1])
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_vanishing(results: Mapping[str, object], path, title: Optional[str] = None) -> Path:
    """{model name: JacobianNorms} as ‖∂h_T/∂h_t‖ against the distance T - t: the first layer of each model."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name, jac in results.items():
        row = jac.mean()[0].numpy()[::-1]  # distance 0 … T
        ax.plot(np.arange(len(row)), np.maximum(row, 1e-30), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("distance T - t (steps back in time)")
    ax.set_ylabel("‖∂h_T/∂h_t‖_F")
    ax.set_title(title or "vanishing (RNN tanh) against preserved (LSTM, GRU) gradients")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_clipping(clip, path) -> Path:
    """The gradient norm before clipping and after clipping by norm and by value, per step."""
    plt = _plt()
    steps = np.arange(len(clip.before))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    w = 0.27
    ax.bar(steps - w, clip.before, w, label="unclipped")
    ax.bar(steps, clip.after_norm, w, label=f"clip_grad_norm_({clip.max_norm:g})")
    ax.bar(steps + w, clip.after_value, w, label=f"clip_grad_value_({clip.clip_value:g})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("‖g‖₂ over all parameters")
    ax.set_xticks(steps)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_heatmap(matrix, path, units: Optional[Sequence[str]] = None, *, title: str = "", ylabel: str = "unit",
                 cmap: str = "RdBu_r", vmin: Optional[float] = None, vmax: Optional[float] = None) -> Path:
    """A (rows, T) matrix over the input steps, units along the x axis."""
    plt = _plt()
    m = np.asarray(matrix, dtype=float)
    rows, T = m.shape
    fig, ax = plt.subplots(figsize=(min(18, max(6, 0.14 * T + 2)), min(12, max(2.2, 0.12 * rows + 1.4))))
    image = ax.imshow(m, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    _text_ticks(ax, units, T)
    fig.colorbar(image, ax=ax, fraction=0.03)
    return _save(fig, path)


def plot_gates(gates: Mapping[str, object], path, units: Optional[Sequence[str]] = None, *, title: str = "",
               max_units: int = 64) -> Path:
    """One heat map per gate: unit × step, 0 (white) to 1 (dark); candidates (g, n, h̃) on a -1…1 scale."""
    plt = _plt()
    names = list(gates)
    T = next(iter(gates.values())).shape[0]
    fig, axes = plt.subplots(len(names), 1, figsize=(min(18, max(6, 0.14 * T + 2)), 1.9 * len(names) + 0.6),
                             squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        m = np.asarray(gates[name], dtype=float)[:, :max_units].T  # (H, T)
        sigmoid = name in ("i", "f", "o", "r", "z", "f'", "i'")
        image = ax.imshow(m, aspect="auto", interpolation="nearest", cmap="viridis" if sigmoid else "RdBu_r",
                          vmin=0.0 if sigmoid else -1.0, vmax=1.0)
        ax.set_ylabel(f"{name}\nunit", fontsize=9)
        _text_ticks(ax, units, T)
        fig.colorbar(image, ax=ax, fraction=0.03)
    axes[0, 0].set_title(title, fontsize=10)
    return _save(fig, path)


def plot_saturation(stats: Mapping[str, Mapping[str, dict]], path) -> Path:
    """Per layer and sigmoid gate: the share of values < 0.1 (left-saturated) and > 0.9 (right-saturated)."""
    plt = _plt()
    labels, low, high = [], [], []
    for layer, gates in stats.items():
        for gate, s in gates.items():
            labels.append(f"{layer.split(' ', 1)[-1]} {gate}")
            low.append(s["low"])
            high.append(s["high"])
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(labels) + 2), 3.2))
    x = np.arange(len(labels))
    ax.bar(x, low, label="< 0.1", color="#3b528b")
    ax.bar(x, high, bottom=low, label="> 0.9", color="#fde725")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of gate values")
    ax.set_title("gate saturation")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_unit_traces(search, path, units: Optional[Sequence[str]] = None) -> Path:
    """The signal and the top units' activations over the text."""
    plt = _plt()
    k = len(search.top)
    T = search.values.numel()
    fig, axes = plt.subplots(k + 1, 1, figsize=(min(18, max(6, 0.14 * T + 2)), 1.3 * (k + 1) + 0.8), sharex=True,
                             squeeze=False)
    axes = axes[:, 0]
    axes[0].plot(search.values.numpy(), color="black")
    axes[0].set_ylabel(search.signal, fontsize=8)
    for ax, (layer, kind, unit, r), trace in zip(axes[1:], search.top, search.traces):
        ax.plot(trace.numpy(), color="#c0392b" if r > 0 else "#2471a3")
        ax.set_ylabel(f"{kind}[{unit}]\nr={r:+.2f}", fontsize=8)
        ax.set_title(layer, fontsize=7, loc="right")
    _text_ticks(axes[-1], units, T)
    axes[0].set_title(f"units that track {search.signal}", fontsize=10)
    return _save(fig, path)


def plot_attention(weights, path, source: Optional[Sequence[str]] = None,
                   target: Optional[Sequence[str]] = None) -> Path:
    """Seq2seq: target × source alignment; pooling: one row of weights over the input."""
    plt = _plt()
    m = np.asarray(weights, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    T, S = m.shape
    fig, ax = plt.subplots(figsize=(min(18, max(4, 0.3 * S + 2)), min(12, max(1.8, 0.3 * T + 1.4))))
    image = ax.imshow(m, cmap="Greys", vmin=0.0, vmax=max(float(m.max()), 1e-9), aspect="auto",
                      interpolation="nearest")
    _text_ticks(ax, source, S)
    if target is not None:
        _text_ticks(ax, target, T, axis="y")
    else:
        ax.set_yticks([])
    ax.set_xlabel("input")
    ax.set_ylabel("output" if T > 1 else "")
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _save(fig, path)


def plot_saliency(scores, path, units: Optional[Sequence[str]] = None, target: Optional[Sequence[str]] = None
                  ) -> Path:
    """One bar per token (a classifier) or an output × input heat map (per-step outputs), red = towards."""
    plt = _plt()
    m = np.asarray(scores, dtype=float)
    if m.ndim == 1:
        fig, ax = plt.subplots(figsize=(min(18, max(5, 0.25 * len(m) + 2)), 3))
        ax.bar(np.arange(len(m)), m, color=["#c0392b" if v > 0 else "#2471a3" for v in m])
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylabel("gradient × input")
        _text_ticks(ax, units, len(m))
        return _save(fig, path)
    bound = max(float(np.abs(m).max()), 1e-12)
    return plot_heatmap(m, path, units, title="saliency of each output (row) on each input (column)",
                        ylabel="output", vmin=-bound, vmax=bound) if target is None else \
        _saliency_matrix(m, path, units, target, bound)


def _saliency_matrix(m, path, units, target, bound) -> Path:
    plt = _plt()
    T, S = m.shape
    fig, ax = plt.subplots(figsize=(min(18, max(5, 0.25 * S + 2)), min(12, max(2, 0.25 * T + 1.4))))
    image = ax.imshow(m, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto", interpolation="nearest")
    _text_ticks(ax, units, S)
    _text_ticks(ax, target, T, axis="y")
    ax.set_title("gradient × input: each output (row) on each input token (column)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.03)
    return _save(fig, path)

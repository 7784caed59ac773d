"""Hidden states over time, and the search for units that track a signal in the text (Karpathy, Johnson &
Fei-Fei, 2015, "Visualizing and Understanding Recurrent Networks", §4.1: cells that track quotes, line length,
brackets; Strobelt et al., 2018, LSTMVis: units matched to a hypothesis over a text range).

A signal is one number per input unit (a character, word or subword token): a built-in one computed from the
text (:data:`SIGNALS`), a regular expression (``re:PATTERN``: 1 on the characters a match covers), or any tensor
(T,). A token's value is the signal's value at its last character (what the network has read by then). Each
unit's activation is scored by its Pearson correlation with the signal over the real steps of one row.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor, nn

from .trace import trace

_OPEN, _CLOSE = "([{", ")]}"


def _inside_quotes(text: str) -> list[float]:
    """1 inside a double-quoted or single-quoted span (the quote characters included), else 0."""
    out, quote = [], None
    for ch in text:
        if quote is None and ch in "\"'":
            quote = ch
            out.append(1.0)
        elif quote is not None and ch == quote:
            quote = None
            out.append(1.0)
        else:
            out.append(0.0 if quote is None else 1.0)
        if ch == "\n":
            quote = None  # an unclosed quote ends with its line
    return out


def _line_position(text: str) -> list[float]:
    """The character's column: 0 at the start of each line."""
    out, col = [], 0
    for ch in text:
        out.append(float(col))
        col = 0 if ch == "\n" else col + 1
    return out


def _bracket_depth(text: str) -> list[float]:
    """How many (, [ or { are open after reading the character."""
    out, depth = [], 0
    for ch in text:
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
        out.append(float(depth))
    return out


def _inside_parens(text: str) -> list[float]:
    """1 inside round brackets (after the opening one, up to and including the closing one)."""
    out, depth = [], 0
    for ch in text:
        was = depth
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        out.append(1.0 if was > 0 else 0.0)
    return out


SIGNALS: dict[str, Callable[[str], list[float]]] = {
    "inside_quotes": _inside_quotes,
    "line_position": _line_position,
    "bracket_depth": _bracket_depth,
    "inside_parens": _inside_parens,
}
"""The built-in signals, per character of the text."""


def signal_values(signal: str, units: Sequence[str]) -> Tensor:
    """The signal at each of ``units`` (the input's tokens as strings, in order) -> (T,) float.

    ``signal``: a name in :data:`SIGNALS`, or ``re:PATTERN`` (1 on the characters a match covers).
    """
    text = "".join(units)
    if signal in SIGNALS:
        per_char = SIGNALS[signal](text)
    elif isinstance(signal, str) and signal.startswith("re:"):
        try:
            pattern = re.compile(signal[3:])
        except re.error as e:
            raise ValueError(f"signal {signal!r} is not a valid regular expression: {e}") from None
        per_char = [0.0] * len(text)
        for m in pattern.finditer(text):
            for k in range(m.start(), m.end()):
                per_char[k] = 1.0
    else:
        raise ValueError(f"unknown signal {signal!r}: use one of {', '.join(SIGNALS)}, or re:PATTERN for a regular "
                         "expression (e.g. re:[0-9]+)")
    out, end = [], 0
    for u in units:
        end += len(u)
        out.append(per_char[end - 1] if len(u) and end else (out[-1] if out else 0.0))
    return torch.tensor(out, dtype=torch.float64)


@dataclass
class HiddenStates:
    """The per-step states of every traced layer."""

    names: list
    cells: list
    h: list
    """Per layer: (B, T, H) the hidden state after each step, zero past each row's length."""
    c: list
    """Per layer: (B, T, H) the LSTM cell state, or None."""
    lengths: Optional[Tensor]


def hidden_states(model: nn.Module, batch: dict) -> HiddenStates:
    """h_t (and the LSTM's c_t) after every step of every layer of the model's recurrent encoder on ``batch``."""
    with torch.no_grad():
        t = trace(model, batch)
    return HiddenStates([x.name for x in t.layers], [x.cell for x in t.layers], [x.h for x in t.layers],
                        [x.c for x in t.layers], t.lengths)


@dataclass
class UnitSearch:
    """The units whose activation best tracks a signal, by |Pearson r| over one row's real steps."""

    signal: str
    values: Tensor
    """(T,) the signal."""
    candidates: list
    """(layer name, "h" or "c", unit index) of every scored unit, in the order of ``correlations``."""
    correlations: Tensor
    """(N,) Pearson r of each candidate (0 for a constant activation)."""
    top: list
    """The best ``top``: (layer name, "h"/"c", unit, r), by |r| descending."""
    traces: Tensor
    """(top, T) the activations of the top units."""


def unit_search(model_or_states: Union[nn.Module, HiddenStates], batch: Optional[dict], signal: Union[str, Tensor],
                *, units: Optional[Sequence[str]] = None, row: int = 0, top: int = 5) -> UnitSearch:
    """Score every hidden (and cell) unit of row ``row`` against ``signal``.

    ``signal``: a built-in name or ``re:PATTERN`` together with ``units`` (the row's tokens as strings), or a
    tensor (T,) of your own. Pass :class:`HiddenStates` (and ``batch=None``) to reuse a trace.
    """
    states = model_or_states if isinstance(model_or_states, HiddenStates) else hidden_states(model_or_states, batch)
    T = states.h[0].shape[1]
    n = T if states.lengths is None else int(states.lengths[row])
    if isinstance(signal, Tensor):
        values, name = signal.detach().double().flatten().cpu(), "custom"
    else:
        if units is None:
            raise ValueError(f"signal {signal!r} is computed from the text: pass units (the input's tokens as strings)")
        values, name = signal_values(signal, units), signal
    if values.numel() < n:
        raise ValueError(f"the signal has {values.numel()} values but row {row} has {n} steps: give one per step")
    values = values[:n]
    candidates, columns = [], []
    for layer_name, h, c in zip(states.names, states.h, states.c):
        for kind, tensor in (("h", h), ("c", c)):
            if tensor is None:
                continue
            acts = tensor[row, :n].double().cpu()  # (n, H)
            columns.append(acts)
            candidates += [(layer_name, kind, j) for j in range(acts.shape[1])]
    acts = torch.cat(columns, dim=1)  # (n, N)
    r = _pearson(acts, values)  # (N,)
    order = torch.argsort(r.abs(), descending=True)[:top].tolist()
    best = [(*candidates[k], float(r[k])) for k in order]
    return UnitSearch(name, values, candidates, r, best, acts[:, order].t().contiguous())


def _pearson(acts: Tensor, signal: Tensor) -> Tensor:
    """Pearson r of each column of acts (n, N) with signal (n,); 0 where either is constant."""
    a = acts - acts.mean(0)
    s = signal - signal.mean()
    denom = a.norm(dim=0) * s.norm()
    return torch.where(denom > 1e-12, (a * s.unsqueeze(1)).sum(0) / denom.clamp(min=1e-300), torch.zeros_like(denom))

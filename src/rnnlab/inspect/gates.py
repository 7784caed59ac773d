"""Gate activations over time and their saturation (LSTM i/f/g/o, GRU r/z/n, minGRU z, minLSTM f'/i').

:func:`cell_gates` recomputes one step's gates from the cell's own parameters with the cell's equations (layer
norm and the recurrent dropout mask included), in the order and with the symbols of the cell docstrings; a test
rebuilds h_t and c_t from them and compares with ``cell.step``. :func:`gate_activations` traces a batch and
returns them per layer; :func:`saturation` counts the share of sigmoid-gate values below 0.1 or above 0.9
(a saturated gate passes no gradient: Glorot & Bengio, 2010; Karpathy, Johnson & Fei-Fei, 2015, §4.2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.gru_cell import GRUCell
from rnnlab.nn.lstm_cell import LSTMCell
from rnnlab.nn.min_rnn import MinGRUCell, MinLSTMCell, g
from rnnlab.nn.rnn_cell import RNNCell

SIGMOID_GATES = ("i", "f", "o", "r", "z", "f'", "i'")
"""Gates with values in (0, 1): the ones whose saturation is counted (g, n and h̃ are candidates, not gates)."""
LOW, HIGH = 0.1, 0.9


def cell_gates(cell: nn.Module, x_t: Tensor, state, mask: Optional[Tensor]) -> dict:
    """One step's gates of a built-in cell: name -> (B, H). An Elman cell or a user's cell has none: {}."""
    if isinstance(cell, LSTMCell):
        a = cell._input_preact(x_t) + cell._recurrent_preact(state.h, mask)  # (B, 4H)
        if cell.bias_ih is not None:
            a = a + cell.bias_ih + cell.bias_hh
        a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
        return {"i": torch.sigmoid(a_i), "f": torch.sigmoid(a_f), "g": torch.tanh(a_g), "o": torch.sigmoid(a_o)}
    if isinstance(cell, GRUCell):
        x_hat = cell._input_preact(x_t)  # (B, 3H)
        h_hat = cell._recurrent_preact(state, mask)
        if cell.bias_ih is not None:
            x_hat, h_hat = x_hat + cell.bias_ih, h_hat + cell.bias_hh
        x_r, x_z, x_n = x_hat.chunk(3, dim=1)
        h_r, h_z, h_n = h_hat.chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        return {"r": r, "z": torch.sigmoid(x_z + h_z), "n": torch.tanh(x_n + r * h_n)}
    if isinstance(cell, MinGRUCell):
        k_z, k_h = cell.linear(x_t).chunk(2, dim=-1)
        return {"z": torch.sigmoid(k_z), "h̃": g(k_h)}
    if isinstance(cell, MinLSTMCell):
        k_f, k_i, k_h = cell.linear(x_t).chunk(3, dim=-1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        return {"f'": f / (f + i), "i'": i / (f + i), "h̃": g(k_h)}
    if isinstance(cell, RNNCell):
        return {}
    return {}


@dataclass
class GateActivations:
    """Gates of every traced layer over time."""

    names: list
    """The layers (``encoder.layer l0``, ``... l0 reverse``), as :class:`~rnnlab.inspect.trace.LayerTrace` names."""
    cells: list
    """The cell class name of each layer."""
    gates: list
    """Per layer: gate name -> (B, T, H), zero past each row's length."""
    lengths: Optional[Tensor]
    """(B,) real lengths, or None."""


def gate_activations(model: nn.Module, batch: dict) -> GateActivations:
    """The gates of the model's recurrent encoder on ``batch``, re-run through the reference cell loop.

    A ValueError when the encoder has no gates (CNN, Transformer, window; the Elman RNN has none either).
    """
    from .trace import encoder_kind, require_recurrent, trace

    require_recurrent(model, "gate activations")
    with torch.no_grad():
        t = trace(model, batch)
    if not any(layer.gates for layer in t.layers):
        raise ValueError(f"gate activations need an LSTM, GRU, minGRU or minLSTM encoder; this model's encoder is "
                         f"{encoder_kind(model)!r} ({t.layers[0].cell}), whose step has no gates: inspect its hidden "
                         "states or gradient flow instead")
    return GateActivations([x.name for x in t.layers], [x.cell for x in t.layers], [x.gates for x in t.layers],
                           t.lengths)


def saturation(gates: dict, lengths: Optional[Tensor] = None) -> dict:
    """{gate: {"low": share < 0.1, "high": share > 0.9, "mean": mean}} over the real steps, sigmoid gates only."""
    out = {}
    for name, values in gates.items():
        if name not in SIGMOID_GATES:
            continue
        real = _real(values, lengths)  # (N, H) the real steps
        out[name] = {"low": float((real < LOW).float().mean()), "high": float((real > HIGH).float().mean()),
                     "mean": float(real.mean())}
    return out


def _real(values: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """(B, T, H) -> (N, H): the rows' real steps only."""
    if lengths is None:
        return values.reshape(-1, values.shape[-1])
    B, T, H = values.shape
    keep = torch.arange(T).unsqueeze(0) < lengths.cpu().unsqueeze(1)  # (B, T)
    return values[keep.to(values.device)]

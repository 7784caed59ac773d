"""torch's private kernels that rnnlab calls, each behind one wrapper, so a torch upgrade breaks here only.

``torch.nn.LSTM`` and friends run ``torch._VF.lstm`` & co. on their own parameters; rnnlab's layers keep
torch.nn's parameter layout and call the same kernels on theirs (oneDNN on the CPU, cuDNN on a GPU).
The fused LSTM of :mod:`rnnlab.nn.fused_lstm` needs the per-row ``rstd`` that ``F.layer_norm`` computes
and throws away, hence ``torch.native_layer_norm``. None of these is public API: their signatures are
pinned by ``tests/nn/test__torch_kernels.py`` against the public modules (torch.nn.LSTM/GRU/RNN, the
cells, ``F.layer_norm``). If a torch release renames or drops one, the wrapper raises a RuntimeError
that names it, instead of an AttributeError deep inside a layer.

Weights: a flat list, per (layer, direction) in torch's order, of ``weight_ih, weight_hh[, bias_ih, bias_hh]``.
States: ``hx`` is ``(h0, c0)`` for the LSTM, else ``h0``; each (L·D, B, H).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor

__all__ = [
    "lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell",
    "native_layer_norm", "onednn_linear", "onednn_pack_linear_weight", "ONEDNN_LINEAR", "sole_owner",
    "native_layer_norm_out", "cell_kernel",
]


def _private(owner, name: str, where: str):
    """The private kernel ``owner.name``, or a stand-in that raises a message naming it when called."""
    fn = getattr(owner, name, None)
    if fn is not None:
        return fn

    def missing(*args, **kwargs):
        raise RuntimeError(
            f"{where}.{name} is missing in torch {torch.__version__}: rnnlab calls this private kernel "
            "(see rnnlab/nn/_torch_kernels.py); use a torch version rnnlab supports, or impl='loop'"
        )

    return missing


_VF = torch._VF
_SEQUENCE = {name: _private(_VF, name, "torch._VF") for name in ("lstm", "gru", "rnn_tanh", "rnn_relu")}
_CELL = {name: _private(_VF, name, "torch._VF") for name in ("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell")}
_native_layer_norm = _private(torch, "native_layer_norm", "torch")
_native_layer_norm_out = _private(torch.ops.aten.native_layer_norm, "out", "torch.ops.aten.native_layer_norm")

HX = Union[Tensor, tuple]


def _sequence(name: str, x: Tensor, hx, weights: Sequence[Tensor], batch_sizes: Optional[Tensor], *,
              has_bias: bool, num_layers: int, dropout: float, train: bool, bidirectional: bool):
    """Run one of torch's fused sequence kernels, padded (x (B, T, I), batch first) or packed.

    ``batch_sizes`` given: x is ``PackedSequence.data`` and these are its batch sizes. Returns torch's tuple:
    (outputs, h_n) or, for the LSTM, (outputs, h_n, c_n).
    """
    fn = _SEQUENCE[name]
    weights = list(weights)
    if batch_sizes is None:
        return fn(x, hx, weights, has_bias, num_layers, dropout, train, bidirectional, True)  # batch_first=True
    return fn(x, batch_sizes, hx, weights, has_bias, num_layers, dropout, train, bidirectional)


def lstm(x: Tensor, hx: tuple, weights, batch_sizes: Optional[Tensor] = None, **options):
    """torch._VF.lstm: -> (outputs, h_n, c_n). ``options``: has_bias, num_layers, dropout, train, bidirectional."""
    return _sequence("lstm", x, tuple(hx), weights, batch_sizes, **options)


def gru(x: Tensor, hx: Tensor, weights, batch_sizes: Optional[Tensor] = None, **options):
    """torch._VF.gru: -> (outputs, h_n)."""
    return _sequence("gru", x, hx, weights, batch_sizes, **options)


def rnn_tanh(x: Tensor, hx: Tensor, weights, batch_sizes: Optional[Tensor] = None, **options):
    """torch._VF.rnn_tanh: -> (outputs, h_n)."""
    return _sequence("rnn_tanh", x, hx, weights, batch_sizes, **options)


def rnn_relu(x: Tensor, hx: Tensor, weights, batch_sizes: Optional[Tensor] = None, **options):
    """torch._VF.rnn_relu: -> (outputs, h_n)."""
    return _sequence("rnn_relu", x, hx, weights, batch_sizes, **options)


def lstm_cell(x: Tensor, hx: tuple, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor]):
    """torch._VF.lstm_cell (what torch.nn.LSTMCell calls): x (B, I), hx (h, c) each (B, H) -> (h, c)."""
    return _CELL["lstm_cell"](x, tuple(hx), w_ih, w_hh, b_ih, b_hh)


def gru_cell(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor]
) -> Tensor:
    """torch._VF.gru_cell: x (B, I), h (B, H) -> h (B, H)."""
    return _CELL["gru_cell"](x, h, w_ih, w_hh, b_ih, b_hh)


def rnn_tanh_cell(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor]
) -> Tensor:
    """torch._VF.rnn_tanh_cell: x (B, I), h (B, H) -> h (B, H)."""
    return _CELL["rnn_tanh_cell"](x, h, w_ih, w_hh, b_ih, b_hh)


def rnn_relu_cell(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor]
) -> Tensor:
    """torch._VF.rnn_relu_cell: x (B, I), h (B, H) -> h (B, H)."""
    return _CELL["rnn_relu_cell"](x, h, w_ih, w_hh, b_ih, b_hh)


def cell_kernel(name: str):
    """The bare cell kernel ``torch._VF.<name>`` (``"lstm_cell"``, ``"gru_cell"``, ``"rnn_tanh_cell"``,
    ``"rnn_relu_cell"``) for a hot loop that cannot afford a wrapper's call: the same function and signature as
    the wrappers above (the LSTM's ``hx`` must already be a tuple (h, c))."""
    return _CELL[name]


def native_layer_norm(x: Tensor, normalized_shape: list, weight: Optional[Tensor], bias: Optional[Tensor],
                      eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """torch.native_layer_norm: F.layer_norm's output and also its mean and 1/σ per normalised row.

    x (..., N) with normalized_shape [N] -> (y (..., N), mean (..., 1), rstd (..., 1)).
    """
    return _native_layer_norm(x, normalized_shape, weight, bias, eps)


_ONEDNN_LINEAR_OP = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
ONEDNN_LINEAR = _ONEDNN_LINEAR_OP is not None and torch.backends.mkldnn.is_available()
"""Whether this torch build has oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``) on the CPU."""


def onednn_linear(a: Tensor, w: Tensor) -> Optional[Tensor]:
    """``a @ w.T`` on oneDNN (a (M, K), w (N, K), float32 CPU tensors), or None where this build lacks the op or
    refuses the inputs' layout (the caller then uses the plain product)."""
    if not ONEDNN_LINEAR:
        return None
    try:
        return _ONEDNN_LINEAR_OP(a, w, None, "none", [], "")
    except RuntimeError:
        return None


_ONEDNN_REORDER_LINEAR_WEIGHT_OP = getattr(getattr(torch.ops, "mkldnn", None), "_reorder_linear_weight", None)


def onednn_pack_linear_weight(w: Tensor, batch_size: int) -> Optional[Tensor]:
    """``w`` (N, K) float32 reordered once into the blocked layout oneDNN's linear reads for ``batch_size`` rows (an
    opaque mkldnn tensor for :func:`onednn_linear`), or None where this build lacks the op or refuses the input.
    What ``torch.compile`` does to a frozen ``nn.Linear``; an unpacked weight is reordered again on every call."""
    if not ONEDNN_LINEAR or _ONEDNN_REORDER_LINEAR_WEIGHT_OP is None:
        return None
    try:
        return _ONEDNN_REORDER_LINEAR_WEIGHT_OP(w.detach().contiguous(), batch_size)
    except RuntimeError:
        return None


_STORAGE_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)


def sole_owner(t: Tensor) -> bool:
    """Whether ``t`` is the only tensor (no view, no autograd saved tensor, no numpy array) that holds its memory:
    the reference count of its storage, through torch's private ``torch._C._storage_Use_Count``. False where this
    torch lacks it (a caller then never reuses the memory)."""
    if _STORAGE_USE_COUNT is None:
        return False
    storage = t.untyped_storage()  # this wrapper holds one reference itself
    return _STORAGE_USE_COUNT(storage._cdata) == 2


def native_layer_norm_out(x: Tensor, normalized_shape: list, eps: float, *,
                          out: tuple) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`native_layer_norm` without gain and shift, written into ``out = (y, mean, rstd)`` (shapes as there):
    the normalised rows land in memory the caller keeps (no fresh allocation, no page faults on it)."""
    return _native_layer_norm_out(x, normalized_shape, None, None, eps, out0=out[0], out1=out[1], out2=out[2])

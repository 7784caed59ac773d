"""Recurrent: any cell run over time, stacked in layers, in one or both directions, over variable lengths.

Three ways to run the same parameters, chosen per call (``impl="auto"``):

- ``"torch"``: torch's fused kernels (``torch.nn.LSTM``/``GRU``/``RNN``: oneDNN on the CPU, cuDNN on a GPU),
  with packed sequences for ``lengths``. Used whenever the options are ones those kernels support: no layer
  norm and no recurrent dropout.
- ``"fused"``: rnnlab's own sequence kernel for the LSTM with layer norm or recurrent dropout
  (:mod:`rnnlab.nn.fused_lstm`: the input product hoisted out of the loop, a hand-written backward pass
  through time, numba for the per-step element-wise work).
- ``"loop"``: the cell called step by step under autograd. This is the reference; the tests prove that
  the other two give the same outputs, states and gradients.

Contract (DESIGN.md): ``layer(x, state=None, lengths=None) -> (outputs, state)``, x (B, T, I) batch first,
outputs (B, T, D·H), state (L·D, B, H) (an ``LSTMState`` of two for the LSTM), as torch.nn orders it, so
``state[-1]`` (``state.h[-1]``) is the last layer's final hidden state. Outputs past a row's length are zero;
its final state is the state at its last real step; the backward direction starts at each row's real end.

State dicts use torch.nn's names (``weight_ih_l0``, ``bias_hh_l1_reverse``; layer-norm gains as
``ln_ih_l0.weight``), so a ``torch.nn.LSTM``'s state_dict loads into ``rnnlab.nn.LSTM`` and back.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ._checks import check_input, check_lengths, check_lstm_state, check_state_tensor
from .cell import RecurrentCell
from .gru_cell import GRUCell
from .lstm_cell import LSTMCell
from .rnn_cell import RNNCell
from .state import LSTMState, State, select_layer, stack_layers, where_state

_CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
_IMPLS = ("auto", "torch", "fused", "loop")


class Recurrent(nn.Module):
    """A stack of recurrent layers over time.

    Args:
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        input_size: I. hidden_size: H.
        num_layers: L, stacked; layer l > 0 reads the D·H outputs of layer l-1.
        bidirectional: D = 2, a forward and a backward direction whose outputs are concatenated.
        dropout: dropout on the outputs of every layer but the last (training only), as torch.nn.
        impl: ``"auto"`` | ``"torch"`` | ``"fused"`` | ``"loop"`` (see the module docstring).
        nonlinearity: ``"tanh"`` | ``"relu"`` (``cell="rnn"`` only). forget_bias: LSTM only.
        bias, layer_norm, recurrent_dropout, recurrent_init: the cell options (:class:`RecurrentCell`).

    Shapes: x (B, T, I); lengths (B,) integers in [1, T] or None; state (L·D, B, H) or None (zeros)
    -> outputs (B, T, D·H), state (L·D, B, H).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        impl: str = "auto",
        bias: bool = True,
        nonlinearity: Optional[str] = None,
        forget_bias: Optional[float] = None,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        recurrent_init: str = "orthogonal",
    ) -> None:
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {tuple(_CELLS)}, got {cell!r}")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if impl not in _IMPLS:
            raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
        options = dict(bias=bias, layer_norm=layer_norm, recurrent_dropout=recurrent_dropout, recurrent_init=recurrent_init)
        if nonlinearity is not None:
            if cell != "rnn":
                raise ValueError(f"nonlinearity applies to cell='rnn' only, got it for cell={cell!r}")
            options["nonlinearity"] = nonlinearity
        if forget_bias is not None:
            if cell != "lstm":
                raise ValueError(f"forget_bias applies to cell='lstm' only, got it for cell={cell!r}")
            options["forget_bias"] = forget_bias
        self.cell_type = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.dropout = float(dropout)
        self.impl = impl
        self.layer_norm = bool(layer_norm)
        self.recurrent_dropout = float(recurrent_dropout)
        D = self.num_directions
        # cells[l * D + d]: layer l, direction d (0 forward, 1 backward), torch.nn's order
        self.cells = nn.ModuleList(
            _CELLS[cell](input_size if l == 0 else D * hidden_size, hidden_size, **options)
            for l in range(num_layers)
            for _ in range(D)
        )
        if impl == "torch" and not self._torch_kernel_supports():
            raise ValueError("impl='torch' cannot run layer_norm or recurrent_dropout; use impl='auto', 'fused' or 'loop'")
        if impl == "fused" and cell != "lstm":
            raise ValueError(f"impl='fused' exists for cell='lstm' only, got cell={cell!r}; use impl='auto' or 'loop'")
        self._names = self._torch_style_names()
        self.register_state_dict_post_hook(_to_torch_names)
        self.register_load_state_dict_pre_hook(_from_torch_names)

    # -- the public calls -------------------------------------------------------------------------
    def forward(self, x: Tensor, state: Optional[State] = None, lengths: Optional[Tensor] = None):
        x = check_input(x, self.input_size, ndim=3)
        ref = self.cells[0].weight_ih
        if x.dtype != ref.dtype:
            raise TypeError(f"x must have dtype {ref.dtype} like the layer's parameters, got {x.dtype}")
        B, T, _ = x.shape
        if T == 0:
            raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")
        lengths = check_lengths(lengths, B, T)
        state = self._check_state(state, B, x)
        impl = self._resolve_impl()
        if impl == "torch":
            return self._forward_torch(x, state, lengths)
        return self._forward_cells(x, state, lengths, fused=impl == "fused")

    def step(self, x_t: Tensor, state: Optional[State] = None):
        """Advance one time step, for streaming: x_t (B, I) -> (y_t (B, H), state (L, B, H)).

        The same numbers as ``forward`` over the whole sequence. Unidirectional layers only: the backward
        direction needs the future.
        """
        if self.bidirectional:
            raise ValueError("step() needs a unidirectional layer (bidirectional=False): the backward direction reads the future")
        x_t = check_input(x_t, self.input_size, ndim=2, name="x_t")
        ref = self.cells[0].weight_ih
        if x_t.dtype != ref.dtype:
            raise TypeError(f"x_t must have dtype {ref.dtype} like the layer's parameters, got {x_t.dtype}")
        state = self._check_state(state, x_t.shape[0], x_t)
        fused = self._resolve_impl() == "torch"  # torch's fused cell kernels: half the time of the cell's ops
        new_states = []
        y = x_t
        for l, cell in enumerate(self.cells):
            if l > 0:
                y = F.dropout(y, self.dropout, self.training)
            if fused:
                y, s = _torch_cell_step(cell, y, select_layer(state, l))
            else:
                y, s = cell._step(y, select_layer(state, l), cell.sample_mask(y.shape[0], device=y.device, dtype=y.dtype))
            new_states.append(s)
        return y, stack_layers(new_states)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        """Zeros: (L·D, B, H), or an LSTMState of two such tensors."""
        ref = self.cells[0].weight_hh
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        h = torch.zeros(shape, device=device or ref.device, dtype=dtype or ref.dtype)
        return LSTMState(h, torch.zeros_like(h)) if self.cell_type == "lstm" else h

    # -- paths ------------------------------------------------------------------------------------
    def _torch_kernel_supports(self) -> bool:
        return not self.layer_norm and self.recurrent_dropout == 0.0

    def _resolve_impl(self) -> str:
        if self.impl != "auto":
            return self.impl
        if self._torch_kernel_supports():
            return "torch"
        return "fused" if self.cell_type == "lstm" else "loop"

    def _forward_torch(self, x: Tensor, state: State, lengths: Optional[Tensor]):
        """torch.nn's fused kernel on this layer's parameters (what torch.nn.LSTM.forward does)."""
        weights = [p for cell in self.cells for p in _cell_weights(cell)]
        has_bias = self.cells[0].bias_ih is not None
        args = (weights, has_bias, self.num_layers, self.dropout, self.training, self.bidirectional)
        run = {
            "lstm": torch._VF.lstm,
            "gru": torch._VF.gru,
            "rnn": torch._VF.rnn_relu if getattr(self.cells[0], "nonlinearity", "tanh") == "relu" else torch._VF.rnn_tanh,
        }[self.cell_type]
        hx = tuple(state) if self.cell_type == "lstm" else state
        if lengths is None:
            result = run(x, hx, *args, True)  # batch_first=True
            out, new = result[0], result[1:]
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            # the packed rows are sorted by length; the states follow them there and back
            hx = tuple(h.index_select(1, packed.sorted_indices) for h in hx) if self.cell_type == "lstm" \
                else hx.index_select(1, packed.sorted_indices)
            result = run(packed.data, packed.batch_sizes, hx, *args)
            out_packed = PackedSequence(result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
            out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=x.shape[1])
            new = tuple(h.index_select(1, packed.unsorted_indices) for h in result[1:])
        if self.cell_type == "lstm":
            return out, LSTMState(new[0], new[1])
        return out, new[0]

    def _forward_cells(self, x: Tensor, state: State, lengths: Optional[Tensor], *, fused: bool):
        """Layer by layer, direction by direction: the reference loop, or the fused LSTM kernel."""
        D = self.num_directions
        B = x.shape[0]
        final = []
        out = x
        for l in range(self.num_layers):
            if l > 0:
                out = F.dropout(out, self.dropout, self.training)
            ys = []
            for d in range(D):
                k = l * D + d
                cell = self.cells[k]
                mask = cell.sample_mask(B, device=x.device, dtype=x.dtype)
                xin = _reverse_padded(out, lengths) if d == 1 else out
                run = _run_fused_lstm if fused else _run_cell
                y, s = run(cell, xin, select_layer(state, k), lengths, mask)
                ys.append(_reverse_padded(y, lengths) if d == 1 else y)
                final.append(s)
            out = ys[0] if D == 1 else torch.cat(ys, dim=2)  # (B, T, D·H)
        return out, stack_layers(final)

    # -- checks and names -------------------------------------------------------------------------
    def _check_state(self, state, batch_size: int, ref: Tensor) -> State:
        if state is None:
            return self.initial_state(batch_size, device=ref.device, dtype=ref.dtype)
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        if self.cell_type == "lstm":
            return check_lstm_state(state, shape, ref)
        return check_state_tensor("state", state, shape, ref)

    def _torch_style_names(self) -> dict:
        """{'cells.3.weight_ih': 'weight_ih_l1_reverse', 'cells.0.ln_c.weight': 'ln_c_l0.weight', ...}"""
        D = self.num_directions
        names = {}
        for key, _ in self.cells.named_parameters():
            k, rest = key.split(".", 1)
            head, _, tail = rest.partition(".")
            l, d = divmod(int(k), D)
            new = f"{head}_l{l}{'_reverse' if d else ''}" + (f".{tail}" if tail else "")
            names[f"cells.{key}"] = new
        return names

    def extra_repr(self) -> str:
        s = f"{self.cell_type!r}, {self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.impl != "auto":
            s += f", impl={self.impl!r}"
        return s


class LSTM(Recurrent):
    """``Recurrent("lstm", ...)``: see :class:`Recurrent` and :class:`~rnnlab.nn.lstm_cell.LSTMCell`."""

    def __init__(self, input_size: int, hidden_size: int, **options) -> None:
        super().__init__("lstm", input_size, hidden_size, **options)


class GRU(Recurrent):
    """``Recurrent("gru", ...)``: see :class:`Recurrent` and :class:`~rnnlab.nn.gru_cell.GRUCell`."""

    def __init__(self, input_size: int, hidden_size: int, **options) -> None:
        super().__init__("gru", input_size, hidden_size, **options)


class RNN(Recurrent):
    """``Recurrent("rnn", ...)``: the Elman network; ``nonlinearity="tanh"|"relu"``."""

    def __init__(self, input_size: int, hidden_size: int, *, nonlinearity: str = "tanh", **options) -> None:
        super().__init__("rnn", input_size, hidden_size, nonlinearity=nonlinearity, **options)


# -- helpers ----------------------------------------------------------------------------------------
def _cell_weights(cell: RecurrentCell) -> list[Tensor]:
    ps = [cell.weight_ih, cell.weight_hh]
    if cell.bias_ih is not None:
        ps += [cell.bias_ih, cell.bias_hh]
    return ps


def _torch_cell_step(cell: RecurrentCell, x: Tensor, state: State):
    """One step on torch's fused cell kernel (what torch.nn.LSTMCell & co. call), for cells without options."""
    weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    if isinstance(cell, LSTMCell):
        h, c = torch._VF.lstm_cell(x, tuple(state), *weights)
        return h, LSTMState(h, c)
    if isinstance(cell, GRUCell):
        h = torch._VF.gru_cell(x, state, *weights)
    elif cell.nonlinearity == "relu":
        h = torch._VF.rnn_relu_cell(x, state, *weights)
    else:
        h = torch._VF.rnn_tanh_cell(x, state, *weights)
    return h, h


def _reverse_padded(x: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """Reverse each row's first ``lengths[b]`` steps in time, leaving its padding where it is. (B, T, ...)"""
    if lengths is None:
        return x.flip(1)
    B, T = x.shape[:2]
    t = torch.arange(T).unsqueeze(0)  # (1, T)
    L = lengths.unsqueeze(1)  # (B, 1)
    index = torch.where(t < L, L - 1 - t, t).to(x.device)  # (B, T)
    return x.gather(1, index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x))


def _run_cell(cell: RecurrentCell, x: Tensor, state: State, lengths: Optional[Tensor], mask: Optional[Tensor]):
    """The reference: one cell step at a time. Rows past their length keep their state and output zero."""
    T = x.shape[1]
    valid = None if lengths is None else torch.arange(T).unsqueeze(1).lt(lengths).to(x.device)  # (T, B)
    ys = []
    for t in range(T):
        y, new = cell._step(x[:, t], state, mask)
        if valid is not None:
            new = where_state(valid[t], new, state)
            y = y * valid[t].unsqueeze(1).to(y.dtype)
        state = new
        ys.append(y)
    return torch.stack(ys, dim=1), state  # (B, T, H)


def _run_fused_lstm(cell: LSTMCell, x: Tensor, state: LSTMState, lengths: Optional[Tensor], mask: Optional[Tensor]):
    from .fused_lstm import lstm_sequence

    ln = {}
    if cell.layer_norm:
        ln = dict(ln_ih=cell.ln_ih.weight, ln_hh=cell.ln_hh.weight, ln_c=(cell.ln_c.weight, cell.ln_c.bias), eps=cell.ln_c.eps)
    y, h, c = lstm_sequence(
        x, state.h, state.c, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, mask=mask, lengths=lengths, **ln
    )
    return y, LSTMState(h, c)




def _to_torch_names(module: Recurrent, state_dict, prefix: str, local_metadata) -> None:
    items = list(state_dict.items())
    state_dict.clear()
    for key, value in items:
        if key.startswith(prefix) and key[len(prefix):] in module._names:
            key = prefix + module._names[key[len(prefix):]]
        state_dict[key] = value


def _from_torch_names(module: Recurrent, state_dict, prefix: str, *args) -> None:
    inverse = {v: k for k, v in module._names.items()}
    for key in list(state_dict):
        if key.startswith(prefix) and key[len(prefix):] in inverse:
            state_dict[prefix + inverse[key[len(prefix):]]] = state_dict.pop(key)

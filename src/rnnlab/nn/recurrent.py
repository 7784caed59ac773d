"""Recurrent: any cell run over time, stacked in layers, in one or both directions, over variable lengths.

The cell is a name (``"lstm"``, ``"gru"``, ``"rnn"``: the built-in cells), a cell class, or any factory
``(input_size, hidden_size, **options) -> cell``, as Flax's ``nn.RNN(cell)``: a user's cell that keeps the
cell contract (:mod:`rnnlab.nn.cell`) gets lengths, both directions, stacking, dropout between layers and
``step`` like the built-in ones. Three ways to run the same parameters (``impl="auto"`` picks):

- ``"torch"``: torch's fused kernels (``torch.nn.LSTM``/``GRU``/``RNN``: oneDNN on the CPU, cuDNN on a GPU),
  with packed sequences for ``lengths``. Only for the built-in cells whose options those kernels support: no
  layer norm and no recurrent dropout. A user's cell never runs here, even one that subclasses a built-in.
- ``"numba"``: rnnlab's own sequence kernels for the built-in LSTM, GRU and RNN, any options
  (:mod:`rnnlab.nn.fused_lstm`, :mod:`rnnlab.nn.fused_gru`, :mod:`rnnlab.nn.fused_rnn`: the input product
  hoisted out of the loop, a hand-written backward pass through time, numba for the per-step element-wise work;
  forward only without grad). ``"auto"`` runs it for every cell with layer norm or recurrent dropout, and for
  the plain GRU and RNN on the CPU in float32/float64 where it is faster than torch's (see
  ``Recurrent._impl_for``).
- ``"loop"``: the cell's ``step`` called step by step under autograd (or its ``sequence``, the whole
  sequence at once, where the cell has one: minGRU/minLSTM). This is the reference; the tests prove that
  the other two give the same outputs, states and gradients.

Contract (DESIGN.md): ``layer(x, state=None, lengths=None) -> (outputs, state)``, x (B, T, I) batch first,
outputs (B, T, D·H), state (L·D, B, H) (an ``LSTMState`` of two for the LSTM), as torch.nn orders it, so
``state[-1]`` (``state.h[-1]``) is the last layer's final hidden state. Outputs past a row's length are zero;
its final state is the state at its last real step; the backward direction starts at each row's real end.

State dicts use torch.nn's names (``weight_ih_l0``, ``bias_hh_l1_reverse``; layer-norm gains as
``ln_ih_l0.weight``), so a ``torch.nn.LSTM``'s state_dict loads into ``rnnlab.nn.LSTM`` and back.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Optional, Union, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _torch_kernels as kernels
from ._checks import check_dtype_match, check_input, check_lengths, check_state
from ._fast_step import FastStep
from .cell import RecurrentCell
from .gru_cell import GRUCell
from .lstm_cell import LSTMCell
from .masking import lengths_to_mask
from .rnn_cell import Nonlinearity, RNNCell
from .state import LSTMState, State, map_state, select_layer, stack_layers, where_state

CellName = Literal["rnn", "lstm", "gru"]
Impl = Literal["auto", "torch", "numba", "loop"]
_CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
_IMPLS = get_args(Impl)
_TORCH_SEQUENCE = {"lstm": kernels.lstm, "gru": kernels.gru, "rnn_tanh": kernels.rnn_tanh, "rnn_relu": kernels.rnn_relu}
_TORCH_STEP = ("torch", "auto_gru", "auto_rnn")  # the resolved impls whose step runs torch's cell kernels
_AUTOCAST_NUMBA_MAX_HIDDEN = {"train": 256, "infer": 256}  # GRU/RNN under CPU bf16 autocast: see Recurrent._impl_for
_MAX_LENGTH_GROUPS = 4  # distinct lengths up to which torch's unpacked kernel per group beats the packed one (CPU)
_TORCH_CELL = {"lstm": kernels.lstm_cell, "gru": kernels.gru_cell, "rnn_tanh": kernels.rnn_tanh_cell,
               "rnn_relu": kernels.rnn_relu_cell}


class Recurrent(nn.Module):
    """A stack of recurrent layers over time.

    Args:
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (the built-in cells), or a cell class or factory called as
            ``cell(input_size, hidden_size, **cell_options)`` once per layer and direction; what it builds must
            keep the cell contract of :mod:`rnnlab.nn.cell`.
        input_size: I. hidden_size: H.
        num_layers: L, stacked; layer l > 0 reads the D·H outputs of layer l-1.
        bidirectional: D = 2, a forward and a backward direction whose outputs are concatenated.
        dropout: dropout on the outputs of every layer but the last (training only), as torch.nn.
        impl: ``"auto"`` | ``"torch"`` | ``"numba"`` | ``"loop"`` (see the module docstring).
        cell_options: keyword options for the cell. The built-in cells take ``bias``, ``layer_norm``,
            ``recurrent_dropout``, ``recurrent_init`` (:class:`~rnnlab.nn.cell.RecurrentCell`),
            ``nonlinearity`` (``"rnn"`` only) and ``forget_bias`` (``"lstm"`` only).

    Shapes: x (B, T, I); lengths (B,) integers in [1, T] or None; state (L·D, B, H) or None (zeros)
    -> outputs (B, T, D·H), state (L·D, B, H).
    """

    def __init__(
        self,
        cell: Union[CellName, Callable[..., nn.Module]],
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        impl: Impl = "auto",
        **cell_options,
    ) -> None:
        super().__init__()
        factory, name = _cell_factory(cell, cell_options)
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if impl == "fused":
            raise ValueError("impl='fused' is now called impl='numba' (rnnlab's numba LSTM sequence kernel)")
        if impl not in _IMPLS:
            raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
        self.cell_type = name
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.dropout = float(dropout)
        self.impl = impl
        D = self.num_directions
        # cells[l * D + d]: layer l, direction d (0 forward, 1 backward), torch.nn's order
        self.cells = nn.ModuleList(
            _build_cell(factory, name, input_size if l == 0 else D * hidden_size, hidden_size, cell_options)
            for l in range(num_layers)
            for _ in range(D)
        )
        self._state_type = type(self.cells[0].initial_state(1))
        self._torch_kind = _torch_kind(self.cells[0])  # "lstm" | "gru" | "rnn_tanh" | "rnn_relu" | None
        # an LSTM whose one option is recurrent dropout: outside training the mask is 1, so torch's kernel runs it
        cell0 = self.cells[0]
        self._eval_torch_kind = (
            "lstm" if type(cell0) is LSTMCell and cell0.recurrent_dropout and not cell0.layer_norm else None
        )
        if impl == "torch" and self._torch_kind is None:
            if name in _CELLS:
                raise ValueError(
                    "impl='torch' cannot run layer_norm or recurrent_dropout; use impl='auto', 'numba' or 'loop'"
                )
            raise ValueError(f"impl='torch' runs torch's kernels for the built-in cells only, got cell={name!r}; "
                             "use impl='auto' or 'loop'")
        if impl == "numba" and type(self.cells[0]) not in _NUMBA:
            raise ValueError(f"impl='numba' exists for cell='lstm', 'gru' and 'rnn' only, got cell={name!r}; "
                             "use impl='auto' or 'loop'")
        self._impl = self._resolve_impl()
        self._fast_step = (FastStep(self._torch_kind, self.cells, hidden_size)
                           if self._impl in _TORCH_STEP and not self.bidirectional else None)
        self._names = self._torch_style_names()
        self.register_state_dict_post_hook(_to_torch_names)
        self.register_load_state_dict_pre_hook(_from_torch_names)

    def _apply(self, fn, recurse=True):
        """After ``.cuda()``/``.to()``: on a GPU, the weights that cuDNN's kernel reads become views of one buffer
        (torch.nn.RNNBase does the same; otherwise cuDNN copies them into one at every call)."""
        module = super()._apply(fn, recurse)
        kind = self._torch_kind or self._eval_torch_kind
        if kind is not None:
            kernels.cudnn_flatten_weights(kind, [p for cell in self.cells for p in _cell_weights(cell)],
                                          input_size=self.input_size, hidden_size=self.hidden_size,
                                          num_layers=self.num_layers, bidirectional=self.bidirectional)
        return module

    # -- the public calls -------------------------------------------------------------------------
    def forward(self, x: Tensor, state: Optional[State] = None, lengths: Optional[Tensor] = None):
        x = check_input(x, self.input_size, ndim=3)
        self._check_dtype("x", x)
        B, T, _ = x.shape
        if T == 0:
            raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")
        lengths = check_lengths(lengths, B, T)
        state = self._check_state(state, B, x)
        if B == 0:  # an empty batch gives empty outputs, as torch.nn's layers do (packing rejects nothing to pack)
            return x.new_zeros((0, T, self.num_directions * self.hidden_size)), state
        impl = self._impl_for(x)
        if impl == "torch":
            return self._forward_torch(x, state, lengths)
        if impl == "numba" and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # bf16 autocast where our float32 kernel is faster (see _impl_for): it computes in float32 inside
            with torch.autocast("cpu", enabled=False):
                return self._forward_cells(x.float(), map_state(lambda t: t.float(), state), lengths, numba=True)
        return self._forward_cells(x, state, lengths, numba=impl == "numba")

    def step(self, x_t: Tensor, state: Optional[State] = None):
        """Advance one time step, for streaming: x_t (B, I) -> (y_t (B, H), state (L, B, H)).

        The same numbers as ``forward`` over the whole sequence. Unidirectional layers only: the backward
        direction needs the future. The plain built-in cells run torch's fused cell kernels here with the
        arguments checked once per shape and dtype (:mod:`rnnlab.nn._fast_step`); with one layer, y_t and the
        returned state may share memory (as torch.nn.LSTMCell's h): clone before writing into either in place.
        """
        if self.bidirectional:
            raise ValueError(
                "step() needs a unidirectional layer (bidirectional=False): the backward direction reads the future"
            )
        fast = self._fast_step
        if fast is not None and not (self.dropout and self.training and self.num_layers > 1):
            signature = fast.signature(x_t, state)
            if signature not in fast.checked:
                x_t, state = self._check_step(x_t, state)
                fast.remember(signature)
            return fast(x_t, state)
        x_t, state = self._check_step(x_t, state)
        # torch's fused cell kernels: half the time of the cell's ops
        torch_step = _TORCH_CELL[self._torch_kind] if self._impl in _TORCH_STEP else None
        if self._impl_for(x_t) == "torch" and self._eval_torch_kind is not None:  # dropout LSTM out of training
            torch_step = _TORCH_CELL[self._eval_torch_kind]
        new_states = []
        y = x_t
        for l, cell in enumerate(self.cells):
            if l > 0:
                y = F.dropout(y, self.dropout, self.training)
            s = select_layer(state, l)
            if torch_step is not None:
                y, s = _torch_cell_step(torch_step, cell, y, s)
            else:
                y, s = cell.step(y, s, _sample_mask(cell, y))
            new_states.append(s)
        return y, stack_layers(new_states)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        """Zeros shaped as the cells' initial state, stacked: (L·D, B, H), or an LSTMState of two such tensors."""
        one = self.cells[0].initial_state(batch_size, device=device, dtype=dtype)  # (B, H), zeros by the contract
        return map_state(lambda t: t.new_zeros((len(self.cells), *t.shape)), one)

    # -- paths ------------------------------------------------------------------------------------
    def _resolve_impl(self) -> str:
        """The path ``impl`` stands for; "auto_gru" and "auto_rnn" (the plain GRU and RNN under "auto") are
        decided per call by :meth:`_impl_for`."""
        if self.impl != "auto":
            return self.impl
        if self._torch_kind == "gru":
            return "auto_gru"
        if self._torch_kind in ("rnn_tanh", "rnn_relu"):
            return "auto_rnn"
        if self._torch_kind is not None:
            return "torch"
        if self._eval_torch_kind is not None:
            return "auto_lstm_dropout"
        return "numba" if type(self.cells[0]) in _NUMBA else "loop"

    def _impl_for(self, x: Tensor) -> str:
        """The path for this call. The plain GRU and RNN (tanh or ReLU) under "auto" run the numba kernel on the CPU
        in float32/float64 (outside autocast), torch's kernel elsewhere (cuDNN on a GPU). The plain LSTM stays on
        torch's fused oneDNN kernel, which is faster than ours there.

        Measured at the five shapes of benchmarks/layers.py, interleaved medians of time / time(torch.nn):
        - GRU (benchmarks/fused_gru.py, two threads): the numba GRU is faster than torch's CPU GRU (which has no
          fused kernel and runs per-step ops) at every shape, training and inference, from 1.07x (training,
          (64, 100, 256, 512), matrix products dominate) to 4x (training, (8, 500, 32, 64)).
        - RNN tanh (benchmarks/fused_rnn.py, one thread, 15 rounds, on a loaded machine where two threads waited
          on each other): training 0.41 (8, 500, 32, 64) to 0.86 (64, 100, 256, 512), inference 0.72 to 0.92;
          torch's CPU RNN, like its GRU, runs per-step ops, ours one GEMM and one compiled kernel per step.
        - The recurrent-dropout LSTM (no layer norm) out of training is a plain LSTM (the mask is 1): torch's
          kernel, 1.5-2.3x faster than the numba one at inference (benchmarks/lstm_options.py); in training numba.
        - Under bf16 autocast on the CPU (precision "auto" on an AVX512-BF16 CPU) torch's GRU and RNN run per-step
          ops in bf16, and our float32 kernel stays faster up to a size (``_AUTOCAST_NUMBA_MAX_HIDDEN``; one
          thread, ``benchmarks/peers.py --autocast-kernels``, speed-up over torch.nn float32, numba vs torch bf16):
          GRU training H=64 4.5x vs 0.63x, H=128 1.81 vs 1.44, H=256 1.87-1.99 vs 1.36-1.60, H=512 1.81 vs 3.18;
          inference, with the micro-GEMM and the lean kernels (issue 12, quiet, ``peers.py --cells GRU``): H=64
          5.14 vs 0.51, H=128 3.02 vs 1.71, H=256 2.44-3.20 vs 2.05-2.08, H=512 2.51 vs 3.49 (before them: H=128
          1.44 vs 1.63, H=256 1.46-1.72 vs 1.87-2.09, when inference kept the kernel only up to H=64)."""
        if self._impl == "auto_lstm_dropout":
            return "numba" if self.training else "torch"
        if self._impl not in ("auto_gru", "auto_rnn"):
            return self._impl
        if x.device.type != "cpu":
            return "torch"
        if not torch.is_autocast_enabled("cpu"):
            return "numba" if x.dtype in (torch.float32, torch.float64) else "torch"
        limit = _AUTOCAST_NUMBA_MAX_HIDDEN["train" if torch.is_grad_enabled() else "infer"]
        bf16 = torch.get_autocast_dtype("cpu") == torch.bfloat16 and x.dtype in (torch.float32, torch.bfloat16)
        return "numba" if bf16 and self.hidden_size <= limit else "torch"

    def _forward_torch(self, x: Tensor, state: State, lengths: Optional[Tensor]):
        """torch.nn's fused kernel on this layer's parameters (what torch.nn.LSTM.forward does)."""
        run = _TORCH_SEQUENCE[self._torch_kind or self._eval_torch_kind]
        weights = [p for cell in self.cells for p in _cell_weights(cell)]
        options = dict(has_bias=self.cells[0].bias_ih is not None, num_layers=self.num_layers, dropout=self.dropout,
                       train=self.training, bidirectional=self.bidirectional)
        if lengths is None:
            result = run(x, state, weights, **options)
            out, new = result[0], result[1:]
        elif x.device.type == "cpu" and lengths.unique().numel() <= _MAX_LENGTH_GROUPS:
            out, new = _run_length_groups(run, weights, options, x, state, lengths)
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            # the packed rows are sorted by length; the states follow them there and back
            hx = map_state(lambda h: h.index_select(1, packed.sorted_indices), state)
            result = run(packed.data, hx, weights, packed.batch_sizes, **options)
            out_packed = PackedSequence(result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
            out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=x.shape[1])
            new = tuple(h.index_select(1, packed.unsorted_indices) for h in result[1:])
        return out, (LSTMState(*new) if self._state_type is LSTMState else new[0])

    def _forward_cells(self, x: Tensor, state: State, lengths: Optional[Tensor], *, numba: bool):
        """Layer by layer, direction by direction: the cells (stepped, or whole sequences), or the numba LSTM."""
        D = self.num_directions
        final = []
        out = x
        for l in range(self.num_layers):
            if l > 0:
                out = F.dropout(out, self.dropout, self.training)
            ys = []
            for d in range(D):
                k = l * D + d
                cell = self.cells[k]
                mask = _sample_mask(cell, x)
                if d == 1 and not numba and getattr(cell, "runs_reversed", False):  # minGRU/minLSTM: in the kernel
                    y, s = cell.sequence(out, select_layer(state, k), lengths, mask, reverse=True)
                    ys.append(y)
                    final.append(s)
                    continue
                xin = _reverse_padded(out, lengths) if d == 1 else out
                if numba:
                    run = _NUMBA[type(cell)]
                elif hasattr(cell, "sequence"):
                    run = _run_sequence
                else:
                    run = _run_cell
                y, s = run(cell, xin, select_layer(state, k), lengths, mask)
                ys.append(_reverse_padded(y, lengths) if d == 1 else y)
                final.append(s)
            out = ys[0] if D == 1 else torch.cat(ys, dim=2)  # (B, T, D·H)
        return out, stack_layers(final)

    # -- checks and names -------------------------------------------------------------------------
    def _check_dtype(self, name: str, x: Tensor) -> None:
        cell = self.cells[0]
        ref = cell.weight_ih if isinstance(cell, RecurrentCell) else next(cell.parameters(), None)
        if ref is not None:
            check_dtype_match(name, x, ref)

    def _check_step(self, x_t, state) -> tuple[Tensor, State]:
        """step's arguments checked (messages naming them), the state filled with zeros when None."""
        x_t = check_input(x_t, self.input_size, ndim=2, name="x_t")
        self._check_dtype("x_t", x_t)
        return x_t, self._check_state(state, x_t.shape[0], x_t)

    def _check_state(self, state, batch_size: int, ref: Tensor) -> State:
        if state is None:
            return self.initial_state(batch_size, device=ref.device, dtype=ref.dtype)
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        return check_state(state, self._state_type, shape, ref)

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

    def __init__(self, input_size: int, hidden_size: int, *, nonlinearity: Nonlinearity = "tanh", **options) -> None:
        super().__init__("rnn", input_size, hidden_size, nonlinearity=nonlinearity, **options)


# -- helpers ----------------------------------------------------------------------------------------
def _cell_factory(cell, options: dict) -> tuple[Callable[..., nn.Module], str]:
    """The cell argument -> (factory, name): a built-in by name, or a user's class or factory as given."""
    if isinstance(cell, str):
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {tuple(_CELLS)}, got {cell!r} "
                             "(or pass a cell class or a factory (input_size, hidden_size) -> cell)")
        if "nonlinearity" in options and cell != "rnn":
            raise ValueError(f"nonlinearity applies to cell='rnn' only, got it for cell={cell!r}")
        if "forget_bias" in options and cell != "lstm":
            raise ValueError(f"forget_bias applies to cell='lstm' only, got it for cell={cell!r}")
        return _CELLS[cell], cell
    if isinstance(cell, nn.Module) or not callable(cell):
        raise TypeError(
            f"cell must be 'lstm', 'gru', 'rnn', a cell class or a factory (input_size, hidden_size) -> cell, "
            f"got {type(cell).__name__} (the layer builds one cell per layer and direction: pass the class)"
        )
    return cell, getattr(cell, "__name__", type(cell).__name__)


def _build_cell(factory, name: str, input_size: int, hidden_size: int, options: dict) -> nn.Module:
    """One cell, checked against the parts of the cell contract that the layer calls."""
    cell = factory(input_size, hidden_size, **options)
    if not isinstance(cell, nn.Module):
        raise TypeError(f"cell {name!r} must build a torch.nn.Module, got {type(cell).__name__}")
    missing = [m for m in ("step", "initial_state") if not callable(getattr(cell, m, None))]
    if missing:
        raise TypeError(f"cell {name!r} lacks {' and '.join(missing)} of the cell contract (see rnnlab.nn.cell)")
    if getattr(cell, "hidden_size", None) != hidden_size:
        raise ValueError(f"cell {name!r} must have hidden_size={hidden_size}, got "
                         f"{getattr(cell, 'hidden_size', None)!r}")
    return cell


def _torch_kind(cell: nn.Module) -> Optional[str]:
    """Which torch kernel runs ``cell`` exactly: built-in cells (not subclasses) without LN or recurrent dropout."""
    kind = {LSTMCell: "lstm", GRUCell: "gru", RNNCell: "rnn"}.get(type(cell))
    if kind is None or cell.layer_norm or cell.recurrent_dropout:
        return None
    if kind == "rnn":
        return "rnn_relu" if cell.nonlinearity == "relu" else "rnn_tanh"
    return kind


def _run_length_groups(run, weights: list[Tensor], options: dict, x: Tensor, state: State, lengths: Tensor):
    """torch's kernel once per distinct length, each group's rows cut to their length: (outputs, final state).

    On the CPU torch's packed-sequence kernel is not oneDNN's: it runs per-step ops, 4.7x the time of the unpacked
    kernel on the same batch (the char-LM preset's LSTM 64 -> 256, B=32, k=64, forward + backward, one thread;
    5.6x under bf16 autocast). A
    language model's truncated-BPTT batch has lengths only where a row's chunk stops at a document end (29% of the
    batches of the embedded corpus, typically one row of 32, two distinct lengths), so a few unpacked calls on row
    groups cost far less (benchmarks/bf16_textgen.py --before: the preset trains 1.9x faster in float32, 2.0x in
    bf16). Every group runs exactly to its rows' length: the same outputs, states and gradients.
    """
    B, T = x.shape[:2]
    lengths = lengths.to(x.device)
    outs, finals, groups = [], [], []
    for length in lengths.unique().tolist():
        rows = (lengths == length).nonzero().squeeze(1)  # (B_g,)
        hx = map_state(lambda h, rows=rows: h.index_select(1, rows), state)
        result = run(x.index_select(0, rows)[:, :length], hx, weights, **options)
        outs.append(F.pad(result[0], (0, 0, 0, T - length)))  # (B_g, T, D·H), zeros past the length
        finals.append(result[1:])
        groups.append(rows)
    ref = outs[0]
    out = ref.new_zeros((B, T, ref.shape[2]))
    for rows, y in zip(groups, outs):
        out = out.index_copy(0, rows, y)  # (B, T, D·H)
    new = []
    for i, h in enumerate(finals[0]):
        merged = h.new_zeros((h.shape[0], B, h.shape[2]))
        for rows, final in zip(groups, finals):
            merged = merged.index_copy(1, rows, final[i])  # (L·D, B, H)
        new.append(merged)
    return out, tuple(new)


def _cell_weights(cell: nn.Module) -> list[Tensor]:
    ps = [cell.weight_ih, cell.weight_hh]
    if cell.bias_ih is not None:
        ps += [cell.bias_ih, cell.bias_hh]
    return ps


def _sample_mask(cell: nn.Module, ref: Tensor) -> Optional[Tensor]:
    """The cell's per-sequence mask (recurrent dropout), if it has ``sample_mask``; else None."""
    sample = getattr(cell, "sample_mask", None)
    return None if sample is None else sample(ref.shape[0], device=ref.device, dtype=ref.dtype)


def _torch_cell_step(kernel, cell: nn.Module, x: Tensor, state: State):
    """One step on torch's fused cell kernel (what torch.nn.LSTMCell & co. call), for cells without options."""
    out = kernel(x, state, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    if isinstance(out, tuple):  # the LSTM: (h, c)
        return out[0], LSTMState(*out)
    return out, out


def _reverse_padded(x: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """Reverse each row's first ``lengths[b]`` steps in time, leaving its padding where it is. (B, T, ...)"""
    if lengths is None:
        return x.flip(1)
    B, T = x.shape[:2]
    t = torch.arange(T).unsqueeze(0)  # (1, T)
    L = lengths.unsqueeze(1)  # (B, 1)
    index = torch.where(t < L, L - 1 - t, t).to(x.device)  # (B, T)
    return x.gather(1, index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x))


def _run_cell(cell: nn.Module, x: Tensor, state: State, lengths: Optional[Tensor], mask: Optional[Tensor]):
    """The reference: one cell step at a time. Rows past their length keep their state and output zero."""
    T = x.shape[1]
    valid = lengths_to_mask(lengths, T, device=x.device)  # (B, T) or None
    ys = []
    for t in range(T):
        y, new = cell.step(x[:, t], state, mask)
        if valid is not None:
            new = where_state(valid[:, t], new, state)
            y = y * valid[:, t].unsqueeze(1).to(y.dtype)
        state = new
        ys.append(y)
    return torch.stack(ys, dim=1), state  # (B, T, H)


def _run_sequence(cell: nn.Module, x: Tensor, state: State, lengths: Optional[Tensor], mask: Optional[Tensor]):
    """A cell that runs the whole sequence itself (a parallel scan): the same contract as :func:`_run_cell`."""
    return cell.sequence(x, state, lengths, mask)


def _run_numba_lstm(cell: LSTMCell, x: Tensor, state: LSTMState, lengths: Optional[Tensor], mask: Optional[Tensor]):
    from .fused_lstm import lstm_sequence

    ln = {}
    if cell.layer_norm:
        ln = dict(
            ln_ih=cell.ln_ih.weight, ln_hh=cell.ln_hh.weight, ln_c=(cell.ln_c.weight, cell.ln_c.bias), eps=cell.ln_c.eps
        )
    y, h, c = lstm_sequence(
        x,
        state.h,
        state.c,
        cell.weight_ih,
        cell.weight_hh,
        cell.bias_ih,
        cell.bias_hh,
        mask=mask,
        lengths=lengths,
        **ln,
    )
    return y, LSTMState(h, c)


def _run_numba_rnn(cell: RNNCell, x: Tensor, state: Tensor, lengths: Optional[Tensor], mask: Optional[Tensor]):
    from .fused_rnn import rnn_sequence

    ln = {}
    if cell.layer_norm:
        ln = dict(ln_ih=cell.ln_ih.weight, ln_hh=cell.ln_hh.weight, eps=cell.ln_ih.eps)
    return rnn_sequence(x, state, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh,
                        nonlinearity=cell.nonlinearity, mask=mask, lengths=lengths, **ln)


def _run_numba_gru(cell: GRUCell, x: Tensor, state: Tensor, lengths: Optional[Tensor], mask: Optional[Tensor]):
    from .fused_gru import gru_sequence

    ln = {}
    if cell.layer_norm:
        ln = dict(ln_ih=cell.ln_ih.weight, ln_hh=cell.ln_hh.weight, eps=cell.ln_ih.eps)
    return gru_sequence(x, state, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, mask=mask,
                        lengths=lengths, **ln)


# the built-in cells with a numba sequence kernel
_NUMBA = {LSTMCell: _run_numba_lstm, GRUCell: _run_numba_gru, RNNCell: _run_numba_rnn}


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

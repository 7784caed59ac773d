"""What every recurrent cell shares: the cell contract, torch.nn's parameter layout, the options.

The cell contract: what :class:`~rnnlab.nn.recurrent.Recurrent` needs of a cell, built-in or a user's
(STYLE.md, as in Flax: a cell is one time step). ``Recurrent(MyCell, I, H, ...)`` builds one cell per layer
and direction with ``MyCell(input_size, hidden_size, **options)`` and then calls only these:

- ``hidden_size``: H, the width of y_t and of every tensor of the state.
- ``forward(x_t, state=None, *, mask=None) -> (y_t, state)``: one step, checked (shapes, dtypes);
  x_t (B, I), y_t (B, H); ``state=None`` means zeros.
- ``step(x_t, state, mask) -> (y_t, state)``: the same step, unchecked: the layer has checked the whole
  sequence once and calls this T times; ``state`` is never None here.
- ``initial_state(batch_size, *, device=None, dtype=None) -> state``: zeros; a tensor (B, H), or a NamedTuple
  of such tensors (the LSTM's ``LSTMState(h, c)``). None means the parameters' device and dtype.
- ``sample_mask(batch_size, *, device=None, dtype=None) -> mask or None`` (optional): a per-sequence mask
  (recurrent dropout) that the layer draws once per sequence and direction and passes to every ``step``.
  Without it the layer passes ``mask=None``.
- ``sequence(x, state, lengths) -> (outputs, state)`` (optional, unchecked): the whole sequence at once,
  x (B, T, I) -> outputs (B, T, H) zero past each row's length, and the state at its last real step. The
  layer uses it instead of stepping ``step`` (minGRU/minLSTM: a parallel scan).

:class:`RecurrentCell` is the base of the built-in cells (Elman, LSTM, GRU). Parameters are named and laid out
as in ``torch.nn`` (``weight_ih`` (G·H, I), ``weight_hh`` (G·H, H), ``bias_ih``, ``bias_hh`` (G·H,), with
G = ``num_gates`` gates stacked in torch's order), so that a state_dict loads both ways.

Options, keyword-only, shared by all built-in cells:

- ``layer_norm``: layer normalisation of the input and the recurrent pre-activations (Ba et al., 2016,
  "Layer Normalization", §3.1), each over the whole G·H vector with a gain and no shift (the biases
  ``bias_ih``/``bias_hh`` are the shift, so that a state_dict keeps torch's keys).
- ``recurrent_dropout``: variational dropout on h_{t-1} where it enters the recurrent product (Gal &
  Ghahramani, 2016, "A Theoretically Grounded Application of Dropout in RNNs", §4): one mask per sequence,
  shared by all gates and all time steps, inverted scaling 1/(1-p), active only in training.
- ``recurrent_init``: ``"orthogonal"`` (default; Saxe et al., 2014, one orthogonal H×H block per gate),
  ``"uniform"`` (torch.nn's U(-1/√H, 1/√H)) or ``"identity"`` (one identity block per gate: with the ReLU RNN this
  is the IRNN of Le et al., 2015, "A Simple Way to Initialize Recurrent Networks of Rectified Linear Units").
  Input weights are U(-1/√H, 1/√H) as in torch.nn; biases are zero
  (the LSTM's forget bias aside).
"""
from __future__ import annotations

import math
from typing import Literal, Optional, get_args

import torch
from torch import Tensor, nn

from ._checks import check_dtype_match, check_input, check_state_tensor
from .state import State

RecurrentInit = Literal["orthogonal", "uniform", "identity"]
_INITS = get_args(RecurrentInit)


class RecurrentCell(nn.Module):
    """Base class of the built-in cells: parameters, options, masks and input checks.

    Subclasses set ``num_gates`` and implement ``step`` (the equations); ``forward`` checks and calls it.
    """

    num_gates: int = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        bias: bool = True,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        recurrent_init: RecurrentInit = "orthogonal",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ValueError(f"recurrent_dropout must be in [0, 1), got {recurrent_dropout!r}")
        if recurrent_init not in _INITS:
            raise ValueError(f"recurrent_init must be one of {_INITS}, got {recurrent_init!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.layer_norm = bool(layer_norm)
        self.recurrent_dropout = float(recurrent_dropout)
        self.recurrent_init = recurrent_init
        gh = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_size))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gh))
            self.bias_hh = nn.Parameter(torch.empty(gh))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if self.layer_norm:
            self.ln_ih = nn.LayerNorm(gh, eps=eps, bias=False)
            self.ln_hh = nn.LayerNorm(gh, eps=eps, bias=False)
        self.reset_parameters()

    # -- parameters -------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        H = self.hidden_size
        bound = 1.0 / math.sqrt(H)
        with torch.no_grad():
            nn.init.uniform_(self.weight_ih, -bound, bound)
            if self.recurrent_init == "orthogonal":
                for block in self.weight_hh.split(H, dim=0):  # one H×H block per gate
                    nn.init.orthogonal_(block)
            elif self.recurrent_init == "identity":
                for block in self.weight_hh.split(H, dim=0):
                    nn.init.eye_(block)
            else:
                nn.init.uniform_(self.weight_hh, -bound, bound)
            if self.bias_ih is not None:
                self.bias_ih.zero_()
                self.bias_hh.zero_()
            if self.layer_norm:
                for m in self.modules():
                    if isinstance(m, nn.LayerNorm):
                        m.reset_parameters()

    # -- state and masks --------------------------------------------------------------------------
    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        """Zeros: (B, H)."""
        device = device if device is not None else self.weight_hh.device
        dtype = dtype if dtype is not None else self.weight_hh.dtype
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def sample_mask(self, batch_size: int, *, device=None, dtype=None) -> Optional[Tensor]:
        """The variational dropout mask on h_{t-1}, (B, H), drawn once per sequence; None when off.

        Values are 0 and 1/(1-p). When you loop a cell yourself, draw it once before the loop and pass
        it to every step; a cell called without a mask in training draws a fresh one for that step.
        """
        p = self.recurrent_dropout
        if not self.training or p == 0.0:
            return None
        device = device if device is not None else self.weight_hh.device
        dtype = dtype if dtype is not None else self.weight_hh.dtype
        keep = torch.empty(batch_size, self.hidden_size, device=device, dtype=dtype).bernoulli_(1.0 - p)
        return keep.div_(1.0 - p)

    # -- the step ---------------------------------------------------------------------------------
    def forward(self, x_t: Tensor, state: Optional[State] = None, *, mask: Optional[Tensor] = None):
        """One step: x_t (B, I), state (B, H) or LSTMState, None meaning zeros -> (y_t (B, H), state)."""
        x_t = check_input(x_t, self.input_size, ndim=2, name="x_t")
        check_dtype_match("x_t", x_t, self.weight_ih)
        B = x_t.shape[0]
        state = self._check_state(state, B, x_t)
        if mask is None:
            mask = self.sample_mask(B, device=x_t.device, dtype=x_t.dtype)
        elif tuple(mask.shape) != (B, self.hidden_size):
            raise ValueError(f"mask must have shape ({B}, {self.hidden_size}), got {tuple(mask.shape)}")
        return self.step(x_t, state, mask)

    def _check_state(self, state, batch_size: int, ref: Tensor) -> State:
        if state is None:
            return self.initial_state(batch_size, device=ref.device, dtype=ref.dtype)
        return check_state_tensor("state", state, (batch_size, self.hidden_size), ref)

    def step(self, x_t: Tensor, state: State, mask: Optional[Tensor]):
        """One step, unchecked (the layer's inner loop): x_t (B, I), state not None, mask (B, H) or None."""
        raise NotImplementedError

    # -- shared pieces of the equations -----------------------------------------------------------
    def _input_preact(self, x: Tensor) -> Tensor:
        """W_ih x (+ LN), for one step (B, I) or all steps at once (B, T, I) -> (..., G·H). No bias."""
        a = x @ self.weight_ih.t()
        return self.ln_ih(a) if self.layer_norm else a

    def _recurrent_preact(self, h: Tensor, mask: Optional[Tensor]) -> Tensor:
        """W_hh (h ⊙ m) (+ LN) -> (B, G·H). No bias."""
        if mask is not None:
            h = h * mask
        a = h @ self.weight_hh.t()
        return self.ln_hh(a) if self.layer_norm else a

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias_ih is None:
            s += ", bias=False"
        if self.layer_norm:
            s += ", layer_norm=True"
        if self.recurrent_dropout:
            s += f", recurrent_dropout={self.recurrent_dropout}"
        return s


"""The streaming fast path of ``Recurrent.step``: torch's fused cell kernels called straight on the weights.

At batch 1 a step of a small layer costs tens of microseconds of kernel, so every microsecond of Python around
it shows (issue 12). The general ``Recurrent.step`` checks x_t and the state on every call, takes each layer's
state out with ``select_layer`` and stacks them back with ``stack_layers``, and reaches the weights through
``nn.Module.__getattr__``; that was 30-50 % on top of ``torch.nn.LSTMCell``. This path, for the plain built-in
cells that torch's kernels run (``torch._VF.lstm_cell`` & co., what ``torch.nn.LSTMCell`` calls), unidirectional,
without dropout between layers in training:

- checks once per call *signature* (the shapes and dtypes of x_t and the state, the state's type, the weights'
  dtype): the layer runs its full checks, with their messages, the first time it sees a signature and
  remembers that it passed; a bad argument has a signature of its own, so it still gets the message;
- reads the weights from each cell's ``_parameters`` dict (the live entries: ``load_state_dict``, ``.to()`` and
  assigning a new Parameter all land there);
- splits the state with one ``unbind`` per tensor and builds the new one with one ``torch.stack`` (one
  ``unsqueeze`` for a single layer), nothing else per layer.

With one layer the returned state is a view of the step's output (``y_t`` and ``state[0]`` share memory, as
``torch.nn.LSTMCell``'s h does with itself).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from . import _torch_kernels as kernels
from .state import LSTMState

_MAX_SIGNATURES = 64  # a server sees a handful of batch sizes; forget them all past this many


class FastStep:
    """``step(x_t, state)`` for a stack of plain built-in cells of one kind on torch's cell kernel.

    ``kind``: ``"lstm"`` | ``"gru"`` | ``"rnn_tanh"`` | ``"rnn_relu"``; ``cells``: the layer's cells, one per layer.
    """

    def __init__(self, kind: str, cells: nn.ModuleList, hidden_size: int) -> None:
        self.kernel = kernels.cell_kernel(f"{kind}_cell")
        self.lstm = kind == "lstm"
        self.hidden_size = hidden_size
        self.params = [cell._parameters for cell in cells]  # live dicts: name -> Parameter (or None: no bias)
        self.checked: set = set()

    # -- checks, once per signature ---------------------------------------------------------------
    def signature(self, x_t, state) -> Optional[tuple]:
        """What the layer's checks depend on, cheaply: shapes and dtypes of x_t, of the state (and its type) and
        the weights' dtype. None for arguments this path does not take (not tensors, odd state types): those go
        through the full checks on every call."""
        if type(x_t) is not Tensor:
            return None
        w = self.params[0]["weight_ih"].dtype
        if state is None:
            return (x_t.shape, x_t.dtype, w)
        if self.lstm:
            if type(state) not in (LSTMState, tuple) or len(state) != 2:
                return None
            h, c = state
            if type(h) is not Tensor or type(c) is not Tensor:
                return None
            return (x_t.shape, x_t.dtype, w, h.shape, h.dtype, c.shape, c.dtype)
        if type(state) is not Tensor:
            return None
        return (x_t.shape, x_t.dtype, w, state.shape, state.dtype)

    def remember(self, signature: Optional[tuple]) -> None:
        if signature is None:
            return
        if len(self.checked) >= _MAX_SIGNATURES:
            self.checked.clear()
        self.checked.add(signature)

    # -- the step ---------------------------------------------------------------------------------
    def __call__(self, x_t: Tensor, state):
        """x_t (B, I), state (L, B, H) (an LSTMState of two for the LSTM) or None -> (y_t (B, H), state)."""
        return self._lstm(x_t, state) if self.lstm else self._single(x_t, state)

    def _lstm(self, x_t: Tensor, state):
        kernel, params = self.kernel, self.params
        if state is None:
            zeros = x_t.new_zeros((x_t.shape[0], self.hidden_size))  # (B, H): the kernel does not write its inputs
            hs = cs = (zeros,) * len(params)
        else:
            hs, cs = state[0].unbind(0), state[1].unbind(0)  # L x (B, H)
        if len(params) == 1:
            p = params[0]
            h, c = kernel(x_t, (hs[0], cs[0]), p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            return h, LSTMState(h.unsqueeze(0), c.unsqueeze(0))  # (1, B, H) each
        y, new_h, new_c = x_t, [], []
        for p, h, c in zip(params, hs, cs):
            y, c = kernel(y, (h, c), p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            new_h.append(y)
            new_c.append(c)
        return y, LSTMState(torch.stack(new_h), torch.stack(new_c))  # (L, B, H) each

    def _single(self, x_t: Tensor, state):
        """GRU and Elman RNN: a state of one tensor."""
        kernel, params = self.kernel, self.params
        if state is None:
            hs = (x_t.new_zeros((x_t.shape[0], self.hidden_size)),) * len(params)
        else:
            hs = state.unbind(0)  # L x (B, H)
        if len(params) == 1:
            p = params[0]
            h = kernel(x_t, hs[0], p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            return h, h.unsqueeze(0)  # (1, B, H)
        y, new = x_t, []
        for p, h in zip(params, hs):
            y = kernel(y, h, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            new.append(y)
        return y, torch.stack(new)  # (L, B, H)

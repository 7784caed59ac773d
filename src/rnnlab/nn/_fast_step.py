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
  ``unsqueeze`` for a single layer), nothing else per layer;
- with one layer, remembers the state it returned last (outside autograd): when that same state comes back, as
  in every streaming loop, its (B, H) tensors are at hand without the ``unbind``.

With one layer the returned state is a view of the step's output (``y_t`` and ``state[0]`` share memory, as
``torch.nn.LSTMCell``'s h does with itself).

Many streams at once (a server stepping its sessions' rows of a ``StateTable``): outside autograd, for a float32
LSTM or GRU layer on the CPU whose step is a large product (B·GH·(I+H) ≥ :data:`BATCHED_MIN_MACS`, G gates), the
gates come from two oneDNN products on weights reordered once into oneDNN's blocked layout (kept until the weight
changes) instead of ``torch._VF.lstm_cell`` / ``gru_cell``, whose products run on MKL (slower on the AMD EPYC this
was measured on): LSTM at B = 256, (I, H) = (64, 256) / (512, 512) / (1024, 1024), 0.48 / 0.48 / 0.45 of the
time, one thread. The element-wise part is a few torch ops, tanh as 2σ(2x) − 1 (torch's CPU tanh is several
times slower than its sigmoid here).
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import torch
from torch import Tensor, nn

from . import _gemm
from . import _torch_kernels as kernels
from .state import LSTMState

_MAX_SIGNATURES = 64  # a server sees a handful of batch sizes; forget them all past this many
BATCHED_MIN_MACS = 2_500_000
"""Per layer and step, from this many multiply-adds (B·GH·(I+H)) an LSTM/GRU step outside autograd runs its products
on oneDNN with packed weights (see the module docstring); below it torch's cell kernel, cheaper to call."""


class FastStep:
    """``step(x_t, state)`` for a stack of plain built-in cells of one kind on torch's cell kernel.

    ``kind``: ``"lstm"`` | ``"gru"`` | ``"rnn_tanh"`` | ``"rnn_relu"``; ``cells``: the layer's cells, one per layer.
    """

    def __init__(self, kind: str, cells: nn.ModuleList, hidden_size: int) -> None:
        self.kernel = kernels.cell_kernel(f"{kind}_cell")
        self.lstm = kind == "lstm"
        self.gates = {"lstm": 4, "gru": 3}.get(kind, 0)  # the oneDNN path covers the LSTM and the GRU
        self.hidden_size = hidden_size
        self.params = [cell._parameters for cell in cells]  # live dicts: name -> Parameter (or None: no bias)
        self.checked: set = set()
        self._packed: dict = {}  # (layer, weight name) -> ((data_ptr, version), the weight packed for oneDNN)
        self._torch_kernels = [self.kernel] * len(cells)
        onednn_cell = self._lstm_cell_onednn if self.lstm else self._gru_cell_onednn
        self._onednn_kernels = [partial(onednn_cell, layer) for layer in range(len(cells))]
        # one layer: (the state returned last, its (B, H) tensors), or None; see _layer_states
        self.last: Optional[tuple] = None

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

    def _remember(self, state, *tensors: Tensor):
        """Keep a one-layer ``state`` just returned with its (B, H) tensors, unless they carry a graph (a module
        must not keep a graph alive between calls)."""
        self.last = None if tensors[0].requires_grad else (state, tensors)
        return state

    def _known(self, state) -> Optional[tuple]:
        """The (B, H) tensors of ``state`` if it is the one-layer state returned last and still views them (a
        ``.data =`` or ``set_`` since would have moved its storage)."""
        last = self.last
        if last is None or state is not last[0]:
            return None
        parts = (state,) if type(state) is Tensor else state
        for whole, part in zip(parts, last[1]):
            if whole.data_ptr() != part.data_ptr():
                return None
        return last[1]

    def _batched(self, x_t: Tensor) -> bool:
        """Whether this LSTM or GRU step runs the oneDNN products (see the module docstring). The size is tested
        first: a step at batch 1 pays one multiplication for this."""
        H = self.hidden_size
        if x_t.shape[0] * self.gates * H * (x_t.shape[1] + H) < BATCHED_MIN_MACS:
            return False
        return (_gemm._ONEDNN and not torch.is_grad_enabled() and x_t.dtype == torch.float32
                and x_t.device.type == "cpu")

    def _kernels(self, x_t: Tensor) -> list:
        """The cell step of each layer for this call: torch's cell kernel, or the oneDNN one (same arguments)."""
        return self._onednn_kernels if self._batched(x_t) else self._torch_kernels

    def _pack(self, layer: int, name: str, w: Tensor) -> Tensor:
        key = (w.data_ptr(), w._version)
        entry = self._packed.get((layer, name))
        if entry is None or entry[0] != key:
            entry = self._packed[(layer, name)] = (key, _gemm.pack(w, 64))
        return entry[1]

    def _lstm_cell_onednn(self, layer: int, x: Tensor, hc: tuple, w_ih, w_hh, b_ih, b_hh):
        """One LSTM cell step, x (B, I), hc ((B, H), (B, H)) -> (h, c), with the products on oneDNN; the arguments
        of torch's cell kernel after the layer's index."""
        h, c = hc
        g = _gemm.linear_packed(x, self._pack(layer, "weight_ih", w_ih))  # (B, 4H)
        g += _gemm.linear_packed(h, self._pack(layer, "weight_hh", w_hh))
        if b_ih is not None:
            g += b_ih + b_hh
        i, f, gg, o = g.chunk(4, 1)
        c_new = torch.sigmoid(f) * c
        c_new.addcmul_(torch.sigmoid(i), torch.sigmoid(gg * 2).mul_(2).sub_(1))  # + σ(i) tanh(g)
        h_new = torch.sigmoid(c_new * 2).mul_(2).sub_(1).mul_(torch.sigmoid(o))  # σ(o) tanh(c)
        return h_new, c_new

    def _gru_cell_onednn(self, layer: int, x: Tensor, h: Tensor, w_ih, w_hh, b_ih, b_hh) -> Tensor:
        """One GRU cell step (torch's equations), x (B, I), h (B, H) -> h', with the products on oneDNN; the
        arguments of torch's cell kernel after the layer's index."""
        gi = _gemm.linear_packed(x, self._pack(layer, "weight_ih", w_ih))  # (B, 3H)
        gh = _gemm.linear_packed(h, self._pack(layer, "weight_hh", w_hh))
        if b_ih is not None:
            gi += b_ih
            gh += b_hh
        i_r, i_z, i_n = gi.chunk(3, 1)
        h_r, h_z, h_n = gh.chunk(3, 1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.sigmoid((i_n + r * h_n).mul_(2)).mul_(2).sub_(1)  # tanh(i_n + r ⊙ h_n)
        return n.addcmul_(z, h - n)  # (1 − z) ⊙ n + z ⊙ h

    def _lstm(self, x_t: Tensor, state):
        params, kernels_ = self.params, self._kernels(x_t)
        if len(params) == 1:
            p = params[0]
            if state is None:
                h0 = c0 = x_t.new_zeros((x_t.shape[0], self.hidden_size))  # (B, H): the kernel does not write it
            else:
                h0, c0 = self._known(state) or (state[0][0], state[1][0])
            h, c = kernels_[0](x_t, (h0, c0), p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            return h, self._remember(LSTMState(h.unsqueeze(0), c.unsqueeze(0)), h, c)  # (1, B, H) each
        if state is None:
            zeros = x_t.new_zeros((x_t.shape[0], self.hidden_size))  # (B, H)
            hs = cs = (zeros,) * len(params)
        else:
            hs, cs = state[0].unbind(0), state[1].unbind(0)  # L x (B, H)
        y, new_h, new_c = x_t, [], []
        for kernel, p, h, c in zip(kernels_, params, hs, cs):
            y, c = kernel(y, (h, c), p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            new_h.append(y)
            new_c.append(c)
        return y, LSTMState(torch.stack(new_h), torch.stack(new_c))  # (L, B, H) each

    def _single(self, x_t: Tensor, state):
        """GRU and Elman RNN: a state of one tensor."""
        params, kernels_ = self.params, self._kernels(x_t)
        if len(params) == 1:
            p = params[0]
            if state is None:
                h0 = x_t.new_zeros((x_t.shape[0], self.hidden_size))  # (B, H)
            else:
                known = self._known(state)
                h0 = state[0] if known is None else known[0]
            h = kernels_[0](x_t, h0, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            return h, self._remember(h.unsqueeze(0), h)  # (1, B, H)
        if state is None:
            hs = (x_t.new_zeros((x_t.shape[0], self.hidden_size)),) * len(params)
        else:
            hs = state.unbind(0)  # L x (B, H)
        y, new = x_t, []
        for kernel, p, h in zip(kernels_, params, hs):
            y = kernel(y, h, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            new.append(y)
        return y, torch.stack(new)  # (L, B, H)

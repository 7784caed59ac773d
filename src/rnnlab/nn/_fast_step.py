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
LSTM or GRU layer on the CPU whose step is a large product (B·GH·(I+H) ≥ :data:`BATCHED_MIN_MACS`, G gates), each
layer's step is two oneDNN products on weights reordered once into oneDNN's blocked layout (kept until the weight
changes) and one numba kernel for the biases and the gates (:mod:`rnnlab.nn._step_kernels`) that
writes the new state straight into the (L, B, H) tensors returned, instead of ``torch._VF.lstm_cell`` /
``gru_cell``, whose products run on MKL (slower on the AMD EPYC this was measured on). The GRU at B = 256,
(I, H) = (64, 256), one thread: the products ≈ 630 µs a step, the kernel ≈ 50 µs where the 9 torch ops it replaces
took ≈ 120 µs (``benchmarks/batched_step.py``, ``benchmarks/peers.py``: JAX's jitted step fuses its gates the same
way).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from . import _gemm
from . import _torch_kernels as kernels
from ._step_kernels import gru_gates, lstm_gates
from .state import LSTMState

_MAX_SIGNATURES = 64  # a server sees a handful of batch sizes; forget them all past this many
_ONE = {torch.float32: np.float32(1), torch.float64: np.float64(1)}  # the kernels' ``one``, in the state's dtype
BATCHED_MIN_MACS = 1_500_000
"""Per layer and step, from this many multiply-adds (B·GH·(I+H)) an LSTM/GRU step outside autograd with at least
:data:`BATCHED_MIN_ROWS` rows runs its products on oneDNN with packed weights and its gates in one numba kernel (see
the module docstring); below it torch's cell kernel, cheaper to call. Measured (one thread, time of torch's cell
kernel / this path, ``benchmarks/batched_step.py``): (I, H) = (64, 128), B = 16, 1.2M: 0.96 (GRU); B = 16, 1.6M:
1.14 (LSTM); B = 32, 2.4M: 1.23; (64, 256), B = 4, 1.0–1.3M: 1.09–1.13; B = 1–2, 0.25–0.66M: 0.58–0.90."""
BATCHED_MIN_ROWS = 4
FEW_ROWS_MIN_MACS = 2_500_000
"""With fewer than :data:`BATCHED_MIN_ROWS` rows (a product of one or two rows reads the whole weight for little
work), the threshold of :data:`BATCHED_MIN_MACS` is this instead."""


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
        self._packed: dict = {}  # (layer, "x" | "h") -> ((data_ptr, version), the weight packed for oneDNN)
        self._zeros: Optional[Tensor] = None  # the bias of a layer without biases
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
        if self._batched(x_t):
            return self.lstm_batched(x_t, state) if self.lstm else self.gru_batched(x_t, state)
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
        H, B = self.hidden_size, x_t.shape[0]
        macs = B * self.gates * H * (x_t.shape[1] + H)
        if macs < BATCHED_MIN_MACS or (B < BATCHED_MIN_ROWS and macs < FEW_ROWS_MIN_MACS):
            return False
        return (_gemm._ONEDNN and not torch.is_grad_enabled() and x_t.dtype == torch.float32
                and x_t.device.type == "cpu")

    def _pack(self, layer: int, name: str, w: Tensor) -> Tensor:
        key = (w.data_ptr(), w._version)
        entry = self._packed.get((layer, name))
        if entry is None or entry[0] != key:
            entry = self._packed[(layer, name)] = (key, _gemm.pack(w, 64))
        return entry[1]

    def _product(self, layer: int, name: str, a: Tensor, w: Tensor) -> Tensor:
        """a wᵀ, a (B, K), w (G, K) -> (B, G) a new tensor; ``name``: "x" or "h", the layer's product. On oneDNN with
        the weight packed once (float32), else ``torch.mm`` (float64: the exact path the tests compare)."""
        if a.dtype == torch.float32 and _gemm._ONEDNN:
            return _gemm.linear_packed(a, self._pack(layer, name, w))
        return a @ w.t()

    def _bias(self, b: Optional[Tensor], like: Tensor) -> np.ndarray:
        """A bias as the kernels read it: (G,) numpy, zeros for a layer without biases."""
        if b is None:
            G = self.gates * self.hidden_size
            if self._zeros is None or self._zeros.dtype != like.dtype:
                self._zeros = torch.zeros(G, dtype=like.dtype)
            b = self._zeros
        return b.detach().numpy()

    def _layer_inputs(self, x_t: Tensor, state, parts: int) -> list:
        """Each layer's previous state as ``parts`` (B, H) tensors (h, or h and c), outside autograd's graph."""
        L = len(self.params)
        if state is None:
            zeros = x_t.new_zeros((x_t.shape[0], self.hidden_size))  # (B, H): nothing writes it
            return [(zeros,) * parts] * L
        whole = (state,) if parts == 1 else tuple(state)
        known = self._known(state) if L == 1 else None
        if known is not None:
            return [known]
        per_part = [t.detach().contiguous().unbind(0) for t in whole]  # parts x L x (B, H)
        return list(zip(*per_part))

    def gru_batched(self, x_t: Tensor, state):
        """The GRU step of many rows: per layer two products (oneDNN) and :func:`gru_gates`, which adds the biases
        and writes h' straight into the returned (L, B, H) state. x_t (B, I); float32 (oneDNN) or float64."""
        params, one = self.params, _ONE[x_t.dtype]
        out = x_t.new_empty((len(params), x_t.shape[0], self.hidden_size))  # (L, B, H): the new state
        y = x_t
        for layer, (p, (h,)) in enumerate(zip(params, self._layer_inputs(x_t, state, 1))):
            xp = self._product(layer, "x", y, p["weight_ih"])  # (B, 3H)
            hp = self._product(layer, "h", h, p["weight_hh"])  # (B, 3H)
            y = out[layer]  # (B, H)
            gru_gates(xp.numpy(), self._bias(p["bias_ih"], h), hp.numpy(), self._bias(p["bias_hh"], h), h.numpy(),
                      y.numpy(), one)
        return y, (self._remember(out, y) if len(params) == 1 else out)

    def lstm_batched(self, x_t: Tensor, state):
        """The LSTM step of many rows, as :meth:`gru_batched` with :func:`lstm_gates`."""
        params, one = self.params, _ONE[x_t.dtype]
        # (L, B, H) each: the new state, in one allocation (a fresh one costs page faults, two cost twice as many)
        h_out, c_out = x_t.new_empty((2, len(params), x_t.shape[0], self.hidden_size)).unbind(0)
        y = x_t
        for layer, (p, (h, c)) in enumerate(zip(params, self._layer_inputs(x_t, state, 2))):
            xp = self._product(layer, "x", y, p["weight_ih"])  # (B, 4H)
            hp = self._product(layer, "h", h, p["weight_hh"])  # (B, 4H)
            y = h_out[layer]  # (B, H)
            lstm_gates(xp.numpy(), self._bias(p["bias_ih"], c), hp.numpy(), self._bias(p["bias_hh"], c), c.numpy(),
                       y.numpy(), c_out[layer].numpy(), one)
        state = LSTMState(h_out, c_out)
        return y, (self._remember(state, y, c_out[0]) if len(params) == 1 else state)

    def _lstm(self, x_t: Tensor, state):
        params, kernel = self.params, self.kernel
        if len(params) == 1:
            p = params[0]
            if state is None:
                h0 = c0 = x_t.new_zeros((x_t.shape[0], self.hidden_size))  # (B, H): the kernel does not write it
            else:
                h0, c0 = self._known(state) or (state[0][0], state[1][0])
            h, c = kernel(x_t, (h0, c0), p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            return h, self._remember(LSTMState(h.unsqueeze(0), c.unsqueeze(0)), h, c)  # (1, B, H) each
        if state is None:
            zeros = x_t.new_zeros((x_t.shape[0], self.hidden_size))  # (B, H)
            hs = cs = (zeros,) * len(params)
        else:
            hs, cs = state[0].unbind(0), state[1].unbind(0)  # L x (B, H)
        y, new_h, new_c = x_t, [], []
        for p, h, c in zip(params, hs, cs):
            y, c = kernel(y, (h, c), p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            new_h.append(y)
            new_c.append(c)
        return y, LSTMState(torch.stack(new_h), torch.stack(new_c))  # (L, B, H) each

    def _single(self, x_t: Tensor, state):
        """GRU and Elman RNN: a state of one tensor."""
        params, kernel = self.params, self.kernel
        if len(params) == 1:
            p = params[0]
            if state is None:
                h0 = x_t.new_zeros((x_t.shape[0], self.hidden_size))  # (B, H)
            else:
                known = self._known(state)
                h0 = state[0] if known is None else known[0]
            h = kernel(x_t, h0, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            return h, self._remember(h.unsqueeze(0), h)  # (1, B, H)
        if state is None:
            hs = (x_t.new_zeros((x_t.shape[0], self.hidden_size)),) * len(params)
        else:
            hs = state.unbind(0)  # L x (B, H)
        y, new = x_t, []
        for p, h in zip(params, hs):
            y = kernel(y, h, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
            new.append(y)
        return y, torch.stack(new)  # (L, B, H)

"""Elman RNN cell (Elman, 1990, "Finding Structure in Time"), tanh or ReLU, as torch.nn.RNNCell."""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import Tensor

from .cell import RecurrentCell

Nonlinearity = Literal["tanh", "relu"]
_NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


class RNNCell(RecurrentCell):
    r"""One step of the Elman network.

    .. math::
        h_t = \phi\big(W_{ih} x_t + b_{ih} + W_{hh} (h_{t-1} \odot m) + b_{hh}\big)

    with φ = tanh or ReLU, m the recurrent dropout mask (1 when off). With ``layer_norm`` the two products
    are normalised separately: φ(LN(W_ih x_t) + b_ih + LN(W_hh h_{t-1}) + b_hh).

    Shapes: x_t (B, I), state h (B, H) (None means zeros) -> (y_t = h_t (B, H), h_t).
    """

    num_gates = 1

    def __init__(self, input_size: int, hidden_size: int, *, nonlinearity: Nonlinearity = "tanh", **options) -> None:
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, **options)

    def step(self, x_t: Tensor, h: Tensor, mask: Optional[Tensor]):
        a = self._input_preact(x_t) + self._recurrent_preact(h, mask)  # (B, H)
        if self.bias_ih is not None:
            a = a + self.bias_ih + self.bias_hh
        h = _NONLINEARITIES[self.nonlinearity](a)
        return h, h

    def extra_repr(self) -> str:
        return super().extra_repr() + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")

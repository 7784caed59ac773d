"""LSTM cell (Hochreiter & Schmidhuber, 1997; forget gate of Gers et al., 2000), as torch.nn.LSTMCell.

Forget-gate bias: initialised to ``forget_bias`` (default 1.0, Jozefowicz et al., 2015, "An Empirical
Exploration of Recurrent Network Architectures", §2.3), put in ``bias_ih`` so that b_ih + b_hh starts there.
Layer norm as in Ba et al. (2016), eq. 20-22: the input and recurrent products are normalised separately,
and so is the cell state on its way to the output; the carried c_t is not normalised.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ._checks import check_lstm_state
from .cell import RecurrentCell
from .state import LSTMState


class LSTMCell(RecurrentCell):
    r"""One step of the LSTM. Gates stacked in torch's order i, f, g, o.

    .. math::
        a &= W_{ih} x_t + b_{ih} + W_{hh} (h_{t-1} \odot m) + b_{hh} \\
        i &= \sigma(a_i) \quad f = \sigma(a_f) \quad g = \tanh(a_g) \quad o = \sigma(a_o) \\
        c_t &= f \odot c_{t-1} + i \odot g \\
        h_t &= o \odot \tanh(c_t)

    With ``layer_norm``: a = LN(W_ih x_t) + LN(W_hh (h_{t-1} ⊙ m)) + b_ih + b_hh and
    h_t = o ⊙ tanh(LN_c(c_t)), LN_c with gain and shift. m is the recurrent dropout mask (1 when off).

    Shapes: x_t (B, I), state LSTMState(h, c) each (B, H) (None means zeros) -> (y_t = h_t (B, H), LSTMState).
    """

    num_gates = 4

    def __init__(self, input_size: int, hidden_size: int, *, forget_bias: float = 1.0, **options) -> None:
        self.forget_bias = float(forget_bias)
        super().__init__(input_size, hidden_size, **options)
        if self.layer_norm:
            self.ln_c = nn.LayerNorm(hidden_size, eps=self.ln_ih.eps)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias_ih is not None:
            H = self.hidden_size
            with torch.no_grad():
                self.bias_ih[H : 2 * H].fill_(self.forget_bias)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> LSTMState:
        h = super().initial_state(batch_size, device=device, dtype=dtype)
        return LSTMState(h, torch.zeros_like(h))

    def _check_state(self, state, batch_size: int, ref: Tensor) -> LSTMState:
        if state is None:
            return self.initial_state(batch_size, device=ref.device, dtype=ref.dtype)
        return check_lstm_state(state, (batch_size, self.hidden_size), ref)

    def step(self, x_t: Tensor, state: LSTMState, mask: Optional[Tensor]):
        h, c = state
        a = self._input_preact(x_t) + self._recurrent_preact(h, mask)  # (B, 4H)
        if self.bias_ih is not None:
            a = a + self.bias_ih + self.bias_hh
        a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
        i = torch.sigmoid(a_i)  # input gate
        f = torch.sigmoid(a_f)  # forget gate
        g = torch.tanh(a_g)  # candidate
        o = torch.sigmoid(a_o)  # output gate
        c = f * c + i * g
        h = o * torch.tanh(self.ln_c(c) if self.layer_norm else c)
        return h, LSTMState(h, c)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", forget_bias={self.forget_bias}" if self.forget_bias != 1.0 else "")

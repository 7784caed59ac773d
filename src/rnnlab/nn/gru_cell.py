"""GRU cell (Cho et al., 2014, "Learning Phrase Representations using RNN Encoder-Decoder").

Deviation from the paper, as in torch.nn.GRUCell and cuDNN: the reset gate multiplies (W_hn h + b_hn),
after the product, rather than h before it. This is what makes the weights load from torch.nn.GRU.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .cell import RecurrentCell


class GRUCell(RecurrentCell):
    r"""One step of the GRU. Gates stacked in torch's order r, z, n.

    .. math::
        \hat x &= W_{ih} x_t + b_{ih}, \qquad \hat h = W_{hh} (h_{t-1} \odot m) + b_{hh} \\
        r &= \sigma(\hat x_r + \hat h_r)                 && \text{reset gate} \\
        z &= \sigma(\hat x_z + \hat h_z)                 && \text{update gate} \\
        n &= \tanh(\hat x_n + r \odot \hat h_n)          && \text{candidate} \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}

    m is the recurrent dropout mask (1 when off); it touches only the product W_hh h, not the carried
    h_{t-1} in the last line. With ``layer_norm``, W_ih x_t and W_hh h are each layer-normalised before
    the biases are added.

    Shapes: x_t (B, I), state h (B, H) (None means zeros) -> (y_t = h_t (B, H), h_t).
    """

    num_gates = 3

    def step(self, x_t: Tensor, h: Tensor, mask: Optional[Tensor]):
        x_hat = self._input_preact(x_t)  # (B, 3H)
        h_hat = self._recurrent_preact(h, mask)  # (B, 3H)
        if self.bias_ih is not None:
            x_hat = x_hat + self.bias_ih
            h_hat = h_hat + self.bias_hh
        x_r, x_z, x_n = x_hat.chunk(3, dim=1)
        h_r, h_z, h_n = h_hat.chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)  # reset gate
        z = torch.sigmoid(x_z + h_z)  # update gate
        n = torch.tanh(x_n + r * h_n)  # candidate
        h = (1.0 - z) * n + z * h
        return h, h

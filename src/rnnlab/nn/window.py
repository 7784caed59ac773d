"""The fixed-window feed-forward encoder: the neural probabilistic language model without memory.

Bengio, Ducharme, Vincent and Jauvin (2003), "A Neural Probabilistic Language Model", JMLR 3, §2:
position t sees only the last n inputs, concatenated, and a tanh hidden layer reads them,

    w_t = [x_{t-n+1}; …; x_{t-1}; x_t]            (n·I; x_s = 0 for s < 0, before the start)
    h_t^(1) = tanh(W^(1) w_t + b^(1))              (H)
    h_t^(l) = tanh(W^(l) h_t^(l-1) + b^(l))        (H), l = 2 … L

Deviations, each deliberate:

* The window ends at x_t itself, not at x_{t-1}: under the encoder contract the output at t is read to
  predict what follows t (a language model's target at t is x_{t+1}), so a window of n gives the
  paper's P(w_{t+1} | w_{t-n+2} … w_t), an (n+1)-gram model in its notation.
* The inputs are concatenated oldest first (chronological), the paper lists them newest first; only the
  order of the columns of W^(1) differs.
* The paper's optional direct connections W x from the window to the output (§2, "y = b + Wx + U tanh(d + Hx)")
  belong to the output layer of a structure, not to the encoder, and are left out here.
* ``num_layers`` stacks more tanh layers of width H with dropout between them; the paper has one.

Shapes: x (B, T, I), lengths (B,) -> outputs (B, T, H), zero past each row's length, and
summary (B, H), the output at each row's last real position.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.nn._checks import check_dtype_match, check_input, check_lengths
from rnnlab.nn.masking import last_real, lengths_to_mask, to_device

__all__ = ["WindowEncoder"]


class WindowEncoder(nn.Module):
    """Each position reads the last ``window`` inputs through ``num_layers`` tanh layers (Bengio et al., 2003, §2).

    Args:
        input_size: I. hidden_size: H (also ``output_size``).
        window: n ≥ 1, how many inputs position t sees: x_{t-n+1} … x_t, zeros before the start.
        num_layers: L ≥ 1 tanh layers of width H.
        dropout: dropout on the input of every layer but the first (training only).

    Because a position never sees the future, padding at the end of a row never reaches a real position.
    """

    def __init__(
        self, input_size: int, hidden_size: int, *, window: int, num_layers: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(window, int) or window < 1:
            raise ValueError("window must be an integer of at least 1 (position t sees x_(t-n+1) … x_t), got "
                             f"{window!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.window = window
        self.num_layers = num_layers
        self.layers = nn.ModuleList(
            nn.Linear(window * input_size if l == 0 else hidden_size, hidden_size) for l in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)

    def windows(self, x: Tensor) -> Tensor:
        """w_t = [x_{t-n+1}; …; x_t] for every t at once: (B, T, I) -> (B, T, n·I), zeros before the start."""
        B, T, I = x.shape
        n = self.window
        padded = F.pad(x, (0, 0, n - 1, 0))  # (B, n-1+T, I): n-1 zero steps before t = 0
        w = padded.unfold(1, n, 1)  # (B, T, I, n): w[b, t, :, k] = x_{t-n+1+k}
        return w.transpose(2, 3).reshape(B, T, n * I)  # (B, T, n·I), oldest first

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, I), lengths: (B,) ints in [1, T] or None -> (outputs (B, T, H), summary (B, H))."""
        check_input(x, self.input_size, ndim=3)
        check_dtype_match("x", x, self.layers[0].weight)
        B, T, _ = x.shape
        if T == 0:
            raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")
        lengths = check_lengths(lengths, B, T)

        h = self.windows(x)  # (B, T, n·I)
        for l, layer in enumerate(self.layers):
            h = torch.tanh(layer(self.dropout(h) if l else h))  # (B, T, H)

        if lengths is None:
            return h, h[:, -1]
        lengths = to_device(lengths, x.device)
        valid = lengths_to_mask(lengths, T)  # (B, T)
        summary = last_real(h, lengths)  # (B, H)
        # where, not a product, so that inf or nan in the padding cannot turn into nan
        return torch.where(valid.unsqueeze(-1), h, h.new_zeros(())), summary

"""minGRU and minLSTM (Feng et al., 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

The paper strips GRU and LSTM down until their gates depend on x_t alone (§3.1, §3.2):
no h_{t-1} inside a gate, no tanh on the candidate. The recurrence is then linear in h,

    h_t = a_t ⊙ h_{t-1} + b_t,

with a_t, b_t computed for all t at once (one Linear over the whole sequence), and the loop
over t becomes a scan (:mod:`rnnlab.nn.scan`) instead of T dependent matrix products.

Deviations and choices, each as the paper allows:

* The candidate is h̃_t = g(k_h) with g(x) = x + 0.5 for x ≥ 0 and σ(x) otherwise (§B,
  "log-space version"), not the plain Linear of §3.1, so that h̃ > 0 and the log-space
  scan applies. Both scan modes use the same g, so they give the same numbers.
* minLSTM uses the normalised, time-independent-scale gates f' = f/(f+i), i' = i/(f+i)
  (§3.2.3), and has no output gate and no separate cell state: the state is h.
* ``scan="numba"`` (the default on CPU, float32/float64) runs :mod:`rnnlab.nn._min_scan`: block by
  block of the sequence, the input GEMM and a fused numba kernel for gates + scan + lengths + direction
  while the block's pre-activations are in cache, and a reverse-scan backward whose weight gradient is one
  GEMM; so the element-wise work costs one pass over B·T·H memory each way; ``scan="log"``
  computes log a_t, log b_t straight from the pre-activations and runs the Heinsen scan (§B,
  Listings 2 and 4), which is what the paper uses on GPUs.

Layout: :class:`MinGRUCell` and :class:`MinLSTMCell` keep the cell contract of :mod:`rnnlab.nn.cell`
(one step, ``step``, ``initial_state``) and add its optional ``sequence``, the parallel scan over the
whole sequence. :class:`MinGRU` and :class:`MinLSTM` are :class:`~rnnlab.nn.recurrent.Recurrent` layers
of these cells, so they stack (``num_layers``, ``dropout`` between layers, as the paper stacks them, §4),
run both ways (``bidirectional``) and stream (``step``) as every other layer does: state (L·D, B, H).
"""
from __future__ import annotations

from typing import Literal, Optional, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.nn._checks import check_dtype_match, check_input, check_state_tensor
from rnnlab.nn._min_scan import min_scan
from rnnlab.nn.masking import last_real, lengths_to_mask
from rnnlab.nn.recurrent import Recurrent, _reverse_padded
from rnnlab.nn.scan import linear_scan, log_space_scan

__all__ = ["MinGRU", "MinLSTM", "MinGRUCell", "MinLSTMCell", "g", "log_g"]

Scan = Literal["auto", "numba", "log"]
_SCAN_MODES = get_args(Scan)


def g(x: Tensor) -> Tensor:
    """g(x) = x + 0.5 for x ≥ 0, σ(x) for x < 0: continuous, increasing, always positive (§B)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), stable for all x: log(x + 0.5) for x ≥ 0, −softplus(−x) = log σ(x) otherwise."""
    # relu keeps the unused branch finite, so its zero gradient never becomes 0 * inf
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


class _MinRNNCell(nn.Module):
    """What the minGRU and minLSTM cells share: the Linear, checks, state and the choice of scan.

    A subclass sets ``num_gates`` (how many H-wide blocks the Linear produces) and implements
    ``_coefficients(k) -> (a, b)`` and ``_log_coefficients(k) -> (log a, log b)`` for k: (..., num_gates·H).
    """

    num_gates: int

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True, scan: Scan = "auto") -> None:
        super().__init__()
        if not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input_size must be a positive int, got {input_size!r}")
        if not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(f"hidden_size must be a positive int, got {hidden_size!r}")
        if scan == "fused":
            raise ValueError("scan='fused' is now called scan='numba' (the gates and the scan in numba kernels)")
        if scan not in _SCAN_MODES:
            raise ValueError(f"scan must be one of {_SCAN_MODES}, got {scan!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.scan = scan
        # one Linear for every gate, applied to the whole sequence at once (hoisted out of the scan)
        self.linear = nn.Linear(input_size, self.num_gates * hidden_size, bias=bias)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.linear.bias is not None}, scan={self.scan!r}"

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> Tensor:
        """Zeros of shape (B, H), on the parameters' device and dtype unless told otherwise."""
        w = self.linear.weight
        return torch.zeros(batch_size, self.hidden_size, device=device or w.device, dtype=dtype or w.dtype)

    def _use_kernel(self, x: Tensor) -> bool:
        """The fused numba kernel: CPU float32/float64 (under bf16 autocast it runs in float32), unless
        scan="log". Measured (benchmarks/min_rnn.py, one thread) 7-14x faster than the log-space scan in
        training and 9-45x in inference at the four smaller shapes of benchmarks/layers.py."""
        return self.scan != "log" and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)

    def _use_log_scan(self, x: Tensor) -> bool:
        if self.scan == "auto":
            return not (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64))
        return self.scan == "log"

    def forward(self, x_t: Tensor, state: Optional[Tensor] = None, *, mask: Optional[Tensor] = None):
        """One step of the sequential form, checked: x_t (B, I), state (B, H) or None -> (h_t, h_t), both (B, H)."""
        check_input(x_t, self.input_size, ndim=2, name="x_t")
        check_dtype_match("x_t", x_t, self.linear.weight)
        B = x_t.shape[0]
        if state is None:
            state = self.initial_state(B, device=x_t.device, dtype=x_t.dtype)
        else:
            check_state_tensor("state", state, (B, self.hidden_size), x_t)
        return self.step(x_t, state, mask)

    def step(self, x_t: Tensor, state: Tensor, mask: Optional[Tensor] = None):
        """One step, unchecked: h_t = a_t ⊙ h_{t-1} + b_t. ``mask`` is unused (no recurrent dropout)."""
        a, b = self._coefficients(self.linear(x_t))  # (B, H) each
        h = a * state + b
        return h, h

    # Recurrent runs the backward direction through ``sequence(..., reverse=True)`` instead of reversing x
    # and the outputs around it: the numba kernel walks each row backwards from its last real step itself.
    runs_reversed = True

    def sequence(self, x: Tensor, state: Tensor, lengths: Optional[Tensor], mask: Optional[Tensor] = None, *,
                 reverse: bool = False):
        """The parallel form, unchecked: x (B, T, I), state (B, H), lengths (B,) CPU int64 or None.

        Returns (outputs (B, T, H), state (B, H)). Past a row's length the outputs are zero and its state
        is h at its last real step, as if a_t = 1 and b_t = 0 there. ``reverse`` reads each row from its
        last real step back to its first (the backward direction); outputs stay at their own positions.
        """
        if self._use_kernel(x):  # gates, scan, lengths and direction in one numba pass (nn/_min_scan.py)
            return min_scan(self.kind, x, self.linear.weight, self.linear.bias, state, lengths, reverse=reverse)
        if reverse:
            h, last = self.sequence(_reverse_padded(x, lengths), state, lengths)
            return _reverse_padded(h, lengths), last
        k = self.linear(x)  # (B, T, num_gates·H)
        if self._use_log_scan(x):
            h = log_space_scan(*self._log_coefficients(k), state)  # (B, T, H)
        else:  # "numba" asked for off the CPU or in low precision: torch gates, torch scan
            h = linear_scan(*self._coefficients(k), state)  # (B, T, H)
        if lengths is None:
            return h, h[:, -1]
        # Freezing the state past the length (a = 1, b = 0) and reading h at the last real step
        # give the same numbers and gradients; reading is cheaper than rewriting a and b.
        valid = lengths_to_mask(lengths, x.shape[1], device=x.device)  # (B, T)
        return h * valid.unsqueeze(-1).to(h.dtype), last_real(h, lengths)


class MinGRUCell(_MinRNNCell):
    r"""minGRU (Feng et al., 2024, §3.1.3, Algorithm 2; log-space form §B, Listing 2).

    .. math::
        k_z, k_h &= \mathrm{split}(W x_t + b)   \\
        z_t &= \sigma(k_z)                       \\
        \tilde h_t &= g(k_h)                     \\
        h_t &= (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    so a_t = 1 − z_t and b_t = z_t ⊙ h̃_t. In log space: log a_t = −softplus(k_z),
    log z_t = −softplus(−k_z), log b_t = log z_t + log g(k_h).

    Args:
        input_size: I.   hidden_size: H.
        bias: whether the Linear I → 2H has a bias.
        scan: ``"auto"`` (numba scan on CPU float32/float64, log-space elsewhere), ``"numba"``, ``"log"``.

    Shapes: one step x_t (B, I), state (B, H) -> (h_t, h_t); ``sequence``: x (B, T, I) -> (B, T, H), (B, H).
    """

    num_gates = 2
    kind = "gru"

    def _coefficients(self, k: Tensor) -> tuple[Tensor, Tensor]:
        k_z, k_h = k.chunk(2, dim=-1)  # (..., H) each
        z = torch.sigmoid(k_z)  # update gate
        h_tilde = g(k_h)  # candidate, > 0
        return 1 - z, z * h_tilde

    def _log_coefficients(self, k: Tensor) -> tuple[Tensor, Tensor]:
        k_z, k_h = k.chunk(2, dim=-1)  # (..., H) each
        log_a = -F.softplus(k_z)  # log(1 − z)
        log_z = -F.softplus(-k_z)  # log z
        return log_a, log_z + log_g(k_h)


class MinLSTMCell(_MinRNNCell):
    r"""minLSTM (Feng et al., 2024, §3.2.3, Algorithm 4; log-space form §B, Listing 4).

    .. math::
        k_f, k_i, k_h &= \mathrm{split}(W x_t + b)          \\
        f_t = \sigma(k_f),\quad i_t &= \sigma(k_i),\quad \tilde h_t = g(k_h) \\
        f'_t = \frac{f_t}{f_t + i_t},\quad i'_t &= \frac{i_t}{f_t + i_t}     \\
        h_t &= f'_t \odot h_{t-1} + i'_t \odot \tilde h_t

    so a_t = f'_t and b_t = i'_t ⊙ h̃_t. In log space, with d = softplus(−k_f) − softplus(−k_i)
    (= log i − log f): log f'_t = −softplus(d), log i'_t = −softplus(−d).

    Args and shapes as :class:`MinGRUCell`; the Linear maps I → 3H.
    """

    num_gates = 3
    kind = "lstm"

    def _coefficients(self, k: Tensor) -> tuple[Tensor, Tensor]:
        k_f, k_i, k_h = k.chunk(3, dim=-1)  # (..., H) each
        f = torch.sigmoid(k_f)  # forget gate
        i = torch.sigmoid(k_i)  # input gate
        h_tilde = g(k_h)  # candidate, > 0
        f_norm = f / (f + i)  # f'
        return f_norm, (1 - f_norm) * h_tilde  # i' = 1 − f'

    def _log_coefficients(self, k: Tensor) -> tuple[Tensor, Tensor]:
        k_f, k_i, k_h = k.chunk(3, dim=-1)  # (..., H) each
        d = F.softplus(-k_f) - F.softplus(-k_i)  # log i − log f
        log_f = -F.softplus(d)  # log f'
        log_i = -F.softplus(-d)  # log i'
        return log_f, log_i + log_g(k_h)


class MinGRU(Recurrent):
    """minGRU layers: ``Recurrent(MinGRUCell, ...)``, each layer one parallel scan over the sequence.

    Args: input_size I, hidden_size H; keyword-only ``num_layers``, ``bidirectional``, ``dropout`` (between
    layers) as :class:`~rnnlab.nn.recurrent.Recurrent`; ``bias`` and ``scan`` as :class:`MinGRUCell`.

    Shapes: x (B, T, I), state (L·D, B, H) or None, lengths (B,) or None -> outputs (B, T, D·H), state
    (L·D, B, H). ``step``: x_t (B, I) -> (y_t (B, H), state (L, B, H)).
    """

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, bias: bool = True, scan: Scan = "auto") -> None:
        super().__init__(MinGRUCell, input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                         dropout=dropout, bias=bias, scan=scan)


class MinLSTM(Recurrent):
    """minLSTM layers: ``Recurrent(MinLSTMCell, ...)``; arguments and shapes as :class:`MinGRU`."""

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, bias: bool = True, scan: Scan = "auto") -> None:
        super().__init__(MinLSTMCell, input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                         dropout=dropout, bias=bias, scan=scan)

"""Input validation with messages for people: name the argument, what was expected, what was given."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .state import LSTMState


def check_tensor(name: str, value, *, ndim: Optional[int] = None, last: Optional[int] = None) -> Tensor:
    """Check that ``value`` is a floating tensor of rank ``ndim`` whose last dim is ``last``."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if last is not None and value.shape[-1] != last:
        raise ValueError(f"{name} must have last dimension {last}, got shape {tuple(value.shape)}")
    return value


def check_input(x, input_size: int, *, ndim: int, name: str = "x") -> Tensor:
    """x: (B, T, I) for a layer (ndim=3), (B, I) for a cell (ndim=2)."""
    shape = "(B, T, I)" if ndim == 3 else "(B, I)"
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != ndim:
        raise ValueError(
            f"{name} must have shape {shape} with I={input_size} (batch first), got shape {tuple(x.shape)}"
        )
    if x.shape[-1] != input_size:
        raise ValueError(
            f"{name} must have input size I={input_size} in its last dimension, got shape {tuple(x.shape)}"
        )
    return x


def check_dtype_match(name: str, t: Tensor, ref: Tensor) -> None:
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} must have dtype {ref.dtype} like the parameters, got {t.dtype}")


def check_state_tensor(name: str, t, shape: tuple, ref: Tensor) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} must have dtype {ref.dtype}, got {t.dtype}")
    return t


def check_lstm_state(state, shape: tuple, ref: Tensor, *, name: str = "state"):
    """Accept an LSTMState or a plain (h, c) tuple, as torch.nn.LSTM users pass it; h and c of ``shape``."""
    if not isinstance(state, tuple) or len(state) != 2:
        raise TypeError(f"{name} must be an LSTMState(h, c) (or a tuple (h, c)) of shape {tuple(shape)} each, "
                        f"got {type(state).__name__}")
    return LSTMState(
        check_state_tensor(f"{name}.h", state[0], shape, ref), check_state_tensor(f"{name}.c", state[1], shape, ref)
    )


def check_state(state, state_type: type, shape: tuple, ref: Tensor, *, name: str = "state"):
    """A state of ``state_type``: a tensor of ``shape``, or a NamedTuple (LSTMState, a user cell's) of such tensors."""
    if state_type is LSTMState:
        return check_lstm_state(state, shape, ref, name=name)
    if issubclass(state_type, tuple):
        fields = state_type._fields
        if not isinstance(state, tuple) or len(state) != len(fields):
            raise TypeError(f"{name} must be a {state_type.__name__}({', '.join(fields)}) of shape {tuple(shape)} "
                            f"each, got {type(state).__name__}")
        return state_type(*(check_state_tensor(f"{name}.{f}", t, shape, ref) for f, t in zip(fields, state)))
    return check_state_tensor(name, state, shape, ref)


def check_lengths(lengths, batch_size: int, max_len: int) -> Optional[Tensor]:
    """lengths: None or a 1-D integer tensor (B,) with values in [1, T]. Returned on the CPU as int64."""
    if lengths is None:
        return None
    if isinstance(lengths, (list, tuple)):
        lengths = torch.as_tensor(lengths)
    if not isinstance(lengths, Tensor):
        raise TypeError(f"lengths must be a 1-D integer tensor of shape ({batch_size},), got {type(lengths).__name__}")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
        raise TypeError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if lengths.dim() != 1 or lengths.shape[0] != batch_size:
        raise ValueError(f"lengths must be 1-D of shape ({batch_size},), one length per batch row, got shape "
                         f"{tuple(lengths.shape)}")
    lengths = lengths.to("cpu", torch.int64)
    if batch_size and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
        raise ValueError(
            f"lengths must lie in [1, T={max_len}], got min {int(lengths.min())} and max {int(lengths.max())}"
        )
    return lengths


def check_sequence_args(x, states: dict, weight_ih, weight_hh, vectors: dict, mask, lengths, *, num_gates: int):
    """The checks every sequence kernel (fused LSTM, fused GRU) makes of its arguments.

    weight_hh (G·H, H) and weight_ih (G·H, I) with G = ``num_gates``; x (B, T, I), T ≥ 1, of their dtype;
    ``states`` name -> (B, H) or None (zeros); ``vectors`` name -> (G·H,) or None; mask (B, H) or None.
    Returns x, the states (zeros filled in) in the order given, and the checked lengths.
    """
    check_tensor("weight_hh", weight_hh, ndim=2)
    GH, H = weight_hh.shape
    if GH != num_gates * H:
        raise ValueError(f"weight_hh must have shape ({num_gates}H, H), got {tuple(weight_hh.shape)}")
    check_tensor("weight_ih", weight_ih, ndim=2)
    if weight_ih.shape[0] != GH:
        raise ValueError(f"weight_ih must have shape ({num_gates}H, I) with {num_gates}H={GH} like weight_hh, "
                         f"got {tuple(weight_ih.shape)}")
    check_input(x, weight_ih.shape[1], ndim=3)
    check_dtype_match("x", x, weight_hh)
    check_dtype_match("weight_ih", weight_ih, weight_hh)
    B, T, _ = x.shape
    if T == 0:
        raise ValueError("x must have at least one time step, got shape (B, 0, I)")
    filled = [x.new_zeros(B, H) if s is None else check_state_tensor(name, s, (B, H), weight_hh)
              for name, s in states.items()]
    for name, v in vectors.items():
        if v is not None:
            check_state_tensor(name, v, (GH,), weight_hh)
    if mask is not None:
        check_state_tensor("mask", mask, (B, H), weight_hh)
    return x, filled, check_lengths(lengths, B, T)

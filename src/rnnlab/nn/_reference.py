"""Pieces shared by the reference loops of the fused kernels (fused_gru, fused_rnn): plain autograd, no speed."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def pre_activation(a: Tensor, weight: Tensor, ln_weight: Optional[Tensor], bias: Optional[Tensor],
                   eps: float) -> Tensor:
    """a @ weightᵀ, layer-normed over its last dim with gain ``ln_weight`` (no shift) when given, plus ``bias``."""
    out = a @ weight.t()
    if ln_weight is not None:
        out = torch.nn.functional.layer_norm(out, (out.shape[-1],), ln_weight, None, eps)
    return out if bias is None else out + bias


def keep_past_end(h_new: Tensor, h: Tensor, active: Optional[Tensor], t: int) -> tuple[Tensor, Tensor]:
    """(state, output) of step t: rows whose sequence has ended keep their state and output zeros."""
    if active is None:
        return h_new, h_new
    m_t = active[:, t].unsqueeze(1)  # (B, 1)
    return torch.where(m_t, h_new, h), h_new * m_t.to(h_new.dtype)

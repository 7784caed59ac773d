"""Gradients through time: ‖∂L/∂h_t‖, ‖∂h_T/∂h_t‖, and what clipping does to an exploding gradient.

Vanishing and exploding gradients (Hochreiter, 1991; Bengio, Simard & Frasconi, 1994; Pascanu, Mikolov & Bengio,
2013, "On the difficulty of training recurrent neural networks"): back-propagating through time multiplies the
gradient by one Jacobian ∂h_{t+1}/∂h_t per step, so its norm shrinks or grows geometrically with the distance.
The LSTM's additive cell state and the GRU's update gate keep a path along which the factor stays near 1.

Every function takes any model whose encoder holds :class:`~rnnlab.nn.Recurrent` layers (every structure with a
recurrent encoder, or a bare layer) and a batch for it; the fused paths are re-run through the reference cell loop
on the same weights (:mod:`rnnlab.inspect.trace`) so that each h_t is a tensor in the autograd graph.

Glossary: B batch, T time, H hidden, K = L·D the traced layer-directions.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.recurrent import _reverse_padded

from .trace import call_model, require_recurrent, trace

JacobianMethod = Literal["auto", "exact", "random"]
EXACT_UP_TO = 64
"""``method="auto"`` computes the Jacobian exactly (H backward passes) up to this hidden size, else estimates it."""


def default_loss(model: nn.Module, batch: dict) -> Tensor:
    """The structure's own ``loss(batch)``; a bare layer or encoder gets ½‖outputs‖² (every step counts)."""
    if hasattr(model, "loss"):
        return model.loss(batch)
    out = call_model(model, batch)
    out = out[0] if isinstance(out, tuple) else out
    return 0.5 * out.pow(2).sum()


def _call_loss(loss_fn):
    return lambda model, batch: loss_fn(model, batch)


@dataclass
class GradientFlow:
    """‖∂L/∂h_t‖ for every traced layer-direction, batch row and step."""

    names: list
    """The layer-directions (``encoder.layer l0``, ``encoder.layer l0 reverse``, ...)."""
    norms: Tensor
    """(K, B, T) the Euclidean norm over the H units of ∂L/∂h_t (in input order; 0 past each row's length)."""
    lengths: Optional[Tensor]
    """(B,) real lengths, or None."""
    loss: float
    """The loss the gradient is of."""

    def mean(self) -> Tensor:
        """(K, T): the mean over the rows that are real at step t (NaN where none is)."""
        K, B, T = self.norms.shape
        real = _real_mask(self.lengths, B, T).to(self.norms.dtype)  # (B, T)
        count = real.sum(0)  # (T,)
        total = (self.norms * real).sum(1)  # (K, T)
        return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan))


def gradient_flow(model: nn.Module, batch: dict, *, loss_fn: Optional[Callable] = None) -> GradientFlow:
    """‖∂L/∂h_t‖ on ``batch`` for every step t and every layer of the model's recurrent encoder.

    ``loss_fn(model, batch) -> scalar`` defaults to ``model.loss(batch)``. The total derivative: every path from
    h_t to L counts (through h_{t+1}, through the output at t, through the layer above). Parameters' ``.grad``
    are left untouched (``torch.autograd.grad``).
    """
    require_recurrent(model, "gradient flow")
    loss_fn = loss_fn or default_loss
    with torch.enable_grad():
        t = trace(model, batch, call=_call_loss(loss_fn))
        loss = t.output
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}")
        steps = [s for layer in t.layers for s in layer.steps]
        grads = torch.autograd.grad(loss, steps, allow_unused=True)
    norms, i = [], 0
    for layer in t.layers:
        n = len(layer.steps)
        g = torch.stack([_zeros_if_none(grads[i + k], layer.steps[k]) for k in range(n)], dim=1)  # (B, T, H)
        i += n
        if layer.direction == 1:  # its steps ran from each row's end: back to input order
            g = _reverse_padded(g, t.lengths)
        norms.append(g.norm(dim=-1))  # (B, T)
    return GradientFlow([x.name for x in t.layers], torch.stack(norms).detach(), t.lengths, float(loss.detach()))


@dataclass
class JacobianNorms:
    """‖∂h_T/∂h_t‖_F for t = 0 … T in the forward direction of every traced layer."""

    names: list
    norms: Tensor
    """(K, B, T + 1) the Frobenius norm of the H×H Jacobian of h_T with respect to h_t, per row; 1 at t = T."""
    T: int
    """The step whose state is differentiated."""
    method: str
    """``exact`` (one backward pass per unit of h_T: the whole Jacobian) or ``random`` (the Hutchinson-style
    estimate ‖J‖_F² = E_v ‖vᵀJ‖² over v ~ N(0, I), averaged over ``projections`` draws: unbiased for ‖J‖_F²)."""

    def mean(self) -> Tensor:
        """(K, T + 1): the mean over the batch rows."""
        return self.norms.mean(dim=1)


def jacobian_norms(model: nn.Module, batch: dict, *, T: Optional[int] = None, method: JacobianMethod = "auto",
                   projections: int = 16, seed: int = 0) -> JacobianNorms:
    """‖∂h_T/∂h_t‖_F for every t ≤ T, per forward-direction layer (a backward direction runs the other way).

    ``T`` defaults to the last step every row reaches (min(lengths) - 1). ``method``: ``exact`` runs H backward
    passes, ``random`` ``projections`` of them, ``auto`` is exact up to H = 64.
    """
    require_recurrent(model, "the Jacobian ∂h_T/∂h_t")
    if method not in ("auto", "exact", "random"):
        raise ValueError(f"method must be 'auto', 'exact' or 'random', got {method!r}")
    if not isinstance(projections, int) or projections < 1:
        raise ValueError(f"projections must be a positive integer, got {projections!r}")
    with torch.enable_grad():
        t = trace(model, batch)
    forward = [layer for layer in t.layers if layer.direction == 0]
    if not forward:
        raise ValueError("the Jacobian ∂h_T/∂h_t needs a forward direction; the traced layers have none")
    steps_total = len(forward[0].steps)
    last = steps_total - 1 if t.lengths is None else int(t.lengths.min()) - 1
    T = last if T is None else T
    if not isinstance(T, int) or not 0 <= T <= last:
        raise ValueError(f"T must be a step in [0, {last}] (the last step every row of the batch reaches), got {T!r}")
    H = forward[0].steps[0].shape[-1]
    exact = method == "exact" or (method == "auto" and H <= EXACT_UP_TO)
    generator = torch.Generator().manual_seed(seed)
    norms = []
    for layer in forward:
        target, sources = layer.steps[T], layer.steps[: T + 1]
        B = target.shape[0]
        squares = torch.zeros(B, T + 1, dtype=torch.float64)
        directions = range(H) if exact else range(projections)
        for k in directions:
            if exact:
                v = torch.zeros_like(target)
                v[:, k] = 1.0
            else:
                v = torch.randn(target.shape, generator=generator, dtype=target.dtype).to(target.device)
            grads = torch.autograd.grad(target, sources, grad_outputs=v, retain_graph=True, allow_unused=True)
            for s, g in enumerate(grads):  # rows are independent: row b's gradient is row b of vᵀJ
                if g is not None:
                    squares[:, s] += g.detach().double().pow(2).sum(-1).cpu()
        if not exact:
            squares /= projections
        norms.append(squares.sqrt())
    return JacobianNorms([x.name for x in forward], torch.stack(norms), T, "exact" if exact else "random")


def compare_gradient_flow(models: Mapping[str, nn.Module], batch: dict, *, T: Optional[int] = None,
                          method: JacobianMethod = "auto") -> dict:
    """{name: JacobianNorms} of several models on one batch: the vanishing (RNN tanh) against preserved
    (LSTM, GRU) picture, for :func:`rnnlab.inspect.plots.plot_vanishing`. Trains nothing."""
    if not models:
        raise ValueError("compare_gradient_flow needs at least one model")
    return {name: jacobian_norms(m, batch, T=T, method=method) for name, m in models.items()}


@dataclass
class ClipTrace:
    """Parameter-gradient norms at each update step, before and after clipping."""

    loss: list
    """The loss at each step."""
    before: list
    """‖g‖₂ over all parameters, unclipped."""
    after_norm: list
    """‖g‖₂ after ``clip_grad_norm_(max_norm)``: min(‖g‖, max_norm), the direction kept."""
    after_value: list
    """‖g‖₂ after ``clip_grad_value_(clip_value)``: every entry cut to [-clip_value, clip_value]."""
    cosine_value: list
    """cos(g, value-clipped g): below 1 when value clipping turned the update (norm clipping never does)."""
    max_norm: float
    clip_value: float
    update: str
    """Which gradient the SGD steps used: none (no update: every step is the same batch at the same weights),
    norm, value or raw (unclipped)."""


ClipUpdate = Literal["none", "raw", "norm", "value"]


def clipping_effect(model: nn.Module, batch: dict, *, steps: int = 1, lr: float = 0.1, max_norm: float = 1.0,
                    clip_value: float = 0.1, update: ClipUpdate = "none", loss_fn: Optional[Callable] = None
                    ) -> ClipTrace:
    """The gradient norm before and after ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_`` at each of
    ``steps`` SGD steps (learning rate ``lr``, on a copy of the model; ``update`` says which gradient it applies).

    An exploding gradient shows as ``before`` far above ``max_norm``; norm clipping rescales it (same direction),
    value clipping cuts each entry (a different direction: ``cosine_value`` < 1).
    """
    if max_norm <= 0 or clip_value <= 0:
        raise ValueError(f"max_norm and clip_value must be positive, got {max_norm} and {clip_value}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if update not in ("none", "raw", "norm", "value"):
        raise ValueError(f"update must be 'none', 'raw', 'norm' or 'value', got {update!r}")
    loss_fn = loss_fn or default_loss
    work = copy.deepcopy(model)
    params = [p for p in work.parameters() if p.requires_grad]
    out = ClipTrace([], [], [], [], [], float(max_norm), float(clip_value), update)
    for _ in range(steps):
        with torch.enable_grad():
            loss = loss_fn(work, batch)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        raw = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        by_norm = _clipped(raw, lambda ps: torch.nn.utils.clip_grad_norm_(ps, max_norm))
        by_value = _clipped(raw, lambda ps: torch.nn.utils.clip_grad_value_(ps, clip_value))
        flat, flat_v = torch.cat([g.flatten() for g in raw]), torch.cat([g.flatten() for g in by_value])
        out.loss.append(float(loss.detach()))
        out.before.append(float(flat.norm()))
        out.after_norm.append(float(torch.cat([g.flatten() for g in by_norm]).norm()))
        out.after_value.append(float(flat_v.norm()))
        out.cosine_value.append(float(torch.nn.functional.cosine_similarity(flat, flat_v, dim=0)))
        if update != "none":
            chosen = {"raw": raw, "norm": by_norm, "value": by_value}[update]
            with torch.no_grad():
                for p, g in zip(params, chosen):
                    p.sub_(lr * g)
    return out


def _clipped(grads: list, clip) -> list:
    """Copies of ``grads`` clipped by ``clip`` (which works in place on parameters' .grad)."""
    holders = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    for h, g in zip(holders, grads):
        h.grad = g.detach().clone()
    clip(holders)
    return [h.grad for h in holders]


def _zeros_if_none(g: Optional[Tensor], like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g


def _real_mask(lengths: Optional[Tensor], B: int, T: int) -> Tensor:
    if lengths is None:
        return torch.ones(B, T, dtype=torch.bool)
    return torch.arange(T).unsqueeze(0) < lengths.cpu().unsqueeze(1)

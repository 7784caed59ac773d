"""Scratch memory reused between calls of the fused sequence kernels: within one call (:func:`scratch`), and for
what a forward pass saves for its backward pass (:func:`saved_buffer`).

A backward pass through time writes the pre-activation gradients of every step, (B, T, G) twice: tens of
megabytes that a fresh ``torch.empty`` takes from the system page by page, and the page faults on first
touch cost more than the kernel that fills them (measured: 41 ms of 56 ms at (64, 100, 256, 512)).
These buffers live only inside one backward call, so one flat buffer per dtype and thread is kept and
handed out again. Nothing that outlives the call comes from :func:`scratch`; no result comes from here.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

from ._torch_kernels import sole_owner

_local = threading.local()


@contextmanager
def scratch(numel: int, dtype: torch.dtype):
    """A 1-D tensor of at least ``numel`` elements, uninitialised, owned by the caller until the block ends."""
    pool = _local.__dict__.setdefault("pool", {})
    buf = pool.pop(dtype, None)  # taken out while in use: a nested call allocates its own
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype)
    try:
        yield buf[:numel]
    finally:
        kept = pool.get(dtype)
        if kept is None or kept.numel() < buf.numel():
            pool[dtype] = buf


# What a forward pass keeps for its backward pass (per-step activations, B·T·K elements) cannot come from
# ``scratch``: it outlives the call. These buffers are handed out again only once nothing references them any
# more (the autograd graph that saved them is gone), which the storage's reference count tells; a graph kept
# alive (retain_graph, a second forward before the backward, stacked layers) keeps its buffer and the next
# call takes another. At most _KEPT buffers per dtype and thread stay, as a caching allocator keeps its blocks.
_KEPT = 8


def saved_buffer(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A 1-D tensor of ``numel`` elements, uninitialised, for tensors saved for a backward pass: memory of an earlier
    call that nothing references any more when there is one large enough (the smallest such), else fresh memory.
    Measured, one thread: a fresh 144 MB tensor filled once costs 10x the fill of reused memory (page faults)."""
    kept = _local.__dict__.setdefault("saved", {}).setdefault(dtype, [])
    free = [b for b in kept if b.numel() >= numel and sole_owner(b)]
    if free:
        return min(free, key=torch.Tensor.numel)[:numel]
    buf = torch.empty(numel, dtype=dtype)
    kept.append(buf)
    if len(kept) > _KEPT:  # drop the smallest buffer that nothing uses (or, if all are in use, the oldest)
        idle = [b for b in kept if b is not buf and sole_owner(b)]
        drop = min(idle, key=torch.Tensor.numel) if idle else kept[0]
        del kept[next(i for i, b in enumerate(kept) if b is drop)]  # by identity: == on tensors compares values
    return buf[:numel]


def release_saved() -> None:
    """Drop this thread's pooled saved-for-backward buffers (up to ``_KEPT`` per dtype stay after training)."""
    _local.__dict__.pop("saved", None)

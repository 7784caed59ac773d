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
import weakref
from contextlib import contextmanager

import torch

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


# ----------------------------------------------------------------------------------------------------
# Buffers for what a forward pass saves for its backward pass: they outlive the call, so they go back to
# the pool only when the autograd graph that holds them is freed.
# ----------------------------------------------------------------------------------------------------

SAVED_KEEP = 8
"""How many freed saved-for-backward buffers are kept per dtype for the next forward passes (the largest stay)."""

_saved_pool: dict[torch.dtype, list[torch.Tensor]] = {}
_returned: list[torch.Tensor] = []  # filled by the finalizers (any thread, during garbage collection): only appended
_saved_lock = threading.Lock()  # never taken by a finalizer, so a collection inside the block cannot deadlock


def saved_buffer(owner: object, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A 1-D tensor of at least ``numel`` elements, uninitialised, for the tensors a forward pass saves for its
    backward pass; it goes back to a pool when ``owner`` (the autograd ``ctx``) is garbage-collected, that is when
    no backward pass can read it any more (after ``backward()``, once the outputs are dropped; never while a
    ``retain_graph=True`` graph lives).

    Why: a training forward pass saves several (B, T, ·) tensors, tens of megabytes that a fresh ``torch.empty``
    takes from the system page by page (measured: writing 33 MB fresh 45 ms, reused 1 ms, one thread, loaded
    machine), while torch.nn.GRU's per-step tensors are small and come back from malloc already mapped. A training
    loop frees step k's graph during step k+1's forward pass, so each layer cycles between two buffers."""
    with _saved_lock:
        while _returned:
            buf = _returned.pop()
            _saved_pool.setdefault(buf.dtype, []).append(buf)
        for kept in _saved_pool.values():
            kept.sort(key=torch.Tensor.numel)
            del kept[:-SAVED_KEEP]
        pool = _saved_pool.setdefault(dtype, [])
        fits = [i for i, b in enumerate(pool) if b.numel() >= numel]
        buf = pool.pop(min(fits, key=lambda i: pool[i].numel())) if fits else None  # the smallest that fits
    if buf is None:
        buf = torch.empty(numel, dtype=dtype)
    weakref.finalize(owner, _returned.append, buf)
    return buf[:numel]


def release_saved() -> None:
    """Drop the pooled saved-for-backward buffers (up to :data:`SAVED_KEEP` per dtype stay after training ends)."""
    with _saved_lock:
        _returned.clear()
        _saved_pool.clear()

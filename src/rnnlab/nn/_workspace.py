"""Scratch memory reused between calls of the fused sequence kernels' backward passes.

A backward pass through time writes the pre-activation gradients of every step, (B, T, G) twice: tens of
megabytes that a fresh ``torch.empty`` takes from the system page by page, and the page faults on first
touch cost more than the kernel that fills them (measured: 41 ms of 56 ms at (64, 100, 256, 512)).
These buffers live only inside one backward call, so one flat buffer per dtype and thread is kept and
handed out again. Nothing that outlives the call (results, tensors saved for backward) comes from here.
"""
from __future__ import annotations

import threading
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

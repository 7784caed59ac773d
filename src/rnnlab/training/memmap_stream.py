"""Truncated-BPTT batches sliced from token ids on disk (a ``numpy.memmap``), for corpora larger than memory.

:class:`MemmapTokenStream` yields exactly the batches of :class:`~rnnlab.training.tbptt.TokenStream` on the
same documents (same layout, same shuffling, same ``reset``/``lengths``, same ``state_dict``, the same share
under ``shard``), but never builds
the concatenation: the documents stay where they are in the ids array, in its own (small unsigned) dtype, and
only each batch is gathered and widened to int64. A shuffled epoch is a permutation of the documents in a
*virtual* concatenation; since a chunk never crosses a document boundary, each chunk's virtual start maps to
one place in the array. The per-epoch layout costs about 13/k bytes per token (chunk starts, lengths, resets).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .tbptt import StreamPosition


class MemmapTokenStream(StreamPosition):
    """Batches ``{"x": (B, k), "y": (B, k), "reset": (B,) bool, "ends": (B,) bool, "num_tokens": int}`` from
    ``ids[starts[d]:starts[d] + lengths[d]]`` for each document d, in that order: the same batches as
    ``TokenStream`` on those documents. ``ids`` is any 1-D integer array (a memmap is read only where a batch
    needs it)."""

    def __init__(self, ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, *, batch_size: int, bptt: int,
                 shuffle_seed: Optional[int] = None) -> None:
        if batch_size < 1 or bptt < 1:
            raise ValueError(f"batch_size and bptt must be >= 1, got batch_size={batch_size}, bptt={bptt}")
        if ids.ndim != 1 or ids.dtype.kind not in "ui":
            raise ValueError(f"ids must be a 1-D integer array of token ids, got {ids.dtype} of shape {ids.shape}")
        starts, lengths = np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
        if starts.ndim != 1 or starts.shape != lengths.shape or starts.size == 0:
            raise ValueError(f"starts and lengths must be equal, non-empty 1-D arrays, got shapes "
                             f"{starts.shape} and {lengths.shape}")
        if (starts < 0).any() or (lengths < 0).any() or (starts + lengths > ids.shape[0]).any():
            raise ValueError(f"every document [start, start + length) must lie inside the {ids.shape[0]} ids")
        self.ids, self.starts, self.lengths = ids, starts, lengths
        self._start(batch_size, bptt, shuffle_seed)

    def __len__(self) -> int:
        return self._layout()[0].shape[0]

    def __iter__(self) -> Iterator[dict]:
        starts, lens, resets = self._layout()  # (n, B) each
        offsets = np.arange(self.bptt)
        last = self.ids.shape[0] - 2
        while self.position < starts.shape[0]:
            i = self.position
            self.position += 1  # counts batches handed out, so a checkpoint taken after this one resumes after it
            real = torch.from_numpy(offsets[None, :] < lens[i][:, None])  # (B, k)
            index = np.minimum(starts[i][:, None] + offsets, last)  # (B, k); padding is masked below
            batch = {
                "x": _long(self.ids[index]).masked_fill(~real, 0),
                "y": _long(self.ids[index + 1]).masked_fill(~real, 0),
                "reset": torch.from_numpy(resets[i].copy()),
                # the row's document ends with this chunk: its next chunk resets (the epoch's last chunks end all)
                "ends": torch.from_numpy(resets[i + 1].copy() if i + 1 < resets.shape[0] else np.ones_like(resets[i])),
                "num_tokens": int(lens[i].sum()),
            }
            if bool((lens[i] < self.bptt).any()):
                batch["lengths"] = _long(lens[i])
            yield batch
        self.epoch += 1
        self.position = 0

    def _layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This epoch's chunk starts (positions in ``ids``), lengths and resets, each (n, B); cached per epoch."""
        if self._layout_epoch != self.epoch:
            order = np.arange(self.starts.size)
            if self.shuffle_seed is not None:  # the very permutation TokenStream draws
                g = torch.Generator().manual_seed(self.shuffle_seed + self.epoch)
                order = torch.randperm(self.starts.size, generator=g).numpy()
            where, lengths = self.starts[order], self.lengths[order]
            bounds = np.concatenate([[0], np.cumsum(lengths)])  # the virtual concatenation's document bounds
            total = int(bounds[-1])
            rows = [self._row_chunks(bounds, where, r * total // self.rows, (r + 1) * total // self.rows)
                    for r in range(self.rows)]
            n = min(r[0].size for r in rows)
            mine = rows[self.columns]  # this process's rows (all of them with one process)
            self._cache = tuple(np.stack([r[j][:n] for r in mine], axis=1) for j in range(3))
            self._layout_epoch = self.epoch
        return self._cache

    def _row_chunks(self, bounds: np.ndarray, where: np.ndarray, lo: int, hi: int):
        """(starts in ids, lengths, resets) of the chunks of the stream [lo, hi) of the virtual concatenation:
        each document's piece cut into runs of <= k (x, y) pairs, as ``tbptt._row_chunks`` does."""
        k = self.bptt
        first = max(int(np.searchsorted(bounds, lo, side="right")) - 1, 0)
        stop = int(np.searchsorted(bounds, hi, side="left"))
        d = np.arange(first, stop)
        a, b = np.maximum(bounds[d], lo), np.minimum(bounds[d + 1], hi)  # this document's piece of the stream
        pairs = b - a - 1  # targets never cross into the next document
        count = np.where(pairs > 0, (pairs + k - 1) // k, 0)
        piece = np.repeat(np.arange(d.size), count)
        c = (np.arange(piece.size) - np.repeat(np.cumsum(count) - count, count)) * k  # offset in the piece
        starts = a[piece] + c - bounds[d][piece] + where[d][piece]  # virtual -> position in ids
        return starts, np.minimum(k, pairs[piece] - c).astype(np.int32), c == 0


def _long(a: np.ndarray) -> Tensor:
    return torch.from_numpy(a.astype(np.int64))

"""Batches of variable-length examples: a padding collate and length bucketing, through torch's DataLoader.

An example is a dict of fields. A field is a scalar (a class id, a value), a sequence of ids or values (a list
or a 1-d tensor), a sequence of sequences (the characters of each word: a list of lists), or a tensor whose
first dimension is time ((T, F) features). :func:`pad_collate` stacks each field over the batch, padding
sequences at the end to the longest one, and adds the lengths of the fields that ``lengths`` names:

    >>> batch = pad_collate([{"x": [5, 6, 7], "y": 1}, {"x": [8], "y": 0}])
    >>> batch["x"].tolist(), batch["lengths"].tolist(), batch["y"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [3, 1], [1, 0])

:class:`LengthBucketSampler` groups examples of similar length into the same batch, so that little of each
batch is padding, and shuffles the batches between epochs. It draws its permutation from torch's global RNG
when no generator is given, which is what the trainer saves and restores, so a resumed epoch sees the same
batches as the interrupted one.

Under data parallelism (:class:`RankShards`, which the trainer calls through ``shard``/``set_epoch``) every
process draws the same epoch from a generator seeded with seed + epoch and keeps every W-th batch from its
rank on, so the processes' shares are disjoint and every process takes the same number of steps.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Optional, Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler


def pad_collate(
    examples: Sequence[Mapping[str, Any]], *, pad: Union[int, float, Mapping[str, Union[int, float]]] = 0,
    lengths: Mapping[str, str] = {"x": "lengths"},  # noqa: B006 (read only)
) -> dict[str, Tensor]:
    """Stack a list of example dicts into a batch dict of tensors (see the module docstring).

    ``pad``: the padding value, one for all fields or per field (missing fields pad with 0).
    ``lengths``: field -> the batch key of its lengths (B,), e.g. ``{"x": "lengths", "y": "y_lengths"}``.
    """
    if not examples:
        raise ValueError("pad_collate needs at least one example, got an empty list")
    keys = list(examples[0])
    for i, example in enumerate(examples):
        if not isinstance(example, Mapping):
            raise TypeError(f"examples must be dicts of fields, got {type(example).__name__} at index {i}")
        if list(example) != keys:
            raise ValueError(f"every example must have the fields {keys}; example {i} has {list(example)}")
    batch: dict[str, Tensor] = {}
    for key in keys:
        value = pad.get(key, 0) if isinstance(pad, Mapping) else pad
        items = [example[key] for example in examples]
        batch[key] = _stack(items, value, key)
        if key in lengths:
            batch[lengths[key]] = torch.tensor([_length(item, key) for item in items], dtype=torch.long)
    return batch


def _length(item: Any, key: str) -> int:
    if isinstance(item, Tensor):
        if item.dim() == 0:
            raise ValueError(f"field {key!r} is a scalar: it has no length")
        return item.shape[0]
    return len(item)


def _stack(items: list, value: Union[int, float], key: str) -> Tensor:
    first = items[0]
    if isinstance(first, Tensor):
        if first.dim() == 0:
            return torch.stack(items)
        T = max(t.shape[0] for t in items)
        out = first.new_full((len(items), T, *first.shape[1:]), value)
        for b, t in enumerate(items):
            if t.shape[1:] != first.shape[1:]:
                raise ValueError(f"field {key!r}: example {b} has shape {tuple(t.shape)}, expected (T, "
                                 f"{tuple(first.shape[1:])})")
            out[b, : t.shape[0]] = t
        return out
    if isinstance(first, (int, float, bool)):
        return torch.tensor(items)
    if isinstance(first, (list, tuple)):
        nested = any(isinstance(v, (list, tuple)) for item in items for v in item)
        if not nested:
            T = max(len(item) for item in items)
            rows = [list(item) + [value] * (T - len(item)) for item in items]
            return torch.tensor(rows)
        T = max(len(item) for item in items)
        W = max((len(v) for item in items for v in item), default=1) or 1
        rows = [[list(v) + [value] * (W - len(v)) for v in item] + [[value] * W] * (T - len(item)) for item in items]
        return torch.tensor(rows)
    raise TypeError(f"field {key!r} holds {type(first).__name__}; pad_collate takes numbers, lists and tensors")


class RankShards:
    """A batch sampler's share of the batches under data parallelism (what the trainer's ``shard`` call sets up).

    The subclass makes an epoch's list of batches in ``_batches`` with ``self._generator()`` for its shuffling.
    After ``shard(rank, world_size, seed=...)`` that generator is seeded with seed + epoch (``set_epoch``), so
    every process draws the same list, whatever its own RNG did since, and process r keeps batches r, r + W,
    r + 2W, ...; the last ``len % W`` batches of an epoch are dropped so that every process takes the same
    number of steps (DDP synchronises every step). Why not torch's DistributedSampler: it shards *examples*,
    and a batch sampler's length buckets would be cut apart. With one process nothing changes.
    """

    rank: int = 0
    world_size: int = 1
    seed: int = 0
    epoch: int = 0
    generator: Optional[torch.Generator] = None

    def shard(self, rank: int, world_size: int, *, seed: int = 0) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.rank, self.world_size, self.seed = rank, world_size, seed

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self) -> Optional[torch.Generator]:
        if self.generator is not None or self.world_size == 1:
            return self.generator  # None: torch's global RNG, which the trainer saves and restores
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def _batches(self) -> list[list[int]]:
        raise NotImplementedError

    def _num_batches(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        if self.world_size > 1:
            batches = batches[self.rank :: self.world_size][: len(batches) // self.world_size]
        return iter(batches)

    def __len__(self) -> int:
        return self._num_batches() // self.world_size


class LengthBucketSampler(RankShards, Sampler[list[int]]):
    """Batches of indices whose examples have similar lengths, in a new random order every epoch.

    Each epoch: shuffle all indices, cut them into pools of ``batch_size * pool_batches``, sort each pool by
    length, cut it into batches, and shuffle the batches. ``shuffle=False`` sorts the whole set by length
    (deterministic, for evaluation). Every index appears exactly once per epoch (``drop_last`` drops a short
    final batch of each pool). Under data parallelism each process gets its share of the batches (:class:`RankShards`).
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = True, pool_batches: int = 50,
        drop_last: bool = False, generator: Optional[torch.Generator] = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if pool_batches < 1:
            raise ValueError(f"pool_batches must be at least 1, got {pool_batches!r}")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.pool_batches = pool_batches
        self.drop_last = drop_last
        self.generator = generator

    def _batches(self) -> list[list[int]]:
        n, B = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: self.lengths[i])
            return [order[i : i + B] for i in range(0, n, B) if not (self.drop_last and i + B > n)]
        generator = self._generator()
        order = torch.randperm(n, generator=generator).tolist()
        pool = B * self.pool_batches
        batches = []
        for start in range(0, n, pool):
            chunk = sorted(order[start : start + pool], key=lambda i: self.lengths[i])
            for i in range(0, len(chunk), B):
                if self.drop_last and i + B > len(chunk):
                    continue
                batches.append(chunk[i : i + B])
        perm = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in perm]

    def _num_batches(self) -> int:
        n, B = len(self.lengths), self.batch_size
        if not self.drop_last:
            return math.ceil(n / B)
        if not self.shuffle:
            return n // B
        pool = B * self.pool_batches
        full, rest = divmod(n, pool)
        return full * self.pool_batches + rest // B


def make_loader(
    examples: Sequence[Mapping[str, Any]], batch_size: int, *, shuffle: bool = True, length_key: str = "x",
    pad: Union[int, float, Mapping[str, Union[int, float]]] = 0,
    lengths: Mapping[str, str] = {"x": "lengths"},  # noqa: B006 (read only)
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader over a list of example dicts: length-bucketed batches, padded by :func:`pad_collate`."""
    if not examples:
        raise ValueError("make_loader needs at least one example, got none")
    sampler = LengthBucketSampler([_length(e[length_key], length_key) for e in examples], batch_size, shuffle=shuffle)
    return DataLoader(list(examples), batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=partial(pad_collate, pad=pad, lengths=lengths))

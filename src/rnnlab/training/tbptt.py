"""Truncated backpropagation through time (Williams & Peng, 1990; as in Mikolov et al., 2010): the data side.

DESIGN.md, "Truncated BPTT, as the trainer does it": the documents are concatenated and cut into B parallel
streams, each a contiguous run of the concatenation; each batch is the next chunk of k steps from every stream.
The trainer carries each row's state from one chunk to the next, detached, so the gradient stops at the chunk
boundary; a row whose chunk starts a document has ``reset`` True and starts from zeros.

Deviation, chosen so that "rows reset at document boundaries" holds exactly: a chunk never crosses a
document boundary. Where a row's document ends inside a chunk, that chunk is cut there (its ``lengths`` entry
is shorter, the rest is padding that the masked loss ignores) and the row's next chunk starts the next
document with ``reset`` True. Targets never cross documents either: the last token of a document predicts
nothing. The padding costs on average k/2 positions per document piece, negligible for documents much longer
than k. Rows run out of chunks at slightly different times; an epoch ends with the shortest row (the rest of
the longer rows is dropped, as a drop-last loader drops the last batch).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import torch
from torch import Tensor


class StreamPosition:
    """What every truncated-BPTT stream shares: its sizes, where it stands (epoch, batches handed out) for exact
    resume, its share of the data under data parallelism, and the check that the data fills at least one batch.
    Subclasses define ``__len__`` (batches per epoch) and lay out ``self.rows`` rows, of which this process
    yields the columns ``self.columns``.

    Data parallelism (:meth:`shard`): with W processes the text is cut into W·B rows and process r yields rows
    r·B .. (r+1)·B - 1 of every batch, so the shares are disjoint, together cover what one process with
    ``batch_size=W·B`` would see (batch for batch: rank 0's rows first), and every process has the same number
    of batches (the layout, hence ``len``, is the same everywhere). ``batch_size`` stays per process, as for a
    DataLoader under a DistributedSampler.
    """

    stateful = True

    def _start(self, batch_size: int, bptt: int, shuffle_seed: Optional[int]) -> None:
        self.batch_size = batch_size
        self.bptt = bptt
        self.shuffle_seed = shuffle_seed
        self.epoch = 0
        self.position = 0
        self.rank, self.world_size = 0, 1
        self._layout_epoch: Optional[int] = None
        self._check_fills()

    @property
    def rows(self) -> int:
        """Rows of the whole layout: batch_size per process times the processes."""
        return self.batch_size * self.world_size

    @property
    def columns(self) -> slice:
        """This process's rows of every batch of the layout."""
        return slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)

    def shard(self, rank: int, world_size: int) -> None:
        """Yield process ``rank``'s share of ``world_size`` from now on (see the class docstring)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.rank, self.world_size = rank, world_size
        self._layout_epoch = None
        self._check_fills()

    def _check_fills(self) -> None:
        if len(self) == 0:
            per = f" per process ({self.world_size} processes)" if self.world_size > 1 else ""
            raise ValueError(
                f"the documents hold too few tokens for batch_size={self.batch_size}{per}: every row needs a "
                "document piece of at least 2 tokens; use fewer rows or more data"
            )

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class TokenStream(StreamPosition):
    """Batches ``{"x": (B, k), "y": (B, k), "reset": (B,) bool, "ends": (B,) bool, "num_tokens": int}`` for
    truncated BPTT.

    ``lengths`` (B,) is present only in batches where some row's chunk was cut at a document end. ``ends`` (B,)
    bool marks the rows whose document ends with this chunk (their next chunk has ``reset`` True): the
    :class:`~rnnlab.structures.LanguageModel` hands zeros on for them and so runs a cut batch in one uncut call.
    ``stateful = True`` tells the trainer to carry the state between batches. The stream remembers where it is
    (``state_dict()``: epoch and position), so a resumed run continues with the very next batch. With
    ``shuffle_seed`` the document order is shuffled every epoch by a generator seeded with seed + epoch.
    """


    def __init__(
        self, documents: list[Tensor], *, batch_size: int, bptt: int, shuffle_seed: Optional[int] = None
    ) -> None:
        if batch_size < 1 or bptt < 1:
            raise ValueError(f"batch_size and bptt must be >= 1, got batch_size={batch_size}, bptt={bptt}")
        if not documents:
            raise ValueError("documents must be a non-empty list of 1-D LongTensors, got an empty list")
        for i, d in enumerate(documents):
            if not isinstance(d, Tensor) or d.dim() != 1 or d.dtype != torch.long:
                given = f"{d.dtype} tensor of shape {tuple(d.shape)}" if isinstance(d, Tensor) else type(d).__name__
                raise ValueError(f"documents[{i}] must be a 1-D LongTensor of token ids, got {given}")
        self.documents = documents
        self._start(batch_size, bptt, shuffle_seed)

    def __len__(self) -> int:
        return self._layout()[1].shape[0]

    def __iter__(self) -> Iterator[dict]:
        tokens, starts, lens = self._layout()  # starts, lens: (n, B)
        offsets = torch.arange(self.bptt)
        while self.position < starts.shape[0]:
            i = self.position
            self.position += 1  # counts batches handed out, so a checkpoint taken after this one resumes after it
            index = starts[i].unsqueeze(1) + offsets  # (B, k)
            if self._cut[i]:  # some row stops at its document's end: padding past it, masked to 0
                real = offsets.unsqueeze(0) < lens[i].unsqueeze(1)  # (B, k)
                index = index.clamp(max=tokens.numel() - 2)
                x, y = tokens[index].masked_fill(~real, 0), tokens[index + 1].masked_fill(~real, 0)
            else:  # every row's chunk lies inside its document (few ops: each costs ~20 us between the kernels)
                x, y = tokens[index], tokens[index + 1]
            batch = {"x": x, "y": y, "reset": self._resets[i].clone(), "ends": self._ends[i].clone(),
                     "num_tokens": self._num_tokens[i]}
            if self._cut[i]:
                batch["lengths"] = lens[i].clone()
            yield batch
        self.epoch += 1
        self.position = 0

    def _layout(self) -> tuple[Tensor, Tensor, Tensor]:
        """This epoch's concatenation and every batch's chunk starts and lengths (n, B); cached per epoch."""
        if self._layout_epoch != self.epoch:
            docs = self.documents
            if self.shuffle_seed is not None:
                g = torch.Generator().manual_seed(self.shuffle_seed + self.epoch)
                docs = [docs[j] for j in torch.randperm(len(docs), generator=g).tolist()]
            tokens = torch.cat(docs)
            bounds = torch.tensor([0] + [d.numel() for d in docs]).cumsum(0).tolist()
            rows = [_row_chunks(bounds, *self._row_range(r, tokens.numel()), self.bptt) for r in range(self.rows)]
            n = min(len(r) for r in rows)
            table = torch.tensor([r[:n] for r in rows], dtype=torch.long).reshape(self.rows, n, 3)
            table = table[self.columns]  # (B, n, 3): this process's rows
            self._cache = (tokens, table[:, :, 0].T.contiguous(), table[:, :, 1].T.contiguous())
            self._resets = table[:, :, 2].T.bool().contiguous()  # (n, B)
            # a row's document ends with a chunk when its next chunk starts one; the epoch's last chunks end all
            self._ends = torch.cat([self._resets[1:], self._resets.new_ones((1, self._resets.shape[1]))])  # (n, B)
            lens = self._cache[2]
            self._cut = (lens < self.bptt).any(1).tolist()  # (n,): batches with a row cut at a document end
            self._num_tokens = lens.sum(1).tolist()  # (n,)
            self._layout_epoch = self.epoch
        return self._cache

    def _row_range(self, row: int, total: int) -> tuple[int, int]:
        return row * total // self.rows, (row + 1) * total // self.rows


def _row_chunks(bounds: list[int], lo: int, hi: int, k: int) -> list[tuple[int, int, int]]:
    """(start, length, reset) of every chunk of the stream [lo, hi): document pieces cut into runs of <= k pairs."""
    chunks = []
    for d in range(len(bounds) - 1):
        a, b = max(bounds[d], lo), min(bounds[d + 1], hi)  # this document's piece of the stream
        pairs = b - a - 1  # (x, y) pairs inside the piece: targets never cross into the next document
        for c in range(0, max(pairs, 0), k):
            chunks.append((a + c, min(k, pairs - c), int(c == 0)))
    return chunks

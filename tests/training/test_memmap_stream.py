"""MemmapTokenStream yields exactly TokenStream's batches, from ids on disk in their smallest dtype."""
import numpy as np
import pytest
import torch

from rnnlab.training import TokenStream
from rnnlab.training.memmap_stream import MemmapTokenStream


def _documents(seed: int, sizes: list[int]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 300, (n,), generator=g) for n in sizes]


def _memmap(tmp_path, documents, *, gap: int = 0, **kw) -> MemmapTokenStream:
    """The documents written to a uint16 file, ``gap`` junk ids between them, opened as a memmap."""
    parts, starts, at = [], [], 0
    for d in documents:
        parts += [np.full(gap, 7, np.uint16), d.numpy().astype(np.uint16)]
        starts.append(at + gap)
        at += gap + d.numel()
    path = tmp_path / "ids.u16"
    np.concatenate(parts).tofile(path)
    ids = np.memmap(path, dtype=np.uint16, mode="r")
    return MemmapTokenStream(ids, np.array(starts), np.array([d.numel() for d in documents]), **kw)


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("batch_size,bptt,sizes,seed", [
    (1, 5, [40], None), (3, 4, [50, 3, 17, 2, 29], None), (4, 8, [5, 3, 60, 7, 44, 1, 12], 0),
    (2, 16, [100, 9, 9, 33], 3), (5, 3, [23, 31, 4, 18, 2, 40, 11], 1),
])
@pytest.mark.parametrize("gap", [0, 3])
def test_same_batches_as_token_stream(tmp_path, batch_size, bptt, sizes, seed, gap):
    documents = _documents(len(sizes), sizes)
    ref = TokenStream(documents, batch_size=batch_size, bptt=bptt, shuffle_seed=seed)
    mm = _memmap(tmp_path, documents, gap=gap, batch_size=batch_size, bptt=bptt, shuffle_seed=seed)
    for _epoch in range(3):
        assert len(mm) == len(ref)
        got, want = list(mm), list(ref)
        assert len(got) == len(want) > 0
        for a, b in zip(got, want):
            _same(a, b)
        assert mm.state_dict() == ref.state_dict()


def test_resumes_exactly_from_state_dict(tmp_path):
    documents = _documents(0, [30, 12, 45, 8, 27])
    kw = dict(batch_size=3, bptt=4, shuffle_seed=5)
    first = _memmap(tmp_path, documents, **kw)
    list(first)  # epoch 0
    it = iter(first)
    for _ in range(4):
        next(it)
    state = first.state_dict()
    rest = list(it)
    resumed = _memmap(tmp_path, documents, **kw)
    resumed.load_state_dict(state)
    again = list(resumed)
    assert len(again) == len(rest) > 0
    for a, b in zip(again, rest):
        _same(a, b)


def test_refuses_documents_outside_the_ids():
    with pytest.raises(ValueError, match="inside the 10 ids"):
        MemmapTokenStream(np.zeros(10, np.uint8), np.array([5]), np.array([6]), batch_size=1, bptt=2)

"""Padding collate and length bucketing."""
import pytest
import torch

from rnnlab.data.batching import LengthBucketSampler, make_loader, pad_collate


def test_pad_collate_pads_sequences_stacks_scalars_and_records_lengths():
    batch = pad_collate([{"x": [5, 6, 7], "y": 1}, {"x": [8], "y": 0}])
    assert batch["x"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["lengths"].tolist() == [3, 1] and batch["y"].tolist() == [1, 0]
    assert batch["x"].dtype == torch.long


def test_pad_collate_nested_lists_tensors_and_per_field_padding():
    examples = [
        {"x": [1, 2], "chars": [[3, 4, 5], [6]], "y": [1, 2], "f": torch.ones(2, 3)},
        {"x": [7], "chars": [[8, 9]], "y": [3], "f": torch.ones(1, 3)},
    ]
    batch = pad_collate(examples, pad={"y": -100}, lengths={"x": "lengths", "y": "y_lengths"})
    assert batch["chars"].shape == (2, 2, 3)
    assert batch["chars"][1].tolist() == [[8, 9, 0], [0, 0, 0]]
    assert batch["y"].tolist() == [[1, 2], [3, -100]] and batch["y_lengths"].tolist() == [2, 1]
    assert batch["f"].shape == (2, 2, 3) and batch["f"][1, 1].abs().sum() == 0


@pytest.mark.parametrize("examples, match", [
    ([], "at least one"),
    ([{"x": [1]}, {"z": [1]}], "fields"),
    ([{"x": "text"}], "takes numbers"),
    ([{"x": torch.ones(2, 3)}, {"x": torch.ones(2, 4)}], "shape"),
])
def test_pad_collate_errors(examples, match):
    with pytest.raises((ValueError, TypeError), match=match):
        pad_collate(examples)


def test_bucket_sampler_covers_every_index_once_and_groups_lengths():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 100, (1000,), generator=g).tolist()
    sampler = LengthBucketSampler(lengths, 16, pool_batches=10, generator=torch.Generator().manual_seed(1))
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 15  # a random batch of 16 would spread ~90
    assert list(sampler) != batches  # a new order every epoch


def test_bucket_sampler_follows_the_global_rng_and_sorts_without_shuffle():
    lengths = list(range(50, 0, -1))
    sampler = LengthBucketSampler(lengths, 8)
    torch.manual_seed(3)
    first = list(sampler)
    torch.manual_seed(3)
    assert list(sampler) == first  # what the trainer's resume relies on
    ordered = list(LengthBucketSampler(lengths, 8, shuffle=False))
    assert [lengths[i] for b in ordered for i in b] == sorted(lengths)
    dropped = LengthBucketSampler(lengths, 8, shuffle=False, drop_last=True)
    assert len(list(dropped)) == len(dropped) == 6


def test_make_loader_yields_padded_batches():
    examples = [{"x": list(range(1, n + 1)), "y": n % 2} for n in range(1, 30)]
    loader = make_loader(examples, 4)
    seen = 0
    for batch in loader:
        assert batch["x"].shape[1] == int(batch["lengths"].max())
        seen += batch["x"].shape[0]
    assert seen == len(examples)

"""ManyToMany: the tagger (with and without a CRF) ignores padding and learns a tiny batch."""
import pytest
import torch
from _structure_helpers import LENGTHS, overfit, pad_with_junk

from rnnlab.structures.encoders import EncoderConfig
from rnnlab.structures.many_to_many import ManyToMany, ManyToManyConfig


@pytest.mark.parametrize("crf", [False, True])
def test_tagger_padding_and_learning(crf):
    model = ManyToMany(ManyToManyConfig(output_size=4, vocab_size=9, encoder=EncoderConfig(hidden_size=16, bidirectional=True), crf=crf))
    x = torch.randint(1, 9, (4, 7))
    y = x % 4  # the tag is a function of the token
    batch = {"x": x, "y": y, "lengths": LENGTHS}
    model.eval()
    loss = model.loss(batch)
    junk = {"x": pad_with_junk(x, LENGTHS, 8), "y": pad_with_junk(y, LENGTHS, 3), "lengths": LENGTHS}
    torch.testing.assert_close(loss, model.loss(junk))
    assert overfit(model.train(), batch, steps=200) < 0.05
    tags = model.predict(x, LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        assert torch.equal(tags[b, :n], y[b, :n]) and torch.all(tags[b, n:] == 0)


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: ManyToManyConfig(output_size=2, vocab_size=5, crf=True, task="regression"), r"crf=True needs task='classification'"),
    ],
)
def test_bad_configurations_fail_at_construction(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()

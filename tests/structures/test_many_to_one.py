"""ManyToOne: padding never matters, it learns a tiny batch, and its errors name what is wrong."""
import pytest
import torch
from _structure_helpers import LENGTHS, enc, overfit, pad_with_junk

from rnnlab.structures.encoders import EncoderConfig
from rnnlab.structures.many_to_one import ManyToOne, ManyToOneConfig


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "mingru", "window", "cnn", "transformer"])
def test_many_to_one_padding_never_matters(kind, pooling):
    model = ManyToOne(ManyToOneConfig(output_size=3, vocab_size=11, encoder=enc(kind), pooling=pooling)).eval()
    x = torch.randint(1, 11, (4, 7))
    out = model({"x": x, "lengths": LENGTHS}).logits
    assert out.shape == (4, 3)
    out_junk = model({"x": pad_with_junk(x, LENGTHS, 10), "lengths": LENGTHS}).logits
    torch.testing.assert_close(out, out_junk)
    for b, n in enumerate(LENGTHS.tolist()):
        torch.testing.assert_close(out[b], model({"x": x[b : b + 1, :n]}).logits[0], atol=1e-5, rtol=1e-4)


def test_many_to_one_learns_a_tiny_batch():
    model = ManyToOne(ManyToOneConfig(output_size=2, input_size=3, encoder=EncoderConfig(hidden_size=16), pooling="attention"))
    x, y = torch.randn(8, 6, 3), torch.tensor([0, 1] * 4)
    assert overfit(model, {"x": x, "y": y, "lengths": torch.tensor([6, 5, 4, 3, 6, 5, 4, 3])}, steps=150) < 0.05


def test_attention_pooling_returns_its_weights():
    model = ManyToOne(ManyToOneConfig(output_size=3, vocab_size=11, encoder=enc("gru"), pooling="attention")).eval()
    out = model({"x": torch.randint(1, 11, (4, 7)), "lengths": LENGTHS})
    assert out.attention.shape == (4, 7) and out.state is None
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(4))
    for b, n in enumerate(LENGTHS.tolist()):
        assert torch.all(out.attention[b, n:] == 0), "padding gets no weight"


def test_missing_batch_key_says_which():
    model = ManyToOne(ManyToOneConfig(output_size=2, vocab_size=5, encoder=EncoderConfig(hidden_size=8)))
    with pytest.raises(ValueError, match=r"ManyToOne.loss needs batch\['y'\]"):
        model.loss({"x": torch.randint(0, 5, (2, 3))})
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 5\), got min 0 and max 7"):
        model({"x": torch.tensor([[0, 7]])})


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: ManyToOneConfig(output_size=2, vocab_size=5, input_size=3), r"set exactly one of vocab_size"),
        (lambda: ManyToOneConfig(output_size=2, vocab_size=5, pooling="sum"), r"pooling must be one of"),
        (lambda: ManyToOneConfig(output_size=2, vocab_size=5, task="ranking"), r"task must be one of .*got 'ranking'"),
    ],
)
def test_bad_configurations_fail_at_construction(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()

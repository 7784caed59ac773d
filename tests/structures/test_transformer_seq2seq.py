"""TransformerSeq2Seq: the baseline ignores padding and learns to reverse, decoding incrementally."""
import pytest
import torch
from _structure_helpers import overfit, pad_with_junk

from rnnlab.structures.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig


@pytest.mark.slow
def test_transformer_seq2seq_learns_to_reverse_and_ignores_padding():
    model = TransformerSeq2Seq(TransformerSeq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, embedding_size=32, hidden_size=32, num_heads=4))
    x = torch.randint(3, 10, (8, 4))
    y = torch.cat([x.flip(1), torch.full((8, 1), 2)], dim=1)
    model.eval()
    lengths = torch.tensor([4, 3, 2, 1, 4, 3, 2, 1])
    a = model({"x": x, "y": y, "lengths": lengths}).logits
    b = model({"x": pad_with_junk(x, lengths, 9), "y": y, "lengths": lengths}).logits
    torch.testing.assert_close(a, b)
    assert overfit(model, {"x": x, "y": y}, steps=250, lr=3e-3) < 0.05
    assert torch.equal(model.generate(x, max_new_tokens=6)[:, :5], y)
    assert torch.equal(model.generate(x, max_new_tokens=6, method="beam", beam_width=3)[:, :5], y)


def test_padding_never_matters_and_cached_steps_equal_the_whole_target():
    model = TransformerSeq2Seq(TransformerSeq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, embedding_size=16,
                                                        hidden_size=16, num_heads=2)).eval()
    x, y = torch.randint(3, 10, (4, 6)), torch.randint(3, 10, (4, 5))
    lengths = torch.tensor([6, 3, 1, 4])
    out = model({"x": x, "y": y, "lengths": lengths})
    assert out.logits.shape == (4, 5, 10) and out.state is None and out.attention is None
    junk = model({"x": pad_with_junk(x, lengths, 9), "y": y, "lengths": lengths}).logits
    torch.testing.assert_close(out.logits, junk)
    decoder, state = model.step_decoder(), model.encode(x, lengths)
    prev, steps = torch.full((4,), 1), []
    for t in range(5):
        logits, state = decoder.step(prev, state)
        steps.append(logits)
        prev = y[:, t]
    torch.testing.assert_close(torch.stack(steps, 1), out.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: TransformerSeq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, norm="batch"), r"norm must be one of .*got 'batch'"),
        (lambda: TransformerSeq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, norm_position="middle"), r"norm_position must be one of"),
        (lambda: TransformerSeq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, positions="rotary"), r"positions must be one of"),
    ],
)
def test_bad_configurations_fail_at_construction(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()

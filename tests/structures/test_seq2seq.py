"""Seq2Seq: padding never matters, attention weights are distributions over real positions, every attention
learns to reverse, the teacher-forcing ratio feeds the model's guesses, and the fused path equals the steps."""
import pytest
import torch
from _structure_helpers import LENGTHS, overfit, pad_with_junk

from rnnlab.structures.decoders import DecoderConfig
from rnnlab.structures.encoders import EncoderConfig
from rnnlab.structures.seq2seq import Seq2Seq, Seq2SeqConfig

ATTENTIONS = ["none", "bahdanau", "luong-dot", "luong-general"]


def _s2s(attention, context="linear", **kw):
    kw.setdefault("encoder", EncoderConfig(hidden_size=16, bidirectional=True))
    kw.setdefault("decoder", DecoderConfig(hidden_size=32))
    return Seq2Seq(Seq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, embedding_size=16, attention=attention,
                                 context=context, **kw))


@pytest.mark.parametrize("context", ["last", "linear", "pool"])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_seq2seq_padding_and_attention_weights(attention, context):
    model = _s2s(attention, context).eval()
    x, y = torch.randint(3, 10, (4, 7)), torch.randint(3, 10, (4, 5))
    out = model({"x": x, "lengths": LENGTHS, "y": y})
    assert out.logits.shape == (4, 5, 10)
    junk = model({"x": pad_with_junk(x, LENGTHS, 9), "lengths": LENGTHS, "y": y})
    torch.testing.assert_close(out.logits, junk.logits)
    if attention == "none":
        assert out.attention is None
        return
    w = out.attention  # (B, T, S)
    torch.testing.assert_close(w.sum(-1), torch.ones(4, 5))
    for b, n in enumerate(LENGTHS.tolist()):
        assert torch.all(w[b, :, n:] == 0), "padding gets no attention"


@pytest.mark.slow
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_seq2seq_learns_to_reverse(attention):
    torch.manual_seed(0)
    model = _s2s(attention)
    x = torch.randint(3, 10, (8, 4))
    y = torch.cat([x.flip(1), torch.full((8, 1), 2)], dim=1)  # reversed, then the end token
    assert overfit(model, {"x": x, "y": y}, steps=300, lr=1e-2) < 0.05
    assert torch.equal(model.generate(x, max_new_tokens=6)[:, :5], y)
    assert torch.equal(model.generate(x, max_new_tokens=6, method="beam", beam_width=3)[:, :5], y)


def test_seq2seq_teacher_forcing_ratio_feeds_model_guesses():
    model = _s2s("bahdanau", teacher_forcing=0.0).train()
    x, y = torch.randint(3, 10, (4, 7)), torch.randint(3, 10, (4, 5))
    free = model({"x": x, "y": y}).logits
    model.eval()  # eval always teacher-forces: the same parameters, a different input history
    forced = model({"x": x, "y": y}).logits
    torch.testing.assert_close(free[:, 0], forced[:, 0])  # the first step sees the begin token either way
    assert not torch.allclose(free[:, 1:], forced[:, 1:])


def test_seq2seq_without_attention_whole_sequence_equals_steps():
    model = _s2s("none").eval()
    x, y = torch.randint(3, 10, (4, 7)), torch.randint(3, 10, (4, 5))
    whole = model({"x": x, "lengths": LENGTHS, "y": y}).logits
    state = model.encode(x, LENGTHS)
    prev, steps = torch.full((4,), 1), []
    for t in range(5):
        logits, state, _ = model.decode_step(prev, state)
        steps.append(logits)
        prev = y[:, t]
    torch.testing.assert_close(whole, torch.stack(steps, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_decoder_config_sets_the_decoder(cell):
    model = _s2s("luong-general", decoder=DecoderConfig(cell=cell, hidden_size=12, num_layers=2))
    assert model.decoder.cell_type == cell and model.decoder.num_layers == 2 and model.decoder.hidden_size == 12
    x, y = torch.randint(3, 10, (2, 5)), torch.randint(3, 10, (2, 4))
    assert model.eval()({"x": x, "y": y}).logits.shape == (2, 4, 10)


def test_generate_without_end_token_decodes_max_new_tokens():
    model = _s2s("bahdanau").eval()
    x = torch.randint(3, 10, (3, 5))
    for method in ("greedy", "beam", "sample"):
        assert model.generate(x, max_new_tokens=4, method=method, end_token=None).shape == (3, 4)


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: _s2s("bahdanau-ish"), r"attention must be one of .*got 'bahdanau-ish'"),
        (lambda: _s2s("bahdanau", context="first"), r"context must be one of .*got 'first'"),
        (lambda: Seq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, encoder=EncoderConfig(hidden_size=16), decoder=DecoderConfig(hidden_size=32), context="last"),
         r"encoder output size \(16\) must equal decoder.hidden_size \(32\).*context='linear'"),
        (lambda: Seq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, encoder=EncoderConfig(hidden_size=16), attention="luong-dot", decoder=DecoderConfig(hidden_size=32)),
         r"luong-dot.*\(16\) must equal decoder.hidden_size \(32\)"),
    ],
)
def test_bad_configurations_fail_at_construction(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()

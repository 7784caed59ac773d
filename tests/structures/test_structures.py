"""Every structure: shapes, masking (padding never matters), learning a tiny batch, and bad configurations."""
import pytest
import torch

from rnnlab.structures.decoders import DecoderConfig
from rnnlab.structures.encoders import KINDS, EncoderConfig, build_encoder
from rnnlab.structures.language_model import LanguageModel, LanguageModelConfig
from rnnlab.structures.many_to_many import ManyToMany, ManyToManyConfig
from rnnlab.structures.many_to_one import ManyToOne, ManyToOneConfig
from rnnlab.structures.one_to_many import OneToMany, OneToManyConfig
from rnnlab.structures.one_to_one import OneToOne, OneToOneConfig
from rnnlab.structures.seq2seq import Seq2Seq, Seq2SeqConfig

LENGTHS = torch.tensor([7, 3, 1, 5])


def enc(kind, **kw):
    kw.setdefault("hidden_size", 16)
    if kind in ("cnn", "transformer"):
        kw.setdefault("causal", False)
    return EncoderConfig(kind=kind, **kw)


def pad_with_junk(x, lengths, value):
    x = x.clone()
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = value
    return x


# -- encoders ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_every_encoder_keeps_the_contract(kind):
    encoder = build_encoder(enc(kind, num_layers=2), 5).eval()
    x = torch.randn(4, 7, 5)
    outputs, summary = encoder(x, LENGTHS)
    assert outputs.shape == (4, 7, encoder.output_size) and summary.shape == (4, encoder.output_size)
    for b, n in enumerate(LENGTHS.tolist()):
        assert torch.all(outputs[b, n:] == 0), "outputs past a length must be zero"
        alone_out, alone_sum = encoder(x[b : b + 1, :n])
        torch.testing.assert_close(outputs[b, :n], alone_out[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(summary[b], alone_sum[0], atol=1e-5, rtol=1e-4)


# -- many-to-one ---------------------------------------------------------------------------------
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
    assert _overfit(model, {"x": x, "y": y, "lengths": torch.tensor([6, 5, 4, 3, 6, 5, 4, 3])}, steps=150) < 0.05


# -- one-to-one ----------------------------------------------------------------------------------
def test_one_to_one_learns_and_predicts():
    model = OneToOne(OneToOneConfig(input_size=4, output_size=3, hidden_sizes=(32,)))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    assert _overfit(model, {"x": x, "y": y}, steps=300) < 0.05
    assert torch.equal(model.predict(x), y)
    reg = OneToOne(OneToOneConfig(input_size=4, output_size=2, task="regression"))
    assert _overfit(reg, {"x": x, "y": torch.randn(16, 2)}, steps=300) < 0.01


# -- many-to-many --------------------------------------------------------------------------------
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
    assert _overfit(model.train(), batch, steps=200) < 0.05
    tags = model.predict(x, LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        assert torch.equal(tags[b, :n], y[b, :n]) and torch.all(tags[b, n:] == 0)


# -- language model ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "mingru", "window", "cnn", "transformer"])
def test_language_model_learns_a_sequence_and_generates_it(kind):
    cfg = EncoderConfig(kind=kind, hidden_size=32, causal=True, window=3)
    model = LanguageModel(LanguageModelConfig(vocab_size=6, embedding_size=32, encoder=cfg, tie_weights=True))
    seq = torch.tensor([[1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]])
    batch = {"x": seq[:, :-1], "y": seq[:, 1:]}
    assert _overfit(model, batch, steps=200, lr=1e-2) < 0.05
    out = model.generate(seq[:, :3], max_new_tokens=6, method="greedy")
    assert out.tolist() == [[1, 2, 3, 4, 5, 1, 2, 3, 4]]


def test_language_model_state_carries_across_chunks():
    """Two chunks with the carried state give what the whole sequence gives."""
    model = LanguageModel(LanguageModelConfig(vocab_size=7, embedding_size=8, encoder=EncoderConfig(hidden_size=8, num_layers=2))).eval()
    x = torch.randint(0, 7, (3, 10))
    whole = model({"x": x}).logits
    first, state, _ = model({"x": x[:, :6]})
    second = model({"x": x[:, 6:], "state": state}).logits
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=1e-5)
    # a reset row starts from zeros, as if its chunk began a document
    reset = torch.tensor([True, False, False])
    second_reset = model({"x": x[:, 6:], "state": state, "reset": reset}).logits
    fresh = model({"x": x[:1, 6:]}).logits
    torch.testing.assert_close(second_reset[0], fresh[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second_reset[1:], second[1:])


def test_language_model_padding_never_matters():
    model = LanguageModel(LanguageModelConfig(vocab_size=7, embedding_size=8, encoder=EncoderConfig(hidden_size=8))).eval()
    x, y = torch.randint(0, 7, (4, 7)), torch.randint(0, 7, (4, 7))
    a = model.loss({"x": x, "y": y, "lengths": LENGTHS})
    b = model.loss({"x": pad_with_junk(x, LENGTHS, 6), "y": pad_with_junk(y, LENGTHS, 0), "lengths": LENGTHS})
    torch.testing.assert_close(a, b)


def test_language_model_sampling_is_seeded():
    model = LanguageModel(LanguageModelConfig(vocab_size=9, encoder=EncoderConfig(hidden_size=8), embedding_size=8))
    prompt = torch.tensor([[1, 2]])
    a = model.generate(prompt, max_new_tokens=8, generator=torch.Generator().manual_seed(1), temperature=2.0)
    b = model.generate(prompt, max_new_tokens=8, generator=torch.Generator().manual_seed(1), temperature=2.0)
    c = model.generate(prompt, max_new_tokens=8, generator=torch.Generator().manual_seed(2), temperature=2.0)
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- one-to-many ---------------------------------------------------------------------------------
@pytest.mark.parametrize("condition", ["first", "every"])
@pytest.mark.parametrize("init_state", [False, True])
def test_one_to_many_learns_to_caption(condition, init_state):
    """Two feature vectors, two different token sequences: the model must read the vector to tell them apart."""
    cfg = OneToManyConfig(feature_size=4, vocab_size=8, decoder=DecoderConfig(hidden_size=32), embedding_size=16,
                          condition=condition, init_state=init_state)
    model = OneToMany(cfg)
    features = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    y = torch.tensor([[3, 4, 5, 2], [6, 7, 2, 0]])
    batch = {"features": features, "y": y, "lengths": torch.tensor([4, 3])}
    assert _overfit(model, batch, steps=150, lr=1e-2) < 0.05
    for method in ("greedy", "beam"):
        out = model.generate(features, max_new_tokens=6, method=method)
        assert out[0, :4].tolist() == [3, 4, 5, 2] and out[1, :3].tolist() == [6, 7, 2]


def test_one_to_many_condition_first_sees_the_vector_once():
    cfg = OneToManyConfig(feature_size=4, vocab_size=8, condition="first")
    model = OneToMany(cfg)
    u = torch.randn(2, cfg.embedding_size)
    inputs = model._inputs(torch.tensor([[1, 3, 4], [1, 5, 6]]), u, first=True)
    E = cfg.embedding_size
    torch.testing.assert_close(inputs[:, 0, E:], u)
    assert torch.all(inputs[:, 1:, E:] == 0)
    every = OneToMany(OneToManyConfig(feature_size=4, vocab_size=8, condition="every"))
    assert torch.all(every._inputs(torch.tensor([[1, 3, 4]]), u[:1], first=True)[:, :, E:] == u[:1].unsqueeze(1))


# -- seq2seq -------------------------------------------------------------------------------------
ATTENTIONS = ["none", "bahdanau", "luong-dot", "luong-general"]


def _s2s(attention, context="linear", **kw):
    kw.setdefault("encoder", EncoderConfig(hidden_size=16, bidirectional=True))
    return Seq2Seq(Seq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, embedding_size=16, decoder=DecoderConfig(hidden_size=32),
                                 attention=attention, context=context, **kw))


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


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_seq2seq_learns_to_reverse(attention):
    torch.manual_seed(0)
    model = _s2s(attention)
    x = torch.randint(3, 10, (8, 4))
    y = torch.cat([x.flip(1), torch.full((8, 1), 2)], dim=1)  # reversed, then the end token
    assert _overfit(model, {"x": x, "y": y}, steps=300, lr=1e-2) < 0.05
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


# -- bad configurations --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: _s2s("bahdanau-ish"), r"attention must be one of .*got 'bahdanau-ish'"),
        (lambda: Seq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, encoder=EncoderConfig(hidden_size=16), decoder=DecoderConfig(hidden_size=32), context="last"),
         r"encoder output size \(16\) must equal decoder.hidden_size \(32\).*context='linear'"),
        (lambda: Seq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, encoder=EncoderConfig(hidden_size=16), attention="luong-dot", decoder=DecoderConfig(hidden_size=32)),
         r"luong-dot.*\(16\) must equal decoder.hidden_size \(32\)"),
        (lambda: EncoderConfig(kind="window", window=0), r"window must be at least 1"),
        (lambda: EncoderConfig(kind="rnn2"), r"encoder kind must be one of"),
        (lambda: EncoderConfig(kind="transformer", hidden_size=30, num_heads=4), r"hidden_size \(30\) must be divisible by num_heads \(4\)"),
        (lambda: LanguageModelConfig(vocab_size=9, encoder=EncoderConfig(bidirectional=True)), r"set encoder.bidirectional=False"),
        (lambda: LanguageModelConfig(vocab_size=9, encoder=EncoderConfig(kind="cnn")), r"set encoder.causal=True"),
        (lambda: LanguageModelConfig(vocab_size=9, embedding_size=32, tie_weights=True), r"tie_weights needs embedding_size == encoder.hidden_size, got 32 and 128"),
        (lambda: ManyToOneConfig(output_size=2, vocab_size=5, input_size=3), r"set exactly one of vocab_size"),
        (lambda: ManyToOneConfig(output_size=2, vocab_size=5, pooling="sum"), r"pooling must be one of"),
        (lambda: ManyToManyConfig(output_size=2, vocab_size=5, crf=True, task="regression"), r"crf=True needs task='classification'"),
        (lambda: OneToManyConfig(feature_size=3, vocab_size=5, condition="always"), r"condition must be one of"),
    ],
)
def test_bad_configurations_fail_at_construction(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_missing_batch_key_says_which():
    model = ManyToOne(ManyToOneConfig(output_size=2, vocab_size=5, encoder=EncoderConfig(hidden_size=8)))
    with pytest.raises(ValueError, match=r"ManyToOne.loss needs batch\['y'\]"):
        model.loss({"x": torch.randint(0, 5, (2, 3))})
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 5\), got min 0 and max 7"):
        model({"x": torch.tensor([[0, 7]])})


def _overfit(model, batch, *, steps, lr=5e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return model.loss(batch).item()


# -- the Transformer seq2seq baseline ------------------------------------------------------------
def test_transformer_seq2seq_learns_to_reverse_and_ignores_padding():
    from rnnlab.structures.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig

    model = TransformerSeq2Seq(TransformerSeq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, embedding_size=32, hidden_size=32, num_heads=4))
    x = torch.randint(3, 10, (8, 4))
    y = torch.cat([x.flip(1), torch.full((8, 1), 2)], dim=1)
    model.eval()
    lengths = torch.tensor([4, 3, 2, 1, 4, 3, 2, 1])
    a = model({"x": x, "y": y, "lengths": lengths}).logits
    b = model({"x": pad_with_junk(x, lengths, 9), "y": y, "lengths": lengths}).logits
    torch.testing.assert_close(a, b)
    assert _overfit(model, {"x": x, "y": y}, steps=250, lr=3e-3) < 0.05
    assert torch.equal(model.generate(x, max_new_tokens=6)[:, :5], y)
    assert torch.equal(model.generate(x, max_new_tokens=6, method="beam", beam_width=3)[:, :5], y)


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


BF16_ENCODERS = [
    EncoderConfig(hidden_size=16), EncoderConfig(hidden_size=16, layer_norm=True), EncoderConfig(hidden_size=16, recurrent_dropout=0.2),
    EncoderConfig(kind="gru", hidden_size=16, layer_norm=True), EncoderConfig(kind="mingru", hidden_size=16),
    EncoderConfig(kind="minlstm", hidden_size=16), EncoderConfig(kind="transformer", hidden_size=16, causal=True),
]


@pytest.mark.parametrize("encoder", BF16_ENCODERS, ids=lambda e: f"{e.kind}-ln{int(e.layer_norm)}-rd{e.recurrent_dropout}")
def test_bf16_autocast_runs_every_path(encoder):
    """bf16 autocast (the trainer's precision='bf16') through every kernel path, fused numba ones included:
    the loss is close to float32's and the gradients are finite."""
    model = LanguageModel(LanguageModelConfig(vocab_size=9, embedding_size=8, encoder=encoder)).eval()
    x = torch.randint(0, 9, (4, 10))
    ref = model.loss({"x": x, "y": x})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss({"x": x, "y": x})
    loss.backward()
    assert abs(loss.item() - ref.item()) < 0.05
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_transformer_language_model_generates_incrementally_as_by_prefix():
    """The cached Transformer decoder and re-reading the whole prefix pick the same tokens."""
    from rnnlab.structures.language_model import _PrefixLMDecoder, _TransformerLMDecoder
    from rnnlab.structures.decoding import greedy

    model = LanguageModel(LanguageModelConfig(vocab_size=11, embedding_size=16,
                                              encoder=EncoderConfig(kind="transformer", hidden_size=16, causal=True))).eval()
    prompt = torch.randint(0, 11, (3, 4))
    outs = []
    for cls in (_TransformerLMDecoder, _PrefixLMDecoder):
        decoder = cls(model)
        outs.append(greedy(decoder, prompt[:, -1], decoder.prime(prompt[:, :-1]), max_new_tokens=8))
    assert torch.equal(outs[0].tokens, outs[1].tokens)
    torch.testing.assert_close(outs[0].scores, outs[1].scores, atol=1e-4, rtol=1e-4)

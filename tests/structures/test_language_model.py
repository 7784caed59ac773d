"""LanguageModel: every encoder learns and generates, the state carries across chunks, padding never matters,
sampling is seeded, bf16 runs every kernel path, and the cached Transformer decoder equals re-reading the prefix."""
import pytest
import torch
from _structure_helpers import LENGTHS, overfit, pad_with_junk

from rnnlab.structures.encoders import EncoderConfig
from rnnlab.structures.language_model import LanguageModel, LanguageModelConfig


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "mingru", "window", "cnn", "transformer"])
def test_language_model_learns_a_sequence_and_generates_it(kind):
    cfg = EncoderConfig(kind=kind, hidden_size=32, causal=True, window=3)
    model = LanguageModel(LanguageModelConfig(vocab_size=6, embedding_size=32, encoder=cfg, tie_weights=True))
    seq = torch.tensor([[1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]])
    batch = {"x": seq[:, :-1], "y": seq[:, 1:]}
    assert overfit(model, batch, steps=200, lr=1e-2) < 0.05
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
    from rnnlab.structures.decoding import greedy
    from rnnlab.structures.language_model import _PrefixLMDecoder, _TransformerLMDecoder

    model = LanguageModel(LanguageModelConfig(vocab_size=11, embedding_size=16,
                                              encoder=EncoderConfig(kind="transformer", hidden_size=16, causal=True))).eval()
    prompt = torch.randint(0, 11, (3, 4))
    outs = []
    for cls in (_TransformerLMDecoder, _PrefixLMDecoder):
        decoder = cls(model)
        outs.append(greedy(decoder, prompt[:, -1], decoder.prime(prompt[:, :-1]), max_new_tokens=8))
    assert torch.equal(outs[0].tokens, outs[1].tokens)
    torch.testing.assert_close(outs[0].scores, outs[1].scores, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: LanguageModelConfig(vocab_size=9, encoder=EncoderConfig(bidirectional=True)), r"set encoder.bidirectional=False"),
        (lambda: LanguageModelConfig(vocab_size=9, encoder=EncoderConfig(kind="cnn")), r"set encoder.causal=True"),
        (lambda: LanguageModelConfig(vocab_size=9, embedding_size=32, tie_weights=True), r"tie_weights needs embedding_size == encoder.hidden_size, got 32 and 128"),
    ],
)
def test_bad_configurations_fail_at_construction(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize("kind", ["lstm", "gru", "mingru"])
def test_a_cut_batch_whose_cut_rows_end_runs_uncut_with_the_same_loss_gradients_and_carried_state(kind):
    """``ends`` covering every row cut short: one call over the padding gives the loss and gradients of running
    each row to its length (float64), and the ended rows hand on zeros (what their next chunk's reset gives)."""
    torch.manual_seed(0)
    cfg = EncoderConfig(kind=kind, hidden_size=8, num_layers=2)
    model = LanguageModel(LanguageModelConfig(vocab_size=9, embedding_size=6, encoder=cfg)).double()
    x, y = torch.randint(0, 9, (4, 7)), torch.randint(0, 9, (4, 7))
    lengths = torch.tensor([7, 3, 7, 5])
    x, y = x.masked_fill(torch.arange(7) >= lengths[:, None], 0), y.masked_fill(torch.arange(7) >= lengths[:, None], 0)
    with torch.no_grad():
        state = model({"x": torch.randint(0, 9, (4, 3))}).state

    def run(ends):
        model.zero_grad()
        batch = {"x": x, "y": y, "lengths": lengths, "state": state, "reset": torch.tensor([0, 0, 1, 0]).bool()}
        loss, new = model.loss_and_state(batch | ({"ends": ends} if ends is not None else {}))
        loss.backward()
        return loss, new, [p.grad.clone() for p in model.parameters()]

    ends = torch.tensor([False, True, True, True])
    loss_ref, state_ref, grads_ref = run(None)
    loss, new, grads = run(ends)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-12)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    as_tuple = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731  (LSTM: (h, c); GRU: h)
    for t, t_ref in zip(as_tuple(new), as_tuple(state_ref)):
        torch.testing.assert_close(t[:, 0], t_ref[:, 0])  # the carried row: its state after its last token
        assert not t[:, 1:].any()  # the ended rows: zeros
    # a cut row that does not end its document keeps the exact path: its state after its last real token
    _, kept, _ = run(torch.tensor([False, False, True, True]))
    for t, t_ref in zip(as_tuple(kept), as_tuple(state_ref)):
        torch.testing.assert_close(t[:, :2], t_ref[:, :2])
        assert not t[:, 2:].any()

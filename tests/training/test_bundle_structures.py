"""Every structure saves to a bundle and comes back from rnnlab.load equal: weights, config and outputs."""
import pytest
import torch

import rnnlab
from rnnlab.structures import (
    DecoderConfig,
    EncoderConfig,
    LanguageModel,
    LanguageModelConfig,
    ManyToMany,
    ManyToManyConfig,
    ManyToOne,
    ManyToOneConfig,
    OneToMany,
    OneToManyConfig,
    OneToOne,
    OneToOneConfig,
    Seq2Seq,
    Seq2SeqConfig,
    TransformerSeq2Seq,
    TransformerSeq2SeqConfig,
)
from rnnlab.training import save_bundle

MODELS = {
    "one_to_one": lambda: OneToOne(OneToOneConfig(input_size=3, output_size=2, hidden_sizes=(8, 4))),
    "one_to_many": lambda: OneToMany(OneToManyConfig(
        feature_size=3, vocab_size=9, init_state=True, decoder=DecoderConfig(cell="gru", hidden_size=8, num_layers=2))),
    "many_to_one": lambda: ManyToOne(ManyToOneConfig(
        output_size=2, vocab_size=7, pooling="attention", encoder=EncoderConfig(kind="transformer", hidden_size=8, num_heads=2))),
    "many_to_many": lambda: ManyToMany(ManyToManyConfig(
        output_size=3, input_size=4, crf=True, encoder=EncoderConfig(kind="gru", bidirectional=True, hidden_size=8))),
    "language_model": lambda: LanguageModel(LanguageModelConfig(
        vocab_size=9, embedding_size=8, encoder=EncoderConfig(kind="mingru", hidden_size=8), tie_weights=True)),
    "seq2seq": lambda: Seq2Seq(Seq2SeqConfig(
        tgt_vocab_size=9, src_vocab_size=9, encoder=EncoderConfig(hidden_size=8, layer_norm=True), decoder=DecoderConfig(cell="gru", hidden_size=8),
        attention="luong-general")),
    "transformer_seq2seq": lambda: TransformerSeq2Seq(TransformerSeq2SeqConfig(tgt_vocab_size=9, src_vocab_size=9, hidden_size=8, num_heads=2)),
}

TOKENS = torch.randint(3, 9, (2, 5))
BATCHES = {
    "one_to_one": {"x": torch.randn(2, 3)},
    "one_to_many": {"features": torch.randn(2, 3), "y": TOKENS},
    "many_to_one": {"x": TOKENS[:, :4] % 7},
    "many_to_many": {"x": torch.randn(2, 5, 4)},
    "language_model": {"x": TOKENS},
    "seq2seq": {"x": TOKENS, "y": TOKENS[:, :3]},
    "transformer_seq2seq": {"x": TOKENS, "y": TOKENS[:, :3]},
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_structure_round_trips_through_a_bundle(name, tmp_path):
    model = MODELS[name]()
    save_bundle(tmp_path / name, model, metrics={"note": name})
    loaded = rnnlab.load(tmp_path / name).model
    assert type(loaded) is type(model) and loaded.config == model.config
    for (key, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    if name == "language_model":  # tied weights stay tied
        assert loaded.head.weight is loaded.inputs.embedding.weight
    model.eval()
    torch.testing.assert_close(loaded(BATCHES[name]).logits, model(BATCHES[name]).logits, rtol=0, atol=0)

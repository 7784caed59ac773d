"""What the structures share: every forward returns Output; choices are checked against their Literal type."""
from typing import Literal

import pytest
import torch

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
    Output,
    Seq2Seq,
    Seq2SeqConfig,
    TransformerSeq2Seq,
    TransformerSeq2SeqConfig,
)
from rnnlab.structures.base import check_choice

SMALL = EncoderConfig(hidden_size=8)
TOKENS = torch.randint(3, 9, (2, 5))
CASES = {  # model, batch, the logits' shape
    "one_to_one": (lambda: OneToOne(OneToOneConfig(3, 4)), {"x": torch.randn(2, 3)}, (2, 4)),
    "many_to_one": (lambda: ManyToOne(ManyToOneConfig(4, vocab_size=9, encoder=SMALL)), {"x": TOKENS}, (2, 4)),
    "many_to_many": (lambda: ManyToMany(ManyToManyConfig(4, vocab_size=9, encoder=SMALL)), {"x": TOKENS}, (2, 5, 4)),
    "language_model": (lambda: LanguageModel(LanguageModelConfig(9, embedding_size=8, encoder=SMALL)), {"x": TOKENS}, (2, 5, 9)),
    "one_to_many": (lambda: OneToMany(OneToManyConfig(3, 9, decoder=DecoderConfig(hidden_size=8))),
                    {"features": torch.randn(2, 3), "y": TOKENS}, (2, 5, 9)),
    "seq2seq": (lambda: Seq2Seq(Seq2SeqConfig(9, src_vocab_size=9, encoder=SMALL, decoder=DecoderConfig(hidden_size=8))),
                {"x": TOKENS, "y": TOKENS[:, :4]}, (2, 4, 9)),
    "transformer_seq2seq": (lambda: TransformerSeq2Seq(TransformerSeq2SeqConfig(9, src_vocab_size=9, hidden_size=8, num_heads=2)),
                            {"x": TOKENS, "y": TOKENS[:, :4]}, (2, 4, 9)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_forward_returns_output(name):
    make, batch, shape = CASES[name]
    out = make().eval()(batch)
    assert type(out) is Output and out.logits.shape == shape
    logits, state, attention = out  # the same three fields for every structure
    assert (state is not None) == (name == "language_model")
    assert (attention is not None) == (name == "seq2seq")  # bahdanau by default; ManyToOne pools by "last"


def test_check_choice_lists_the_choices():
    check_choice("mode", "a", Literal["a", "b"])
    with pytest.raises(ValueError, match=r"mode must be one of \('a', 'b'\), got 'c': set mode to one of them"):
        check_choice("mode", "c", Literal["a", "b"])

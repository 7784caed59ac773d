"""Tiny models of every exported structure and cell, shared by the export tests."""
from __future__ import annotations

import torch

from rnnlab.structures import (
    LanguageModel,
    LanguageModelConfig,
    ManyToMany,
    ManyToManyConfig,
    ManyToOne,
    ManyToOneConfig,
)
from rnnlab.structures.encoders import EncoderConfig

# the cells and options the issue names: id -> encoder config
ENCODERS = {
    "lstm": EncoderConfig(kind="lstm", hidden_size=6, num_layers=2),
    "gru": EncoderConfig(kind="gru", hidden_size=6),
    "rnn": EncoderConfig(kind="rnn", hidden_size=6),
    "rnn-relu": EncoderConfig(kind="rnn-relu", hidden_size=6),
    "ln-lstm": EncoderConfig(kind="lstm", hidden_size=6, layer_norm=True),
    "ln-gru": EncoderConfig(kind="gru", hidden_size=6, layer_norm=True),
    "mingru": EncoderConfig(kind="mingru", hidden_size=6, num_layers=2),
    "minlstm": EncoderConfig(kind="minlstm", hidden_size=6),
    "bi-lstm": EncoderConfig(kind="lstm", hidden_size=6, bidirectional=True, num_layers=2),
    "bi-gru": EncoderConfig(kind="gru", hidden_size=6, bidirectional=True),
}
UNIDIRECTIONAL = [k for k, e in ENCODERS.items() if not e.bidirectional]


def language_model(encoder: EncoderConfig, vocab: int = 11) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(LanguageModelConfig(vocab_size=vocab, embedding_size=5, encoder=encoder)).eval()


def tagger(encoder: EncoderConfig, **options) -> ManyToMany:
    torch.manual_seed(0)
    return ManyToMany(ManyToManyConfig(output_size=4, input_size=3, encoder=encoder, **options)).eval()


def classifier(encoder: EncoderConfig, **options) -> ManyToOne:
    torch.manual_seed(0)
    return ManyToOne(ManyToOneConfig(output_size=3, vocab_size=9, embedding_size=5, encoder=encoder,
                                     **options)).eval()

"""The export graphs in PyTorch (no ONNX): the scan over each cell's step gives the structure's own numbers.

The reference is the structure's ``forward``, which runs torch's fused kernels, rnnlab's numba kernels or the
parallel scan of minGRU; the graphs run the cells' ``step`` in ``scan``. Fast: no exporter involved.
"""
from __future__ import annotations

import pytest
import torch

from conftest import ENCODERS, UNIDIRECTIONAL, classifier, language_model, tagger
from rnnlab.export.graphs import SequenceGraph, StepGraph
from rnnlab.export.onnx_export import _sequence_example, _step_example, reference_sequence, reference_step

TOL = 1e-5


def _close(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_sequence_graph_equals_the_tagger_with_variable_lengths(name):
    model = tagger(ENCODERS[name])
    args = _sequence_example(model, 4, 7, seed=1, zero_state=True)
    assert sorted(args[1].tolist())[0] == 1 and args[1][0] == 7  # lengths from 1 to T
    with torch.no_grad():
        _close(SequenceGraph(model)(*args), reference_sequence(model, args))


@pytest.mark.parametrize("name", list(UNIDIRECTIONAL))
def test_language_model_graphs_carry_a_given_state(name):
    model = language_model(ENCODERS[name])
    args = _sequence_example(model, 3, 6, seed=2)
    with torch.no_grad():
        _close(SequenceGraph(model)(*args), reference_sequence(model, args))
        step_args = _step_example(model, 3, seed=3)
        _close(StepGraph(model)(*step_args), reference_step(model, step_args))


@pytest.mark.parametrize("name", ["lstm", "mingru", "ln-lstm"])
def test_stepping_the_step_graph_equals_the_sequence_graph(name):
    model = language_model(ENCODERS[name])
    x, lengths, *state = _sequence_example(model, 3, 5, seed=4)
    lengths = torch.full_like(lengths, 5)
    seq, step = SequenceGraph(model), StepGraph(model)
    with torch.no_grad():
        y, *final = seq(x, lengths, *state)
        s = state
        for t in range(5):
            y_t, *s = step(x[:, t], *s)
            torch.testing.assert_close(y_t, y[:, t], atol=TOL, rtol=0)
    _close(s, final)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("name", ["gru", "bi-lstm"])
def test_classifier_poolings(name, pooling):
    model = classifier(ENCODERS[name], pooling=pooling)
    args = _sequence_example(model, 4, 6, seed=5, zero_state=True)
    with torch.no_grad():
        _close(SequenceGraph(model)(*args), reference_sequence(model, args))


@pytest.mark.parametrize("attention, cell, context", [("bahdanau", "lstm", "linear"), ("luong-general", "gru", "pool"),
                                                      ("luong-dot", "rnn", "last"), ("none", "lstm", "last")])
def test_seq2seq_encoder_and_decoder_step_graphs_equal_encode_and_decode_step(attention, cell, context):
    from rnnlab.export.onnx_export import specs_for
    from rnnlab.structures import Seq2Seq, Seq2SeqConfig
    from rnnlab.structures.decoders import DecoderConfig
    from rnnlab.structures.encoders import EncoderConfig

    torch.manual_seed(0)
    bidirectional = context != "last"
    encoder = EncoderConfig(kind="gru", hidden_size=6 if bidirectional else 12, bidirectional=bidirectional)
    model = Seq2Seq(Seq2SeqConfig(tgt_vocab_size=9, src_vocab_size=8, embedding_size=5, encoder=encoder,
                                  decoder=DecoderConfig(cell=cell, hidden_size=12, num_layers=2),
                                  attention=attention, context=context)).eval()
    for spec in specs_for(model):
        args = spec.example(4, 7, seed=1, zero_state=False)
        with torch.no_grad():
            got = spec.module(*args)
        assert len(got) == len(spec.outputs)
        _close(got, spec.reference(args))

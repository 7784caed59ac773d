"""DecoderConfig: validated on construction; the decoder layer and its start state follow it."""
import pytest
import torch

from rnnlab.nn.state import LSTMState
from rnnlab.structures.decoders import DecoderConfig, build_decoder, state_from_vector


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_build_decoder_and_state_from_vector(cell):
    config = DecoderConfig(cell=cell, hidden_size=5, num_layers=3)
    decoder = build_decoder(config, 4)
    h0 = torch.randn(2, 5)
    state = state_from_vector(h0, config)
    h = state.h if cell == "lstm" else state
    assert isinstance(state, LSTMState) == (cell == "lstm")
    assert h.shape == (3, 2, 5) and all(torch.equal(h[layer], h0) for layer in range(3))
    if cell == "lstm":
        assert torch.all(state.c == 0)
    outputs, _ = decoder(torch.randn(2, 7, 4), state)
    assert outputs.shape == (2, 7, 5)


@pytest.mark.parametrize("kw, pattern", [
    (dict(cell="lstm2"), r"decoder.cell must be one of \('lstm', 'gru', 'rnn'\), got 'lstm2'"),
    (dict(hidden_size=0), r"decoder.hidden_size must be a positive integer, got 0"),
    (dict(num_layers=1.5), r"decoder.num_layers must be a positive integer, got 1.5"),
])
def test_bad_decoder_config_names_the_field(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        DecoderConfig(**kw)

"""The traced re-run through the reference cell loop gives the model's own outputs on every path, and its gates
rebuild the cell's own step."""
import pytest
import torch

from rnnlab.inspect import cell_gates, gate_activations, hidden_states, trace
from rnnlab.nn import Recurrent
from rnnlab.nn.gru_cell import GRUCell
from rnnlab.nn.lstm_cell import LSTMCell
from rnnlab.nn.state import LSTMState
from rnnlab.structures import EncoderConfig
from rnnlab.structures.language_model import LanguageModel, LanguageModelConfig
from rnnlab.structures.many_to_one import ManyToOne, ManyToOneConfig

CASES = [("lstm", {}), ("lstm", {"layer_norm": True}), ("gru", {}), ("gru", {"layer_norm": True}), ("rnn", {}),
         ("rnn-relu", {}), ("mingru", {}), ("minlstm", {}), ("lstm", {"bidirectional": True}),
         ("gru", {"bidirectional": True, "num_layers": 2})]


def batch(B=3, T=6, V=9):
    return {"x": torch.randint(0, V, (B, T)), "y": torch.randint(0, 3, (B,)), "lengths": torch.tensor([6, 4, 1][:B])}


@pytest.mark.parametrize("kind,options", CASES)
def test_traced_forward_equals_the_models_own_forward(kind, options):
    config = ManyToOneConfig(output_size=3, vocab_size=9, embedding_size=5, pooling="mean",
                             encoder=EncoderConfig(kind=kind, hidden_size=4, **options))
    model = ManyToOne(config).eval()
    b = batch()
    own = model(b).logits  # the fused path where the options allow it (impl="auto")
    t = trace(model, b)
    torch.testing.assert_close(t.output.logits, own, atol=1e-6, rtol=1e-5)
    D = 2 if options.get("bidirectional") else 1
    assert len(t.layers) == options.get("num_layers", 1) * D
    # the recorded h is the layer's output, zero past each row's length
    outputs, _ = model.encoder(model.inputs(b["x"]), b["lengths"])
    h = torch.cat([layer.h for layer in t.layers[-D:]], dim=-1)
    torch.testing.assert_close(h, outputs, atol=1e-6, rtol=1e-5)
    assert not model.encoder.layer.__dict__.get("forward")  # the patch is gone


def test_language_model_trace_keeps_the_state_contract():
    model = LanguageModel(LanguageModelConfig(vocab_size=9, embedding_size=5,
                                              encoder=EncoderConfig(kind="lstm", hidden_size=4, num_layers=2))).eval()
    b = {"x": torch.randint(0, 9, (2, 5)), "y": torch.randint(0, 9, (2, 5))}
    own = model(b)
    t = trace(model, b)
    torch.testing.assert_close(t.output.logits, own.logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(t.output.state.c, own.state.c, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(t.layers[1].c[:, -1], own.state.c[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_lstm_gates_rebuild_the_cells_step(layer_norm):
    cell = LSTMCell(3, 4, layer_norm=layer_norm)
    x, state = torch.randn(2, 3), LSTMState(torch.randn(2, 4), torch.randn(2, 4))
    mask = torch.bernoulli(torch.full((2, 4), 0.7)) / 0.7
    gate = cell_gates(cell, x, state, mask)
    c = gate["f"] * state.c + gate["i"] * gate["g"]
    h = gate["o"] * torch.tanh(cell.ln_c(c) if layer_norm else c)
    y, new = cell.step(x, state, mask)
    torch.testing.assert_close(c, new.c)
    torch.testing.assert_close(h, y)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_gru_gates_rebuild_the_cells_step(layer_norm):
    cell = GRUCell(3, 4, layer_norm=layer_norm)
    x, h0 = torch.randn(2, 3), torch.randn(2, 4)
    gate = cell_gates(cell, x, h0, None)
    h = (1 - gate["z"]) * gate["n"] + gate["z"] * h0
    torch.testing.assert_close(h, cell.step(x, h0, None)[0])


def test_min_cells_gates_rebuild_the_step():
    from rnnlab.nn.min_rnn import MinGRUCell, MinLSTMCell

    x, h0 = torch.randn(2, 3), torch.rand(2, 4)
    gru, lstm = MinGRUCell(3, 4), MinLSTMCell(3, 4)
    g = cell_gates(gru, x, h0, None)
    torch.testing.assert_close((1 - g["z"]) * h0 + g["z"] * g["h̃"], gru.step(x, h0)[0])
    g = cell_gates(lstm, x, h0, None)
    torch.testing.assert_close(g["f'"] * h0 + g["i'"] * g["h̃"], lstm.step(x, h0)[0])


def test_gate_activations_and_hidden_states_shapes():
    layer = Recurrent("lstm", 3, 4, num_layers=2)
    b = {"x": torch.randn(2, 5, 3), "lengths": torch.tensor([5, 2])}
    gates = gate_activations(layer, b)
    assert gates.names == ["layer l0", "layer l1"] and set(gates.gates[0]) == {"i", "f", "g", "o"}
    assert gates.gates[1]["f"].shape == (2, 5, 4)
    assert gates.gates[0]["f"][1, 2:].abs().sum() == 0  # past the row's length
    states = hidden_states(layer, b)
    torch.testing.assert_close(states.h[1], layer(b["x"], lengths=b["lengths"])[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["cnn", "transformer", "window"])
def test_encoders_without_state_are_refused_with_one_line(kind):
    config = ManyToOneConfig(output_size=3, vocab_size=9, embedding_size=4,
                             encoder=EncoderConfig(kind=kind, hidden_size=4, num_heads=2))
    with pytest.raises(ValueError, match=f"encoder is '{kind}'.*no hidden state"):
        gate_activations(ManyToOne(config).eval(), batch())


def test_an_elman_rnn_has_no_gates():
    with pytest.raises(ValueError, match="'rnn'.*no gates"):
        gate_activations(ManyToOne(ManyToOneConfig(output_size=3, vocab_size=9, encoder=EncoderConfig(kind="rnn",
                                                                                                      hidden_size=4))),
                         batch())

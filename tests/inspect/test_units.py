"""Signals from the text, the unit search, attention maps and saliency against hand computations."""
import pytest
import torch

from rnnlab.inspect import HiddenStates, attention_maps, saliency, saturation, signal_values, unit_search
from rnnlab.structures import EncoderConfig
from rnnlab.structures.many_to_one import ManyToOne, ManyToOneConfig


def test_built_in_signals_per_character():
    units = list('a "b" (c[d])\nxy')
    assert signal_values("inside_quotes", units).tolist()[:6] == [0, 0, 1, 1, 1, 0]
    assert signal_values("line_position", units).tolist()[-3:] == [12, 0, 1]
    assert signal_values("bracket_depth", units).tolist()[6:12] == [1, 1, 2, 2, 1, 0]
    assert signal_values("inside_parens", units).tolist()[6:12] == [0, 1, 1, 1, 1, 1]
    assert signal_values(r"re:\d+", list("ab12c3")).tolist() == [0, 0, 1, 1, 0, 1]


def test_word_units_take_the_value_at_their_last_character():
    assert signal_values("inside_parens", ["f", " (", "x", ")", " y"]).tolist() == [0, 0, 1, 1, 0]


def test_bad_signals_name_the_choices():
    with pytest.raises(ValueError, match="unknown signal 'quotes'.*inside_quotes.*re:PATTERN"):
        signal_values("quotes", ["a"])
    with pytest.raises(ValueError, match="not a valid regular expression"):
        signal_values("re:(", ["a"])


def test_unit_search_finds_the_planted_unit():
    torch.manual_seed(0)
    units = list('say "hi" and "bye" now')
    signal = signal_values("inside_quotes", units)
    h = torch.randn(1, len(units), 6)
    h[0, :, 4] = 0.8 * signal.float() + 0.05 * torch.randn(len(units))
    states = HiddenStates(["l0"], ["LSTMCell"], [h], [torch.randn(1, len(units), 6)], None)
    found = unit_search(states, None, "inside_quotes", units=units, top=3)
    assert found.top[0][:3] == ("l0", "h", 4) and found.top[0][3] > 0.95
    assert found.traces.shape == (3, len(units)) and len(found.candidates) == 12
    r = torch.corrcoef(torch.stack([h[0, :, 4].double(), signal]))[0, 1]
    assert found.top[0][3] == pytest.approx(float(r))


def test_saturation_counts_real_steps_of_sigmoid_gates():
    f = torch.tensor([[[0.05], [0.5], [0.95], [0.0]]])  # (1, 4, 1); the last step is padding
    stats = saturation({"f": f, "g": f}, torch.tensor([3]))
    assert set(stats) == {"f"} and stats["f"]["low"] == pytest.approx(1 / 3) and stats["f"]["high"] == pytest.approx(1 / 3)


def classifier(pooling="attention", kind="gru"):
    config = ManyToOneConfig(output_size=3, vocab_size=9, embedding_size=5, pooling=pooling,
                             encoder=EncoderConfig(kind=kind, hidden_size=4, num_heads=2))
    return ManyToOne(config).double().eval()


def test_attention_pooling_weights_sum_to_one_over_real_steps():
    b = {"x": torch.randint(0, 9, (2, 5)), "lengths": torch.tensor([5, 3])}
    maps = attention_maps(classifier(), b)
    assert maps.kind == "pooling" and maps.weights.shape == (2, 5)
    torch.testing.assert_close(maps.weights.sum(1), torch.ones(2, dtype=torch.float64))
    assert maps.weights[1, 3:].sum() == 0
    with pytest.raises(ValueError, match="returns no attention weights"):
        attention_maps(classifier("mean"), b)


def test_saliency_is_gradient_times_embedding_summed():
    model = classifier("mean", kind="cnn")  # any encoder: saliency needs only the embedding
    b = {"x": torch.randint(0, 9, (1, 6))}
    got = saliency(model, b, target=torch.tensor([2]))
    e = model.inputs.embedding(b["x"]).detach().requires_grad_(True)
    outputs, _ = model.encoder(e)
    logit = model.head(outputs.mean(1))[0, 2]
    (grad,) = torch.autograd.grad(logit, e)
    torch.testing.assert_close(got.scores, (grad * e).sum(-1).detach())
    assert got.kind == "sequence" and got.targets.tolist() == [2]

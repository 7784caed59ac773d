"""OneToMany: it learns to caption two vectors, conditions as configured, and starts from the state it should."""
import pytest
import torch
from _structure_helpers import overfit

from rnnlab.nn.state import LSTMState
from rnnlab.structures.decoders import DecoderConfig
from rnnlab.structures.one_to_many import OneToMany, OneToManyConfig


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
    assert overfit(model, batch, steps=150, lr=1e-2) < 0.05
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


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_initial_state_is_zeros_like_every_other(cell):
    model = OneToMany(OneToManyConfig(feature_size=4, vocab_size=8, decoder=DecoderConfig(cell=cell, hidden_size=6, num_layers=2)))
    state = model.initial_state(3, dtype=torch.float64)
    h = state.h if cell == "lstm" else state
    assert isinstance(state, LSTMState) == (cell == "lstm")
    assert h.shape == (2, 3, 6) and h.dtype == torch.float64 and torch.all(h == 0)


def test_start_state_comes_from_the_vector_with_init_state():
    features = torch.randn(3, 4)
    plain = OneToMany(OneToManyConfig(feature_size=4, vocab_size=8))
    assert plain.start_state(features) is None  # zeros
    model = OneToMany(OneToManyConfig(feature_size=4, vocab_size=8, init_state=True,
                                      decoder=DecoderConfig(hidden_size=6, num_layers=2)))
    state = model.start_state(features)
    expected = torch.tanh(model.init(features))  # (B, H)
    for layer in range(2):
        torch.testing.assert_close(state.h[layer], expected)
    assert torch.all(state.c == 0)


def test_generation_length_and_end_token():
    model = OneToMany(OneToManyConfig(feature_size=4, vocab_size=8)).eval()
    features = torch.randn(3, 4)
    out = model.generate(features, max_new_tokens=5, end_token=None)
    assert out.shape == (3, 5)
    sampled = model.generate(features, max_new_tokens=5, method="sample", temperature=2.0,
                             generator=torch.Generator().manual_seed(0))
    assert sampled.shape[0] == 3 and sampled.shape[1] <= 5


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: OneToManyConfig(feature_size=3, vocab_size=5, condition="always"), r"condition must be one of"),
        (lambda: OneToManyConfig(feature_size=3, vocab_size=5, decoder=DecoderConfig(cell="lstm2")), r"decoder.cell must be one of"),
        (lambda: OneToManyConfig(feature_size=3, vocab_size=5, eos_token=5), r"eos_token must lie in \[0, 5\)"),
    ],
)
def test_bad_configurations_fail_at_construction(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()

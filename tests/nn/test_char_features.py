"""Character-level word features: shapes, padding, a word's vector independent of its batch, and ManyToMany."""
import pytest
import torch
import torch.nn.functional as F

from rnnlab.nn.char_features import CharFeatures
from rnnlab.structures import EncoderConfig, ManyToMany, ManyToManyConfig


def chars():
    # (B=2, T=3, W=5): row 0 has words of 3, 5 and 1 chars; row 1 has one word of 2 chars and two padded steps
    return torch.tensor([
        [[3, 4, 5, 0, 0], [6, 7, 8, 9, 2], [4, 0, 0, 0, 0]],
        [[5, 6, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
    ])


@pytest.mark.parametrize("kind,width", [("cnn", 7), ("lstm", 14)])
def test_shape_and_padded_steps_are_zero(kind, width):
    torch.manual_seed(0)
    f = CharFeatures(10, 4, 7, kind=kind)
    out = f(chars())
    assert out.shape == (2, 3, width) and f.output_size == width
    assert torch.equal(out[1, 1:], torch.zeros(2, width))
    assert out[0].abs().sum(-1).min() > 0


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_a_word_gets_the_same_vector_alone_and_padded_in_a_batch(kind):
    torch.manual_seed(0)
    f = CharFeatures(10, 4, 6, kind=kind)
    batch = f(chars())
    alone = f(torch.tensor([[[5, 6]]]))  # the word of row 1, with no padding at all
    assert torch.allclose(batch[1, 0], alone[0, 0], atol=1e-6)
    alone = f(torch.tensor([[[3, 4, 5]]]))
    assert torch.allclose(batch[0, 0], alone[0, 0], atol=1e-6)


def test_cnn_is_max_over_positions_of_a_same_padded_convolution():
    torch.manual_seed(0)
    f = CharFeatures(10, 4, 6, kind="cnn", kernel_size=3)
    word = torch.tensor([6, 7, 8, 9, 2])
    e = f.embedding.weight[word].T.unsqueeze(0)  # (1, C, W)
    expected = F.conv1d(e, f.conv.weight, f.conv.bias, padding=1).amax(dim=2)[0]
    assert torch.allclose(f(chars())[0, 1], expected, atol=1e-6)


def test_lstm_concatenates_the_final_states_of_both_directions():
    torch.manual_seed(0)
    f = CharFeatures(10, 4, 3, kind="lstm")
    ref = torch.nn.LSTM(4, 3, bidirectional=True, batch_first=True)
    ref.load_state_dict({k: v for k, v in f.lstm.state_dict().items()})
    word = torch.tensor([[3, 4, 5]])
    _, (h, _) = ref(f.embedding(word))
    assert torch.allclose(f(word.view(1, 1, 3))[0, 0], torch.cat([h[0, 0], h[1, 0]]), atol=1e-6)


def test_bad_inputs_name_the_problem():
    f = CharFeatures(10, 4, 6)
    with pytest.raises(ValueError, match=r"chars must be a \(B, T, W\) integer tensor"):
        f(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"char ids must lie in \[0, 10\)"):
        f(torch.full((1, 1, 2), 10))
    with pytest.raises(ValueError, match="kind must be one of"):
        CharFeatures(10, 4, 6, kind="gru")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        CharFeatures(10, 4, 6, kernel_size=2)


def test_many_to_many_with_char_features_and_a_crf_learns_and_predicts():
    torch.manual_seed(0)
    config = ManyToManyConfig(output_size=3, vocab_size=6, embedding_size=4, crf=True, char_encoder="cnn",
                              char_vocab_size=10, char_embedding_size=4, char_hidden_size=5, word_dropout=0.1,
                              encoder=EncoderConfig(kind="lstm", hidden_size=8, bidirectional=True))
    model = ManyToMany(config)
    batch = {"x": torch.tensor([[1, 2, 3], [4, 5, 0]]), "chars": chars(), "lengths": torch.tensor([3, 1]),
             "y": torch.tensor([[0, 1, 2], [2, 0, 0]])}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    first = model.loss(batch).item()
    for _ in range(30):
        optimizer.zero_grad()
        model.loss(batch).backward()
        optimizer.step()
    model.eval()
    assert model.loss(batch).item() < first / 4
    assert model.predict(batch["x"], batch["lengths"], chars=batch["chars"]).tolist() == [[0, 1, 2], [2, 0, 0]]
    with pytest.raises(ValueError, match="chars"):
        model({"x": batch["x"]})
    with pytest.raises(ValueError, match="char_encoder='cnn' needs token inputs"):
        ManyToManyConfig(output_size=3, vocab_size=6, char_encoder="cnn")

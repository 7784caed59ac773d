"""The fixed-window encoder: what position t can see, the unfold windowing, padding, errors."""
import pytest
import torch

from rnnlab.nn.window import WindowEncoder
from rnnlab.structures.encoders import EncoderConfig, build_encoder


def test_shapes_and_config():
    enc = build_encoder(EncoderConfig(kind="window", hidden_size=6, window=3, num_layers=2), input_size=4)
    assert isinstance(enc, WindowEncoder) and enc.output_size == 6 and len(enc.layers) == 2
    outputs, summary = enc(torch.randn(2, 5, 4))
    assert outputs.shape == (2, 5, 6) and summary.shape == (2, 6)
    assert torch.equal(summary, outputs[:, -1])
    assert outputs.abs().max() <= 1  # tanh


def test_windows_equal_a_hand_loop():
    n, I = 3, 2
    enc = WindowEncoder(I, 4, window=n)
    x = torch.randn(2, 5, I)
    w = enc.windows(x)  # (B, T, n·I)
    for t in range(5):
        parts = [x[:, s] if s >= 0 else torch.zeros(2, I) for s in range(t - n + 1, t + 1)]
        assert torch.equal(w[:, t], torch.cat(parts, dim=-1))
    # and the first layer reads exactly these windows
    assert torch.allclose(enc(x)[0], torch.tanh(enc.layers[0](w)))


@pytest.mark.parametrize("n", [1, 2, 4])
def test_position_t_sees_exactly_the_last_n_inputs(n):
    T = 8
    enc = WindowEncoder(3, 5, window=n, num_layers=2)
    x = torch.randn(1, T, 3)
    base, _ = enc(x)
    t = 6
    for s in range(T):
        x2 = x.clone()
        x2[0, s] += 3.0
        y, _ = enc(x2)
        changed = not torch.allclose(y[0, t], base[0, t])
        assert changed == (t - n + 1 <= s <= t), f"input at {s}, output at {t}, window {n}"


def test_padding_never_changes_real_positions():
    enc = WindowEncoder(3, 4, window=3)
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 3)
    x[1, 2:] = 1e6  # garbage in the padding
    x[2, 4:] = float("nan")
    outputs, summary = enc(x, lengths)
    for b, L in enumerate(lengths.tolist()):
        alone, last = enc(x[b : b + 1, :L])
        assert torch.allclose(outputs[b, :L], alone[0])
        assert torch.allclose(summary[b], last[0])
        assert torch.all(outputs[b, L:] == 0)


def test_dropout_acts_only_in_training():
    enc = WindowEncoder(3, 8, window=2, num_layers=2, dropout=0.5)
    x = torch.randn(2, 4, 3)
    enc.eval()
    assert torch.equal(enc(x)[0], enc(x)[0])
    enc.train()
    assert not torch.equal(enc(x)[0], enc(x)[0])


def test_gradcheck():
    enc = WindowEncoder(2, 3, window=2, num_layers=2).double()
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: enc(x, torch.tensor([4, 3]))[0], (x,))


@pytest.mark.parametrize("window", [0, -2])
def test_bad_window(window):
    with pytest.raises(ValueError, match=rf"window must be an integer of at least 1.*got {window}"):
        WindowEncoder(3, 4, window=window)


@pytest.mark.parametrize(
    "x,lengths,error,pattern",
    [
        (torch.randn(2, 3), None, ValueError, r"x must have shape \(B, T, I\) with I=3.*got shape \(2, 3\)"),
        (torch.randn(2, 4, 5), None, ValueError, r"x must have input size I=3.*got shape \(2, 4, 5\)"),
        (torch.randn(2, 4, 3).double(), None, TypeError, r"x must have dtype torch.float32.*got torch.float64"),
        (torch.randn(2, 0, 3), None, ValueError, r"x must have at least one time step"),
        (torch.randn(2, 4, 3), torch.tensor([5, 1]), ValueError, r"lengths must lie in \[1, T=4\]"),
    ],
)
def test_bad_input(x, lengths, error, pattern):
    with pytest.raises(error, match=pattern):
        WindowEncoder(3, 4, window=2)(x, lengths)

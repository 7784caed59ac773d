"""The temporal CNN encoder (causality, receptive field, padding) and the small 2-D CNN."""
import pytest
import torch

from rnnlab.nn.conv import ConvNet2d, TemporalCNNEncoder
from rnnlab.structures.encoders import EncoderConfig, build_encoder


def _sgd_step(loss, params, lr):
    """Plain gradient descent by hand: building a torch.optim optimizer first imports torch._dynamo (seconds)."""
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * g


def test_build_from_config():
    cfg = EncoderConfig(kind="cnn", hidden_size=6, num_layers=3, kernel_size=2, dilation_base=3, causal=True)
    enc = build_encoder(cfg, input_size=4)
    assert isinstance(enc, TemporalCNNEncoder) and enc.output_size == 6
    assert enc.dilations == [1, 3, 9] and enc.receptive_field == 1 + 1 * (1 + 3 + 9)
    outputs, summary = enc(torch.randn(2, 7, 4))
    assert outputs.shape == (2, 7, 6) and summary.shape == (2, 6)


def test_residual_where_shapes_match():
    enc = TemporalCNNEncoder(3, 3, num_layers=1, kernel_size=1)
    x = torch.randn(2, 5, 3)
    z = torch.relu(torch.einsum("oi,bti->bto", enc.convs[0].weight[:, :, 0], x) + enc.convs[0].bias)
    assert torch.allclose(enc(x)[0], z + x, atol=1e-6)


@pytest.mark.parametrize("kernel_size,dilation_base,num_layers", [(3, 2, 2), (2, 2, 3), (3, 1, 2)])
def test_causal_sees_only_the_past_and_exactly_the_receptive_field(kernel_size, dilation_base, num_layers):
    T = 16
    enc = TemporalCNNEncoder(3, 8, num_layers=num_layers, kernel_size=kernel_size, dilation_base=dilation_base, causal=True)
    R = enc.receptive_field
    assert R == 1 + (kernel_size - 1) * sum(dilation_base**l for l in range(num_layers))
    x = torch.randn(1, T, 3)
    base, _ = enc(x)
    t = T - 1
    assert t - R >= 0
    for s in range(T):
        x2 = x.clone()
        x2[0, s] += 5.0
        y, _ = enc(x2)
        # a change at s never touches an earlier output
        assert torch.equal(y[0, :s], base[0, :s])
        changed = not torch.allclose(y[0, t], base[0, t])
        assert changed == (s > t - R), f"input at {s}, output at {t}, receptive field {R}"


def test_non_causal_sees_both_sides_within_the_receptive_field():
    enc = TemporalCNNEncoder(3, 8, num_layers=2, kernel_size=3, dilation_base=2)
    R = enc.receptive_field  # 7: t-3 … t+3
    x = torch.randn(1, 15, 3)
    base, _ = enc(x)
    t = 7
    for s in range(15):
        x2 = x.clone()
        x2[0, s] += 5.0
        changed = not torch.allclose(enc(x2)[0][0, t], base[0, t])
        assert changed == (abs(s - t) <= (R - 1) // 2), s


@pytest.mark.parametrize("causal", [False, True])
def test_padding_never_changes_real_positions(causal):
    enc = TemporalCNNEncoder(3, 5, num_layers=3, kernel_size=3, causal=causal)
    lengths = torch.tensor([9, 3, 6])
    x = torch.randn(3, 9, 3)
    x[1, 3:] = 1e6  # garbage in the padding
    x[2, 6:] = float("nan")
    outputs, summary = enc(x, lengths)
    for b, L in enumerate(lengths.tolist()):
        alone, last = enc(x[b : b + 1, :L])
        assert torch.allclose(outputs[b, :L], alone[0], atol=1e-6)
        assert torch.allclose(summary[b], last[0], atol=1e-6)
        assert torch.all(outputs[b, L:] == 0)


def test_summary_is_last_step_if_causal_else_max_over_real_steps():
    lengths = torch.tensor([5, 2])
    x = torch.randn(2, 5, 3)
    causal = TemporalCNNEncoder(3, 4, causal=True)
    outputs, summary = causal(x, lengths)
    assert torch.equal(summary, outputs[torch.arange(2), lengths - 1])
    same = TemporalCNNEncoder(3, 4)
    outputs, summary = same(x, lengths)
    assert torch.equal(summary[0], outputs[0].amax(0)) and torch.equal(summary[1], outputs[1, :2].amax(0))


def test_gradcheck():
    enc = TemporalCNNEncoder(2, 3, num_layers=2, kernel_size=2, causal=True).double()
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: enc(x, torch.tensor([5, 3]))[0], (x,))


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"kernel_size": 0}, r"kernel_size must be a positive integer, got 0"),
        ({"dilation_base": 0}, r"dilation_base must be a positive integer, got 0"),
        ({"num_layers": 0}, r"num_layers must be a positive integer, got 0"),
        ({"dropout": 1.5}, r"dropout must lie in \[0, 1\), got 1.5"),
    ],
)
def test_bad_options(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        TemporalCNNEncoder(3, 4, **kwargs)


def test_bad_x():
    enc = TemporalCNNEncoder(3, 4)
    with pytest.raises(ValueError, match=r"x must have input size I=3.*got shape \(2, 4, 2\)"):
        enc(torch.randn(2, 4, 2))
    with pytest.raises(ValueError, match=r"lengths must be 1-D of shape \(2,\)"):
        enc(torch.randn(2, 4, 3), torch.tensor([4]))


# -- ConvNet2d ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (9, 7), (1, 1)])
def test_convnet_shapes(size):
    net = ConvNet2d(3, 10, channels=(4, 8, 8))
    assert net(torch.randn(2, 3, *size)).shape == (2, 10)


def test_encode_frames_equals_each_frame():
    net = ConvNet2d(1, 6, channels=(4,), dropout=0.3).eval()
    video = torch.randn(2, 3, 1, 12, 12)
    features = net.encode_frames(video)
    assert features.shape == (2, 3, 6)
    for b in range(2):
        for t in range(3):
            assert torch.allclose(features[b, t], net(video[b, t : t + 1])[0], atol=1e-6)


def _bright_or_dark(n):
    labels = torch.arange(n) % 2
    return torch.rand(n, 1, 6, 6) + labels.view(n, 1, 1, 1), labels  # class 1 is brighter


def test_convnet_learns_bright_vs_dark():
    net = ConvNet2d(1, 2, channels=(4,))
    images, labels = _bright_or_dark(16)
    for _ in range(40):
        _sgd_step(torch.nn.functional.cross_entropy(net(images), labels), list(net.parameters()), lr=0.5)
    test_images, test_labels = _bright_or_dark(32)
    assert torch.equal(net(test_images).argmax(-1), test_labels)


@pytest.mark.parametrize(
    "call,x,error,pattern",
    [
        ("forward", torch.randn(3, 8, 8), ValueError, r"images must have shape \(B, C, H, W\) with C=3, got shape \(3, 8, 8\)"),
        ("forward", torch.randn(2, 1, 8, 8), ValueError, r"images must have C=3 channels in dimension 1.*got shape \(2, 1, 8, 8\)"),
        ("forward", torch.ones(2, 3, 8, 8, dtype=torch.uint8), TypeError, r"images must be a floating-point tensor, got dtype torch.uint8"),
        ("forward", torch.randn(2, 3, 8, 8).double(), TypeError, r"images must have dtype torch.float32.*got torch.float64"),
        ("encode_frames", torch.randn(2, 3, 8, 8), ValueError, r"video must have shape \(B, T, C, H, W\) with C=3, got shape \(2, 3, 8, 8\)"),
        ("encode_frames", torch.randn(2, 4, 1, 8, 8), ValueError, r"video must have C=3 channels in dimension 2"),
    ],
)
def test_convnet_bad_input(call, x, error, pattern):
    net = ConvNet2d(3, 4)
    with pytest.raises(error, match=pattern):
        getattr(net, call)(x)


def test_convnet_bad_channels_option():
    with pytest.raises(ValueError, match=r"channels must be a non-empty sequence of positive integers, got \(\)"):
        ConvNet2d(3, 4, channels=())

"""Every encoder keeps the contract: outputs zero past each length, and a padded row equals the row alone."""
import pytest
import torch
from _structure_helpers import LENGTHS, enc

from rnnlab.structures.encoders import KINDS, EncoderConfig, build_encoder


@pytest.mark.parametrize("kind", KINDS)
def test_every_encoder_keeps_the_contract(kind):
    encoder = build_encoder(enc(kind, num_layers=2), 5).eval()
    x = torch.randn(4, 7, 5)
    outputs, summary = encoder(x, LENGTHS)
    assert outputs.shape == (4, 7, encoder.output_size) and summary.shape == (4, encoder.output_size)
    for b, n in enumerate(LENGTHS.tolist()):
        assert torch.all(outputs[b, n:] == 0), "outputs past a length must be zero"
        alone_out, alone_sum = encoder(x[b : b + 1, :n])
        torch.testing.assert_close(outputs[b, :n], alone_out[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(summary[b], alone_sum[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: EncoderConfig(kind="window", window=0), r"window must be at least 1"),
        (lambda: EncoderConfig(kind="rnn2"), r"encoder kind must be one of"),
        (lambda: EncoderConfig(kind="transformer", hidden_size=30, num_heads=4), r"hidden_size \(30\) must be divisible by num_heads \(4\)"),
    ],
)
def test_bad_configurations_fail_at_construction(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()

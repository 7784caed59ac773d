"""SequenceClassifier and FrameClassifier: normalisation inside the model, padding never reaching a real row,
a bundle round trip, and the frame-averaging baseline's blindness to frame order."""
import numpy as np
import torch

from rnnlab.structures import EncoderConfig, FrameClassifier, FrameClassifierConfig, SequenceClassifier
from rnnlab.structures.sequence_classifier import SequenceClassifierConfig
from rnnlab.tasks._sequence_classifier import fit_normalization
from rnnlab.training import load_bundle, save_bundle


def small(**kw):
    torch.manual_seed(0)
    return SequenceClassifier(SequenceClassifierConfig(input_size=3, num_classes=4,
                                                       encoder=EncoderConfig(kind="gru", hidden_size=5), **kw))


def test_normalisation_equals_feeding_standardised_features():
    model = small(projection_size=6).eval()
    x = torch.randn(2, 7, 3) * torch.tensor([10.0, 0.1, 3.0]) + torch.tensor([5.0, -2.0, 0.0])
    mean, std = x.reshape(-1, 3).mean(0), x.reshape(-1, 3).std(0, unbiased=False)
    plain = model({"x": (x - mean) / std}).logits
    model.set_normalization(mean, std)
    assert torch.allclose(model({"x": x}).logits, plain, atol=1e-6)


def test_padding_does_not_change_a_rows_logits():
    model = small(pooling="mean").eval()
    model.set_normalization(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 1.0, 0.5]))
    x = torch.randn(1, 4, 3)
    padded = torch.cat([x, torch.full((1, 3, 3), 99.0)], dim=1)
    alone = model({"x": x}).logits
    assert torch.allclose(model({"x": padded, "lengths": torch.tensor([4])}).logits, alone, atol=1e-6)


def test_fit_normalization_matches_numpy_and_skips_nan():
    rng = np.random.default_rng(0)
    seqs = [rng.normal(3, 2, (n, 2)) for n in (5, 9)]
    seqs[1][2, 0] = np.nan
    mean, std = fit_normalization(seqs)
    flat = np.concatenate(seqs)
    assert np.allclose(mean.numpy(), np.nanmean(flat, 0), atol=1e-5)
    assert np.allclose(std.numpy(), np.nanstd(flat, 0), atol=1e-5)


def test_bundle_round_trip_keeps_the_statistics(tmp_path):
    model = small().eval()
    model.set_normalization(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 1.0, 0.5]))
    x = torch.randn(2, 5, 3)
    save_bundle(tmp_path / "b", model)
    loaded = load_bundle(tmp_path / "b").model
    assert torch.equal(loaded.feature_std, model.feature_std)
    assert torch.allclose(loaded({"x": x}).logits, model({"x": x}).logits)


def test_frame_classifier_shapes_and_order_blind_baseline():
    torch.manual_seed(0)
    video = torch.randn(2, 5, 1, 12, 12)
    reversed_video = video.flip(1)
    avg = FrameClassifier(FrameClassifierConfig(in_channels=1, num_classes=3, frame_features=8, channels=(4,),
                                                temporal="average")).eval()
    assert torch.allclose(avg({"x": video}).logits, avg({"x": reversed_video}).logits, atol=1e-6)
    rec = FrameClassifier(FrameClassifierConfig(in_channels=1, num_classes=3, frame_features=8, channels=(4,),
                                                encoder=EncoderConfig(kind="lstm", hidden_size=6))).eval()
    out = rec({"x": video, "lengths": torch.tensor([5, 3])}).logits
    assert out.shape == (2, 3)
    assert not torch.allclose(rec({"x": video}).logits, rec({"x": reversed_video}).logits)
    loss = rec.loss({"x": video, "y": torch.tensor([0, 2])})
    loss.backward()
    assert rec.cnn.head.weight.grad is not None

"""Captioner and OneToMany's attention: weights sum to 1 over the feature positions, step-by-step decoding
equals the teacher-forced pass, beam 1 equals greedy, the doubly stochastic penalty by hand, the loss falls."""
import pytest
import torch

from rnnlab.nn.conv import ConvNet2d
from rnnlab.structures import Captioner, CaptionerConfig, DecoderConfig
from rnnlab.structures.one_to_many import OneToMany, OneToManyConfig, attention_penalty
from rnnlab.training.checkpoint import load_bundle, save_bundle


def tiny(**kw) -> Captioner:
    torch.manual_seed(0)
    kw.setdefault("channels", (4, 8))
    return Captioner(CaptionerConfig(vocab_size=11, feature_size=8, embedding_size=8,
                                     decoder=DecoderConfig(hidden_size=16), **kw))


def batch(B=3, T=5, size=12):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (B, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.randint(3, 11, (B, T), generator=g)
    y[:, -1] = 2
    return {"images": images, "y": y, "lengths": torch.full((B,), T)}


def test_conv_encode_gives_the_positions_and_the_same_summary_as_forward():
    cnn = ConvNet2d(3, 6, channels=(4, 5))
    images = torch.randn(2, 3, 9, 7)
    positions, summary = cnn.encode(images)
    fmap = cnn.features(images)  # (2, 5, 3, 2)
    assert positions.shape == (2, 6, 5)
    torch.testing.assert_close(positions[:, 1 * 2 + 1], fmap[:, :, 1, 1])  # row-major: s = i * W' + j
    torch.testing.assert_close(summary, cnn(images))


def test_attention_weights_sum_to_one_over_the_feature_positions():
    model = tiny(attention="soft").eval()
    b = batch(size=12)
    out = model(b)
    grid = model.feature_grid(12, 12)
    assert grid == (3, 3)
    assert out.logits.shape == (3, 5, 11) and out.attention.shape == (3, 5, 9)
    assert torch.all(out.attention >= 0)
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(3, 5))
    assert tiny(attention="none")(b).attention is None


@pytest.mark.parametrize("attention", ["none", "soft"])
@pytest.mark.parametrize("condition", ["first", "every"])
def test_step_by_step_decoding_equals_the_teacher_forced_pass(attention, condition):
    model = tiny(attention=attention, condition=condition).eval()
    b = batch()
    with torch.no_grad():
        logits = model(b).logits  # (B, T, V); without attention on the fused whole-sequence kernel
        memory, v = model.encode(b["images"])
        state = model.decoder.start(v, memory)
        prev = torch.full((3,), 1)
        for t in range(b["y"].shape[1]):
            step, state, _ = model.decoder.step(prev, state)
            torch.testing.assert_close(step, logits[:, t], atol=1e-5, rtol=1e-5)
            prev = b["y"][:, t]


@pytest.mark.parametrize("attention", ["none", "soft"])
@pytest.mark.parametrize("condition", ["first", "every"])
def test_beam_size_one_equals_greedy(attention, condition):
    model = tiny(attention=attention, condition=condition)
    images = batch()["images"]
    greedy = model.generate(images, max_new_tokens=7, method="greedy")
    beam = model.generate(images, max_new_tokens=7, method="beam", beam_width=1)
    assert torch.equal(greedy, beam)


def test_doubly_stochastic_penalty_by_hand_and_in_the_loss():
    w = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]]])  # (B=1, T=3, S=2)
    # all three steps: column sums 1.7, 1.3 -> 0.49 + 0.09; the first two only: 1.5, 0.5 -> 0.25 + 0.25
    torch.testing.assert_close(attention_penalty(w), torch.tensor(0.58))
    torch.testing.assert_close(attention_penalty(w, torch.tensor([2])), torch.tensor(0.5))
    plain, penalised = tiny(attention="soft"), tiny(attention="soft", attention_penalty=2.0)
    b = batch()
    out = plain(b)
    expected = plain.loss(b) + 2.0 * attention_penalty(out.attention, b["lengths"])
    torch.testing.assert_close(penalised.loss(b), expected)


@pytest.mark.parametrize("attention", ["none", "soft"])
def test_teacher_forced_loss_falls_on_a_tiny_set(attention):
    model = tiny(attention=attention, attention_gate=attention == "soft")
    b = batch(B=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss(b).item()
    for _ in range(30):
        loss = model.loss(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.loss(b).item() < 0.5 * first


def test_bundle_round_trip_rebuilds_the_captioner(tmp_path):
    model = tiny(attention="soft", condition="every", channels=(4, 6, 8)).eval()
    save_bundle(tmp_path / "b", model)
    loaded = load_bundle(tmp_path / "b").model
    b = batch(size=16)
    assert isinstance(loaded, Captioner) and loaded.config == model.config
    torch.testing.assert_close(loaded(b).logits, model(b).logits)


def test_bad_arguments_say_what_to_change():
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, H, W\), got \(3, 12, 12\)"):
        tiny()({"images": torch.zeros(3, 12, 12), "y": torch.zeros(3, 2, dtype=torch.long)})
    with pytest.raises(ValueError, match="attention_gate and attention_penalty need attention='soft'"):
        CaptionerConfig(vocab_size=5, attention="none", attention_penalty=1.0)
    plain = OneToMany(OneToManyConfig(feature_size=4, vocab_size=8))
    with pytest.raises(ValueError, match="no attention"):
        plain.generate(torch.zeros(1, 4), memory=torch.zeros(1, 2, 3))
    attending = OneToMany(OneToManyConfig(feature_size=4, vocab_size=8, memory_size=3))
    with pytest.raises(ValueError, match=r"memory must have shape \(1, S, 3\), got \(1, 2, 5\)"):
        attending.generate(torch.zeros(1, 4), memory=torch.zeros(1, 2, 5))

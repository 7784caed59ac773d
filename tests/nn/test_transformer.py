"""Transformer blocks (pre/post norm, LayerNorm/RMSNorm), positions, the encoder contract, the decoder."""
import math

import pytest
import torch
from torch import nn

from rnnlab.nn.transformer import (
    LearnedPositions,
    SinusoidalPositions,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
)

B, T, I, H, HEADS = 3, 6, 5, 8, 2

LENGTHS = torch.tensor([6, 3, 1])


def _sa(attn, x, **kw):
    return attn(x, x, x, **kw)


# ------------------------------------------------------------------------------------------------
# blocks compute their equations
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_encoder_block_pre_and_post_norm_follow_their_equations(norm):
    x = torch.randn(B, T, H)
    mask = torch.arange(T) < LENGTHS.unsqueeze(1)
    torch.manual_seed(1)
    pre = TransformerEncoderBlock(H, HEADS, 16, norm=norm, norm_position="pre")
    post = TransformerEncoderBlock(H, HEADS, 16, norm=norm, norm_position="post")
    for n in (pre.norm1, pre.norm2):  # non-trivial gains (and biases) so a misplaced norm shows
        nn.init.uniform_(n.weight, 0.5, 1.5)
        if norm == "layer":
            nn.init.uniform_(n.bias, -0.5, 0.5)
    post.load_state_dict(pre.state_dict())  # same parameters: only the order of operations differs
    kw = dict(key_padding_mask=mask, causal=False)

    # pre-norm:  x = x + SA(N1(x));  x = x + FF(N2(x))
    h = x + _sa(pre.attn, pre.norm1(x), **kw)
    expected_pre = h + pre.ff(pre.norm2(h))
    torch.testing.assert_close(pre(x, **kw), expected_pre)

    # post-norm: x = N1(x + SA(x));  x = N2(x + FF(x))
    h = post.norm1(x + _sa(post.attn, x, **kw))
    expected_post = post.norm2(h + post.ff(h))
    torch.testing.assert_close(post(x, **kw), expected_post)

    assert not torch.allclose(expected_pre, expected_post, atol=1e-3)


@pytest.mark.parametrize("norm, cls", [("layer", nn.LayerNorm), ("rms", nn.RMSNorm)])
def test_norm_option_picks_torch_norm(norm, cls):
    blk = TransformerEncoderBlock(H, HEADS, 16, norm=norm)
    assert type(blk.norm1) is cls and type(blk.norm2) is cls
    enc = TransformerEncoder(I, H, num_heads=HEADS, norm=norm)
    assert type(enc.final_norm) is cls
    assert isinstance(TransformerEncoder(I, H, num_heads=HEADS, norm_position="post").final_norm, nn.Identity)


def test_feed_forward_is_linear_gelu_dropout_linear():
    blk = TransformerEncoderBlock(H, HEADS, 16)
    kinds = [type(m) for m in blk.ff.net]
    assert kinds == [nn.Linear, nn.GELU, nn.Dropout, nn.Linear]
    assert blk.ff.net[0].out_features == 16


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_decoder_block_follows_its_equations(norm_position):
    blk = TransformerDecoderBlock(H, HEADS, 16, norm="rms", norm_position=norm_position)
    x, m = torch.randn(B, T, H), torch.randn(B, 4, H)
    mm = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    sa = lambda z: _sa(blk.self_attn, z, causal=True)  # noqa: E731
    ca = lambda z: blk.cross_attn(z, m, m, key_padding_mask=mm)  # noqa: E731
    if norm_position == "pre":
        h = x + sa(blk.norm1(x))
        h = h + ca(blk.norm2(h))
        expected = h + blk.ff(blk.norm3(h))
    else:
        h = blk.norm1(x + sa(x))
        h = blk.norm2(h + ca(h))
        expected = blk.norm3(h + blk.ff(h))
    torch.testing.assert_close(blk(x, m, memory_mask=mm), expected)


# ------------------------------------------------------------------------------------------------
# positions
# ------------------------------------------------------------------------------------------------


def test_sinusoidal_positions_match_the_paper_and_extend():
    pos = SinusoidalPositions(6, max_len=4)
    x = torch.zeros(1, 7, 6)  # longer than max_len: computed on the fly
    pe = pos(x)[0]
    for t in range(7):
        for i in range(3):
            angle = t / 10000 ** (2 * i / 6)
            assert pe[t, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[t, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    torch.testing.assert_close(pos(torch.zeros(1, 3, 6))[0], pe[:3])
    assert "pe" not in pos.state_dict()
    assert SinusoidalPositions(5, max_len=3)(torch.zeros(1, 3, 5)).shape == (1, 3, 5)  # odd size


def test_learned_positions_past_max_len_raise():
    pos = LearnedPositions(H, max_len=4)
    assert pos(torch.zeros(2, 4, H)).shape == (2, 4, H)
    with pytest.raises(ValueError, match=r"T=5 exceeds max_len=4.*positions='sinusoidal'"):
        pos(torch.zeros(2, 5, H))
    enc = TransformerEncoder(I, H, num_heads=HEADS, positions="learned", max_len=4)
    with pytest.raises(ValueError, match="exceeds max_len=4"):
        enc(torch.randn(1, 5, I))
    assert TransformerEncoder(I, H, num_heads=HEADS, max_len=4)(torch.randn(1, 5, I))[0].shape == (1, 5, H)


# ------------------------------------------------------------------------------------------------
# encoder contract
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_causal_encoder_future_inputs_do_not_change_the_past(norm_position):
    enc = TransformerEncoder(I, H, num_heads=HEADS, causal=True, norm_position=norm_position).eval()
    x = torch.randn(B, T, I)
    y1, _ = enc(x)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(B, T - 4, I)
    y2, _ = enc(x2)
    torch.testing.assert_close(y1[:, :4], y2[:, :4])
    assert not torch.allclose(y1[:, 4:], y2[:, 4:])


def test_bidirectional_encoder_sees_the_future():
    enc = TransformerEncoder(I, H, num_heads=HEADS).eval()
    x = torch.randn(1, T, I)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(enc(x)[0][:, 0], enc(x2)[0][:, 0])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_padding_never_changes_a_real_position(causal, positions):
    enc = TransformerEncoder(I, H, num_heads=HEADS, causal=causal, positions=positions, max_len=T).eval()
    x = torch.randn(B, T, I)
    outputs, summary = enc(x, LENGTHS)
    for b in range(B):
        n = int(LENGTHS[b])
        out_b, sum_b = enc(x[b : b + 1, :n])
        torch.testing.assert_close(outputs[b : b + 1, :n], out_b)
        torch.testing.assert_close(summary[b : b + 1], sum_b)
        assert (outputs[b, n:] == 0).all()
    # garbage in the padding changes nothing
    noisy = torch.where((torch.arange(T) < LENGTHS.unsqueeze(1)).unsqueeze(-1), x, 100 * torch.randn(B, T, I))
    o2, s2 = enc(noisy, LENGTHS)
    torch.testing.assert_close(o2, outputs)
    torch.testing.assert_close(s2, summary)


def test_summary_rules():
    x = torch.randn(B, T, I)
    enc = TransformerEncoder(I, H, num_heads=HEADS).eval()
    out, summary = enc(x, LENGTHS)
    expected = torch.stack([out[b, : int(LENGTHS[b])].mean(0) for b in range(B)])
    torch.testing.assert_close(summary, expected)
    assert enc.output_size == H and out.shape == (B, T, H) and summary.shape == (B, H)

    causal = TransformerEncoder(I, H, num_heads=HEADS, causal=True).eval()
    out, summary = causal(x, LENGTHS)
    torch.testing.assert_close(summary, torch.stack([out[b, int(LENGTHS[b]) - 1] for b in range(B)]))
    out, summary = causal(x)
    torch.testing.assert_close(summary, out[:, -1])


def test_built_from_encoder_config():
    from rnnlab.structures.encoders import EncoderConfig, build_encoder

    cfg = EncoderConfig(kind="transformer", hidden_size=H, num_layers=1, num_heads=HEADS, norm="rms",
                        norm_position="post", positions="learned", max_len=T, causal=True)
    enc = build_encoder(cfg, I)
    assert isinstance(enc, TransformerEncoder) and enc.output_size == H and enc.causal
    assert enc.blocks[0].ff.net[0].out_features == 4 * H
    out, summary = enc(torch.randn(B, T, I), LENGTHS)
    assert out.shape == (B, T, H) and summary.shape == (B, H)


# ------------------------------------------------------------------------------------------------
# decoder
# ------------------------------------------------------------------------------------------------


def test_decoder_is_causal_and_ignores_memory_padding():
    dec = TransformerDecoder(I, H, num_heads=HEADS).eval()
    y, memory = torch.randn(B, T, I), torch.randn(B, 4, H)
    mlen = torch.tensor([4, 2, 1])
    out = dec(y, memory, memory_lengths=mlen)
    assert out.shape == (B, T, H)
    y2 = y.clone()
    y2[:, 3:] = torch.randn(B, T - 3, I)
    torch.testing.assert_close(dec(y2, memory, memory_lengths=mlen)[:, :3], out[:, :3])
    padded = memory.clone()
    padded[1, 2:] = 50.0
    padded[2, 1:] = -50.0
    torch.testing.assert_close(dec(y, padded, memory_lengths=mlen), out)
    # target lengths: zero past each length, real positions as the row alone
    out_l = dec(y, memory, memory_lengths=mlen, lengths=LENGTHS)
    for b in range(B):
        n = int(LENGTHS[b])
        torch.testing.assert_close(out_l[b, :n], dec(y[b : b + 1, :n], memory[b : b + 1, : int(mlen[b])])[0])
        assert (out_l[b, n:] == 0).all()


def test_decoder_errors():
    dec = TransformerDecoder(I, H, num_heads=HEADS)
    with pytest.raises(ValueError, match="memory must have last dimension 8"):
        dec(torch.randn(B, T, I), torch.randn(B, 4, H + 1))
    with pytest.raises(ValueError, match="memory must have the batch size of y"):
        dec(torch.randn(B, T, I), torch.randn(B + 1, 4, H))
    with pytest.raises(ValueError, match=r"memory_lengths must lie in \[1, T=4\]"):
        dec(torch.randn(B, T, I), torch.randn(B, 4, H), memory_lengths=torch.tensor([5, 1, 1]))


# ------------------------------------------------------------------------------------------------
# configuration errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(norm="batch"), r"norm must be one of \('layer', 'rms'\), got 'batch'"),
        (dict(norm_position="middle"), r"norm_position must be one of \('pre', 'post'\), got 'middle'"),
        (dict(positions="rotary"), r"positions must be one of \('sinusoidal', 'learned'\), got 'rotary'"),
        (dict(num_heads=3), r"hidden_size \(8\) must be divisible by num_heads \(3\)"),
        (dict(num_layers=0), r"num_layers must be at least 1.*got 0"),
        (dict(ff_size=0), r"ff_size must be a positive integer, got 0"),
        (dict(dropout=1.5), r"dropout must be in \[0, 1\), got 1.5"),
        (dict(max_len=0), r"max_len must be a positive integer, got 0"),
    ],
)
def test_bad_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerEncoder(I, H, **{"num_heads": HEADS, **kwargs})
    with pytest.raises(ValueError, match=match):
        TransformerDecoder(I, H, **{"num_heads": HEADS, **kwargs})


@pytest.mark.parametrize("cls", [TransformerEncoderBlock, TransformerDecoderBlock])
def test_bad_block_config_errors(cls):
    with pytest.raises(ValueError, match=r"hidden_size \(8\) must be divisible by num_heads \(3\)"):
        cls(H, 3, 16)
    with pytest.raises(ValueError, match=r"norm must be one of"):
        cls(H, HEADS, 16, norm="group")
    with pytest.raises(ValueError, match=r"norm_position must be one of"):
        cls(H, HEADS, 16, norm_position="sandwich")


def test_bad_input_errors():
    enc = TransformerEncoder(I, H, num_heads=HEADS)
    with pytest.raises(ValueError, match=r"x must have input size I=5"):
        enc(torch.randn(B, T, I + 1))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=6\]"):
        enc(torch.randn(B, T, I), torch.tensor([7, 1, 1]))


# ------------------------------------------------------------------------------------------------
# learning
# ------------------------------------------------------------------------------------------------


def test_tiny_encoder_learns_to_count_signs():
    """Classify whether a sequence has more positive than negative first features: needs all positions."""
    n, t = 32, 8
    x = torch.randn(n, t, 3)
    lengths = torch.randint(3, t + 1, (n,))
    real = torch.arange(t) < lengths.unsqueeze(1)
    y = ((x[..., 0] > 0) & real).sum(1).gt(lengths / 2).long()
    enc = TransformerEncoder(3, 16, num_layers=1, num_heads=2, ff_size=32)
    head = nn.Linear(16, 2)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    first = None
    for _ in range(60):
        _, summary = enc(x, lengths)
        loss = loss_fn(head(summary), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (head(enc(x, lengths)[1]).argmax(-1) == y).float().mean().item()
    assert loss.item() < 0.1 * first and acc == 1.0, (first, loss.item(), acc)


@pytest.mark.parametrize("norm_position", ["pre", "post"])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_decoder_incremental_steps_equal_the_whole_prefix(norm_position, positions):
    """Cached step-by-step decoding gives, at every position, what forward gives on the whole sequence."""
    dec = TransformerDecoder(I, H, num_layers=2, num_heads=HEADS, norm_position=norm_position, positions=positions,
                             norm="rms" if positions == "learned" else "layer").eval()
    y, memory = torch.randn(3, T, I), torch.randn(3, 4, H)
    memory_lengths = torch.tensor([4, 2, 1])
    whole = dec(y, memory, memory_lengths=memory_lengths)  # (B, T, H)
    memory_mask = torch.arange(4) < memory_lengths.unsqueeze(1)
    caches = None
    for t in range(T):
        h_t, caches = dec.step(y[:, t], memory, caches, memory_mask=memory_mask)
        torch.testing.assert_close(h_t, whole[:, t], atol=1e-5, rtol=1e-4)
    assert len(caches) == 2 and caches[0].shape == (3, T, H)


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_causal_encoder_incremental_steps_equal_forward(norm_position):
    enc = TransformerEncoder(I, H, num_layers=2, num_heads=HEADS, norm_position=norm_position, causal=True).eval()
    x = torch.randn(3, T, I)
    whole, _ = enc(x)
    caches = None
    for t in range(T):
        h_t, caches = enc.step(x[:, t], caches)
        torch.testing.assert_close(h_t, whole[:, t], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="causal"):
        TransformerEncoder(I, H, num_heads=HEADS).step(x[:, 0])

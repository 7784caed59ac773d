"""Seq2seq attention (Bahdanau, Luong dot/general) and MultiHeadAttention against torch.nn.MultiheadAttention."""
import math

import pytest
import torch
from torch import nn

from rnnlab.nn.attention import (
    AdditiveAttention,
    DotAttention,
    GeneralAttention,
    MultiHeadAttention,
    build_attention,
    masked_softmax,
)

B, S, Q, K, A = 3, 5, 4, 6, 7
LENGTHS = torch.tensor([5, 2, 3])


def _mask(lengths=LENGTHS, S=S):
    return torch.arange(S).unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)


def _all_kinds():
    return [
        AdditiveAttention(Q, K, A),
        DotAttention(K, K),
        GeneralAttention(Q, K),
    ]


def _query_for(attn):
    return torch.randn(B, attn.query_size)


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["additive", "dot", "general"])
def test_weights_sum_to_one_over_real_positions_and_are_zero_on_padding(kind):
    attn = _all_kinds()[kind]
    q, keys, mask = _query_for(attn), torch.randn(B, S, K), _mask()
    context, w = attn(q, keys, mask)
    assert context.shape == (B, K) and w.shape == (B, S)
    torch.testing.assert_close(w.sum(-1), torch.ones(B))
    assert (w[~mask] == 0).all()
    assert (w[mask] > 0).all()


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["additive", "dot", "general"])
def test_padding_keys_never_change_the_context(kind):
    attn = _all_kinds()[kind]
    q, keys, mask = _query_for(attn), torch.randn(B, S, K), _mask()
    c1, w1 = attn(q, keys, mask)
    noisy = torch.where(mask.unsqueeze(-1), keys, 1e3 * torch.randn(B, S, K))
    c2, w2 = attn(q, noisy, mask)
    torch.testing.assert_close(c1, c2)
    torch.testing.assert_close(w1, w2)
    # and each row equals the row alone, cut to its length
    for b in range(B):
        n = int(LENGTHS[b])
        cb, wb = attn(q[b : b + 1], keys[b : b + 1, :n])
        torch.testing.assert_close(cb, c1[b : b + 1])
        torch.testing.assert_close(wb, w1[b : b + 1, :n])


def _softmax_context(e, keys):
    w = torch.softmax(e, dim=-1)
    return (w.unsqueeze(-1) * keys).sum(1), w


def test_additive_score_by_hand():
    attn = AdditiveAttention(Q, K, A)
    q, keys = torch.randn(B, Q), torch.randn(B, S, K)
    Wq, Wk, bk, v = attn.W_q.weight, attn.W_k.weight, attn.W_k.bias, attn.v.weight[0]
    e = torch.zeros(B, S)
    for b in range(B):
        for s in range(S):
            e[b, s] = v @ torch.tanh(Wq @ q[b] + Wk @ keys[b, s] + bk)  # vᵀ tanh(W_q q + W_k h_s + b)
    c_ref, w_ref = _softmax_context(e, keys)
    c, w = attn(q, keys)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(c, c_ref)
    # precomputed keys give the same numbers
    c2, w2 = attn(q, keys, precomputed=attn.precompute(keys))
    torch.testing.assert_close(c2, c)
    torch.testing.assert_close(w2, w)


def test_dot_score_by_hand():
    attn = DotAttention(K, K)
    q, keys = torch.randn(B, K), torch.randn(B, S, K)
    e = torch.stack([torch.stack([q[b] @ keys[b, s] for s in range(S)]) for b in range(B)])
    c_ref, w_ref = _softmax_context(e, keys)
    c, w = attn(q, keys)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(c, c_ref)


def test_general_score_by_hand():
    attn = GeneralAttention(Q, K)
    W = attn.W.weight  # (Q, K)
    q, keys = torch.randn(B, Q), torch.randn(B, S, K)
    e = torch.stack([torch.stack([q[b] @ W @ keys[b, s] for s in range(S)]) for b in range(B)])
    c_ref, w_ref = _softmax_context(e, keys)
    c, w = attn(q, keys)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(c, c_ref)


def test_fully_masked_row_gives_zeros_not_nan():
    attn = AdditiveAttention(Q, K, A)
    q, keys = torch.randn(B, Q, requires_grad=True), torch.randn(B, S, K)
    mask = _mask()
    mask[1] = False
    c, w = attn(q, keys, mask)
    assert torch.isfinite(c).all() and torch.isfinite(w).all()
    assert (w[1] == 0).all() and (c[1] == 0).all()
    (c.sum() + w.sum()).backward()
    assert torch.isfinite(q.grad).all()


def test_masked_softmax_without_mask_is_softmax():
    e = torch.randn(2, 4)
    torch.testing.assert_close(masked_softmax(e, None), torch.softmax(e, -1))


def test_gradients_reach_every_parameter():
    attn = AdditiveAttention(Q, K, A)
    c, _ = attn(torch.randn(B, Q), torch.randn(B, S, K), _mask())
    c.pow(2).sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_build_attention_names():
    assert isinstance(build_attention("bahdanau", Q, K), AdditiveAttention)
    assert build_attention("bahdanau", Q, K).attention_size == K
    assert build_attention("bahdanau", Q, K, attention_size=9).attention_size == 9
    assert isinstance(build_attention("luong-dot", K, K), DotAttention)
    assert isinstance(build_attention("luong-general", Q, K), GeneralAttention)
    with pytest.raises(ValueError, match=r"attention name must be one of .*'bahdanau'.*got 'concat'"):
        build_attention("concat", Q, K)


def test_attention_errors():
    with pytest.raises(ValueError, match=r"query_size == key_size.*query_size=4 and key_size=6"):
        DotAttention(Q, K)
    with pytest.raises(ValueError, match="attention_size must be a positive integer, got 0"):
        AdditiveAttention(Q, K, 0)
    attn = GeneralAttention(Q, K)
    with pytest.raises(ValueError, match=r"query must have last dimension 4"):
        attn(torch.randn(B, K), torch.randn(B, S, K))
    with pytest.raises(ValueError, match=r"keys must have 3 dimensions"):
        attn(torch.randn(B, Q), torch.randn(B, K))
    with pytest.raises(ValueError, match="same batch size"):
        attn(torch.randn(B + 1, Q), torch.randn(B, S, K))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        attn(torch.randn(B, Q), torch.randn(B, S, K), _mask().long())
    with pytest.raises(ValueError, match=r"mask must have shape \(B, S\) = \(3, 5\)"):
        attn(torch.randn(B, Q), torch.randn(B, S, K), _mask()[:, :4])


# ------------------------------------------------------------------------------------------------
# MultiHeadAttention
# ------------------------------------------------------------------------------------------------

E, H = 8, 2


def _pair():
    ours = MultiHeadAttention(E, H)
    ref = nn.MultiheadAttention(E, H, batch_first=True)
    with torch.no_grad():
        wq, wk, wv = ref.in_proj_weight.chunk(3)
        bq, bk, bv = ref.in_proj_bias.chunk(3)
        ours.q_proj.weight.copy_(wq), ours.k_proj.weight.copy_(wk), ours.v_proj.weight.copy_(wv)
        ours.q_proj.bias.copy_(bq), ours.k_proj.bias.copy_(bk), ours.v_proj.bias.copy_(bv)
        ours.out_proj.weight.copy_(ref.out_proj.weight), ours.out_proj.bias.copy_(ref.out_proj.bias)
    return ours, ref


def test_mha_matches_torch_without_masks():
    ours, ref = _pair()
    q, kv = torch.randn(B, 4, E), torch.randn(B, 6, E)
    expected, _ = ref(q, kv, kv, need_weights=False)
    torch.testing.assert_close(ours(q, kv, kv), expected)


def test_mha_matches_torch_with_padding_mask():
    ours, ref = _pair()
    q, kv = torch.randn(B, 4, E), torch.randn(B, S, E)
    mask = _mask()
    expected, _ = ref(q, kv, kv, key_padding_mask=~mask, need_weights=False)  # torch: True = ignore
    torch.testing.assert_close(ours(q, kv, kv, key_padding_mask=mask), expected)


def test_mha_matches_torch_with_causal_and_padding_masks():
    ours, ref = _pair()
    x = torch.randn(B, S, E)
    mask = _mask()
    future = torch.ones(S, S, dtype=torch.bool).triu(1)  # torch: True = not allowed
    expected, _ = ref(x, x, x, key_padding_mask=~mask, attn_mask=future, need_weights=False)
    got = ours(x, x, x, key_padding_mask=mask, causal=True)
    torch.testing.assert_close(got, expected)
    expected_causal_only, _ = ref(x, x, x, attn_mask=future, need_weights=False)
    torch.testing.assert_close(ours(x, x, x, causal=True), expected_causal_only)


def test_mha_scores_by_hand_single_head():
    mha = MultiHeadAttention(E, 1)
    x = torch.randn(1, 3, E)
    q, k, v = mha.q_proj(x)[0], mha.k_proj(x)[0], mha.v_proj(x)[0]
    w = torch.softmax(q @ k.T / math.sqrt(E), dim=-1)
    torch.testing.assert_close(mha(x, x, x), mha.out_proj(w @ v).unsqueeze(0))


def test_mha_fully_masked_query_row_is_finite():
    mha = MultiHeadAttention(E, H)
    x = torch.randn(2, 3, E, requires_grad=True)
    mask = torch.tensor([[True, True, True], [False, False, False]])
    y = mha(x, x, x, key_padding_mask=mask)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[1], mha.out_proj.bias.expand(3, E))  # zero attention output, then W^O
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_mha_dropout_only_in_training():
    mha = MultiHeadAttention(E, H, dropout=0.5).eval()
    x = torch.randn(B, 4, E)
    torch.testing.assert_close(mha(x, x, x), mha(x, x, x))
    mha.train()
    assert not torch.allclose(mha(x, x, x), mha(x, x, x))


def test_mha_errors():
    with pytest.raises(ValueError, match=r"embed_size \(10\) must be divisible by num_heads \(4\)"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="dropout must be in"):
        MultiHeadAttention(8, 2, dropout=1.0)
    mha = MultiHeadAttention(E, H)
    with pytest.raises(ValueError, match="key must have last dimension 8"):
        mha(torch.randn(1, 2, E), torch.randn(1, 2, 3), torch.randn(1, 2, E))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape"):
        mha(torch.randn(1, 2, E), torch.randn(1, 3, E), torch.randn(1, 3, E), key_padding_mask=torch.ones(1, 2, dtype=torch.bool))

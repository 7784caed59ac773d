"""The teacher-forced attention decoder (products hoisted out of the loop) against Seq2Seq's step loop
(decode_step, the reference): logits, attention weights, loss and every gradient, in float64, with padding on
both sides, each attention, each cell, one and two layers."""
import pytest
import torch
from _structure_helpers import LENGTHS

from rnnlab.nn.masking import masked_cross_entropy
from rnnlab.structures.decoders import DecoderConfig
from rnnlab.structures.encoders import EncoderConfig
from rnnlab.structures.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnlab.structures.teacher_forcing import teacher_forced

ATTENTIONS = ["bahdanau", "luong-dot", "luong-general"]
IMPLS = ["numba", "numba-step", "torch"]  # the fused loop: whole numba loop, numba per step with oneDNN, torch ops
Y_LENGTHS = torch.tensor([5, 2, 4, 1])


def _model(attention, *, cell="lstm", layers=1, context="linear", **kw):
    torch.manual_seed(0)
    return Seq2Seq(Seq2SeqConfig(
        tgt_vocab_size=11, src_vocab_size=10, embedding_size=6, attention=attention, context=context,
        encoder=EncoderConfig(hidden_size=4, bidirectional=True),
        decoder=DecoderConfig(cell=cell, hidden_size=8, num_layers=layers), attention_size=5, **kw,
    )).double()


def _both(model, x, y, lengths):
    """(fast Output, reference Output, fast loss, reference loss) on the same parameters."""
    batch = {"x": x, "lengths": lengths, "y": y, "y_lengths": Y_LENGTHS}
    fast = model(batch)
    ref = model._forward_steps(y, model.encode(x, lengths), force=False)
    loss = [masked_cross_entropy(o.logits, y, Y_LENGTHS) for o in (fast, ref)]
    return fast, ref, *loss


def _grads(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_teacher_forced_equals_the_step_loop(attention, cell, layers):
    model = _model(attention, cell=cell, layers=layers).train()  # train: the path the trainer takes
    x, y = torch.randint(3, 10, (4, 7)), torch.randint(3, 11, (4, 5))
    fast, ref, loss_fast, loss_ref = _both(model, x, y, LENGTHS)
    torch.testing.assert_close(fast.logits, ref.logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.attention, ref.attention, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(loss_fast, loss_ref, rtol=1e-10, atol=1e-12)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, g_fast, g_ref in zip(names, _grads(model, loss_fast), _grads(model, loss_ref), strict=True):
        assert (g_fast is None) == (g_ref is None), name
        if g_ref is not None:
            torch.testing.assert_close(g_fast, g_ref, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("context", ["last", "pool"])
def test_teacher_forced_with_other_contexts_and_no_lengths(context):
    model = _model("luong-dot", context=context).eval()
    x, y = torch.randint(3, 10, (4, 7)), torch.randint(3, 11, (4, 5))
    for lengths in (LENGTHS, None):
        fast, ref, loss_fast, loss_ref = _both(model, x, y, lengths)
        torch.testing.assert_close(fast.logits, ref.logits, rtol=1e-10, atol=1e-12)


def test_teacher_forcing_below_one_still_steps():
    model = _model("bahdanau", teacher_forcing=0.5).train()
    x, y = torch.randint(3, 10, (4, 7)), torch.randint(3, 11, (4, 5))
    calls = []
    original = model.decode_step
    model.decode_step = lambda *a: calls.append(1) or original(*a)
    torch.manual_seed(1)
    out = model({"x": x, "lengths": LENGTHS, "y": y})
    assert len(calls) == 5 and out.logits.shape == (4, 5, 11)
    torch.manual_seed(1)
    again = model._forward_steps(y, model.encode(x, LENGTHS), force=True)  # the same coins, the same numbers
    torch.testing.assert_close(out.logits, again.logits)


def test_teacher_forced_runs_under_bf16_autocast():
    model = _model("bahdanau").float().train()
    x, y = torch.randint(3, 10, (4, 7)), torch.randint(3, 11, (4, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss({"x": x, "lengths": LENGTHS, "y": y})
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("lengths", [LENGTHS, None])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_fused_loop_equals_the_autograd_loop(attention, lengths, impl):
    """The hand-written backward (one-layer LSTM) against autograd through the same loop, including a loss on
    the attention weights themselves."""
    model = _model(attention).train()
    x, y = torch.randint(3, 10, (4, 7)), torch.randint(3, 11, (4, 5))
    state = model.encode(x, lengths)
    results = []
    for fused in (True, False):
        logits, weights = teacher_forced(model, y, model.encode(x, lengths), fused=fused, impl=impl)
        loss = masked_cross_entropy(logits, y, Y_LENGTHS) + (weights * torch.linspace(0, 1, 7)).sum()
        results.append((logits, weights, _grads(model, loss)))
    (l1, w1, g1), (l2, w2, g2) = results
    torch.testing.assert_close(l1, l2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w1, w2, rtol=1e-10, atol=1e-12)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, g1, g2, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
    del state


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_fused_loop_passes_gradcheck(attention, impl):
    """float64 gradcheck of the Function itself: every input that takes a gradient, against finite differences."""
    from rnnlab.structures import fused_attention_decoder as fused

    torch.manual_seed(0)
    B, T, S, H, E, A = 2, 3, 4, 3, 5, 2
    r = lambda *shape: torch.randn(*shape, dtype=torch.float64, requires_grad=True)  # noqa: E731
    additive = torch.zeros(B, S, dtype=torch.float64)
    additive[1, 2:] = float("-inf")
    if attention == "bahdanau":
        args = (r(B, T, 4 * H), r(B, H), r(B, H), r(4 * H, H), r(4 * H), r(A, H), r(4 * H, E), r(A), r(B, S, A),
                r(B, S, E), additive)
        fn = fused.bahdanau
    else:
        args = (r(B, T, 4 * H), r(B, H), r(B, H), r(4 * H, H), r(4 * H), r(4 * H, H), r(H, H), r(H, E), r(H),
                r(B, S, H), r(B, S, E), additive)
        fn = fused.luong
    assert torch.autograd.gradcheck(lambda *a: fn(*a, impl=impl), args, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_fused_loop_in_float32_matches_the_autograd_loop(attention, impl):
    """float32 on the CPU takes oneDNN's products (rnnlab.nn._gemm) and the kernels' rational tanh; the same
    numbers to float32 rounding."""
    model = _model(attention).float().train()
    x, y = torch.randint(3, 10, (4, 7)), torch.randint(3, 11, (4, 5))
    results = []
    for fused in (True, False):
        logits, weights = teacher_forced(model, y, model.encode(x, LENGTHS), fused=fused, impl=impl)
        results.append((logits, _grads(model, masked_cross_entropy(logits, y, Y_LENGTHS))))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g2, strict=True):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fused_loop_picks_numba_on_the_cpu_and_names_a_bad_impl():
    from rnnlab.structures import fused_attention_decoder as fused
    from rnnlab.structures import fused_attention_numba as numba_loop

    X = torch.zeros(64, 3, 512)
    assert fused._pick("auto", X, 128, 512, 128) == "numba"  # the translate presets: the whole loop in numba
    big = numba_loop.WHOLE_LOOP_MAX_MACS // (128 * 640) + 1
    assert fused._pick("auto", torch.zeros(big, 3, 512), 128, 512, 128) == "numba-step"
    assert fused._pick("torch", X, 128, 512, 128) == "torch"
    with pytest.raises(ValueError, match="impl must be one of .*'numba'.*got 'fast'"):
        fused._pick("fast", X, 128, 512, 128)


def test_whole_loop_limit_depends_on_the_thread_count():
    """One thread: the whole numba loop up to 2^27 multiply-adds per step (the wide shape at B=256 included);
    more threads: up to 2^23, since oneDNN's per-step products then use them all."""
    from rnnlab.structures import fused_attention_numba as numba_loop

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert numba_loop.whole_loop(256, 256, 1024, 256)  # 84 M
        assert not numba_loop.whole_loop(512, 512, 2048, 512)  # 671 M
        torch.set_num_threads(2)
        assert numba_loop.whole_loop(64, 128, 512, 128)  # deu_eng, 5.2 M
        assert not numba_loop.whole_loop(256, 256, 1024, 256)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_numba_loop_with_masked_rows_gives_zero_weight_to_padding(attention):
    """Padding positions get exactly 0 weight and no gradient into their keys or memory rows."""
    model = _model(attention).train()
    x, y = torch.randint(3, 10, (4, 7)), torch.randint(3, 11, (4, 5))
    state = model.encode(x, LENGTHS)
    memory = state["memory"].detach().requires_grad_()
    keys = state["keys"].detach().requires_grad_()
    logits, weights = teacher_forced(model, y, dict(state, memory=memory, keys=keys), impl="numba")
    pad = torch.arange(7) >= LENGTHS[:, None]  # (B, S)
    assert (weights.masked_select(pad[:, None, :].expand_as(weights)) == 0).all()
    d_memory, d_keys = torch.autograd.grad(logits.sum() + weights.sum(), [memory, keys])
    assert (d_memory[pad] == 0).all() and (d_keys[pad] == 0).all()


@pytest.mark.parametrize("B, T", [(23, 13), (16, 16), (4, 3)])  # B·T = 299: a chunk of 256 rows and 43 more; 256
@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_numba_weight_gradients_equal_onednn_s(attention, B, T, monkeypatch):
    """The weight gradients on the micro-kernel in chunks of rows (one thread) against oneDNN's single products
    (more threads), float64, with H = 20 not a multiple of the panel width (16 float64)."""
    from rnnlab.structures import fused_attention_decoder as fused
    from rnnlab.structures import fused_attention_numba as numba_loop

    torch.manual_seed(0)
    S, H, E, A = 5, 20, 12, 9
    r = lambda *shape: torch.randn(*shape, dtype=torch.float64, requires_grad=True)  # noqa: E731
    additive = torch.zeros(B, S, dtype=torch.float64)
    additive[1, 2:] = float("-inf")
    if attention == "bahdanau":
        args = (r(B, T, 4 * H), r(B, H), r(B, H), r(4 * H, H), r(4 * H), r(A, H), r(4 * H, E), r(A), r(B, S, A),
                r(B, S, E))
        fn = fused.bahdanau
    else:
        args = (r(B, T, 4 * H), r(B, H), r(B, H), r(4 * H, H), r(4 * H), r(4 * H, H), r(H, H), r(H, E), r(H),
                r(B, S, H), r(B, S, E))
        fn = fused.luong
    grads = {}
    for in_numba in (True, False):
        monkeypatch.setattr(numba_loop, "_weight_grads_in_numba", lambda v=in_numba: v)
        outputs = fn(*args, additive, impl="numba")
        grads[in_numba] = torch.autograd.grad(sum(o.sum() for o in outputs), args)
    for a, b in zip(grads[True], grads[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fast_panels_equal_pack_panels():
    """_panels' one-copy packing (NR divides N) and pack_panels' (any N) give the same panels."""
    import numpy as np

    from rnnlab.nn._ukernel import pack_panels
    from rnnlab.structures.fused_attention_numba import _panels

    for dtype in (torch.float32, torch.float64):
        for W in (torch.randn(7, 64, dtype=dtype), torch.randn(64, 7, dtype=dtype).t(), torch.randn(5, 40, dtype=dtype)):
            np.testing.assert_array_equal(_panels(W), pack_panels(W.numpy()))

"""The fused GRU sequence kernel against the autograd reference loop, and the reference against torch.nn.GRU."""
import pytest
import torch

from rnnlab.nn.fused_gru import gru_sequence, gru_sequence_reference

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def make_case(B, T, I, H, *, dtype, ln, mask, lengths, bias=True):
    """Positional args and keyword options of gru_sequence, every float tensor a leaf that requires grad."""
    G = 3 * H

    def leaf(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*shape, dtype=dtype)).requires_grad_()

    args = [leaf(B, T, I), leaf(B, H, scale=0.5), leaf(G, I, scale=0.4), leaf(G, H, scale=0.4),
            leaf(G, scale=0.3) if bias else None, leaf(G, scale=0.3) if bias else None]
    kw = {}
    if ln:
        kw.update(ln_ih=leaf(G, scale=0.2, shift=1.0), ln_hh=leaf(G, scale=0.2, shift=1.0))
    if mask:
        p = 0.25
        kw["mask"] = torch.bernoulli(torch.full((B, H), 1 - p, dtype=dtype)) / (1 - p)  # (B, H)
    if lengths == "mixed":  # full length, length 1, and random ones between
        kw["lengths"] = torch.cat([torch.tensor([T, 1]), torch.randint(1, T + 1, (B - 2,))])
    elif lengths == "short":  # no row runs to T: the steps past the longest row are skipped
        kw["lengths"] = torch.cat([torch.tensor([T - 2, 1]), torch.randint(1, T - 1, (B - 2,))])
    return args, kw


def leaves(args, kw):
    out = [a for a in args if a is not None] + [kw[k] for k in ("ln_ih", "ln_hh") if k in kw]
    return [a for a in out if a.requires_grad]


def outputs_and_grads(fn, args, kw):
    """y, hT and the grads of a random linear function of both w.r.t. every leaf."""
    y, h = fn(*args, **kw)
    gen = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (y, h))
    return [y, h, *torch.autograd.grad(loss, leaves(args, kw))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
@pytest.mark.parametrize("mask", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("lengths", [None, "mixed", "short"])
def test_fused_matches_reference(dtype, ln, mask, lengths):
    args, kw = make_case(5, 7, 6, 8, dtype=dtype, ln=ln, mask=mask, lengths=lengths)
    fused = outputs_and_grads(gru_sequence, args, kw)
    ref = outputs_and_grads(gru_sequence_reference, args, kw)
    names = ["y", "hT"] + [f"grad {i}" for i in range(len(fused) - 2)]
    for name, a, b in zip(names, fused, ref, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
def test_fused_without_biases(ln):
    args, kw = make_case(3, 5, 4, 6, dtype=torch.float64, ln=ln, mask=True, lengths="mixed", bias=False)
    for a, b in zip(outputs_and_grads(gru_sequence, args, kw), outputs_and_grads(gru_sequence_reference, args, kw)):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_fused_only_some_inputs_need_grad():
    """x a constant, h0 None: the grads that are asked for still match (the backward skips the others)."""
    args, kw = make_case(3, 5, 4, 6, dtype=torch.float64, ln=False, mask=False, lengths="mixed")
    args[0] = args[0].detach()
    args[1] = None
    for a, b in zip(outputs_and_grads(gru_sequence, args, kw), outputs_and_grads(gru_sequence_reference, args, kw)):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_fused_outputs_past_length_are_zero_and_state_is_last_real_step():
    args, kw = make_case(4, 6, 3, 5, dtype=torch.float64, ln=True, mask=True, lengths="mixed")
    y, h = gru_sequence(*args, **kw)
    for b, n in enumerate(kw["lengths"].tolist()):
        assert y[b, n:].abs().sum().item() == 0
        torch.testing.assert_close(h[b], y[b, n - 1])


@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
def test_fused_gradcheck(ln):
    args, kw = make_case(2, 4, 3, 5, dtype=torch.float64, ln=ln, mask=True, lengths=None)
    kw["lengths"] = torch.tensor([4, 2])
    if ln:
        def fn(x, h0, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh):
            return gru_sequence(x, h0, w_ih, w_hh, b_ih, b_hh, ln_ih=g_ih, ln_hh=g_hh, mask=kw["mask"],
                                lengths=kw["lengths"])
        inputs = (*args, kw["ln_ih"], kw["ln_hh"])
    else:
        def fn(*a):
            return gru_sequence(*a, mask=kw["mask"], lengths=kw["lengths"])
        inputs = tuple(args)
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
def test_fused_no_grad_matches_reference(ln):
    args, kw = make_case(3, 5, 4, 6, dtype=torch.float32, ln=ln, mask=True, lengths="mixed")
    with torch.no_grad():
        got = gru_sequence(*args, **kw)
        want = gru_sequence_reference(*args, **kw)
    for a, b in zip(got, want, strict=True):
        assert a.grad_fn is None
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def test_other_dtypes_fall_back_to_reference():
    args, kw = make_case(2, 3, 4, 5, dtype=torch.bfloat16, ln=True, mask=False, lengths=None)
    for a, b in zip(gru_sequence(*args, **kw), gru_sequence_reference(*args, **kw)):
        torch.testing.assert_close(a, b)


def test_reference_equals_torch_gru():
    """LN off, mask off: the reference is torch.nn.GRU with the same weights (pins the equations and gate order)."""
    B, T, I, H = 3, 6, 4, 5
    gru = torch.nn.GRU(I, H, batch_first=True).double()
    x = torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    want_y, want_h = gru(x, h0[None])
    params = [p.detach() for p in (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)]
    y, h = gru_sequence_reference(x, h0, *params)
    torch.testing.assert_close(y, want_y.detach())
    torch.testing.assert_close(h, want_h[0].detach())
    # lengths: each row equals torch.nn.GRU run on that row's real steps only
    lengths = torch.tensor([6, 1, 4])
    y, h = gru_sequence_reference(x, h0, *params, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        yb, hb = gru(x[b:b + 1, :n], h0[None, b:b + 1])
        torch.testing.assert_close(y[b, :n], yb[0].detach())
        assert y[b, n:].abs().sum().item() == 0
        torch.testing.assert_close(h[b], hb[0, 0].detach())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, kw: a.__setitem__(0, a[0][..., :-1]), "x"),
        (lambda a, kw: a.__setitem__(1, a[1][:-1]), "h0"),
        (lambda a, kw: a.__setitem__(3, a[3][:-1]), "weight_hh"),
        (lambda a, kw: kw.__setitem__("mask", torch.ones(2, 2)), "mask"),
        (lambda a, kw: kw.__setitem__("lengths", torch.tensor([0, 3])), "lengths"),
        (lambda a, kw: kw.pop("ln_hh"), "together"),
    ],
)
def test_errors_name_the_argument(change, message):
    args, kw = make_case(2, 3, 4, 5, dtype=torch.float32, ln=True, mask=False, lengths=None)
    change(args, kw)
    with pytest.raises((ValueError, TypeError), match=message):
        gru_sequence(*args, **kw)


PRODUCT_PATHS = {  # which code runs the per-step products: the thresholds of rnnlab.nn._gemm set to force it
    "numba": {},  # the tiny test layers run the whole time loop in numba by default
    "onednn": {"NUMBA_MAX_MACS": -1, "ONEDNN_MIN_MACS": 0},
    "mm": {"NUMBA_MAX_MACS": -1, "ONEDNN_MIN_MACS": 1 << 62},
}


@pytest.mark.parametrize("path", list(PRODUCT_PATHS))
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
@pytest.mark.parametrize("lengths", [None, "mixed"])
def test_fused_product_paths_match_reference(monkeypatch, path, ln, lengths):
    """Each way of running the products (numba loop, oneDNN, torch.mm): float32 training and inference match the
    reference loop."""
    from rnnlab.nn import _gemm

    for name, value in PRODUCT_PATHS[path].items():
        monkeypatch.setattr(_gemm, name, value)
    torch.manual_seed(0)
    args, kw = make_case(5, 7, 6, 8, dtype=torch.float32, ln=ln, mask=True, lengths=lengths)
    fused = outputs_and_grads(gru_sequence, args, kw)
    ref = outputs_and_grads(gru_sequence_reference, args, kw)
    for a, b in zip(fused, ref, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float32])
    with torch.no_grad():
        y, h = gru_sequence(*args, **kw)
    torch.testing.assert_close(y, ref[0], **TOL[torch.float32])
    torch.testing.assert_close(h, ref[1], **TOL[torch.float32])

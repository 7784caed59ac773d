"""Recurrent layers against torch.nn (copied weights), against themselves alone and padded, and across paths."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.nn import GRU, LSTM, RNN, LSTMState, MinGRUCell, Recurrent
from rnnlab.nn.state import map_state

B, T, I, H = 4, 6, 3, 5
LENGTHS = torch.tensor([6, 2, 1, 4])

KINDS = {
    "lstm": (lambda **kw: LSTM(I, H, **kw), lambda **kw: torch.nn.LSTM(I, H, batch_first=True, **kw)),
    "gru": (lambda **kw: GRU(I, H, **kw), lambda **kw: torch.nn.GRU(I, H, batch_first=True, **kw)),
    "rnn": (lambda **kw: RNN(I, H, **kw), lambda **kw: torch.nn.RNN(I, H, batch_first=True, **kw)),
    "rnn-relu": (
        lambda **kw: RNN(I, H, nonlinearity="relu", **kw),
        lambda **kw: torch.nn.RNN(I, H, nonlinearity="relu", batch_first=True, **kw),
    ),
}


def _h(state):
    return state.h if isinstance(state, tuple) else state


def _run_torch(module, x, state, lengths):
    if lengths is None:
        return module(x, state)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, new = module(packed, state)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], new


def _state(kind, L, D, requires_grad=False):
    h = torch.randn(L * D, B, H, requires_grad=requires_grad)
    if kind == "lstm":
        return LSTMState(h, torch.randn(L * D, B, H, requires_grad=requires_grad))
    return h


@pytest.mark.parametrize("impl", ["torch", "loop", "auto"])
@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_layer_matches_torch(kind, num_layers, bidirectional, use_lengths, impl):
    ours = KINDS[kind][0](num_layers=num_layers, bidirectional=bidirectional, impl=impl)
    theirs = KINDS[kind][1](num_layers=num_layers, bidirectional=bidirectional)
    theirs.load_state_dict(ours.state_dict())  # rnnlab -> torch, strict
    x = torch.randn(B, T, I)
    state = _state(kind, num_layers, 2 if bidirectional else 1)
    lengths = LENGTHS if use_lengths else None
    y, s = ours(x, state, lengths)
    y_ref, s_ref = _run_torch(theirs, x, tuple(state) if kind == "lstm" else state, lengths)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    if kind == "lstm":
        torch.testing.assert_close(s.h, s_ref[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(s.c, s_ref[1], atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(s, s_ref, atol=1e-5, rtol=1e-5)
    w = torch.randn_like(y)
    ((y * w).sum() + _h(s).sum()).backward()
    ((y_ref * w).sum() + (s_ref[0] if kind == "lstm" else s_ref).sum()).backward()
    theirs_params = dict(theirs.named_parameters())
    for name, g in ours.state_dict(keep_vars=True).items():
        torch.testing.assert_close(g.grad, theirs_params[name].grad, atol=1e-5, rtol=1e-5, msg=name)


def test_torch_state_dict_loads_into_layer():
    theirs = torch.nn.GRU(I, H, num_layers=2, bidirectional=True, batch_first=True)
    ours = GRU(I, H, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())  # torch -> rnnlab, strict
    x = torch.randn(B, T, I)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0])
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_nested_layer_state_dict_round_trip():
    model = torch.nn.Sequential(torch.nn.Linear(2, I), LSTM(I, H, layer_norm=True, num_layers=2))
    sd = model.state_dict()
    assert "1.weight_hh_l1" in sd and "1.ln_c_l0.bias" in sd
    other = torch.nn.Sequential(torch.nn.Linear(2, I), LSTM(I, H, layer_norm=True, num_layers=2))
    other.load_state_dict(sd)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k


def test_layer_norm_state_dict_does_not_load_into_torch():
    with pytest.raises(RuntimeError, match="ln_ih_l0"):
        torch.nn.LSTM(I, H, batch_first=True).load_state_dict(LSTM(I, H, layer_norm=True).state_dict())


CONFIGS = [
    ("lstm", {}),
    ("gru", {}),
    ("rnn", {}),
    ("lstm", {"layer_norm": True}),
    ("gru", {"layer_norm": True}),
    ("rnn", {"layer_norm": True}),
]


@pytest.mark.parametrize("impl", ["auto", "loop"])
@pytest.mark.parametrize("cell,options", CONFIGS, ids=lambda c: str(c))
def test_padded_batch_equals_each_sequence_alone(cell, options, impl):
    layer = Recurrent(cell, I, H, num_layers=2, bidirectional=True, impl=impl, **options)
    x = torch.randn(B, T, I)
    y, s = layer(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        y_b, s_b = layer(x[b : b + 1, :n])
        torch.testing.assert_close(y[b, :n], y_b[0], atol=1e-5, rtol=1e-5)
        assert torch.all(y[b, n:] == 0)
        torch.testing.assert_close(_h(s)[:, b], _h(s_b)[:, 0], atol=1e-5, rtol=1e-5)
        if cell == "lstm":
            torch.testing.assert_close(s.c[:, b], s_b.c[:, 0], atol=1e-5, rtol=1e-5)


def test_padding_values_do_not_matter():
    layer = LSTM(I, H, bidirectional=True, impl="loop")
    x = torch.randn(B, T, I)
    x2 = x.clone()
    for b, n in enumerate(LENGTHS.tolist()):
        x2[b, n:] = 1e3
    y1, s1 = layer(x, lengths=LENGTHS)
    y2, s2 = layer(x2, lengths=LENGTHS)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(s1.h, s2.h)


@pytest.mark.parametrize(
    "cell,options",
    [("lstm", {}), ("gru", {}), ("rnn", {}), ("rnn", {"nonlinearity": "relu", "bias": False}),
     ("lstm", {"layer_norm": True}), ("gru", {"layer_norm": True})],
)
def test_step_equals_forward(cell, options):
    """Streaming: torch's fused cell kernels (plain options) or the cells' own steps give forward's numbers."""
    layer = Recurrent(cell, I, H, num_layers=3, **options)
    x = torch.randn(B, T, I)
    y, s = layer(x)
    state = None
    for t in range(T):
        y_t, state = layer.step(x[:, t], state)
        torch.testing.assert_close(y_t, y[:, t, :H], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_h(state), _h(s), atol=1e-5, rtol=1e-5)


def test_step_refuses_bidirectional():
    with pytest.raises(ValueError, match="unidirectional"):
        GRU(I, H, bidirectional=True).step(torch.randn(B, I))


def test_auto_picks_the_torch_kernel_only_when_it_can():
    assert LSTM(I, H)._resolve_impl() == "torch"
    assert LSTM(I, H, layer_norm=True)._resolve_impl() == "numba"
    # recurrent dropout alone: numba in training, torch's kernel out of training (the mask is 1 there)
    rd = LSTM(I, H, recurrent_dropout=0.1)
    assert rd.train()._impl_for(torch.randn(B, T, I)) == "numba"
    assert rd.eval()._impl_for(torch.randn(B, T, I)) == "torch"
    assert LSTM(I, H, recurrent_dropout=0.1, layer_norm=True).eval()._impl_for(torch.randn(B, T, I)) == "numba"
    assert GRU(I, H, layer_norm=True)._resolve_impl() == "numba"
    # the plain GRU: the numba kernel on the CPU in float32/float64 (faster than torch's CPU GRU), else torch's
    gru = GRU(I, H)
    assert gru._impl_for(torch.randn(B, T, I)) == "numba"
    assert gru._impl_for(torch.randn(B, T, I, dtype=torch.float64)) == "numba"
    assert gru._impl_for(torch.randn(B, T, I, dtype=torch.bfloat16)) == "torch"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # small layers keep the kernel (test_recurrent_autocast_choice)
        assert GRU(I, 512)._impl_for(torch.randn(B, T, I)) == "torch"
    assert LSTM(I, H)._impl_for(torch.randn(B, T, I)) == "torch"
    # the plain RNN likewise (faster than torch's CPU RNN, benchmarks/fused_rnn.py)
    rnn = RNN(I, H, nonlinearity="relu")
    assert rnn._impl_for(torch.randn(B, T, I)) == "numba"
    assert rnn._impl_for(torch.randn(B, T, I, dtype=torch.bfloat16)) == "torch"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert RNN(I, 512)._impl_for(torch.randn(B, T, I)) == "torch"
    assert GRU(I, H, recurrent_dropout=0.1)._resolve_impl() == "numba"
    assert RNN(I, H, layer_norm=True)._resolve_impl() == "numba"
    assert RNN(I, H, recurrent_dropout=0.1, nonlinearity="relu")._resolve_impl() == "numba"
    with pytest.raises(ValueError, match="impl='torch' cannot run layer_norm"):
        LSTM(I, H, layer_norm=True, impl="torch")
    with pytest.raises(ValueError, match="cell='lstm', 'gru' and 'rnn' only"):
        Recurrent(MinGRUCell, I, H, impl="numba")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_dropout_one_mask_per_sequence(bidirectional):
    """The layer's output equals a hand loop that draws one mask per direction and reuses it at every step."""
    layer = Recurrent("gru", I, H, recurrent_dropout=0.5, bidirectional=bidirectional).train()
    x = torch.randn(B, T, I)
    torch.manual_seed(3)
    y, _ = layer(x)
    torch.manual_seed(3)
    for d, cell in enumerate(layer.cells):
        mask = cell.sample_mask(B)
        assert (mask == 0).any()
        h, xs = None, (x.flip(1) if d else x)
        ys = []
        for t in range(T):
            y_t, h = cell(xs[:, t], h, mask=mask)
            ys.append(y_t)
        ref = torch.stack(ys, 1)
        torch.testing.assert_close(y[..., d * H : (d + 1) * H], ref.flip(1) if d else ref)
    # a fresh draw per step would not match: the masks differ between draws
    assert not torch.equal(layer.cells[0].sample_mask(B), layer.cells[0].sample_mask(B))


def test_recurrent_dropout_off_in_eval():
    layer = GRU(I, H, recurrent_dropout=0.5)
    plain = GRU(I, H)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(B, T, I)
    layer.train()
    y_train1, y_train2 = layer(x)[0], layer(x)[0]
    assert not torch.allclose(y_train1, y_train2)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], plain(x)[0])


def test_dropout_between_layers():
    layer = GRU(I, H, num_layers=2, dropout=0.5, impl="loop")
    x = torch.randn(B, T, I)
    assert not torch.allclose(layer(x)[0], layer(x)[0])
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_gradcheck_float64(bidirectional):
    layer = Recurrent("lstm", 2, 3, num_layers=2, bidirectional=bidirectional, layer_norm=True, impl="loop").double()
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 1, 3])
    assert torch.autograd.gradcheck(lambda x: layer(x, lengths=lengths)[0], (x,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options", [{}, {"layer_norm": True}, {"recurrent_dropout": 0.3},
                                     {"layer_norm": True, "recurrent_dropout": 0.3}])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "rnn-relu"])
def test_numba_path_equals_the_loop(kind, options, dtype):
    """The numba sequence kernels and the cell loop: same outputs, states and gradients (same masks by seed),
    2 layers, both directions, lengths.

    float64 shows they compute the same function; float32 differs by rounding only (the kernel's tanh is a
    rational approximation and its sums run in another order), which layer norm over 4H = 20 units amplifies.
    """
    tol = dict(atol=1e-9, rtol=1e-9) if dtype == torch.float64 else dict(atol=2e-4, rtol=1e-3)
    if kind == "rnn-relu":
        kind, options = "rnn", {**options, "nonlinearity": "relu"}
    numba = Recurrent(kind, I, H, num_layers=2, bidirectional=True, impl="numba", **options).to(dtype).train()
    loop = Recurrent(kind, I, H, num_layers=2, bidirectional=True, impl="loop", **options).to(dtype).train()
    loop.load_state_dict(numba.state_dict())
    x = torch.randn(B, T, I, dtype=dtype)
    state = map_state(lambda t: t.to(dtype), _state(kind, 2, 2))
    results = []
    for layer in (numba, loop):
        torch.manual_seed(7)  # the same dropout masks for both
        y, s = layer(x, state, LENGTHS)
        w = torch.randn_like(y)
        extra = s.h.sum() + 0.5 * s.c.sum() if kind == "lstm" else s.sum()
        ((y * w).sum() + extra).backward()
        results.append((y, s, {k: p.grad for k, p in layer.state_dict(keep_vars=True).items()}))
    (y1, s1, g1), (y2, s2, g2) = results
    torch.testing.assert_close(y1, y2, **tol)
    for a, b in zip(*((tuple(s) if kind == "lstm" else (s,)) for s in (s1, s2))):  # (h, c) or h
        torch.testing.assert_close(a, b, **tol)
    for name in g1:  # relative to the gradient's scale: layer norm over few units makes some of them large
        scale = max(1.0, g2[name].abs().max().item())
        torch.testing.assert_close(g1[name], g2[name], atol=tol["atol"] * scale, rtol=tol["rtol"], msg=name)


# -- errors: bad input gets a message that names the argument, what was expected and what was given --
@pytest.fixture
def lstm():
    return LSTM(3, 5, num_layers=2)


@pytest.mark.parametrize(
    "x,error,pattern",
    [
        (torch.randn(4, 3), ValueError, r"x must have shape \(B, T, I\) with I=3.*got shape \(4, 3\)"),
        (torch.randn(2, 4, 6, 3), ValueError, r"x must have shape \(B, T, I\).*got shape \(2, 4, 6, 3\)"),
        (torch.randn(2, 4, 7), ValueError, r"x must have input size I=3.*got shape \(2, 4, 7\)"),
        (torch.randn(2, 4, 3, dtype=torch.float64), TypeError, r"x must have dtype torch.float32.*got torch.float64"),
        (torch.ones(2, 4, 3, dtype=torch.long), TypeError, r"x must be a floating-point tensor, got dtype torch.int64"),
        ([[1.0, 2.0, 3.0]], TypeError, r"x must be a torch.Tensor.*got list"),
        (torch.randn(2, 0, 3), ValueError, r"x must have at least one time step"),
    ],
)
def test_bad_x(lstm, x, error, pattern):
    with pytest.raises(error, match=pattern):
        lstm(x)


@pytest.mark.parametrize(
    "lengths,error,pattern",
    [
        (torch.tensor([4, 5]), ValueError, r"lengths must lie in \[1, T=4\], got min 4 and max 5"),
        (torch.tensor([0, 2]), ValueError, r"lengths must lie in \[1, T=4\], got min 0"),
        (torch.tensor([[4, 2]]), ValueError, r"lengths must be 1-D of shape \(2,\).*got shape \(1, 2\)"),
        (torch.tensor([4, 2, 1]), ValueError, r"lengths must be 1-D of shape \(2,\).*got shape \(3,\)"),
        (torch.tensor([4.0, 2.0]), TypeError, r"lengths must be an integer tensor, got dtype torch.float32"),
        ("4,2", TypeError, r"lengths must be a 1-D integer tensor.*got str"),
    ],
)
def test_bad_lengths(lstm, lengths, error, pattern):
    with pytest.raises(error, match=pattern):
        lstm(torch.randn(2, 4, 3), lengths=lengths)


def test_lengths_as_list_is_accepted(lstm):
    y, _ = lstm(torch.randn(2, 4, 3), lengths=[4, 2])
    assert torch.all(y[1, 2:] == 0)


@pytest.mark.parametrize(
    "state,error,pattern",
    [
        (torch.zeros(2, 2, 5), TypeError, r"state must be an LSTMState\(h, c\).*got Tensor"),
        (LSTMState(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)), ValueError, r"state.h must have shape \(2, 2, 5\), got \(1, 2, 5\)"),
        (LSTMState(torch.zeros(2, 2, 5), torch.zeros(2, 3, 5)), ValueError, r"state.c must have shape \(2, 2, 5\), got \(2, 3, 5\)"),
        (LSTMState(torch.zeros(2, 2, 5), torch.zeros(2, 2, 5).double()), TypeError, r"state.c must have dtype torch.float32, got torch.float64"),
    ],
)
def test_bad_lstm_state(lstm, state, error, pattern):
    with pytest.raises(error, match=pattern):
        lstm(torch.randn(2, 4, 3), state)


def test_bad_gru_state():
    with pytest.raises(ValueError, match=r"state must have shape \(2, 2, 5\), got \(2, 5\)"):
        GRU(3, 5, bidirectional=True)(torch.randn(2, 4, 3), torch.zeros(2, 5))


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: Recurrent("transformer", 3, 5), r"cell must be one of \('rnn', 'lstm', 'gru'\), got 'transformer'"),
        (lambda: LSTM(3, 0), r"hidden_size must be a positive integer, got 0"),
        (lambda: LSTM(3, 5, num_layers=0), r"num_layers must be a positive integer, got 0"),
        (lambda: LSTM(3, 5, dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (lambda: LSTM(3, 5, recurrent_dropout=-0.1), r"recurrent_dropout must be in \[0, 1\), got -0.1"),
        (lambda: LSTM(3, 5, impl="cudnn"), r"impl must be one of \('auto', 'torch', 'numba', 'loop'\), got 'cudnn'"),
        (lambda: LSTM(3, 5, impl="fused"), r"impl='fused' is now called impl='numba'"),
        (lambda: LSTM(3, 5, recurrent_init="xavier"), r"recurrent_init must be one of .*got 'xavier'"),
        (lambda: GRU(3, 5, forget_bias=1.0), r"forget_bias applies to cell='lstm' only"),
        (lambda: LSTM(3, 5, nonlinearity="relu"), r"nonlinearity applies to cell='rnn' only"),
    ],
)
def test_bad_layer_options(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize("lengths", [[6, 6, 3, 3, 6, 1], [6, 5, 4, 3, 2, 1]], ids=["3 groups", "6 lengths: packed"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_length_groups_equal_the_packed_kernel(monkeypatch, kind, lengths):
    """The CPU torch path runs a few distinct lengths as unpacked row groups (recurrent._run_length_groups):
    outputs, final states and every gradient equal torch's packed-sequence kernel's."""
    from rnnlab.nn import recurrent

    torch.manual_seed(0)
    layer = Recurrent(kind, 3, 4, num_layers=2, bidirectional=True, impl="torch").double()
    x = torch.randn(6, 6, 3, dtype=torch.float64)
    lengths = torch.tensor(lengths)
    results = []
    for groups in (recurrent._MAX_LENGTH_GROUPS, 0):  # 0: always packed
        monkeypatch.setattr(recurrent, "_MAX_LENGTH_GROUPS", groups)
        layer.zero_grad()
        y, s = layer(x, lengths=lengths)
        (y.sum() + _h(s).square().sum()).backward()
        results.append((y, _h(s), [p.grad.clone() for p in layer.parameters()]))
    (y1, h1, g1), (y2, h2, g2) = results
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(h1, h2)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)

"""MinGRU and MinLSTM: both scans against each other and the step form, lengths, state, errors, stacking.

The layers are Recurrent layers of MinGRUCell/MinLSTMCell: state (L·D, B, H), here L = D = 1 unless stacked.
"""
import pytest
import torch

from rnnlab.nn.min_rnn import MinGRU, MinLSTM, g, log_g

CLASSES = [MinGRU, MinLSTM]


def _model(cls, I=4, H=6, *, scan="auto", dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return cls(I, H, scan=scan).to(dtype)


def _x(B=3, T=20, I=4, *, dtype=torch.float64, seed=1, scale=2.0):
    return scale * torch.randn(B, T, I, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _run_steps(model, x, state=None):
    outputs = []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
        outputs.append(y)
    return torch.stack(outputs, dim=1), state  # (B, T, H)


def test_g_is_positive_continuous_and_log_g_matches():
    x = torch.linspace(-30, 30, 601, dtype=torch.float64)
    assert (g(x) > 0).all()
    torch.testing.assert_close(g(torch.zeros(1)), torch.tensor([0.5]))  # both branches meet at 0.5
    torch.testing.assert_close(log_g(x), torch.log(g(x)))
    x.requires_grad_()
    log_g(x).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("cls", CLASSES)
def test_golden_numbers_with_constant_weights(cls):
    # W = 0, bias = 0: every gate σ(0) = 1/2 and h̃ = g(0) = 1/2, so
    # minGRU: h_t = h_{t-1}/2 + 1/4; minLSTM: f' = i' = 1/2, the same recurrence.
    model = cls(2, 3, scan="numba")
    torch.nn.init.zeros_(model.cells[0].linear.weight)
    torch.nn.init.zeros_(model.cells[0].linear.bias)
    outputs, state = model(torch.randn(1, 3, 2), torch.ones(1, 1, 3))
    expected = torch.tensor([0.75, 0.625, 0.5625]).view(1, 3, 1).expand(1, 3, 3)
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(state, expected[:, -1].unsqueeze(0))


@pytest.mark.parametrize("cls", CLASSES)
def test_fused_and_log_scans_agree_values_and_grads(cls):
    fused, log = _model(cls, scan="numba"), _model(cls, scan="log")
    x = _x()
    h0 = -torch.rand(1, 3, 6, dtype=torch.float64)
    results = []
    for model in (fused, log):
        xi, hi = x.clone().requires_grad_(), h0.clone().requires_grad_()
        outputs, state = model(xi, hi)
        (outputs.pow(2).sum() + state.sum()).backward()
        results.append((outputs, state, xi.grad, hi.grad, model.cells[0].linear.weight.grad))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("scan", ["numba", "log"])
@pytest.mark.parametrize("cls", CLASSES)
def test_forward_gradcheck_float64(cls, scan):
    model = _model(cls, I=3, H=2, scan=scan)
    x = _x(B=2, T=5, I=3).requires_grad_()
    h0 = torch.randn(1, 2, 2, dtype=torch.float64, requires_grad=True)
    W = model.cells[0].linear.weight.detach().clone().requires_grad_()
    b = model.cells[0].linear.bias.detach().clone().requires_grad_()
    # w.r.t. input and state, then w.r.t. the parameters through torch.func.functional_call
    assert torch.autograd.gradcheck(lambda x, h0: model(x, h0), (x, h0))
    assert torch.autograd.gradcheck(
        lambda W, b: torch.func.functional_call(model, {"cells.0.linear.weight": W, "cells.0.linear.bias": b}, (x.detach(), h0.detach())),
        (W, b),
    )


@pytest.mark.parametrize("scan", ["numba", "log"])
@pytest.mark.parametrize("cls", CLASSES)
def test_parallel_and_step_forms_agree_over_1000_steps(cls, scan):
    model = _model(cls, I=3, H=4, scan=scan)
    x = _x(B=2, T=1000, I=3, scale=1.0)
    h0 = torch.tensor([[[-1.5, 0.0, 2.0, -0.25], [0.5, -3.0, 0.0, 1.0]]], dtype=torch.float64)  # (1, B, H)
    with torch.no_grad():
        outputs, state = model(x, h0)
        outputs_ref, state_ref = _run_steps(model, x, h0)
    torch.testing.assert_close(outputs, outputs_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(state, state_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cls", CLASSES)
def test_float32_scans_agree_over_1000_steps(cls):
    x = _x(B=2, T=1000, I=4, dtype=torch.float32, scale=1.0)
    with torch.no_grad():
        fused, _ = _model(cls, scan="numba", dtype=torch.float32)(x)
        log, _ = _model(cls, scan="log", dtype=torch.float32)(x)
    torch.testing.assert_close(fused, log, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scan", ["numba", "log"])
@pytest.mark.parametrize("cls", CLASSES)
def test_padded_batch_gives_each_sequence_what_it_gives_alone(cls, scan):
    model = _model(cls, scan=scan)
    lengths = torch.tensor([7, 3, 1])
    x = _x(B=3, T=7)
    h0 = torch.randn(1, 3, 6, dtype=torch.float64)
    xp, h0p = x.clone().requires_grad_(), h0.clone().requires_grad_()
    outputs, state = model(xp, h0p, lengths=lengths)
    (outputs.sum() + state.sum()).backward()
    for row, n in enumerate(lengths.tolist()):
        xa, h0a = x[row : row + 1, :n].clone().requires_grad_(), h0[:, row : row + 1].clone().requires_grad_()
        alone, alone_state = model(xa, h0a)
        (alone.sum() + alone_state.sum()).backward()
        torch.testing.assert_close(outputs[row, :n], alone[0])
        torch.testing.assert_close(state[:, row], alone_state[:, 0])
        assert (outputs[row, n:] == 0).all()  # outputs past the length are zero
        torch.testing.assert_close(xp.grad[row, :n], xa.grad[0])
        assert (xp.grad[row, n:] == 0).all()  # padding gets no gradient
        torch.testing.assert_close(h0p.grad[:, row], h0a.grad[:, 0])


@pytest.mark.parametrize("cls", CLASSES)
def test_lengths_equal_to_T_changes_nothing(cls):
    model = _model(cls)
    x = _x()
    outputs, state = model(x)
    outputs_l, state_l = model(x, lengths=[20, 20, 20])
    torch.testing.assert_close(outputs, outputs_l)
    torch.testing.assert_close(state, state_l)


@pytest.mark.parametrize("cls", CLASSES)
def test_state_none_means_zeros_and_initial_state(cls):
    model = _model(cls)
    x = _x()
    s0 = model.initial_state(3)
    assert s0.shape == (1, 3, 6) and s0.dtype == torch.float64 and (s0 == 0).all()
    assert model.initial_state(2, dtype=torch.float32).dtype == torch.float32
    torch.testing.assert_close(model(x)[0], model(x, s0)[0])
    y, s = model.step(x[:, 0])
    assert y.shape == (3, 6) and s.shape == (1, 3, 6) and torch.equal(s[0], y)


@pytest.mark.parametrize("cls", CLASSES)
def test_streaming_in_chunks_matches_one_call(cls):
    model = _model(cls)
    x = _x(T=30)
    h0 = -torch.rand(1, 3, 6, dtype=torch.float64)
    outputs, state = model(x, h0)
    first, s = model(x[:, :11], h0)
    second, s = model(x[:, 11:], s)
    torch.testing.assert_close(torch.cat([first, second], dim=1), outputs)
    torch.testing.assert_close(s, state)


def test_minlstm_gates_normalised():
    model = _model(MinLSTM)
    k = torch.randn(5, 18, dtype=torch.float64) * 5
    a, b = model.cells[0]._coefficients(k)
    log_a, log_b = model.cells[0]._log_coefficients(k)
    torch.testing.assert_close(log_a.exp(), a)
    torch.testing.assert_close(log_b.exp(), b)
    f, i = torch.sigmoid(k[:, :6]), torch.sigmoid(k[:, 6:12])
    torch.testing.assert_close(a, f / (f + i))


@pytest.mark.parametrize("cls", CLASSES)
def test_bad_inputs_raise_errors_that_name_argument_expected_given(cls):
    model = _model(cls, I=4, H=6)
    x = _x(B=3, T=5, I=4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, I\) with I=4 \(batch first\), got shape \(5, 4\)"):
        model(x[0])
    with pytest.raises(ValueError, match=r"x must have input size I=4 in its last dimension, got shape \(3, 5, 3\)"):
        model(x[..., :3])
    with pytest.raises(TypeError, match=r"x must have dtype torch.float64 like the parameters, got torch.float32"):
        model(x.float())
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor, got dtype torch.int64"):
        model(x.long())
    with pytest.raises(ValueError, match=r"state must have shape \(1, 3, 6\), got \(3, 5\)"):
        model(x, torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"state must have dtype torch.float64, got torch.float32"):
        model(x, torch.zeros(1, 3, 6))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=5\], got min 0 and max 6"):
        model(x, lengths=torch.tensor([0, 6, 2]))
    with pytest.raises(ValueError, match=r"lengths must be 1-D of shape \(3,\)"):
        model(x, lengths=torch.tensor([5, 5]))
    with pytest.raises(TypeError, match=r"lengths must be an integer tensor, got dtype torch.float32"):
        model(x, lengths=torch.tensor([5.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, I\) with I=4"):
        model.step(x)
    with pytest.raises(ValueError, match=r"scan must be one of \('auto', 'numba', 'log'\), got 'cuda'"):
        cls(4, 6, scan="cuda")
    with pytest.raises(ValueError, match=r"scan='fused' is now called scan='numba'"):
        cls(4, 6, scan="fused")
    with pytest.raises(ValueError, match=r"hidden_size must be a positive int, got 0"):
        cls(4, 0)


@pytest.mark.parametrize("cls", CLASSES)
def test_stacked_layers_equal_the_cells_chained_by_hand(cls):
    """num_layers=2: layer 2 reads layer 1's outputs; state (L, B, H); lengths; step == forward."""
    model = cls(4, 6, num_layers=2, dropout=0.1, scan="numba").to(torch.float64).eval()
    x = _x(B=3, T=7)
    lengths = torch.tensor([7, 3, 1])
    h0 = torch.randn(2, 3, 6, dtype=torch.float64)
    outputs, state = model(x, h0, lengths)
    assert outputs.shape == (3, 7, 6) and state.shape == (2, 3, 6)
    y1, s1 = model.cells[0].sequence(x, h0[0], lengths)
    y2, s2 = model.cells[1].sequence(y1, h0[1], lengths)
    torch.testing.assert_close(outputs, y2)
    torch.testing.assert_close(state, torch.stack([s1, s2]))
    full, full_state = model(x, h0)
    steps, step_state = _run_steps(model, x, h0)
    torch.testing.assert_close(steps, full)
    torch.testing.assert_close(step_state, full_state)


def test_dropout_between_stacked_layers_only_in_training():
    model = MinGRU(4, 6, num_layers=2, dropout=0.5).double()
    x = _x(T=5)
    assert not torch.allclose(model(x)[0], model(x)[0])
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0])


@pytest.mark.parametrize("cls", CLASSES)
def test_bidirectional_reads_each_row_backwards_from_its_real_end(cls):
    model = _model(cls)
    bi = cls(4, 6, bidirectional=True).double()
    bi.cells[0].load_state_dict(model.cells[0].state_dict())
    x, lengths = _x(B=3, T=7), torch.tensor([7, 4, 2])
    outputs, state = bi(x, lengths=lengths)
    assert outputs.shape == (3, 7, 12) and state.shape == (2, 3, 6)
    forward, _ = model(x, lengths=lengths)
    torch.testing.assert_close(outputs[..., :6], forward)
    for row, n in enumerate(lengths.tolist()):
        back, back_state = bi.cells[1].sequence(x[row : row + 1, :n].flip(1), bi.cells[1].initial_state(1), None)
        torch.testing.assert_close(outputs[row, :n, 6:], back[0].flip(0))
        torch.testing.assert_close(state[1, row], back_state[0])

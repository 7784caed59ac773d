"""Gradient flow and Jacobian norms against torch.autograd on hand-written loops (float64), vanishing and exploding
on initialised models, and what clipping by norm and by value does."""
import pytest
import torch
from torch.autograd.functional import jacobian

from rnnlab.inspect import clipping_effect, compare_gradient_flow, gradient_flow, jacobian_norms
from rnnlab.nn import Recurrent


def tiny_rnn(cell="rnn", H=3, scale=None, **options):
    layer = Recurrent(cell, 2, H, **options).double().eval()
    if scale is not None:
        with torch.no_grad():
            layer.cells[0].weight_hh.mul_(scale)
    return layer


def run_from(cell, x, h, t, T):
    """h_T as a function of h_t: the cell stepped by hand from step t + 1 to T."""
    state = h
    for s in range(t + 1, T + 1):
        state = cell.step(x[:, s], state, None)[1]
    return state


def test_jacobian_norm_matches_autograd_functional_jacobian():
    layer = tiny_rnn()
    x = torch.randn(1, 6, 2, dtype=torch.float64)
    got = jacobian_norms(layer, {"x": x}, T=5, method="exact")
    assert got.method == "exact" and got.norms.shape == (1, 1, 6)
    outputs, _ = layer(x)
    cell = layer.cells[0]
    for t in range(6):
        J = jacobian(lambda h, t=t: run_from(cell, x, h, t, 5), outputs[:, t].detach())  # (1, H, 1, H)
        torch.testing.assert_close(got.norms[0, 0, t], J.reshape(3, 3).norm().double())


def test_random_projection_estimate_is_close_to_exact():
    layer = tiny_rnn(H=8)
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    exact = jacobian_norms(layer, {"x": x}, method="exact").norms
    estimate = jacobian_norms(layer, {"x": x}, method="random", projections=400, seed=1).norms
    assert torch.allclose(estimate, exact, rtol=0.2)


def test_gradient_flow_equals_retain_grad_on_a_hand_loop():
    layer = tiny_rnn(cell="lstm", num_layers=2)
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    loss_fn = lambda m, b: m(b["x"])[0].pow(2).sum() / 2  # noqa: E731
    flow = gradient_flow(layer, {"x": x}, loss_fn=loss_fn)
    # the same loss on a hand-written loop over both layers, each h_t kept with retain_grad
    hs, inp = [], x
    for cell in layer.cells:
        state, ys = cell.initial_state(2, dtype=torch.float64), []
        for t in range(4):
            y, state = cell.step(inp[:, t], state, None)
            y.retain_grad()
            ys.append(y)
        hs.append(ys)
        inp = torch.stack(ys, dim=1)
    (inp.pow(2).sum() / 2).backward()
    for k in range(2):
        expected = torch.stack([h.grad.norm(dim=-1) for h in hs[k]], dim=1)  # (B, T)
        torch.testing.assert_close(flow.norms[k], expected)
    assert flow.norms[0, :, 0].min() > 0  # the first step reaches the loss through both layers


def test_gradient_flow_with_lengths_is_zero_past_each_row_and_mean_ignores_padding():
    layer = tiny_rnn(bidirectional=True)
    b = {"x": torch.randn(2, 5, 2, dtype=torch.float64), "lengths": torch.tensor([5, 3])}
    flow = gradient_flow(layer, b)
    assert flow.names == ["layer l0", "layer l0 reverse"]
    assert flow.norms[:, 1, 3:].abs().sum() == 0 and flow.norms[:, 1, :3].min() > 0
    torch.testing.assert_close(flow.mean()[:, 4], flow.norms[:, 0, 4])


def test_rnn_tanh_with_small_weights_vanishes_while_lstm_keeps_more():
    torch.manual_seed(0)
    x = torch.randn(1, 30, 2, dtype=torch.float64)
    models = {"rnn": tiny_rnn(H=8, scale=0.5), "lstm": tiny_rnn("lstm", H=8, forget_bias=3.0)}
    result = compare_gradient_flow(models, {"x": x})
    rnn = result["rnn"].mean()[0]
    lstm = result["lstm"].mean()[0]
    assert rnn[0] < 1e-6 * rnn[-2]  # 28 steps back: ‖∂h_T/∂h_t‖ has fallen by more than 10^6
    assert (rnn[1:-1] < rnn[2:]).all()  # monotone: each step further back is smaller
    assert lstm[0] > 1e3 * rnn[0]


def test_relu_rnn_with_large_recurrent_weights_explodes_and_clipping_caps_it():
    torch.manual_seed(0)
    layer = Recurrent("rnn", 2, 6, nonlinearity="relu").double()
    with torch.no_grad():
        layer.cells[0].weight_hh.copy_(1.6 * torch.eye(6))
    before = layer.cells[0].weight_hh.detach().clone()
    x = torch.rand(1, 25, 2, dtype=torch.float64)
    jac = jacobian_norms(layer, {"x": x}).mean()[0]
    assert jac[0] > 1e4 * jac[-2]  # the dependence grows with the distance: exploding
    clip = clipping_effect(layer, {"x": x}, steps=3, lr=1e-6, max_norm=1.0, clip_value=0.01, update="norm")
    assert min(clip.before) > 1e3
    assert all(abs(a - 1.0) < 1e-9 for a in clip.after_norm)  # clip_grad_norm_ rescales to max_norm
    n = sum(p.numel() for p in layer.parameters())
    assert all(v <= 0.01 * n ** 0.5 + 1e-12 for v in clip.after_value)  # every entry within ±clip_value
    assert all(c < 0.999 for c in clip.cosine_value)  # value clipping turned the direction
    assert torch.equal(layer.cells[0].weight_hh, before)  # the model itself is untouched (a copy is trained)


def test_bad_arguments_are_one_line_errors():
    layer = tiny_rnn()
    x = {"x": torch.randn(1, 4, 2, dtype=torch.float64)}
    with pytest.raises(ValueError, match=r"T must be a step in \[0, 3\]"):
        jacobian_norms(layer, x, T=9)
    with pytest.raises(ValueError, match="method must be"):
        jacobian_norms(layer, x, method="svd")
    with pytest.raises(ValueError, match="max_norm and clip_value must be positive"):
        clipping_effect(layer, x, max_norm=0)
    with pytest.raises(ValueError, match="needs a recurrent encoder"):
        gradient_flow(torch.nn.Linear(2, 2), x)

"""The batched step's gate kernels (rnnlab.nn._step_kernels) and the step built on them (FastStep.gru_batched /
lstm_batched): float64 equal to torch.nn's cells to 1e-12, float32 to torch's float32 cells, golden numbers that pin
the equations, and the states a server keeps (StateTable) equal to each stream stepped alone."""
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from rnnlab.nn import GRU, LSTM, StateTable
from rnnlab.nn._step_kernels import gru_gates, lstm_gates
from rnnlab.nn.state import LSTMState

B, I, H = 64, 64, 256  # B·3H·(I + H) = 15.7M multiply-adds: above BATCHED_MIN_MACS, so float32 takes this path
LAYERS = {"gru": (GRU, nn.GRUCell), "lstm": (LSTM, nn.LSTMCell)}


def _reference_cells(layer, cell_cls, dtype):
    """torch.nn cells with the layer's weights, one per layer."""
    cells = []
    for cell in layer.cells:
        ref = cell_cls(cell.weight_ih.shape[1], H, bias=cell.bias_ih is not None).to(dtype)
        ref.load_state_dict(cell.state_dict())
        cells.append(ref)
    return cells


def _reference_step(cells, x, state, lstm):
    """The torch.nn cells chained: x (B, I), state (L, B, H) (h, c for the LSTM) -> (y, state)."""
    hs, cs, y = [], [], x
    for l, cell in enumerate(cells):
        if lstm:
            y, c = cell(y, (state[0][l], state[1][l]))
            cs.append(c)
        else:
            y = cell(y, state[l])
        hs.append(y)
    return y, (LSTMState(torch.stack(hs), torch.stack(cs)) if lstm else torch.stack(hs))


def _tensors(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_float64_batched_step_equals_torch_cells_exactly(kind, layers, bias):
    torch.manual_seed(0)
    layer_cls, cell_cls = LAYERS[kind]
    layer = layer_cls(I, H, num_layers=layers, bias=bias).double()
    if bias:
        with torch.no_grad():
            for p in layer.parameters():
                if p.dim() == 1:
                    p.normal_()  # zero biases would hide a bias added twice or in the wrong gate
    cells = _reference_cells(layer, cell_cls, torch.float64)
    step = layer._fast_step.lstm_batched if kind == "lstm" else layer._fast_step.gru_batched
    x = torch.randn(4, 16, I, dtype=torch.float64)  # steps, then 16 rows
    zeros = torch.zeros(layers, 16, H, dtype=torch.float64)
    ref_state = LSTMState(zeros, zeros) if kind == "lstm" else zeros
    state = None
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = step(x[t], state)
            y_ref, ref_state = _reference_step(cells, x[t], ref_state, kind == "lstm")
            assert_close(y, y_ref, atol=1e-12, rtol=1e-12)
            for a, b in zip(_tensors(state), _tensors(ref_state)):
                assert a.shape == (layers, 16, H)
                assert_close(a, b, atol=1e-12, rtol=1e-12)
        layer.cells[-1].weight_hh.mul_(0.5)  # read live: an update shows at the next step
        cells[-1].weight_hh.mul_(0.5)
        y, state = step(x[0], state)
        y_ref, ref_state = _reference_step(cells, x[0], ref_state, kind == "lstm")
        assert_close(y, y_ref, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_golden_numbers_with_biases(dtype):
    """Products zero, biases chosen so the gates are known: GRU b_ih = b_hh = (0, 0, 0 | ln 3, ln 3, ln 3 | 0, 0, 0)
    and b_hh's n part 1: r = σ(0) = 1/2, z = σ(2 ln 3) = 9/10, n = tanh(1/2); h' = n + z (h − n). By hand."""
    h = np.array([[-2.0, 0.0, 1.0]], dtype=dtype)
    b_x = np.array([0, 0, 0] + [np.log(3)] * 3 + [0, 0, 0], dtype=dtype)
    b_h = np.array([0, 0, 0] + [np.log(3)] * 3 + [1, 1, 1], dtype=dtype)
    out = np.empty_like(h)
    gru_gates(np.zeros((1, 9), dtype), b_x, np.zeros((1, 9), dtype), b_h, h, out, dtype(1))
    n = np.tanh(0.5)
    np.testing.assert_allclose(out[0], [n + 0.9 * (v - n) for v in (-2.0, 0.0, 1.0)], rtol=1e-6)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_float32_batched_step_equals_torch_cells(kind, layers):
    torch.manual_seed(0)
    layer_cls, cell_cls = LAYERS[kind]
    layer = layer_cls(I, H, num_layers=layers)
    cells = _reference_cells(layer, cell_cls, torch.float32)
    x = torch.randn(B, 5, I)
    with torch.no_grad():
        assert layer._fast_step._batched(x[:, 0])
        h = torch.randn(layers, B, H)
        state = LSTMState(h, torch.randn(layers, B, H)) if kind == "lstm" else h
        ref_state = state
        for t in range(x.shape[1]):
            y, state = layer.step(x[:, t], state)  # x[:, t]: a strided view, as a caller slices it
            y_ref, ref_state = _reference_step(cells, x[:, t], ref_state, kind == "lstm")
            assert_close(y, y_ref, atol=2e-6, rtol=1e-5)
        for a, b in zip(_tensors(state), _tensors(ref_state)):
            assert_close(a, b, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_a_returned_state_is_never_written_again(kind):
    """Each step's state is a new tensor: a caller (a session store) may keep it while the layer steps on; with one
    layer y_t views the state, as torch.nn.LSTMCell's h."""
    torch.manual_seed(0)
    layer = LAYERS[kind][0](I, H)
    x = torch.randn(B, I)
    with torch.no_grad():
        y1, s1 = layer.step(x, None)
        kept = [t.clone() for t in _tensors(s1)]
        y2, s2 = layer.step(x, s1)
        y3, _ = layer.step(x, s2)
    for a, b in zip(_tensors(s1), kept):
        assert torch.equal(a, b)
    assert y2.data_ptr() == _tensors(s2)[0].data_ptr()
    assert not torch.equal(y2, y3)


def test_a_state_that_requires_grad_is_read_under_no_grad():
    torch.manual_seed(0)
    layer = GRU(I, H)
    x, h = torch.randn(B, I), torch.randn(1, B, H, requires_grad=True)
    with torch.no_grad():
        y, _ = layer.step(x, h)
    with torch.enable_grad():
        y_ref, _ = layer.step(x, h)  # torch's cell kernel (autograd)
    assert_close(y, y_ref.detach(), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_golden_numbers_with_zero_products(dtype):
    """x̂ = ĥ = 0: every gate is σ(0) = 1/2 and every candidate tanh(0) = 0, so GRU h' = h / 2, LSTM c' = c / 2 and
    h' = tanh(c / 2) / 2 (worked out by hand from the equations in the module docstring)."""
    h = np.array([[-2.0, 0.0, 1.0]], dtype=dtype)
    out = np.empty_like(h)
    z9, z12 = np.zeros((1, 9), dtype), np.zeros((1, 12), dtype)
    gru_gates(z9, z9[0], z9, z9[0], h, out, dtype(1))
    np.testing.assert_allclose(out, [[-1.0, 0.0, 0.5]], rtol=1e-6)
    h_out, c_out = np.empty_like(h), np.empty_like(h)
    lstm_gates(z12, z12[0], z12, z12[0], h, h_out, c_out, dtype(1))
    np.testing.assert_allclose(c_out, [[-1.0, 0.0, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(h_out, [[np.tanh(-1.0) / 2, 0.0, np.tanh(0.5) / 2]], rtol=1e-6)


def test_float32_kernel_saturates_and_passes_nan():
    """Large pre-activations saturate the gates (no overflow to NaN); a NaN in a product comes out as NaN, so a
    diverging model shows."""
    xp = np.array([[100.0, -100.0, 50.0, float("nan")] * 3], dtype=np.float32)  # (1, 3H) with H = 4
    hp = np.zeros_like(xp)
    h = np.ones((1, 4), dtype=np.float32)
    out = np.empty_like(h)
    gru_gates(xp, hp[0], hp, hp[0], h, out, np.float32(1))
    # r = z = σ(100) = 1 -> h' = h; z = σ(-100) = 0, n = tanh(-100) = -1 -> h' = -1; z = 1 -> h
    np.testing.assert_allclose(out[0, :3], [1.0, -1.0, 1.0], atol=1e-6)
    assert np.isnan(out[0, 3])


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_state_table_rows_stepped_together_equal_each_stream_alone(kind):
    """The server's path: rows gathered from a StateTable, one batched step (this kernel, 48 rows), scattered back;
    against each stream stepped alone at batch 1 (torch's cell kernel)."""
    torch.manual_seed(0)
    layer = LAYERS[kind][0](I, H, num_layers=2).eval()
    table = StateTable.for_layer(layer, capacity=16)
    streams = 48
    rows = [table.allocate() for _ in range(streams)]
    alone = [layer.initial_state(1) for _ in range(streams)]
    rng = random.Random(0)
    with torch.no_grad():
        for _ in range(3):
            chosen = rng.sample(range(streams), 40)
            x = torch.randn(len(chosen), I)
            assert layer._fast_step._batched(x)
            y = table.step(layer, [rows[s] for s in chosen], x)
            for b, s in enumerate(chosen):
                y_alone, alone[s] = layer.step(x[b : b + 1], alone[s])
                assert_close(y[b : b + 1], y_alone, atol=2e-6, rtol=1e-5)
    for s in range(streams):
        for a, b in zip(_tensors(table.gather([rows[s]])), _tensors(alone[s])):
            assert_close(a, b, atol=2e-6, rtol=1e-5)


def test_the_size_rule_picks_the_path():
    """From BATCHED_MIN_MACS multiply-adds with at least BATCHED_MIN_ROWS rows; fewer rows need FEW_ROWS_MIN_MACS."""
    from rnnlab.nn import _fast_step as fs

    gru = GRU(64, 256)  # 3·256·320 = 245,760 multiply-adds per row
    with torch.no_grad():
        assert fs.BATCHED_MIN_MACS <= 8 * 245_760 < fs.FEW_ROWS_MIN_MACS
        assert gru._fast_step._batched(torch.randn(8, 64))
        assert not gru._fast_step._batched(torch.randn(2, 64))  # 0.5M: below either threshold
        wide = GRU(512, 512)  # 3·512·1024 = 1.57M per row: above BATCHED_MIN_MACS, but a single row
        assert not wide._fast_step._batched(torch.randn(1, 512))

"""StateTable: batched stepping of independent streams equals stepping each stream alone."""
import random

import pytest
import torch
from torch.testing import assert_close

from rnnlab.nn import GRU, LSTM, RNN, LSTMState, StateTable

I, H = 5, 7


@pytest.mark.parametrize("layer_cls", [LSTM, GRU, RNN])
def test_interleaved_batched_steps_equal_each_stream_stepped_alone(layer_cls):
    torch.manual_seed(0)
    layer = layer_cls(I, H, num_layers=2).eval()
    table = StateTable.for_layer(layer, capacity=2)  # grows twice on the way
    streams = 6
    rows = [table.allocate() for _ in range(streams)]
    alone = [layer.initial_state(1) for _ in range(streams)]
    rng = random.Random(0)
    with torch.no_grad():
        for _ in range(12):
            chosen = rng.sample(range(streams), rng.randint(1, streams))  # any subset, any order
            x = torch.randn(len(chosen), I)
            y = table.step(layer, [rows[s] for s in chosen], x)
            for b, s in enumerate(chosen):
                y_alone, alone[s] = layer.step(x[b : b + 1], alone[s])
                assert_close(y[b : b + 1], y_alone)
    for s in range(streams):
        assert_close(table.gather([rows[s]]), alone[s])
    assert table.capacity == 8 and len(table) == streams


def test_a_freed_row_is_reused_from_the_initial_state():
    layer = LSTM(I, H, num_layers=2)
    table = StateTable.for_layer(layer, capacity=2)
    a, b = table.allocate(), table.allocate()
    with torch.no_grad():
        table.step(layer, [a, b], torch.randn(2, I))
    assert table.gather([a]).h.abs().sum() > 0
    table.free(a)
    c = table.allocate()
    assert c == a and table.capacity == 2  # the freed row, no growth
    state = table.gather([c])
    assert isinstance(state, LSTMState)
    assert_close(state, layer.initial_state(1))
    assert table.gather([b]).h.abs().sum() > 0  # the other row keeps its state


def test_a_non_zero_initial_state_and_memory_counts():
    initial = torch.full((3, 1, 4), 0.5, dtype=torch.float64)
    table = StateTable(initial, capacity=1)
    rows = [table.allocate() for _ in range(3)]
    assert table.capacity == 4 and table.row_bytes == 3 * 4 * 8
    assert table.bytes_in_use == 3 * table.row_bytes and table.bytes_reserved == 4 * table.row_bytes
    table.scatter([rows[1]], torch.zeros(3, 1, 4, dtype=torch.float64))
    assert_close(table.gather(rows)[:, [0, 2]], initial.expand(3, 2, 4))
    assert table.gather(torch.tensor([rows[1]])).abs().sum() == 0


def test_bad_rows_and_states_name_the_problem():
    table = StateTable.for_layer(GRU(I, H), capacity=2)
    r = table.allocate()
    with pytest.raises(ValueError, match="row 5 is not allocated \\(out of range"):
        table.gather([5])
    with pytest.raises(ValueError, match="row 1 is not allocated \\(free"):
        table.gather([r, 1])
    with pytest.raises(ValueError, match="distinct"):
        table.scatter([r, r], torch.zeros(1, 2, H))
    with pytest.raises(ValueError, match="must be ints"):
        table.gather([0.5])
    with pytest.raises(ValueError, match=r"a tensor of \(1, 1, 7\), got \(1, 1, 6\)"):
        table.scatter([r], torch.zeros(1, 1, 6))
    with pytest.raises(ValueError, match="got LSTMState"):
        table.scatter([r], LSTMState(torch.zeros(1, 1, H), torch.zeros(1, 1, H)))
    table.free(r)
    with pytest.raises(ValueError, match="row 0 is not allocated \\(free"):
        table.free(r)
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        StateTable(torch.zeros(1, 1, 3), capacity=0)
    with pytest.raises(ValueError, match=r"tensors \(L, 1, H\), got \(1, 2, 3\)"):
        StateTable(torch.zeros(1, 2, 3))


def test_a_growth_between_gather_and_scatter_keeps_the_stepped_states():
    """The server allocates rows on its event loop while a worker thread steps others: the scatter lands in
    the grown storage."""
    layer = GRU(I, H).eval()
    table = StateTable.for_layer(layer, capacity=2)
    rows = [table.allocate(), table.allocate()]
    x = torch.randn(2, I)

    def step_and_grow(x_, state):
        for _ in range(5):
            table.allocate()  # capacity 2 -> 8 while the step is in flight
        return layer.step(x_, state)

    with torch.no_grad():
        table.step(step_and_grow, rows, x)
        _, expected = layer.step(x, layer.initial_state(2))
    assert table.capacity == 8
    assert_close(table.gather(rows), expected)

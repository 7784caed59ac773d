"""The private torch kernels rnnlab calls: signatures and results pinned against torch's public modules.

If a torch upgrade changes one of them, these tests fail here, naming the kernel, before any layer test does.
"""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from rnnlab.nn import _torch_kernels as K

B, T, I, H = 3, 5, 4, 6
LENGTHS = torch.tensor([5, 2, 3])

SEQUENCE = [
    ("lstm", K.lstm, lambda **kw: torch.nn.LSTM(I, H, batch_first=True, **kw)),
    ("gru", K.gru, lambda **kw: torch.nn.GRU(I, H, batch_first=True, **kw)),
    ("rnn_tanh", K.rnn_tanh, lambda **kw: torch.nn.RNN(I, H, batch_first=True, **kw)),
    ("rnn_relu", K.rnn_relu, lambda **kw: torch.nn.RNN(I, H, nonlinearity="relu", batch_first=True, **kw)),
]


def _hx(name, L):
    h = torch.randn(L, B, H)
    return (h, torch.randn(L, B, H)) if name == "lstm" else h


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name,kernel,make", SEQUENCE, ids=[s[0] for s in SEQUENCE])
def test_sequence_kernel_matches_the_public_module(name, kernel, make, bias, packed):
    module = make(num_layers=2, bidirectional=True, bias=bias)
    x = torch.randn(B, T, I)
    hx = _hx(name, 4)
    options = dict(has_bias=bias, num_layers=2, dropout=0.0, train=False, bidirectional=True)
    weights = list(module._flat_weights)
    if packed:
        p = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
        sorted_hx = tuple(h.index_select(1, p.sorted_indices) for h in hx) if name == "lstm" \
            else hx.index_select(1, p.sorted_indices)
        got = kernel(p.data, sorted_hx, weights, p.batch_sizes, **options)
        want_out, want_state = module(p, hx)
        torch.testing.assert_close(got[0], want_out.data)
        unsort = p.unsorted_indices
        got_state = [s.index_select(1, unsort) for s in got[1:]]
    else:
        got = kernel(x, hx, weights, **options)
        want_out, want_state = module(x, hx)
        torch.testing.assert_close(got[0], want_out)
        got_state = list(got[1:])
    want_state = list(want_state) if name == "lstm" else [want_state]
    assert len(got_state) == len(want_state)
    for g, w in zip(got_state, want_state):
        torch.testing.assert_close(g, w)


CELLS = [
    ("lstm_cell", K.lstm_cell, lambda **kw: torch.nn.LSTMCell(I, H, **kw)),
    ("gru_cell", K.gru_cell, lambda **kw: torch.nn.GRUCell(I, H, **kw)),
    ("rnn_tanh_cell", K.rnn_tanh_cell, lambda **kw: torch.nn.RNNCell(I, H, **kw)),
    ("rnn_relu_cell", K.rnn_relu_cell, lambda **kw: torch.nn.RNNCell(I, H, nonlinearity="relu", **kw)),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name,kernel,make", CELLS, ids=[c[0] for c in CELLS])
def test_cell_kernel_matches_the_public_cell(name, kernel, make, bias):
    cell = make(bias=bias)
    x = torch.randn(B, I)
    hx = (torch.randn(B, H), torch.randn(B, H)) if name == "lstm_cell" else torch.randn(B, H)
    got = kernel(x, hx, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    want = cell(x, hx)
    if name == "lstm_cell":
        assert isinstance(got, tuple) and len(got) == 2
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[1], want[1])
    else:
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("affine", [True, False])
def test_native_layer_norm_matches_f_layer_norm_and_returns_its_statistics(affine):
    x = torch.randn(3, 7, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64) if affine else None
    b = torch.randn(8, dtype=torch.float64) if affine else None
    y, mean, rstd = K.native_layer_norm(x, [8], w, b, 1e-5)
    torch.testing.assert_close(y, F.layer_norm(x, (8,), w, b, 1e-5))
    torch.testing.assert_close(mean.squeeze(-1), x.mean(-1))
    torch.testing.assert_close(rstd.squeeze(-1), (x.var(-1, unbiased=False) + 1e-5).rsqrt())
    assert mean.shape == (3, 7, 1) and rstd.shape == (3, 7, 1)


def test_a_missing_kernel_raises_a_message_that_names_it():
    stand_in = K._private(object(), "lstm_v9", "torch._VF")
    with pytest.raises(RuntimeError, match=r"torch._VF.lstm_v9 is missing in torch .*_torch_kernels.py"):
        stand_in()


def test_onednn_linear_is_the_plain_product():
    a, w = torch.randn(7, 5), torch.randn(3, 5)
    out = K.onednn_linear(a, w)
    if K.ONEDNN_LINEAR:
        assert out is not None, "torch.ops.mkldnn._linear_pointwise refused a plain float32 product"
        torch.testing.assert_close(out, a @ w.t(), rtol=1e-5, atol=1e-5)
    else:
        assert out is None
    from rnnlab.nn._gemm import linear

    torch.testing.assert_close(linear(a, w), a @ w.t(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(linear(a.double(), w.double()), a.double() @ w.double().t())


def test_sole_owner_counts_views_and_numpy_arrays():
    t = torch.empty(10)
    assert K.sole_owner(t)
    v = t[2:5]
    assert not K.sole_owner(t)
    del v
    assert K.sole_owner(t)
    a = t.numpy()
    assert not K.sole_owner(t)
    del a
    assert K.sole_owner(t)


def test_native_layer_norm_out_writes_into_the_given_tensors():
    x = torch.randn(3, 4, 8)
    y, mean, rstd = torch.empty(3, 4, 8), torch.empty(3, 4, 1), torch.empty(3, 4, 1)
    K.native_layer_norm_out(x, [8], 1e-5, out=(y, mean, rstd))
    torch.testing.assert_close(y, torch.nn.functional.layer_norm(x, [8]))
    torch.testing.assert_close(rstd, 1 / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5))


def test_onednn_pack_linear_weight_is_read_by_onednn_linear():
    a, w = torch.randn(6, 5), torch.randn(3, 5)
    packed = K.onednn_pack_linear_weight(w, 6)
    if not K.ONEDNN_LINEAR:
        assert packed is None
        return
    assert packed is not None and packed.is_mkldnn, "torch.ops.mkldnn._reorder_linear_weight changed"
    torch.testing.assert_close(K.onednn_linear(a, packed), a @ w.t(), rtol=1e-5, atol=1e-5)


def test_cudnn_flatten_weights_is_there_and_leaves_cpu_weights_alone():
    """The GPU test (tests/test_cuda.py) checks the flattening itself; here, that the private op exists in this
    torch and that CPU weights are not touched."""
    assert callable(getattr(torch, "_cudnn_rnn_flatten_weight", None))
    layer = torch.nn.LSTM(3, 4)
    weights = [w.detach().clone() for w in layer._flat_weights]
    ptrs = [w.data_ptr() for w in weights]
    assert not K.cudnn_flatten_weights("lstm", weights, input_size=3, hidden_size=4, num_layers=1,
                                       bidirectional=False)
    assert [w.data_ptr() for w in weights] == ptrs

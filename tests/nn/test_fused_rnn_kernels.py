"""The fused Elman RNN's element-wise step kernels where their vector code runs: H = 40 and 80 (full vector
iterations of the float32 loops and a remainder; test_fused_rnn.py runs H <= 8, the scalar remainders only), on both
loops over time (the whole loop in numba, and the per-step product from Python), tanh and ReLU, plain and layer
norm, training and inference, float32 and float64, with dropout and lengths.
"""
import pytest
import torch
from test_fused_rnn import assert_all_close, make_case, outputs_and_grads

from rnnlab.nn.fused_rnn import rnn_sequence, rnn_sequence_reference


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("H", [40, 80])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "ln"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_vector_widths_match_reference(gru_rnn_loop, H, ln, nonlinearity, dtype):
    torch.manual_seed(H)
    args, kw = make_case(3, 4, 6, H, dtype=dtype, ln=ln, mask=True, lengths="mixed", nonlinearity=nonlinearity)
    with torch.no_grad():  # W_hh ~ N(0, 1/H): at make_case's 0.4 a ReLU layer of H = 80 grows ~4x a step, and the
        args[3].mul_(2.5 / H ** 0.5)  # float32 rounding of its products alone (the reference's too) passes TOL
    assert_all_close(outputs_and_grads(rnn_sequence, args, kw), outputs_and_grads(rnn_sequence_reference, args, kw),
                     dtype)
    with torch.no_grad():  # inference: the same kernel with nothing saved
        kw["lengths"] = torch.tensor([4, 1, 2])
        y, hT = rnn_sequence(*args, **kw)
        assert_all_close([y, hT], list(rnn_sequence_reference(*args, **kw)), dtype)
    for b, n in enumerate(kw["lengths"].tolist()):
        assert not y[b, n:].any()
        assert torch.equal(y[b, n - 1], hT[b])

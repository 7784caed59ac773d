"""The CUDA paths: each layer, structure and the trainer on a GPU give the CPU's numbers.

These run only where torch sees a CUDA device (CI has none, so they are skipped there and reported as
skipped); run them on a GPU machine with ``pytest tests/test_cuda.py``. On the GPU the layers take cuDNN's
kernels (no layer norm, no recurrent dropout) or the pure-torch reference paths (the numba kernels are
CPU-only), so these tests check those routes against the CPU's.
"""
import math

import pytest
import torch

from rnnlab.nn import GRU, LSTM, RNN, MinGRU, MinLSTM
from rnnlab.structures import (
    DecoderConfig,
    EncoderConfig,
    LanguageModel,
    LanguageModelConfig,
    ManyToOne,
    ManyToOneConfig,
    Seq2Seq,
    Seq2SeqConfig,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")

# cuDNN and TF32 change the rounding, not the maths: compare in float64 where cuDNN allows, else loosely.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def _both(make, *args):
    """The same module on the CPU and on the GPU (float64), with identical weights."""
    torch.manual_seed(0)
    cpu = make(*args).double()
    gpu = make(*args).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu


def _close(a, b, tol=1e-9):
    if isinstance(a, tuple):
        for x, y in zip(a, b, strict=True):
            _close(x, y, tol)
        return
    assert torch.allclose(a, b.cpu(), atol=tol, rtol=tol), (a - b.cpu()).abs().max()


LAYERS = {
    "lstm": lambda: LSTM(5, 7, num_layers=2, bidirectional=True),
    "gru": lambda: GRU(5, 7, num_layers=2, bidirectional=True),
    "rnn": lambda: RNN(5, 7, num_layers=2),
    "lstm-layer-norm": lambda: LSTM(5, 7, num_layers=2, layer_norm=True),
    "gru-layer-norm": lambda: GRU(5, 7, layer_norm=True, bidirectional=True),
    "mingru": lambda: MinGRU(5, 7),
    "minlstm": lambda: MinLSTM(5, 7),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_on_the_gpu_equal_the_cpu_with_lengths_and_gradients(name):
    cpu, gpu = _both(LAYERS[name])
    x = torch.randn(4, 9, 5, dtype=torch.float64)
    lengths = torch.tensor([9, 3, 6, 1])
    xc, xg = x.clone().requires_grad_(), x.cuda().requires_grad_()
    out_c, state_c = cpu(xc, lengths=lengths)
    out_g, state_g = gpu(xg, lengths=lengths.cuda() if name.startswith("min") else lengths)
    _close(out_c, out_g)
    as_tuple = lambda s: tuple(s) if isinstance(s, tuple) else s  # noqa: E731
    _close(as_tuple(state_c), as_tuple(state_g))
    out_c.square().sum().backward()
    out_g.square().sum().backward()
    _close(xc.grad, xg.grad, 1e-8)
    for (n, p), q in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad.cpu(), atol=1e-8, rtol=1e-8), n


def test_streaming_step_on_the_gpu_equals_the_whole_sequence():
    torch.manual_seed(0)
    layer = LSTM(5, 7, num_layers=2).cuda()
    x = torch.randn(3, 6, 5, device="cuda")
    out, _ = layer(x)
    state = None
    for t in range(6):
        y, state = layer.step(x[:, t], state)
        assert torch.allclose(y, out[:, t], atol=1e-5)


def test_structures_train_and_decode_on_the_gpu():
    torch.manual_seed(0)
    clf = ManyToOne(ManyToOneConfig(3, vocab_size=11, embedding_size=8, encoder=EncoderConfig(hidden_size=16))).cuda()
    x = torch.randint(0, 11, (4, 7), device="cuda")
    loss = clf.loss({"x": x, "lengths": torch.tensor([7, 2, 5, 1]), "y": torch.tensor([0, 1, 2, 1], device="cuda")})
    loss.backward()
    assert math.isfinite(loss.item())

    lm = LanguageModel(LanguageModelConfig(vocab_size=11, embedding_size=8, encoder=EncoderConfig(hidden_size=16))).cuda()
    out = lm.generate(torch.tensor([[1, 2]], device="cuda"), max_new_tokens=5, method="greedy")
    assert out.shape == (1, 7) and out.device.type == "cuda"

    s2s = Seq2Seq(Seq2SeqConfig(9, src_vocab_size=7, embedding_size=4, decoder=DecoderConfig(hidden_size=6),
                                encoder=EncoderConfig(hidden_size=6))).cuda()
    src = torch.randint(3, 7, (2, 5), device="cuda")
    y = torch.randint(3, 9, (2, 4), device="cuda")
    assert math.isfinite(s2s.loss({"x": src, "y": y}).item())


def test_trainer_runs_bf16_on_the_gpu(tmp_path):
    from rnnlab.training import Trainer, TrainerConfig

    torch.manual_seed(0)
    model = ManyToOne(ManyToOneConfig(2, input_size=3, encoder=EncoderConfig(hidden_size=16)))
    data = [{"x": torch.randn(8, 10, 3), "y": torch.randint(0, 2, (8,))} for _ in range(4)]
    config = TrainerConfig(device="cuda", precision="bf16", max_epochs=2, lr=1e-2, progress=False,
                           run_dir=str(tmp_path / "run"))
    metrics = Trainer(config).fit(model, data, data)
    assert math.isfinite(metrics["valid_loss"]) and next(model.parameters()).device.type == "cuda"

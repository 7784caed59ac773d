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


def test_batched_streaming_steps_on_the_gpu_through_a_state_table():
    """Sessions as rows of a StateTable on the GPU, stepped in mixed batches, equal each session run whole.
    B·G·H·(I+H) is above the CPU's oneDNN step threshold: on the GPU the step must stay on torch's kernels."""
    from rnnlab.nn import StateTable

    torch.manual_seed(0)
    for make in (lambda: LSTM(64, 256, num_layers=2), lambda: GRU(64, 256, num_layers=2)):
        layer = make().cuda()
        x = torch.randn(40, 5, 64, device="cuda")
        whole, _ = layer(x)
        table = StateTable.for_layer(layer, capacity=8, device="cuda")
        rows = [table.allocate() for _ in range(40)]  # grows past the capacity
        with torch.no_grad():
            for t in range(5):
                order = torch.randperm(40).tolist()  # each step's batch lists the sessions in another order
                y = table.step(layer, [rows[i] for i in order], x[order, t])
                assert torch.allclose(y, whole[order, t], atol=1e-4), (t, (y - whole[order, t]).abs().max())


def test_precision_auto_on_a_gpu_picks_bf16_except_for_recurrent_models():
    from rnnlab.training.trainer import resolve_precision

    gpu = torch.device("cuda")
    bf16 = "bf16" if torch.cuda.is_bf16_supported() else "float32"
    assert resolve_precision("auto", gpu) == bf16
    transformer = ManyToOne(ManyToOneConfig(3, vocab_size=11, embedding_size=8,
                                            encoder=EncoderConfig(kind="transformer", hidden_size=16)))
    assert resolve_precision("auto", gpu, transformer) == bf16
    assert resolve_precision("auto", gpu, LSTM(3, 4)) == "float32"
    assert resolve_precision("auto", gpu, torch.nn.Sequential(torch.nn.GRU(3, 4))) == "float32"


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong-dot", "luong-general"])
def test_attention_seq2seq_training_on_the_gpu_equals_the_cpu(attention):
    """The teacher-forced decoder (its hoisted products and, on the CPU, the fused LSTM decoder) against the GPU's
    torch path: loss and every gradient in float64."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(9, src_vocab_size=7, embedding_size=4, attention=attention,
                           decoder=DecoderConfig(hidden_size=6), encoder=EncoderConfig(hidden_size=6))
    cpu, gpu = _both(lambda: Seq2Seq(config))
    src = torch.randint(3, 7, (3, 5))
    y = torch.randint(3, 9, (3, 4))
    lengths = torch.tensor([5, 2, 4])
    loss_c = cpu.loss({"x": src, "lengths": lengths, "y": y})
    loss_g = gpu.loss({"x": src.cuda(), "lengths": lengths, "y": y.cuda()})
    _close(loss_c.detach(), loss_g.detach())
    loss_c.backward()
    loss_g.backward()
    for (n, p), q in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad.cpu(), atol=1e-8, rtol=1e-8), n


def test_language_model_trains_with_precision_auto_on_the_gpu(tmp_path):
    from rnnlab.training import Trainer, TrainerConfig

    torch.manual_seed(0)
    from rnnlab.training import TokenStream

    lm = LanguageModel(LanguageModelConfig(vocab_size=11, embedding_size=8, encoder=EncoderConfig(hidden_size=16)))
    # documents of several lengths: batches cut at a document end carry lengths (CPU) and ends (moved to the GPU)
    docs = [torch.randint(0, 11, (n,)) for n in (30, 7, 19, 44, 12, 25)]
    data = TokenStream(docs, batch_size=3, bptt=8, shuffle_seed=0)
    assert any("lengths" in b for b in data)
    trainer = Trainer(TrainerConfig(device="cuda", precision="auto", max_epochs=1, lr=1e-2, progress=False,
                                    run_dir=str(tmp_path / "run")))
    metrics = trainer.fit(lm, data, data)
    assert math.isfinite(metrics["valid_loss"])
    assert trainer.precision == "float32"  # a recurrent model on a GPU (see resolve_precision)


@pytest.mark.parametrize("make", [lambda: LSTM(5, 7, num_layers=2, bidirectional=True), lambda: GRU(5, 7),
                                  lambda: RNN(5, 7, num_layers=2, bias=False)])
def test_cudnn_reads_the_layer_weights_in_place_and_training_moves_them(make):
    """After .cuda() the weights are views of one buffer in cuDNN's layout (as torch.nn.RNNBase keeps them), so
    cuDNN does not copy them at every call (it warns when it must); an optimizer step on them trains the same
    weights as torch.nn's layer stepping from the same start."""
    import warnings

    torch.manual_seed(0)
    ours = make().cuda()
    assert len({p.untyped_storage().data_ptr() for p in ours.parameters()}) == 1
    kind = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN": torch.nn.RNN}[type(ours).__name__]
    ref = kind(5, 7, num_layers=ours.num_layers, bidirectional=ours.bidirectional, batch_first=True,
               bias=next(iter(ours.cells)).bias_ih is not None).cuda()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 6, 5, device="cuda")
    for model in (ours, ref):
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "RNN module weights are not part of single contiguous chunk..."
            model(x)[0].square().sum().backward()
        opt.step()
    assert torch.allclose(ours(x)[0], ref(x)[0], atol=1e-5)
    for (n, p), q in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), n


def test_a_language_model_training_step_on_the_gpu_waits_for_it_only_before_the_forward():
    """The Trainer's batches (pinned; lengths and ends kept on the CPU) through the forward and backward: the
    only host-device synchronisations are the range checks of the token ids and targets, before any work is
    queued. A wait in the middle of the step would idle the GPU while the CPU queues the rest of it."""
    import traceback
    import warnings

    from rnnlab.training import TokenStream
    from rnnlab.training.trainer import _to_device

    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=11, embedding_size=8, encoder=EncoderConfig(hidden_size=16)))
    lm = lm.cuda()
    docs = [torch.randint(0, 11, (n,)) for n in (30, 7, 19, 44, 12, 25)]
    waits = []

    def record(message, *args, **kwargs):
        if "synchroniz" in str(message):
            waits.append([f.name for f in traceback.extract_stack()])

    state, seen = None, 0
    for batch in TokenStream(docs, batch_size=3, bptt=8, shuffle_seed=0):
        batch = _to_device(batch, torch.device("cuda"))
        batch["state"] = state
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.showwarning = record
                loss, state = lm.loss_and_state(batch)
                loss.backward()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        state = tuple(s.detach() for s in state)
        seen += "lengths" in batch
    assert seen  # batches cut at a document end were among them
    assert waits and all("_real_targets" in stack or "_check_ids" in stack for stack in waits), waits

"""The PyTorch contenders of benchmarks/peers.py: torch.nn in float32 (the baseline) and under bf16 autocast,
rnnlab in float32 and with precision "auto" (bf16 autocast on a CPU with AVX512-BF16/AMX, float32 elsewhere).

A training step is forward + backward of outputs.mean() with parameter gradients (as benchmarks/layers.py);
inference is the forward under torch.no_grad(). The streaming case steps B independent sessions together:
torch.nn.LSTMCell/GRUCell/RNNCell against rnnlab's ``layer.step``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from rnnlab.nn import GRU, LSTM, RNN
from rnnlab.training.trainer import resolve_precision

TORCH = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}
TORCH_CELL = {"LSTM": nn.LSTMCell, "GRU": nn.GRUCell, "RNN": nn.RNNCell}
OURS = {"LSTM": LSTM, "GRU": GRU, "RNN": RNN}


def missing() -> str:
    return ""


def versions() -> dict:
    return {"torch": torch.__version__, "rnnlab precision auto": resolve_precision("auto", torch.device("cpu"))}


def setup_threads(n: int) -> None:
    torch.set_num_threads(n)


def _precision(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _train(model: nn.Module, x: torch.Tensor, bf16: bool) -> Callable[[], None]:
    def run():
        model.zero_grad(set_to_none=True)
        with _precision(bf16):
            out, _ = model(x)  # (B, T, H)
        out.float().mean().backward()

    return run


def _infer(model: nn.Module, x: torch.Tensor, bf16: bool) -> Callable[[], None]:
    def run():
        with torch.no_grad(), _precision(bf16):
            model(x)

    return run


def build(case: dict) -> dict[str, Callable[[], None]]:
    if case["kind"] == "stream":
        return _build_stream(case)
    torch.manual_seed(0)
    cell, B, T, I, H = case["cell"], case["B"], case["T"], case["I"], case["H"]
    x = torch.randn(B, T, I)
    train = case["mode"] == "train"
    make = _train if train else _infer
    ref = TORCH[cell](I, H, batch_first=True).train(train)
    ours = OURS[cell](I, H).train(train)
    auto = resolve_precision("auto", torch.device("cpu")) == "bf16"
    fns = {
        "torch.nn": make(ref, x, False),
        "torch.nn bf16": make(ref, x, True),
        "rnnlab": make(ours, x, False),
        f"rnnlab auto ({'bf16' if auto else 'float32'})": make(ours, x, auto),
    }
    if case.get("autocast_kernels"):
        # what "auto" would give if it kept rnnlab's numba kernel under autocast (it computes in float32 inside)
        # instead of handing the GRU/RNN to torch's per-step ops, whose GEMMs autocast runs in bf16
        numba = OURS[cell](I, H, impl="numba").train(train)
        numba.load_state_dict(ours.state_dict())
        fns["rnnlab numba, bf16 autocast"] = make(numba, x, True)
    return fns


def _build_stream(case: dict) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    cell, B, I, H, steps = case["cell"], case["B"], case["I"], case["H"], case["steps"]
    ref, ours = TORCH_CELL[cell](I, H).eval(), OURS[cell](I, H).eval()
    x = torch.randn(B, I)

    def run_ref():
        with torch.no_grad():
            s = None
            for _ in range(steps):
                s = ref(x, s)

    def run_ours():
        with torch.no_grad():
            s = None
            for _ in range(steps):
                _, s = ours.step(x, s)

    return {"torch.nn": run_ref, "rnnlab step": run_ours}

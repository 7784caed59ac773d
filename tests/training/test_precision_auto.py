"""precision="auto": bf16 where the device computes it natively, float32 elsewhere."""
from __future__ import annotations

import pytest
import torch

from rnnlab.training import Trainer, TrainerConfig
from rnnlab.training.trainer import cpu_has_native_bf16, resolve_precision


@pytest.mark.parametrize("flags, native", [
    ("fpu sse avx2 avx512f avx512_bf16 avx512vl", True),
    ("fpu sse avx2 amx_bf16 amx_tile", True),
    ("fpu sse avx2 avx512f", False),
])
def test_cpu_flags_decide(tmp_path, flags, native):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(str(info)) is native


def test_no_cpuinfo_means_float32(tmp_path):
    assert cpu_has_native_bf16(str(tmp_path / "missing")) is False


def test_explicit_choices_are_kept_and_auto_follows_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) == "float32" and resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr("rnnlab.training.trainer.cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr("rnnlab.training.trainer.cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "float32"


@pytest.mark.parametrize("native", [True, False])
def test_fit_trains_under_the_chosen_precision(monkeypatch, native):
    monkeypatch.setattr("rnnlab.training.trainer.cpu_has_native_bf16", lambda: native)
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(4, 1)

        def loss(self, batch):
            y = self.w(batch["x"])
            seen.append(y.dtype)
            return ((y.float().squeeze(-1) - batch["y"]) ** 2).mean()

    torch.manual_seed(0)
    data = [{"x": torch.randn(8, 4), "y": torch.randn(8)} for _ in range(3)]
    trainer = Trainer(TrainerConfig(precision="auto", max_steps=3, max_epochs=0, run_dir=None, log_every=1))
    trainer.fit(Probe(), data)
    assert trainer.precision == ("bf16" if native else "float32")
    assert seen[0] == (torch.bfloat16 if native else torch.float32)


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="precision"):
        TrainerConfig(precision="fp8")


def test_recurrent_layers_are_found_anywhere_in_a_model():
    """resolve_precision keeps float32 on a GPU for models with recurrent layers (tests/test_cuda.py)."""
    from rnnlab.nn import GRU, MinGRU
    from rnnlab.training.trainer import has_recurrent_layers

    assert has_recurrent_layers(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(GRU(2, 3))))
    assert has_recurrent_layers(torch.nn.LSTM(2, 3))
    assert has_recurrent_layers(MinGRU(2, 3))
    assert not has_recurrent_layers(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Conv1d(2, 2, 3)))
    assert resolve_precision("auto", torch.device("cpu"), GRU(2, 3)) == resolve_precision("auto", torch.device("cpu"))

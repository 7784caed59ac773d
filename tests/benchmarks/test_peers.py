"""benchmarks/peers.py and bf16_textgen.py: the ratios, the "not installed" path, and that every peer computes
the same recurrence as torch.nn (the hand-written JAX scan against torch.nn with copied weights)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bf16_textgen  # noqa: E402
import peers  # noqa: E402
import peers_flax  # noqa: E402
import peers_keras  # noqa: E402


class FakeWorker:
    """Answers like peers_worker.py, with preset seconds per call; records the order of the calls."""

    def __init__(self, framework, seconds: dict, calls: list):
        self.framework, self.seconds, self.calls = framework, seconds, calls

    def ask(self, op, **request):
        if op == "setup":
            return {"names": list(self.seconds)}
        self.calls.append(request["name"])
        return {"seconds": self.seconds[request["name"]]}


def test_measure_reports_the_median_of_per_round_speedups_and_alternates_the_order():
    calls: list = []
    torch_w = FakeWorker("torch", {"torch.nn": 2.0, "rnnlab": 1.0}, calls)
    jax_w = FakeWorker("flax", {"flax": 4.0}, calls)
    case = {"kind": "layer", "cell": "GRU", "mode": "train", "B": 2, "T": 3, "I": 4, "H": 5}
    rows = peers.measure([torch_w, jax_w], case, rounds=3, budget=1e9)
    by_name = {r["contender"]: r for r in rows}
    assert by_name["rnnlab"]["speedup"] == pytest.approx(2.0)
    assert by_name["flax"]["speedup"] == pytest.approx(0.5)
    assert by_name["torch.nn"]["rounds"] == 3 and by_name["flax"]["ms"] == pytest.approx(4000.0)
    assert calls[3:6] == ["torch.nn", "rnnlab", "flax"] and calls[6:9] == ["flax", "rnnlab", "torch.nn"]


def test_measure_skips_a_case_without_the_baseline_and_reports_a_peer_error():
    class Broken(FakeWorker):
        def ask(self, op, **request):
            return {"error": "ValueError: no such cell"}

    case = {"kind": "layer", "cell": "RNN", "mode": "infer", "B": 1, "T": 1, "I": 1, "H": 1}
    rows = peers.measure([Broken("keras-jax", {}, [])], case, rounds=3, budget=1.0)
    assert rows == [{"cell": "RNN", "shape": "1,1,1,1", "mode": "infer", "contender": "keras-jax",
                     "note": "ValueError: no such cell"}]


@pytest.mark.parametrize("module, name", [(peers_flax, "jax"), (peers_keras, "keras")])
def test_a_peer_that_cannot_be_imported_says_not_installed(monkeypatch, module, name):
    monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "flax.linen", None)
    assert module.missing().startswith("not installed")


def test_summary_gives_the_range_over_shapes():
    rows = [{"cell": "GRU", "mode": "train", "contender": "flax", "speedup": s} for s in (1.3, 0.9, 2.0)]
    assert peers.summary(rows) == [{"cell": "GRU", "mode": "train", "contender": "flax", "shapes": 3,
                                    "speedup": "0.90-2.00x"}]


@pytest.mark.slow  # importing and compiling JAX takes seconds
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_the_hand_written_jax_scan_is_torch_nn_with_copied_weights(cell):
    pytest.importorskip("jax")
    import jax
    jax.config.update("jax_enable_x64", True)
    try:
        torch.manual_seed(0)
        ref = getattr(torch.nn, cell)(3, 4, batch_first=True).double()
        x = torch.randn(2, 5, 3, dtype=torch.float64)
        params = {"w_ih": ref.weight_ih_l0.detach().numpy().T, "w_hh": ref.weight_hh_l0.detach().numpy().T,
                  "b_ih": ref.bias_ih_l0.detach().numpy(), "b_hh": ref.bias_hh_l0.detach().numpy()}
        ours = peers_flax._scan_forward(cell, params, jax.numpy.asarray(x.numpy()))
        torch.testing.assert_close(torch.from_numpy(jax.device_get(ours).copy()), ref(x)[0].detach())
    finally:
        jax.config.update("jax_enable_x64", False)


def test_plain_script_trains_and_scores_like_a_direct_cross_entropy():
    torch.manual_seed(0)
    ids = torch.randint(0, 7, (1000,))
    data = bf16_textgen.batchify(ids, 4)
    assert data.shape == (4, 250) and torch.equal(data[1], ids[250:500])
    model = bf16_textgen.CharLSTM(7, 4, 8)
    assert bf16_textgen.plain_train(model, data, 2, bf16=True) == 2 * 4 * bf16_textgen.PRESET.bptt
    valid = data[:, :100]
    with torch.no_grad():
        logits, _ = model(valid[:, :-1])  # one pass: chunks that carry the state compute the same
    direct = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), valid[:, 1:].reshape(-1))
    assert bf16_textgen.valid_loss(model.eval(), valid) == pytest.approx(float(direct), rel=1e-5)

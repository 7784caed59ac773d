"""Exact resume: a run killed with SIGKILL and resumed ends on the very weights of an uninterrupted run."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("_worker.py")


def _env(sleep: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "BATCH_SLEEP": sleep}


def _run(run_dir: Path, mode: str, sleep: str = "0") -> None:
    subprocess.run([sys.executable, str(WORKER), "train", str(run_dir), mode], env=_env(sleep), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


def _kill_after_checkpoint(run_dir: Path, mode: str, rng: random.Random) -> None:
    """Start training, wait until it has a checkpoint, SIGKILL it at a random moment after that."""
    checkpoint = run_dir / "resume" / "trainer.pt"
    before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
    proc = subprocess.Popen([sys.executable, str(WORKER), "train", str(run_dir), mode], env=_env("0.01"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not checkpoint.exists() or checkpoint.stat().st_mtime_ns == before:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before writing a checkpoint"
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.15))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_dir / "final.pt").exists()


def _final(run_dir: Path) -> dict:
    return torch.load(run_dir / "final.pt", weights_only=True)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_killed_twice_and_resumed_equals_uninterrupted(tmp_path):
    from _worker import train

    straight = train(str(tmp_path / "straight"), resume=False)  # in this process: the same single thread
    run = tmp_path / "killed"
    rng = random.Random()
    _kill_after_checkpoint(run, "fresh", rng)
    _kill_after_checkpoint(run, "resume", rng)  # the second life also dies after a checkpoint of its own
    _run(run, "resume")
    _assert_same(straight, _final(run))
    # The log has every step exactly once: what the killed runs logged after their checkpoints is dropped.
    steps = [line.split(",")[0] for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, 61)]


def test_float32_training_is_deterministic(tmp_path):
    from _worker import documents, tiny_lm

    from rnnlab.training import TokenStream, Trainer, TrainerConfig

    finals = []
    for _ in range(2):
        torch.manual_seed(0)
        model = tiny_lm()
        Trainer(TrainerConfig(max_steps=15, max_epochs=0, lr=1e-2, progress=False)).fit(
            model, TokenStream(documents(), batch_size=3, bptt=8, shuffle_seed=5))
        finals.append(model.state_dict())
    _assert_same(*finals)


def test_resuming_with_another_model_is_a_clear_error_not_a_state_dict_traceback(tmp_path):
    from _trainer_helpers import fast_config, lm_batches, tiny_lm

    from rnnlab.structures import EncoderConfig, LanguageModel, LanguageModelConfig
    from rnnlab.training import Trainer

    Trainer(fast_config(run_dir=str(tmp_path))).fit(tiny_lm(), lm_batches())
    wider = LanguageModel(LanguageModelConfig(12, embedding_size=8, encoder=EncoderConfig(hidden_size=16)))
    with pytest.raises(ValueError, match="cannot resume from .*another model"):
        Trainer(fast_config(run_dir=str(tmp_path), resume=True, max_epochs=2)).fit(wider, lm_batches())

"""Data parallel: every process trains on its own share of every stream and loader.

Fast tests shard in one process (the shares are disjoint and cover the data); the slow one runs two gloo
processes through the trainer as `--trainer.devices 2` does (tests/training/_dp_worker.py) and checks the
shares, that the weights equal one process's on the whole batch, and that each process's RNG state is saved
and restored."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab.data.batching import LengthBucketSampler
from rnnlab.tasks.classify import SameLengthBatchSampler
from rnnlab.training import TokenStream, Trainer
from rnnlab.training.memmap_stream import MemmapTokenStream

WORKER = Path(__file__).with_name("_dp_worker.py")


def _documents():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 50, (int(n),), generator=g) for n in torch.randint(20, 90, (15,), generator=g)]


def _batches(stream):
    return [{k: v for k, v in b.items()} for b in stream]


@pytest.mark.parametrize("kind", ["tokens", "memmap"])
def test_stream_shares_are_disjoint_and_together_are_the_whole_batch(kind):
    docs = _documents()

    def make(batch_size):
        if kind == "tokens":
            return TokenStream(docs, batch_size=batch_size, bptt=7, shuffle_seed=2)
        ids = torch.cat(docs).numpy().astype(np.uint16)
        starts = np.cumsum([0] + [d.numel() for d in docs])[:-1]
        return MemmapTokenStream(ids, starts, np.array([d.numel() for d in docs]), batch_size=batch_size, bptt=7,
                                 shuffle_seed=2)

    whole = _batches(make(6))
    shares = []
    for rank in range(3):
        s = make(2)
        s.shard(rank, 3)
        assert len(s) == len(whole)
        shares.append(_batches(s))
    for i, batch in enumerate(whole):  # batch for batch, rank 0's rows first
        for key in ("x", "y", "reset"):
            torch.testing.assert_close(torch.cat([share[i][key] for share in shares]), batch[key])
        assert sum(share[i]["num_tokens"] for share in shares) == batch["num_tokens"]


def test_stream_share_too_small_says_so():
    s = TokenStream([torch.arange(30)], batch_size=4, bptt=4)
    with pytest.raises(ValueError, match=r"per process \(8 processes\)"):
        s.shard(0, 8)


@pytest.mark.parametrize("make", [
    lambda lengths: LengthBucketSampler(lengths, 4, pool_batches=3),
    lambda lengths: SameLengthBatchSampler(lengths, 4),
], ids=["length-bucket", "same-length"])
def test_batch_sampler_shares_are_disjoint_equal_and_cover_the_epoch(make):
    lengths = torch.randint(1, 12, (101,), generator=torch.Generator().manual_seed(0)).tolist()
    for epoch in range(2):
        shares = []
        for rank in range(3):
            sampler = make(lengths)
            sampler.shard(rank, 3, seed=7)
            sampler.set_epoch(epoch)
            torch.manual_seed(rank)  # each process's own RNG differs: the shares must not depend on it
            shares.append(list(sampler))
            assert len(shares[-1]) == len(sampler)
        assert len({len(s) for s in shares}) == 1  # the same number of steps on every process
        seen = [i for s in shares for batch in s for i in batch]
        assert len(seen) == len(set(seen))  # disjoint
        whole = make(lengths)
        whole.shard(0, 1)
        total = len(whole)
        dropped = total - 3 * len(shares[0])
        assert 0 <= dropped < 3
        assert len(seen) >= len(lengths) - dropped * 4  # covers the epoch but the < W surplus batches


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _communicate_all(procs, timeout: float) -> list[tuple[bytes, bytes]]:
    """(stdout, stderr) of every process once all have exited; each must exit 0. On a timeout all are killed and the
    failure shows every rank's stderr (a rank that dies early leaves the other waiting for it at the rendezvous)."""
    deadline = time.monotonic() + timeout
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        tails = [f"rank {r} (exit {p.poll()}): " + p.communicate()[1].decode()[-2000:] for r, p in enumerate(procs)]
        pytest.fail(f"the processes did not finish in {timeout:.0f} s:\n" + "\n".join(tails))
    for r, (p, (_, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, f"rank {r}: " + err.decode()[-3000:]
    return outs


def _run_two(out: Path) -> list:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": "2", "NODE_RANK": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(out)],
                              env={**env, "LOCAL_RANK": str(r), "RANK": str(r)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for r in range(2)]
    _communicate_all(procs, 120)
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


@pytest.mark.slow
def test_two_processes_split_the_data_match_one_process_and_keep_their_rng(tmp_path, monkeypatch):
    sys.path.insert(0, str(WORKER.parent))
    import _dp_worker

    two = _run_two(tmp_path)
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    _dp_worker.main(str(tmp_path / "one"))  # one process (no Fabric), the whole batch
    one = torch.load(tmp_path / "one" / "rank0.pt")

    # (a) the stream: rank 0 saw rows 0-1 of every batch, rank 1 rows 2-3; together, what one process saw
    assert len(two[0]["stream_seen"]) == len(two[1]["stream_seen"]) == len(one["stream_seen"]) == _dp_worker.CHUNKS
    for a, b, whole in zip(two[0]["stream_seen"], two[1]["stream_seen"], one["stream_seen"], strict=True):
        torch.testing.assert_close(torch.cat([a, b]), whole)
    # (a) the DataLoader: disjoint examples, every one of them seen in each of the two epochs
    for epoch in range(2):
        n = two[0]["loader_len"]
        ids = [int(x[0]) for r in range(2) for batch in two[r]["loader_seen"][epoch * n:(epoch + 1) * n]
               for x in batch]
        assert len(ids) == len(set(ids)) == 20
    # (b) DDP's averaged gradients on the halves = one process's gradient on the whole batch
    for k, w in one["weights"].items():
        torch.testing.assert_close(two[0]["weights"][k], w, rtol=0, atol=1e-6, msg=k)
        torch.testing.assert_close(two[1]["weights"][k], w, rtol=0, atol=1e-6, msg=k)
    # (c) one RNG state per process in the resume file, put back on resume
    assert not torch.equal(two[0]["saved_rng"], two[1]["saved_rng"])
    for r in range(2):
        assert torch.equal(two[r]["saved_rng"], two[r]["rng_after_fit"])
        assert torch.equal(two[r]["rng_after_resume"], two[r]["saved_rng"])
    # a resume with another number of processes says so
    with pytest.raises(ValueError, match=r"written by 2 process\(es\) and this run has 1"):
        Trainer(_dp_worker.config(1, run_dir=str(tmp_path / "run2"), resume=True)).fit(
            _dp_worker.model(), _dp_worker.stream(1))


@pytest.mark.parametrize("env, main", [
    ({}, True), ({"RANK": "0", "LOCAL_RANK": "0"}, True), ({"RANK": "1", "LOCAL_RANK": "1"}, False),
    ({"LOCAL_RANK": "1"}, False), ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False), ({"SLURM_PROCID": "2"}, False),
])
def test_the_main_process_is_known_from_the_launchers_environment(env, main):
    from rnnlab.training.lock import is_main_process

    assert is_main_process(env) is main


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_cli_train_with_two_processes_writes_one_bundle(tmp_path, precision):
    """`rnnlab train textgen --trainer.devices 2` as torchrun starts it: rank 0 holds the run directory's lock and
    writes the bundle, rank 1 trains on its share and writes nothing there; both exit 0. In bf16 too: the carried
    state of the language model stays float32 across processes (Fabric's bf16-mixed once cast it)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"The cat sat on the mat number {i}.\n" for i in range(300)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": "2", "NODE_RANK": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-m", "rnnlab.cli", "train", "textgen", "--data", str(corpus), "--batch_size", "2",
            "--bptt", "16", "--model.embedding_size", "8", "--model.encoder.hidden_size", "8",
            "--trainer.max_steps", "6", "--trainer.max_time", "0", "--trainer.eval_every", "3",
            "--trainer.devices", "2", "--trainer.device", "cpu", "--trainer.progress", "false",
            "--trainer.precision", precision, "--trainer.run_dir", str(tmp_path / "run")]
    procs = [subprocess.Popen(argv, env={**env, "LOCAL_RANK": str(r), "RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for r in range(2)]
    outs = _communicate_all(procs, 180)
    assert "bundle:" in outs[0][0].decode() and outs[1][0].decode() == ""
    assert (tmp_path / "run" / "bundle" / "model.safetensors").is_file()
    metrics = json.loads((tmp_path / "run" / "bundle" / "metrics.json").read_text())
    assert metrics["step"] == 6 and "valid_ppl_per_token" in metrics

"""Data parallel on the CPU: two gloo processes on half a batch each end where one process on the whole batch does."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    from _worker import ddp

    ddp(str(tmp_path / "one.pt"), 1)  # one process, the whole batch (in this process: no Fabric)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": "2", "NODE_RANK": "0"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), "ddp", str(tmp_path / "two.pt"), "2"],
                              env={**env, "LOCAL_RANK": str(r), "RANK": str(r)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()[-2000:]
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=0, atol=1e-6, msg=k)
    assert any(not torch.equal(one[k], torch.zeros_like(one[k])) for k in one)

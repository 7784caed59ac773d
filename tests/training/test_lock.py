"""The run-directory lock: one writer at a time, across processes; re-entrant within one; never stale."""
import multiprocessing as mp
import os
import time

import pytest

from rnnlab.training.lock import LOCK_FILE, RunDirLocked, lock_run_dir


def _hold(run_dir, started, release):
    with lock_run_dir(run_dir):
        started.set()
        release.wait(30)


def _race(run_dir, barrier, results):
    barrier.wait(10)
    try:
        with lock_run_dir(run_dir):
            results.put(("won", os.getpid()))
            time.sleep(1.0)
    except RunDirLocked as e:
        results.put(("refused", str(e)))


@pytest.fixture
def ctx():
    return mp.get_context("spawn")


def test_a_second_process_is_refused_with_the_holder_named(tmp_path, ctx):
    started, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path / "run"), started, release))
    holder.start()
    try:
        assert started.wait(60)
        with pytest.raises(RunDirLocked, match=rf"in use by process {holder.pid} on .* choose another --trainer.run_dir"):
            with lock_run_dir(tmp_path / "run"):
                pass
    finally:
        release.set()
        holder.join(30)
    with lock_run_dir(tmp_path / "run"):  # released when the holder ended
        pass


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, ctx):
    started, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path / "run"), started, release))
    holder.start()
    assert started.wait(60)
    holder.kill()
    holder.join(30)
    assert (tmp_path / "run" / LOCK_FILE).exists()  # the file stays, the lock does not
    with lock_run_dir(tmp_path / "run"):
        pass


def test_two_processes_racing_exactly_one_proceeds(tmp_path, ctx):
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "run"), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=60)[0] for _ in procs)
    for p in procs:
        p.join(30)
    assert outcomes == ["refused", "won"]


def test_reentrant_in_one_process_and_bad_run_dirs(tmp_path):
    with lock_run_dir(tmp_path / "run"):
        with lock_run_dir(tmp_path / "run"):
            pass
        assert (tmp_path / "run" / LOCK_FILE).read_text().startswith("{")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        with lock_run_dir(tmp_path / "file"):
            pass

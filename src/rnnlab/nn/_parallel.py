"""Independent numba loops on several threads at once: the batch of a recurrent layer split into row ranges.

The rows of a batch never interact inside a recurrent layer (the per-row layer norms included), so the whole
loop over time of a fused kernel can run as several loops, each over its own rows, with no synchronisation
between them until all are done. The loops are numba functions compiled with ``nogil=True``; :func:`run_split`
calls them on several threads at once, one range each, the calling thread running the first.

The threads are torch's own OpenMP team where torch runs on OpenMP (its Linux builds): ``GOMP_parallel`` of the
OpenMP runtime torch loaded, called through ctypes, runs a Python callback on every thread of the team, which
calls the numba loop of its range (the GIL is released inside). A thread of our own would compete for a core
with torch's workers: after each parallel region of torch (the input product just before the loop) they spin
for a while (libgomp's default GOMP_SPINCOUNT, 300,000 pauses, milliseconds) before they sleep. Measured at
(64, 200, 64, 128), layer-norm LSTM inference, two threads (benchmarks/loop_threads.py): 18.4 ms right after a
torch.nn.LSTM call and 11.0 ms after a pause on a pool of Python threads, against 11.1 and 11.3 ms on the OpenMP
team. Elsewhere (no OpenMP runtime found in the process) a pool of Python threads runs them. One dispatch
per sequence call (~30 µs) against a loop of milliseconds.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = ["row_splits", "run_split", "backend", "aligned_empty", "aligned_rows"]

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def row_splits(B: int, min_rows: int, threads: int | None = None) -> list[tuple[int, int]]:
    """Row ranges [b0, b1) covering 0..B-1: one per thread (``torch.get_num_threads()`` unless given), each of at
    least ``min_rows`` rows (fewer ranges when B is small), sizes differing by at most one."""
    threads = torch.get_num_threads() if threads is None else threads
    S = max(1, min(threads, B // max(1, min_rows)))
    bounds = [B * s // S for s in range(S + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


CACHE_LINE = 64


def aligned_empty(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose data starts on a cache line (64 bytes). numpy's own arrays start wherever
    malloc puts them (often 16 bytes into a line), so the rows on either side of a range boundary can share a cache
    line, which then moves between the cores at every write of either thread (false sharing). A precaution for the
    per-step scratch rows and accumulators of the ranges: on its own it did not change the time of 4-row ranges at
    (8, 500, 32, 64), whose slowdown came from first-touch page faults (see :func:`run_split`'s ``fresh``)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(n + CACHE_LINE, dtype=np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + n].view(dtype).reshape(shape)


def aligned_rows(S: int, n: int, dtype) -> np.ndarray:
    """Zeros (S, n), one row per range, each row starting on its own cache line (the row stride padded to whole
    lines): a range's accumulators written at every step never share a line with another range's."""
    per_line = CACHE_LINE // np.dtype(dtype).itemsize
    padded = -(-n // per_line) * per_line
    rows = aligned_empty((S, padded), dtype)
    rows[:] = 0
    return rows[:, :n]


def run_split(fn, arg_lists, fresh=()) -> None:
    """``fn(*args)`` for every ``args`` in ``arg_lists`` at once, each on its own thread, the first on this one.
    Returns when all have finished (they write into shared arrays); re-raises the first exception.

    ``fresh``: C-contiguous arrays the ranges write interleaved (time-major outputs: each step's block holds every
    range's rows) that may be new memory. Their pages are written once on this thread first: two threads
    first-touching the same pages fault on them together. Measured (RNN inference at (8, 500, 32, 64), two ranges
    of 4 rows, the loop alone, a fresh 1 MB output per call): 0.95 ms and 471 page faults a call, against 0.51 ms
    and 75 faults on one thread."""
    if len(arg_lists) == 1:
        fn(*arg_lists[0])
        return
    for a in fresh:
        _touch_pages(a)
    if _openmp() is not None:
        _run_openmp(fn, arg_lists)
    else:
        _run_pool(fn, arg_lists)


def backend() -> str:
    """Which threads :func:`run_split` uses: ``"openmp"`` (torch's team) or ``"threads"`` (a Python pool)."""
    return "threads" if _openmp() is None else "openmp"


def _touch_pages(a: np.ndarray) -> None:
    """Write one element per 4 KB page of ``a`` (its own value: the contents stay), so the page faults of new memory
    happen here, one thread, in order."""
    flat = a.reshape(-1)  # a view: ``a`` is C-contiguous
    step = max(1, 4096 // a.itemsize)
    flat[::step] = flat[::step]


# ---- torch's OpenMP team ----------------------------------------------------------------------------------------

_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_omp: tuple | None | bool = False  # False: not looked up yet; None: not available


def _openmp():
    """(GOMP_parallel, omp_get_thread_num) of the OpenMP runtime torch loaded, or None: torch not on OpenMP, no
    /proc/self/maps to find the library in (not Linux), or ``RNNLAB_LOOP_THREADS=python`` set."""
    global _omp
    if _omp is False:
        _omp = _find_openmp()
    return _omp


def _find_openmp():
    if os.environ.get("RNNLAB_LOOP_THREADS", "").lower() == "python":
        return None
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if len(line.split()) >= 6}
    except OSError:
        return None
    torch_dir = os.path.dirname(torch.__file__)
    names = ("libgomp", "libiomp5", "libomp")  # GNU; Intel and LLVM (both export the GNU entry points)
    found = [p for p in paths if os.path.basename(p).startswith(names)]
    # the runtime torch links: the one in its own directory (pip wheels), else one in this environment (conda)
    for prefix in (torch_dir, sys.prefix):
        ours = sorted(p for p in found if p.startswith(prefix + os.sep))
        if ours:
            try:
                lib = ctypes.CDLL(ours[0])  # already loaded: the same handle
                parallel, thread_num = lib.GOMP_parallel, lib.omp_get_thread_num
            except (OSError, AttributeError):
                return None
            parallel.argtypes = [_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            parallel.restype = None
            thread_num.argtypes = []
            thread_num.restype = ctypes.c_int
            return parallel, thread_num
    return None


def _run_openmp(fn, arg_lists) -> None:
    parallel, thread_num = _openmp()
    errors, ran = [], [False] * len(arg_lists)

    def body(_data):  # on every thread of the team; ctypes takes the GIL for it
        i = thread_num()
        if i < len(arg_lists):
            ran[i] = True
            try:
                fn(*arg_lists[i])
            except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread below
                errors.append(e)

    # the callback passed as itself: ctypes.cast(callback, c_void_p) would tie the two in a reference cycle, and the
    # arrays of arg_lists (the saved-for-backward buffers among them) would stay alive until the garbage collector
    # ran; _workspace.saved_buffer then saw them in use and took fresh memory (page faults) at every call
    parallel(_CALLBACK(body), None, len(arg_lists), 0)  # ctypes releases the GIL meanwhile
    if errors:
        raise errors[0]
    for i, args in enumerate(arg_lists):  # a smaller team than asked for (inside another parallel region)
        if not ran[i]:
            fn(*args)


# ---- a pool of Python threads ----------------------------------------------------------------------------------


def _executor(workers: int) -> ThreadPoolExecutor:
    """The shared pool, grown to at least ``workers`` threads."""
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers < workers:
            old, _pool = _pool, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rnnlab-loop")
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a fresh one on first use."""
    global _pool, _lock
    _pool = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_forget_pool)


def _run_pool(fn, arg_lists) -> None:
    futures = [_executor(len(arg_lists) - 1).submit(fn, *args) for args in arg_lists[1:]]
    error = None
    try:
        fn(*arg_lists[0])
    except BaseException as e:  # noqa: BLE001 - the others still write into shared arrays: wait for them first
        error = e
    for f in futures:
        try:
            f.result()
        except BaseException as e:  # noqa: BLE001
            error = error or e
    if error is not None:
        raise error

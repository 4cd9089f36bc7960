"""Jobs on our own threads, each calling a single-threaded BLAS.

An algorithm that interleaves copies with GEMMs (a block of columns, then its product)
runs the copies on one core while the other waits, and a copy that follows a
multi-threaded GEMM writes lines the other core's BLAS thread has just read: on this
VM that made the copy up to 8x slower in some processes (weight gradients 14 -> 31 ms).
Splitting the work into independent jobs, one per core, each doing its own copies and
its own single-threaded GEMMs (as oneDNN does), keeps every core busy and every line on
the core that wrote it.

While jobs run, BLAS is limited to one thread process-wide (threadpoolctl; restored when
the last running call ends): another thread's own BLAS calls meanwhile run single-
threaded. The number of jobs follows BLAS's thread count at the call, so a caller's
``threadpool_limits(1)`` keeps convgrad on one core too.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from ._common import CORES

_lock = threading.Lock()
_users = [0]  # calls inside _SingleThreadedBlas now
_restore: list = []  # the limiter that restores BLAS's thread count
# OpenBLAS's workers spin for about 0.1 s after a threaded call, and jobs started meanwhile
# run at half speed (two jobs of small GEMMs: 3.1 -> 6.4 ms); after convgrad's own
# threaded BLAS (``threaded_blas_used``), jobs run one after another on the calling
# thread with threaded BLAS until this long has passed
SPIN_S = 0.15
_last_threaded = [-1.0]


@functools.cache
def _blas():
    """threadpoolctl's controllers of the BLAS libraries loaded now (NumPy's)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=CORES, thread_name_prefix="convgrad")


def _forget_after_fork() -> None:
    """A forked child has none of the parent's threads: it starts a pool of its own (the
    parent's would queue jobs no thread ever runs) and counts no running call."""
    global _lock
    _lock = threading.Lock()
    _users[0] = 0
    _restore.clear()
    _pool.cache_clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def workers(jobs: int) -> int:
    """Threads worth using for ``jobs`` independent jobs: at most one per core, and no
    more than the BLAS threads the caller allows."""
    if jobs <= 1 or CORES <= 1:
        return 1
    allowed = min((lib.num_threads for lib in _blas().lib_controllers), default=CORES)
    return max(1, min(jobs, CORES, allowed))


def cores_for(units: int) -> float:
    """Cores that ``units`` equal independent chunks keep busy on average (3 chunks on 2
    cores: 1.5): the cost models divide the chunks' copies by it."""
    units = max(1, units)
    return units / -(-units // CORES)


class _SingleThreadedBlas:
    """BLAS limited to one thread while any call is inside; the first to enter saves the
    thread counts, the last to leave restores them (a limit another thread set meanwhile
    is undone then)."""

    def __enter__(self):
        with _lock:
            if _users[0] == 0:
                _restore.append(_blas().limit(limits=1))
            _users[0] += 1

    def __exit__(self, *exc):
        with _lock:
            _users[0] -= 1
            if _users[0] == 0:
                _restore.pop().restore_original_limits()


def threaded_blas_used() -> None:
    """Note that this call just ran threaded BLAS (its workers now spin for a while)."""
    _last_threaded[0] = time.monotonic()


def run_jobs(job: Callable, args: Sequence) -> list:
    """``[job(a) for a in args]``, one job per thread (the calling thread runs the first;
    at most ``workers(len(args))`` jobs are given) with BLAS single-threaded; on the
    calling thread alone, BLAS untouched, when there is one job or convgrad ran threaded
    BLAS less than SPIN_S ago."""
    if len(args) <= 1 or time.monotonic() - _last_threaded[0] < SPIN_S:
        return [job(a) for a in args]
    with _SingleThreadedBlas():
        futures = [_pool().submit(job, a) for a in args[1:]]
        try:
            first = job(args[0])
        finally:
            wait(futures)  # all of them, even when one fails, before BLAS gets its threads
        return [first, *(f.result() for f in futures)]


def batch_chunks(g: int, b: int, per_image: int, limit: int, cap: int | None = None):
    """Chunks of a (G, B) batch for one job per core: (g_chunk, b_chunk, one list of
    chunk origins (g0, b0) per job). A chunk holds as many images as fit ``per_image``
    bytes each in the job's share of ``limit`` (and in ``cap``, to stay cache-sized),
    and there are at least as many chunks as jobs where the batch allows."""
    jobs = workers(g * b)
    target = limit // jobs if cap is None else min(limit // jobs, cap)
    if g * per_image <= target:
        g_chunk, b_chunk = g, max(1, min(b, target // max(g * per_image, 1)))
    else:
        g_chunk, b_chunk = max(1, min(g, target // max(per_image, 1))), 1
    if jobs > 1:
        b_chunk = min(b_chunk, -(-b // jobs))
        if b_chunk == b:
            g_chunk = min(g_chunk, -(-g // jobs))
    chunks = [(g0, b0) for g0 in range(0, g, g_chunk) for b0 in range(0, b, b_chunk)]
    jobs = min(jobs, len(chunks))
    return g_chunk, b_chunk, [chunks[j::jobs] for j in range(jobs)]

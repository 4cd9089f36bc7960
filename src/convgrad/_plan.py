"""The planner: which algorithm runs a correlation, and how much workspace it may use.

``choose`` is a cost model in two separate parts, like ``scipy.signal.choose_conv_method``:

* **counts** (pure, exact, machine-free): each algorithm's ``counts(lhs_shape, rhs_shape,
  corr, itemsize, *, cores, limit)`` returns a :class:`Counts` of GEMM flops (with the
  GEMM's smallest dimension), FFT flops, bytes moved by copies / elementwise passes, and
  numpy calls; the cores and the workspace limit are its inputs, never read inside;
* **MACHINE** (one small table of fitted constants): sustained rates of this machine.

    seconds = gemm_flops / (GEMM_FLOPS * m / (m + GEMM_HALF_DIM)) + fft_flops / FFT_FLOPS
              + loop_flops / LOOP_FLOPS + transform_flops / TRANSFORM_FLOPS
              + bytes / BYTES_PER_S + calls * CALL_S

``algorithm="autotune"`` times every candidate once per shape signature (shapes, dtype,
correlation, limit) and caches the fastest, like cuDNN's benchmark mode.
The default workspace limit (256 MiB) is settable with ``set_workspace_limit``.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass

import numpy as np

from . import _process
from ._rules import Correlation
from .algorithms import REGISTRY

# Fitted on a 2-core AVX-512 machine (float32, 2 threads); only ratios between the terms
# matter for choosing, so a different machine mostly shifts every estimate alike.
MACHINE = {
    "GEMM_FLOPS": 200e9,  # large sgemm, flop/s
    "GEMM_HALF_DIM": 8.0,  # GEMM smallest dimension at which half that rate is reached
    # scipy.fft rfftn/irfftn, counted 2.5 n log2 n flops per real n-point transform, one
    # job per core (workers=1): 12-27 GFLOP/s per core over 1-3-D sizes 16..16875, median 20
    "FFT_FLOPS": 36e9,
    "LOOP_FLOPS": 40e9,  # compiled (numba) shift-accumulate multiply-adds, flop/s
    "TRANSFORM_FLOPS": 90e9,  # compiled Winograd tile transforms (sums of long vectors), flop/s
    "BYTES_PER_S": 12e9,  # copies / elementwise passes (reads + writes both counted), bytes/s
    "CALL_S": 5e-6,  # fixed cost of one numpy or BLAS call
    # what each thread past the first adds to a pass's speed, as a share of one thread's
    # (bench_threads, 1 -> 2 threads): 1.5-1.85x for BLAS-bound passes, 1.85-2.0x for
    # the compiled loops of depthwise and grouped layers
    "THREAD_GAIN": 0.75,
    "LOOP_THREAD_GAIN": 0.95,
}


@dataclass(frozen=True)
class Counts:
    """Machine-free work of one correlation by one algorithm."""

    gemm_flops: float = 0.0
    gemm_min_dim: int = 1 << 30
    fft_flops: float = 0.0
    loop_flops: float = 0.0  # flops of compiled elementwise loops (vectorised)
    transform_flops: float = 0.0  # flops of Winograd's tile transforms (compiled, vectorised)
    bytes: float = 0.0
    calls: int = 0
    jobs: int = 1 << 30  # independent jobs the work splits into (the cores it can use)


MACHINE_THREADS = 2  # the thread count MACHINE's rates were fitted with


def seconds(counts: Counts, machine: dict | None = None, threads: int = MACHINE_THREADS) -> float:
    """Estimated run time of ``counts`` on ``machine`` (default MACHINE) with ``threads``
    threads: the work, at MACHINE's rates, spread over as many of them as it has jobs."""
    m = MACHINE if machine is None else machine
    dim = counts.gemm_min_dim
    rate = m["GEMM_FLOPS"] * dim / (dim + m["GEMM_HALF_DIM"])
    work = (
        counts.gemm_flops / rate
        + counts.fft_flops / m["FFT_FLOPS"]
        + counts.loop_flops / m["LOOP_FLOPS"]
        + counts.transform_flops / m["TRANSFORM_FLOPS"]
        + counts.bytes / m["BYTES_PER_S"]
    )
    busy = max(1, min(threads, counts.jobs))
    return work * MACHINE_THREADS / busy + counts.calls * m["CALL_S"]


# ------------------------------------------------------------------ workspace limit

DEFAULT_WORKSPACE_LIMIT = _process.DEFAULT_WORKSPACE_LIMIT


def set_workspace_limit(nbytes: int) -> _process.LimitSetting:
    """Set the default workspace limit: the scratch memory one pass may use.

    Calls that pass no ``workspace_limit`` chunk their work so that the workspace of one
    pass (im2col buffers, FFTs, ...) stays under this many bytes. Used plainly the
    setting holds for the whole process. Used as ``with set_workspace_limit(n): ...`` it
    holds inside the block for this thread (or asyncio task) only, and the previous limit
    comes back on exit, whatever other threads set meanwhile.

    Parameters
    ----------
    nbytes : int
        The limit in bytes, at least 1 (the default is 256 MiB).

    Returns
    -------
    LimitSetting
        A context manager; ignore it for a process-wide setting.

    Raises
    ------
    ValueError
        ``nbytes`` is not a positive int.

    See Also
    --------
    get_workspace_limit : The limit in force.

    Examples
    --------
    >>> import convgrad
    >>> with convgrad.set_workspace_limit(64 * 2**20):
    ...     print(convgrad.get_workspace_limit())
    67108864
    >>> previous = convgrad.get_workspace_limit()
    >>> setting = convgrad.set_workspace_limit(2**30)  # for the whole process
    >>> convgrad.get_workspace_limit()
    1073741824
    >>> setting = convgrad.set_workspace_limit(previous)
    """
    return _process.workspace_limit.set(nbytes)


def get_workspace_limit() -> int:
    """The workspace limit in force here, in bytes.

    Returns
    -------
    int
        The limit of the innermost ``with set_workspace_limit(...)`` block of this thread
        or task, else the last process-wide setting, else 256 MiB.

    See Also
    --------
    set_workspace_limit : Change it.

    Examples
    --------
    >>> import convgrad
    >>> with convgrad.set_workspace_limit(2**20):
    ...     convgrad.get_workspace_limit()
    1048576
    """
    return _process.workspace_limit.get()


# ------------------------------------------------------------------------- choosing


def candidates(lhs_shape, rhs_shape, corr: Correlation) -> list[str]:
    return [name for name, impl in REGISTRY.items() if impl.supports(lhs_shape, rhs_shape, corr)]


def threads_in_force() -> int:
    """Threads a call here would use: one per core, as many as BLAS allows now."""
    return _process.jobs.workers(_process.CORES)


def estimates(
    lhs_shape,
    rhs_shape,
    corr: Correlation,
    itemsize: int,
    threads: int | None = None,
    limit: int | None = None,
) -> dict[str, float]:
    """{algorithm: estimated seconds} for every algorithm that supports the correlation,
    with ``threads`` threads (default: those in force) and the workspace ``limit``
    (default: the one in force). Both are inputs of every algorithm's ``counts``."""
    threads = threads_in_force() if threads is None else int(threads)
    limit = get_workspace_limit() if limit is None else int(limit)
    return {
        name: seconds(
            REGISTRY[name].counts(lhs_shape, rhs_shape, corr, itemsize, cores=threads, limit=limit),
            threads=threads,
        )
        for name in candidates(lhs_shape, rhs_shape, corr)
    }


@functools.lru_cache(maxsize=4096)
def _choose(
    lhs_shape: tuple,
    rhs_shape: tuple,
    corr: Correlation,
    itemsize: int,
    threads: int,
    limit: int,
    avoid: frozenset,
):
    est = estimates(lhs_shape, rhs_shape, corr, itemsize, threads, limit)
    usable = {name: t for name, t in est.items() if name not in avoid} or est
    return min(usable, key=usable.get)


def choose(
    lhs_shape,
    rhs_shape,
    corr: Correlation,
    itemsize: int,
    threads: int | None = None,
    avoid: frozenset = frozenset(),
    limit: int | None = None,
):
    """The algorithm 'auto' picks: the lowest estimate of the cost model (memoised), for
    ``threads`` threads (default: those in force; the choice may differ per count) and the
    workspace ``limit`` (default: the one in force), among the candidates not in ``avoid``
    (if any is left)."""
    threads = threads_in_force() if threads is None else int(threads)
    limit = get_workspace_limit() if limit is None else int(limit)
    key = (tuple(lhs_shape), tuple(rhs_shape), corr, int(itemsize), threads, limit, avoid)
    return _choose(*key)


# the least estimated speedup two passes side by side must bring: two passes at once
# contend for the caches and memory as one pass's jobs do. Fitted on two cores, where the
# estimates put the 1-D and 2-D transposed backwards at 1.12 (measured side by side:
# 12-15 % and 7 % faster; conv1d's at 1.14: 4-10 % faster), a 1x1 layer's at 1.14 (1-3 %
# slower), the strided and dense 3x3 ones at 1.01-1.06 (9-12 % slower for 3x3-56) and the
# depthwise and grouped ones at 0.91-0.95 (6-24 % slower)
SIDE_BY_SIDE_GAIN = 1.10


def side_by_side(passes, itemsize: int, threads: int | None = None, limit: int | None = None):
    """Thread shares to run ``passes`` (two (lhs_shape, rhs_shape, corr, algorithm): the
    two passes of a backward) at once, each on its share of ``threads`` (default: those in
    force) and half of ``limit``; None where one after the other, each on every thread,
    is estimated as fast. Side by side pays where a pass cannot use every thread: fewer
    jobs than threads (a small layer on many cores), or threads that add less than one
    thread's speed each (MACHINE's THREAD_GAIN), with passes of similar lengths."""
    threads = threads_in_force() if threads is None else int(threads)
    limit = get_workspace_limit() if limit is None else int(limit)
    if threads < 2 or len(passes) != 2:
        return None
    key = tuple((tuple(a), tuple(b), corr, alg) for a, b, corr, alg in passes)
    return _side_by_side(key, int(itemsize), threads, limit)


@functools.lru_cache(maxsize=1024)
def _side_by_side(passes: tuple, itemsize: int, threads: int, limit: int):
    one_after_other = sum(_pass_seconds(p, itemsize, threads, limit) for p in passes)
    best, shares = None, None
    for first in {threads // 2, max(1, threads // 4), threads - max(1, threads // 4)}:
        a = _pass_seconds(passes[0], itemsize, first, limit // 2)
        b = _pass_seconds(passes[1], itemsize, threads - first, limit // 2)
        if best is None or max(a, b) < best:
            best, shares = max(a, b), (first, threads - first)
    return shares if best * SIDE_BY_SIDE_GAIN < one_after_other else None


def _pass_seconds(one_pass, itemsize: int, threads: int, limit: int) -> float:
    """Estimated seconds of one pass on ``threads`` threads, each past the first adding
    THREAD_GAIN (LOOP_THREAD_GAIN for compiled loops) of one thread's speed."""
    lhs_shape, rhs_shape, corr, algorithm = one_pass
    names = candidates(lhs_shape, rhs_shape, corr)
    if algorithm not in names:
        algorithm = choose(lhs_shape, rhs_shape, corr, itemsize, threads, limit=limit)
    impl = REGISTRY[algorithm]
    alone = impl.counts(lhs_shape, rhs_shape, corr, itemsize, cores=1, limit=limit)
    jobs = impl.counts(lhs_shape, rhs_shape, corr, itemsize, cores=threads, limit=limit).jobs
    calls = alone.calls * MACHINE["CALL_S"]
    one = seconds(alone, threads=1) - calls  # the work on one thread
    loops = alone.loop_flops / MACHINE["LOOP_FLOPS"] * MACHINE_THREADS
    gain = MACHINE["LOOP_THREAD_GAIN"] if loops > one / 2 else MACHINE["THREAD_GAIN"]
    return one / (1 + gain * (max(1, min(threads, jobs)) - 1)) + calls


def signature(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, limit: int) -> tuple:
    """Hashable cache key of one correlation call."""
    return (lhs.shape, rhs.shape, np.result_type(lhs, rhs).str, corr, limit)


def autotune(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, limit: int):
    """(algorithm, result or None, timings): the cached winner, or time each candidate
    once (those the cost model puts within 20x of its best) and return the fastest, its
    result and {algorithm: seconds} of every candidate timed (cached with the winner:
    ``autotune_timings``)."""
    key = signature(lhs, rhs, corr, limit)
    winner = _process.autotune_cache.get(key)
    if winner is not None:
        return winner, None, _process.autotune_cache.timings(key) or {}
    est = estimates(lhs.shape, rhs.shape, corr, np.result_type(lhs, rhs).itemsize, None, limit)
    best_est = min(est.values())
    best, best_result, timings = None, None, {}
    for name in sorted(est, key=est.get):
        if est[name] > 20 * best_est:
            continue
        t0 = time.perf_counter()
        result = REGISTRY[name].run(lhs, rhs, corr, limit)
        timings[name] = time.perf_counter() - t0
        if best is None or timings[name] < timings[best]:
            best, best_result = name, result
    _process.autotune_cache.put(key, best, timings)
    return best, best_result, timings


def autotune_timings() -> list[dict]:
    """What ``algorithm="autotune"`` measured in this process, one dict per call signature
    timed (least recently used first): ``lhs_shape``, ``rhs_shape``, ``dtype``,
    ``correlation``, ``workspace_limit``, ``winner``, ``seconds`` ({algorithm: seconds})
    and ``estimates`` (the cost model's {algorithm: seconds}, for comparison)."""
    out = []
    for key, winner, timings in _process.autotune_cache.items():
        lhs_shape, rhs_shape, dtype, corr, limit = key
        est = estimates(lhs_shape, rhs_shape, corr, np.dtype(dtype).itemsize, limit=limit)
        out.append(
            dict(
                lhs_shape=lhs_shape, rhs_shape=rhs_shape, dtype=np.dtype(dtype).name,
                correlation=corr, workspace_limit=limit, winner=winner, seconds=timings,
                estimates={name: est[name] for name in timings if name in est},
            )
        )  # fmt: skip
    return out


def clear_autotune_cache() -> None:
    _process.autotune_cache.clear()


# ---------------------------------------------------------------------- recording


@contextlib.contextmanager
def recording():
    """Collect the name of every algorithm that runs inside the block, in this thread or
    asyncio task (for tools)."""
    with _process.recorders.recording() as names:
        yield names


def record(name: str) -> None:
    _process.recorders.record(name)

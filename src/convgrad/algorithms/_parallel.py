"""Jobs on convgrad's own threads, each calling a single-threaded BLAS.

An algorithm that interleaves copies with GEMMs (a block of columns, then its product)
runs the copies on one core while the other waits, and a copy that follows a
multi-threaded GEMM writes lines the other core's BLAS thread has just read: on this
VM that made the copy up to 8x slower in some processes (weight gradients 14 -> 31 ms).
Splitting the work into independent jobs, one per core, each doing its own copies and
its own single-threaded GEMMs (as oneDNN does), keeps every core busy and every line on
the core that wrote it.

The pool, the BLAS limit and their lifetimes live in ``convgrad._process``; this module
forms the jobs. While jobs run, BLAS is limited to one thread process-wide (restored
when the last running call ends): another thread's own BLAS calls meanwhile run single-
threaded. The number of jobs follows BLAS's thread count at the call, so a caller's
``threadpool_limits(1)`` keeps convgrad on one core too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._process import CORES, jobs, split_range

__all__ = [
    "CHUNK_BYTES",
    "CORES",
    "PARALLEL_FLOPS",
    "batch_chunks",
    "box_slices",
    "cores_for",
    "run_jobs",
    "workers",
]


def workers(count: int) -> int:
    """Threads worth using for ``count`` independent jobs (see ``JobPool.workers``)."""
    return jobs.workers(count)


def cores_for(units: int, cores: int) -> float:
    """Cores of ``cores`` that ``units`` equal independent chunks keep busy on average (3
    chunks on 2 cores: 1.5): the cost models divide the chunks' copies by it."""
    units, cores = max(1, units), max(1, cores)
    return units / -(-units // cores)


def run_jobs(job: Callable, args: Sequence) -> list:
    """``[job(a) for a in args]``, jobs that call BLAS, on the pool (``JobPool.run``)."""
    return jobs.run(job, args, blas=True)


PARALLEL_FLOPS = 4e6  # the least work worth a job of its own (a box of rows: ``_boxes``)
# the most bytes of images' workspace a job of implicit or phase lays out at once (measured
# on two threads, 8 -> 4 MiB: the stem layer's forward 9.1 -> 8.0 ms and input gradient
# 10.6 -> 8.4 ms, one image a job instead of two; the other cells within 2 %)
CHUNK_BYTES = 4 * 2**20


def box_slices(sizes: Sequence[int], jobs: int) -> list[tuple[slice, ...]]:
    """At most ``jobs`` boxes of slices covering ``sizes``, cut along the first axis with
    at least ``jobs`` entries (else the longest): one contiguous box per job."""
    axis = next((i for i, n in enumerate(sizes) if n >= jobs), None)
    if axis is None:
        axis = max(range(len(sizes)), key=lambda i: sizes[i])
    return [
        tuple(slice(lo, hi) if i == axis else slice(None) for i in range(len(sizes)))
        for lo, hi in split_range(sizes[axis], jobs)
    ]


def batch_chunks(g: int, b: int, per_image: int, limit: int, cap: int | None = None, boxes=None):
    """Chunks of a (G, B) batch for one job per core: (g_chunk, b_chunk, one list of
    units (g0, b0, box) per job). A chunk holds as many images as fit ``per_image`` bytes
    each in the job's share of ``limit`` (and in ``cap``, to stay cache-sized), and there
    are at least as many chunks as jobs where the batch allows. ``boxes(chunks)``: the
    output boxes to cut each chunk into (``_boxes.output_boxes``; default: none, the
    whole output, ``()``)."""
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
    cuts = [()] if boxes is None else boxes(len(chunks))
    units = [(g0, b0, box) for g0, b0 in chunks for box in cuts]
    jobs = workers(len(units))
    return g_chunk, b_chunk, [units[j::jobs] for j in range(jobs)]

"""Boxes of output rows: more jobs than images, where the images are fewer than the cores.

The GEMM algorithms split a call by image first (``_parallel.batch_chunks``). Where the
images are fewer than the threads in force, each image's output is also cut into boxes
of rows (the first output dim, then the second of a 3-D output): a box is the same
correlation on the input rows its outputs read, padded as there (``band``), so every
algorithm runs a box as it runs a whole image, each output summed in the same order.

A job costs more than its share of the work: handing it to the pool (about 50 us, so a
box holds at least ``_parallel.PARALLEL_FLOPS``), its halo rows, and its Python (about
5 us a call: a box of ``implicit`` makes one BLAS call per kernel tap). That Python runs
one job at a time under the GIL, so N jobs of work W and Python h each take about
W/N + N*h: past N = sqrt(W/h) more jobs make a call slower, not faster (measured on two
threads: the transposed benchmark layer's forward, cut into 64 boxes of about 210 us of
Python each, took 23 ms where 8 jobs took 4). Boxes stop at that count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace

from .._process import split_range
from .._rules import Correlation
from ._parallel import PARALLEL_FLOPS, workers

CALL_FLOPS = PARALLEL_FLOPS / 10  # work as long as one call's Python (~5 us)


def band_counts(out_spatial: Sequence[int], parts: int) -> tuple[int, ...]:
    """Parts per leading output dim (the first, then the second of a 3-D output; the last
    dim of a 2-D or 3-D output stays whole, for long copies and GEMM rows) that make about
    ``parts`` boxes: ``(4,)`` cuts a (28, 28) output into 4 bands of 7 rows."""
    counts = []
    for n in out_spatial[: max(1, len(out_spatial) - 1)]:
        k = max(1, min(parts, n))
        counts.append(k)
        parts = -(-parts // k)
    return tuple(counts)


def most_boxes(units: int, out_spatial: Sequence[int], unit_flops: float, calls: int) -> int:
    """Boxes per unit (an image, or a chunk of them, of ``unit_flops`` work) worth forming
    with cores to spare: each at least PARALLEL_FLOPS, and at most sqrt(W/h) jobs in all
    (W: the units' work, h: one box's ``calls``)."""
    worth = int(unit_flops // PARALLEL_FLOPS)
    gil = math.isqrt(int(units * unit_flops // (max(calls, 1) * CALL_FLOPS))) // max(units, 1)
    return math.prod(band_counts(out_spatial, max(1, min(worth, gil))))


def output_boxes(
    units: int,
    out_spatial: Sequence[int],
    unit_flops: float,
    calls: int,
    box_bytes=None,
    limit: int = 0,
) -> list[tuple[slice, ...]]:
    """Boxes (slices of the leading output dims; ``()``: the whole output) to cut each of
    ``units`` units into so that the threads in force each get a job where the work
    allows: one where the units alone are enough; else up to ``ceil(threads / units)``,
    at most ``most_boxes``, and fewer where their workspaces in flight
    (``box_bytes(box shape)``: one box's) would pass ``limit``."""
    threads = workers(units * math.prod(out_spatial))
    if units >= threads:
        return [()]
    most = most_boxes(units, out_spatial, unit_flops, calls)
    parts = min(-(-threads // max(units, 1)), most)
    while parts > 1:
        counts = band_counts(out_spatial, parts)
        largest = tuple(-(-n // k) for n, k in zip(out_spatial, counts))
        in_flight = min(threads, units * math.prod(counts))
        if box_bytes is None or in_flight * box_bytes(largest) <= limit:
            cuts = (split_range(n, k) for n, k in zip(out_spatial, counts))
            return [tuple(slice(lo, hi) for lo, hi in box) for box in itertools.product(*cuts)]
        parts -= 1
    return [()]


def band(lhs_spatial, kernel, corr: Correlation, box) -> tuple[tuple[slice, ...], Correlation]:
    """(lhs slices, correlation): correlating lhs[..., *slices] with the same rhs under the
    returned correlation gives exactly the outputs ``box`` (slices of the leading output
    dims) of ``corr``'s; the slices hold the input rows those outputs read, padded as there.
    A box that reads no sample keeps one input row, cropped away by negative padding."""
    if not box:
        return (), corr
    slices, padding = [], list(corr.padding)
    for d, rows in enumerate(box):
        ws, ld, rd = corr.window_strides[d], corr.lhs_dilation[d], corr.rhs_dilation[d]
        lo = corr.padding[d][0]
        p0, p1 = rows.start * ws, (rows.stop - 1) * ws + rd * (kernel[d] - 1) + 1  # rows read
        a0 = max(0, -(-(p0 - lo) // ld))  # the samples there: a0 .. a1 - 1
        a1 = min(lhs_spatial[d], -(-(p1 - lo) // ld))
        if a1 <= a0:
            a0, a1 = 0, 1
        low = lo + a0 * ld - p0  # where sample a0 lands in the band's padded rows
        slices.append(slice(a0, a1))
        padding[d] = (low, p1 - p0 - (a1 - a0 - 1) * ld - 1 - low)
    return tuple(slices), replace(corr, padding=tuple(padding))


def unit_views(lhs, result, kernel, corr: Correlation, images, box):
    """(lhs part, its correlation, result part) of one job's unit: ``images`` (a group
    slice and a batch slice) and the output ``box`` (see ``band``; ``()``: all of it)."""
    lhs, result = lhs[images], result[images]
    if not box:
        return lhs, corr, result
    slices, corr = band(lhs.shape[3:], kernel, corr, box)
    images_axes = (slice(None),) * 3
    return lhs[(*images_axes, *slices)], corr, result[(*images_axes, *box)]


def band_shape(lhs_shape, kernel, corr: Correlation, box_shape) -> tuple[tuple, Correlation]:
    """(lhs shape, correlation) of a box of ``box_shape`` leading output rows in the middle
    of the output (where a box reads the most input rows): what its job lays out."""
    if not box_shape:
        return tuple(lhs_shape), corr
    out = corr.output_spatial(lhs_shape[3:], kernel)
    box = tuple(slice((m - n) // 2, (m - n) // 2 + n) for m, n in zip(out, box_shape))
    slices, corr = band(lhs_shape[3:], kernel, corr, box)
    spatial = (*(s.stop - s.start for s in slices), *lhs_shape[3 + len(slices) :])
    return (*lhs_shape[:3], *spatial), corr

"""Weight gradients as GEMMs over cache-sized blocks of the contraction.

A weight-gradient correlation has a huge "kernel" (the output-gradient map, K) and a tiny
output (the filter taps, T). Its column matrix (B*T rows, one per input channel and tap,
by C*K columns) is as large as the input times the taps, so it is never built whole.
Per group and lhs channel c, the padded lhs planes (B, P) and the rhs scattered onto the
same padded grid (O, P; zeros off its samples) are laid out flat; the samples under tap t
for every rhs position are then one contiguous run of a plane, shifted by s_t, and

    acc[g] (B*T x O) += cols (B*T x L) @ grid[:, k0 : k0 + L]^T (L x O),
    cols[(b, t), :] = plane[b, s_t + k0 : s_t + k0 + L]

for blocks of L ~ ``BLOCK`` grid positions: each block of columns is a copy of long
contiguous runs (one serial compiled loop) that stays in cache until BLAS reads it.
With few output channels (O <= IN_PLACE_COLUMNS) and long runs, BLAS would pack the
columns for few products each: a compiled loop then reads the runs where they lie and
sums the products in register blocks of 6 rows by 4 channels (``_dots``), no copy at all.
With rhs dilation rd (the forward stride) the planes are first split into phases
(phase r holds P[q*rd + r]): tap t then reads phase (t*ws) % rd from (t*ws) // rd on,
again one contiguous run; only the phases some tap reads are built (at most the taps,
however large the stride). Grid columns off the rhs samples multiply zeros; where that
meets inf/NaN in the lhs the (tiny) result is not finite and the correlation is
recomputed by ``gemm``, so such values reach only the outputs whose windows contain them.
The (group, lhs channel) pairs are split into one job per core (``_parallel``), each with
its own workspaces, single-threaded GEMMs and accumulator; the accumulators are summed.
Where the pairs are fewer than the cores, the rows (b, t) of the products are cut into
parts as well, as many as pay (``_boxes.most_boxes``): a job of a part lays out only the
planes of its images, and each part's accumulators are summed as the whole's would be.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import numpy as np

from .._process import split_range
from .._rules import Correlation
from . import _parallel
from ._boxes import most_boxes
from ._compiled import JIT_OPTIONS, lazy_kernel
from ._dtypes import compute_dtype, result_dtype
from ._geometry import (
    dilate_and_pad_into,
    flat_strides,
    padded_shape,
    padding_bounded,
    phase_into,
    prod,
)
from ._workspace import scratch, unaliased

name = "blocked_dw"
MAX_OUTPUTS = 1024  # filter taps (T); beyond this it is not a weight gradient
BLOCK = 1024  # grid positions per block (in single-threaded jobs 0-10 % faster than 2048)
MIN_ROWS = 16  # rows (b, t) per job's GEMMs, where the rows are cut for more jobs
PART_FLOPS = 32e6  # the least work of a part of the rows: each lays its images out again
# (the origin layer's dW, 24 MFLOP, in 2 parts on two threads: 0.40 ms against 0.37 whole)
SMALL_COLUMNS = 8 * 2**20  # column bytes below which gemm's one-shot column matrix is as good


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    out = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    return (
        out <= MAX_OUTPUTS
        and out <= prod(rhs_shape[3:])
        and padding_bounded(lhs_shape, rhs_shape, corr)  # it lays padded planes out whole
    )


def compiled_variant(lhs_shape, rhs_shape, corr: Correlation) -> str:
    """The compiled kernel a call runs (see ``_primitive``): the products read in place,
    or the run copies."""
    q, _, _ = _phases(lhs_shape, rhs_shape, corr)
    return "dots" if _reads_in_place(rhs_shape[1], _depth(rhs_shape, q)) else "copy_runs"


def _depth(rhs_shape, q) -> int:
    """Grid positions each tap's run covers: the rhs grid's span on the (phase) grid q."""
    return sum((k - 1) * f for k, f in zip(rhs_shape[3:], flat_strides(q))) + 1


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of one channel's padded planes (and their phase split) and rhs grid, one block
    of columns and the small products."""
    g, b = lhs_shape[:2]
    o = rhs_shape[1]
    q, phases, _ = _phases(lhs_shape, rhs_shape, corr)
    m = b * prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    planes = b * len(phases) * prod(q) + _split_bytes(lhs_shape, corr, 1)
    return (planes + o * prod(q) + m * BLOCK + (g + 1) * m * o) * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, *, cores: int, limit: int):
    """Machine-free work: the GEMMs over the (phase) grid, junk columns included, the
    planes and grid laid out, the columns copied, a few calls per block."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    q, phases, _ = _phases(lhs_shape, rhs_shape, corr)
    grid, depth = prod(q), _depth(rhs_shape, q)  # each run: the depth, not the whole grid
    split = _split_bytes(lhs_shape, corr, itemsize)
    m = b * prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    in_place = _reads_in_place(o, depth)
    columns = g * c * m * depth * itemsize
    # the columns are copied within the cache (about twice the rate of a copy through
    # memory) and read by BLAS from there; measured: while all the columns would fit in
    # SMALL_COLUMNS bytes anyway, blocking buys nothing and only adds calls. Read in place,
    # there are none
    columns = columns // 2 if columns > SMALL_COLUMNS else 2 * columns
    columns = 0 if in_place else columns
    planes = g * c * 2 * ((b * len(phases) + o) * grid * itemsize + split)
    # each pair's (B*T, O) products are added into its job's sums: written by BLAS, then
    # read and the sums read and written (read and written in place by the compiled dots)
    sums = g * c * (2 if in_place else 4) * m * o * itemsize
    # jobs: (group, channel) pairs, and parts of the rows (b, t) where the pairs are fewer
    # than the cores
    calls = _pair_calls(grid, len(phases), any(r > 1 for r in corr.rhs_dilation), in_place)
    jobs = g * c * _row_parts(g * c, g * c, m, 2.0 * g * c * m * o * depth, calls, 1 << 30)
    return Counts(
        2.0 * g * c * m * o * depth,
        min(m, o, BLOCK),
        # each job its own; then, on the caller, the jobs' sums added, checked, copied out
        bytes=(planes + columns + sums) / _parallel.cores_for(g * c, cores)
        + (min(cores, g * c) + 2) * 2 * g * m * o * itemsize,
        calls=g * c * calls + 10,
        jobs=jobs,
    )


@lazy_kernel
def _copy_runs(numba):
    """Compiled ``cols[r * stride :][:n] = src[starts[r] + k0 :][:n]`` for every row r
    (numba, imported on first use, compiled once per dtype and cached on disk). Serial on
    purpose: between BLAS calls, whose worker threads keep spinning for a while, a
    parallel loop's threads fight them for the cores (measured: 9 -> 68 ms per weight
    gradient)."""

    @numba.njit(**dict(JIT_OPTIONS, parallel=False))
    def kernel(src, starts, k0, cols, stride, n):
        for r in range(starts.shape[0]):
            run, row = src[starts[r] + k0 : starts[r] + k0 + n], cols[r * stride : r * stride + n]
            for i in range(n):
                row[i] = run[i]

    return kernel


IN_PLACE_COLUMNS = 64  # output channels (GEMM columns) up to which rows are read in place
IN_PLACE_DEPTH = 512  # and grid positions from which (shorter runs: the sums' reductions)


def _reads_in_place(o: int, depth: int) -> bool:
    """Whether the products read the rows in place (``_dots``) rather than copying blocks
    of columns for BLAS: few output channels, where BLAS packs the columns for few
    products each, and runs long enough to outweigh a block's 24 reductions. Measured, one
    thread / two: conv3d dW (32 channels) 11.1 -> 8.2 / 6.0 -> 4.6 ms, stem 15.5 -> 13.0 /
    8.5 -> 7.1, 3x3-56 11.4 -> 10.5 / 6.3 -> 5.6; with 256 channels over 222 positions
    (3x3-14) 14.3 -> 23.3, so those copy."""
    return o <= IN_PLACE_COLUMNS and depth >= IN_PLACE_DEPTH


DEPTH_BLOCK = 4096  # grid positions per pass: each block of 24 sums reduced across its
# vector lanes once per pass (A/B on two threads against 1024: 3x3-56, reflect, conv3d,
# conv1d and origin dW 4-7 % faster; stem dW and transposed3d dW within 3 %, either way
# from run to run)


@lazy_kernel
def _dots(numba):
    """Compiled ``acc[r, j] += sum_k src[starts[r] + k] * grid[j, k]`` for k < depth: the
    products of the rows (b, t), each a contiguous run of the planes, with the rhs grid,
    read where they lie (no column copy). Blocks of 6 rows by 4 columns of products (24
    accumulators, 10 loads a step) accumulate in registers over DEPTH_BLOCK positions
    (the sums vectorised along k: reassociation and FMA contraction only, so inf and NaN
    propagate as in any order); the rows and columns past the blocks take one row or one
    column at a time. Serial (jobs run it side by side). Measured on one thread, 480 x 64
    products over 3200 positions: 172-208 GFLOP/s against OpenBLAS's 198-211 on the
    copied columns."""

    # one kernel, no helper functions: a kernel closing over another jitted function gets
    # a disk-cache key of its own in every process (and recompiles there)
    @numba.njit(**dict(JIT_OPTIONS, fastmath={"reassoc", "contract"}))
    def kernel(src, starts, grid, depth, acc, zero, block):
        m, n = acc.shape
        m_full, n_full = m - m % 6, n - n % 4
        for k0 in range(0, depth, block):
            kn = min(block, depth - k0)
            for i0 in range(0, m_full, 6):
                a0 = src[starts[i0] + k0 : starts[i0] + k0 + kn]
                a1 = src[starts[i0 + 1] + k0 : starts[i0 + 1] + k0 + kn]
                a2 = src[starts[i0 + 2] + k0 : starts[i0 + 2] + k0 + kn]
                a3 = src[starts[i0 + 3] + k0 : starts[i0 + 3] + k0 + kn]
                a4 = src[starts[i0 + 4] + k0 : starts[i0 + 4] + k0 + kn]
                a5 = src[starts[i0 + 5] + k0 : starts[i0 + 5] + k0 + kn]
                for j0 in range(0, n_full, 4):
                    b0, b1 = grid[j0, k0 : k0 + kn], grid[j0 + 1, k0 : k0 + kn]
                    b2, b3 = grid[j0 + 2, k0 : k0 + kn], grid[j0 + 3, k0 : k0 + kn]
                    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
                    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
                    s40 = s41 = s42 = s43 = s50 = s51 = s52 = s53 = zero
                    for k in range(kn):
                        x0, x1, x2, x3, x4, x5 = a0[k], a1[k], a2[k], a3[k], a4[k], a5[k]
                        y0, y1, y2, y3 = b0[k], b1[k], b2[k], b3[k]
                        s00 += x0 * y0
                        s01 += x0 * y1
                        s02 += x0 * y2
                        s03 += x0 * y3
                        s10 += x1 * y0
                        s11 += x1 * y1
                        s12 += x1 * y2
                        s13 += x1 * y3
                        s20 += x2 * y0
                        s21 += x2 * y1
                        s22 += x2 * y2
                        s23 += x2 * y3
                        s30 += x3 * y0
                        s31 += x3 * y1
                        s32 += x3 * y2
                        s33 += x3 * y3
                        s40 += x4 * y0
                        s41 += x4 * y1
                        s42 += x4 * y2
                        s43 += x4 * y3
                        s50 += x5 * y0
                        s51 += x5 * y1
                        s52 += x5 * y2
                        s53 += x5 * y3
                    acc[i0, j0] += s00
                    acc[i0, j0 + 1] += s01
                    acc[i0, j0 + 2] += s02
                    acc[i0, j0 + 3] += s03
                    acc[i0 + 1, j0] += s10
                    acc[i0 + 1, j0 + 1] += s11
                    acc[i0 + 1, j0 + 2] += s12
                    acc[i0 + 1, j0 + 3] += s13
                    acc[i0 + 2, j0] += s20
                    acc[i0 + 2, j0 + 1] += s21
                    acc[i0 + 2, j0 + 2] += s22
                    acc[i0 + 2, j0 + 3] += s23
                    acc[i0 + 3, j0] += s30
                    acc[i0 + 3, j0 + 1] += s31
                    acc[i0 + 3, j0 + 2] += s32
                    acc[i0 + 3, j0 + 3] += s33
                    acc[i0 + 4, j0] += s40
                    acc[i0 + 4, j0 + 1] += s41
                    acc[i0 + 4, j0 + 2] += s42
                    acc[i0 + 4, j0 + 3] += s43
                    acc[i0 + 5, j0] += s50
                    acc[i0 + 5, j0 + 1] += s51
                    acc[i0 + 5, j0 + 2] += s52
                    acc[i0 + 5, j0 + 3] += s53
            # the products past the blocks, one at a time: the columns past them for the
            # blocked rows, then every column for the rows past them
            for i in range(m):
                a = src[starts[i] + k0 : starts[i] + k0 + kn]
                for j in range(n_full if i < m_full else 0, n):
                    b = grid[j, k0 : k0 + kn]
                    total = zero
                    for k in range(kn):
                        total += a[k] * b[k]
                    acc[i, j] += total

    return kernel


def _phases(lhs_shape, rhs_shape, corr: Correlation):
    """(phase grid Q, the phases read, taps as (phase index, flat offset on Q)): the padded
    grid split by the rhs dilation rd, phase r holding P[q*rd + r] (rd = 1: the grid
    itself); filter tap (output position) i reads phase (i*ws) % rd from (i*ws) // rd on.
    Memoised (a 3-D layer's 64 taps took 0.25 ms of Python per call), read-only."""
    return _memoised_phases(tuple(lhs_shape), tuple(rhs_shape), corr)


@functools.lru_cache(maxsize=256)
def _memoised_phases(lhs_shape, rhs_shape, corr: Correlation):
    if all(r == 1 for r in corr.rhs_dilation):  # unsplit: rows share their padding
        grid = _shared_grid(lhs_shape, rhs_shape, corr)
    else:
        padded = padded_shape(lhs_shape[3:], corr)
        grid = tuple(-(-p // r) for p, r in zip(padded, corr.rhs_dilation))
    flat = flat_strides(grid)
    index: dict = {}
    taps = []
    for pos in itertools.product(
        *(range(n) for n in corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    ):
        at = [i * ws for i, ws in zip(pos, corr.window_strides)]
        phase = tuple(x % r for x, r in zip(at, corr.rhs_dilation))
        shift = sum(x // r * f for x, r, f in zip(at, corr.rhs_dilation, flat))
        taps.append((index.setdefault(phase, len(index)), shift))
    return grid, tuple(index), tuple(taps)


def _shared_grid(lhs_shape, rhs_shape, corr: Correlation) -> tuple[int, ...]:
    """The unsplit planes' grid: a row's high padding is the next row's low padding (a
    read past a row's end wraps to the next row's start, which is low padding; past the
    last image, the zeros of ``_overhang``), so each dim holds its samples, its larger
    padding, and the rhs (the 3-D benchmark layer's 18 x 30 x 30 planes: 17 x 29 x 29).
    Dims with negative padding keep the whole padded extent."""
    padded = padded_shape(lhs_shape[3:], corr)
    grid = []
    for p, s, ld, (lo, hi), k in zip(
        padded, lhs_shape[3:], corr.lhs_dilation, corr.padding, rhs_shape[3:]
    ):
        shared = (s - 1) * ld + 1 + max(lo, hi)
        grid.append(max(shared, k) if lo >= 0 and hi >= 0 and s > 0 else p)
    return tuple(grid)


def _overhang(q, taps, depth: int) -> int:
    """Zeros the planes need past the last image's grid: the furthest any tap's run reads
    beyond it (the high padding the shared grid's last row leaves out)."""
    return max(0, max((shift for _, shift in taps), default=0) + depth - prod(q))


def _split_bytes(lhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of one channel's padded planes, split into phases from there (0: no phases,
    or phases copied straight from the lhs: no lhs dilation)."""
    if all(r == 1 for r in corr.rhs_dilation) or all(ld == 1 for ld in corr.lhs_dilation):
        return 0
    return lhs_shape[1] * prod(padded_shape(lhs_shape[3:], corr)) * itemsize


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *T)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    padded = padded_shape(lhs.shape[3:], corr)
    q, phase_list, taps = _phases(lhs.shape, rhs.shape, corr)
    phases = len(phase_list)
    out_spatial = corr.output_spatial(lhs.shape[3:], kernel)
    qplane, nt = prod(q), prod(out_spatial)
    m = b * nt
    isz = compute.itemsize
    # per job: one channel's planes of its images (and the padded planes they are split
    # from), its grid, the products of its rows (b, t)

    def fixed(rows: int) -> int:
        images = min(b, -(-rows // nt) + 1)  # the images a run of rows (b, t) touches
        split = _split_bytes(lhs.shape, corr, isz) * images // b
        return (images * phases + o) * qplane * isz + split + (g + 1) * rows * o * isz

    jobs = _parallel.workers(g * c)
    while jobs > 1 and fixed(m) > workspace_limit // jobs:
        jobs -= 1
    if fixed(m) > workspace_limit or 0 in lhs.shape + rhs.shape:
        from . import gemm  # one channel's planes do not fit: gemm chunks further

        return gemm.run(lhs, rhs, corr, workspace_limit)
    depth = _depth(rhs.shape, q)  # the rhs grid's span
    in_place = _reads_in_place(o, depth)
    calls = _pair_calls(qplane, phases, any(r > 1 for r in corr.rhs_dilation), in_place)
    parts = _row_parts(g * c, jobs, m, 2.0 * g * c * m * o * depth, calls)  # as counts()
    while parts > 1 and jobs * parts * fixed(-(-m // parts)) > workspace_limit:
        parts -= 1
    rows = split_range(m, parts)
    most = max(r1 - r0 for r0, r1 in rows)
    share = workspace_limit // (jobs * parts) - fixed(most)
    block = max(1, min(depth, BLOCK, share // (most * isz)))
    # row (b, t) of a block of columns is the run of planes[b, phase_t] from shift_t + k0
    tap_starts = np.array([phase * qplane + shift for phase, shift in taps], dtype=np.int64)
    starts = (np.arange(b, dtype=np.int64)[:, None] * (phases * qplane) + tap_starts).ravel()
    overhang = _overhang(q, taps, depth)
    shape = _Shape(
        g, b, o, kernel, q, phase_list, padded, depth, block, in_place, compute, overhang
    )
    pairs = [(gi, ci) for gi in range(g) for ci in range(c)]
    units = [(r0, r1, pairs[j::jobs]) for r0, r1 in rows for j in range(jobs)]

    def job(unit):  # rows r0 .. r1 of the pairs given, from their images' planes only
        r0, r1, mine = unit
        b0, b1 = r0 // nt, -(-r1 // nt)
        part = shape._replace(b=b1 - b0)
        part_starts = starts[r0:r1] - b0 * phases * qplane
        return _accumulate(lhs[:, b0:b1], rhs, corr, part, part_starts, mine)

    accs = _parallel.run_jobs(job, units)
    # each part's sum over its jobs, in job order (as with one part), into its first job's
    # accumulator (each job's own, fresh)
    sums = [functools.reduce(np.add, accs[r * jobs : (r + 1) * jobs]) for r in range(parts)]
    acc = sums[0] if parts == 1 else np.concatenate(sums, axis=1)
    if not np.isfinite(acc).all():  # grid zeros may have met inf/NaN: redo exactly
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    # copied here in (B, O, T) order: left a view, the caller's one transposing copy into
    # the weight's (O, B, T) layout ran 1.2 ms slower on the strided layer's dW
    result = acc.reshape(g, b, nt, o).transpose(0, 1, 3, 2).astype(dtype)
    return result.reshape(g, b, o, *out_spatial)


def _pair_calls(grid: int, phases: int, split: bool, in_place: bool) -> int:
    """Calls one (group, channel) pair makes: a few per block of columns (one compiled
    call where the rows are read in place), its layouts."""
    products = 1 if in_place else 4 * -(-grid // BLOCK)
    return products + 6 + (2 * phases if split else 0)


def _row_parts(pairs: int, jobs: int, m: int, flops: float, calls: int, threads=None) -> int:
    """Parts to cut the M = B*T rows (b, t) of the products into where the (group,
    channel) pairs are fewer than the ``threads`` (default: those in force): each part
    a job of the pairs' split into ``jobs`` (``flops``: all of the work, ``calls``: one
    pair's), worth forming (``_boxes.most_boxes``), of at least MIN_ROWS rows (a GEMM that
    skinny runs at memory speed) and PART_FLOPS of work."""
    threads = _parallel.workers(pairs * m) if threads is None else threads
    if pairs >= threads:
        return 1
    most = most_boxes(jobs, (m,), flops / jobs, calls * -(-pairs // jobs))
    worth = int(flops / (pairs * PART_FLOPS))
    return max(1, min(-(-threads // jobs), most, m // MIN_ROWS, worth))


class _Shape(NamedTuple):
    g: int
    b: int
    o: int
    kernel: tuple
    q: tuple  # the (phase) grid
    phases: list  # the phases read (r per dim), in the planes' order
    padded: tuple
    depth: int  # grid positions each tap's run covers
    block: int  # grid positions per block of columns
    in_place: bool  # the products read the rows in place (``_reads_in_place``)
    compute: np.dtype
    overhang: int  # zeros past the last image's planes (``_overhang``)


def _accumulate(lhs, rhs, corr: Correlation, shape: _Shape, starts, pairs) -> np.ndarray:
    """acc (G, B*T, O): the products of the (group, lhs channel) ``pairs``, on this
    thread's own workspaces."""
    g, b, o, kernel, q, phases, padded, depth, block, in_place, compute, overhang = shape
    qplane, m = prod(q), starts.shape[0]
    size = b * len(phases) * qplane
    flat_planes = scratch("blocked_dw-planes", size + overhang + 16, compute)[: size + overhang]
    flat_planes[size:] = 0
    planes = flat_planes[:size].reshape(b, len(phases), qplane)
    grid = scratch("blocked_dw-grid", o * qplane + 16, compute)[: o * qplane].reshape(o, qplane)
    grid[...] = 0
    split = any(r > 1 for r in corr.rhs_dilation)
    direct = split and all(ld == 1 for ld in corr.lhs_dilation)  # phases straight from lhs
    lows = tuple(lo for lo, _ in corr.padding)
    if split and not direct:  # the padded planes, and each phase's part of them
        region = scratch("blocked_dw-padded", b * prod(padded), compute).reshape(b, *padded)
        moves = []
        for k, phase in enumerate(phases):
            src = region[
                (slice(None), *(slice(x, None, r) for x, r in zip(phase, corr.rhs_dilation)))
            ]
            dst = planes[:, k].reshape(b, *q)
            if src.shape != dst.shape:  # the phase's tail is read (times grid zeros): zero
                dst[...] = 0
            moves.append((dst[(slice(None), *(slice(0, n) for n in src.shape[1:]))], src))
    on_samples = tuple(slice(0, k) for k in kernel)
    acc = np.zeros((g, m, o), dtype=compute)
    if in_place:
        dots, zero = _dots(), compute.type(0)
    else:  # blocks of copied columns, BLAS
        stride = unaliased(block, compute.itemsize)  # rows of columns
        columns = scratch("blocked_dw-columns", m * stride, compute)
        copy_runs = _copy_runs()
        product = np.empty((m, o), dtype=compute)
    for gi, ci in pairs:
        part = lhs[gi : gi + 1, :, ci : ci + 1].astype(compute, copy=False)
        if not split:
            dilate_and_pad_into(part, corr, planes.reshape(1, b, 1, *q))
        elif direct:
            for k, phase in enumerate(phases):
                dst = planes[:, k].reshape(b, *q)
                phase_into(part[0, :, 0], lows, padded, phase, corr.rhs_dilation, dst)
        else:
            dilate_and_pad_into(part, corr, region.reshape(1, b, 1, *padded))
            for dst, src in moves:
                np.copyto(dst, src)
        grid.reshape(o, *q)[(slice(None), *on_samples)] = rhs[gi, :, ci]
        if in_place:
            dots(flat_planes, starts, grid, depth, acc[gi], zero, DEPTH_BLOCK)
            continue
        for k0 in range(0, depth, block):
            n = min(block, depth - k0)
            copy_runs(flat_planes, starts, k0, columns, stride, n)
            cols = columns[: m * stride].reshape(m, stride)[:, :n]
            np.matmul(cols, grid[:, k0 : k0 + n].T, out=product)
            acc[gi] += product
    return acc

"""Winograd weight gradients: F(3, 2) along each axis, for correlations with 3 outputs per
axis (the weight gradient of a 3-tap or 3x3 layer), in 1-D and 2-D.

A weight gradient's correlation has a large "kernel" (the output gradient) and 3 outputs
per axis:

    out[g, b, o, t] = sum_{c, j} P[g, b, c, t*ws + j] * rhs[g, o, c, j]        t < 3

(P: the padded lhs; ws: the layer's dilation; no rhs or lhs dilation). Phases p < ws
(j = ws*u + p) make it a window-stride-1 sum: with P_p[v] = P[ws*v + p] and rhs_p[u] =
rhs[ws*u + p], out[t] = sum_p sum_u P_p[u + t] rhs_p[u]. Cut u into chunks u = 2q + k
(k < 2): chunk q is F(3, 2) on the tile P_p[2q : 2q + 4], and per axis

    out = A^T [ sum_{c, p, q} (G rhs_p[2q : 2q + 2]) * (B^T P_p[2q : 2q + 4]) ]

(tensor products in 2-D): 16 multiplications per 2x2 chunk instead of 36, 2.25x fewer.
The sum over (c, p, q) is one GEMM per point, U[pt]^T (O x T) @ V[pt] (T x B), T the
(c, p, q) chunks (both laid out (T, channels)). The points are F(2, 3)'s (0, 1, -1 and
infinity, from ``_winograd_tiles.cook_toom``), and so is the float32 error
(docs/winograd.md).

The chunks' rows (c, p, q_y) are split into one range per job; each job transforms
blocks of its rows (a compiled loop: ``_tiles``) into V and U in its workspace and adds
their GEMMs into its own (points, O, B) sums, single-threaded. A second round of jobs,
by columns (o, b), adds the jobs' sums in job order and applies A^T, writing the result
in the weight's (O, B) order. An inf or NaN in either operand would spread across
tiles: where the result is not finite, ``gemm`` computes the correlation instead.
"""

from __future__ import annotations

import functools

import numpy as np

from .._process import split_range
from .._rules import Correlation
from . import _blas, _parallel
from ._compiled import JIT_OPTIONS, flat_view, lazy_kernel, read_only, unit_rows
from ._dtypes import compute_dtype, result_dtype
from ._geometry import prod
from ._winograd_tiles import cook_toom
from ._workspace import scratch

name = "winograd_dw"
MIXES_TAPS = True  # the transforms mix every tap of a tile (see _primitive.only_samples)
OUTPUTS = 3  # outputs per axis: the weight gradient of a 3-tap filter
MAX_PHASES = 64  # phases of the window stride (the layer's dilation) per call
BLOCK_BYTES = 8 * 2**20  # a job's block of V and U (GEMMs read it from cache)
SUMS_SHARE = 0.25  # of the workspace limit, for the jobs' sums at most (see _jobs)
TILE_PASSES = 6  # passes over the tiles the cost model counts (see counts)
MIN_DEPTH = 256  # contraction columns per block where the limit allows (shorter: slow GEMMs)


@functools.cache
def _matrices():
    """(A^T (3, 4), G (4, 2), B^T (4, 4)) of F(3, 2) on the points 0, 1, -1, infinity."""
    return cook_toom(OUTPUTS, 2, (0, 1, -1))


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    nd = len(lhs_shape) - 3
    return (
        nd in (1, 2)
        and all(ld == 1 for ld in corr.lhs_dilation)
        and all(rd == 1 for rd in corr.rhs_dilation)
        and corr.output_spatial(lhs_shape[3:], rhs_shape[3:]) == (OUTPUTS,) * nd
        and all(k >= 2 for k in rhs_shape[3:])
        and prod(_phases(rhs_shape[3:], corr)) <= MAX_PHASES
    )


def compiled_variant(lhs_shape, rhs_shape, corr: Correlation) -> str:
    return "tiles"


def _phases(kernel, corr: Correlation) -> tuple[int, ...]:
    """Phases of the window stride per axis that hold rhs samples."""
    return tuple(min(ws, k) for ws, k in zip(corr.window_strides, kernel))


class _Geometry:
    """Per axis, as two axes (y, x; 1-D has a unit y axis): chunks q, phases, and the
    transform of each side."""

    def __init__(self, lhs_shape, rhs_shape, corr: Correlation):
        nd = len(lhs_shape) - 3
        kernel = rhs_shape[3:]
        at, g, bt = _matrices()
        ones = np.ones((1, 1))
        phases = _phases(kernel, corr)
        # chunks per phase: the most rhs samples any phase holds, two per chunk
        chunks = tuple((-(-k // ws) + 1) // 2 for k, ws in zip(kernel, corr.window_strides))
        unit = (1,) * (2 - nd)
        self.phases = unit + phases
        self.chunks = unit + chunks
        self.strides = unit + tuple(corr.window_strides)
        self.step = unit + (2,) * nd  # rhs samples per chunk
        self.lows = (0,) * (2 - nd) + tuple(lo for lo, _ in corr.padding)
        self.lhs_size = unit + tuple(lhs_shape[3:])
        self.rhs_size = unit + tuple(kernel)
        self.bt = [ones] * (2 - nd) + [bt] * nd
        self.g = [ones] * (2 - nd) + [g] * nd
        self.at = [ones] * (2 - nd) + [at] * nd
        self.points = prod(m.shape[0] for m in self.bt)
        self.rows = rhs_shape[2] * prod(self.phases) * self.chunks[0]  # (c, p, q_y)
        self.depth = self.rows * self.chunks[1]  # the contraction T

    def params(self, side: str) -> np.ndarray:
        """The compiled loop's int64 parameters for the lhs ("lhs") or the rhs side."""
        lhs = side == "lhs"
        size = self.lhs_size if lhs else self.rhs_size
        lows = self.lows if lhs else (0, 0)
        return np.array(
            [*size, *lows, *self.strides, *self.chunks, *self.step, *self.phases],
            dtype=np.int64,
        )


@lazy_kernel
def _tiles(numba):
    """Compiled: transform the chunks' tiles of one side into its GEMM operand, for the
    rows (c, p, q_y) r0 .. r1 of the contraction, vectorised along the side's own rows
    (B of the lhs, O of the rhs). ``src`` flat with element strides (row, channel, y) of
    its (rows, C, Y, X) array (x unit); ``my`` (a_y, k_y), ``mx`` (a_x, k_x): the axis
    transforms (B^T or G; a unit axis [[1]]); ``dst`` flat (a_y * a_x, (r1 - r0) * Q_x,
    rows): chunk (r, q_x) at (r - r0) * Q_x + q_x; ``geo`` = size (2), lows (2), window
    strides (2), chunks Q (2), step (2), phases (2). Samples outside src (padding, past
    the end) are zeros. Each (c, p) plane the rows meet is laid out once as (y, x, rows)
    in ``plane`` (its phase's samples only); a tile row's y transform is then a sum of
    whole (x, rows) slices into ``tmp`` (a_y, x, rows), and each tile's x transform a sum
    of (rows,) vectors. Serial (it runs in a job)."""

    @numba.njit(**dict(JIT_OPTIONS, fastmath={"contract"}))
    def kernel(src, strides, geo, r0, r1, my, mx, dst, tmp, plane):
        ny, nx, lo_y, lo_x, ws_y, ws_x = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
        qy_n, qx_n, st_y, st_x, ph_y, ph_x = geo[6], geo[7], geo[8], geo[9], geo[10], geo[11]
        ay, ky = my.shape
        ax, kx = mx.shape
        rows, span, lines = tmp.shape[2], tmp.shape[1], plane.shape[0]
        depth = (r1 - r0) * qx_n
        s_row, s_c, s_y = strides[0], strides[1], strides[2]
        laid = -1  # the (c, p) in plane
        for r in range(r0, r1):
            qy = r % qy_n
            if r // qy_n != laid:
                laid = r // qy_n
                px = laid % ph_x
                py = laid // ph_x % ph_y
                c = laid // (ph_x * ph_y)
                # the x samples u of phase px inside src: ws_x * u + px - lo_x in [0, nx)
                first = min(span, max(0, -(-(lo_x - px) // ws_x)))
                last = (nx - 1 - px + lo_x) // ws_x + 1 if nx - 1 - px + lo_x >= 0 else 0
                last = max(first, min(span, last))
                for v in range(lines):
                    y = ws_y * v + py - lo_y
                    if y < 0 or y >= ny or first == last:
                        plane[v] = 0.0
                        continue
                    plane[v, :first] = 0.0
                    plane[v, last:] = 0.0
                    for b in range(rows):
                        at = b * s_row + c * s_c + y * s_y + px - lo_x
                        for u in range(first, last):
                            plane[v, u, b] = src[at + ws_x * u]
            for ey in range(ay):  # tmp[ey] = sum_k my[ey, k] plane[st_y * qy + k]
                t = tmp[ey].reshape(-1)
                started = False
                for k in range(ky):
                    w = my[ey, k]
                    if w == 0.0:
                        continue
                    line = plane[st_y * qy + k].reshape(-1)
                    if started:
                        for j in range(t.size):
                            t[j] += w * line[j]
                    else:
                        for j in range(t.size):
                            t[j] = w * line[j]
                        started = True
                if not started:
                    t[:] = 0.0
            for ey in range(ay):
                for ex in range(ax):
                    for q in range(qx_n):
                        at = ((ey * ax + ex) * depth + (r - r0) * qx_n + q) * rows
                        out = dst[at : at + rows]
                        started = False
                        for k in range(kx):
                            w = mx[ex, k]
                            if w == 0.0:
                                continue
                            t = tmp[ey, st_x * q + k]
                            if started:
                                for b in range(rows):
                                    out[b] += w * t[b]
                            else:
                                for b in range(rows):
                                    out[b] = w * t[b]
                                started = True
                        if not started:
                            out[:] = 0.0

    return kernel


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of one job (its sums, planes and block of V and U) and of the output
    transform's totals."""
    geom = _Geometry(lhs_shape, rhs_shape, corr)
    b, o = lhs_shape[1], rhs_shape[1]
    block = min(geom.rows, _block_rows(geom, b, o, itemsize, BLOCK_BYTES))
    return _fixed_bytes(geom, lhs_shape, rhs_shape, itemsize, 1) + _block_bytes(
        geom, b, o, itemsize, block
    )


def _fixed_bytes(geom: _Geometry, lhs_shape, rhs_shape, itemsize: int, jobs: int) -> int:
    """Bytes besides the blocks: the jobs' sums (jobs, G, points, O, B) and laid-out planes
    and tile rows, and the output transform's totals of one group (points, O*B)."""
    g, b = lhs_shape[:2]
    o = rhs_shape[1]
    span = (geom.chunks[1] - 1) * geom.step[1] + 4
    lines = (geom.chunks[0] - 1) * geom.step[0] + 4
    per_job = g * geom.points * o * b + (lines + 4) * span * max(b, o)
    return (jobs * per_job + geom.points * o * b) * itemsize


def _jobs(geom: _Geometry, lhs_shape, rhs_shape, itemsize: int, cores: int, limit: int) -> int:
    """Jobs (ranges of rows): one per core, as many as the rows, and as many as keep their
    sums within SUMS_SHARE of the limit (each job's (G, points, O, B) sums are added by
    the output transform: 16 jobs of a 256-channel layer's 4 MiB each under the default
    limit)."""
    jobs = max(1, min(cores, geom.rows))
    while (
        jobs > 1 and _fixed_bytes(geom, lhs_shape, rhs_shape, itemsize, jobs) > limit * SUMS_SHARE
    ):
        jobs -= 1
    return jobs


def _block_bytes(geom: _Geometry, b: int, o: int, itemsize: int, rows: int) -> int:
    """V and U of a block of ``rows`` rows (c, p, q_y)."""
    return geom.points * (b + o) * rows * geom.chunks[1] * itemsize


def _block_rows(geom: _Geometry, b: int, o: int, itemsize: int, budget: int) -> int:
    """Rows (c, p, q_y) per block: within ``budget`` bytes of V and U, or as many as
    make MIN_DEPTH columns where that is more (and the budget is only the cache's)."""
    per_row = geom.points * (b + o) * geom.chunks[1] * itemsize
    rows = max(1, budget // per_row)
    return max(rows, -(-MIN_DEPTH // geom.chunks[1]))


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, *, cores: int, limit: int):
    """Machine-free work: the points' GEMMs over the chunks, the tiles transformed and
    written, the sums added and transformed."""
    from .._plan import Counts

    geom = _Geometry(lhs_shape, rhs_shape, corr)
    g, b = lhs_shape[:2]
    o = rhs_shape[1]
    jobs = _jobs(geom, lhs_shape, rhs_shape, itemsize, cores, limit)
    depth = geom.depth
    gemm = 2.0 * g * geom.points * b * o * depth
    # the tiles: each side's transformed values, written by the compiled loop, then read
    # and packed by BLAS, outside L2 (fitted: TILE_PASSES passes at the copy rate matched
    # 3x3-14, 3x3-56 and dilated dW layers on two threads)
    tiles = TILE_PASSES * g * geom.points * (b + o) * depth * itemsize
    planes = g * (b + o) * rhs_shape[2] * prod(lhs_shape[3:]) * itemsize
    sums = g * geom.points * o * b * itemsize * (jobs + 2)
    blocks = -(-geom.rows // min(geom.rows, _block_rows(geom, b, o, itemsize, BLOCK_BYTES)))
    return Counts(
        gemm,
        min(b, o, depth),
        transform_flops=2.0 * g * geom.points * (b + o) * depth * 3,
        bytes=(tiles + 2 * planes) / _parallel.cores_for(geom.rows, cores) + sums,
        calls=g * blocks * (geom.points + 2) + 20,
        jobs=jobs,
    )


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, 3, ...)."""
    from . import gemm

    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    nd = lhs.ndim - 3
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    if 0 in lhs.shape + rhs.shape:
        return gemm.run(lhs, rhs, corr, workspace_limit)
    geom = _Geometry(lhs.shape, rhs.shape, corr)
    isz = compute.itemsize
    jobs = _jobs(geom, lhs.shape, rhs.shape, isz, _parallel.workers(geom.rows), workspace_limit)
    fixed = _fixed_bytes(geom, lhs.shape, rhs.shape, isz, jobs)
    share = (workspace_limit - fixed) // jobs
    block = min(geom.rows, _block_rows(geom, b, o, isz, min(BLOCK_BYTES, share)))
    if _block_bytes(geom, b, o, isz, 1) > share:
        return gemm.run(lhs, rhs, corr, workspace_limit)  # one row does not fit
    block = min(block, share // _block_bytes(geom, b, o, isz, 1))
    lhs = unit_rows(lhs.astype(compute, copy=False))
    rhs = unit_rows(rhs.astype(compute, copy=False))
    sides = [
        (lhs, geom.params("lhs"), [m.astype(compute) for m in geom.bt], b),
        (rhs, geom.params("rhs"), [m.astype(compute) for m in geom.g], o),
    ]
    kernel = _tiles()
    ranges = split_range(geom.rows, jobs)
    width = geom.chunks[1]

    def span(mx) -> int:  # x samples a tile row reads, per phase
        return (width - 1) * geom.step[1] + mx.shape[1]

    def lines(my) -> int:  # y samples the chunk rows of a plane read, per phase
        return (geom.chunks[0] - 1) * geom.step[0] + my.shape[1]

    points, outputs = geom.points, np.kron(geom.at[0], geom.at[1]).astype(compute)
    # the jobs' sums (G, points, O, B) each, in the caller's workspace
    sums = scratch("winograd_dw-sums", jobs * g * points * o * b, compute)
    sums = sums.reshape(jobs, g, points, o * b)

    def accumulate(index: int) -> None:  # the points' GEMMs over this job's rows
        r_start, r_stop = ranges[index]
        acc = _blas.buffer(sums[index].reshape(-1))
        vu = scratch("winograd_dw-tiles", points * (b + o) * block * width, compute)
        v, u = vu[: points * b * block * width], vu[points * b * block * width :]
        v_buf, u_buf = _blas.buffer(v), _blas.buffer(u)  # read once for every call
        # each side's laid-out plane and y-transformed tile row, for all its blocks
        row_buffers = [
            (
                np.empty((my.shape[0], span(mx), rows_n), compute),
                np.empty((lines(my), span(mx), rows_n), compute),
            )
            for _, _, (my, mx), rows_n in sides
        ]
        for gi in range(g):
            flats = [flat_view(read_only(_squeezed(array[gi], nd)), False) for array, *_ in sides]
            for r0 in range(r_start, r_stop, block):
                r1 = min(r_stop, r0 + block)
                depth = (r1 - r0) * width
                for side, dst, (flat, strides), (tmp, plane) in zip(
                    sides, (v, u), flats, row_buffers
                ):
                    _, params, (my, mx), rows_n = side
                    kernel(flat, strides, params, r0, r1, my, mx,
                           dst[: points * rows_n * depth], tmp, plane)  # fmt: skip
                for pt in range(points):  # sums[pt] (O, B) += U[pt]^T @ V[pt]
                    _blas.gemm(
                        u_buf, pt * o * depth, o, v_buf, pt * b * depth, b,
                        acc, (gi * points + pt) * o * b, b,
                        o, b, depth, 0.0 if r0 == r_start else 1.0, trans_a=True,
                    )  # fmt: skip

    out = np.empty((g, o * b, outputs.shape[0]), dtype=compute)

    def transform(columns: tuple[int, int]) -> None:
        """out[g, (o, b), (ty, tx)] for the columns (o, b) given: the jobs' sums added in
        job order, then A^T_y[ty, ey] A^T_x[tx, ex] summed over the points (ey, ex), one
        GEMM per group, in the weight's (O, B) order."""
        c0, c1 = columns
        total = scratch("winograd_dw-total", points * (c1 - c0), compute)
        total = total.reshape(points, c1 - c0)
        with np.errstate(all="ignore"):  # an inf or NaN goes to gemm below, silently
            for gi in range(g):
                np.copyto(total, sums[0, gi, :, c0:c1])
                for j in range(1, jobs):
                    total += sums[j, gi, :, c0:c1]
                np.matmul(total.T, outputs.T, out=out[gi, c0:c1])

    _parallel.run_jobs(accumulate, range(jobs))
    _parallel.run_jobs(transform, split_range(o * b, _parallel.workers(o * b // 256 + 1)))
    if not np.isfinite(out).all():  # an inf or NaN spread across tiles: redo by gemm
        return gemm.run(lhs, rhs, corr, workspace_limit)
    out = out.reshape(g, o, b, *(OUTPUTS,) * nd).astype(dtype, copy=False)
    return out.swapaxes(1, 2)


def _squeezed(array: np.ndarray, nd: int) -> np.ndarray:
    """(rows, C, *S) as (rows, C, Y, X): 1-D gets a unit y axis."""
    return array if nd == 2 else array[:, :, None]

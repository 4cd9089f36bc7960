"""Winograd F(2x2, 3x3): 3x3 window-stride-1 correlations with 16 multiplies per 2x2
output tile instead of 36 (2.25x fewer), as 16 GEMMs over channels.

With input tiles d (4x4, overlapping by 2) and filters g (3x3):

    U = G g G^T (16 per (o, c)),  V = B^T d B (16 per (c, tile)),
    M[ab] = V[ab] @ U[ab]  (one (tiles x C) @ (C x O) GEMM per ab),
    Y = A^T M A  (2x2 outputs per tile).

Exact in real arithmetic; in floating point the error is a small multiple of GEMM's.
Input with inf/NaN goes to ``gemm`` (a tile transform would spread it across the tile).
The work is split into bands (tile rows of one image, or several whole small images;
thinner bands where the images are fewer than the cores, as many as pay: ``_boxes``),
spread over one job per core (``_parallel``), each with single-threaded BLAS. Per band,
a job copies the input rows channels-last and zero-padded, a compiled loop (numba,
serial) transforms them into V, one batched matmul gives M and another compiled loop
transforms M into the band's output rows, all within a cache-sized workspace; the rows
are copied out channels-first.
"""

from __future__ import annotations

import numpy as np

from .. import _process
from .._process import split_range
from .._rules import Correlation
from . import _parallel
from ._boxes import most_boxes
from ._compiled import JIT_OPTIONS, lazy_kernel
from ._dtypes import all_finite, compute_dtype, result_dtype
from ._workspace import kernel_share, laid_out, scratch

name = "winograd"
G_MAT = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
KRON = np.kron(G_MAT, G_MAT)  # (16, 9): U[ab] = sum_ij G[a, i] G[b, j] w[i, j]
BAND_BYTES = 2 * 2**20  # a job's band: padded rows, V, M and output rows
BAND_CALLS = 10  # calls one band makes: its copies, transforms, GEMMs and output copy
MIN_TILES = 192  # tiles per band (GEMM rows) that whole small images are grouped up to


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return (
        tuple(rhs_shape[3:]) == (3, 3)
        and corr.window_strides == (1, 1)
        and corr.rhs_dilation == (1, 1)
        and corr.lhs_dilation == (1, 1)
    )


def compiled_variant(lhs_shape, rhs_shape, corr: Correlation) -> str:
    """The compiled kernels a call runs (see ``_primitive``): the tile transforms."""
    return "transforms"


def _tiles(lhs_shape, corr: Correlation):
    out = corr.output_spatial(lhs_shape[3:], (3, 3))
    th, tw = (out[0] + 1) // 2, (out[1] + 1) // 2
    return out, th, tw


def _band(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, limit=None):
    """(bands per image, images per band): each band's buffers within BAND_BYTES (and a
    core's share of ``limit``); whole images, several of them, when one fits; thinner bands
    where the images are fewer than the threads (``_thinned``)."""
    b, c = lhs_shape[1:3]
    o = rhs_shape[1]
    _, th, tw = _tiles(lhs_shape, corr)
    per_row = (2 * (2 * tw + 2) * c + 16 * tw * (c + o) + 4 * tw * o) * itemsize
    budget = BAND_BYTES if limit is None else min(BAND_BYTES, limit // _parallel.CORES)
    rows = max(1, min(th, budget // per_row))
    if rows == th:
        # enough tiles for an efficient GEMM even past the budget, but one band per core at
        # least where the batch allows
        images = max(budget // ((th + 1) * per_row), -(-MIN_TILES // (th * tw)), 1)
        cores = _process.jobs.cores()
        images = min(images, -(-b // min(b, cores)), b)
        if images > 1:
            return 1, images
    return _thinned(lhs_shape, rhs_shape, corr, -(-th // rows)), 1


def _thinned(lhs_shape, rhs_shape, corr: Correlation, parts: int, threads=None) -> int:
    """Bands per image, at least ``parts``: more, of fewer tile rows, where the images'
    bands are fewer than the ``threads`` (default: those in force), so that each thread
    gets one where the work allows (``_boxes.most_boxes``: a band makes about BAND_CALLS
    calls)."""
    g, b, c = lhs_shape[:3]
    _, th, tw = _tiles(lhs_shape, corr)
    threads = _parallel.workers(g * b * th) if threads is None else threads
    if g * b * parts >= threads:
        return parts
    most = most_boxes(g * b, (th,), 2.0 * 16 * rhs_shape[1] * c * th * tw, BAND_CALLS)
    return max(parts, min(-(-threads // (g * b)), most))


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the bands in flight (one per core): padded input rows, V, M, output rows;
    and the transformed filters."""
    g, _, c = lhs_shape[:3]
    o = rhs_shape[1]
    _, th, tw = _tiles(lhs_shape, corr)
    parts, images = _band(lhs_shape, rhs_shape, corr, itemsize)
    per_row = 2 * (2 * tw + 2) * c + 16 * tw * (c + o) + 4 * tw * o
    band = images * (-(-th // parts) + 1) * per_row
    return (_parallel.CORES * band + 16 * g * c * o) * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: 16 GEMMs of (tiles x C x O) and the tile transforms (in cache),
    the input and output copied once each."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    out, th, tw = _tiles(lhs_shape, corr)
    tiles = b * th * tw
    parts, images = _band(lhs_shape, rhs_shape, corr, itemsize)
    rows = -(-th // parts)
    flops = 2.0 * g * 16 * o * c * tiles
    moved = g * b * (4 * th * tw * c + 2 * o * out[0] * out[1]) * 2 * itemsize
    moved += g * tiles * 16 * (c + o) * itemsize  # the transforms, within the cache
    bands = g * -(-b // images) * parts
    moved /= _parallel.cores_for(bands)
    # jobs: the bands, or with cores to spare each image's thinnest bands
    jobs = max(bands, g * b * _thinned(lhs_shape, rhs_shape, corr, parts, threads=1 << 30))
    return Counts(
        flops, min(o, c, images * rows * tw), bytes=moved, calls=10 * bands + 10, jobs=jobs
    )


@lazy_kernel
def _input_transform(numba):
    """V[4a + b, t, :] = (B^T d B)[a, b] for every tile t of a band of n images: p (n,
    2R + 2, 2W + 2, C) padded rows channels-last, v (16, n*R*W, C); serial (it runs in a
    job)."""

    @numba.njit(**dict(JIT_OPTIONS, parallel=False))
    def kernel(p, v, rows, tw):
        cn = p.shape[3]
        for k in range(p.shape[0]):
            for ty in range(rows):
                d0, d1, d2, d3 = p[k, 2 * ty], p[k, 2 * ty + 1], p[k, 2 * ty + 2], p[k, 2 * ty + 3]
                for tx in range(tw):
                    t, x = (k * rows + ty) * tw + tx, 2 * tx
                    for c in range(cn):
                        # B^T along x, per row a: (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
                        e00 = d0[x, c] - d0[x + 2, c]
                        e01 = d0[x + 1, c] + d0[x + 2, c]
                        e02 = d0[x + 2, c] - d0[x + 1, c]
                        e03 = d0[x + 1, c] - d0[x + 3, c]
                        e10 = d1[x, c] - d1[x + 2, c]
                        e11 = d1[x + 1, c] + d1[x + 2, c]
                        e12 = d1[x + 2, c] - d1[x + 1, c]
                        e13 = d1[x + 1, c] - d1[x + 3, c]
                        e20 = d2[x, c] - d2[x + 2, c]
                        e21 = d2[x + 1, c] + d2[x + 2, c]
                        e22 = d2[x + 2, c] - d2[x + 1, c]
                        e23 = d2[x + 1, c] - d2[x + 3, c]
                        e30 = d3[x, c] - d3[x + 2, c]
                        e31 = d3[x + 1, c] + d3[x + 2, c]
                        e32 = d3[x + 2, c] - d3[x + 1, c]
                        e33 = d3[x + 1, c] - d3[x + 3, c]
                        # then along y
                        v[0, t, c] = e00 - e20
                        v[1, t, c] = e01 - e21
                        v[2, t, c] = e02 - e22
                        v[3, t, c] = e03 - e23
                        v[4, t, c] = e10 + e20
                        v[5, t, c] = e11 + e21
                        v[6, t, c] = e12 + e22
                        v[7, t, c] = e13 + e23
                        v[8, t, c] = e20 - e10
                        v[9, t, c] = e21 - e11
                        v[10, t, c] = e22 - e12
                        v[11, t, c] = e23 - e13
                        v[12, t, c] = e10 - e30
                        v[13, t, c] = e11 - e31
                        v[14, t, c] = e12 - e32
                        v[15, t, c] = e13 - e33

    return kernel


@lazy_kernel
def _output_transform(numba):
    """The band's outputs y (n, 2R, 2W, O) channels-last from m (16, n*R*W, O): per tile
    Y = A^T M A with A^T = ((1, 1, 1, 0), (0, 1, -1, -1)); serial (it runs in a job)."""

    @numba.njit(**dict(JIT_OPTIONS, parallel=False))
    def kernel(m, y, rows, tw):
        on = m.shape[2]
        for k in range(y.shape[0]):
            for ty in range(rows):
                top, bottom = y[k, 2 * ty], y[k, 2 * ty + 1]
                for tx in range(tw):
                    t, x = (k * rows + ty) * tw + tx, 2 * tx
                    for o in range(on):
                        # A^T along a, per column b: r0 = m0 + m1 + m2, r1 = m1 - m2 - m3
                        a0 = m[0, t, o] + m[4, t, o] + m[8, t, o]
                        a1 = m[1, t, o] + m[5, t, o] + m[9, t, o]
                        a2 = m[2, t, o] + m[6, t, o] + m[10, t, o]
                        a3 = m[3, t, o] + m[7, t, o] + m[11, t, o]
                        b0 = m[4, t, o] - m[8, t, o] - m[12, t, o]
                        b1 = m[5, t, o] - m[9, t, o] - m[13, t, o]
                        b2 = m[6, t, o] - m[10, t, o] - m[14, t, o]
                        b3 = m[7, t, o] - m[11, t, o] - m[15, t, o]
                        top[x, o] = a0 + a1 + a2
                        top[x + 1, o] = a1 - a2 - a3
                        bottom[x, o] = b0 + b1 + b2
                        bottom[x + 1, o] = b1 - b2 - b3

    return kernel


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, H, W), rhs (G, O, C, 3, 3) -> (G, B, O, H', W')."""
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    # the filters laid out (9 taps) and transformed (16 per filter)
    limit = kernel_share(rhs.size * 25 // 9 * compute.itemsize, workspace_limit)
    # a tile transform would spread inf/NaN to 2x2 outputs; a large filter copy would take
    # most of the limit
    if limit is None or not all_finite(lhs):
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    workspace_limit = limit
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    out, th, tw = _tiles(lhs.shape, corr)
    # U[ab, g] = (G w G^T)[a, b] for filters w = rhs[g, o, c], as a (C x O) matrix
    # (taps contiguous: a strided view, e.g. the flipped filters of dX, sent this small
    # matmul down a path that woke BLAS's threads, which then slowed every job 2x)
    taps = laid_out("winograd-taps", rhs.transpose(3, 4, 0, 2, 1), compute)
    u = scratch("winograd-u", 16 * g * c * o, compute).reshape(16, g, c, o)
    with _process.blas:  # single-threaded: BLAS's spinning workers would slow the jobs
        np.matmul(KRON.astype(compute), taps.reshape(9, -1), out=u.reshape(16, -1))
    parts, images = _band(lhs.shape, rhs.shape, corr, compute.itemsize, workspace_limit)
    rows = -(-th // parts)
    units = [
        (gi, b0, t0, t1)
        for gi in range(g)
        for b0 in range(0, b, images)
        for t0, t1 in split_range(th, parts)
    ]
    result = np.empty((g, b, o, *out), dtype=dtype)
    jobs = _parallel.workers(len(units))
    _parallel.run_jobs(
        lambda mine: _run_bands(lhs, u, corr, result, (rows, images), mine),
        [units[j::jobs] for j in range(jobs)],
    )
    return result


def _run_bands(lhs, u, corr: Correlation, result, band, units) -> None:
    """result[gi, b0 : b0 + images, :, 2*t0 : 2*t1] for each (gi, b0, t0, t1) of ``units``
    (at most ``rows`` tile rows each), on this thread's own workspaces; u (16, G, C, O)."""
    b, c, (h, w) = lhs.shape[1], lhs.shape[2], lhs.shape[3:]
    o, (oh, ow) = result.shape[2], result.shape[3:]
    rows, images = band
    compute = u.dtype
    _, _, tw = _tiles(lhs.shape, corr)
    (lo_h, _), (lo_w, _) = corr.padding
    pw = 2 * tw + 2
    # the four buffers start at different offsets mod 4 KiB: fresh ones all start at the
    # same one, and the transforms' loads and stores then alias (3x3-14: 12 vs 8 ms)
    p_buf = _staggered("winograd-rows", images * (2 * rows + 2) * pw * c, compute, 0)
    v_buf = _staggered("winograd-v", 16 * (images * rows * tw * c + 32), compute, 1)
    m_buf = _staggered("winograd-m", 16 * (images * rows * tw * o + 32), compute, 2)
    y_buf = _staggered("winograd-y", 4 * images * rows * tw * o, compute, 3)
    to_v, to_y = _input_transform(), _output_transform()
    # padded column j holds input column j - lo_w, where 0 <= j - lo_w < w
    x0, x1 = max(0, lo_w), min(pw, w + lo_w)
    for gi, b0, t0, t1 in units:
        k, n = min(b, b0 + images) - b0, t1 - t0
        p = p_buf[: k * (2 * n + 2) * pw * c].reshape(k, 2 * n + 2, pw, c)
        # padded rows 2*t0 .. 2*(t0 + n) + 1 hold input rows (that - lo_h)
        y0 = 2 * t0 - lo_h
        r0, r1 = max(0, -y0), min(2 * n + 2, h - y0)
        p[...] = 0
        if r1 > r0 and x1 > x0:
            src = lhs[gi, b0 : b0 + k, :, y0 + r0 : y0 + r1, x0 - lo_w : x1 - lo_w]
            p[:, r0:r1, x0:x1] = src.transpose(0, 2, 3, 1)
        v = _planes(v_buf, k * n * tw, c)
        to_v(p, v, n, tw)
        m = _planes(m_buf, k * n * tw, o)
        np.matmul(v, u[:, gi], out=m)
        y = y_buf[: 4 * k * n * tw * o].reshape(k, 2 * n, 2 * tw, o)
        to_y(m, y, n, tw)
        rows_out = min(oh - 2 * t0, 2 * n)
        np.copyto(
            result[gi, b0 : b0 + k, :, 2 * t0 : 2 * t0 + rows_out],
            y[:, :rows_out, :ow].transpose(0, 3, 1, 2),
            casting="unsafe",
        )


def _staggered(slot: str, size: int, dtype, k: int) -> np.ndarray:
    """scratch(slot, size) starting k * ~1 KiB (and 64 bytes more per k) into its buffer."""
    shift = k * (1024 + 64) // np.dtype(dtype).itemsize
    return scratch(slot, size + shift, dtype)[shift:]


def _planes(buffer: np.ndarray, tiles: int, channels: int) -> np.ndarray:
    """(16, tiles, channels) view of ``buffer``: planes apart by a stride off multiples
    of 4 KiB. The transforms write all 16 planes at once; with aligned planes those
    stores alias (3x3-14's input transform took 2.7 instead of 0.26 ms)."""
    size = tiles * channels
    stride = size + (32 if (size * buffer.itemsize) % 4096 < 256 else 0)
    return buffer[: 16 * stride].reshape(16, stride)[:, :size].reshape(16, tiles, channels)

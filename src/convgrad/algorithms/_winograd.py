"""Winograd F(m_1 x ... x m_d, 3 x ... x 3): 3-tap (3, 3x3, 3x3x3) window-stride-1
correlations in 1, 2 and 3 dims, the engine of the algorithms ``winograd`` and
``winograd4`` (their ``TILES``: outputs per tile per axis, by spatial dims). Tiles of
``alpha = m + 2`` input samples per axis (overlapping by 2) give m outputs per axis:

    U = g transformed by G along every axis      (prod(alpha) per filter (o, c), per call)
    V = d transformed by B^T along every axis    (prod(alpha) per (tile, c))
    M[p] = V[p] @ U[p]                           (one (tiles x C) @ (C x O) GEMM per point p)
    Y = M transformed by A^T along every axis    (prod(m) outputs per (tile, o))

prod(alpha) multiplications per prod(m) outputs instead of 3^d prod(m): 2.25x fewer for
F(2x2, 3x3), 4x for F(4x4, 3x3). The matrices are data (``_winograd_tiles``); one
compiled loop applies them axis by axis, skipping their zeros (``_winograd_kernels``).
Exact in real arithmetic; in floating point the error grows with m (docs/winograd.md).

A dilated filter (rhs dilation D > 1) runs as stride-1 correlations on phases: output
``i = q*D + ph`` reads padded input ``(q + j)*D + ph``, so each phase ph < D correlates
every D-th input sample with the undilated filter. Input with inf/NaN goes to ``gemm``
(a tile transform would spread it across the tile): each band checks the input it
gathered, in its job, so no pass of its own over the input precedes the jobs.

Work is cut into bands (tiles of one phase along the first spatial axis, of one image or
several whole small images). A band's input is gathered channels-last, x expanded by
tile, zero where it is padding; the compiled loop transforms it into V; matmuls give M;
the loop transforms M into the band's outputs, which are scattered back channels-first.
Bands run on one job per core, each within a cache-sized workspace of its thread.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from .. import _process
from .._rules import Correlation
from . import _parallel
from ._compiled import flat_view, read_only, unit_rows
from ._dtypes import compute_dtype, result_dtype
from ._winograd_kernels import copy, transform
from ._winograd_tiles import Tiles
from ._workspace import kernel_share, scratch

FIXED_CALLS = 50  # a call's own Python and NumPy calls (filters, checks, bands): about
# 250 us measured on the smallest layers, where the estimate had 50
BAND_BYTES = 2 * 2**20  # a job's band: input copy, V, M and outputs
MIN_TILES = 192  # tiles per band (GEMM rows) that whole small images are grouped up to
TEMP_BYTES = 64 * 1024  # the transform's partial sums: a block of each line's values


def supports(sizes: dict, lhs_shape, rhs_shape, corr: Correlation) -> bool:
    """3-tap filters along every axis of the spatial dims ``sizes`` has tiles for, window
    stride 1, no lhs dilation (rhs dilation runs on phases)."""
    return (
        len(rhs_shape) - 3 in sizes
        and all(k == 3 for k in rhs_shape[3:])
        and all(s == 1 for s in corr.window_strides)
        and all(ld == 1 for ld in corr.lhs_dilation)
    )


@functools.cache
def tiles(ms: tuple[int, ...]) -> Tiles:
    return Tiles(tuple(ms))


def _as_3(values, fill) -> tuple[int, ...]:
    return (fill,) * (3 - len(values)) + tuple(values)


class Geometry:
    """One correlation as the transforms see it, on three axes (missing leading ones of
    size 1): outputs, phases of the dilation, and tiles per phase."""

    def __init__(self, lhs_shape, rhs_shape, corr: Correlation, sizes: dict):
        self.dims = len(lhs_shape) - 3
        self.tiles = tiles(sizes[self.dims])
        self.size = _as_3(lhs_shape[3:], 1)
        self.out = _as_3(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]), 1)
        self.low = _as_3([lo for lo, _ in corr.padding], 0)
        self.dil = _as_3(corr.rhs_dilation, 1)
        self.phases = tuple(min(d, max(n, 0)) for d, n in zip(self.dil, self.out))
        self.axis = 3 - self.dims  # bands are cut along the first spatial axis

    def phase_out(self, ax: int, ph: int) -> int:
        """Outputs of phase ph along axis ax."""
        return -(-(self.out[ax] - ph) // self.dil[ax])

    @functools.lru_cache(maxsize=64)  # noqa: B019 (a few per call, and Geometry is small)
    def phase_tiles(self, ax: int, ph: int) -> int:
        return -(-self.phase_out(ax, ph) // self.tiles.step[ax])

    def all_phases(self):
        return itertools.product(*(range(p) for p in self.phases))

    def tile_count(self) -> int:
        """Tiles of one image, all phases."""
        return sum(
            math.prod(self.phase_tiles(ax, ph[ax]) for ax in range(3)) for ph in self.all_phases()
        )

    def extents(self, band_tiles: tuple[int, ...]):
        """(input grid, output grid) shapes of a block of ``band_tiles`` tiles per axis,
        x expanded by tile: (G0, G1, alpha_x, n_x) and (Y0, Y1, m_x, n_x), where grid cell
        (z, y, i, t) is sample (z, y, t*m_x + i) of the block."""
        step, alpha = self.tiles.step, self.tiles.alpha
        grid = tuple(n * s + a - s for n, s, a in zip(band_tiles[:2], step, alpha))
        out = tuple(n * s for n, s in zip(band_tiles[:2], step))
        return (*grid, alpha[2], band_tiles[2]), (*out, step[2], band_tiles[2])

    def band_tiles(self, rows: int) -> tuple[int, ...]:
        """Most tiles per axis of a band of ``rows`` tiles along the band axis."""
        full = [self.phase_tiles(ax, 0) for ax in range(3)]
        full[self.axis] = min(rows, full[self.axis])
        return tuple(full)

    def band_bytes(self, rows: int, c: int, o: int, itemsize: int) -> int:
        """Bytes of one image's band of ``rows`` tiles: input grid, V, M, output grid."""
        n = self.band_tiles(rows)
        grid, out = self.extents(n)
        planes = self.tiles.planes * math.prod(n)
        return (math.prod(grid) * c + planes * (c + o) + math.prod(out) * o) * itemsize


def band(geom: Geometry, lhs_shape, rhs_shape, itemsize: int, limit: int, cores: int):
    """(tiles along the band axis, images) per band: buffers of about BAND_BYTES, but at
    least MIN_TILES tiles (GEMM rows) where the image allows, never past a core's share of
    ``limit`` (of ``cores``); whole images, several of them, when one fits; and one band
    per core at least (images cut into rows where the batch is smaller than the cores)."""
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    full = max(1, geom.phase_tiles(geom.axis, 0))
    whole = geom.band_bytes(full, c, o, itemsize)
    per_row = -(-whole // full)
    row_tiles = max(1, math.prod(geom.band_tiles(1)))
    want = max(BAND_BYTES // per_row, -(-MIN_TILES // row_tiles), 1)  # rows
    hard = max(1, limit // max(1, cores))
    low, high = 1, min(want, full)  # the most rows within it (their halo included), one at least
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if geom.band_bytes(mid, c, o, itemsize) <= hard else (low, mid - 1)
    want = low if low < full else want
    if g * b * _bands(geom, full) < cores:  # too few images: cut them into rows
        want = min(want, -(-full // -(-cores // (g * b * _bands(geom, full)))))
    if want < full:  # bands of equal rows (13 + 2 rows would leave a core idle)
        return -(-full // -(-full // want)), 1
    images = max(BAND_BYTES // whole, -(-MIN_TILES // (row_tiles * full)), 1)
    images = min(images, max(1, hard // whole))
    groups = -(-cores // (g * _bands(geom, full)))  # image groups wanted
    images = min(images, -(-b // min(b, groups)))
    return full, min(images, b)


def _bands(geom: Geometry, rows: int) -> int:
    """Bands of one image group: over phases, tiles along the band axis cut by ``rows``."""
    ax = geom.axis
    return sum(-(-geom.phase_tiles(ax, ph[ax]) // rows) for ph in geom.all_phases())


def workspace_bytes(sizes: dict, lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the bands in flight (one per core) and of the filters, laid out and
    transformed."""
    geom = Geometry(lhs_shape, rhs_shape, corr, sizes)
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    rows, images = band(
        geom, lhs_shape, rhs_shape, itemsize, _process.DEFAULT_WORKSPACE_LIMIT, _parallel.CORES
    )
    per_band = images * geom.band_bytes(rows, c, o, itemsize)
    filters = (geom.tiles.planes + 3**geom.dims) * g * c * o * itemsize
    return _parallel.CORES * per_band + filters


def counts(
    sizes: dict, lhs_shape, rhs_shape, corr: Correlation, itemsize: int, cores: int, limit: int
):
    """Machine-free work: alpha^d GEMMs of (tiles x C x O); the transforms' multiply-adds
    (a compiled loop over long vectors, in cache); the input and output copied once each;
    the filters laid out and transformed (split over the jobs too); and each band's GEMMs
    reading and packing every plane's filters (BLAS packs B per call: 3 passes over
    them, which outweigh the GEMMs for few tiles and many channels)."""
    from .._plan import Counts

    geom = Geometry(lhs_shape, rhs_shape, corr, sizes)
    t = geom.tiles
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    tiles_all = g * b * geom.tile_count()
    rows, images = band(geom, lhs_shape, rhs_shape, itemsize, limit, cores)
    flops = 2.0 * t.planes * o * c * tiles_all
    loop = 2.0 * tiles_all * (t.terms("bt") * c + t.terms("at") * o)
    outputs = g * b * math.prod(geom.out)
    moved = (tiles_all * math.prod(t.step) * c + 2 * outputs * o) * 2 * itemsize
    moved += tiles_all * t.planes * (c + o) * itemsize  # V and M, within the cache
    bands = g * -(-b // images) * _bands(geom, rows)
    filters = t.planes * g * c * o * itemsize  # U: read and packed by every band's GEMMs
    moved += 3 * filters * bands / g
    moved += filters + 3 * 3**geom.dims * g * c * o * itemsize  # laid out and transformed
    moved /= _parallel.cores_for(bands, cores)
    band_tiles = images * math.prod(geom.band_tiles(rows))
    return Counts(
        flops,
        min(o, c, band_tiles),
        transform_flops=loop,
        bytes=moved,
        calls=10 * bands + FIXED_CALLS,
        jobs=bands,
    )


def run(sizes: dict, name: str, lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, limit: int):
    """lhs (G, B, C, *S), rhs (G, O, C, 3, ...) -> (G, B, O, *S') by the tiles
    ``sizes[d]`` (outputs per tile per axis) of d spatial dims."""
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    geom = Geometry(lhs.shape, rhs.shape, corr, sizes)
    t, dims = geom.tiles, geom.dims
    taps = 3**dims
    # the filters laid out (taps) and transformed (planes): a large filter copy would take
    # most of the limit
    share = kernel_share(rhs.size * (taps + t.planes) // taps * compute.itemsize, limit)
    if share is None:
        from . import gemm

        return gemm.run(lhs, rhs, corr, limit)
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    out = corr.output_spatial(lhs.shape[3:], rhs.shape[3:])
    result = np.empty((g, b, o, *out), dtype=compute)
    if result.size == 0:
        return result.astype(dtype)
    u = _transformed_filters(name, t, rhs, compute)
    rows, images = band(geom, lhs.shape, rhs.shape, compute.itemsize, share, _process.jobs.cores())
    # the compiled loops take compute-dtype rows of unit stride (a copy otherwise)
    lhs3 = unit_rows(lhs.astype(compute, copy=False)).reshape(g, b, c, *geom.size)
    bands = Bands(name, geom, lhs3, result.reshape(g, b, o, *geom.out), rows, images)
    units = [
        unit
        for gi in range(g)
        for b0 in range(0, b, images)
        for unit in bands.units(gi, b0, min(b, b0 + images))
    ]
    jobs = _parallel.workers(len(units))
    # each job a contiguous run of bands: jobs striding over the bands wrote the phases of
    # one row side by side (a dilated layer: every other output), sharing cache lines
    # (dilated 3x3 forward on two threads: 7.5 -> 6.9 ms, its scatter 2x -> 1x one thread's)
    mine = [units[lo:hi] for lo, hi in _process.split_range(len(units), jobs)]
    finite = _parallel.run_jobs(lambda part: bands.run(u, part), mine)
    if not all(finite):  # an inf or NaN in the input: the bands' copies saw it
        from . import gemm

        return gemm.run(lhs, rhs, corr, limit)
    return result if result.dtype == dtype else result.astype(dtype)


def entry_points(name: str, sizes: dict):
    """(supports, compiled_variant, workspace_bytes, counts, run) of the registry's
    algorithm ``name`` with tiles of ``sizes`` outputs per axis (by spatial dims)."""

    def supports_(lhs_shape, rhs_shape, corr: Correlation) -> bool:
        return supports(sizes, lhs_shape, rhs_shape, corr)

    def compiled_variant(lhs_shape, rhs_shape, corr: Correlation) -> str:
        """The compiled kernels a call runs (see ``_primitive``): the tile transforms."""
        return "transforms"

    def workspace_bytes_(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
        return workspace_bytes(sizes, lhs_shape, rhs_shape, corr, itemsize)

    def counts_(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, *, cores, limit):
        return counts(sizes, lhs_shape, rhs_shape, corr, itemsize, cores, limit)

    def run_(lhs, rhs, corr: Correlation, workspace_limit: int):
        """lhs (G, B, C, *S), rhs (G, O, C, 3, ...) -> (G, B, O, *S')."""
        return run(sizes, name, lhs, rhs, corr, workspace_limit)

    return supports_, compiled_variant, workspace_bytes_, counts_, run_


class Bands:
    """The bands of one call: a band is (group gi, images b0 : b1, phase ph, tiles t0 ...
    along the band axis); lhs3 (G, B, C, D, H, W), result3 (G, B, O, D', H', W'). Each
    thread that runs a band uses its own workspaces."""

    def __init__(self, name: str, geom: Geometry, lhs3, result3, rows: int, images: int):
        self.name, self.geom, self.lhs3, self.result3 = name, geom, lhs3, result3
        self.rows, self.images = rows, images
        self.src, self.src_strides = flat_view(lhs3, writeable=False)
        self.dst, self.dst_strides = flat_view(result3)
        t, dtype = geom.tiles, lhs3.dtype
        self.most = geom.band_tiles(rows)  # tiles per axis of the largest band
        self.cells = max(math.prod(shape) for shape in geom.extents(self.most))
        self.bt, self.at = ((ptr, cols, vals.astype(dtype)) for ptr, cols, vals in (t.bt, t.at))
        self.blocks = [  # channels per copy: (gather, scatter)
            _channel_block(self.src_strides[2], lhs3.shape[2], dtype.itemsize),
            _channel_block(self.dst_strides[2], result3.shape[2], dtype.itemsize),
        ]

    def units(self, gi: int, b0: int, b1: int) -> list:
        ax = self.geom.axis
        return [
            (gi, b0, b1, ph, t0)
            for ph in self.geom.all_phases()
            for t0 in range(0, self.geom.phase_tiles(ax, ph[ax]), self.rows)
        ]

    def shape(self, unit):
        """(tiles per axis, first sample per axis) of a band."""
        _, _, _, ph, t0 = unit
        geom, ax = self.geom, self.geom.axis
        n = [geom.phase_tiles(a, ph[a]) for a in range(3)]
        n[ax] = min(self.rows, n[ax] - t0)
        first = [t0 * geom.tiles.step[a] if a == ax else 0 for a in range(3)]
        return n, first

    def tile_count(self, unit) -> int:
        return (unit[2] - unit[1]) * math.prod(self.shape(unit)[0])

    def _buffers(self, c: int, dtype):
        """This thread's grid buffer (the input's, then the output's), the line block and
        the transform's partial sums."""
        t = self.geom.tiles
        grid = _staggered(f"{self.name}-grid", self.images * self.cells * c, dtype, 0)
        a1, a2 = t.alpha[1], t.alpha[2]
        block = _line_block(t, self.most[2] * c, dtype.itemsize)
        temps = scratch(f"{self.name}-temps", (a1 * a2 + a2) * block, dtype)
        return grid, block, temps[: a1 * a2 * block], temps[a1 * a2 * block :]

    def _grids(self, unit, channels: int, outputs: bool, dtype):
        """What moving a band's grid of ``channels`` to or from its planes needs: (this
        thread's grid buffer, the copy's parameters, the transform's parameters but the
        plane stride and the direction, the transform's temporaries). ``outputs``: the
        output grid (else the input's)."""
        gi, b0, b1, ph, _ = unit
        geom, t = self.geom, self.geom.tiles
        n, first = self.shape(unit)
        extent = geom.extents(n)[1 if outputs else 0]
        buf, block, t1, t2 = self._buffers(channels, dtype)
        images = b1 - b0
        grid = buf[: images * math.prod(extent) * channels]
        prm = [gi, b0, images, channels, *extent, t.step[2], self.blocks[1 if outputs else 0]]
        prm += _axis_params(geom, ph, first, outputs)
        geo = [images, n[0], n[1], n[2] * channels, block, *extent[:2], *t.step, *t.alpha]
        return grid, np.array(prm, np.int64), geo, t1, t2

    def to_planes(self, unit, planes, stride: int) -> bool:
        """The band's input, transformed, into ``planes`` (flat, planes ``stride`` apart,
        the band's tiles from its start); whether that input was finite (else the planes
        are left as they are)."""
        c = self.lhs3.shape[2]
        p, prm, geo, t1, t2 = self._grids(unit, c, False, planes.dtype)
        copy()(self.src, p, self.src_strides, prm, True)
        if not np.isfinite(p).all():  # in cache, in this job: no pass of its own before
            return False
        transform()(p, planes, np.array([*geo, stride, 1], np.int64), *self.bt, t1, t2)
        return True

    def from_planes(self, unit, planes, stride: int) -> None:
        """The band's outputs from ``planes`` (flat, planes ``stride`` apart, the band's
        tiles from its start), into result3."""
        o = self.result3.shape[2]
        y, prm, geo, t1, t2 = self._grids(unit, o, True, planes.dtype)
        transform()(y, planes, np.array([*geo, stride, 0], np.int64), *self.at, t1, t2)
        copy()(read_only(y), self.dst, self.dst_strides, prm, False)

    def run(self, u, units) -> bool:
        """Each band of ``units`` whole: its planes, their GEMMs, its outputs, in this
        thread's cache-sized workspaces; u (P, G, C, O). False as soon as a band's input
        holds an inf or NaN (the call then goes to ``gemm``)."""
        t = self.geom.tiles
        c, o = self.lhs3.shape[2], self.result3.shape[2]
        most = self.images * math.prod(self.most)
        # the buffers start at different offsets mod 4 KiB: fresh ones all start at the
        # same one, and the transforms' loads and stores then alias (3x3-14: 12 vs 8 ms)
        v_buf = _staggered(f"{self.name}-v", t.planes * (most * c + 32), u.dtype, 1)
        m_buf = _staggered(f"{self.name}-m", t.planes * (most * o + 32), u.dtype, 2)
        for unit in units:
            count = self.tile_count(unit)
            v, v_stride = _planes(v_buf, t.planes, count, c)
            if not self.to_planes(unit, v_buf, v_stride):
                return False
            m, m_stride = _planes(m_buf, t.planes, count, o)
            np.matmul(v, u[:, unit[0]], out=m)
            self.from_planes(unit, m_buf, m_stride)
        return True


def _transformed_filters(name: str, t: Tiles, rhs: np.ndarray, compute) -> np.ndarray:
    """U (P, G, C, O): U[p, g] = the filters rhs[g] (O, C, 3, ...) transformed at point p,
    as a (C x O) matrix (the GEMMs ran 25 % slower on its transpose): products of the
    filter transform with the filters laid out (G, C, O, taps), read in place where they
    are so (dX's flipped filters: their flipped taps are a permutation of the transform's
    columns), else copied there. Large filters are split by input channels over the
    jobs (3x3-14's 256 x 256 filters took 1.3 ms, a third of the call on two cores)."""
    dims = rhs.ndim - 3
    flips = tuple(ax for ax in range(3, 3 + dims) if rhs.strides[ax] < 0)
    filters = t.filters.reshape(t.planes, *(3,) * dims)
    filters = np.flip(filters, [ax - 2 for ax in flips]).reshape(t.planes, -1).astype(compute)
    g, o, c = rhs.shape[:3]
    taps = filters.shape[1]
    # taps merged into one axis: a copy's inner runs are whole filters (3x the speed)
    view = (np.flip(rhs, flips) if flips else rhs).reshape(g, o, c, taps).transpose(0, 2, 1, 3)
    in_place = rhs.dtype == compute and view.flags.c_contiguous
    laid = view if in_place else scratch(f"{name}-taps", view.size, compute).reshape(view.shape)
    # points apart by a stride off multiples of 4 KiB, as the planes of V and M: with
    # aligned points the product's rows (one per point) alias (3x3-14: 0.45 vs 0.26 ms)
    u_buffer = scratch(f"{name}-u", t.planes * (g * c * o + 32), compute)
    u = _planes(u_buffer, t.planes, g * c, o)[0].reshape(t.planes, g, c, o)

    def part(box) -> None:
        gi, c0, c1 = box
        if not in_place:
            np.copyto(laid[gi, c0:c1], view[gi, c0:c1], casting="unsafe")
        # a strided view in this product sent it down a path that woke BLAS's threads,
        # which then slowed every job 2x: the filters are contiguous here
        rows = laid[gi, c0:c1].reshape(-1, taps)
        np.matmul(filters, rows.T, out=u[:, gi, c0:c1].reshape(t.planes, -1))

    flops = 2.0 * t.planes * taps * g * c * o
    parts = _parallel.workers(g * c) if flops > _parallel.PARALLEL_FLOPS else 1
    per = -(-(g * c) // parts)  # channels per part, counted over the groups
    boxes = [(gi, c0, min(c, c0 + per)) for gi in range(g) for c0 in range(0, c, min(per, c))]
    if parts > 1:
        _parallel.run_jobs(
            lambda mine: [part(box) for box in mine], [boxes[j::parts] for j in range(parts)]
        )
    else:
        with _process.blas:  # single-threaded: BLAS's spinning workers would slow the jobs
            for box in boxes:
                part(box)
    return u


def _axis_params(geom: Geometry, ph, first, into_result: bool) -> list[int]:
    """Per axis (first sample, D, offset, size) of a band's cells for ``copy``: cell j
    holds phase ph's sample s = first + j, at source index s*D + ph - low, or at result
    index s*D + ph; inside when that index is below the source's or the result's size."""
    params = []
    for a in range(3):
        offset = ph[a] if into_result else ph[a] - geom.low[a]
        params += [first[a], geom.dil[a], offset, (geom.out if into_result else geom.size)[a]]
    return params


def _channel_block(stride: int, channels: int, itemsize: int) -> int:
    """Channels that gather and scatter copy at once: their lines, ``stride`` elements
    apart, spread over the L1 cache's 64 sets (of 64 bytes, 4 KiB a turn) at most 8 to a
    set. A channel stride of a multiple of 4 KiB (a 32x32 or 64x64 map, a row of 4096)
    puts every channel in one set: 8 at a time then (10x faster than all 64)."""
    lines = stride * itemsize // 64
    sets = 64 // math.gcd(lines % 64, 64) if stride * itemsize % 64 == 0 else 64
    return max(1, min(channels, 8 * sets))


def _line_block(t: Tiles, size: int, itemsize: int) -> int:
    """Values of a line per pass of the transform: its partial sums within TEMP_BYTES."""
    a1, a2 = t.alpha[1], t.alpha[2]
    vectors = (a1 * a2 if t.dims == 3 else 0) + (a2 if t.dims >= 2 else 0)
    block = TEMP_BYTES // (max(vectors, 1) * itemsize)
    block -= block % 16
    return max(16, min(size, block))


def _staggered(slot: str, size: int, dtype, k: int) -> np.ndarray:
    """scratch(slot, size) starting k * ~1 KiB (and 64 bytes more per k) into its buffer."""
    shift = k * (1024 + 64) // np.dtype(dtype).itemsize
    return scratch(slot, size + shift, dtype)[shift:]


def _planes(buffer: np.ndarray, planes: int, tiles: int, channels: int):
    """((planes, tiles, channels) view of ``buffer``, its plane stride): planes apart by a
    stride off multiples of 4 KiB. The transforms write all planes at once; with aligned
    planes those stores alias (3x3-14's input transform took 2.7 instead of 0.26 ms)."""
    size = tiles * channels
    stride = size + (32 if (size * buffer.itemsize) % 4096 < 256 else 0)
    view = buffer[: planes * stride].reshape(planes, stride)[:, :size]
    return view.reshape(planes, tiles, channels), stride

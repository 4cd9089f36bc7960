"""FFT correlation: real transforms over the spatial axes, the channel sum per frequency.

Per spatial dim, output i reads lhs samples i*ws - lo + j*rd (taps j). The outputs are
cut into tiles (overlap-save; one tile where that is cheapest). A tile's lhs samples
[start, stop) are copied into a zeroed real buffer of transform length n at ``shift``
(the low padding its first window meets), the kernel dilated by zero insertion (extent
rd*(K-1)+1) into one of the same length at 0, and

    Y[u, o, f] = sum_c X[u, c, f] * conj(W[o, c, f])     (X, W: rfftn of the buffers)

is the circular correlation whose entries 0, ws, 2*ws, ... are the tile's outputs
(u: an image's tile). n is ``scipy.fft.next_fast_len`` of the least length at which no
read wraps onto a sample: max(shift + stop - start, span + extent - shift, extent),
span = (outputs - 1)*ws. Outputs whose windows lie wholly in padding are zeros and not
computed; a window stride is computed at stride 1 and subsampled. The tile sizes are
those of the lowest estimate of the cost model (``tiling``): small tiles keep the
kernel's transforms (O*C planes of n) small, large ones waste less on overlaps.

The channel sum is a batched complex GEMM over frequencies ((F, U, C) @ (F, C, O), in
cache-sized frequency-major blocks), or, for one channel (depthwise) or at most two
outputs per frequency, broadcast products. The kernel's transforms are DFTs of its taps
by GEMMs where that is cheaper than rfftn (small kernels), written frequency-major in
place; made once where they fit in half the workspace limit, else per chunk. Each
chunk (groups, images' tiles, channels, filters) runs in phases, each split into jobs
on the pool: the lhs's transforms (by planes), the channel sum (by frequencies), the
inverse transforms and the outputs picked out (by planes); transforms single-threaded
(``workers=1``), BLAS too. An inf or NaN would spread over a whole transform: such
inputs go to ``gemm``. Lhs dilation is not supported.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import numpy as np

from .. import _process
from .._rules import Correlation
from . import _parallel
from ._dtypes import all_finite, compute_dtype, result_dtype
from ._geometry import prod
from ._workspace import chunk, scratch

name = "fft"


class Dim(NamedTuple):
    """One spatial dim: ``size`` lhs samples, low padding ``lo``, the dilated kernel's
    ``extent`` (taps ``dilation`` apart), window ``stride``; outputs first .. first +
    count - 1 are computed (the others meet padding only), ``tile`` per tile, each on an
    ``n``-point transform."""

    size: int
    lo: int
    extent: int
    dilation: int
    stride: int
    first: int
    count: int
    tile: int
    n: int

    @property
    def tiles(self) -> int:
        return -(-self.count // self.tile)

    def window(self, t: int) -> tuple[slice, slice, slice, slice]:
        """Tile t's (outputs, lhs samples, their place in the buffer, the outputs'
        entries of the correlation)."""
        i0 = self.first + t * self.tile
        i1 = min(self.first + self.count, i0 + self.tile)
        m0, m1 = i0 * self.stride - self.lo, (i1 - 1) * self.stride - self.lo
        start, stop, shift = max(0, m0), min(self.size, m1 + self.extent), max(0, -m0)
        picked = slice(0, (i1 - i0 - 1) * self.stride + 1, self.stride)
        return slice(i0, i1), slice(start, stop), slice(shift, shift + stop - start), picked

    def need(self, t: int) -> int:
        """The least transform length for tile t."""
        out, src, dst, picked = self.window(t)
        return max(dst.stop, picked.stop - 1 + self.extent - dst.start, self.extent)


def fast_len(n: int) -> int:
    """The least 2**a * 3**b * 5**c >= n: ``scipy.fft.next_fast_len(n, real=True)``
    without importing scipy.fft at planning time."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            quotient = -(-n // p35)  # the least power of two >= quotient, times p35
            p2 = 1 << (quotient - 1).bit_length() if quotient > 1 else 1
            best = min(best, p2 * p35)
            p35 *= 3
        p5 *= 5
    return best


def _tiled(dim: Dim, tile: int) -> Dim:
    """dim cut into tiles of ``tile`` outputs, n fitting its widest tile."""
    dim = dim._replace(tile=tile, n=1)
    widest = max(dim.need(t) for t in {0, min(1, dim.tiles - 1), dim.tiles - 1})
    return dim._replace(n=fast_len(widest))


def dims(lhs_shape, rhs_shape, corr: Correlation) -> tuple[Dim, ...] | None:
    """Per spatial dim, the outputs computed, as one tile (``Dim``); None where no output
    meets a sample (all zeros) or there are no outputs."""
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    result = []
    for size, k, n_out, ws, rd, (lo, _) in zip(
        lhs_shape[3:], rhs_shape[3:], out, corr.window_strides, corr.rhs_dilation, corr.padding
    ):
        extent = rd * (k - 1) + 1
        first = max(0, -((extent - 1 - lo) // ws))  # ceil((lo - extent + 1) / ws)
        last = min(n_out - 1, (size - 1 + lo) // ws)
        if n_out <= 0 or size <= 0 or k <= 0 or first > last:
            return None
        count = last - first + 1
        result.append(_tiled(Dim(size, lo, extent, rd, ws, first, count, count, 0), count))
    return tuple(result)


def _tile_options(dim: Dim) -> list[int]:
    """Tile sizes worth trying in one dim: whole, and those whose transforms are about
    2-64x the kernel's extent (and 16-1024 points)."""
    options = {dim.count}
    targets = [dim.extent * f for f in (2, 3, 4, 6, 8, 16, 32, 64)] + [16, 32, 64, 128, 256, 1024]
    for n in {fast_len(int(t)) for t in targets}:
        tile = (n - dim.extent) // dim.stride + 1
        if 1 <= tile < dim.count and n >= 2 * dim.extent:
            options.add(tile)
    return sorted(options)


@functools.lru_cache(maxsize=1024)
def tiling(
    lhs_shape: tuple, rhs_shape: tuple, corr: Correlation, itemsize: int, cores: int, limit: int
):
    """The tiles of the lowest estimate of the cost model (``_plan.seconds``) on ``cores``
    cores under the workspace ``limit``, per dim (``Dim``), one dim at a time from whole
    tiles, twice over; None as ``dims``."""
    from .._plan import seconds

    whole = dims(lhs_shape, rhs_shape, corr)
    if whole is None or 0 in lhs_shape[:3] + rhs_shape[1:2]:
        return whole
    options = [[_tiled(d, t) for t in _tile_options(d)] for d in whole]
    best = list(whole)

    def cost(k, dim):
        geometry = (*best[:k], dim, *best[k + 1 :])
        return seconds(
            _counts(lhs_shape, rhs_shape, geometry, itemsize, cores, limit), threads=cores
        )

    for _ in range(2):
        for k, choices in enumerate(options):
            best[k] = min(choices, key=lambda dim: cost(k, dim))
    return tuple(best)


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    """No lhs dilation, and a whole transform no larger than twice the lhs plus its
    im2col columns (a huge dilation with 'same' padding would transform mostly zeros)."""
    if any(ld != 1 for ld in corr.lhs_dilation):
        return False
    geometry = dims(lhs_shape, rhs_shape, corr)
    if geometry is None:
        return True
    columns = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:])) * prod(rhs_shape[3:])
    return prod(d.n for d in geometry) <= 2 * (prod(lhs_shape[3:]) + columns)


def _freqs(geometry) -> tuple[int, ...]:
    """Shape of one plane's rfftn."""
    return (*(d.n for d in geometry[:-1]), geometry[-1].n // 2 + 1)


def _broadcast(u: int, c: int, o: int) -> bool:
    """Whether the channel sum runs as broadcast products (one channel, or at most two
    outputs per frequency) rather than a GEMM per frequency (measured: (F, 8, 1) @
    (F, 1, 1) matmuls 3 GFLOP/s, the products 14; (F, 8, 3) @ (F, 3, 64) 30)."""
    return c == 1 or u * o <= 2


JOB_BYTES = 4 * 2**20  # a job's own buffers: its transform calls', or its product blocks
BLOCK_BYTES = 256 * 2**10  # a block of the channel sum's frequency-major copies: cache-sized
SMALL_KERNEL = 64 * 2**10  # the kernel's transforms this small are made once whatever the limit


class Plan(NamedTuple):
    """How the work is cut: groups, units (an image's tile) and channels and filters
    per chunk (the lhs's transforms X and the products Y of a chunk are held whole);
    planes per transform call; bytes of a block of the channel sum; whether the
    kernel's transforms are made once for all chunks; whether the channel sum runs as
    broadcast products."""

    g: int
    u: int
    c: int
    o: int
    planes: int
    block_bytes: int
    kernel_once: bool
    broadcast: bool


def _plane_bytes(geometry, isz: int) -> tuple[int, int]:
    """(bytes of a real n-point plane, of its complex transform)."""
    return prod(d.n for d in geometry) * isz, prod(_freqs(geometry)) * 2 * isz


def _kernel_plane_bytes(rhs_shape, geometry, isz: int) -> float:
    """Bytes per (filter, channel) of the kernel's transforms: the transform, and where
    its taps go through DFT GEMMs the taps laid out twice on a zero grid and, in n-D,
    the first stages' results (K_0 / n_0 of a transform, two alive at once)."""
    kernel = rhs_shape[3:]
    cplx = _plane_bytes(geometry, isz)[1]
    if not kernel_by_dft(geometry, kernel):
        return cplx
    stages = 2 * kernel[0] / geometry[0].n * cplx if len(geometry) > 1 else 0
    return cplx + stages + 4 * prod(kernel) * isz


def plan(lhs_shape, rhs_shape, geometry, isz: int, limit: int, cores: int) -> Plan:
    """Chunk sizes under ``limit`` with ``cores`` jobs in flight: each job's buffers
    (kept: two real buffers per plane of a transform call, two product blocks; a call's
    transform and inverse temporaries besides), the kernel's transforms where they fit
    in half of what is left, and per chunk X and Y (and the kernel's part where it is
    made per chunk). Units first, then groups, channels and filters."""
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    units = b * prod(d.tiles for d in geometry)
    real, cplx = _plane_bytes(geometry, isz)
    own = min(JOB_BYTES, limit // (8 * max(1, cores)))  # half of a job's buffers
    planes = chunk(1 << 40, 3 * real + 2 * cplx, own)
    block_bytes = min(BLOCK_BYTES, own // 2)
    left = max(1, limit - max(1, cores) * 2 * own)
    per_kernel = math.ceil(_kernel_plane_bytes(rhs_shape, geometry, isz))
    kernel = g * o * c * per_kernel
    once = kernel <= max(left // 2, SMALL_KERNEL)
    budget = max(1, left - kernel if once else left)
    k = 0 if once else per_kernel  # the kernel's part per (filter, channel) of a chunk
    unit = (c + o) * cplx + o * c * k  # X, Y (and the kernel) of one group's unit
    gn, un, cn, on = g, units, c, o
    if g * unit <= budget:
        un = chunk(units, g * (c + o) * cplx, budget - g * k * o * c)
    elif unit <= budget:
        gn, un = chunk(g, unit, budget), 1
    else:  # one unit too large: chunk the channels, then the filters
        gn, un = 1, 1
        cn = chunk(c, cplx + o * k, budget - o * cplx)
        if (cn + o) * cplx + o * cn * k > budget:
            cn, on = 1, chunk(o, cplx + k, budget - cplx)
    return Plan(gn, un, cn, on, planes, block_bytes, once, _broadcast(un, cn, on))


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the unchunked transforms (the tiling chosen for this machine's cores and
    the default limit): the kernel's, the lhs's and the products."""
    geometry = tiling(
        tuple(lhs_shape),
        tuple(rhs_shape),
        corr,
        itemsize,
        _parallel.CORES,
        _process.DEFAULT_WORKSPACE_LIMIT,
    )
    if geometry is None:
        return 0
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    cplx = _plane_bytes(geometry, itemsize)[1]
    kernel = g * o * c * _kernel_plane_bytes(rhs_shape, geometry, itemsize)
    return int(kernel) + g * b * prod(d.tiles for d in geometry) * (c + o) * cplx


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, *, cores: int, limit: int):
    """Work of the cheapest tiling (``tiling``) on ``cores`` cores under ``limit``: see
    ``_counts``."""
    from .._plan import Counts

    geometry = tiling(tuple(lhs_shape), tuple(rhs_shape), corr, itemsize, cores, limit)
    if geometry is None or 0 in lhs_shape[:3] + rhs_shape[1:2]:
        outputs = lhs_shape[0] * lhs_shape[1] * rhs_shape[1]
        outputs *= prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
        return Counts(bytes=2.0 * outputs * itemsize, calls=2, jobs=1)
    return _counts(lhs_shape, rhs_shape, geometry, itemsize, cores, limit)


def _counts(lhs_shape, rhs_shape, geometry, itemsize: int, cores: int, limit: int):
    """Work on tiles ``geometry``: 2.5 n log2 n flops per real n-point transform (the
    lhs tiles' per chunk of filters, the kernel's once or per chunk of units where its
    taps are not transformed by GEMMs, the inverses), 8 flops per complex multiply-add
    of the channel sum, and the copies: the lhs into zeroed buffers, the transforms into
    X and Y, the channel sum's frequency-major blocks, the outputs picked out."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, kernel = rhs_shape[1], rhs_shape[3:]
    tiles = prod(d.tiles for d in geometry)
    units = b * tiles
    freqs = prod(_freqs(geometry))
    real, cplx = _plane_bytes(geometry, itemsize)
    p = plan(lhs_shape, rhs_shape, geometry, itemsize, limit, cores)
    chunks = -(-g // p.g) * -(-units // p.u)  # (group, unit) chunks
    o_chunks, c_chunks = -(-o // p.o), -(-c // p.c)
    kernel_runs = 1 if p.kernel_once else chunks
    by_dft = kernel_by_dft(geometry, kernel)
    transforms = g * (units * c * o_chunks + units * o + (0 if by_dft else o * c * kernel_runs))
    products = 8.0 * g * units * c * o * freqs
    dft = g * o * c * kernel_runs * dft_flops(geometry, kernel) if by_dft else 0.0
    window = prod(min(d.size, (d.tile - 1) * d.stride + d.extent) for d in geometry) * itemsize
    outputs = g * b * o * prod(d.count for d in geometry) * itemsize
    x_planes, y_planes = g * units * c * o_chunks, g * units * o
    moved = x_planes * (window + 2 * real + 3 * cplx)  # buffers, transforms into X
    moved += y_planes * (3 * cplx + real) + 2 * outputs  # inverses, outputs picked
    moved += g * o * c * kernel_runs * 2 * cplx  # the kernel's transforms written
    if p.broadcast:  # each channel's products added into Y
        moved += g * units * o * c * 3 * cplx
    else:  # X and Y in frequency-major blocks, the kernel read per chunk of units
        moved += 2 * x_planes * cplx + 2 * y_planes * c_chunks * cplx
        moved += g * o * c * cplx * -(-units // p.u)
    moved += g * (b * c * prod(d.size for d in geometry) + o * c * prod(kernel)) * itemsize
    steps = chunks * o_chunks * (c_chunks * 3 + 2)  # phases handed to the pool
    boxes = (x_planes + y_planes) // p.planes + 2 * steps  # transform calls
    copies = boxes if tiles == 1 else x_planes // p.c + y_planes // p.o  # per tile
    per_freq = p.g * p.u * (p.o if p.broadcast else max(p.c, p.o)) * 2 * itemsize
    blocks = chunks * o_chunks * c_chunks * -(-freqs // max(1, p.block_bytes // per_freq))
    calls = steps * 2 + boxes * 4 + copies + blocks * (p.c if p.broadcast else 3)
    units_jobs = min(-(-g * units * c // p.planes), -(-g * units * o // p.planes))
    return Counts(
        gemm_flops=dft + (0.0 if p.broadcast else products),
        gemm_min_dim=min(p.u, p.c, p.o) if not p.broadcast else min(kernel),
        fft_flops=fft_flops(geometry) * transforms,
        loop_flops=products if p.broadcast else 0.0,
        bytes=moved,
        calls=calls + 20,
        jobs=max(1, min(units_jobs, 4 * cores)),
    )


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    out_spatial = corr.output_spatial(lhs.shape[3:], rhs.shape[3:])
    threads = _parallel.workers(_parallel.CORES)  # the planner's count: threads in force
    geometry = tiling(lhs.shape, rhs.shape, corr, compute.itemsize, threads, workspace_limit)
    if geometry is None or 0 in (g, b, c, o):
        return np.zeros((g, b, o, *out_spatial), dtype=dtype)
    # a transform spreads an inf or NaN over every output of its plane
    if not (all_finite(rhs) and all_finite(lhs)):
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    import scipy.fft

    tiles = prod(d.tiles for d in geometry)
    units = b * tiles
    freqs = prod(_freqs(geometry))
    work = g * units * (8.0 * c * o * freqs + (c + o) * fft_flops(geometry))
    cores = _parallel.workers(g * units * max(c, o)) if work >= _parallel.PARALLEL_FLOPS else 1
    p = plan(lhs.shape, rhs.shape, geometry, compute.itemsize, workspace_limit, cores)
    whole = all(d.first == 0 and d.count == n for d, n in zip(geometry, out_spatial))
    result = (np.empty if whole else np.zeros)((g, b, o, *out_spatial), dtype=dtype)
    cdtype = np.result_type(compute, np.complex64)
    phases = _Run(scipy.fft, geometry, p, compute, cores)
    kernel = None
    if p.kernel_once:  # conj(W): (G, O, C, F) for broadcast products, else (G, F, C, O)
        shape = (g, o, c, freqs) if p.broadcast else (g, freqs, c, o)
        kernel = scratch("fft-kernel", prod(shape), cdtype).reshape(shape)
        phases.kernels(rhs, kernel)
    for g0, u0 in itertools.product(range(0, g, p.g), range(0, units, p.u)):
        gs, us = range(g0, min(g, g0 + p.g)), range(u0, min(units, u0 + p.u))
        for o0 in range(0, o, p.o):
            os_ = range(o0, min(o, o0 + p.o))
            y = scratch("fft-y", len(gs) * len(us) * len(os_) * freqs, cdtype)
            y = y.reshape(len(gs), len(us), len(os_), freqs)
            for c0 in range(0, c, p.c):
                cs = range(c0, min(c, c0 + p.c))
                x = scratch("fft-x", len(gs) * len(us) * len(cs) * freqs, cdtype)
                x = x.reshape(len(gs), len(us), len(cs), freqs)
                phases.forward(lhs, gs, us, cs, x)
                g_, o_, c_ = _slice(gs), _slice(os_), _slice(cs)
                if kernel is not None:
                    w = kernel[g_, o_, c_] if p.broadcast else kernel[g_, :, c_, o_]
                else:
                    shape = (len(gs), len(os_), len(cs), freqs)
                    if not p.broadcast:
                        shape = (len(gs), freqs, len(cs), len(os_))
                    w = scratch("fft-w", prod(shape), cdtype).reshape(shape)
                    phases.kernels(rhs[g_, o_, c_], w)
                phases.product(x, w, y, first=c0 == 0)
            phases.inverse(y, gs, us, os_, result)
    return result


def _slice(r: range) -> slice:
    return slice(r.start, r.stop)


def _jobs(job, units, cores: int) -> None:
    """job(unit) for every unit: on the pool, or here where ``cores`` is one."""
    if cores > 1 and len(units) > 1:
        _parallel.run_jobs(job, units)
    else:
        for unit in units:
            job(unit)


def _ranges(total: int, step: int) -> list[tuple[int, int]]:
    return [(i, min(total, i + step)) for i in range(0, total, step)]


class _Run:
    """The phases of one call, each split into jobs: the lhs tiles' transforms, the
    kernel's, the channel sum over blocks of frequencies, the inverse transforms."""

    def __init__(self, fft, geometry, p: Plan, compute, cores: int):
        self.fft, self.geometry, self.p, self.compute, self.cores = fft, geometry, p, compute, cores
        self.axes = tuple(range(-len(geometry), 0))
        self.freq_shape = _freqs(geometry)
        self.sizes = tuple(d.n for d in geometry)
        # per tile (C order over the dims' tiles): (outputs, samples, buffer, picked)
        per_dim = [[d.window(t) for t in range(d.tiles)] for d in geometry]
        self.windows = [tuple(zip(*combo)) for combo in itertools.product(*per_dim)]

    def _plane_units(self, gn: int, un: int, pn: int):
        """(group range, unit range, plane range) boxes covering (gn, un, pn) planes,
        ``planes`` each at most where one unit's planes are more (else whole units,
        several groups together where a group's units are few)."""
        step = self.p.planes
        if pn >= step:
            return [((gi, gi + 1), (ui, ui + 1), r) for gi in range(gn) for ui in range(un)
                    for r in _ranges(pn, step)]  # fmt: skip
        if un * pn >= step:
            return [((gi, gi + 1), r, (0, pn)) for gi in range(gn)
                    for r in _ranges(un, step // pn)]  # fmt: skip
        return [(r, (0, un), (0, pn)) for r in _ranges(gn, step // (un * pn))]

    def _tiles_of(self, us: range, a0: int, a1: int):
        """(position in the box, image, tile's window) of units a0 .. a1 - 1 of ``us``;
        one entry for all of them where every image is one tile."""
        if len(self.windows) == 1:
            return [(slice(None), slice(us.start + a0, us.start + a1), self.windows[0])]
        return [
            ((slice(a - a0, a - a0 + 1)), slice(image, image + 1), self.windows[t])
            for a in range(a0, a1)
            for image, t in [divmod(us.start + a, len(self.windows))]
        ]

    def forward(self, lhs: np.ndarray, gs: range, us: range, cs: range, x: np.ndarray) -> None:
        """x (gn, un, cn, F) = rfftn of the tiles ``us`` of lhs (G, B, C, *S) in their
        zeroed buffers, groups ``gs`` and channels ``cs``."""

        def job(unit):
            (g0, g1), (a0, a1), (k0, k1) = unit
            shape = (g1 - g0, a1 - a0, k1 - k0, *self.sizes)
            buffer = scratch("fft-buffer", prod(shape), self.compute).reshape(shape)
            buffer[...] = 0
            groups = slice(gs.start + g0, gs.start + g1)
            channels = slice(cs.start + k0, cs.start + k1)
            for at, images, (_, src, dst, _) in self._tiles_of(us, a0, a1):
                buffer[(slice(None), at, slice(None), *dst)] = lhs[(groups, images, channels, *src)]
            hat = self.fft.rfftn(buffer, axes=self.axes, workers=1)
            np.copyto(x[g0:g1, a0:a1, k0:k1], hat.reshape(*shape[:3], -1))

        _jobs(job, self._plane_units(len(gs), len(us), len(cs)), self.cores)

    def inverse(self, y: np.ndarray, gs: range, us: range, os_: range, result) -> None:
        """result[gs, images, os_] at each tile's outputs = the picked entries of irfftn
        of y (gn, un, on, F)."""

        def job(unit):
            (g0, g1), (a0, a1), (k0, k1) = unit
            planes = y[g0:g1, a0:a1, k0:k1].reshape(g1 - g0, a1 - a0, k1 - k0, *self.freq_shape)
            z = self.fft.irfftn(planes, s=self.sizes, axes=self.axes, workers=1)
            groups = slice(gs.start + g0, gs.start + g1)
            filters = slice(os_.start + k0, os_.start + k1)
            for at, images, (outputs, _, _, picked) in self._tiles_of(us, a0, a1):
                np.copyto(result[(groups, images, filters, *outputs)],
                          z[(slice(None), at, slice(None), *picked)], casting="unsafe")  # fmt: skip

        _jobs(job, self._plane_units(len(gs), len(us), len(os_)), self.cores)

    def kernels(self, rhs: np.ndarray, out: np.ndarray) -> None:
        """out = conj(W) of rhs (G, O, C, *K): (G, O, C, F) where broadcast, else (G, F,
        C, O) C-contiguous per group; jobs over blocks of frequency rows (taps by DFT
        GEMMs into the frequency-major layout in place) or over planes."""
        g, o, c = rhs.shape[:3]
        geometry, kernel = self.geometry, rhs.shape[3:]
        if not self.p.broadcast and kernel_by_dft(geometry, kernel):
            rows = geometry[0].n if len(geometry) > 1 else out.shape[1]  # of matrix @ head
            step = -(-rows // (4 * self.cores)) if self.cores > 1 else rows
            heads = [_dft_head(rhs[gi], geometry, self.compute) for gi in range(g)]

            def block(unit):
                gi, (r0, r1) = unit
                matrix, head = heads[gi]
                _dft_rows(matrix, head, slice(r0, r1), out[gi])

            _jobs(block, [(gi, r) for gi in range(g) for r in _ranges(rows, step)], self.cores)
            return

        def part(unit):
            (g0, g1), (o0, o1), (c0, c1) = unit
            if self.p.broadcast:
                target = out[g0:g1, o0:o1, c0:c1]
            else:
                target = out[g0:g1, :, c0:c1, o0:o1]
            _kernel_hat(self.fft, rhs[g0:g1, o0:o1, c0:c1], geometry, self.compute, target,
                        not self.p.broadcast)  # fmt: skip

        _jobs(part, self._plane_units(g, o, c), self.cores)

    def product(self, x: np.ndarray, w: np.ndarray, y: np.ndarray, *, first: bool) -> None:
        """y (G, U, O, F) (+)= sum over channels of x (G, U, C, F) times w: (G, O, C, F)
        broadcast, or (G, F, C, O) by GEMMs per frequency over frequency-major blocks
        (cache-sized copies of x and y); jobs over ranges of frequencies."""
        gn, un, cn, freqs = x.shape
        on = y.shape[2]
        per_freq = gn * un * max(cn, on) * x.itemsize  # the larger block buffer
        if self.p.broadcast:
            per_freq = gn * un * on * x.itemsize  # the products of one channel
        block = max(1, self.p.block_bytes // per_freq)
        parts = min(freqs, 4 * self.cores) if self.cores > 1 else 1
        units = _ranges(freqs, -(-freqs // parts))

        def job(unit):
            for f0, f1 in _ranges(unit[1] - unit[0], block):
                fs = slice(unit[0] + f0, unit[0] + f1)
                if self.p.broadcast:
                    _broadcast_sum(x[..., fs], w[..., fs], y[..., fs], first=first)
                    continue
                n = f1 - f0
                xb = scratch("fft-xb", gn * n * un * cn, x.dtype).reshape(gn, n, un, cn)
                np.copyto(xb, x[..., fs].transpose(0, 3, 1, 2))
                yb = scratch("fft-yb", gn * n * un * on, x.dtype).reshape(gn, n, un, on)
                np.matmul(xb, w[:, fs], out=yb)
                if first:
                    np.copyto(y[..., fs], yb.transpose(0, 2, 3, 1))
                else:
                    y[..., fs] += yb.transpose(0, 2, 3, 1)

        _jobs(job, units, self.cores)


def _broadcast_sum(x, w, y, *, first: bool) -> None:
    """y (G, U, O, F) (+)= sum over channels k of x[:, :, k] (G, U, F) times w[:, :, k]
    (G, O, F), each product broadcast to (G, U, O, F)."""
    step = None
    for k in range(x.shape[2]):
        product = (x[:, :, k, None, :], w[:, None, :, k, :])
        if first and k == 0:
            np.multiply(*product, out=y)
            continue
        if step is None:
            step = scratch("fft-step", y.size, y.dtype).reshape(y.shape)
        y += np.multiply(*product, out=step)


def _buffer(slot: str, source: np.ndarray, geometry, dtype) -> np.ndarray:
    """(lead..., *n) zeroed real buffer in this thread's workspace ``slot`` holding the
    kernel ``source`` (lead..., *K), its taps ``dilation`` apart from 0."""
    lead = source.shape[: source.ndim - len(geometry)]
    shape = (*lead, *(d.n for d in geometry))
    buffer = scratch(slot, prod(shape), dtype).reshape(shape)
    buffer[...] = 0
    buffer[(Ellipsis, *(slice(0, d.extent, d.dilation) for d in geometry))] = source
    return buffer


def kernel_by_dft(geometry, kernel) -> bool:
    """Whether the kernel's transforms are computed as DFTs of its taps (GEMMs with
    cos/sin matrices) rather than by rfftn of mostly zeros: where their flops are under
    4x the FFT's (GEMM runs about 5x the FFT's flop rate)."""
    return dft_flops(geometry, kernel) <= 4 * fft_flops(geometry)


def fft_flops(geometry) -> float:
    """Flops of one plane's real transform: 2.5 n log2 n."""
    n = prod(d.n for d in geometry)
    return 2.5 * n * math.log2(max(n, 2))


def dft_flops(geometry, kernel) -> float:
    """Flops per kernel plane of its DFT by GEMMs: the last dim's taps against real
    cos/sin matrices (8 flops per tap and frequency, half of them on zeros in the
    frequency-major layout), then each earlier dim's complex (n, K) matrix."""
    freq = _freqs(geometry)
    flops = 8.0 * prod(kernel) * freq[-1]
    rest = freq[-1]
    for k in range(len(kernel) - 2, -1, -1):
        flops += 8.0 * prod(kernel[:k]) * geometry[k].n * kernel[k] * rest
        rest *= geometry[k].n
    return flops


@functools.lru_cache(maxsize=64)
def _dft_matrix(n: int, taps: int, dilation: int, kind: str, dtype: str) -> np.ndarray:
    """exp(+2 pi i f j dilation / n) for taps j and frequencies f (the conjugate DFT).
    kind 'rows': (taps, 2 (n//2 + 1)) real, cos and sin interleaved (taps @ it, viewed
    as complex, is the transform along rows); 'cols': (n//2 + 1, 2 taps) real, the cos
    block then the sin block; 'complex': (n, taps)."""
    f = np.arange(n if kind == "complex" else n // 2 + 1)
    angle = 2 * np.pi * ((np.arange(taps)[:, None] * dilation * f) % n) / n  # (taps, F)
    if kind == "complex":
        return np.exp(1j * angle).T.astype(np.result_type(dtype, np.complex64))
    if kind == "rows":
        out = np.empty((taps, f.size, 2))
        out[..., 0], out[..., 1] = np.cos(angle), np.sin(angle)
        return out.reshape(taps, -1).astype(dtype)
    return np.concatenate([np.cos(angle).T, np.sin(angle).T], axis=1).astype(dtype)


def _kernel_hat(fft, rhs_part: np.ndarray, geometry, dtype, out: np.ndarray, freq_major: bool):
    """out = conj(rfftn) of the dilated kernel rhs_part (gn, on, cn, *K): ``out`` (gn, on,
    cn, F), or (gn, F, cn, on) where ``freq_major`` (then by rfftn of zero-padded
    buffers); else by DFT GEMMs over the taps where ``kernel_by_dft``."""
    kernel, lead = rhs_part.shape[3:], rhs_part.shape[:3]
    nd = len(kernel)
    if freq_major or not kernel_by_dft(geometry, kernel):
        buffer = _buffer("fft-kernel-buffer", rhs_part, geometry, dtype)
        hat = fft.rfftn(buffer, axes=tuple(range(-nd, 0)), workers=1).reshape(*lead, -1)
        np.conjugate(hat.transpose(0, 3, 2, 1) if freq_major else hat, out=out)
        return
    # taps (planes, *K); the last dim: (rows, K_d) @ (K_d, 2 F_d), then the others
    code, last = np.dtype(dtype).str, geometry[-1]
    taps = scratch("fft-taps", rhs_part.size, dtype).reshape(rhs_part.shape)
    np.copyto(taps, rhs_part, casting="unsafe")
    matrix = _dft_matrix(last.n, kernel[-1], last.dilation, "rows", code)
    hat = np.matmul(taps.reshape(-1, kernel[-1]), matrix).view(out.dtype)
    rows, rest = prod(lead) * prod(kernel[:-1]), hat.shape[-1]  # (planes, *K[:-1], F_d)
    for k in range(nd - 2, -1, -1):  # each earlier dim, innermost first
        d = geometry[k]
        matrix = _dft_matrix(d.n, kernel[k], d.dilation, "complex", code)
        rows //= kernel[k]
        hat = np.matmul(matrix, hat.reshape(rows, kernel[k], rest))
        rest *= d.n
    np.copyto(out, hat.reshape(out.shape))


def _dft_head(rhs_part: np.ndarray, geometry, dtype):
    """(matrix, head): the frequency-major conj(W) (F, cn, on) of rhs_part (on, cn, *K)
    is ``matrix @ head``, row blocks of it by row blocks of the matrix (``_dft_rows``).
    1-D: head (2K, 2 cn on) real, the taps twice on a zero grid, and matrix (F, 2K) the
    cos block then the sin block, so the product's pairs of columns are complex numbers;
    n-D: head (K_0, F / n_0 * cn * on) complex, every dim but the first transformed so,
    and matrix (n_0, K_0) complex."""
    kernel, (on, cn) = rhs_part.shape[2:], rhs_part.shape[:2]
    planes, nd = on * cn, len(kernel)
    code, last = np.dtype(dtype).str, geometry[-1]
    taps = np.zeros((*kernel[:-1], 2, kernel[-1], cn, on, 2), dtype=dtype)  # one per group
    laid = rhs_part.transpose(*range(2, 2 + nd), 1, 0)  # (*K, cn, on)
    taps[..., 0, :, :, :, 0] = laid
    taps[..., 1, :, :, :, 1] = laid
    matrix = _dft_matrix(last.n, kernel[-1], last.dilation, "cols", code)
    taps = taps.reshape(-1, 2 * kernel[-1], 2 * planes)
    if nd == 1:
        return matrix, taps[0]
    cdtype = np.result_type(dtype, np.complex64)
    with _process.blas:  # the calling thread: single-threaded like the jobs
        hat = np.matmul(matrix, taps).view(cdtype)  # (*K[:-1], F_d, planes)
        lead, rest = prod(kernel[:-1]), hat.shape[-2] * planes
        for k in range(nd - 2, 0, -1):  # the dims between, innermost first
            d = geometry[k]
            lead //= kernel[k]
            matrix = _dft_matrix(d.n, kernel[k], d.dilation, "complex", code)
            hat = np.matmul(matrix, hat.reshape(lead, kernel[k], rest))
            rest *= d.n
    first = geometry[0]
    return _dft_matrix(first.n, kernel[0], first.dilation, "complex", code), hat.reshape(
        kernel[0], rest
    )


def _dft_rows(matrix, head, rows: slice, out: np.ndarray) -> None:
    """out[rows] = matrix[rows] @ head, out (F, cn, on) C-contiguous (the rows of the first
    frequency axis; of F itself in 1-D), written in place."""
    flat = out.reshape(matrix.shape[0], -1)
    if matrix.dtype.kind == "f":  # 1-D: complex columns as pairs of real ones
        flat = flat.view(matrix.dtype)
    np.matmul(matrix[rows], head, out=flat[rows])

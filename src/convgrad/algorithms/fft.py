"""FFT correlation: real transforms over the spatial axes, the channel sum per frequency.

Per spatial dim, output i reads lhs samples i*ws - lo + j*rd (taps j). The lhs samples
any computed output reads, [start, stop), are copied into a zeroed real buffer of FFT
length n at ``shift`` (the low padding the first output still meets), the kernel dilated
by zero insertion (extent rd*(K-1)+1) into one of the same length at 0, and

    Y[b, o, f] = sum_c X[b, c, f] * conj(W[o, c, f])     (X, W: rfftn of the buffers)

is the circular correlation whose entries 0, ws, 2*ws, ... are the outputs. n is
``scipy.fft.next_fast_len`` of the least length at which no read wraps onto a sample:
max(shift + stop - start, last + extent - shift, extent), last = (outputs - 1)*ws.
Outputs whose windows lie wholly in padding are zeros and not computed; a window stride
is computed at stride 1 and subsampled (the cost model counts that).

The channel sum is a batched complex GEMM over frequencies ((F, B, C) @ (F, C, O)), or,
for one channel (depthwise) or one output per frequency, broadcast products. The
kernel's transforms are made once (jobs over groups and filters) where they fit in half
the workspace limit, else per chunk. The lhs work runs in tiles of (group, images,
filters), channels in chunks, under each job's share of the limit, one job per core,
single-threaded transforms (``workers=1``) and BLAS. An inf or NaN would spread over a
whole transform: such inputs go to ``gemm``. Lhs dilation is not supported.
"""

from __future__ import annotations

import functools
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
    """One spatial dim: outputs first .. first + count - 1 are computed (the rest meet
    padding only), from lhs samples [start, stop) placed at ``shift`` of an ``n``-point
    transform; the kernel's taps lie ``dilation`` apart over ``extent`` points; outputs
    are ``stride`` apart on the transform's grid."""

    first: int
    count: int
    start: int
    stop: int
    shift: int
    n: int
    extent: int
    dilation: int
    stride: int


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


def dims(lhs_shape, rhs_shape, corr: Correlation) -> tuple[Dim, ...] | None:
    """Per spatial dim, the part computed and its transform (``Dim``); None where no
    output meets a sample (all zeros) or there are no outputs."""
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
        m0, m1 = first * ws - lo, last * ws - lo  # lhs positions of the first/last windows
        start, stop = max(0, m0), min(size, m1 + extent)
        shift = max(0, -m0)
        span = (last - first) * ws
        need = max(shift + stop - start, span + extent - shift, extent)
        result.append(
            Dim(first, last - first + 1, start, stop, shift, fast_len(need), extent, rd, ws)
        )
    return tuple(result)


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    """No lhs dilation, and transforms no larger than twice the lhs plus its im2col
    columns (a huge dilation with 'same' padding would transform mostly zeros)."""
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


def _broadcast(b: int, c: int, o: int) -> bool:
    """Whether the channel sum runs as broadcast products (one channel, or at most two
    outputs per frequency) rather than a GEMM per frequency (measured: (F, 8, 1) @
    (F, 1, 1) matmuls 3 GFLOP/s, the products 14; (F, 8, 3) @ (F, 3, 64) 30)."""
    return c == 1 or b * o <= 2


JOB_BYTES = 4 * 2**20  # a job's own buffers: its transform calls', or its product blocks
BLOCK_BYTES = 256 * 2**10  # a block of the channel sum's frequency-major copies: cache-sized


class Plan(NamedTuple):
    """How the work is cut: groups, images, channels and filters per chunk (the lhs's
    transforms X and the products Y of a chunk are held whole); planes per transform
    call; whether the kernel's transforms are made once for all chunks; whether the
    channel sum runs as broadcast products."""

    g: int
    b: int
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
    made per chunk). Images first, then groups, channels and filters."""
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    real, cplx = _plane_bytes(geometry, isz)
    own = min(JOB_BYTES, limit // (8 * max(1, cores)))  # half of a job's buffers
    planes = chunk(1 << 40, 3 * real + 2 * cplx, own)
    block_bytes = min(BLOCK_BYTES, own // 2)
    left = max(1, limit - max(1, cores) * 2 * own)
    per_kernel = math.ceil(_kernel_plane_bytes(rhs_shape, geometry, isz))
    kernel = g * o * c * per_kernel
    once = kernel <= max(left // 2, 64 * 2**10)
    budget = max(1, left - kernel if once else left)
    k = 0 if once else per_kernel  # the kernel's part per (filter, channel) of a chunk
    image = (c + o) * cplx + o * c * k  # X, Y (and the kernel) of one group's image
    gn, bn, cn, on = g, b, c, o
    if g * image <= budget:
        bn = chunk(b, g * (c + o) * cplx, budget - g * k * o * c)
    elif image <= budget:
        gn, bn = chunk(g, image, budget), 1
    else:  # one image too large: chunk the channels, then the filters
        gn, bn = 1, 1
        cn = chunk(c, cplx + o * k, budget - o * cplx)
        if (cn + o) * cplx + o * cn * k > budget:
            cn, on = 1, chunk(o, cplx + k, budget - cplx)
    return Plan(gn, bn, cn, on, planes, block_bytes, once, _broadcast(bn, cn, on))


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the unchunked transforms: the kernel's, the lhs's and the products."""
    geometry = dims(lhs_shape, rhs_shape, corr)
    if geometry is None:
        return 0
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    cplx = _plane_bytes(geometry, itemsize)[1]
    kernel = g * o * c * _kernel_plane_bytes(rhs_shape, geometry, itemsize)
    return int(kernel) + g * b * (c + o) * cplx


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: 2.5 n log2 n flops per real n-point transform (the lhs's per
    chunk of filters, the kernel's once or per chunk of images where its taps are not
    transformed by GEMMs, the inverses), 8 flops per complex multiply-add of the channel
    sum, and the copies: the lhs into zeroed buffers, the transforms into X and Y, the
    channel sum's frequency-major blocks, the outputs picked out."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    geometry = dims(lhs_shape, rhs_shape, corr)
    outputs = g * b * o * prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    if geometry is None or 0 in (g, b, c, o):
        return Counts(bytes=2.0 * outputs * itemsize, calls=2, jobs=1)
    kernel = rhs_shape[3:]
    freqs = prod(_freqs(geometry))
    real, cplx = _plane_bytes(geometry, itemsize)
    p = plan(lhs_shape, rhs_shape, geometry, itemsize, 256 * 2**20, _parallel.CORES)
    chunks = -(-g // p.g) * -(-b // p.b)  # (group, image) chunks
    o_chunks, c_chunks = -(-o // p.o), -(-c // p.c)
    kernel_runs = 1 if p.kernel_once else chunks
    by_dft = kernel_by_dft(geometry, kernel)
    transforms = g * (b * c * o_chunks + b * o + (0 if by_dft else o * c * kernel_runs))
    products = 8.0 * g * b * c * o * freqs
    dft = g * o * c * kernel_runs * dft_flops(geometry, kernel) if by_dft else 0.0
    lhs_plane = prod(lhs_shape[3:]) * itemsize
    x_planes, y_planes = g * b * c * o_chunks, g * b * o
    moved = x_planes * (lhs_plane + 2 * real + 3 * cplx)  # buffers, transforms into X
    moved += y_planes * (3 * cplx + real) + 2 * outputs * itemsize  # inverses, outputs
    moved += g * o * c * kernel_runs * 2 * cplx  # the kernel's transforms written
    if p.broadcast:  # each channel's products added into Y
        moved += g * b * o * c * 3 * cplx
    else:  # X and Y in frequency-major blocks, the kernel read per chunk of images
        moved += 2 * x_planes * cplx + 2 * y_planes * c_chunks * cplx
        moved += g * o * c * cplx * -(-b // p.b)
    moved += g * (b * c * lhs_plane + o * c * prod(kernel) * itemsize)  # finite?
    steps = chunks * o_chunks * (c_chunks * 3 + 2)  # phases handed to the pool
    calls = steps * 2 + (x_planes + y_planes) // p.planes * 4 + 20
    units = min(-(-g * b * c // p.planes), -(-g * b * o // p.planes), 4 * _parallel.CORES)
    return Counts(
        gemm_flops=dft + (0.0 if p.broadcast else products),
        gemm_min_dim=min(p.b, p.c, p.o) if not p.broadcast else min(kernel),
        fft_flops=fft_flops(geometry) * transforms,
        loop_flops=products if p.broadcast else 0.0,
        bytes=moved,
        calls=calls,
        jobs=max(1, units),
    )


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    out_spatial = corr.output_spatial(lhs.shape[3:], rhs.shape[3:])
    geometry = dims(lhs.shape, rhs.shape, corr)
    if geometry is None or 0 in (g, b, c, o):
        return np.zeros((g, b, o, *out_spatial), dtype=dtype)
    # a transform spreads an inf or NaN over every output of its plane
    if not (all_finite(rhs) and all_finite(lhs)):
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    import scipy.fft

    freqs = prod(_freqs(geometry))
    work = g * (8.0 * b * c * o * freqs + (b * c + b * o) * fft_flops(geometry))
    cores = _parallel.workers(g * b * max(c, o)) if work >= _parallel.PARALLEL_FLOPS else 1
    p = plan(lhs.shape, rhs.shape, geometry, compute.itemsize, workspace_limit, cores)
    whole = all(d.first == 0 and d.count == n for d, n in zip(geometry, out_spatial))
    result = (np.empty if whole else np.zeros)((g, b, o, *out_spatial), dtype=dtype)
    cdtype = np.result_type(compute, np.complex64)
    run = _Run(scipy.fft, geometry, p, compute, cores)
    kernel = None
    if p.kernel_once:  # conj(W): (G, O, C, F) for broadcast products, else (G, F, C, O)
        shape = (g, o, c, freqs) if p.broadcast else (g, freqs, c, o)
        kernel = scratch("fft-kernel", prod(shape), cdtype).reshape(shape)
        run.kernels(rhs, kernel)
    for g0, b0 in ((g0, b0) for g0 in range(0, g, p.g) for b0 in range(0, b, p.b)):
        gs, bs = slice(g0, g0 + p.g), slice(b0, b0 + p.b)
        gn, bn = len(range(g)[gs]), len(range(b)[bs])
        for o0 in range(0, o, p.o):
            os_ = slice(o0, o0 + p.o)
            on = len(range(o)[os_])
            y = scratch("fft-y", gn * bn * on * freqs, cdtype).reshape(gn, bn, on, freqs)
            for c0 in range(0, c, p.c):
                cs = slice(c0, c0 + p.c)
                cn = len(range(c)[cs])
                x = scratch("fft-x", gn * bn * cn * freqs, cdtype).reshape(gn, bn, cn, freqs)
                run.forward(lhs[gs, bs, cs], x)
                if kernel is not None:
                    w = kernel[gs, os_, cs] if p.broadcast else kernel[gs, :, cs, os_]
                else:
                    shape = (gn, on, cn, freqs) if p.broadcast else (gn, freqs, cn, on)
                    w = scratch("fft-w", prod(shape), cdtype).reshape(shape)
                    run.kernels(rhs[gs, os_, cs], w)
                run.product(x, w, y, first=c0 == 0)
            run.inverse(y, result[gs, bs, os_])
    return result


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
    """The phases of one call, each split into jobs: the lhs's transforms, the kernel's,
    the channel sum over blocks of frequencies, the inverse transforms."""

    def __init__(self, fft, geometry, p: Plan, compute, cores: int):
        self.fft, self.geometry, self.p, self.compute, self.cores = fft, geometry, p, compute, cores
        self.axes = tuple(range(-len(geometry), 0))
        self.freq_shape = _freqs(geometry)

    def _plane_units(self, shape) -> list[tuple[int, tuple[int, int], tuple[int, int]]]:
        """(group, image range, plane range) covering (G, B, P) planes, ``planes`` each at
        most (several images per unit where P is small)."""
        gn, bn, pn = shape
        step = self.p.planes
        if pn >= step:
            return [(gi, (bi, bi + 1), r) for gi in range(gn) for bi in range(bn)
                    for r in _ranges(pn, step)]  # fmt: skip
        return [(gi, r, (0, pn)) for gi in range(gn) for r in _ranges(bn, max(1, step // pn))]

    def forward(self, source: np.ndarray, x: np.ndarray) -> None:
        """x (G, B, C, F) = rfftn of the lhs planes (G, B, C, *S) in their buffers."""

        def job(unit):
            gi, (b0, b1), (c0, c1) = unit
            buffer = _buffer("fft-buffer", source[gi, b0:b1, c0:c1], self.geometry,
                             self.compute, kernel=False)  # fmt: skip
            hat = self.fft.rfftn(buffer, axes=self.axes, workers=1)
            np.copyto(x[gi, b0:b1, c0:c1], hat.reshape(b1 - b0, c1 - c0, -1))

        _jobs(job, self._plane_units(x.shape[:3]), self.cores)

    def inverse(self, y: np.ndarray, target: np.ndarray) -> None:
        """target (G, B, O, *S_out) = the outputs of irfftn of y (G, B, O, F)."""
        geometry = self.geometry
        picked = tuple(slice(0, (d.count - 1) * d.stride + 1, d.stride) for d in geometry)
        region = tuple(slice(d.first, d.first + d.count) for d in geometry)
        sizes = tuple(d.n for d in geometry)

        def job(unit):
            gi, (b0, b1), (o0, o1) = unit
            planes = y[gi, b0:b1, o0:o1].reshape(b1 - b0, o1 - o0, *self.freq_shape)
            z = self.fft.irfftn(planes, s=sizes, axes=self.axes, workers=1)
            out = target[gi, b0:b1, o0:o1][(Ellipsis, *region)]
            np.copyto(out, z[(Ellipsis, *picked)], casting="unsafe")

        _jobs(job, self._plane_units(y.shape[:3]), self.cores)

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
        units = self._plane_units((g, o, c))

        def part(unit):
            gi, (o0, o1), (c0, c1) = unit
            if self.p.broadcast:
                target = out[gi, o0:o1, c0:c1]
            else:
                target = out[gi, :, c0:c1, o0:o1]
            _kernel_hat(self.fft, rhs[gi, o0:o1, c0:c1], geometry, self.compute, target,
                        not self.p.broadcast)  # fmt: skip

        _jobs(part, units, self.cores)

    def product(self, x: np.ndarray, w: np.ndarray, y: np.ndarray, *, first: bool) -> None:
        """y (G, B, O, F) (+)= sum over channels of x (G, B, C, F) times w: (G, O, C, F)
        broadcast, or (G, F, C, O) by GEMMs per frequency over frequency-major blocks
        (cache-sized copies of x and y); jobs over ranges of frequencies."""
        gn, bn, cn, freqs = x.shape
        on = y.shape[2]
        per_freq = gn * max(bn * cn, bn * on) * x.itemsize  # the larger block buffer
        if self.p.broadcast:
            per_freq = gn * bn * on * x.itemsize  # the products of one channel
        block = max(1, self.p.block_bytes // per_freq)
        parts = min(freqs, 4 * self.cores) if self.cores > 1 else 1
        units = [(f0, f1) for f0, f1 in _ranges(freqs, -(-freqs // parts))]

        def job(unit):
            for f0, f1 in _ranges(unit[1] - unit[0], block):
                fs = slice(unit[0] + f0, unit[0] + f1)
                if self.p.broadcast:
                    _broadcast_sum(x[..., fs], w[..., fs], y[..., fs], first=first)
                    continue
                n = f1 - f0
                xb = scratch("fft-xb", gn * n * bn * cn, x.dtype).reshape(gn, n, bn, cn)
                np.copyto(xb, x[..., fs].transpose(0, 3, 1, 2))
                yb = scratch("fft-yb", gn * n * bn * on, x.dtype).reshape(gn, n, bn, on)
                np.matmul(xb, w[:, fs], out=yb)
                if first:
                    np.copyto(y[..., fs], yb.transpose(0, 2, 3, 1))
                else:
                    y[..., fs] += yb.transpose(0, 2, 3, 1)

        _jobs(job, units, self.cores)


def _broadcast_sum(x, w, y, *, first: bool) -> None:
    """y (G, B, O, F) (+)= sum over channels k of x[:, :, k] (G, B, F) times w[:, :, k]
    (G, O, F), each product broadcast to (G, B, O, F)."""
    step = None
    for k in range(x.shape[2]):
        product = (x[:, :, k, None, :], w[:, None, :, k, :])
        if first and k == 0:
            np.multiply(*product, out=y)
            continue
        if step is None:
            step = scratch("fft-step", y.size, y.dtype).reshape(y.shape)
        y += np.multiply(*product, out=step)


def _buffer(slot: str, source: np.ndarray, geometry, dtype, *, kernel: bool) -> np.ndarray:
    """(lead..., *n) zeroed real buffer in this thread's workspace ``slot`` holding
    ``source`` (lead..., *S): the lhs samples [start, stop) at ``shift`` per dim, or the
    kernel (lead..., *K) with its taps ``dilation`` apart from 0."""
    lead = source.shape[: source.ndim - len(geometry)]
    shape = (*lead, *(d.n for d in geometry))
    buffer = scratch(slot, prod(shape), dtype).reshape(shape)
    buffer[...] = 0
    if kernel:
        dst = tuple(slice(0, d.extent, d.dilation) for d in geometry)
        src = (Ellipsis,)
    else:
        dst = tuple(slice(d.shift, d.shift + d.stop - d.start) for d in geometry)
        src = (Ellipsis, *(slice(d.start, d.stop) for d in geometry))
    buffer[(Ellipsis, *dst)] = source[src]
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
    """out = conj(rfftn) of the dilated kernel rhs_part (on, cn, *K): ``out`` (on, cn,
    F), or (F, cn, on) where ``freq_major``; by DFT GEMMs over the taps
    (``kernel_by_dft``) or by rfftn of a zero-padded buffer."""
    kernel, (on, cn) = rhs_part.shape[2:], rhs_part.shape[:2]
    nd = len(kernel)
    if not kernel_by_dft(geometry, kernel):
        buffer = _buffer("fft-kernel-buffer", rhs_part, geometry, dtype, kernel=True)
        hat = fft.rfftn(buffer, axes=tuple(range(-nd, 0)), workers=1).reshape(on, cn, -1)
        np.conjugate(hat.transpose(2, 1, 0) if freq_major else hat, out=out)
    elif freq_major:
        matrix, head = _dft_head(rhs_part, geometry, dtype)
        _dft_rows(matrix, head, slice(None), out)
    else:  # taps (on, cn, *K); the last dim: (rows, K_d) @ (K_d, 2 F_d), then the others
        code, last = np.dtype(dtype).str, geometry[-1]
        taps = scratch("fft-taps", rhs_part.size, dtype).reshape(rhs_part.shape)
        np.copyto(taps, rhs_part, casting="unsafe")
        matrix = _dft_matrix(last.n, kernel[-1], last.dilation, "rows", code)
        hat = np.matmul(taps.reshape(-1, kernel[-1]), matrix).view(out.dtype)
        lead, rest = on * cn * prod(kernel[:-1]), hat.shape[-1]  # (planes, *K[:-1], F_d)
        for k in range(nd - 2, -1, -1):  # each earlier dim, innermost first
            d = geometry[k]
            matrix = _dft_matrix(d.n, kernel[k], d.dilation, "complex", code)
            lead //= kernel[k]
            hat = np.matmul(matrix, hat.reshape(lead, kernel[k], rest))
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

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

import math
from typing import NamedTuple

import numpy as np

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
    """Whether the channel sum runs as broadcast products (one channel, or one output
    per frequency) rather than a GEMM per frequency (measured: (F, 8, 1) @ (F, 1, 1)
    matmuls 3 GFLOP/s, the products 14)."""
    return c == 1 or b * o == 1


class Tiles(NamedTuple):
    """How the work is cut: images, channels and filters per tile of the lhs work;
    filters and channels per part of the kernel's transforms; whether those are made
    once for all tiles (else per tile), and their bytes then."""

    b: int
    c: int
    o: int
    kernel_o: int
    kernel_c: int
    kernel_once: bool
    kernel_bytes: int


def _plane_bytes(geometry, isz: int) -> tuple[int, int]:
    """(bytes of a real n-point plane, of its complex transform)."""
    return prod(d.n for d in geometry) * isz, prod(_freqs(geometry)) * 2 * isz


def tiles(lhs_shape, rhs_shape, geometry, isz: int, limit: int, cores: int) -> Tiles:
    """Chunk sizes under ``limit`` with ``cores`` jobs in flight. Per tile: the lhs
    buffer, its transform and a frequency-major copy (per image and channel); the
    product, the inverse's temporary and its real result (per image and filter); the
    kernel's part and its transform where they are not made once (per filter and
    channel). Where the images are fewer than the cores, the filters are split too."""
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    real, cplx = _plane_bytes(geometry, isz)
    kernel_bytes = g * o * c * cplx
    kernel_once = kernel_bytes <= max(limit // 2, 64 * 1024)
    share = max(1, (limit - kernel_bytes if kernel_once else limit) // max(1, cores))
    per_x, per_y = real + 2 * cplx, real + 3 * cplx  # per (image, channel), (image, filter)
    per_k = real + 2 * cplx  # per (filter, channel) of the kernel
    kernel_c = chunk(c, per_k, share)
    kernel_o = chunk(o, kernel_c * per_k, share) if kernel_c == c else 1
    in_tile = 0 if kernel_once else per_k

    def size(bn, cn, on):
        return bn * (cn * per_x + on * per_y) + on * cn * in_tile

    bn, cn, on = 1, c, o
    if size(1, c, o) <= share:
        bn = chunk(b, c * per_x + o * per_y, share - o * c * in_tile)
    else:  # one image too large: chunk the channels, then the filters
        cn = chunk(c, per_x + o * in_tile, share - o * per_y)
        if size(1, cn, o) > share:
            cn, on = 1, chunk(o, per_y + in_tile, share - per_x)
    if cores > 1:
        if g < cores:
            bn = min(bn, -(-b // cores))
        if g * b < cores and on == o and o > 1:  # one image: split its filters instead
            on = -(-o // min(o, -(-cores // (g * b))))
    return Tiles(bn, cn, on, kernel_o, kernel_c, kernel_once, kernel_bytes if kernel_once else 0)


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the unchunked transforms: the kernel's, and per image its lhs buffer and
    transforms and its filters' products and inverses."""
    geometry = dims(lhs_shape, rhs_shape, corr)
    if geometry is None:
        return 0
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    real, cplx = _plane_bytes(geometry, itemsize)
    return g * o * c * cplx + g * b * (c * (real + 2 * cplx) + o * (real + 3 * cplx))


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: 2.5 n log2 n flops per real n-point transform (the lhs's per
    filter chunk, the kernel's once or per image chunk, the inverses), 8 flops per
    complex multiply-add of the channel sum, and the copies: the lhs into its buffers,
    frequency-major copies, the strided outputs out."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    geometry = dims(lhs_shape, rhs_shape, corr)
    outputs = g * b * o * prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    if geometry is None or 0 in (g, b, c, o):
        return Counts(bytes=2.0 * outputs * itemsize, calls=2, jobs=1)
    n, freqs = prod(d.n for d in geometry), prod(_freqs(geometry))
    plan = tiles(lhs_shape, rhs_shape, geometry, itemsize, 256 * 2**20, _parallel.CORES)
    o_chunks, b_chunks, c_chunks = -(-o // plan.o), -(-b // plan.b), -(-c // plan.c)
    per_transform = 2.5 * n * math.log2(max(n, 2))
    kernel_runs = 1 if plan.kernel_once else b_chunks
    transforms = g * (b * c * o_chunks + o * c * kernel_runs + b * o)
    products = 8.0 * g * b * c * o * freqs
    real, cplx = n * itemsize, freqs * 2 * itemsize
    lhs_plane = prod(lhs_shape[3:]) * itemsize
    moved = g * b * c * o_chunks * (lhs_plane + 2 * real + (0 if c == 1 else 2 * cplx))
    moved += g * o * c * kernel_runs * (2 * real + 2 * cplx)  # kernel buffers, conj copies
    moved += g * b * o * (2 * cplx + 2 * real)  # the inverse's input and its real output
    moved += 2 * outputs * itemsize  # the outputs picked out
    moved += g * (b * c * lhs_plane + o * c * prod(rhs_shape[3:]) * itemsize)  # finite?
    tile_count = g * b_chunks * o_chunks
    calls = tile_count * (8 + 6 * c_chunks) + g * o_chunks * 6 + 10
    broadcast = _broadcast(plan.b, plan.c, plan.o)
    return Counts(
        gemm_flops=0.0 if broadcast else products,
        gemm_min_dim=min(plan.b, plan.c, plan.o),
        fft_flops=per_transform * transforms,
        loop_flops=products if broadcast else 0.0,
        bytes=moved,
        calls=calls,
        jobs=tile_count,
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

    freqs, n = prod(_freqs(geometry)), prod(d.n for d in geometry)
    work = g * (8.0 * b * c * o * freqs + (b * c + o * c + b * o) * 2.5 * n * math.log2(n + 1))
    cores = _parallel.workers(g * max(b, o)) if work >= _parallel.PARALLEL_FLOPS else 1
    plan = tiles(lhs.shape, rhs.shape, geometry, compute.itemsize, workspace_limit, cores)
    broadcast = _broadcast(plan.b, plan.c, plan.o)
    whole = all(d.first == 0 and d.count == n for d, n in zip(geometry, out_spatial))
    result = (np.empty if whole else np.zeros)((g, b, o, *out_spatial), dtype=dtype)
    cdtype = np.result_type(compute, np.complex64)
    kernel = None
    if plan.kernel_once:  # conj(W) as (G, O, C, F) for broadcast products, else (G, F, C, O)
        shape = (g, o, c, freqs) if broadcast else (g, freqs, c, o)
        kernel = scratch("fft-kernel", prod(shape), cdtype).reshape(shape)
        parts = [
            (gi, o0, c0)
            for gi in range(g)
            for o0 in range(0, o, plan.kernel_o)
            for c0 in range(0, c, plan.kernel_c)
        ]

        def transform_kernel(part):
            gi, o0, c0 = part
            o1, c1 = min(o, o0 + plan.kernel_o), min(c, c0 + plan.kernel_c)
            hat = _kernel_hat(scipy.fft, rhs[gi, o0:o1, c0:c1], geometry, compute)
            if broadcast:
                np.conjugate(hat, out=kernel[gi, o0:o1, c0:c1])
            else:
                np.conjugate(hat.transpose(2, 1, 0), out=kernel[gi, :, c0:c1, o0:o1])

        _jobs(transform_kernel, parts, cores)
    units = [
        (gi, b0, o0) for gi in range(g) for b0 in range(0, b, plan.b) for o0 in range(0, o, plan.o)
    ]
    context = (scipy.fft, lhs, rhs, kernel, geometry, plan, broadcast, compute, result)
    _jobs(lambda unit: _run_tile(context, unit), units, cores)
    return result


def _jobs(job, units, cores: int) -> None:
    """job(unit) for every unit: on the pool, or here where ``cores`` is one."""
    if cores > 1:
        _parallel.run_jobs(job, units)
    else:
        for unit in units:
            job(unit)


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


def _kernel_hat(fft, rhs_part: np.ndarray, geometry, dtype) -> np.ndarray:
    """rfftn of the dilated kernel (on, cn, *K) -> (on, cn, F), not yet conjugated (a
    fresh array)."""
    nd = len(geometry)
    buffer = _buffer("fft-kernel-buffer", rhs_part, geometry, dtype, kernel=True)
    hat = fft.rfftn(buffer, axes=tuple(range(-nd, 0)), workers=1)
    return hat.reshape(*rhs_part.shape[:2], -1)


def _run_tile(context, unit) -> None:
    """result[gi, b0 : b0 + bn, o0 : o0 + on] of one tile, channels in chunks."""
    fft, lhs, rhs, kernel, geometry, plan, broadcast, compute, result = context
    gi, b0, o0 = unit
    b, c = lhs.shape[1:3]
    o = rhs.shape[1]
    bn, on = min(b, b0 + plan.b) - b0, min(o, o0 + plan.o) - o0
    axes = tuple(range(-len(geometry), 0))
    freq_shape = _freqs(geometry)
    freqs = prod(freq_shape)
    cdtype = np.result_type(compute, np.complex64)
    if broadcast:
        total = scratch("fft-total", bn * on * freqs, cdtype).reshape(bn, on, freqs)
    else:
        total = scratch("fft-total", freqs * bn * on, cdtype).reshape(freqs, bn, on)
    for c0 in range(0, c, plan.c):
        cn = min(c, c0 + plan.c) - c0
        source = lhs[gi, b0 : b0 + bn, c0 : c0 + cn]
        buffer = _buffer("fft-buffer", source, geometry, compute, kernel=False)
        hat = fft.rfftn(buffer, axes=axes, workers=1).reshape(bn, cn, freqs)
        if kernel is not None and broadcast:
            part = kernel[gi, o0 : o0 + on, c0 : c0 + cn]  # (on, cn, F)
        elif kernel is not None:
            part = kernel[gi, :, c0 : c0 + cn, o0 : o0 + on]  # (F, cn, on)
        else:  # the kernel's part made here
            own = _kernel_hat(fft, rhs[gi, o0 : o0 + on, c0 : c0 + cn], geometry, compute)
            if broadcast:
                part = np.conjugate(own, out=own)
            else:
                part = scratch("fft-kernel-part", freqs * cn * on, cdtype)
                part = part.reshape(freqs, cn, on)
                np.conjugate(own.transpose(2, 1, 0), out=part)
        if broadcast:
            _broadcast_sum(hat, part, total, first=c0 == 0)
            continue
        x = scratch("fft-x", freqs * bn * cn, cdtype).reshape(freqs, bn, cn)
        np.copyto(x, hat.transpose(2, 0, 1))
        if c0 == 0:
            np.matmul(x, part, out=total)
        else:
            step = scratch("fft-step", freqs * bn * on, cdtype).reshape(freqs, bn, on)
            total += np.matmul(x, part, out=step)
    planes = total if broadcast else total.transpose(1, 2, 0)
    planes = planes.reshape(bn, on, *freq_shape)
    z = fft.irfftn(planes, s=tuple(d.n for d in geometry), axes=axes, workers=1)
    picked = z[(Ellipsis, *(slice(0, (d.count - 1) * d.stride + 1, d.stride) for d in geometry))]
    target = result[gi, b0 : b0 + bn, o0 : o0 + on]
    target = target[(Ellipsis, *(slice(d.first, d.first + d.count) for d in geometry))]
    np.copyto(target, picked, casting="unsafe")


def _broadcast_sum(hat, part, total, *, first: bool) -> None:
    """total (bn, on, F) (+)= sum over channels k of hat[:, k] (bn, F) times part[:, k]
    (on, F), each product broadcast to (bn, on, F)."""
    step = None
    for k in range(hat.shape[1]):
        x, w = hat[:, k, None, :], part[None, :, k, :]
        if first and k == 0:
            np.multiply(x, w, out=total)
            continue
        if step is None:
            step = scratch("fft-step", total.size, total.dtype).reshape(total.shape)
        total += np.multiply(x, w, out=step)

"""col2im scatter correlation: multiply first, then add each kernel tap's product in place.

For window stride 1 every lhs sample p lands at q = p*ld + lo of the padded, dilated
lhs, and reaches output i = q - j*rd through tap j. So

    Z[g, b, (j, o), p] = sum_c rhs[g, o, c, j] * lhs[g, b, c, p]     (one GEMM)
    out[g, b, o, p*ld + lo - j*rd] += Z[g, b, (j, o), p]              (one strided add per tap)

The inserted zeros of lhs_dilation are never multiplied: this is the input gradient of
a strided convolution (and the forward of a transposed one) at the forward's cost.
Z is chunked over B and taps under the workspace limit.
"""

from __future__ import annotations

import itertools

import numpy as np

from .._rules import Correlation
from . import _parallel
from ._dtypes import result_dtype
from ._geometry import prod
from ._workspace import chunk, kernel_share, scratch

name = "scatter"


MAX_TAPS = 512  # one numpy call per tap: long kernels (weight-gradient maps) belong to gemm


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return all(s == 1 for s in corr.window_strides) and prod(rhs_shape[3:]) <= MAX_TAPS


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the full product Z (G, B, taps*O, S)."""
    g, b = lhs_shape[:2]
    return g * b * rhs_shape[1] * prod(rhs_shape[3:]) * prod(lhs_shape[3:]) * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: one GEMM over the undilated lhs, then one strided add per tap."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, taps, length = rhs_shape[1], prod(rhs_shape[3:]), prod(lhs_shape[3:])
    z = g * b * o * taps * length * itemsize
    out = g * b * o * prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:])) * itemsize
    flops = 2.0 * g * b * o * c * taps * length
    moved = (4 * z + out) / _parallel.cores_for(b)  # each job scatters its own images
    return Counts(flops, min(o * taps, c, length), bytes=moved, calls=2 * taps + 8, jobs=b)


def _tap_slices(tap, lhs_spatial, out_spatial, corr: Correlation):
    """(lhs slices, out slices) of the samples that tap ``tap`` carries, or None if none."""
    src, dst = [], []
    for j, size, n, ld, rd, (lo, _) in zip(
        tap, lhs_spatial, out_spatial, corr.lhs_dilation, corr.rhs_dilation, corr.padding
    ):
        shift = lo - j * rd  # out index of lhs sample p is p*ld + shift
        first = max(0, -(shift // ld))  # ceil(-shift / ld)
        last = min(size - 1, (n - 1 - shift) // ld)
        if last < first:
            return None
        src.append(slice(first, last + 1))
        dst.append(slice(first * ld + shift, last * ld + shift + 1, ld))
    return tuple(src), tuple(dst)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel, spatial = rhs.shape[3:], lhs.shape[3:]
    out_spatial = corr.output_spatial(spatial, kernel)
    taps, length = prod(kernel), prod(spatial)
    dtype = result_dtype(lhs, rhs)
    limit = kernel_share(rhs.size * dtype.itemsize, workspace_limit)
    if limit is None:  # the filters' copy alone would take most of the limit
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    workspace_limit = limit
    lhs = lhs.astype(dtype, copy=False).reshape(g, b, c, length)
    nd = len(kernel)
    # (G, *K, O, C) -> (G, taps*O, C): rows ordered tap-major
    weights = np.ascontiguousarray(
        rhs.astype(dtype, copy=False).transpose(0, *range(3, 3 + nd), 1, 2)
    )
    weights = weights.reshape(g, taps * o, c)
    result = np.zeros((g, b, o, *out_spatial), dtype=dtype)

    per_tap = g * o * length * dtype.itemsize  # Z bytes of one (b, tap)
    _, b_chunk, jobs = _parallel.batch_chunks(1, b, per_tap * taps, workspace_limit)
    share = workspace_limit // len(jobs)  # one image too large: chunk the taps as well
    t_chunk = taps if per_tap * taps <= share else chunk(taps, per_tap, share)
    sizes = (kernel, spatial, b_chunk, t_chunk)
    _parallel.run_jobs(lambda chunks: _run_chunks(lhs, weights, corr, result, sizes, chunks), jobs)
    return result


def _run_chunks(lhs, weights, corr: Correlation, result, sizes, chunks):
    """Add every tap's product into result[:, b0 : b0 + b_chunk] for each (0, b0) of
    ``chunks``; lhs (G, B, C, L), weights (G, taps*O, C) tap-major."""
    g, b, _, length = lhs.shape
    kernel, spatial, b_chunk, t_chunk = sizes
    taps, o = prod(kernel), result.shape[2]
    out_spatial = result.shape[3:]
    buffer = scratch("scatter-products", g * b_chunk * t_chunk * o * length, result.dtype)
    all_taps = list(itertools.product(*(range(k) for k in kernel)))
    plans = [_tap_slices(tap, spatial, out_spatial, corr) for tap in all_taps]
    for _, b0 in chunks:
        n = min(b, b0 + b_chunk) - b0
        target = result[:, b0 : b0 + n]
        for t0 in range(0, taps, t_chunk):
            t1 = min(taps, t0 + t_chunk)
            live = [t for t in range(t0, t1) if plans[t] is not None]
            if not live:
                continue
            z = buffer[: g * n * (t1 - t0) * o * length].reshape(g, n, (t1 - t0) * o, length)
            np.matmul(weights[:, None, t0 * o : t1 * o], lhs[:, b0 : b0 + n], out=z)
            z = z.reshape(g, n, t1 - t0, o, *spatial)
            for t in live:
                src, dst = plans[t]
                target[(Ellipsis, *dst)] += z[:, :, t - t0][(Ellipsis, *src)]

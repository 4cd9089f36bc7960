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
from ._boxes import band_shape, most_boxes, output_boxes, unit_views
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


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, *, cores: int, limit: int):
    """Machine-free work: one GEMM over the undilated lhs, then one strided add per tap."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, taps, length = rhs_shape[1], prod(rhs_shape[3:]), prod(lhs_shape[3:])
    z = g * b * o * taps * length * itemsize
    out = g * b * o * prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:])) * itemsize
    flops = 2.0 * g * b * o * c * taps * length
    moved = (4 * z + out) / _parallel.cores_for(b, cores)  # each job scatters its own images
    # jobs: images (all groups each), and boxes of output rows where they are fewer than
    # the cores (each box's products cover the input rows it reads)
    out_spatial = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    jobs = b * most_boxes(b, out_spatial, flops / b, 2 * taps + 8)
    return Counts(flops, min(o * taps, c, length), bytes=moved, calls=2 * taps + 8, jobs=jobs)


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
    lhs = lhs.astype(dtype, copy=False)
    nd = len(kernel)
    # (G, *K, O, C) -> (G, taps*O, C): rows ordered tap-major
    weights = np.ascontiguousarray(
        rhs.astype(dtype, copy=False).transpose(0, *range(3, 3 + nd), 1, 2)
    )
    weights = weights.reshape(g, taps * o, c)
    result = np.zeros((g, b, o, *out_spatial), dtype=dtype)

    def per_tap(box_shape) -> int:  # Z bytes of one (b, tap) for an output box
        shape, _ = band_shape(lhs.shape, kernel, corr, box_shape)
        return g * o * prod(shape[3:]) * dtype.itemsize

    flops = 2.0 * g * o * c * taps * length  # one image's

    def box_bytes(box_shape):  # Z of one image's box
        return per_tap(box_shape) * taps

    def boxes(units):
        return output_boxes(units, out_spatial, flops, 2 * taps + 8, box_bytes, workspace_limit)

    _, b_chunk, jobs = _parallel.batch_chunks(
        1, b, per_tap(()) * taps, workspace_limit, None, boxes
    )
    share = workspace_limit // len(jobs)  # one image too large: chunk the taps as well
    shapes = {tuple(s.stop - s.start for s in box) for units in jobs for _, _, box in units}
    largest = max(per_tap(shape) for shape in shapes)
    t_chunk = taps if largest * taps <= share else chunk(taps, largest, share)
    sizes = (kernel, b_chunk, t_chunk)
    _parallel.run_jobs(lambda units: _run_units(lhs, weights, corr, result, sizes, units), jobs)
    return result


def _run_units(lhs, weights, corr: Correlation, result, sizes, units):
    """Add every tap's product into result[:, b0 : b0 + b_chunk] in the output box ``box``
    for each (0, b0, box) of ``units``; lhs (G, B, C, *S), weights (G, taps*O, C)
    tap-major."""
    kernel, b_chunk, t_chunk = sizes
    for _, b0, box in units:
        images = (slice(None), slice(b0, min(lhs.shape[1], b0 + b_chunk)))
        part, part_corr, target = unit_views(lhs, result, kernel, corr, images, box)
        _scatter(part, weights, part_corr, target, kernel, t_chunk)


def _scatter(lhs, weights, corr: Correlation, target, kernel, t_chunk: int) -> None:
    """Add to target (G, n, O, *S_out) every tap's product of lhs (G, n, C, *S), in chunks
    of ``t_chunk`` taps, on this thread's own workspace."""
    g, n, c = lhs.shape[:3]
    spatial, out_spatial = lhs.shape[3:], target.shape[3:]
    taps, o, length = prod(kernel), target.shape[2], prod(lhs.shape[3:])
    all_taps = list(itertools.product(*(range(k) for k in kernel)))
    plans = [_tap_slices(tap, spatial, out_spatial, corr) for tap in all_taps]
    flat = lhs.reshape(g, n, c, length)
    buffer = scratch("scatter-products", g * n * min(t_chunk, taps) * o * length, target.dtype)
    for t0 in range(0, taps, t_chunk):
        t1 = min(taps, t0 + t_chunk)
        live = [t for t in range(t0, t1) if plans[t] is not None]
        if not live:
            continue
        z = buffer[: g * n * (t1 - t0) * o * length].reshape(g, n, (t1 - t0) * o, length)
        np.matmul(weights[:, None, t0 * o : t1 * o], flat, out=z)
        z = z.reshape(g, n, t1 - t0, o, *spatial)
        for t in live:
            src, dst = plans[t]
            target[(Ellipsis, *dst)] += z[:, :, t - t0][(Ellipsis, *src)]

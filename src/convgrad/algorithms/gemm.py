"""GEMM (im2col) correlation: zero-copy window views packed into one matmul per group.

The windows of the padded lhs are copied into a contiguous column matrix in whichever
layout keeps the copy's inner loop long, in chunks over B (and C, if needed) that stay
under the workspace limit (padding, columns and the product all count), and multiplied
with the kernel matrix; groups ride on ``np.matmul``'s leading (batch) axis. A 1x1
kernel with stride 1 and no padding needs no column matrix at all, and neither does a
kernel that covers the whole lhs (the weight gradient of such a layer): that is one
matmul per lhs channel, summed.

Inserted zeros (lhs_dilation > 1) are multiplied like any sample: ``scatter`` is the
algorithm that avoids them.
"""

from __future__ import annotations

import numpy as np

from .._rules import Correlation
from . import _parallel
from ._common import (
    chunk,
    dilate_and_pad,
    laid_out,
    padded_shape,
    prod,
    result_dtype,
    scratch,
    window_view,
)

name = "gemm"


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return True


def _plain(corr: Correlation) -> bool:
    return all(ld == 1 for ld in corr.lhs_dilation) and all(p == (0, 0) for p in corr.padding)


def _pointwise(rhs_shape, corr: Correlation) -> bool:
    return prod(rhs_shape[3:]) == 1 and _plain(corr) and all(s == 1 for s in corr.window_strides)


def _one_window(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    """The kernel covers the whole (unpadded, undilated) lhs: one output position, and
    out[g, b, o] = sum_c lhs[g, b, c] . rhs[g, o, c] (the weight gradient of a 1x1 conv)."""
    return (
        tuple(lhs_shape[3:]) == tuple(rhs_shape[3:])
        and _plain(corr)
        and all(rd == 1 for rd in corr.rhs_dilation)
    )


def _layout_a(kernel, out_spatial) -> bool:
    """Columns laid out (G, C*K, B*L), the copy running along output positions (else
    (G, B*L, C*K), along kernel taps: long kernels, e.g. weight gradients)."""
    return out_spatial[-1] >= kernel[-1]


def _one_window_chunk(lhs_shape, rhs_shape, itemsize: int, limit: int) -> int:
    """Channels (C) per matmul: their (G, c, B, O) products stay under the limit."""
    g, b, c = lhs_shape[:3]
    return chunk(c, g * b * rhs_shape[1] * itemsize, limit)


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the full (unchunked) padded input, column matrix and product."""
    if _pointwise(rhs_shape, corr):
        return 0
    if _one_window(lhs_shape, rhs_shape, corr):
        return lhs_shape[0] * prod(lhs_shape[1:3]) * rhs_shape[1] * itemsize
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    length = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    padded = 0 if _plain(corr) else prod(padded_shape(lhs_shape[3:], corr))
    return g * b * (c * padded + c * prod(rhs_shape[3:]) * length + o * length) * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: the GEMM, the padding / column copies and the product's transpose."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, taps = rhs_shape[1], prod(rhs_shape[3:])
    length = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    flops = 2.0 * g * b * o * c * taps * length
    if _pointwise(rhs_shape, corr):
        return Counts(flops, min(o, c, length), calls=3, jobs=max(g, b, length))
    if _one_window(lhs_shape, rhs_shape, corr):  # one matmul per lhs channel, no copies
        return Counts(flops, min(o, b, taps), calls=3 + c // 4, jobs=max(g, b))
    padded = 0 if _plain(corr) else prod(padded_shape(lhs_shape[3:], corr))
    moved = g * b * (c * padded + c * taps * length + o * length) * 2 * itemsize
    chunks = -(-workspace_bytes(lhs_shape, rhs_shape, corr, itemsize) // (256 * 2**20))
    if _layout_a(rhs_shape[3:], corr.output_spatial(lhs_shape[3:], rhs_shape[3:])):
        moved /= _parallel.cores_for(g * b)  # each job copies its own chunks
    # (layout B, the weight gradients' long kernels: measured no faster in jobs, e.g. the
    # stem's dW 24 -> 26 ms, so the copy still counts whole)
    return Counts(flops, min(o, c * taps, b * length), bytes=moved, calls=8 * chunks, jobs=g * b)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    out_spatial = corr.output_spatial(lhs.shape[3:], kernel)
    length, taps = prod(out_spatial), prod(kernel)
    dtype = result_dtype(lhs, rhs)
    lhs, rhs = lhs.astype(dtype, copy=False), rhs.astype(dtype, copy=False)
    result = np.empty((g, b, o, length), dtype=dtype)
    flops = 2.0 * g * b * o * c * taps * length
    jobs = _parallel.workers(g * b * length) if flops >= _parallel.PARALLEL_FLOPS else 1
    if _pointwise(rhs.shape, corr):  # matmuls over boxes of (G, B, L), one per job
        lhs_, rhs_ = lhs.reshape(g, b, c, length), rhs.reshape(g, 1, o, c)

        def pointwise(box):
            gs, bs, ls = box
            np.matmul(rhs_[gs], lhs_[gs, bs, :, ls], out=result[gs, bs, :, ls])

        _parallel.run_jobs(pointwise, _parallel.box_slices((g, b, length), jobs))
        return result.reshape(g, b, o, *out_spatial)

    if _one_window(lhs.shape, rhs.shape, corr):  # sum_c lhs[g, :, c] @ rhs[g, :, c]^T
        flat_lhs = lhs.reshape(g, b, c, taps).swapaxes(1, 2)  # (G, C, B, K): views if
        flat_rhs = rhs.reshape(g, o, c, taps).transpose(0, 2, 3, 1)  # contiguous per c
        total = result.reshape(g, b, o)
        boxes = _parallel.box_slices((g, b), _parallel.workers(g * b) if jobs > 1 else 1)
        step = _one_window_chunk(lhs.shape, rhs.shape, dtype.itemsize, workspace_limit)

        def one_window(box):  # the jobs' (G, c, B, O) products share the limit
            gs, bs = box
            for c0 in range(0, c, step):
                part = np.matmul(flat_lhs[gs, c0 : c0 + step, bs], flat_rhs[gs, c0 : c0 + step])
                if c0 == 0:
                    part.sum(axis=1, out=total[gs, bs])
                else:
                    total[gs, bs] += part.sum(axis=1)

        _parallel.run_jobs(one_window, boxes)
        return result.reshape(g, b, o, *out_spatial)
    isz = dtype.itemsize
    padded = 0 if _plain(corr) else prod(padded_shape(lhs.shape[3:], corr))
    if rhs.flags.c_contiguous:
        kernel_matrix = rhs.reshape(g, o, c * taps)
    else:  # a strided view (e.g. the flipped filters of dX): laid out in a workspace
        kernel_matrix = laid_out("gemm-kernel", rhs, dtype).reshape(g, o, c * taps)
        workspace_limit = max(1, workspace_limit - kernel_matrix.nbytes)
    unit_c = (padded + taps * length) * isz  # one (g, b, c): padding + columns
    unit_o = o * length * isz  # one (g, b): product
    per_gb = c * unit_c + unit_o
    g_chunk, b_chunk, jobs = _parallel.batch_chunks(g, b, per_gb, workspace_limit)
    share = max(1, workspace_limit // len(jobs))  # one (g, b) too large: chunk C as well
    c_chunk = c if per_gb <= share else chunk(c, unit_c, share - unit_o)
    sizes = (kernel, g_chunk, b_chunk, c_chunk)
    _parallel.run_jobs(
        lambda chunks: _run_chunks(lhs, kernel_matrix, corr, result, sizes, chunks), jobs
    )
    return result.reshape(g, b, o, *out_spatial)


def _run_chunks(lhs, kernel_matrix, corr: Correlation, result, sizes, chunks):
    """Fill result[g0 : g0 + g_chunk, b0 : b0 + b_chunk] (G, B, O, L) for each (g0, b0) of
    ``chunks``, on this thread's own workspaces; kernel_matrix (G, O, C*K)."""
    g, b, c = lhs.shape[:3]
    o = kernel_matrix.shape[1]
    kernel, g_chunk, b_chunk, c_chunk = sizes
    nd, taps = len(kernel), prod(kernel)
    out_spatial = corr.output_spatial(lhs.shape[3:], kernel)
    length, dtype = prod(out_spatial), result.dtype
    # layout A: cols (G, C*K, B*L), copy runs along output positions;
    # layout B: cols (G, B*L, C*K), copy runs along kernel taps (long kernels, e.g. dW).
    layout_a = _layout_a(kernel, out_spatial)
    spatial_axes = tuple(range(3, 3 + nd))
    kernel_axes = tuple(range(3 + nd, 3 + 2 * nd))
    buffer = scratch("gemm-columns", g_chunk * c_chunk * taps * b_chunk * length, dtype)
    product = scratch("gemm-product", g_chunk * o * b_chunk * length, dtype)

    for g0, b0 in chunks:
        gn = min(g, g0 + g_chunk) - g0
        n = min(b, b0 + b_chunk) - b0
        target = result[g0 : g0 + gn, b0 : b0 + n]
        for c0 in range(0, c, c_chunk):
            m = min(c, c0 + c_chunk) - c0
            part = dilate_and_pad(lhs[g0 : g0 + gn, b0 : b0 + n, c0 : c0 + m], corr)
            windows = window_view(part, kernel, corr.window_strides, corr.rhs_dilation)
            weights = kernel_matrix[g0 : g0 + gn, :, c0 * taps : (c0 + m) * taps]
            size = gn * m * taps * n * length
            if layout_a:
                cols = buffer[:size].reshape(gn, m, *kernel, n, *out_spatial)
                np.copyto(cols, windows.transpose(0, 2, *kernel_axes, 1, *spatial_axes))
                cols = cols.reshape(gn, m * taps, n * length)
                if n == 1 and m == c:  # straight into the result
                    np.matmul(weights, cols, out=target[:, 0])
                    continue
                out = product[: gn * o * n * length].reshape(gn, o, n * length)
                prod_ = np.matmul(weights, cols, out=out)
                prod_ = prod_.reshape(gn, o, n, length).transpose(0, 2, 1, 3)
            else:
                cols = buffer[:size].reshape(gn, n, *out_spatial, m, *kernel)
                np.copyto(cols, windows.transpose(0, 1, *spatial_axes, 2, *kernel_axes))
                out = product[: gn * n * length * o].reshape(gn, n * length, o)
                prod_ = np.matmul(
                    cols.reshape(gn, n * length, m * taps), weights.swapaxes(1, 2), out=out
                )
                prod_ = prod_.reshape(gn, n, length, o).transpose(0, 1, 3, 2)
            if c0 == 0:
                np.copyto(target, prod_)
            else:
                target += prod_

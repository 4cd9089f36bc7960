"""GEMM (im2col) correlation: zero-copy window views packed into one matmul per group.

The windows of the padded lhs are copied into a contiguous column matrix in whichever
layout keeps the copy's inner loop long, in chunks over B (and C, if needed) that stay
under the workspace limit (padding, columns and the product all count), and multiplied
with the kernel matrix; groups ride on ``np.matmul``'s leading (batch) axis. A 1x1
kernel with stride 1 and no padding needs no column matrix at all, and neither does a
kernel that covers the whole lhs (the weight gradient of such a layer): that is one
matmul per lhs channel, summed.

Inserted zeros (lhs_dilation > 1) are multiplied like any sample: ``phase`` is the
algorithm that avoids them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._process import split_range
from .._rules import Correlation
from . import _parallel
from ._boxes import band_shape, most_boxes, output_boxes, unit_views
from ._dtypes import result_dtype
from ._geometry import (
    dilate_and_pad,
    flat_strides,
    padded_shape,
    padding_bounded,
    prod,
    window_view,
)
from ._workspace import chunk, laid_out, scratch

name = "gemm"
BOX_CALLS = 12  # calls one image's box makes: its copies, the GEMM, the result's copy


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


def _sparse(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    """Whether the padded, dilated lhs would dwarf the columns (a huge dilation with 'same'
    padding, a huge padding under a huge stride): the windows are then gathered from the
    lhs itself (one zero appended per dim stands for every padding sample)."""
    return not padding_bounded(lhs_shape, rhs_shape, corr)


def _plane(lhs_shape, rhs_shape, corr: Correlation) -> int:
    """Elements of one (g, b, c) lhs plane built besides the columns: the padded plane, or
    the plane with its appended zeros and its gathered windows (sparse), or none."""
    if _sparse(lhs_shape, rhs_shape, corr):
        taps, length = prod(rhs_shape[3:]), prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
        return prod(s + 1 for s in lhs_shape[3:]) + taps * length
    return 0 if _plain(corr) else prod(padded_shape(lhs_shape[3:], corr))


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the full (unchunked) padded input, column matrix and product."""
    if _pointwise(rhs_shape, corr):
        return 0
    if _one_window(lhs_shape, rhs_shape, corr):  # a partial per job, and its products
        return 2 * _parallel.CORES * lhs_shape[0] * lhs_shape[1] * rhs_shape[1] * itemsize
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    length = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    padded = _plane(lhs_shape, rhs_shape, corr)
    return g * b * (c * padded + c * prod(rhs_shape[3:]) * length + o * length) * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, *, cores: int, limit: int):
    """Machine-free work: the GEMM, the padding / column copies and the product's transpose."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, taps = rhs_shape[1], prod(rhs_shape[3:])
    length = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    flops = 2.0 * g * b * o * c * taps * length
    if _pointwise(rhs_shape, corr):
        return Counts(flops, min(o, c, length), calls=3, jobs=max(g, b, length))
    if _one_window(lhs_shape, rhs_shape, corr):  # one matmul per lhs channel, no copies
        return Counts(flops, min(o, b, taps), calls=4 + c, jobs=max(g, b, c))
    padded = _plane(lhs_shape, rhs_shape, corr)
    moved = g * b * (c * padded + c * taps * length + o * length) * 2 * itemsize
    chunks = -(-workspace_bytes(lhs_shape, rhs_shape, corr, itemsize) // (256 * 2**20))
    if _layout_a(rhs_shape[3:], corr.output_spatial(lhs_shape[3:], rhs_shape[3:])):
        moved /= _parallel.cores_for(g * b, cores)  # each job copies its own chunks
    # (layout B, the weight gradients' long kernels: measured no faster in jobs, e.g. the
    # stem's dW 24 -> 26 ms, so the copy still counts whole)
    # jobs: images, and boxes of output rows where they are fewer than the cores
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    boxes = 1  # (the sparse path's gather index is built for whole images)
    if not _sparse(lhs_shape, rhs_shape, corr):
        boxes = most_boxes(g * b, out, flops / (g * b), BOX_CALLS)
    return Counts(
        flops, min(o, c * taps, b * length), bytes=moved, calls=8 * chunks, jobs=g * b * boxes
    )


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    out_spatial = corr.output_spatial(lhs.shape[3:], kernel)
    length, taps = prod(out_spatial), prod(kernel)
    dtype = result_dtype(lhs, rhs)
    lhs, rhs = lhs.astype(dtype, copy=False), rhs.astype(dtype, copy=False)
    result = np.empty((g, b, o, *out_spatial), dtype=dtype)
    flops = 2.0 * g * b * o * c * taps * length
    jobs = _parallel.workers(g * b * length) if flops >= _parallel.PARALLEL_FLOPS else 1
    if _pointwise(rhs.shape, corr):  # matmuls over boxes of (G, B, L), one per job
        lhs_, rhs_ = lhs.reshape(g, b, c, length), rhs.reshape(g, 1, o, c)

        def pointwise(box):
            gs, bs, ls = box
            np.matmul(rhs_[gs], lhs_[gs, bs, :, ls], out=flat_result[gs, bs, :, ls])

        flat_result = result.reshape(g, b, o, length)
        _parallel.run_jobs(pointwise, _parallel.box_slices((g, b, length), jobs))
        return result

    if _one_window(lhs.shape, rhs.shape, corr):  # sum_c lhs[g, :, c] @ rhs[g, :, c]^T
        _run_one_window(lhs, rhs, result.reshape(g, b, o), jobs, workspace_limit)
        return result
    isz = dtype.itemsize
    gather, boxes = None, None
    if _sparse(lhs.shape, rhs.shape, corr):
        gather = _gather_index(lhs.shape[3:], kernel, corr)
        workspace_limit = max(1, workspace_limit - gather.nbytes)
    if rhs.flags.c_contiguous:
        kernel_matrix = rhs.reshape(g, o, c * taps)
    elif rhs.nbytes <= workspace_limit // 2:  # a strided view (e.g. the flipped filters of
        kernel_matrix = laid_out("gemm-kernel", rhs, dtype).reshape(g, o, c * taps)  # dX)
        workspace_limit = max(1, workspace_limit - kernel_matrix.nbytes)
    else:  # a large one (a weight gradient's grad_output): each chunk's part laid out
        kernel_matrix = None
    # a laid-out (g, c) of the kernel, where one is laid out, counted per image (a bound)
    unit_k = 0 if kernel_matrix is not None else o * taps * isz

    def image_bytes(lhs_shape, box_corr) -> tuple[int, int]:
        """Bytes of one (g, b): per channel (padding, columns, kernel part), and besides
        (the product)."""
        length = prod(box_corr.output_spatial(lhs_shape[3:], kernel))
        return (_plane(lhs_shape, rhs.shape, box_corr) + taps * length) * isz + unit_k, (
            o * length * isz
        )

    if gather is None:  # boxes of output rows where the images are fewer than the cores

        def box_bytes(box_shape):
            per_c, other = image_bytes(*band_shape(lhs.shape, kernel, corr, box_shape))
            return c * per_c + other

        def boxes(units):
            return output_boxes(
                units, out_spatial, flops / (g * b), BOX_CALLS, box_bytes, workspace_limit
            )

    whole = per_c, other = image_bytes(lhs.shape, corr)
    c_chunk = c
    if kernel_matrix is None:  # channels chunked to fit a job's share
        c_chunk = chunk(c, per_c, workspace_limit // _parallel.workers(g * b) - other)
    per_gb = c_chunk * per_c + other
    g_chunk, b_chunk, jobs = _parallel.batch_chunks(g, b, per_gb, workspace_limit, None, boxes)
    shapes = {tuple(s.stop - s.start for s in box) for units in jobs for _, _, box in units}
    if kernel_matrix is not None or shapes != {()}:  # one (g, b) too large: chunk C as well
        share = max(1, workspace_limit // len(jobs))
        c_chunk = c
        for box_shape in shapes:
            per_c, other = (
                image_bytes(*band_shape(lhs.shape, kernel, corr, box_shape)) if box_shape else whole
            )
            if c * per_c + other > share:
                c_chunk = min(c_chunk, chunk(c, per_c, share - other))
    plan = _Plan(kernel, g_chunk, b_chunk, c_chunk, _layout_a(kernel, out_spatial))
    _parallel.run_jobs(
        lambda units: _run_units(lhs, rhs, kernel_matrix, gather, corr, result, plan, units),
        jobs,
    )
    return result


def _run_one_window(lhs, rhs, total, jobs: int, workspace_limit: int) -> None:
    """total (G, B, O) = sum_c lhs[:, :, c] . rhs[:, :, c] (a 1x1 layer's weight gradient:
    c the images, B and O the channels). Jobs take boxes of (G, C, B): each job keeps
    the whole B x O product of each of its images and sums them into its part of a
    partial per range of images (as many ranges as fit half the workspace limit); the
    partials are then added in order. (The 1x1 benchmark layer's job on one thread: 4
    images of 256 x 64 in 2.47 ms, against 8 images of 128 x 64 in 2.98.)"""
    g, b, c = lhs.shape[:3]
    o, taps = rhs.shape[1], prod(rhs.shape[3:])
    flat_lhs = lhs.reshape(g, b, c, taps).swapaxes(1, 2)  # (G, C, B, K): views if
    flat_rhs = rhs.reshape(g, o, c, taps).transpose(0, 2, 3, 1)  # contiguous per c
    most = max(1, workspace_limit // (2 * max(1, total.nbytes)))
    boxes = _one_window_boxes(g, c, b, _parallel.workers(g * b * c) if jobs > 1 else 1, most)
    ranges = 1 + max(i for i, *_ in boxes)
    partials = np.zeros((ranges, *total.shape), total.dtype) if ranges > 1 else None

    def one_window(box):  # a GEMM per image, added into the job's part of its partial
        i, gs, cs, bs = box
        into = total[gs, bs] if partials is None else partials[i][gs, bs]
        product = scratch("gemm-one-window", into.size, into.dtype).reshape(into.shape)
        for ci in range(cs.start, cs.stop):
            np.matmul(
                flat_lhs[gs, ci, bs], flat_rhs[gs, ci], out=product if ci > cs.start else into
            )
            if ci > cs.start:
                into += product

    _parallel.run_jobs(one_window, boxes)
    if partials is not None:
        np.sum(partials, axis=0, out=total)


def _one_window_boxes(g: int, c: int, b: int, jobs: int, most_ranges: int) -> list[tuple]:
    """About ``jobs`` boxes (range index, groups, images, channels) of (G, C, B): groups
    where they are enough, else ranges of the images (at most ``most_ranges``) and, where
    those are fewer than the jobs, of the channels (B)."""
    whole = slice(None)
    if g >= jobs:
        return [(0, gs, slice(0, c), whole) for (gs,) in _parallel.box_slices((g,), jobs)]
    images = max(1, min(c, jobs, most_ranges))
    channels = min(b, max(1, jobs // images))
    return [
        (i, whole, slice(c0, c1), slice(b0, b1))
        for i, (c0, c1) in enumerate(split_range(c, images))
        for b0, b1 in split_range(b, channels)
    ]


class _Plan(NamedTuple):
    kernel: tuple
    g_chunk: int
    b_chunk: int
    c_chunk: int
    layout_a: bool  # columns (G, C*K, B*L) (else (G, B*L, C*K))


def _gather_index(spatial, kernel, corr: Correlation) -> np.ndarray:
    """(*out, *kernel) flat indices into an lhs plane with one zero appended per dim
    (shape S + 1): the sample under each output's tap, or that zero where the tap meets
    padding or an inserted zero. Built per dim, so it never spans the padded plane."""
    out = corr.output_spatial(spatial, kernel)
    nd = len(kernel)
    flat = flat_strides(tuple(s + 1 for s in spatial))
    index = np.zeros((*out, *kernel), dtype=np.int64)
    for d, (size, n, k, ws, rd, ld, (lo, _)) in enumerate(
        zip(spatial, out, kernel, corr.window_strides, corr.rhs_dilation, corr.lhs_dilation,
            corr.padding)
    ):  # fmt: skip
        # the door keeps each term below 2**61: their sum fits an int64
        at = np.arange(n, dtype=np.int64)[:, None] * ws + np.arange(k, dtype=np.int64) * rd - lo
        sample = at // ld
        real = (at >= 0) & (at % ld == 0) & (sample < size)
        shape = [1] * (2 * nd)
        shape[d], shape[nd + d] = n, k
        index += (np.where(real, sample, size) * flat[d]).reshape(shape)
    return index


def _kernel_part(rhs, kernel_matrix, g0, gn, c0, m, taps):
    """The (gn, O, m*taps) kernel matrix of groups g0.. and channels c0..: a view where one
    serves BLAS, else laid out in this thread's workspace."""
    if kernel_matrix is not None:
        return kernel_matrix[g0 : g0 + gn, :, c0 * taps : (c0 + m) * taps]
    part = rhs[g0 : g0 + gn, :, c0 : c0 + m]
    isz, inner = part.itemsize, part.shape[2:]
    dense = all(  # (m, *kernel) C-contiguous within each (g, o): one row of BLAS
        n == 1 or stride == isz * prod(inner[i + 1 :])
        for i, (n, stride) in enumerate(zip(inner, part.strides[2:]))
    )
    if dense and part.strides[1] >= m * taps * isz and part.strides[0] >= 0:
        shape, strides = (gn, part.shape[1], m * taps), (*part.strides[:2], isz)
        return as_strided(part, shape=shape, strides=strides, writeable=False)
    return laid_out("gemm-kernel-part", part, part.dtype).reshape(gn, part.shape[1], m * taps)


def _run_units(lhs, rhs, kernel_matrix, gather, corr: Correlation, result, plan: _Plan, units):
    """Fill result[g0 : g0 + g_chunk, b0 : b0 + b_chunk] (G, B, O, *S_out) in the output
    box ``box`` for each (g0, b0, box) of ``units``, on this thread's own workspaces;
    kernel_matrix (G, O, C*K), or None to take each chunk's part of rhs (G, O, C, *K);
    gather: the sparse windows' indices."""
    g, b, c = lhs.shape[:3]
    kernel, g_chunk, b_chunk, c_chunk, _ = plan
    taps = prod(kernel)
    # channels outermost: a kernel part laid out per chunk serves all the images after it
    for c0 in range(0, c, c_chunk):
        m = min(c, c0 + c_chunk) - c0
        laid = None
        for g0, b0, box in units:
            gn = min(g, g0 + g_chunk) - g0
            images = (slice(g0, g0 + gn), slice(b0, min(b, b0 + b_chunk)))
            source, part_corr, target = unit_views(lhs, result, kernel, corr, images, box)
            if laid is None or laid[0] != (g0, gn):
                laid = ((g0, gn), _kernel_part(rhs, kernel_matrix, g0, gn, c0, m, taps))
            whole_rows = len(box) <= 1  # the target flattens to (gn, n, O, L) as a view
            if whole_rows:  # (a copy of 4 dims, not of 5 with rows of 3: 5 % of strided dW)
                target = target.reshape(*target.shape[:3], -1)
            # all channels at once: the GEMM writes the result itself
            direct = target if m == c and whole_rows else None
            product = _product(source[:, :, c0 : c0 + m], laid[1], gather, part_corr, plan, direct)
            if product is None:  # written straight into the result
                continue
            product = product.reshape(target.shape)
            if c0 == 0:
                np.copyto(target, product)
            else:
                target += product


def _product(source, weights, gather, corr: Correlation, plan: _Plan, target):
    """source (gn, n, m, *S) correlated with weights (gn, O, m*taps) through a column
    matrix in this thread's workspace: a (gn, n, O, L) view of the product there (L: the
    output positions), or None where it went straight into ``target`` (given: (gn, n, O,
    L), and one image)."""
    gn, n, m = source.shape[:3]
    kernel, layout_a = plan.kernel, plan.layout_a
    nd, taps, o = len(kernel), prod(kernel), weights.shape[1]
    out_spatial = corr.output_spatial(source.shape[3:], kernel)
    length, dtype = prod(out_spatial), weights.dtype
    spatial_axes = tuple(range(3, 3 + nd))
    kernel_axes = tuple(range(3 + nd, 3 + 2 * nd))
    if gather is None:
        padded = dilate_and_pad(source, corr)
        windows = window_view(padded, kernel, corr.window_strides, corr.rhs_dilation)
    else:
        planes = gn * n * m
        ext_shape = tuple(s + 1 for s in source.shape[3:])
        ext = scratch("gemm-extended", planes * prod(ext_shape), dtype)
        ext = ext.reshape(*source.shape[:3], *ext_shape)
        ext[...] = 0
        ext[(Ellipsis, *(slice(0, s) for s in source.shape[3:]))] = source
        windows = scratch("gemm-gathered", planes * gather.size, dtype)
        windows = windows.reshape(*source.shape[:3], gather.size)
        np.take(ext.reshape(*source.shape[:3], -1), gather.reshape(-1), axis=3, out=windows)
        windows = windows.reshape(*source.shape[:3], *gather.shape)
    buffer = scratch("gemm-columns", gn * m * taps * n * length, dtype)
    product = scratch("gemm-product", gn * o * n * length, dtype)
    # layout A: cols (G, C*K, B*L), copy runs along output positions;
    # layout B: cols (G, B*L, C*K), copy runs along kernel taps (long kernels, e.g. dW).
    if layout_a:
        cols = buffer.reshape(gn, m, *kernel, n, *out_spatial)
        np.copyto(cols, windows.transpose(0, 2, *kernel_axes, 1, *spatial_axes))
        cols = cols.reshape(gn, m * taps, n * length)
        if n == 1 and target is not None:  # straight into the result
            np.matmul(weights, cols, out=target[:, 0])
            return None
        out = np.matmul(weights, cols, out=product.reshape(gn, o, n * length))
        return out.reshape(gn, o, n, length).swapaxes(1, 2)
    cols = buffer.reshape(gn, n, *out_spatial, m, *kernel)
    np.copyto(cols, windows.transpose(0, 1, *spatial_axes, 2, *kernel_axes))
    out = product.reshape(gn, n * length, o)
    np.matmul(cols.reshape(gn, n * length, m * taps), weights.swapaxes(1, 2), out=out)
    return out.reshape(gn, n, length, o).swapaxes(2, 3)

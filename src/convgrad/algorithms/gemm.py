"""GEMM (im2col) correlation: zero-copy window views packed into one matmul per group.

The windows of the padded lhs are copied into a contiguous column matrix in whichever
layout keeps the copy's inner loop long, in chunks over B (and C, if needed) that stay
under the workspace limit, and multiplied with the kernel matrix; groups ride on
``np.matmul``'s leading (batch) axis. A 1x1 kernel needs no column matrix at all.
"""

from __future__ import annotations

import numpy as np

from .._rules import Correlation
from ._common import dilate_and_pad, prod, window_view

name = "gemm"


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return True


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the full (unchunked) column matrix."""
    g, b, c = lhs_shape[:3]
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    return g * b * c * prod(rhs_shape[3:]) * prod(out) * itemsize


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    nd = len(kernel)
    windows = window_view(dilate_and_pad(lhs, corr), kernel, corr.window_strides, corr.rhs_dilation)
    out_spatial = windows.shape[3 : 3 + nd]
    length, taps = prod(out_spatial), prod(kernel)
    result = np.empty((g, b, o, length), dtype=np.result_type(lhs, rhs))

    if taps == 1:  # 1x1: the windows are a (strided) view of lhs itself
        samples = windows.reshape(g, b, c, length)
        np.matmul(rhs.reshape(g, 1, o, c), samples, out=result)
        return result.reshape(g, b, o, *out_spatial)

    itemsize = result.itemsize
    per_channel = taps * length * itemsize  # column bytes of one (b, c) pair
    c_chunk = max(1, min(c, workspace_limit // per_channel))
    b_chunk = max(1, min(b, workspace_limit // (per_channel * c)) if c_chunk == c else 1)
    buffer = np.empty(g * c_chunk * taps * b_chunk * length, dtype=result.dtype)
    kernel_matrix = rhs.reshape(g, o, c * taps)
    # layout A: cols (G, C*K, B*L), copy runs along output positions;
    # layout B: cols (G, B*L, C*K), copy runs along kernel taps (long kernels, e.g. dW).
    layout_a = out_spatial[-1] >= kernel[-1]
    spatial_axes = tuple(range(3, 3 + nd))
    kernel_axes = tuple(range(3 + nd, 3 + 2 * nd))

    for b0 in range(0, b, b_chunk):
        b1 = min(b, b0 + b_chunk)
        n = b1 - b0
        acc = None
        for c0 in range(0, c, c_chunk):
            c1 = min(c, c0 + c_chunk)
            m = c1 - c0
            part = windows[:, b0:b1, c0:c1]
            weights = kernel_matrix[:, :, c0 * taps : c1 * taps]
            if layout_a:
                cols = buffer[: g * m * taps * n * length].reshape(g, m, *kernel, n, *out_spatial)
                np.copyto(cols, part.transpose(0, 2, *kernel_axes, 1, *spatial_axes))
                prod_ = np.matmul(weights, cols.reshape(g, m * taps, n * length))
                prod_ = prod_.reshape(g, o, n, length).transpose(0, 2, 1, 3)
            else:
                cols = buffer[: g * n * length * m * taps].reshape(g, n, *out_spatial, m, *kernel)
                np.copyto(cols, part.transpose(0, 1, *spatial_axes, 2, *kernel_axes))
                prod_ = np.matmul(cols.reshape(g, n * length, m * taps), weights.transpose(0, 2, 1))
                prod_ = prod_.reshape(g, n, length, o).transpose(0, 1, 3, 2)
            if acc is None:
                acc = prod_ if c_chunk == c else prod_.copy()
            else:
                acc += prod_
        result[:, b0:b1] = acc
    return result.reshape(g, b, o, *out_spatial)

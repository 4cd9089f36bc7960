"""Direct shift-accumulate: elementwise multiply-adds on shifted views (window stride 1).

For depthwise and tiny-channel groups a GEMM has nothing to block over; this adds each
kernel tap's shifted input times the scalar weight, on the same flat padded layout as
``implicit`` (G, C, B*P):

    full[g, o, q] += rhs[g, o, c, j] * lhs_flat[g, c, q + s_j]      for every tap j, c

Work is cut into group chunks whose accumulator fits in cache (and under the limit), so
each chunk's taps run hot. Columns off the valid corner are discarded as in ``implicit``.
"""

from __future__ import annotations

import numpy as np

from .._rules import Correlation
from ._common import dilate_and_pad_into, padded_shape, prod, result_dtype
from .implicit import _geometry, _shifts, _tail

name = "direct"
MAX_PRODUCTS = 16  # O*C per group; beyond this a GEMM wins


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return (
        all(s == 1 for s in corr.window_strides)
        and rhs_shape[1] * rhs_shape[2] <= MAX_PRODUCTS
        and prod(rhs_shape[3:]) <= 512
    )


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the padded lhs, the full-grid accumulator and one product, whole batch."""
    g, b, c = lhs_shape[:3]
    padded = prod(padded_shape(lhs_shape[3:], corr))
    return g * b * (c + 2 * rhs_shape[1]) * padded * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: two elementwise passes (multiply, add) per tap and channel."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, taps = rhs_shape[1], prod(rhs_shape[3:])
    padded = prod(padded_shape(lhs_shape[3:], corr))
    elements = g * b * o * padded
    moved = (
        taps * c * elements * itemsize
    )  # in-cache passes: ~1 byte-pass per product + g * b * (2 * c + 2 * o) * padded * itemsize
    chunks = -(-elements * itemsize // CHUNK)
    return Counts(bytes=moved, calls=chunks * (2 * taps * c + 3) + 10)


CHUNK = 256 * 1024  # accumulator bytes per chunk (cache-sized)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    dtype = result_dtype(lhs, rhs)
    padded, out_spatial, flat = _geometry(lhs.shape, rhs.shape, corr)
    plane = prod(padded)
    shifts = _shifts(kernel, corr, flat)
    tail = _tail(out_spatial, flat)
    weights = rhs.astype(dtype, copy=False).reshape(g, o, c, len(shifts))
    result = np.empty((g, b, o, *out_spatial), dtype=dtype)
    per_image = (c + 2 * o) * plane * dtype.itemsize  # one (g, b)
    target = max(1, min(workspace_limit, max(CHUNK, per_image)))
    if g * per_image <= target:
        g_chunk, b_chunk = g, max(1, min(b, target // (g * per_image)))
    else:
        b_chunk = max(1, min(b, target // per_image))
        g_chunk = max(1, min(g, target // (b_chunk * per_image)))
    crop = tuple(slice(0, n) for n in out_spatial)
    lhs_buffer = np.empty(g_chunk * b_chunk * c * plane, dtype=dtype)
    full_buffer = np.empty(g_chunk * b_chunk * o * plane, dtype=dtype)
    product = np.empty(g_chunk * b_chunk * o * plane, dtype=dtype)

    for b0 in range(0, b, b_chunk):
        n = min(b, b0 + b_chunk) - b0
        width = (n - 1) * plane + tail
        for g0 in range(0, g, g_chunk):
            gn = min(g, g0 + g_chunk) - g0
            flat_lhs = lhs_buffer[: gn * c * n * plane].reshape(gn, c, n * plane)
            laid = flat_lhs.reshape(gn, c, n, *padded).swapaxes(1, 2)
            dilate_and_pad_into(lhs[g0 : g0 + gn, b0 : b0 + n], corr, laid)
            full = full_buffer[: gn * o * n * plane].reshape(gn, o, n * plane)
            acc = full[:, :, :width]
            tmp = product[: gn * o * width].reshape(gn, o, width)
            w = weights[g0 : g0 + gn]
            first = True
            for t, shift in enumerate(shifts):
                for ci in range(c):
                    view = flat_lhs[:, ci : ci + 1, shift : shift + width]
                    scale = w[:, :, ci, t : t + 1]  # (gn, O, 1)
                    if first:
                        np.multiply(view, scale, out=acc)
                        first = False
                    else:
                        np.multiply(view, scale, out=tmp)
                        acc += tmp
            grid = full.reshape(gn, o, n, *padded)[(Ellipsis, *crop)]
            np.copyto(
                result[g0 : g0 + gn, b0 : b0 + n], grid.transpose(0, 2, 1, *range(3, grid.ndim))
            )
    return result

"""Direct shift-accumulate: elementwise multiply-adds on shifted views (window stride 1).

For depthwise and tiny-channel groups a GEMM has nothing to block over; this adds each
kernel tap's shifted input times the scalar weight, on the same flat padded layout as
``implicit`` (G, C, B*P):

    full[g, o, q] += rhs[g, o, c, j] * lhs_flat[g, c, q + s_j]      for every tap j, c

Work is cut into chunks of groups and images (under the limit); inside, each compiled
task keeps a tile of the accumulator in L1 while it runs every tap. Columns off the valid corner are discarded as in ``implicit``.
The multiply-adds run in one compiled loop (numba, compiled once per dtype and cached on
disk): in NumPy every tap would be two full passes over memory.
"""

from __future__ import annotations

import numpy as np

from .._rules import Correlation
from ._common import dilate_and_pad_into, padded_shape, prod, result_dtype, scratch
from ._compiled import JIT_OPTIONS, lazy_kernel
from .implicit import _geometry, _shifts, _tail

name = "direct"
MAX_PRODUCTS = 64  # O*C per group; beyond this a GEMM wins


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return (
        all(s == 1 for s in corr.window_strides)
        and rhs_shape[1] * rhs_shape[2] <= MAX_PRODUCTS
        and prod(rhs_shape[3:]) <= 512
    )


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the padded lhs and the full-grid accumulator, whole batch."""
    g, b, c = lhs_shape[:3]
    padded = prod(padded_shape(lhs_shape[3:], corr))
    return g * b * (c + rhs_shape[1]) * padded * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: one multiply-add per tap, channel and padded-grid output in the
    compiled loop, plus the copies into and out of the flat padded layout."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, taps = rhs_shape[1], prod(rhs_shape[3:])
    padded = prod(padded_shape(lhs_shape[3:], corr))
    elements = g * b * o * padded
    chunks = -(-g * b * (c + o) * padded * itemsize // CHUNK)
    return Counts(
        loop_flops=2 * taps * c * elements,
        bytes=2 * g * b * (c + o) * padded * itemsize,
        calls=8 * chunks + 10,
    )


CHUNK = 8 * 2**20  # bytes per chunk of groups x images (the compiled loop tiles for cache)
TILE = 2048  # accumulator elements a compiled task keeps in L1 while it runs every tap


@lazy_kernel
def _shift_accumulate(numba):
    """The compiled loop ``out[g, o, q] = sum_{c, t} w[g, o, c, t] * src[g, c, q + shift_t]``
    for q < width, parallel over (g, o, tile of q); numba is imported on first use only."""

    @numba.njit(**JIT_OPTIONS)
    def kernel(src, weights, shifts, width, out):
        groups, channels = src.shape[0], src.shape[1]
        outs, taps = weights.shape[1], weights.shape[3]
        tiles = (width + TILE - 1) // TILE
        for job in numba.prange(groups * outs * tiles):
            g = job // (outs * tiles)
            o = (job // tiles) % outs
            q0 = (job % tiles) * TILE
            n = min(TILE, width - q0)
            acc = out[g, o, q0 : q0 + n]
            acc[:] = 0
            for ci in range(channels):
                t = 0
                while t + 4 <= taps:  # four taps per pass: a quarter of acc's loads/stores
                    w0, w1 = weights[g, o, ci, t], weights[g, o, ci, t + 1]
                    w2, w3 = weights[g, o, ci, t + 2], weights[g, o, ci, t + 3]
                    r0 = src[g, ci, shifts[t] + q0 : shifts[t] + q0 + n]
                    r1 = src[g, ci, shifts[t + 1] + q0 : shifts[t + 1] + q0 + n]
                    r2 = src[g, ci, shifts[t + 2] + q0 : shifts[t + 2] + q0 + n]
                    r3 = src[g, ci, shifts[t + 3] + q0 : shifts[t + 3] + q0 + n]
                    for q in range(n):  # a plain counted loop: vectorised by LLVM
                        acc[q] += w0 * r0[q] + w1 * r1[q] + w2 * r2[q] + w3 * r3[q]
                    t += 4
                while t < taps:
                    wv = weights[g, o, ci, t]
                    row = src[g, ci, shifts[t] + q0 : shifts[t] + q0 + n]
                    for q in range(n):
                        acc[q] += wv * row[q]
                    t += 1

    return kernel


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
    per_image = (c + o) * plane * dtype.itemsize  # one (g, b)
    target = max(1, min(workspace_limit, max(CHUNK, per_image)))
    if g * per_image <= target:
        g_chunk, b_chunk = g, max(1, min(b, target // (g * per_image)))
    else:
        b_chunk = max(1, min(b, target // per_image))
        g_chunk = max(1, min(g, target // (b_chunk * per_image)))
    crop = tuple(slice(0, n) for n in out_spatial)
    lhs_buffer = scratch("direct-lhs", g_chunk * b_chunk * c * plane, dtype)
    full_buffer = scratch("direct-full", g_chunk * b_chunk * o * plane, dtype)
    accumulate = _shift_accumulate()
    shift_array = np.asarray(shifts, dtype=np.int64)

    for b0 in range(0, b, b_chunk):
        n = min(b, b0 + b_chunk) - b0
        width = (n - 1) * plane + tail
        for g0 in range(0, g, g_chunk):
            gn = min(g, g0 + g_chunk) - g0
            flat_lhs = lhs_buffer[: gn * c * n * plane].reshape(gn, c, n * plane)
            laid = flat_lhs.reshape(gn, c, n, *padded).swapaxes(1, 2)
            dilate_and_pad_into(lhs[g0 : g0 + gn, b0 : b0 + n], corr, laid)
            full = full_buffer[: gn * o * n * plane].reshape(gn, o, n * plane)
            w = np.ascontiguousarray(weights[g0 : g0 + gn])
            accumulate(flat_lhs, w, shift_array, width, full)
            grid = full.reshape(gn, o, n, *padded)[(Ellipsis, *crop)]
            np.copyto(
                result[g0 : g0 + gn, b0 : b0 + n], grid.transpose(0, 2, 1, *range(3, grid.ndim))
            )
    return result

"""Implicit GEMM over kernel taps: no column matrix at all (window stride 1).

The padded lhs is laid out once as (G, C, B*P) (P = flattened padded spatial grid).
For kernel tap j with flat offset s_j = sum_d j_d * rd_d * stride_d, the samples under
that tap for every output position are the same buffer shifted by s_j, so

    full[g, o, q] = sum_j  W[g, j] (O x C)  @  lhs_flat[g, :, q + s_j] (C x Q)

is one BLAS call per (group, tap) reading a shifted view with a leading dimension and
accumulating with beta = 1 (``_blas``). ``full`` lives on the padded grid; the output is
its [:S_out] corner of each image. Columns off that corner read across image borders and
are discarded; no valid column ever does. Chunked over B (then groups) under the limit.
"""

from __future__ import annotations

import itertools

import numpy as np

from .._rules import Correlation
from . import _blas
from ._common import dilate_and_pad_into, padded_shape, prod, result_dtype

name = "implicit"


MAX_TAPS = 512  # one BLAS call per (group, tap): long kernels (dW maps) belong elsewhere


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return all(s == 1 for s in corr.window_strides) and prod(rhs_shape[3:]) <= MAX_TAPS


def _geometry(lhs_shape, rhs_shape, corr: Correlation):
    padded = padded_shape(lhs_shape[3:], corr)
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    flat = [prod(padded[d + 1 :]) for d in range(len(padded))]  # flat stride of each dim
    return padded, out, flat


def _shifts(kernel, corr: Correlation, flat) -> list[int]:
    """Flat offset of each kernel tap (C order) on the padded grid."""
    return [
        sum(j * rd * f for j, rd, f in zip(tap, corr.rhs_dilation, flat))
        for tap in itertools.product(*(range(k) for k in kernel))
    ]


def _tail(out_spatial, flat) -> int:
    """Columns of one image's full grid up to and including its last valid output."""
    return sum((n - 1) * f for n, f in zip(out_spatial, flat)) + 1


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the padded lhs and the full-grid product for the whole batch."""
    g, b, c = lhs_shape[:3]
    padded = prod(padded_shape(lhs_shape[3:], corr))
    return g * b * (c + rhs_shape[1]) * padded * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: GEMMs on the padded grid, the padding copy and the output crop."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, taps = rhs_shape[1], prod(rhs_shape[3:])
    padded = prod(padded_shape(lhs_shape[3:], corr))
    flops = 2.0 * g * b * o * c * taps * padded
    moved = g * b * (2 * c * padded + 2 * o * padded) * itemsize
    if o * c < 16:  # tiny GEMMs run at memory speed: each re-reads lhs and accumulator
        moved += g * taps * b * padded * (c + 2 * o) * itemsize
    return Counts(flops, min(o, c, b * padded), bytes=moved, calls=g * taps + 10)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    dtype = result_dtype(lhs, rhs)
    compute = dtype if _blas.supported(dtype) else np.dtype(np.float64)
    padded, out_spatial, flat = _geometry(lhs.shape, rhs.shape, corr)
    plane = prod(padded)
    taps = prod(kernel)
    shifts = _shifts(kernel, corr, flat)
    tail = _tail(out_spatial, flat)
    # (G, taps, O, C) contiguous: W[g, j] is a row-major O x C block
    weights = np.ascontiguousarray(
        np.moveaxis(rhs.astype(compute, copy=False).reshape(g, o, c, taps), 3, 1)
    )
    result = np.empty((g, b, o, *out_spatial), dtype=dtype)
    per_image = (c + o) * plane * compute.itemsize  # one (g, b)
    target = min(workspace_limit, 8 * 2**20)  # keep a chunk cache-sized when allowed
    if g * per_image <= target:
        g_chunk, b_chunk = g, max(1, min(b, target // (g * per_image)))
    else:
        g_chunk, b_chunk = max(1, min(g, target // per_image)), 1
    crop = tuple(slice(0, n) for n in out_spatial)
    lhs_buffer = np.empty(g_chunk * c * (b_chunk * plane + 16), dtype=compute)
    full_buffer = np.empty(g_chunk * o * (b_chunk * plane + 16), dtype=compute)

    for g0 in range(0, g, g_chunk):
        gn = min(g, g0 + g_chunk) - g0
        for b0 in range(0, b, b_chunk):
            n = min(b, b0 + b_chunk) - b0
            part = lhs[g0 : g0 + gn, b0 : b0 + n].astype(compute, copy=False)
            # row stride off multiples of 1 KiB (cache-set aliasing in BLAS packing)
            row = n * plane + (16 if (n * plane * compute.itemsize) % 1024 == 0 else 0)
            # (gn, C, n, *P): the C rows of one group are one flat buffer each
            flat_lhs = lhs_buffer[: gn * c * row]
            laid = flat_lhs.reshape(gn, c, row)[..., : n * plane].reshape(gn, c, n, *padded)
            dilate_and_pad_into(part, corr, laid.swapaxes(1, 2))
            full = full_buffer[: gn * o * row]
            width = (n - 1) * plane + tail  # columns computed per group
            for gi in range(gn):
                w_base = (g0 + gi) * taps * o * c
                for t, shift in enumerate(shifts):
                    _blas.gemm(
                        weights.reshape(-1), w_base + t * o * c, c,
                        flat_lhs, gi * c * row + shift, row,
                        full, gi * o * row, row,
                        o, width, c, 0.0 if t == 0 else 1.0,
                    )  # fmt: skip
            grid = full.reshape(gn, o, row)[..., : n * plane].reshape(gn, o, n, *padded)
            np.copyto(
                result[g0 : g0 + gn, b0 : b0 + n],
                grid[(Ellipsis, *crop)].transpose(0, 2, 1, *range(3, grid.ndim)),
                casting="unsafe",
            )
    return result

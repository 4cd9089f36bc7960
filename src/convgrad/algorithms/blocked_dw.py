"""Weight gradients as GEMMs over cache-sized blocks of the contraction (rhs dilation 1).

A weight-gradient correlation has a huge "kernel" (the output-gradient map, K) and a tiny
output (the filter taps, T). Its column matrix (B*T rows, one per input channel and tap,
by C*K columns) is as large as the input times the taps, so it is never built whole.
Per group and lhs channel c, the padded lhs planes (B, P) and the rhs scattered onto the
same padded grid (O, P; zeros off its samples) are laid out flat; the samples under tap t
for every rhs position are then one contiguous run of a plane, shifted by s_t, and

    acc[g] (B*T x O) += cols (B*T x L) @ grid[:, k0 : k0 + L]^T (L x O),
    cols[(b, t), :] = plane[b, s_t + k0 : s_t + k0 + L]

for blocks of L ~ ``BLOCK`` grid positions: each block of columns is a copy of long
contiguous runs that stays in cache until BLAS reads it. Grid columns off the rhs
samples multiply zeros; where that meets inf/NaN in the lhs the (tiny) result is not
finite and the correlation is recomputed by ``gemm``, so such values reach only the
outputs whose windows contain them.
"""

from __future__ import annotations

import numpy as np

from .._rules import Correlation
from ._common import dilate_and_pad_into, flat_strides, padded_shape, prod, result_dtype, scratch

name = "blocked_dw"
MAX_OUTPUTS = 1024  # filter taps (T); beyond this it is not a weight gradient
BLOCK = 2048  # grid positions per block: best measured for OpenBLAS (long contraction)


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    out = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    return (
        out <= MAX_OUTPUTS
        and out <= prod(rhs_shape[3:])
        and all(rd == 1 for rd in corr.rhs_dilation)
    )


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of one channel's padded planes and rhs grid, one block of columns and the
    small products."""
    g, b = lhs_shape[:2]
    o = rhs_shape[1]
    plane = prod(padded_shape(lhs_shape[3:], corr))
    m = b * prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    return ((b + o) * plane + m * BLOCK + (g + 1) * m * o) * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: the GEMMs over the padded grid (junk columns included), the
    planes and grid laid out, the columns copied, a few calls per block."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    plane = prod(padded_shape(lhs_shape[3:], corr))
    m = b * prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    blocks = g * c * -(-plane // BLOCK)
    return Counts(
        2.0 * g * c * m * o * plane,
        min(m, o, BLOCK),
        # planes and grid laid out from memory; the columns are copied within the cache
        # (about twice the rate of a copy through memory) and read by BLAS from there
        bytes=g * c * (2 * (b + o) * plane + m * plane // 2) * itemsize,
        calls=4 * blocks + 6 * g * c + 10,
    )


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *T)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    dtype = result_dtype(lhs, rhs)
    compute = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)
    padded = padded_shape(lhs.shape[3:], corr)
    out_spatial = corr.output_spatial(lhs.shape[3:], kernel)
    plane, nt = prod(padded), prod(out_spatial)
    m = b * nt
    isz = compute.itemsize
    if ((b + o) * plane + (g + 1) * m * o) * isz > workspace_limit or 0 in lhs.shape + rhs.shape:
        from . import gemm  # one channel's planes do not fit: gemm chunks further

        return gemm.run(lhs, rhs, corr, workspace_limit)
    flat = flat_strides(padded)
    depth = sum((k - 1) * f for k, f in zip(kernel, flat)) + 1  # the rhs grid's span
    room = workspace_limit - ((b + o) * plane + (g + 1) * m * o) * isz
    block = max(1, min(depth, BLOCK, room // (m * isz)))

    planes = scratch("blocked_dw-planes", b * plane + 16, compute)[: b * plane].reshape(b, plane)
    grid = scratch("blocked_dw-grid", o * plane + 16, compute)[: o * plane].reshape(o, plane)
    grid[...] = 0
    on_samples = tuple(slice(0, k) for k in kernel)
    columns = scratch("blocked_dw-columns", m * block, compute)
    acc = np.zeros((g, m, o), dtype=compute)
    product = np.empty((m, o), dtype=compute)
    for gi in range(g):
        for ci in range(c):
            dilate_and_pad_into(
                lhs[gi : gi + 1, :, ci : ci + 1].astype(compute, copy=False),
                corr,
                planes.reshape(1, b, 1, *padded),
            )
            grid.reshape(o, *padded)[(slice(None), *on_samples)] = rhs[gi, :, ci]
            for k0 in range(0, depth, block):
                n = min(block, depth - k0)
                # (B, T, n) runs of the planes: row (b, t) starts at b*P + s_t + k0
                runs = np.lib.stride_tricks.as_strided(
                    planes[:, k0:],
                    shape=(b, *out_spatial, n),
                    strides=(
                        plane * isz,
                        *(ws * f * isz for ws, f in zip(corr.window_strides, flat)),
                        isz,
                    ),
                    writeable=False,
                )
                cols = columns[: m * n].reshape(m, n)
                np.copyto(cols.reshape(b, *out_spatial, n), runs)
                np.matmul(cols, grid[:, k0 : k0 + n].T, out=product)
                acc[gi] += product
    if not np.isfinite(acc).all():  # grid zeros may have met inf/NaN: redo exactly
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    result = acc.reshape(g, b, nt, o).transpose(0, 1, 3, 2).astype(dtype)
    return result.reshape(g, b, o, *out_spatial)

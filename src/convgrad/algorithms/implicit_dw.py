"""Implicit GEMM over output positions: weight gradients without a column matrix.

A weight-gradient correlation has a huge "kernel" (the output-gradient map) and a tiny
output (the filter taps). Lay the padded lhs out flat per row as (G, B, C*P) and the
rhs, scattered onto the same padded grid, as (G, O, C*P) (zeros off its samples). The
lhs samples under output position i are then the same flat rows shifted by s_i:

    out[g, :, :, i] = lhs_flat[g, :, s_i : s_i + K] (B x K) @ rhs_grid[g, :, :K]^T (K x O)

one BLAS call per (group, output position), contracting over C and the whole map at
once. Reads stay inside each row's own image; off-sample grid points multiply zeros,
which is exact for finite input; lhs with inf/NaN is handed to ``gemm`` so that such
values reach only the outputs whose windows contain them. Chunked over C (accumulating
with beta = 1) and groups.
"""

from __future__ import annotations

import itertools

import numpy as np

from .._rules import Correlation
from . import _blas
from ._common import dilate_and_pad_into, flat_strides, padded_shape, prod, result_dtype, scratch
from ._compiled import JIT_OPTIONS, lazy_kernel

name = "implicit_dw"
MAX_OUTPUTS = 1024  # one BLAS call per output position
L2_BYTES = 1 << 20
SMALL = 4  # B*O at or below which a BLAS call is a mere dot product: a compiled loop instead


@lazy_kernel
def _dots(numba):
    """Compiled ``acc[g, i, b, o] (+)= dot(lhs[g, b, s_i : s_i + depth], grid[g, o, :depth])``,
    parallel over (g, i, b, o), summed in 16 independent lanes so LLVM vectorises it
    (numba, imported on first use, compiled once per dtype and cached on disk)."""

    @numba.njit(**JIT_OPTIONS)
    def kernel(lhs, grid, shifts, depth, acc, accumulate):
        groups, bs = lhs.shape[0], lhs.shape[1]
        os_, npos = grid.shape[1], shifts.shape[0]
        for job in numba.prange(groups * npos * bs * os_):
            g = job // (npos * bs * os_)
            i = (job // (bs * os_)) % npos
            bb = (job // os_) % bs
            oo = job % os_
            x = lhs[g, bb, shifts[i] : shifts[i] + depth]
            y = grid[g, oo, :depth]
            lanes = np.zeros(16, acc.dtype)
            full = depth // 16 * 16
            for p0 in range(0, full, 16):
                for lane in range(16):
                    lanes[lane] += x[p0 + lane] * y[p0 + lane]
            total = lanes.sum()
            for p in range(full, depth):
                total += x[p] * y[p]
            if accumulate:
                acc[g, i, bb, oo] += total
            else:
                acc[g, i, bb, oo] = total

    return kernel


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    out = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    return out <= MAX_OUTPUTS and out <= prod(rhs_shape[3:])  # weight-gradient shaped


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the flat padded lhs, the rhs grid and the (small) output buffer."""
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    plane = prod(padded_shape(lhs_shape[3:], corr))
    outs = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    return g * (c * (b + o) * plane + outs * b * o) * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: a GEMM per output position contracting over C x padded grid."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    plane = prod(padded_shape(lhs_shape[3:], corr))
    outs = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    flops = 2.0 * g * b * o * c * plane * outs
    moved = g * c * (b + o) * plane * 2 * itemsize
    # every call re-reads (and BLAS re-packs) both operands: from cache for small b x o
    operands = g * outs * c * (b + o) * plane * itemsize
    moved += operands // 4 if b * o < 64 else operands
    if b * o <= SMALL:  # compiled dot products: reductions run at ~1/4 of the loop rate
        return Counts(loop_flops=4 * flops, bytes=g * c * (b + o) * plane * 2 * itemsize)
    blocks = -(-c * plane * (b + o) * itemsize // (L2_BYTES // 2))
    return Counts(flops, min(b, o, c * plane), bytes=moved, calls=g * outs * blocks + 10)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    if not np.isfinite(lhs).all():  # off-window grid points would multiply inf/NaN by 0
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    dtype = result_dtype(lhs, rhs)
    compute = dtype if _blas.supported(dtype) else np.dtype(np.float64)
    padded = padded_shape(lhs.shape[3:], corr)
    out_spatial = corr.output_spatial(lhs.shape[3:], kernel)
    plane, outs = prod(padded), prod(out_spatial)
    flat = flat_strides(padded)
    shifts = [
        sum(i * ws * f for i, ws, f in zip(pos, corr.window_strides, flat))
        for pos in itertools.product(*(range(n) for n in out_spatial))
    ]
    # rhs tap j sits at grid offset j*rd; its last tap bounds the contraction
    last = sum((k - 1) * rd * f for k, rd, f in zip(kernel, corr.rhs_dilation, flat)) + 1
    grid_index = tuple(slice(0, (k - 1) * rd + 1, rd) for k, rd in zip(kernel, corr.rhs_dilation))

    isz = compute.itemsize
    # output positions per pass: all of them unless their buffer would take half the limit
    i_chunk = max(1, min(outs, (workspace_limit // 2) // (g * b * o * isz)))
    budget = max(1, workspace_limit - i_chunk * g * b * o * isz)
    per_c = g * (b + o) * plane * isz
    if per_c <= budget:
        g_chunk, c_chunk = g, max(1, min(c, budget // per_c))
    else:
        g_chunk, c_chunk = max(1, min(g, budget // ((b + o) * plane * isz))), 1
    lhs_buffer = scratch("implicit_dw-lhs", g_chunk * b * (c_chunk * plane + 16), compute)
    rhs_buffer = scratch("implicit_dw-rhs", g_chunk * o * (c_chunk * plane + 16), compute)
    acc = np.empty(g * i_chunk * b * o, dtype=compute)  # (G, positions, B, O)
    result = np.empty((g, b, o, outs), dtype=dtype)

    for i0 in range(0, outs, i_chunk):
        part_shifts = shifts[i0 : i0 + i_chunk]
        npos = len(part_shifts)
        for g0 in range(0, g, g_chunk):
            gn = min(g, g0 + g_chunk) - g0
            for c0 in range(0, c, c_chunk):
                m = min(c, c0 + c_chunk) - c0
                # row stride off multiples of 1 KiB (cache-set aliasing in BLAS packing)
                row = m * plane + (16 if (m * plane * isz) % 1024 == 0 else 0)
                flat_lhs = lhs_buffer[: gn * b * row]
                dilate_and_pad_into(
                    lhs[g0 : g0 + gn, :, c0 : c0 + m].astype(compute, copy=False),
                    corr,
                    flat_lhs.reshape(gn, b, row)[..., : m * plane].reshape(gn, b, m, *padded),
                )
                grid = rhs_buffer[: gn * o * row]
                laid = grid.reshape(gn, o, row)[..., : m * plane].reshape(gn, o, m, *padded)
                laid[...] = 0
                laid[(Ellipsis, *grid_index)] = rhs[g0 : g0 + gn, :, c0 : c0 + m]
                depth = (m - 1) * plane + last  # contraction length
                # contraction in cache-sized blocks: all output positions reuse a block
                block = max(256, L2_BYTES // 2 // ((b + o) * isz))
                if b * o <= SMALL:
                    part = acc[: g * npos * b * o].reshape(g, npos, b, o)[g0 : g0 + gn]
                    _dots()(
                        flat_lhs.reshape(gn, b, row), grid.reshape(gn, o, row),
                        np.asarray(part_shifts, dtype=np.int64), depth, part, c0 > 0,
                    )  # fmt: skip
                    continue
                for gi in range(gn):
                    for k0 in range(0, depth, block):
                        kn = min(block, depth - k0)
                        beta = 0.0 if c0 == 0 and k0 == 0 else 1.0
                        for i, shift in enumerate(part_shifts):
                            _blas.gemm(
                                flat_lhs, gi * b * row + shift + k0, row,
                                grid, gi * o * row + k0, row,
                                acc, ((g0 + gi) * npos + i) * b * o, o,
                                b, o, kn, beta, trans_b=True,
                            )  # fmt: skip
        done = acc[: g * npos * b * o].reshape(g, npos, b, o)
        np.copyto(result[..., i0 : i0 + npos], done.transpose(0, 2, 3, 1), casting="unsafe")
    return result.reshape(g, b, o, *out_spatial)

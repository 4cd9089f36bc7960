"""Implicit GEMM over output positions: weight gradients without a column matrix.

A weight-gradient correlation has a huge "kernel" (the output-gradient map) and a tiny
output (the filter taps). Lay the padded lhs out flat per row as (G, B, C*P) and the
rhs, scattered onto the same padded grid, as (G, O, C*P) (zeros off its samples). The
lhs samples under output position i are then the same flat rows shifted by s_i:

    out[g, :, :, i] = lhs_flat[g, :, s_i : s_i + K] (B x K) @ rhs_grid[g, :, :K]^T (K x O)

one BLAS call per (group, output position), contracting over C and the whole map at
once. Reads stay inside each row's own image; off-sample grid points multiply zeros,
which is exact for finite input; where they meet inf/NaN the (small) result is not
finite and ``gemm`` recomputes it, so such values reach only the outputs whose windows
contain them. Chunked over C (accumulating with beta = 1) and groups.

Where B*O <= ``SMALL`` (depthwise and grouped layers) a BLAS call would be a handful of
dot products: a compiled loop does the same arithmetic instead, one group (or a range of
its output channels) per job, building its padded planes from the caller's arrays.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from .._process import CORES, split_range
from .._rules import Correlation
from . import _blas, _parallel
from ._compiled import JIT_OPTIONS, as_3d, flat_view, launch, lazy_kernel, loop_params, unit_rows
from ._dtypes import compute_dtype, result_dtype
from ._geometry import dilate_and_pad_into, flat_strides, padded_shape, padding_bounded, prod
from ._workspace import scratch, unaliased

name = "implicit_dw"
MAX_OUTPUTS = 1024  # one BLAS call per output position
L2_BYTES = 1 << 20
SMALL = 16  # B*O up to which the compiled loop beats a BLAS call per output position


MIN_JOBS = 32  # a small group count splits its outputs into parts until there are this many


@lazy_kernel
def _dots(numba):
    """Compiled weight-gradient-shaped correlation for small B*O (depthwise, grouped):
    ``out[g, b, o, i] = sum_c dot(pad(lhs)[g, b, c, s_i : s_i + depth], grid(rhs)[g, o, c])``.

    Each job takes one group and a range of its output channels ``o`` (all of B): per c it
    lays the B padded lhs planes and the range's rhs planes (scattered onto the same padded
    grid, zeros between its samples) flat into small buffers, zeroed once per call (every
    c and job writes the same places), then takes the dot products, eight output
    positions per pass so that each grid load feeds eight products (vectorised
    reductions, in the arrays' dtype). ``check`` collects lhs * 0 per job: NaN where the
    lhs holds inf or NaN, which the grid's zeros would spread. Every output's arithmetic
    is the same whatever the jobs, so the result does not depend on the thread count.
    src (G, B, C, D1, D2, W) and rhs (G, O, C, K1, K2, KW): any strides, unit last axis."""
    options = dict(JIT_OPTIONS, fastmath={"reassoc", "contract", "nsz"})

    @numba.njit(**options)
    def kernel(
        start, stop, src, src_strides, in_shape, rhs, rhs_strides, kernel_shape, padded,
        lo, ld, rd, shifts, depth, out, out_shape, parts, check,
    ):  # fmt: skip
        # index arithmetic outside the hot loops; slices in them (typed contiguous: vectorised)
        sg, sb, sc, s1, s2 = src_strides
        rg, ro, rc, r1s, r2s = rhs_strides
        depth1, height, width = in_shape
        p1n, p2n, pw = padded
        groups, batch, outs, npos = out_shape
        channels, k1n, k2n, kwn = kernel_shape
        plane = p1n * p2n * pw
        per_part = (outs + parts - 1) // parts
        first = max(0, -(lo[2] // ld[2]))  # samples of a row that land inside it
        last = min(width - 1, (pw - 1 - lo[2]) // ld[2])
        lhs = np.zeros(batch * plane, src.dtype)  # padding stays zero: see the docstring
        grid = np.zeros(per_part * plane, src.dtype)
        acc = np.empty(batch * per_part * npos, src.dtype)
        zero = np.zeros(1, src.dtype)[0]  # in the arrays' dtype (float32 sums stay float32)
        for job in range(start, stop):
            g = job // parts
            o0 = job % parts * per_part
            on = min(outs, o0 + per_part) - o0
            acc[:] = zero
            bad = zero
            for c in range(channels):
                for b in range(batch):  # the padded, dilated lhs planes
                    for p1 in range(p1n):
                        q1 = p1 - lo[0]  # padding or an inserted zero: skip
                        if q1 < 0 or q1 % ld[0] != 0 or q1 // ld[0] >= depth1:
                            continue
                        for p2 in range(p2n):
                            q2 = p2 - lo[1]  # padding or an inserted zero: skip
                            if q2 < 0 or q2 % ld[1] != 0 or q2 // ld[1] >= height:
                                continue
                            line = g * sg + b * sb + c * sc + q1 // ld[0] * s1 + q2 // ld[1] * s2
                            at = b * plane + (p1 * p2n + p2) * pw + lo[2]
                            if ld[2] == 1:  # contiguous slices: vectorised
                                into = lhs[at + first : at + last + 1]
                                part = src[line + first : line + last + 1]
                                for j in range(last + 1 - first):
                                    into[j] = part[j]
                                    bad += part[j] * zero
                            else:
                                for j in range(first, last + 1):
                                    lhs[at + j * ld[2]] = src[line + j]
                                    bad += src[line + j] * zero
                for oi in range(on):  # rhs samples onto the grids (the zeros stay zero)
                    for r1 in range(k1n):
                        for r2 in range(k2n):
                            at = oi * plane + (r1 * rd[0] * p2n + r2 * rd[1]) * pw
                            row = g * rg + (o0 + oi) * ro + c * rc + r1 * r1s + r2 * r2s
                            if rd[2] == 1:
                                into = grid[at : at + kwn]
                                part = rhs[row : row + kwn]
                                for r in range(kwn):
                                    into[r] = part[r]
                            else:
                                for r in range(kwn):
                                    grid[at + r * rd[2]] = rhs[row + r]
                for b in range(batch):
                    x = lhs[b * plane : (b + 1) * plane]
                    for oi in range(on):
                        y = grid[oi * plane : oi * plane + depth]
                        sums = acc[(b * per_part + oi) * npos : (b * per_part + oi + 1) * npos]
                        i = 0
                        while i + 8 <= npos:  # eight positions per pass over the grid
                            x0 = x[shifts[i] : shifts[i] + depth]
                            x1 = x[shifts[i + 1] : shifts[i + 1] + depth]
                            x2 = x[shifts[i + 2] : shifts[i + 2] + depth]
                            x3 = x[shifts[i + 3] : shifts[i + 3] + depth]
                            x4 = x[shifts[i + 4] : shifts[i + 4] + depth]
                            x5 = x[shifts[i + 5] : shifts[i + 5] + depth]
                            x6 = x[shifts[i + 6] : shifts[i + 6] + depth]
                            x7 = x[shifts[i + 7] : shifts[i + 7] + depth]
                            t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = zero
                            for p in range(depth):
                                v = y[p]
                                t0 += x0[p] * v
                                t1 += x1[p] * v
                                t2 += x2[p] * v
                                t3 += x3[p] * v
                                t4 += x4[p] * v
                                t5 += x5[p] * v
                                t6 += x6[p] * v
                                t7 += x7[p] * v
                            sums[i] += t0
                            sums[i + 1] += t1
                            sums[i + 2] += t2
                            sums[i + 3] += t3
                            sums[i + 4] += t4
                            sums[i + 5] += t5
                            sums[i + 6] += t6
                            sums[i + 7] += t7
                            i += 8
                        while i < npos:  # the rest one at a time
                            x0 = x[shifts[i] : shifts[i] + depth]
                            t0 = zero
                            for p in range(depth):
                                t0 += x0[p] * y[p]
                            sums[i] += t0
                            i += 1
            for b in range(batch):
                for oi in range(on):
                    at = ((g * batch + b) * outs + o0 + oi) * npos
                    sums = acc[(b * per_part + oi) * npos :]
                    for i in range(npos):
                        out[at + i] = sums[i]
            check[job] = bad

    return kernel


def _parts(g: int, o: int) -> int:
    """Output-channel ranges per group: jobs are (group, range); few groups split their
    outputs until there are MIN_JOBS jobs (a fixed rule: the same jobs on any machine),
    into ranges of equal length but the last (none empty)."""
    per_part = -(-o // max(1, min(o, -(-MIN_JOBS // g))))
    return -(-o // per_part)


def _run_small(lhs, rhs, corr: Correlation, workspace_limit: int):
    """The compiled path for B*O <= SMALL: (G, B, O, *S_out), or None where the per-core
    planes would not fit the limit or the lhs holds inf/NaN."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    parts = _parts(g, o)
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    padded = as_3d(padded_shape(lhs.shape[3:], corr), 1)
    if CORES * (b + -(-o // parts)) * prod(padded) * compute.itemsize > workspace_limit:
        return None
    out_spatial = corr.output_spatial(lhs.shape[3:], rhs.shape[3:])
    flat = flat_strides(padded)
    strides = as_3d(corr.window_strides, 1)
    shifts = np.array(
        [
            sum(i * ws * f for i, ws, f in zip(pos, strides, flat))
            for pos in itertools.product(*(range(n) for n in as_3d(out_spatial, 1)))
        ],
        dtype=np.int64,
    )
    kernel = as_3d(rhs.shape[3:], 1)
    spacing = as_3d(corr.rhs_dilation, 1)
    depth = sum((k - 1) * r * f for k, r, f in zip(kernel, spacing, flat)) + 1  # grid span
    src = unit_rows(lhs.astype(compute, copy=False)).reshape(g, b, c, *as_3d(lhs.shape[3:], 1))
    src_flat, src_strides = flat_view(src, writeable=False)
    weights = unit_rows(rhs.astype(compute, copy=False)).reshape(g, o, c, *kernel)
    rhs_flat, rhs_strides = flat_view(weights, writeable=False)
    out = np.empty((g, b, o, len(shifts)), dtype=compute)
    check = np.empty(g * parts, dtype=compute)
    if src.size == 0 or weights.size == 0:
        out[...] = 0
    else:
        lo, ld, rd = loop_params(corr)
        in_shape = np.array(src.shape[3:], dtype=np.int64)
        rhs_shape = np.array((c, *kernel), dtype=np.int64)
        grid = np.array(padded, dtype=np.int64)
        launch(
            _dots(),
            g * parts,
            src_flat, src_strides, in_shape, rhs_flat, rhs_strides, rhs_shape, grid,
            lo, ld, rd, shifts, depth, out.reshape(-1), np.array(out.shape, dtype=np.int64),
            parts, check,
        )  # fmt: skip
        if not np.isfinite(check).all():  # the grid's zeros would multiply inf/NaN
            return None
    return out.astype(dtype, copy=False).reshape(g, b, o, *out_spatial)


def _products(operands, gn, g0, npos, first_c, positions):
    """The BLAS products of output positions ``range(*positions)`` for groups g0..g0+gn,
    block by block of the contraction (each block in cache for all the positions)."""
    flat_lhs, grid, acc, shifts, b, o, row, depth, block = operands
    flat_lhs, grid, acc = (_blas.buffer(a) for a in (flat_lhs, grid, acc))  # read once
    for gi in range(gn):
        for k0 in range(0, depth, block):
            kn = min(block, depth - k0)
            beta = 0.0 if first_c and k0 == 0 else 1.0
            for i in range(*positions):
                _blas.gemm(
                    flat_lhs, gi * b * row + shifts[i] + k0, row,
                    grid, gi * o * row + k0, row,
                    acc, ((g0 + gi) * npos + i) * b * o, o,
                    b, o, kn, beta, trans_b=True,
                )  # fmt: skip


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    out = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    return (
        out <= MAX_OUTPUTS
        and out <= prod(rhs_shape[3:])  # weight-gradient shaped
        and padding_bounded(lhs_shape, rhs_shape, corr)  # it lays padded planes out whole
    )


def compiled_variant(lhs_shape, rhs_shape, corr: Correlation) -> str | None:
    """The compiled kernel a call runs (see ``_primitive``): the dot products for small
    B*O, else none (BLAS)."""
    return "dots" if lhs_shape[1] * rhs_shape[1] <= SMALL else None


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the flat padded lhs, the rhs grid and the (small) output buffer."""
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    plane = prod(padded_shape(lhs_shape[3:], corr))
    outs = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    return g * (c * (b + o) * plane + outs * b * o) * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, *, cores: int, limit: int):
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
    if b * o <= SMALL:  # compiled dot products: eight per pass over a grid run at six
        # times LOOP_FLOPS' rate, the rest at twice it; the planes are read once and written
        # into buffers that stay in cache (fitted on depthwise 3x3, 7x7, 13x13, 3x3x3, 1-D
        # 65 and grouped 3x3 dW: 0.8-1.2x the estimate)
        blocked = outs // 8 * 8
        loop = flops * (blocked / 6 + (outs - blocked) / 2) / outs
        moved = g * c * (b + o) * plane * itemsize
        return Counts(loop_flops=loop, bytes=moved, jobs=g * _parts(g, o))
    blocks = -(-c * plane * (b + o) * itemsize // (L2_BYTES // 2))
    return Counts(flops, min(b, o, c * plane), bytes=moved, calls=g * outs * blocks + 10, jobs=outs)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    if lhs.shape[1] * rhs.shape[1] <= SMALL:
        result = _run_small(lhs, rhs, corr, workspace_limit)
        if result is not None:
            return result
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
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
                row = unaliased(m * plane, isz)
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

                # one job per core over the output positions (each writes its own)
                flops = 2.0 * gn * npos * b * o * depth
                jobs = _parallel.workers(npos) if flops >= _parallel.PARALLEL_FLOPS else 1
                operands = (flat_lhs, grid, acc, part_shifts, b, o, row, depth, block)
                _parallel.run_jobs(
                    functools.partial(_products, operands, gn, g0, npos, c0 == 0),
                    split_range(npos, jobs),
                )
        done = acc[: g * npos * b * o].reshape(g, npos, b, o)
        np.copyto(result[..., i0 : i0 + npos], done.transpose(0, 2, 3, 1), casting="unsafe")
    if not np.isfinite(result).all():  # grid zeros may have met inf/NaN: redo exactly
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    return result.reshape(g, b, o, *out_spatial)

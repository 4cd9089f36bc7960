"""Direct shift-accumulate: one compiled loop, no GEMM, no whole-batch copies (stride 1).

For depthwise and tiny-channel groups a GEMM has nothing to block over. This computes

    out[g, b, o, i] = sum_{c, j} w[g, o, c, j] * pad(dilate(x))[g, b, c, i + j*rd]

reading the caller's arrays in place (any strides with a unit last axis). Each job
takes one (group, image, outer output row) and a band of output rows: it copies
the band's input rows (plus the kernel's halo, all C) dilated and padded into a small
buffer (L2), then adds each tap's shifted, flattened band times the scalar weight into
an accumulator that stays in L1 (four taps per pass and two output channels at a time,
or eight taps for a single output), and copies the valid columns out.
The result is written batch-major (B, G, O, *S') so that merging groups back into
channels is free. The loop is compiled by numba (once per dtype, cached on disk), each
multiply-add fused where the CPU has FMA (``contract`` only: every sum keeps its order).
"""

from __future__ import annotations

import functools

import numpy as np

from .._process import CORES
from .._rules import Correlation
from ._compiled import (
    JIT_OPTIONS,
    as_3d,
    copy_run,
    flat_view,
    launch,
    lazy_kernel,
    loop_params,
    read_only,
    unit_rows,
)
from ._dtypes import result_dtype
from ._geometry import padded_shape, padding_bounded, prod
from ._parallel import workers

name = "direct"
MAX_PRODUCTS = 64  # O*C per group; beyond this a GEMM wins
JOBS_PER_THREAD = 4  # split rows into bands until each thread has this many jobs (thinner
# bands cost their per-pass setup: the origin layer's 3-row bands ran 30 % slower than 12)
L2_BYTES = 512 * 1024  # a job's padded input band stays within this
ACC = 4096  # elements of a job's accumulator (kept in L1)
_copy_run = None  # the compiled row copy (``copy_run``), bound when a kernel is built


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return (
        len(lhs_shape) <= 6
        and all(s == 1 for s in corr.window_strides)
        and rhs_shape[1] * rhs_shape[2] <= MAX_PRODUCTS
        and prod(rhs_shape[3:]) <= 512
        and padding_bounded(lhs_shape, rhs_shape, corr)  # its bands hold padded rows
    )


def compiled_variant(lhs_shape, rhs_shape, corr: Correlation) -> str:
    """The compiled kernel a call runs (see ``_primitive``): one or two outputs at a time."""
    return "pairs" if rhs_shape[1] > 1 else "single"


@functools.lru_cache(maxsize=256)  # every call asks (a few us of Python each time)
def _band(
    lhs_shape, rhs_shape, corr: Correlation, itemsize: int, limit=None, threads: int = CORES
) -> tuple[int, int]:
    """(output rows per job, padded row length): a job's padded input band (all C and
    outer taps, plus the halo rows) stays within L2 and its accumulator within L1, the
    bands of all cores within ``limit`` bytes, and JOBS_PER_THREAD jobs for each of
    ``threads`` where the rows allow (the band does not change any output's sum)."""
    g, b, c = lhs_shape[:3]
    padded = as_3d(padded_shape(lhs_shape[3:], corr), 1)
    kernel = as_3d(rhs_shape[3:], 1)
    out = as_3d(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]), 1)
    halo = (kernel[1] - 1) * as_3d(corr.rhs_dilation, 1)[1]
    row_bytes = c * kernel[0] * padded[2] * itemsize
    budget = L2_BYTES if limit is None else min(L2_BYTES, limit // CORES)
    band = max(1, min(out[1], budget // max(row_bytes, 1) - halo, ACC // max(padded[2], 1)))
    bands = -(-JOBS_PER_THREAD * threads // max(g * b * out[0], 1))
    return min(band, -(-out[1] // bands)), padded[2]


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the jobs' padded input bands and accumulators (one job per core at a
    time); the input is read in place and the result written directly."""
    band, padded_w = _band(lhs_shape, rhs_shape, corr, itemsize)
    kernel = as_3d(rhs_shape[3:], 1)
    halo = (kernel[1] - 1) * as_3d(corr.rhs_dilation, 1)[1]
    per_job = (lhs_shape[2] * kernel[0] * (band + halo) + band) * padded_w * itemsize
    return CORES * per_job


LOOP_SPEEDUP = 4.0  # its passes of 4-8 taps run at this multiple of LOOP_FLOPS' rate
BYTES_SHARE = 0.55  # and read the input and write the result at this share of BYTES_PER_S's
# cost (a row copy vectorised, bands in cache); fitted on one thread on depthwise 3x3, 7x7,
# 13x13 and 1-D 65, grouped 3x3, the origin layer and a 4 -> 8 channel 3x3: 0.8-1.4x


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, *, cores: int, limit: int):
    """Machine-free work: one multiply-add per tap, channel and output in the compiled loop,
    plus one read of the input per output channel and one write of the result."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, taps = rhs_shape[1], prod(rhs_shape[3:])
    outputs = g * b * o * prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    return Counts(
        loop_flops=2 * taps * c * outputs / LOOP_SPEEDUP,
        bytes=(g * b * c * prod(lhs_shape[3:]) + outputs) * itemsize * BYTES_SHARE,
        calls=4,
    )


def _build(numba, pairs: bool):
    """The compiled loop; see the module docstring. src (G, B, C, D1, D2, W) and dst
    (G, B, O, E1, E2, V) may have any strides but a unit one along their last axis.
    ``pairs``: a constant when compiled (numba prunes the other branches, so each kernel
    compiles half the code): output channels two at a time, an odd last one paired with
    itself; else one at a time (a single output channel: depthwise)."""
    global _copy_run
    _copy_run, stamp = copy_run()  # see ``copy_run``: a global here, its stamp in the closure
    single = not pairs

    @numba.njit(**dict(JIT_OPTIONS, fastmath={"contract"}))
    def kernel(
        start, stop, src, src_strides, in_shape, w, dst, dst_strides, out_shape, lo, rd, ld,
        padded_w, band,
    ):  # fmt: skip
        if stamp == "":  # never: keys the disk cache by the helper's source
            return
        sg, sb, sc, s1, s2 = src_strides
        dg, db, do, d1, d2 = dst_strides
        depth, height, width = in_shape
        groups, batch, outs, e1, e2, out_width = out_shape
        channels, k1n, k2n, kwn = w.shape[2], w.shape[3], w.shape[4], w.shape[5]
        taps = k2n * kwn
        halo = (k2n - 1) * rd[1]
        bands = (e2 + band - 1) // band
        slab_size = (band + halo) * padded_w  # one (c, k1): the band's rows plus halo, padded
        first = max(0, -(lo[2] // ld[2]))  # samples of a row that land inside it
        last = min(width - 1, (padded_w - 1 - lo[2]) // ld[2])
        shifts = np.empty(taps, np.int64)
        for t in range(taps):
            shifts[t] = t // kwn * rd[1] * padded_w + t % kwn * rd[2]
        # the jobs' buffers, allocated once per call (a fresh L2-sized buffer per job costs
        # a mapping and its page faults every time)
        slabs = np.empty(channels * k1n * slab_size, src.dtype)
        both_buffer = np.empty(2 * band * padded_w, src.dtype)
        for job in range(start, stop):
            i2_0 = job % bands * band
            rest = job // bands
            i1 = rest % e1
            rest //= e1
            g = rest % groups  # groups inside images: consecutive jobs read consecutive planes
            b = rest // groups
            rows = min(band, e2 - i2_0)
            slabs[:] = 0
            for c in range(channels):  # the band's input, dilated and padded, per (c, k1)
                for k1 in range(k1n):
                    q1 = i1 + k1 * rd[0] - lo[0]  # padding or an inserted zero: skip
                    if q1 < 0 or q1 % ld[0] != 0 or q1 // ld[0] >= depth:
                        continue
                    j1 = q1 // ld[0]
                    for r in range(rows + halo):
                        q2 = i2_0 + r - lo[1]  # padding or an inserted zero: skip
                        if q2 < 0 or q2 % ld[1] != 0 or q2 // ld[1] >= height:
                            continue
                        j2 = q2 // ld[1]
                        line_at = g * sg + b * sb + c * sc + j1 * s1 + j2 * s2
                        at = (c * k1n + k1) * slab_size + r * padded_w + lo[2]
                        if ld[2] == 1:  # zero-based contiguous copy: vectorised
                            _copy_run(slabs, at + first, src, line_at + first, last + 1 - first)
                        else:
                            line = src[line_at:]
                            for j in range(first, last + 1):
                                slabs[at + j * ld[2]] = line[j]
            n = (rows - 1) * padded_w + out_width  # flat run of the band's outputs
            both = both_buffer[: 2 * n]
            for o in range(0, outs, 2 if pairs else 1):  # two outputs share each input load
                acc, acc2 = both[:n], both[n:]
                both[:] = 0
                for c in range(channels):
                    for k1 in range(k1n):
                        slab = slabs[(c * k1n + k1) * slab_size :]
                        wa = w[g, o, c, k1].ravel()
                        wb = w[g, o + 1 if o + 1 < outs else o, c, k1].ravel()
                        t = 0
                        if single:  # one output: eight taps per pass
                            while t + 8 <= taps:
                                r0 = slab[shifts[t] : shifts[t] + n]
                                r1 = slab[shifts[t + 1] : shifts[t + 1] + n]
                                r2 = slab[shifts[t + 2] : shifts[t + 2] + n]
                                r3 = slab[shifts[t + 3] : shifts[t + 3] + n]
                                r4 = slab[shifts[t + 4] : shifts[t + 4] + n]
                                r5 = slab[shifts[t + 5] : shifts[t + 5] + n]
                                r6 = slab[shifts[t + 6] : shifts[t + 6] + n]
                                r7 = slab[shifts[t + 7] : shifts[t + 7] + n]
                                a0, a1, a2, a3 = wa[t], wa[t + 1], wa[t + 2], wa[t + 3]
                                a4, a5, a6, a7 = wa[t + 4], wa[t + 5], wa[t + 6], wa[t + 7]
                                for q in range(n):
                                    acc[q] += (
                                        a0 * r0[q] + a1 * r1[q] + a2 * r2[q] + a3 * r3[q]
                                    ) + (a4 * r4[q] + a5 * r5[q] + a6 * r6[q] + a7 * r7[q])
                                t += 8
                        while t + 4 <= taps:  # four taps per pass: a quarter of acc's traffic
                            r0 = slab[shifts[t] : shifts[t] + n]
                            r1 = slab[shifts[t + 1] : shifts[t + 1] + n]
                            r2 = slab[shifts[t + 2] : shifts[t + 2] + n]
                            r3 = slab[shifts[t + 3] : shifts[t + 3] + n]
                            a0, a1, a2, a3 = wa[t], wa[t + 1], wa[t + 2], wa[t + 3]
                            if pairs:
                                b0, b1, b2, b3 = wb[t], wb[t + 1], wb[t + 2], wb[t + 3]
                                for q in range(n):  # a plain counted loop: vectorised by LLVM
                                    x0, x1, x2, x3 = r0[q], r1[q], r2[q], r3[q]
                                    acc[q] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
                                    acc2[q] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
                            else:
                                for q in range(n):
                                    acc[q] += a0 * r0[q] + a1 * r1[q] + a2 * r2[q] + a3 * r3[q]
                            t += 4
                        while t < taps:
                            r0 = slab[shifts[t] : shifts[t] + n]
                            a0, b0 = wa[t], wb[t]
                            if pairs:
                                for q in range(n):
                                    acc[q] += a0 * r0[q]
                                    acc2[q] += b0 * r0[q]
                            else:
                                for q in range(n):
                                    acc[q] += a0 * r0[q]
                            t += 1
                for oo in range(o, min(o + 2, outs) if pairs else o + 1):  # valid columns out
                    done = both[(oo - o) * n :]
                    for r in range(rows):
                        out = dst[g * dg + b * db + oo * do + i1 * d1 + (i2_0 + r) * d2 :]
                        row = done[r * padded_w :]
                        for v in range(out_width):
                            out[v] = row[v]

    return kernel


@lazy_kernel
def _one_at_a_time(numba):
    return _build(numba, pairs=False)


@lazy_kernel
def _two_at_a_time(numba):
    return _build(numba, pairs=True)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S') (a view of a (B, G, O, *S')
    array)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    dtype = result_dtype(lhs, rhs)
    out_spatial = corr.output_spatial(lhs.shape[3:], rhs.shape[3:])
    result = np.empty((b, g, o, *out_spatial), dtype=dtype).swapaxes(0, 1)
    if result.size == 0:
        return result
    src = unit_rows(lhs.astype(dtype, copy=False)).reshape(g, b, c, *as_3d(lhs.shape[3:], 1))
    weights = read_only(
        np.ascontiguousarray(
            rhs.astype(dtype, copy=False).reshape(g, o, c, *as_3d(rhs.shape[3:], 1))
        )
    )
    dst = result.reshape(g, b, o, *as_3d(out_spatial, 1))
    src_flat, src_strides = flat_view(src, writeable=False)
    dst_flat, dst_strides = flat_view(dst)
    lo, ld, rd = loop_params(corr)
    if src.size == 0:  # no samples: every output is zero
        result[...] = 0
        return result
    rows = g * b * prod(out_spatial[:-1])  # jobs of whole rows: the most worth threads
    threads = workers(rows)
    band, padded_w = _band(lhs.shape, rhs.shape, corr, dtype.itemsize, workspace_limit, threads)
    in_shape = np.array(src.shape[3:], dtype=np.int64)
    out_shape = np.array(dst.shape, dtype=np.int64)
    launch(
        _two_at_a_time() if o > 1 else _one_at_a_time(),
        g * b * dst.shape[3] * -(-dst.shape[4] // band),
        src_flat, src_strides, in_shape, weights, dst_flat, dst_strides, out_shape,
        lo, rd, ld, padded_w, band,
    )  # fmt: skip
    return result

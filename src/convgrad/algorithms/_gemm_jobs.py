"""Whole jobs of ``phase`` and ``implicit`` as one compiled, ``nogil`` call each.

A job of these algorithms lays out its padded lhs, runs a series of BLAS calls on shifted
views of it and copies the product's valid part into the result. Made from Python, each
step is a call that releases the GIL and takes it back; with two threads every take-back
may wait for the other thread's Python and then for a wake across cores (about 20 us on
a VM). Here the whole job is one call: the layout and the copies are compiled loops, and
the BLAS calls go straight to the ``cblas_?gemm`` that NumPy's OpenBLAS exports (its
address is an argument, so numba's disk cache still holds the kernels).

This module imports numba: it is imported on first use only (``_compiled_jobs.loops``).
The intrinsic, the loops and the jobs that call them live in this one file, so a change
to any of them changes the file numba keys its cache by.

Arrays come as flat views with element strides (``_compiled.flat_view``), spatial dims
padded in front to three. Every BLAS operand is bounds-checked before its call; a job
returns 0, or 1 where a check failed (the caller raises).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._compiled import JIT_OPTIONS

ROW_MAJOR, NO_TRANS = 101, 111


@intrinsic
def _cblas_gemm(typingctx, fn, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """Row-major ``C[m, n] = A[m, k] @ B[k, n] + beta * C`` through the int64 cblas
    ``?gemm`` at address ``fn``; A, B, C flat arrays of one dtype, at element offsets."""
    sig = types.void(fn, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc)

    def codegen(context, builder, signature, args):
        fn_, m_, n_, k_, a_, ao, lda_, b_, bo, ldb_, beta_, c_, co, ldc_ = args
        argtypes = signature.args
        i32, i64 = ir.IntType(32), ir.IntType(64)
        scalar = context.get_value_type(argtypes[4].dtype)
        ptr = scalar.as_pointer()

        def at(value, ty, offset):
            data = context.make_array(ty)(context, builder, value).data
            return builder.gep(data, [offset])

        fnty = ir.FunctionType(
            ir.VoidType(),
            [i32, i32, i32, i64, i64, i64, scalar, ptr, i64, ptr, i64, scalar, ptr, i64],
        )
        func = builder.inttoptr(fn_, fnty.as_pointer())
        enum = (ir.Constant(i32, v) for v in (ROW_MAJOR, NO_TRANS, NO_TRANS))
        one = context.get_constant(argtypes[4].dtype, 1.0)
        beta_v = context.cast(builder, beta_, argtypes[10], argtypes[4].dtype)
        builder.call(
            func,
            [
                *enum, m_, n_, k_, one,
                at(a_, argtypes[4], ao), lda_,
                at(b_, argtypes[7], bo), ldb_,
                beta_v,
                at(c_, argtypes[11], co), ldc_,
            ],
        )  # fmt: skip
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(**JIT_OPTIONS)
def _fits(size, offset, rows, cols, ld):
    """Whether a rows x cols operand at ``offset`` with row stride ``ld`` lies in ``size``."""
    return cols <= ld and offset >= 0 and offset + (rows - 1) * ld + cols <= size


@numba.njit(**JIT_OPTIONS)
def gemm(fn, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """``_cblas_gemm`` after its bounds checks: False (nothing run) where one fails."""
    if m <= 0 or n <= 0:
        return True
    if not (
        _fits(a.size, a_off, m, k, lda)
        and _fits(b.size, b_off, k, n, ldb)
        and _fits(c.size, c_off, m, n, ldc)
    ):
        return False
    _cblas_gemm(fn, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc)
    return True


# short runs in functions of their own, loops from 0: they vectorise (see _compiled.copy_run);
# unsigned indices skip numba's negative-index test (measured: a strided job's copies 0.37
# -> 0.30 ms); a count below one copies nothing
@numba.njit(nogil=True, error_model="numpy")
def _copy(dst, at, src, start, count):
    """dst[at : at + count] = src[start : start + count]."""
    if count <= 0:
        return
    a, b = np.uint64(at), np.uint64(start)
    for j in range(np.uint64(count)):
        dst[a + j] = src[b + j]


@numba.njit(nogil=True, error_model="numpy")
def _copy_every(dst, at, src, start, step, count):
    """dst[at : at + count] = src[start : start + step * count : step]."""
    if count <= 0:
        return
    a, b, stride = np.uint64(at), np.uint64(start), np.uint64(step)
    for j in range(np.uint64(count)):
        dst[a + j] = src[b + j * stride]


@numba.njit(nogil=True, error_model="numpy")
def _copy_rows(dst, at, rows, step, src, start, count):
    """dst[at + i * rows[0] + j * step] = src[start + i * rows[1] + j] for i < rows[2],
    j < count."""
    if count <= 0:
        return
    if step == 1:
        for i in range(rows[2]):
            _copy(dst, at + i * rows[0], src, start + i * rows[1], count)
        return
    stride = np.uint64(step)
    for i in range(rows[2]):
        a, b = np.uint64(at + i * rows[0]), np.uint64(start + i * rows[1])
        for j in range(np.uint64(count)):
            dst[a + j * stride] = src[b + j]


@numba.njit(nogil=True, error_model="numpy")
def _zero(dst, at, count):
    """dst[at : at + count] = 0."""
    if count <= 0:
        return
    a = np.uint64(at)
    for j in range(np.uint64(count)):
        dst[a + j] = 0


@numba.njit(**JIT_OPTIONS)
def _samples(count, step, phase, low, dil, padded, size):
    """The lhs index along one dim under each position q < count of a phase grid (padded
    sample q * step + phase), -1 where that is padding or an inserted zero."""
    out = np.full(count, -1, np.int64)
    for q in range(count):
        v = q * step + phase - low
        if q * step + phase < padded and v >= 0 and v % dil == 0 and v // dil < size:
            out[q] = v // dil
    return out


WHOLE_ZERO_BELOW = 64  # rows shorter than this: zero a channel's rows whole, then copy


@numba.njit(**JIT_OPTIONS)
def _span(js):
    """(first, stop): the positions of js from its first sample to its last (stop 0: none)."""
    first, stop = 0, 0
    for q in range(js.shape[0]):
        if js[q] >= 0:
            if stop == 0:
                first = q
            stop = q + 1
    return first, stop


@numba.njit(**JIT_OPTIONS)
def lay_out(src, ss, size, dst, row, tail, grid, phases, steps, lows, dils, padded, gn, nph, c, n):
    """dst row ((g * P + k) * C + c) (stride ``row``), image b at b * plane: phase k of
    pad(dilate(lhs)) on ``grid``, position q holding padded sample q * steps + phases[k]
    (zero where that is padding, an inserted zero or past ``padded``), and ``tail`` zeros
    after the last image. src: the lhs (G, B, C, *size) as a flat view, element strides
    ``ss``; gn, nph, c, n: G, P, C, B."""
    plane, width, rows = grid[0] * grid[1] * grid[2], grid[2], grid[1]
    whole = width < WHOLE_ZERO_BELOW
    step, inner_dilated = steps[2], dils[2] > 1
    s0, s1, s2, s3, s4 = ss[0], ss[1], ss[2], ss[3], ss[4]
    for k in range(nph):
        phase = phases[k]
        j0s = _samples(grid[0], steps[0], phase[0], lows[0], dils[0], padded[0], size[0])
        j1s = _samples(grid[1], steps[1], phase[1], lows[1], dils[1], padded[1], size[1])
        j2s = _samples(grid[2], steps[2], phase[2], lows[2], dils[2], padded[2], size[2])
        # without dilation a dim's samples are the positions [first, stop), sample
        # js[first] + (q - first) * step
        first0, stop0 = _span(j0s)
        first1, stop1 = _span(j1s)
        first, stop = _span(j2s)
        # short rows without dilation: the block zeroed whole, then only the samples' rows
        # visited (no test per row)
        packed = whole and dils[0] == 1 and dils[1] == 1 and not inner_dilated
        for gi in range(gn):
            for ci in range(c):
                base = ((gi * nph + k) * c + ci) * row
                if whole:
                    _zero(dst, base, n * plane + tail)
                else:
                    _zero(dst, base + n * plane, tail)
                if packed:
                    if stop == 0:
                        continue
                    for bi in range(n):
                        image = gi * s0 + bi * s1 + ci * s2 + j2s[first]
                        at = base + bi * plane + first
                        for q0 in range(first0, stop0):
                            line0 = image + j0s[q0] * s3
                            out0 = at + q0 * rows * width
                            for q1 in range(first1, stop1):
                                out = out0 + q1 * width
                                line = line0 + j1s[q1] * s4
                                if step == 1:
                                    _copy(dst, out, src, line, stop - first)
                                else:
                                    _copy_every(dst, out, src, line, step, stop - first)
                    continue
                for bi in range(n):
                    at = base + bi * plane
                    image = gi * s0 + bi * s1 + ci * s2
                    for q0 in range(grid[0]):
                        j0 = j0s[q0]
                        for q1 in range(rows):
                            j1 = j1s[q1]
                            out = at + (q0 * rows + q1) * width
                            if j0 < 0 or j1 < 0 or stop == 0:
                                if not whole:
                                    _zero(dst, out, width)
                                continue
                            line = image + j0 * s3 + j1 * s4
                            if inner_dilated:
                                for q in range(width):
                                    j = j2s[q]
                                    dst[out + q] = src[line + j] if j >= 0 else 0
                                continue
                            if not whole:
                                _zero(dst, out, first)
                                _zero(dst, out + stop, width - stop)
                            start = line + j2s[first]
                            if step == 1:
                                _copy(dst, out + first, src, start, stop - first)
                            else:
                                _copy_every(dst, out + first, src, start, step, stop - first)


@numba.njit(**JIT_OPTIONS)
def scatter(full, out_row, grid, gn, n, o, counts, start, step, target, ts):
    """target[g, b, o, start + step * m] = full[(g * O + o) * out_row + b * plane + m on
    ``grid``] for m < counts (target: a flat view, element strides ``ts``, its last
    axis unit); gn, n, o: G, B, O."""
    plane = grid[0] * grid[1] * grid[2]
    for gi in range(gn):
        for bi in range(n):
            for oi in range(o):
                src = (gi * o + oi) * out_row + bi * plane
                dst = gi * ts[0] + bi * ts[1] + oi * ts[2]
                for m0 in range(counts[0]):
                    line = src + m0 * grid[1] * grid[2]
                    at = dst + (start[0] + step[0] * m0) * ts[3] + start[1] * ts[4] + start[2]
                    rows = (step[1] * ts[4], grid[2], counts[1])
                    _copy_rows(target, at, rows, step[2], full, line, counts[2])


@numba.njit(**JIT_OPTIONS)
def fill_zero(target, ts, gn, n, o, counts, start, step):
    """target[g, b, o, start + step * m] = 0 for m < counts (g, b, o < gn, n, o)."""
    for gi in range(gn):
        for bi in range(n):
            for oi in range(o):
                dst = gi * ts[0] + bi * ts[1] + oi * ts[2] + start[2]
                for m0 in range(counts[0]):
                    for m1 in range(counts[1]):
                        at = dst + (start[0] + step[0] * m0) * ts[3]
                        at += (start[1] + step[1] * m1) * ts[4]
                        for m2 in range(counts[2]):
                            target[at + m2 * step[2]] = 0


@numba.njit(**JIT_OPTIONS)
def shifted_sum(z, z_row, o, offsets, out, at, out_row, n, add):
    """``out[at + i * out_row :][:n] = sum_k z[(k * o + i) * z_row + offsets[k] :][:n]``
    for i < o, the taps k summed in order (four a pass), added to out's values where
    ``add``."""
    taps = offsets.shape[0]
    for i in range(o):
        dst = out[at + i * out_row : at + i * out_row + n]
        src = z[i * z_row + offsets[0] : i * z_row + offsets[0] + n]
        if add:
            for p in range(n):
                dst[p] += src[p]
        else:
            for p in range(n):
                dst[p] = src[p]
        k = 1
        while k + 4 <= taps:
            a = z[(k * o + i) * z_row + offsets[k] :]
            b = z[((k + 1) * o + i) * z_row + offsets[k + 1] :]
            c = z[((k + 2) * o + i) * z_row + offsets[k + 2] :]
            d = z[((k + 3) * o + i) * z_row + offsets[k + 3] :]
            for p in range(n):
                dst[p] = (((dst[p] + a[p]) + b[p]) + c[p]) + d[p]
            k += 4
        while k < taps:
            a = z[(k * o + i) * z_row + offsets[k] :]
            for p in range(n):
                dst[p] += a[p]
            k += 1


@numba.njit(**JIT_OPTIONS)
def phase_job(fn, src, ss, size, grid, lows, gn, c, n, tail_zeros, flat_lhs, row, weights,
              g0, per_group, o, full, out_row, plan, taps, shifts, products, stacked, target,
              ts):  # fmt: skip
    """One ``phase`` job (see ``phase._run_part``): returns 0, or 1 where a BLAS operand
    check failed. src (gn, n, C, *size) is laid on ``grid`` at ``lows`` (``tail_zeros``
    zeros after each row's last image); plan (int64, P x 13): per phase its first output
    (3), counts (3) and lhs dilation (3), its first live tap, its live taps, the columns
    of a stacked block (0: a GEMM per tap) and the taps stacked in one GEMM (the live
    taps in groups of that many, the groups' sums added in order); taps, shifts: the
    live taps' indices into the filters (``per_group`` taps of O x C each per group)
    and their flat shifts."""
    ones, zeros = np.ones(3, np.int64), np.zeros((1, 3), np.int64)
    lay_out(src, ss, size, flat_lhs, row, tail_zeros, grid, zeros, ones, lows, ones, grid,
            gn, 1, c, n)  # fmt: skip
    plane = grid[0] * grid[1] * grid[2]
    for p in range(plan.shape[0]):
        start, counts, step = plan[p, 0:3], plan[p, 3:6], plan[p, 6:9]
        first, live, block, group = plan[p, 9], plan[p, 10], plan[p, 11], plan[p, 12]
        if live == 0:
            fill_zero(target, ts, gn, n, o, counts, start, step)
            continue
        tail = ((counts[0] - 1) * grid[1] + counts[1] - 1) * grid[2] + counts[2]
        width = (n - 1) * plane + tail
        for gi in range(gn):
            w_base = (g0 + gi) * per_group * o * c
            if block == 0:
                for k in range(live):
                    ok = gemm(
                        fn, o, width, c,
                        weights, w_base + taps[first + k] * o * c, c,
                        flat_lhs, gi * c * row + shifts[first + k], row,
                        0.0 if k == 0 else 1.0,
                        full, gi * o * out_row, out_row,
                    )  # fmt: skip
                    if not ok:
                        return 1
                continue
            for t0 in range(first, first + live, group):  # each group of taps, stacked
                low, high = shifts[t0], shifts[t0]
                for k in range(t0, t0 + group):
                    low, high = min(low, shifts[k]), max(high, shifts[k])
                for k in range(group):  # the group's filters: (group x O) x C
                    at = w_base + taps[t0 + k] * o * c
                    stacked[k * o * c : (k + 1) * o * c] = weights[at : at + o * c]
                spread = high - low
                z_row = block + spread
                if (z_row * products.itemsize) % 1024 == 0:  # see _workspace.unaliased
                    z_row += 16
                offsets = shifts[t0 : t0 + group] - low
                for p0 in range(0, width, block):
                    cols = min(block, width - p0)
                    ok = gemm(
                        fn, group * o, cols + spread, c,
                        stacked, 0, c,
                        flat_lhs, gi * c * row + low + p0, row,
                        0.0,
                        products, 0, z_row,
                    )  # fmt: skip
                    if not ok:
                        return 1
                    at = gi * o * out_row + p0
                    shifted_sum(products, z_row, o, offsets, full, at, out_row, cols, t0 > first)
        scatter(full, out_row, grid, gn, n, o, counts, start, step, target, ts)
    return 0


@numba.njit(**JIT_OPTIONS)
def _shifted_rows(src, row, rows, kw, step, dst, d_row, length):
    """dst row r * kw + j (stride ``d_row``) = src row r (stride ``row``) from j * step, for
    ``length`` items (r < rows, j < kw): each row's kw shifts, side by side."""
    for r in range(rows):
        for j in range(kw):
            _copy(dst, (r * kw + j) * d_row, src, r * row + j * step, length)


@numba.njit(**JIT_OPTIONS)
def implicit_job(fn, src, ss, size, grid, phases, steps, lows, dils, padded, gn, c, n,
                 flat_lhs, row, merged, merge, weights, g0, calls, strides, o, full, out_row,
                 width, counts, target, ts):  # fmt: skip
    """One ``implicit`` job (see ``implicit._run_part``): returns 0, or 1 where a BLAS
    operand check failed. src (gn, n, C, *size) is laid on ``grid``, one row per (phase,
    channel); merge (kw, rhs dilation, row length, row stride; kw 0: no merge): each
    row's kw shifts copied into ``merged``, which the GEMMs then read instead. calls
    (int64, R x 4): per GEMM its filters' offset in a group, their row stride, its B
    offset in a group and its contraction; strides: (filters, B) per group, B's row
    stride. Then the output's ``counts`` corner of the grid is copied into target."""
    lay_out(src, ss, size, flat_lhs, row, 0, grid, phases, steps, lows, dils, padded,
            gn, phases.shape[0], c, n)  # fmt: skip
    b_source = flat_lhs
    if merge[0] > 0:
        _shifted_rows(flat_lhs, row, gn * c, merge[0], merge[1], merged, merge[3], merge[2])
        b_source = merged
    zeros, ones = np.zeros(3, np.int64), np.ones(3, np.int64)
    for gi in range(gn):
        for i in range(calls.shape[0]):
            ok = gemm(
                fn, o, width, calls[i, 3],
                weights, (g0 + gi) * strides[0] + calls[i, 0], calls[i, 1],
                b_source, gi * strides[1] + calls[i, 2], strides[2],
                0.0 if i == 0 else 1.0,
                full, gi * o * out_row, out_row,
            )  # fmt: skip
            if not ok:
                return 1
    scatter(full, out_row, grid, gn, n, o, counts, zeros, ones, target, ts)
    return 0

"""Implicit GEMM over kernel taps: no column matrix at all.

The padded lhs is laid out once as flat rows (G, C, phases*B*Q): with window strides s
the padded grid is split into phases (P[t*s + r] = phase_r[t], each of grid
Q = ceil(P / s)), so every output position i reads phase r(j) at i + q(j) for the tap
offset j*rd = q(j)*s + r(j). Only the phases some tap reads are built (at most the taps,
however large the stride). The samples under tap j for all outputs are then the same
rows shifted by one flat offset s_j, and

    full[g, o, i] = sum_j  W[g, j] (O x C)  @  lhs_flat[g, :, i + s_j] (C x B*Q)

is one BLAS call per (group, tap) reading a shifted view with a leading dimension and
accumulating with beta = 1 (``_blas``). A channel's phases are laid out as rows of their
own (row k*C + c holds phase k of channel c), so the taps that share a shift and read
consecutive phases are one call contracting over their phases' rows: a stride-2 4x4
kernel is 4 calls over 4*C rows instead of 16 over C. ``full`` lives on the phase grid;
the output is its [:S_out] corner of each image. Columns off that corner read across
image or phase borders and are discarded; no valid column ever does. Chunked over B
(then groups), the chunks spread over one job per core (``_parallel``), each with
single-threaded BLAS.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from .._rules import Correlation
from . import _blas, _compiled_jobs, _parallel
from ._boxes import band_shape, most_boxes, output_boxes, unit_views
from ._compiled import loop_params
from ._dtypes import compute_dtype, result_dtype
from ._geometry import (
    dilate_and_pad_into,
    flat_strides,
    padded_shape,
    padding_bounded,
    phase_into,
    prod,
)
from ._workspace import kernel_share, laid_out, scratch, unaliased

name = "implicit"


MAX_TAPS = 512  # one BLAS call per (group, tap): long kernels (dW maps) belong elsewhere
MERGE_MAX = 64  # C*kw up to which a row's kw shifts are copied to lengthen each GEMM
SHORT_DEPTH = 4  # a contraction of K counts as a GEMM dimension of 4*K (see counts)


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return prod(rhs_shape[3:]) <= MAX_TAPS and padding_bounded(lhs_shape, rhs_shape, corr)


def compiled_variant(lhs_shape, rhs_shape, corr: Correlation) -> str | None:
    """The compiled kernel a call runs (see ``_primitive``): the whole job
    (``_gemm_jobs``), where BLAS allows it."""
    return "job" if _compiled_jobs.available() else None


def _geometry(lhs_shape, rhs_shape, corr: Correlation):
    padded = padded_shape(lhs_shape[3:], corr)
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    flat = flat_strides(padded)
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


def _phase_geometry(lhs_shape, rhs_shape, corr: Correlation):
    """(padded P, phase grid Q, output, flat strides on Q, the phases the taps read, tap
    shifts as (phase index, flat offset on Q)); memoised (each band's job asks again),
    read-only."""
    return _memoised_geometry(tuple(lhs_shape), tuple(rhs_shape), corr)


@functools.lru_cache(maxsize=256)
def _memoised_geometry(lhs_shape, rhs_shape, corr: Correlation):
    padded = padded_shape(lhs_shape[3:], corr)
    strides = corr.window_strides
    grid = tuple(-(-p // s) for p, s in zip(padded, strides))
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    flat = flat_strides(grid)
    index: dict = {}
    taps = []
    for tap in itertools.product(*(range(k) for k in rhs_shape[3:])):
        offsets = [j * rd for j, rd in zip(tap, corr.rhs_dilation)]
        r = tuple(x % s for x, s in zip(offsets, strides))
        q = sum((x // s) * f for x, s, f in zip(offsets, strides, flat))
        taps.append((index.setdefault(r, len(index)), q))
    return padded, grid, out, flat, list(index), taps


def _runs(lhs_shape, rhs_shape, corr: Correlation) -> list[tuple[int, int, list[int]]]:
    """The BLAS calls of one group: (shift, first phase, taps), each call the taps that
    share a flat shift and read consecutive phases (in phase order), in order of their
    first tap."""
    return _memoised_runs(tuple(lhs_shape), tuple(rhs_shape), corr)


@functools.lru_cache(maxsize=256)
def _memoised_runs(lhs_shape, rhs_shape, corr: Correlation):
    taps = _phase_geometry(lhs_shape, rhs_shape, corr)[5]
    by_shift: dict = {}
    for t, (k, shift) in enumerate(taps):
        by_shift.setdefault(shift, []).append((k, t))
    runs = []
    for shift, members in by_shift.items():
        members.sort()
        start = 0
        for i in range(1, len(members) + 1):
            if i == len(members) or members[i][0] != members[i - 1][0] + 1:
                runs.append((shift, members[start][0], [t for _, t in members[start:i]]))
                start = i
    return runs


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the phase-split padded lhs and the full-grid product for the whole batch
    (plus the padded chunk it is split from, when strided with lhs dilation)."""
    g, b, c = lhs_shape[:3]
    padded, grid, _, _, phases, _ = _phase_geometry(lhs_shape, rhs_shape, corr)
    split = prod(padded) * c if _split_from_padded(corr) else 0
    rows = c * prod(grid) * len(phases)
    return g * b * (split + rows + rhs_shape[1] * prod(grid)) * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, *, cores: int, limit: int):
    """Machine-free work: GEMMs on the padded grid, the padding copy and the output crop."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, taps = rhs_shape[1], prod(rhs_shape[3:])
    _, grid_shape, _, _, phases, _ = _phase_geometry(lhs_shape, rhs_shape, corr)
    grid, nph, strided = prod(grid_shape), len(phases), _strided(corr)
    flops = 2.0 * g * b * o * c * taps * grid
    kw = rhs_shape[-1]
    merged = not strided and kw > 1 and c * kw <= MERGE_MAX
    gemms = taps // kw if merged else len(_runs(lhs_shape, rhs_shape, corr))
    depth = c * taps // gemms  # the GEMMs' mean contraction
    twice = _split_from_padded(corr)  # a padded copy, then its phases
    moved = g * b * (2 * c * grid * nph * (1 + twice) + 2 * o * grid) * itemsize
    if o * depth < 16:  # tiny GEMMs run at memory speed: each re-reads lhs and accumulator
        moved += g * gemms * b * grid * (depth + 2 * o) * itemsize
    elif o < 8 and depth >= 32:  # skinny GEMMs over long contractions stream their operand
        moved += 4 * g * gemms * b * grid * (depth + 2 * o) * itemsize
    padded = grid
    if merged:  # the kw-shift copy, and kw times fewer calls
        moved += g * b * c * kw * grid * 2 * itemsize
    moved /= _parallel.cores_for(g * b, cores)  # each job copies its own chunks
    calls = g * gemms + 10
    # jobs: images, and boxes of output rows where they are fewer than the cores
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    image_flops = 2.0 * o * c * taps * prod(out)
    jobs = g * b * most_boxes(g * b, out, image_flops, _box_calls(gemms))
    # a short contraction over long rows costs less than as few rows (measured: the stem
    # layer's forward, C*taps = 12 per call over 64 rows, ran at 108 GFLOP/s a core)
    dim = min(o, SHORT_DEPTH * depth, b * padded)
    return Counts(flops, dim, bytes=moved, calls=calls, jobs=jobs)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    out_spatial = corr.output_spatial(lhs.shape[3:], kernel)
    taps, kw = prod(kernel), kernel[-1]
    # few channels: copy the kw shifts of each row once so each GEMM contracts C*kw
    merge = not _strided(corr) and kw > 1 and c * kw <= MERGE_MAX
    limit = kernel_share(rhs.size * compute.itemsize, workspace_limit)
    if limit is None:  # the filters' copy alone would take most of the limit
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    workspace_limit = limit
    w = rhs.astype(compute, copy=False)
    # the calls as (first phase, taps), hashable: the compiled jobs' memoised tables key on them
    runs = (
        () if merge else tuple((k, tuple(run)) for _, k, run in _runs(lhs.shape, rhs.shape, corr))
    )
    if merge:  # (G, K_rest, O, C, kw): W[g, rest] is a row-major O x (C*kw) block
        w = w.reshape(g, o, c, taps // kw, kw).transpose(0, 3, 1, 2, 4)
        weights = laid_out("implicit-weights", w, compute).reshape(-1)
    else:  # (G, O, taps*C), taps in the calls' order: a call's block is O x (taps*C)
        order = [t for _, run in runs for t in run]
        w = w.reshape(g, o, c, taps).transpose(0, 1, 3, 2)
        laid = scratch("implicit-weights", w.size, compute).reshape(w.shape)
        if order == sorted(order):
            np.copyto(laid, w, casting="unsafe")
        else:  # tap by tap: no temporary the size of the rhs
            for at, t in enumerate(order):
                np.copyto(laid[:, :, at], w[:, :, t], casting="unsafe")
        weights = laid.reshape(-1)
    result = np.empty((g, b, o, *out_spatial), dtype=dtype)
    isz = compute.itemsize
    per_image = _image_bytes(lhs.shape, rhs.shape, corr, merge) * isz

    def box_bytes(box_shape):  # one image's box: what its job lays out
        shape, box_corr = band_shape(lhs.shape, kernel, corr, box_shape)
        return _image_bytes(shape, rhs.shape, box_corr, merge) * isz

    flops = 2.0 * o * c * taps * prod(out_spatial)  # one image's

    def boxes(units):
        calls = _box_calls(taps // kw if merge else len(_runs(lhs.shape, rhs.shape, corr)))
        return output_boxes(units, out_spatial, flops, calls, box_bytes, workspace_limit)

    g_chunk, b_chunk, jobs = _parallel.batch_chunks(
        g, b, per_image, workspace_limit, _parallel.CHUNK_BYTES, boxes
    )
    _parallel.run_jobs(
        lambda units: _run_units(lhs, rhs, corr, weights, result, (g_chunk, b_chunk, runs), units),
        jobs,
    )
    return result


def _box_calls(gemms: int) -> int:
    """Python calls one image's box makes: a compiled job's few, else its GEMMs and
    copies."""
    return _compiled_jobs.JOB_CALLS if _compiled_jobs.available() else gemms + 10


def _image_bytes(lhs_shape, rhs_shape, corr: Correlation, merge: bool) -> int:
    """Workspace elements of one (g, b): phase rows, product grid, the padded image they
    are split from (strided, lhs-dilated), the rows' kw shifts (merged)."""
    c, o, kw = lhs_shape[2], rhs_shape[1], rhs_shape[-1]
    padded, grid, _, _, phases, _ = _phase_geometry(lhs_shape, rhs_shape, corr)
    plane = prod(grid)
    split = c * prod(padded) if _split_from_padded(corr) else 0
    return (c * len(phases) + o) * plane + split + (c * kw * plane if merge else 0)


def _split_from_padded(corr: Correlation) -> bool:
    """Whether the phases are copied from a padded, dilated copy of the lhs (strided and
    lhs-dilated); strided alone, each phase is copied straight from the lhs."""
    return _strided(corr) and any(ld > 1 for ld in corr.lhs_dilation)


def _strided(corr: Correlation) -> bool:
    """Whether the padded lhs is split into phases (window strides > 1)."""
    return any(s > 1 for s in corr.window_strides)


def _run_units(lhs, rhs, corr: Correlation, weights, result, sizes, units):
    """Fill result[g0 : g0 + g_chunk, b0 : b0 + b_chunk] in the output box ``box`` for each
    (g0, b0, box) of ``units``, on this thread's own workspaces. weights: the flat
    (merged, if merging) filter blocks; sizes: (g_chunk, b_chunk, the calls: (first phase,
    taps) as the weights are laid out, none if merging)."""
    g, b = lhs.shape[:2]
    g_chunk, b_chunk, runs = sizes
    for g0, b0, box in units:
        images = (slice(g0, min(g, g0 + g_chunk)), slice(b0, min(b, b0 + b_chunk)))
        part, part_corr, target = unit_views(lhs, result, rhs.shape[3:], corr, images, box)
        _run_part(part, rhs.shape, part_corr, weights, target, g0, runs)


def _run_part(lhs, rhs_shape, corr: Correlation, weights, target, g0: int, runs: list):
    """target (gn, n, O, *S_out) = lhs (gn, n, C, *S) correlated with the filters of groups
    g0 .. g0 + gn (``weights``), on this thread's own workspaces; ``runs``: the calls as
    the weights are laid out ((first phase, taps); none: merging). A box's grid differs
    from the whole call's, so its taps' shifts are its own; the taps of a call read the
    same shift on any grid."""
    job = _compiled_jobs.kernels(weights.dtype, target.dtype)
    if job is not None and lhs.size and target.size:
        _run_part_compiled(job, lhs, rhs_shape, corr, weights, target, g0, runs)
        return
    gn, n, c = lhs.shape[:3]
    o, kernel = rhs_shape[1], rhs_shape[3:]
    nd = len(kernel)
    compute = weights.dtype
    merge = not runs
    padded, grid_shape, out_spatial, flat, phases, tap_list = _phase_geometry(
        lhs.shape, rhs_shape, corr
    )
    strided = _strided(corr)
    plane, nph, taps = prod(grid_shape), len(phases), prod(kernel)
    kw, rdw = kernel[-1], corr.rhs_dilation[-1]
    tail = _tail(out_spatial, flat)
    isz = compute.itemsize
    crop = tuple(slice(0, m) for m in out_spatial)
    part = lhs.astype(compute, copy=False)
    span = n * plane  # one row: a phase of a channel over n images
    row = unaliased(span, isz)
    flat_lhs = scratch("implicit-lhs", gn * nph * c * row, compute)
    laid = flat_lhs.reshape(gn, nph, c, row)[..., :span].reshape(gn, nph, c, n, *grid_shape)
    if not strided:
        dilate_and_pad_into(part, corr, laid[:, 0].swapaxes(1, 2))
    elif all(ld == 1 for ld in corr.lhs_dilation):  # each phase straight from the lhs
        lows = tuple(lo for lo, _ in corr.padding)
        for k, r in enumerate(phases):
            phase_into(part, lows, padded, r, corr.window_strides, laid[:, k].swapaxes(1, 2))
    else:
        whole = scratch("implicit-split", gn * n * c * prod(padded), compute)
        whole = whole.reshape(gn, n, c, *padded)
        dilate_and_pad_into(part, corr, whole)
        for k, r in enumerate(phases):
            src = whole[(Ellipsis, *(slice(x, None, s) for x, s in zip(r, corr.window_strides)))]
            dst = laid[:, k].swapaxes(1, 2)  # (gn, n, c, *Q)
            fill = tuple(slice(0, m) for m in src.shape[3:])
            dst[...] = 0
            dst[(Ellipsis, *fill)] = src
    out_row = n * plane + 16
    full = scratch("implicit-full", gn * o * out_row, compute)
    w_buf, full_buf = _blas.buffer(weights), _blas.buffer(full)  # read once for every call
    width = (n - 1) * plane + tail  # columns computed per group
    if merge:
        rest = taps // kw
        rest_shifts = [shift for _, shift in tap_list[::kw]]  # C order, as the weights
        m_len = span - (kw - 1) * rdw
        m_row = unaliased(m_len, isz)
        merged = scratch("implicit-merge", gn * c * kw * m_row, compute)
        src = np.lib.stride_tricks.as_strided(
            flat_lhs, (gn, c, kw, m_len), (c * row * isz, row * isz, rdw * isz, isz)
        )
        np.copyto(merged.reshape(gn, c, kw, m_row)[..., :m_len], src)
        merged_buf = _blas.buffer(merged)
        for gi in range(gn):
            for t, shift in enumerate(rest_shifts):
                _blas.gemm(
                    w_buf, ((g0 + gi) * rest + t) * o * c * kw, c * kw,
                    merged_buf, gi * c * kw * m_row + shift, m_row,
                    full_buf, gi * o * out_row, out_row,
                    o, width, c * kw, 0.0 if t == 0 else 1.0,
                )  # fmt: skip
    lhs_buf = _blas.buffer(flat_lhs)
    for gi in range(gn if not merge else 0):
        w_base, done = (g0 + gi) * o * taps * c, 0
        for i, (k, run) in enumerate(runs):
            shift = tap_list[run[0]][1]
            _blas.gemm(
                w_buf, w_base + done * c, taps * c,
                lhs_buf, ((gi * nph + k) * c) * row + shift, row,
                full_buf, gi * o * out_row, out_row,
                o, width, len(run) * c, 0.0 if i == 0 else 1.0,
            )  # fmt: skip
            done += len(run)
    grid = full.reshape(gn, o, out_row)[..., : n * plane].reshape(gn, o, n, *grid_shape)
    np.copyto(
        target,
        grid[(Ellipsis, *crop)].transpose(0, 2, 1, *range(3, 3 + nd)),
        casting="unsafe",
    )


def _run_part_compiled(job, lhs, rhs_shape, corr: Correlation, weights, target, g0, runs):
    """``_run_part`` as one compiled call (``_gemm_jobs.implicit_job``): the same layout,
    row shifts, GEMMs and crop, without the GIL."""
    gn, n, c = lhs.shape[:3]
    o, kernel = rhs_shape[1], rhs_shape[3:]
    compute, isz = weights.dtype, weights.itemsize
    padded, grid_shape, out_spatial, flat, phases, _ = _phase_geometry(lhs.shape, rhs_shape, corr)
    span, nph = n * prod(grid_shape), len(phases)
    row = unaliased(span, isz)
    out_row = span + 16
    flat_lhs = scratch("implicit-lhs", gn * nph * c * row, compute)
    full = scratch("implicit-full", gn * o * out_row, compute)
    calls, strides, merge = _job_calls(lhs.shape, rhs_shape, corr, runs, isz)
    merged = flat_lhs  # unused where there is no merge
    if merge[0]:
        merged = scratch("implicit-merge", gn * c * merge[0] * merge[3], compute)
    vector = _compiled_jobs.vector
    lows, lhs_dilation, _ = loop_params(corr)
    src, ss = _compiled_jobs.source(lhs, compute)
    tgt, ts = _compiled_jobs.target(target)
    fill = (0,) * (3 - len(kernel))
    status = job.implicit_job(
        _compiled_jobs.address(compute), src, ss,
        vector(lhs.shape[3:], 1), vector(grid_shape, 1),
        _compiled_jobs.read_only_int64([(*fill, *r) for r in phases]),
        vector(corr.window_strides, 1), lows, lhs_dilation, vector(padded, 1),
        gn, c, n, flat_lhs, row, merged, merge, weights, g0, calls, strides, o, full, out_row,
        (n - 1) * prod(grid_shape) + _tail(out_spatial, flat), vector(out_spatial, 1), tgt, ts,
    )  # fmt: skip
    _compiled_jobs.check(status, name)


@functools.lru_cache(maxsize=256)
def _job_calls(lhs_shape, rhs_shape, corr: Correlation, runs: tuple, isz: int):
    """(calls, strides, merge) of ``_gemm_jobs.implicit_job`` for a part of ``lhs_shape``:
    per GEMM (rows of calls) its filters' offset in a group, their row stride, its B
    offset in a group and its contraction; the filters' and B's group strides and B's
    row stride; merge: (kw, rhs dilation, shifted rows' length and stride), zeros where
    ``runs`` are given (no merge). Memoised, read-only."""
    n, c = lhs_shape[1:3]
    o, kernel = rhs_shape[1], rhs_shape[3:]
    _, grid_shape, _, _, phases, tap_list = _phase_geometry(lhs_shape, rhs_shape, corr)
    span, taps, kw, rdw = n * prod(grid_shape), prod(kernel), kernel[-1], corr.rhs_dilation[-1]
    as_array = _compiled_jobs.read_only_int64
    if not runs:  # merged: a GEMM per tap of the outer dims, over the rows' kw shifts
        m_len = span - (kw - 1) * rdw
        m_row = unaliased(m_len, isz)
        rest = taps // kw
        calls = [
            (t * o * c * kw, c * kw, shift, c * kw) for t, (_, shift) in enumerate(tap_list[::kw])
        ]
        strides = (rest * o * c * kw, c * kw * m_row, m_row)
        return as_array(calls), as_array(strides), as_array((kw, rdw, m_len, m_row))
    row = unaliased(span, isz)
    calls, done = [], 0
    for k, run in runs:
        shift = tap_list[run[0]][1]
        calls.append((done * c, taps * c, k * c * row + shift, len(run) * c))
        done += len(run)
    strides = (o * taps * c, len(phases) * c * row, row)
    return as_array(calls), as_array(strides), as_array((0, 0, 0, 0))

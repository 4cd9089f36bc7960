"""Stride phases: lhs-dilated correlations (strided input gradients, transposed convs)
as one dense stride-1 correlation per output phase, never touching inserted zeros.

With lhs dilation ld, output i = r + ld*m (phase r) only meets real samples through the
taps j with (r + j*rd - lo) % ld == 0, and then reads lhs[m + e_j], e_j = (r + j*rd - lo)
// ld. So each phase is ``sum_j W_j @ lhs[m + e_j]``: on the flat padded layout of
``implicit`` (G, C, B*P) one BLAS call per (group, live tap) with a shifted view, into
the phase's own grid; the phases are then interleaved into the output. Window stride 1.

Where the output channels O are few (a transposed conv's), a call per tap would be a GEMM
of O rows: BLAS then packs the shifted lhs for only O rows of products (a 16-row GEMM ran
at 60 % of a 128-row one), and the calls multiply. A phase's live taps are then stacked
instead: one GEMM of (taps x O) rows over a block of the shifted lhs wide enough for every
tap's shift, and one compiled pass that adds each tap's O rows, shifted, into the phase's
grid (``_gemm_jobs.shifted_sum``).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from .._rules import Correlation
from . import _blas, _compiled_jobs, _parallel
from ._boxes import band_shape, most_boxes, output_boxes, unit_views
from ._dtypes import compute_dtype, result_dtype
from ._geometry import flat_strides, prod
from ._workspace import kernel_share, laid_out, scratch, unaliased

name = "phase"


MAX_PHASE_TAPS = 2**14  # (phase, tap) pairs planned in Python; past it gemm runs the call
STACK_BELOW = 32  # output channels under which a phase's taps are stacked into one GEMM
STACK_ROWS = 512  # the most rows (taps x O) of a stacked GEMM
STACK_BYTES = 4 * 2**20  # a stacked GEMM's products per block (measured: 4 MiB as fast as whole)


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    return (
        all(s == 1 for s in corr.window_strides)
        and any(ld > 1 for ld in corr.lhs_dilation)
        and prod(rhs_shape[3:]) <= 512
        and prod(min(ld, n) for ld, n in zip(corr.lhs_dilation, out)) * prod(rhs_shape[3:])
        <= MAX_PHASE_TAPS
    )


def _plan(lhs_shape, rhs_shape, corr: Correlation):
    """(pads lo per dim, padded grid, phases: list of (r, counts m per dim, [(tap index,
    offsets e)])). Only phases that hold outputs (r < out: at most the outputs, however
    large the dilation) and taps that meet a sample for some m (so the grid's padding
    stays below the phase's counts) are listed. Memoised (each box's job asks again),
    read-only."""
    return _memoised_plan(tuple(lhs_shape), tuple(rhs_shape), corr)


@functools.lru_cache(maxsize=256)
def _memoised_plan(lhs_shape, rhs_shape, corr: Correlation):
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    kernel = rhs_shape[3:]
    taps = list(itertools.product(*(range(k) for k in kernel)))
    phases = []
    lo_pad = [0] * len(kernel)
    hi_pad = [0] * len(kernel)
    for r in itertools.product(*(range(min(ld, n)) for ld, n in zip(corr.lhs_dilation, out))):
        counts = tuple(-(-(n - x) // ld) for n, x, ld in zip(out, r, corr.lhs_dilation))
        live = []
        for t, j in enumerate(taps):
            e = []
            for x, jj, rd, ld, (lo, _), m, size in zip(
                r, j, corr.rhs_dilation, corr.lhs_dilation, corr.padding, counts, lhs_shape[3:]
            ):
                v = x + jj * rd - lo
                if v % ld or v // ld >= size or v // ld + m <= 0:  # no sample for any m
                    break
                e.append(v // ld)
            else:
                live.append((t, tuple(e)))
                for d, (ev, m, size) in enumerate(zip(e, counts, lhs_shape[3:])):
                    lo_pad[d] = max(lo_pad[d], -ev)
                    hi_pad[d] = max(hi_pad[d], ev + m - size)
        phases.append((r, counts, live))
    # a dim's low and high padding share their zeros: a read past a row's end wraps to
    # the next row's start, which is low padding (reads past the last image: ``overhang``)
    most = [max((c[d] for _, c, _ in phases), default=0) for d in range(len(kernel))]
    grid = tuple(max(s + max(a, b), m) for s, a, b, m in zip(lhs_shape[3:], lo_pad, hi_pad, most))
    return tuple(lo_pad), grid, phases


@functools.lru_cache(maxsize=256)
def _overhang(lhs_shape, rhs_shape, corr: Correlation) -> int:
    """Zeros a flat padded lhs needs past its last image's grid: the most any phase's tap
    reads beyond it (the high padding the last row would have had). Memoised."""
    lo_pad, grid, phases = _plan(lhs_shape, rhs_shape, corr)
    flat, plane = flat_strides(grid), prod(grid)
    most = 0
    for _, counts_, live in phases:
        tail = sum((m - 1) * f for m, f in zip(counts_, flat)) + 1
        for _, e in live:
            shift = sum((ev + a) * f for ev, a, f in zip(e, lo_pad, flat))
            most = max(most, shift + tail - plane)
    return most


def _stacks(o: int, live: list) -> bool:
    """Whether a phase's ``live`` taps run as one stacked GEMM (few output channels)."""
    return o < STACK_BELOW and 1 < len(live) and len(live) * o <= STACK_ROWS


def compiled_variant(lhs_shape, rhs_shape, corr: Correlation) -> str | None:
    """The compiled kernel a call runs (see ``_primitive``): the whole job
    (``_gemm_jobs``), else the stacked taps' sums."""
    if _compiled_jobs.available():
        return "job"
    return "shifted_sum" if _stacking(lhs_shape, rhs_shape, corr) else None


def _stacking(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    """Whether some phase's taps are stacked (a block of products per job)."""
    _, _, phases = _plan(lhs_shape, rhs_shape, corr)
    return any(_stacks(rhs_shape[1], live) for _, _, live in phases)


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the flat padded lhs and one phase grid of products, whole batch, and a
    block of stacked products."""
    g, b, c = lhs_shape[:3]
    _, grid, _ = _plan(lhs_shape, rhs_shape, corr)
    stacked = STACK_BYTES if _stacking(lhs_shape, rhs_shape, corr) else 0
    return g * b * (c + rhs_shape[1]) * prod(grid) * itemsize + stacked


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, *, cores: int, limit: int):
    """Machine-free work: one GEMM per live (phase, tap) over the padded grid."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    _, grid, phases = _plan(lhs_shape, rhs_shape, corr)
    plane = prod(grid)
    live = sum(len(p[2]) for p in phases)
    stacked = [len(p[2]) for p in phases if _stacks(o, p[2])]
    flops = 2.0 * g * b * o * c * plane * live
    moved = g * b * (2 * c + 2 * o * len(phases)) * plane * itemsize
    if stacked:  # the products, written by BLAS and read by the sums (in cache)
        moved += g * b * sum(stacked) * o * plane * itemsize
    per_tap = live - sum(stacked)  # GEMMs of O rows, one per tap
    if o * c < 16 or (o < 8 and c >= 32):  # tiny or skinny GEMMs stream operands per call
        moved += 4 * g * per_tap * b * plane * (c + 2 * o) * itemsize
    calls = g * (per_tap + 2 * len(stacked)) + 4 * len(phases)
    moved /= _parallel.cores_for(g * b, cores)  # each job copies its own chunks
    # jobs: images, and boxes of output rows where they are fewer than the cores
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    boxes = most_boxes(g * b, out, _image_flops(o, c, phases), _box_calls(phases, o))
    rows = o * min(stacked) if stacked and len(stacked) == len(phases) else o
    return Counts(
        flops,
        min(rows, c, b * plane),
        bytes=moved,
        calls=calls,
        jobs=g * b * boxes,
    )


def _box_calls(phases, o: int) -> int:
    """Python calls one image's box makes: a compiled job's few, else a BLAS call per live
    (phase, tap), or a stacked GEMM, its filters' gather and its sums per phase; copies
    per phase."""
    if _compiled_jobs.available():
        return _compiled_jobs.JOB_CALLS
    return sum((3 if _stacks(o, live) else len(live)) + 4 for _, _, live in phases) + 10


def _image_flops(o: int, c: int, phases) -> float:
    """Multiply-adds (x2) of one image: each phase's outputs by its live taps."""
    return 2.0 * o * c * sum(prod(counts) * len(live) for _, counts, live in phases)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    out_spatial = corr.output_spatial(lhs.shape[3:], kernel)
    limit = kernel_share(rhs.size * compute.itemsize, workspace_limit)
    if limit is None:  # the filters' copy alone would take most of the limit
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    # each job's block of stacked products: a share of the limit, the rest for the boxes
    jobs_at_most = _parallel.workers(g * b * out_spatial[0])
    stacking = _stacking(lhs.shape, rhs.shape, corr)
    stack_bytes = min(STACK_BYTES, limit // (4 * jobs_at_most)) if stacking else 0
    workspace_limit = max(1, limit - jobs_at_most * stack_bytes)
    taps = prod(kernel)
    weights = laid_out(
        "phase-weights", np.moveaxis(rhs.reshape(g, o, c, taps), 3, 1), compute
    ).reshape(-1)
    result = np.empty((g, b, o, *out_spatial), dtype=dtype)  # the jobs fill every phase
    isz = compute.itemsize

    def box_bytes(box_shape):  # one image's box: its flat padded lhs and product grid
        shape, box_corr = band_shape(lhs.shape, kernel, corr, box_shape)
        return (c + o) * prod(_plan(shape, rhs.shape, box_corr)[1]) * isz

    _, grid_shape, phases = _plan(lhs.shape, rhs.shape, corr)
    per_image = (c + o) * prod(grid_shape) * isz
    flops = _image_flops(o, c, phases)

    def boxes(units):
        calls = _box_calls(phases, o)
        return output_boxes(units, out_spatial, flops, calls, box_bytes, workspace_limit)

    g_chunk, b_chunk, jobs = _parallel.batch_chunks(
        g, b, per_image, workspace_limit, _parallel.CHUNK_BYTES, boxes
    )
    sizes = (g_chunk, b_chunk, stack_bytes)
    _parallel.run_jobs(
        lambda units: _run_units(lhs, rhs.shape, corr, weights, result, sizes, units), jobs
    )
    return result


def _run_units(lhs, rhs_shape, corr: Correlation, weights, result, sizes, units):
    """Fill result[g0 : g0 + g_chunk, b0 : b0 + b_chunk] in the output box ``box`` for each
    (g0, b0, box) of ``units``; weights: the flat (G, taps, O, C) filter blocks."""
    g, b = lhs.shape[:2]
    g_chunk, b_chunk, stack_bytes = sizes
    for g0, b0, box in units:
        images = (slice(g0, min(g, g0 + g_chunk)), slice(b0, min(b, b0 + b_chunk)))
        part, part_corr, target = unit_views(lhs, result, rhs_shape[3:], corr, images, box)
        _run_part(part, rhs_shape, part_corr, weights, target, g0, stack_bytes)


def _run_part(lhs, rhs_shape, corr: Correlation, weights, target, g0: int, stack_bytes: int):
    """Fill target (gn, n, O, *S_out), every phase of it, with lhs (gn, n, C, *S)
    correlated with the filters of groups g0 .. g0 + gn, on this thread's own workspaces
    (``stack_bytes``: for the stacked taps' products)."""
    job = _compiled_jobs.kernels(weights.dtype, target.dtype)
    if job is not None and lhs.size and target.size:
        _run_part_compiled(job, lhs, rhs_shape, corr, weights, target, g0, stack_bytes)
        return
    gn, n, c = lhs.shape[:3]
    o, kernel = rhs_shape[1], rhs_shape[3:]
    nd = len(kernel)
    compute = weights.dtype
    lo_pad, grid_shape, phases = _plan(lhs.shape, rhs_shape, corr)
    plane, taps = prod(grid_shape), prod(kernel)
    flat = flat_strides(grid_shape)
    isz = compute.itemsize
    inner = tuple(slice(a, a + s) for a, s in zip(lo_pad, lhs.shape[3:]))
    span = n * plane
    overhang = _overhang(lhs.shape, rhs_shape, corr)
    row = unaliased(span + overhang, isz)
    flat_lhs = scratch("phase-lhs", gn * c * row, compute)
    laid = flat_lhs.reshape(gn, c, row)[..., :span].reshape(gn, c, n, *grid_shape)
    laid[...] = 0
    flat_lhs.reshape(gn, c, row)[..., span : span + overhang] = 0
    laid[(Ellipsis, *inner)] = lhs.swapaxes(1, 2)
    out_row = span + 16
    full = scratch("phase-full", gn * o * out_row, compute)
    w_buf, lhs_buf, full_buf = (_blas.buffer(a) for a in (weights, flat_lhs, full))
    for r, counts_, live in phases:
        if not live:  # no tap meets a sample: the phase's outputs are zeros
            target[(Ellipsis, *(slice(x, None, ld) for x, ld in zip(r, corr.lhs_dilation)))] = 0
            continue
        tail = sum((m - 1) * f for m, f in zip(counts_, flat)) + 1
        width = (n - 1) * plane + tail
        shifts = [sum((ev + a) * f for ev, a, f in zip(e, lo_pad, flat)) for _, e in live]
        # stacked where a block of at least 17 columns fits the products' share (each row
        # spans the block, the taps' spread and up to 16 columns of padding)
        spread = max(shifts) - min(shifts)
        stacked_here = _stacks(o, live) and len(live) * o * (spread + 33) * isz <= stack_bytes
        for gi in range(gn):
            w_base = (g0 + gi) * taps * o * c
            if stacked_here:
                stacked = weights[w_base : w_base + taps * o * c].reshape(taps, o * c)
                stacked = np.take(stacked, [t for t, _ in live], axis=0).reshape(-1)
                at = (gi * c * row, gi * o * out_row)
                sizes = (o, c, width, stack_bytes)
                _stacked_taps(flat_lhs, row, stacked, shifts, full, out_row, at, sizes)
                continue
            for k, (t, _) in enumerate(live):
                _blas.gemm(
                    w_buf, w_base + t * o * c, c,
                    lhs_buf, gi * c * row + shifts[k], row,
                    full_buf, gi * o * out_row, out_row,
                    o, width, c, 0.0 if k == 0 else 1.0,
                )  # fmt: skip
        grid = full.reshape(gn, o, out_row)[..., :span].reshape(gn, o, n, *grid_shape)
        crop = tuple(slice(0, m) for m in counts_)
        dst = tuple(slice(x, None, ld) for x, ld in zip(r, corr.lhs_dilation))
        np.copyto(
            target[(Ellipsis, *dst)],
            grid[(Ellipsis, *crop)].transpose(0, 2, 1, *range(3, 3 + nd)),
            casting="unsafe",
        )


def _run_part_compiled(job, lhs, rhs_shape, corr: Correlation, weights, target, g0, stack_bytes):
    """``_run_part`` as one compiled call (``_gemm_jobs.phase_job``): the same layout,
    GEMMs, stacked blocks and sums, without the GIL."""
    gn, n, c = lhs.shape[:3]
    o, kernel = rhs_shape[1], rhs_shape[3:]
    compute, isz = weights.dtype, weights.itemsize
    lo_pad, grid_shape, _ = _plan(lhs.shape, rhs_shape, corr)
    plan, taps, shifts, most_products, most_stacked = _job_plan(
        lhs.shape, rhs_shape, corr, isz, stack_bytes
    )
    span = n * prod(grid_shape)
    overhang = _overhang(lhs.shape, rhs_shape, corr)
    row = unaliased(span + overhang, isz)
    out_row = span + 16
    flat_lhs = scratch("phase-lhs", gn * c * row, compute)
    full = scratch("phase-full", gn * o * out_row, compute)
    products = scratch("phase-stacked", max(1, most_products), compute)
    stacked = scratch("phase-stacked-weights", max(1, most_stacked * o * c), compute)
    src, ss = _compiled_jobs.source(lhs, compute)
    tgt, ts = _compiled_jobs.target(target)
    status = job.phase_job(
        _compiled_jobs.address(compute), src, ss,
        _compiled_jobs.vector(lhs.shape[3:], 1), _compiled_jobs.vector(grid_shape, 1),
        _compiled_jobs.vector(lo_pad, 0),
        gn, c, n, overhang, flat_lhs, row, weights, g0, prod(kernel), o, full, out_row,
        plan, taps, shifts, products, stacked, tgt, ts,
    )  # fmt: skip
    _compiled_jobs.check(status, name)


@functools.lru_cache(maxsize=256)
def _job_plan(lhs_shape, rhs_shape, corr: Correlation, isz: int, stack_bytes: int):
    """(plan, taps, shifts, products' elements, most taps stacked) of
    ``_gemm_jobs.phase_job`` for a part of ``lhs_shape``: per phase (rows of plan) its
    first output, counts and step (three each, padded in front to three dims), its first
    tap in taps/shifts, its live taps, its stacked block's columns (0: a GEMM per tap)
    and the taps stacked in one GEMM (``_tap_groups``). Memoised, read-only."""
    n, o = lhs_shape[1], rhs_shape[1]
    lo_pad, grid_shape, phases = _plan(lhs_shape, rhs_shape, corr)
    flat, plane = flat_strides(grid_shape), prod(grid_shape)
    fill = (1,) * (3 - len(grid_shape))
    steps = (*fill, *corr.lhs_dilation)
    rows, taps, shifts, most, most_stacked = [], [], [], 0, 0
    for r, counts_, live in phases:
        tap_shifts = [sum((ev + a) * f for ev, a, f in zip(e, lo_pad, flat)) for _, e in live]
        block, group = 0, max(1, len(live))
        if live and _stacks(o, live):
            tail = sum((m - 1) * f for m, f in zip(counts_, flat)) + 1
            width = (n - 1) * plane + tail
            group = _tap_groups(live)
            spread = max(
                max(tap_shifts[k : k + group]) - min(tap_shifts[k : k + group])
                for k in range(0, len(live), group)
            )
            per_row = group * o * isz
            if per_row * (spread + 33) <= stack_bytes:
                block = min(width, max(1, stack_bytes // per_row - spread - 16))
                most = max(most, group * o * unaliased(block + spread, isz))
                most_stacked = max(most_stacked, group)
        start = (0,) * len(fill) + tuple(r)
        count = fill + tuple(counts_)
        rows.append((*start, *count, *steps, len(taps), len(live), block, group))
        taps += [t for t, _ in live]
        shifts += tap_shifts
    as_array = _compiled_jobs.read_only_int64
    return as_array(rows).reshape(-1, 13), as_array(taps), as_array(shifts), most, most_stacked


def _tap_groups(live) -> int:
    """Taps a stacked GEMM takes of a phase's ``live`` ones (in tap order): those at one
    offset along the first of three dims, or all of them in 1-D and 2-D. Stacked whole, a
    3-D phase's GEMM also computes the columns between its taps' shifts, a plane apart
    (the 3-D transposed layer: 241 columns over 1784 an image); in groups the spread is
    a row (measured on one thread: one 128-row GEMM over 2025 columns 100 us, two of 64
    rows over 1800 89 us; the layer's forward 1.97-2.03 -> 1.96-1.98 ms on one thread,
    1.17-1.22 -> 1.11-1.13 ms on two)."""
    if len(live[0][1]) < 3:
        return len(live)
    firsts = [e[0] for _, e in live]
    group = firsts.count(firsts[0])
    equal = all(firsts[k : k + group] == [firsts[k]] * group for k in range(0, len(live), group))
    return group if equal and len(live) % group == 0 else len(live)


def _stacked_taps(flat_lhs, row, stacked, shifts, full, out_row, at, sizes) -> None:
    """full[at[1] + i * out_row + p] = sum_k (W_k @ lhs)[i, p + shifts[k]] for p < width
    (sizes: O, C, width, the products' most bytes): one GEMM of the stacked filters (taps x
    O rows, C columns) per block of lhs columns wide enough for every shift, then the
    compiled shifted sum of its products."""
    o, c, width, most_bytes = sizes
    low, spread = min(shifts), max(shifts) - min(shifts)
    offsets = np.array([s - low for s in shifts], dtype=np.int64)
    rows = len(shifts) * o
    isz = full.itemsize
    block = min(width, max(1, most_bytes // (rows * isz) - spread - 16))
    z_row = unaliased(block + spread, isz)  # rows of products
    products = scratch("phase-stacked", rows * z_row, full.dtype)
    shifted_sum = _compiled_jobs.loops().shifted_sum
    stacked_buf, lhs_buf, products_buf = (_blas.buffer(a) for a in (stacked, flat_lhs, products))
    for p0 in range(0, width, block):
        n = min(block, width - p0)
        _blas.gemm(
            stacked_buf, 0, c,
            lhs_buf, at[0] + low + p0, row,
            products_buf, 0, z_row,
            rows, n + spread, c, 0.0,
        )  # fmt: skip
        shifted_sum(products, z_row, o, offsets, full, at[1] + p0, out_row, n, False)

"""Implicit GEMM over kernel taps: no column matrix at all.

The padded lhs is laid out once as flat rows (G, C, phases*B*Q): with window strides s
the padded grid is split into phases (P[t*s + r] = phase_r[t], each of grid
Q = ceil(P / s)), so every output position i reads phase r(j) at i + q(j) for the tap
offset j*rd = q(j)*s + r(j). Only the phases some tap reads are built (at most the taps,
however large the stride). The samples under tap j for all outputs are then the same
rows shifted by one flat offset s_j, and

    full[g, o, i] = sum_j  W[g, j] (O x C)  @  lhs_flat[g, :, i + s_j] (C x B*Q)

is one BLAS call per (group, tap) reading a shifted view with a leading dimension and
accumulating with beta = 1 (``_blas``). ``full`` lives on the phase grid; the output is
its [:S_out] corner of each image. Columns off that corner read across image or phase
borders and are discarded; no valid column ever does. Chunked over B (then groups), the
chunks spread over one job per core (``_parallel``), each with single-threaded BLAS.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from .._rules import Correlation
from . import _blas, _parallel
from ._dtypes import compute_dtype, result_dtype
from ._geometry import dilate_and_pad_into, flat_strides, padded_shape, padding_bounded, prod
from ._workspace import kernel_share, laid_out, scratch

name = "implicit"


MAX_TAPS = 512  # one BLAS call per (group, tap): long kernels (dW maps) belong elsewhere
MERGE_MAX = 64  # C*kw up to which a row's kw shifts are copied to lengthen each GEMM


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return prod(rhs_shape[3:]) <= MAX_TAPS and padding_bounded(lhs_shape, rhs_shape, corr)


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
    shifts as (phase index, flat offset on Q))."""
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


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the phase-split padded lhs and the full-grid product for the whole batch
    (plus the padded chunk it is split from, when strided)."""
    g, b, c = lhs_shape[:3]
    padded, grid, _, _, phases, _ = _phase_geometry(lhs_shape, rhs_shape, corr)
    split = prod(padded) * c if _strided(corr) else 0
    rows = c * prod(grid) * len(phases)
    return g * b * (split + rows + rhs_shape[1] * prod(grid)) * itemsize


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: GEMMs on the padded grid, the padding copy and the output crop."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o, taps = rhs_shape[1], prod(rhs_shape[3:])
    _, grid_shape, _, _, phases, _ = _phase_geometry(lhs_shape, rhs_shape, corr)
    grid, nph, strided = prod(grid_shape), len(phases), _strided(corr)
    flops = 2.0 * g * b * o * c * taps * grid
    moved = g * b * (2 * c * grid * nph * (1 + strided) + 2 * o * grid) * itemsize
    if o * c < 16:  # tiny GEMMs run at memory speed: each re-reads lhs and accumulator
        moved += g * taps * b * grid * (c + 2 * o) * itemsize
    elif o < 8 and c >= 32:  # skinny GEMMs over long contractions stream their operand
        moved += 4 * g * taps * b * grid * (c + 2 * o) * itemsize
    padded = grid
    kw = rhs_shape[-1]
    merged = not strided and kw > 1 and c * kw <= MERGE_MAX
    if merged:  # the kw-shift copy, and kw times fewer calls
        moved += g * b * c * kw * grid * 2 * itemsize
    moved /= _parallel.cores_for(g * b)  # each job copies its own chunks
    calls = g * (taps // kw if merged else taps) + 10
    return Counts(flops, min(o, c, b * padded), bytes=moved, calls=calls, jobs=g * b)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    padded, grid_shape, out_spatial, _, phases, _ = _phase_geometry(lhs.shape, rhs.shape, corr)
    strided = _strided(corr)
    plane, nph, taps = prod(grid_shape), len(phases), prod(kernel)
    kw = kernel[-1]
    # few channels: copy the kw shifts of each row once so each GEMM contracts C*kw
    merge = not strided and kw > 1 and c * kw <= MERGE_MAX
    limit = kernel_share(rhs.size * compute.itemsize, workspace_limit)
    if limit is None:  # the filters' copy alone would take most of the limit
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    workspace_limit = limit
    w = rhs.astype(compute, copy=False)
    if merge:  # (G, K_rest, O, C, kw): W[g, rest] is a row-major O x (C*kw) block
        w = w.reshape(g, o, c, taps // kw, kw).transpose(0, 3, 1, 2, 4)
    else:  # (G, taps, O, C): W[g, j] is a row-major O x C block
        w = np.moveaxis(w.reshape(g, o, c, taps), 3, 1)
    weights = laid_out("implicit-weights", w, compute).reshape(-1)
    result = np.empty((g, b, o, *out_spatial), dtype=dtype)
    isz = compute.itemsize
    # one (g, b): phase rows, product grid, and the padded image it is split from
    per_image = ((c * nph + o) * plane + (c * prod(padded) if strided else 0)) * isz
    per_image += c * kw * plane * isz if merge else 0
    g_chunk, b_chunk, jobs = _parallel.batch_chunks(g, b, per_image, workspace_limit, 8 * 2**20)
    sizes = _Chunking(g_chunk, b_chunk, merge, strided)
    _parallel.run_jobs(
        lambda chunks: _run_chunks(lhs, rhs, corr, weights, result, sizes, chunks), jobs
    )
    return result


def _strided(corr: Correlation) -> bool:
    """Whether the padded lhs is split into phases (window strides > 1)."""
    return any(s > 1 for s in corr.window_strides)


class _Chunking(NamedTuple):
    g_chunk: int
    b_chunk: int
    merge: bool  # copy each row's kw shifts (few channels)
    strided: bool


def _run_chunks(lhs, rhs, corr: Correlation, weights, result, sizes: _Chunking, chunks):
    """Fill result[g0 : g0 + g_chunk, b0 : b0 + b_chunk] for each (g0, b0) of ``chunks``,
    on this thread's own workspaces. weights: the flat (merged, if merging) filter blocks."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel = rhs.shape[3:]
    nd = len(kernel)
    compute = weights.dtype
    padded, grid_shape, out_spatial, flat, phases, tap_list = _phase_geometry(
        lhs.shape, rhs.shape, corr
    )
    g_chunk, b_chunk, merge, strided = sizes
    plane, nph, taps = prod(grid_shape), len(phases), prod(kernel)
    kw, rdw = kernel[-1], corr.rhs_dilation[-1]
    tail = _tail(out_spatial, flat)
    isz = compute.itemsize
    crop = tuple(slice(0, n) for n in out_spatial)
    lhs_buffer = scratch("implicit-lhs", g_chunk * c * (nph * b_chunk * plane + 16), compute)
    full_buffer = scratch("implicit-full", g_chunk * o * (b_chunk * plane + 16), compute)
    merge_buffer = (
        scratch("implicit-merge", g_chunk * c * kw * (b_chunk * plane + 16), compute)
        if merge
        else None
    )
    if merge:
        rest = taps // kw
        rest_shifts = [shift for _, shift in tap_list[::kw]]  # C order, as the weights
    split_buffer = (
        scratch("implicit-split", g_chunk * b_chunk * c * prod(padded), compute)
        if strided
        else None
    )

    for g0, b0 in chunks:
        gn = min(g, g0 + g_chunk) - g0
        n = min(b, b0 + b_chunk) - b0
        part = lhs[g0 : g0 + gn, b0 : b0 + n].astype(compute, copy=False)
        span = nph * n * plane  # one channel's row: its phases, each over n images
        # row stride off multiples of 1 KiB (cache-set aliasing in BLAS packing)
        row = span + (16 if (span * isz) % 1024 == 0 else 0)
        flat_lhs = lhs_buffer[: gn * c * row]
        laid = flat_lhs.reshape(gn, c, row)[..., :span].reshape(gn, c, nph, n, *grid_shape)
        if not strided:
            dilate_and_pad_into(part, corr, laid[:, :, 0].swapaxes(1, 2))
        else:
            whole = split_buffer[: gn * n * c * prod(padded)].reshape(gn, n, c, *padded)
            dilate_and_pad_into(part, corr, whole)
            for k, r in enumerate(phases):
                src = whole[
                    (Ellipsis, *(slice(x, None, s) for x, s in zip(r, corr.window_strides)))
                ]
                dst = laid[:, :, k].swapaxes(1, 2)  # (gn, n, c, *Q)
                fill = tuple(slice(0, m) for m in src.shape[3:])
                dst[...] = 0
                dst[(Ellipsis, *fill)] = src
        full = full_buffer[: gn * o * (n * plane + 16)]
        out_row = n * plane + 16
        width = (n - 1) * plane + tail  # columns computed per group
        if merge:
            m_len = span - (kw - 1) * rdw
            m_row = m_len + (16 if (m_len * isz) % 1024 == 0 else 0)
            merged = merge_buffer[: gn * c * kw * m_row]
            src = np.lib.stride_tricks.as_strided(
                flat_lhs, (gn, c, kw, m_len), (c * row * isz, row * isz, rdw * isz, isz)
            )
            np.copyto(merged.reshape(gn, c, kw, m_row)[..., :m_len], src)
            for gi in range(gn):
                for t, shift in enumerate(rest_shifts):
                    _blas.gemm(
                        weights, ((g0 + gi) * rest + t) * o * c * kw, c * kw,
                        merged, gi * c * kw * m_row + shift, m_row,
                        full, gi * o * out_row, out_row,
                        o, width, c * kw, 0.0 if t == 0 else 1.0,
                    )  # fmt: skip
        for gi in range(gn if not merge else 0):
            w_base = (g0 + gi) * taps * o * c
            for t, (k, shift) in enumerate(tap_list):
                _blas.gemm(
                    weights, w_base + t * o * c, c,
                    flat_lhs, gi * c * row + k * n * plane + shift, row,
                    full, gi * o * out_row, out_row,
                    o, width, c, 0.0 if t == 0 else 1.0,
                )  # fmt: skip
        grid = full.reshape(gn, o, out_row)[..., : n * plane].reshape(gn, o, n, *grid_shape)
        np.copyto(
            result[g0 : g0 + gn, b0 : b0 + n],
            grid[(Ellipsis, *crop)].transpose(0, 2, 1, *range(3, 3 + nd)),
            casting="unsafe",
        )

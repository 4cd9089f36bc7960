"""Exact correlation: every product is a real lhs sample times an rhs tap.

Padding and the zeros of lhs dilation are never multiplied, so an inf or NaN in either
operand reaches exactly the outputs whose windows meet it on a sample (the definition,
and the float64 reference), where the fast algorithms multiply zeros wherever that pays
(gemm's and implicit's padded rows, direct's padded bands, phase's padded grid,
Winograd's transforms). ``correlate`` runs this when a non-finite rhs would meet those
zeros; it is not in the registry (the planner never picks it for speed).

Per dim, the outputs that one tap puts on samples form an arithmetic progression, and so
do the samples they read (``progression``). So per kernel tap, one matmul of the tap's
(O x C) filter block with the strided samples it meets covers all its outputs; where a
correlation has more taps than outputs (a weight gradient), per output position one
matmul contracts the samples with the taps that meet them. Only taps and outputs that
meet a sample are visited, so a huge stride, dilation or padding costs nothing. The
copies are chunked over groups, B (or C) and rows under the workspace limit.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .._rules import Correlation
from ._dtypes import compute_dtype, result_dtype
from ._geometry import prod
from ._workspace import scratch

name = "exact"


def progression(count: int, step: int, offset: int, ld: int, size: int):
    """The x in [0, count) whose position x*step + offset on the dilated lhs is a sample
    (a multiple of ld, ld*(size-1) at most, not negative), as (first x, how many, x step,
    first sample, sample step); None if there are none."""
    g = math.gcd(step, ld)
    if offset % g:
        return None
    period = ld // g  # x steps between positions that are multiples of ld
    phase = (-offset // g) * pow(step // g, -1, period) % period if period > 1 else 0
    low = max(0, -(offset // step))  # x*step + offset >= 0
    high = min(count - 1, ((size - 1) * ld - offset) // step)  # ... <= (size - 1)*ld
    first = low + (phase - low) % period
    if first > high:
        return None
    return first, (high - first) // period + 1, period, (first * step + offset) // ld, step // g


def _slices(progressions) -> tuple[tuple, tuple]:
    """(x slices, sample slices) of per-dim progressions."""
    xs = tuple(slice(f, f + (n - 1) * s + 1, s) for f, n, s, _, _ in progressions)
    samples = tuple(slice(p, p + (n - 1) * q + 1, q) for _, n, _, p, q in progressions)
    return xs, samples


def _sizes(counts, unit: int, limit: int) -> list[int]:
    """Chunk sizes for nested dims of ``counts`` items (outermost first) whose innermost
    item takes ``unit`` bytes: inner dims whole while they fit in ``limit``, then as many
    items as fit, then one at a time."""
    sizes, size, whole = [], unit, True
    for n in reversed(counts):
        k = max(1, min(n, limit // max(size, 1))) if whole else 1
        whole = whole and k == n
        size *= k
        sizes.append(k)
    return sizes[::-1]


def _rows(x_slices, sample_slices, r0: int, rows: int):
    """The slices restricted to first-dim entries r0 .. r0 + rows of the progressions."""
    (xs, *x_rest), (ss, *s_rest) = x_slices, sample_slices
    x0 = slice(xs.start + r0 * xs.step, xs.start + (r0 + rows - 1) * xs.step + 1, xs.step)
    s0 = slice(ss.start + r0 * ss.step, ss.start + (r0 + rows - 1) * ss.step + 1, ss.step)
    return (x0, *x_rest), (s0, *s_rest)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, *S), rhs (G, O, C, *K) -> (G, B, O, *S_out)."""
    dtype = result_dtype(lhs, rhs)
    compute = compute_dtype(dtype)
    g, b = lhs.shape[:2]
    o = rhs.shape[1]
    out_spatial = corr.output_spatial(lhs.shape[3:], rhs.shape[3:])
    result = np.zeros((g, b, o, *out_spatial), dtype=compute)
    if 0 in lhs.shape + rhs.shape + tuple(out_spatial):
        return result.astype(dtype, copy=False)
    lhs, rhs = lhs.astype(compute, copy=False), rhs.astype(compute, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, 0 * inf: NaN, as meant
        if prod(rhs.shape[3:]) <= prod(out_spatial):
            _by_taps(lhs, rhs, corr, result, workspace_limit)
        else:
            _by_outputs(lhs, rhs, corr, result, workspace_limit)
    return result.astype(dtype, copy=False)


def _per_dim(counts, others, step, other_step, corr: Correlation, spatial):
    """Per dim, [(index, progression over the other range)] of the indices (taps or output
    positions) that meet a sample: tap j puts output i on position i*ws + j*rd - lo."""
    lists = []
    for n, m, s, t, ld, (lo, _), size in zip(
        counts, others, step, other_step, corr.lhs_dilation, corr.padding, spatial
    ):
        hits = [(x, progression(m, t, x * s - lo, ld, size)) for x in range(n)]
        lists.append([(x, p) for x, p in hits if p is not None])
    return lists


def _by_taps(lhs, rhs, corr: Correlation, result, limit: int) -> None:
    """result += per tap, (G, O, C) filter block @ the samples the tap meets."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel, spatial, out_spatial = rhs.shape[3:], lhs.shape[3:], result.shape[3:]
    isz = result.itemsize
    per_dim = _per_dim(kernel, out_spatial, corr.rhs_dilation, corr.window_strides, corr, spatial)
    for combo in itertools.product(*per_dim):
        tap = tuple(j for j, _ in combo)
        counts = [p[1] for _, p in combo]
        dst, src = _slices([p for _, p in combo])
        weights = np.ascontiguousarray(rhs[(Ellipsis, *tap)])[:, None]  # (G, 1, O, C)
        row = prod(counts[1:])
        gn, bn, rn = _sizes((g, b, counts[0]), (c + o) * row * isz, limit)
        for r0 in range(0, counts[0], rn):
            rows = min(rn, counts[0] - r0)
            dst_r, src_r = _rows(dst, src, r0, rows)
            shape = (rows, *counts[1:])
            for g0, b0 in itertools.product(range(0, g, gn), range(0, b, bn)):
                gk, bk = min(gn, g - g0), min(bn, b - b0)
                part = lhs[g0 : g0 + gk, b0 : b0 + bk][(Ellipsis, *src_r)]
                samples = scratch("exact-samples", part.size, lhs.dtype).reshape(part.shape)
                np.copyto(samples, part)
                product = scratch("exact-product", gk * bk * o * rows * row, lhs.dtype)
                product = product.reshape(gk, bk, o, rows * row)
                np.matmul(
                    weights[g0 : g0 + gk], samples.reshape(gk, bk, c, rows * row), out=product
                )
                result[g0 : g0 + gk, b0 : b0 + bk][(Ellipsis, *dst_r)] += product.reshape(
                    gk, bk, o, *shape
                )


def _by_outputs(lhs, rhs, corr: Correlation, result, limit: int) -> None:
    """result[..., i] = per output position i, the samples it meets (B x C*J) @ the taps
    that meet them (C*J x O); for correlations with more taps than outputs."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    kernel, spatial, out_spatial = rhs.shape[3:], lhs.shape[3:], result.shape[3:]
    isz = result.itemsize
    per_dim = _per_dim(out_spatial, kernel, corr.window_strides, corr.rhs_dilation, corr, spatial)
    for combo in itertools.product(*per_dim):
        position = tuple(i for i, _ in combo)
        counts = [p[1] for _, p in combo]
        taps, src = _slices([p for _, p in combo])
        row = prod(counts[1:])
        gn, cn, rn = _sizes((g, c, counts[0]), (b + o) * row * isz, limit)
        for r0 in range(0, counts[0], rn):
            rows = min(rn, counts[0] - r0)
            taps_r, src_r = _rows(taps, src, r0, rows)
            for g0, c0 in itertools.product(range(0, g, gn), range(0, c, cn)):
                gk, ck = min(gn, g - g0), min(cn, c - c0)
                part = lhs[g0 : g0 + gk, :, c0 : c0 + ck][(Ellipsis, *src_r)]
                samples = scratch("exact-samples", part.size, lhs.dtype).reshape(part.shape)
                np.copyto(samples, part)
                part = rhs[g0 : g0 + gk, :, c0 : c0 + ck][(Ellipsis, *taps_r)]
                filters = scratch("exact-filters", part.size, rhs.dtype).reshape(part.shape)
                np.copyto(filters, part)
                depth = ck * rows * row
                total = np.matmul(
                    samples.reshape(gk, b, depth), filters.reshape(gk, o, depth).swapaxes(1, 2)
                )
                result[(slice(g0, g0 + gk), slice(None), slice(None), *position)] += total

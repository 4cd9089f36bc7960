"""Geometry shared by the algorithms: padded and dilated lhs planes, sliding-window views.

Every function here reads only shapes and a :class:`~convgrad._rules.Correlation`, or
copies an lhs into the padded, dilated layout an algorithm slides its windows over.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._rules import Correlation


def prod(values) -> int:
    return math.prod(values)


def padded_shape(spatial: tuple[int, ...], corr: Correlation) -> tuple[int, ...]:
    """Spatial shape of pad(dilate(lhs)) (negative padding crops)."""
    return tuple(
        max((s - 1) * ld + 1 + lo + hi, 0)
        for s, ld, (lo, hi) in zip(spatial, corr.lhs_dilation, corr.padding)
    )


def padding_bounded(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    """Whether one padded, dilated lhs plane is at most twice the lhs plane plus its im2col
    columns (outputs x taps). Algorithms that lay that plane out whole refuse larger ones:
    a huge dilation with 'same' padding pads d*(k-1)/2 zeros per side, and a huge stride
    or padding leaves most of the plane unread; ``gemm`` never builds it."""
    plane = prod(padded_shape(lhs_shape[3:], corr))
    columns = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:])) * prod(rhs_shape[3:])
    return plane <= 2 * (prod(lhs_shape[3:]) + columns)


def flat_strides(shape: tuple[int, ...]) -> list[int]:
    """Element stride of each dim of a C-contiguous array of ``shape``."""
    return [math.prod(shape[d + 1 :]) for d in range(len(shape))]


def dilate_and_pad(lhs: np.ndarray, corr: Correlation) -> np.ndarray:
    """(G, B, C, *S) -> (G, B, C, *P): insert lhs_dilation-1 zeros between samples, then
    pad (lo, hi) zeros per spatial dim (negative values crop). Returns lhs itself (no copy)
    when there is nothing to do."""
    if all(ld == 1 for ld in corr.lhs_dilation) and all(p == (0, 0) for p in corr.padding):
        return lhs
    out = np.empty((*lhs.shape[:3], *padded_shape(lhs.shape[3:], corr)), dtype=lhs.dtype)
    return dilate_and_pad_into(lhs, corr, out)


def dilate_and_pad_into(lhs: np.ndarray, corr: Correlation, out: np.ndarray) -> np.ndarray:
    """dilate_and_pad written into ``out`` (G, B, C, *P), any strides (e.g. a transposed
    view of a buffer laid out for BLAS). Returns out."""
    src, dst = [], []
    for size, ld, (lo, hi) in zip(lhs.shape[3:], corr.lhs_dilation, corr.padding):
        length = (size - 1) * ld + 1 + lo + hi
        # input sample j lands at j*ld + lo; keep those inside [0, length)
        first = -(-max(0, -lo) // ld)  # ceil(max(0, -lo) / ld)
        last = min(size - 1, (length - 1 - lo) // ld) if length - 1 - lo >= 0 else -1
        if last < first:
            out[...] = 0
            return out
        src.append(slice(first, last + 1))
        dst.append(slice(first * ld + lo, last * ld + lo + 1, ld))
    dense = all(ld == 1 for ld in corr.lhs_dilation)
    if dense:  # zero only the borders
        for axis, sl in enumerate(dst, start=3):
            index = [slice(None)] * out.ndim
            index[axis] = slice(0, sl.start)
            out[tuple(index)] = 0
            index[axis] = slice(sl.stop, None)
            out[tuple(index)] = 0
    else:
        out[...] = 0
    out[(Ellipsis, *dst)] = lhs[(Ellipsis, *src)]
    return out


def phase_into(lhs: np.ndarray, lows, padded, phase, steps, dst: np.ndarray) -> None:
    """dst (..., *Q) = one phase of pad(lhs) (..., *S), no lhs dilation: position q
    holds padded sample q*step + phase, which is lhs[q*step + phase - low] where that is
    a sample of lhs inside the ``padded`` extent, else zero. One copy, no padded one."""
    into, source = [], []
    dims = len(phase)
    for size, extent, grid, x, s, lo in zip(
        lhs.shape[-dims:], padded, dst.shape[-dims:], phase, steps, lows
    ):
        q0 = max(0, -(-(lo - x) // s))  # first q whose sample q*s + x - lo is >= 0
        q1 = max(q0, min(grid, -(-(extent - x) // s), (size - 1 + lo - x) // s + 1))
        into.append(slice(q0, q1))
        first = q0 * s + x - lo
        source.append(slice(first, first + (q1 - q0 - 1) * s + 1 if q1 > q0 else first, s))
    if any(sl.start > 0 or sl.stop < n for sl, n in zip(into, dst.shape[-dims:])):
        dst[...] = 0
    np.copyto(dst[(Ellipsis, *into)], lhs[(Ellipsis, *source)], casting="unsafe")


def window_view(
    padded: np.ndarray, kernel: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...]
) -> np.ndarray:
    """Zero-copy sliding windows: (G, B, C, *P) -> (G, B, C, *out, *kernel), read-only."""
    spatial = padded.shape[3:]
    out = tuple(
        (p - d * (k - 1) - 1) // s + 1 for p, k, s, d in zip(spatial, kernel, strides, dilation)
    )
    base = padded.strides[:3]
    sp = padded.strides[3:]
    shape = (*padded.shape[:3], *out, *kernel)
    strides_ = (
        *base,
        *(st * s for st, s in zip(sp, strides)),
        *(st * d for st, d in zip(sp, dilation)),
    )
    return as_strided(padded, shape=shape, strides=strides_, writeable=False)

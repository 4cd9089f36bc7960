"""Helpers shared by the algorithms: input dilation + padding, window views, chunking."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._process import workspaces
from .._rules import Correlation


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
    or padding leaves most of the plane unread; ``gemm`` and ``scatter`` never build it."""
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


def as_3d(shape: tuple[int, ...], fill: int) -> tuple[int, ...]:
    """Spatial dims padded in front to three (compiled loops run 1-D and 2-D as 3-D)."""
    return (fill,) * (3 - len(shape)) + tuple(shape)


def flat_view(a: np.ndarray, writeable: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(1-D view from a's first element, element strides of all but the last axis), for
    compiled loops that index by hand; a's strides must be non-negative, the last unit.
    Inputs pass ``writeable=False``: numba compiles one kernel per argument type, and a
    read-only array is another type (one specialisation per dtype, not two)."""
    isz = a.itemsize
    span = sum((n - 1) * s for n, s in zip(a.shape, a.strides)) // isz + 1
    writeable = a.flags.writeable if writeable is None else writeable and a.flags.writeable
    flat = as_strided(a, shape=(span,), strides=(isz,), writeable=writeable)
    return flat, np.array([s // isz for s in a.strides[:-1]], dtype=np.int64)


def read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of a (compiled loops' inputs: one argument type, see flat_view)."""
    view = a.view()
    view.flags.writeable = False
    return view


def loop_params(corr: Correlation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low padding, lhs dilation, rhs dilation) per spatial dim, padded in front to three,
    as the int64 arrays the compiled loops take."""
    lows = tuple(lo for lo, _ in corr.padding)
    return tuple(
        np.array(as_3d(tuple(v), fill), dtype=np.int64)
        for v, fill in ((lows, 0), (corr.lhs_dilation, 1), (corr.rhs_dilation, 1))
    )


def unit_rows(a: np.ndarray) -> np.ndarray:
    """a itself if flat_view can index it, else a contiguous copy."""
    if any(s < 0 for s in a.strides) or a.strides[-1] != a.itemsize:
        return np.ascontiguousarray(a)
    return a


def laid_out(slot: str, a: np.ndarray, dtype) -> np.ndarray:
    """a copied C-contiguous, as ``dtype``, into this thread's reused workspace ``slot``
    (filters re-laid for BLAS: a fresh copy of a few MiB each call costs page faults and
    unmapping; measured 3x3-14 winograd 12 -> 8 ms). Read-only use by jobs is fine."""
    out = scratch(slot, a.size, dtype).reshape(a.shape)
    np.copyto(out, a, casting="unsafe")
    return out


SMALL_COPY = 64 * 1024  # a copy of the rhs this small is made whatever the limit


def kernel_share(nbytes: int, limit: int) -> int | None:
    """The workspace limit left once a laid-out copy of the rhs (``nbytes``) is counted
    against it, or None where that copy would take more than half the limit (and more
    than SMALL_COPY): the caller then hands the correlation to ``gemm``, which lays the
    rhs out chunk by chunk (a weight gradient's rhs is the whole grad_output)."""
    return max(1, limit - nbytes) if nbytes <= max(limit // 2, SMALL_COPY) else None


def all_finite(a: np.ndarray, block: int = 2**20) -> bool:
    """``np.isfinite(a).all()`` over blocks of at most ``block`` elements: no boolean
    temporary the size of ``a``, and an early answer at the first inf or NaN."""
    if a.size <= block:
        return bool(np.isfinite(a).all())
    per_row = a.size // a.shape[0]
    if per_row > block:
        return all(all_finite(part, block) for part in a)
    rows = block // per_row
    return all(np.isfinite(a[i : i + rows]).all() for i in range(0, a.shape[0], rows))


def chunk(total: int, per_item: int, budget: int) -> int:
    """How many items (>= 1) of ``per_item`` bytes fit in ``budget`` bytes."""
    return max(1, min(total, budget // max(per_item, 1)))


def result_dtype(lhs: np.ndarray, rhs: np.ndarray) -> np.dtype:
    return np.result_type(lhs, rhs)


def compute_dtype(dtype) -> np.dtype:
    """The dtype BLAS and the compiled loops compute in: float32 and float64 as they are,
    anything else (float16, integers) in float64."""
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.dtype(np.float32), np.dtype(np.float64)) else np.dtype(np.float64)


def prod(values) -> int:
    return math.prod(values)


# ------------------------------------------------------------------ reusable workspaces


def scratch(slot: str, size: int, dtype) -> np.ndarray:
    """A flat workspace of ``size`` elements, reused between calls of this thread.

    Fresh large buffers cost a page fault per 4 KiB on first touch, on every call (about a
    third of a big weight gradient's time); workspaces are therefore kept per thread (so
    concurrent dask threads never share one) and reused, up to ``_process.KEEP_BYTES`` for
    all threads together; a new buffer evicts this thread's least recently used ones to
    fit (the layer that runs now is the one likely to run again; a buffer still in use
    stays valid through its views). ``slot`` names one live buffer of an algorithm: two
    buffers in use at once need two slots. Contents are undefined; never return a
    workspace (or a view of it) as a result.
    """
    return workspaces.get(slot, size, dtype)

"""Padding modes (reflect, replicate, circular) and their adjoints.

A non-zero padding mode is an explicit pad before the correlation. Its gradient
is the pad's adjoint: every padded position that copies input position ``i``
sends its gradient back to ``i`` (the border is "folded back").
"""

from __future__ import annotations

import numpy as np

from ._spec import Pairs

_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def source_index(position: int, size: int, mode: str) -> int:
    """Input index that padded coordinate ``position`` (relative to the input start) copies."""
    if mode == "replicate":
        return min(max(position, 0), size - 1)
    if mode == "circular":
        return position % size
    if mode == "reflect":
        period = 2 * (size - 1)
        if period == 0:
            return 0
        position %= period
        return position if position < size else period - position
    raise ValueError(f"unknown padding mode {mode!r}")


def pad(x: np.ndarray, pads: Pairs, mode: str, out: np.ndarray | None = None) -> np.ndarray:
    """Pad the trailing ``len(pads)`` axes of x by (low, high) per axis in ``mode``, into
    ``out`` (a buffer of the padded shape and x's dtype) where given: the interior copied
    once, then each border row copied from the row it repeats, axis after axis (an axis's
    rows span the padded extent of the axes before it, so corners come out as NumPy's)."""
    width = [(0, 0)] * (x.ndim - len(pads)) + [tuple(p) for p in pads]
    if mode == "zeros":
        return np.pad(x, width)
    if out is None:
        return np.pad(x, width, mode=_NUMPY_MODE[mode])
    lead = x.ndim - len(pads)
    sizes = x.shape[lead:]
    interior = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, sizes))
    out[(Ellipsis, *interior)] = x
    for axis, ((lo, hi), size) in enumerate(zip(pads, sizes)):
        # earlier axes: their whole padded extent; later ones: their interior only
        index = [slice(None)] * axis + [None] + list(interior[axis + 1 :])
        for position in [*range(-lo, 0), *range(size, size + hi)]:
            index[axis] = position + lo
            dst = tuple(index)
            index[axis] = source_index(position, size, mode) + lo
            out[(Ellipsis, *dst)] = out[(Ellipsis, *index)]
    return out


def pad_adjoint(grad: np.ndarray, pads: Pairs, mode: str) -> np.ndarray:
    """Adjoint of :func:`pad`: fold the gradient of the padded array back onto the input.

    grad: (..., *(S + lo + hi)) -> (..., *S), a new array. ``grad`` must be a temporary of
    the caller's: its border is added into its interior in place (one axis after the
    other, each on the interior of the axes before), and the interior copied out once.
    """
    lead = grad.ndim - len(pads)
    view = grad
    for axis_offset, (lo, hi) in enumerate(pads):
        axis = lead + axis_offset
        size = view.shape[axis] - lo - hi
        if mode != "zeros":
            for position in [*range(-lo, 0), *range(size, size + hi)]:
                src = [slice(None)] * view.ndim
                dst = [slice(None)] * view.ndim
                src[axis] = position + lo
                dst[axis] = source_index(position, size, mode) + lo
                view[tuple(dst)] += view[tuple(src)]
        inner = [slice(None)] * view.ndim
        inner[axis] = slice(lo, lo + size)
        view = view[tuple(inner)]
    return view.copy()

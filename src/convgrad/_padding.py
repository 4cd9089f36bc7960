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


def pad(x: np.ndarray, pads: Pairs, mode: str) -> np.ndarray:
    """Pad the trailing ``len(pads)`` axes of x by (low, high) per axis in ``mode``."""
    width = [(0, 0)] * (x.ndim - len(pads)) + [tuple(p) for p in pads]
    if mode == "zeros":
        return np.pad(x, width)
    return np.pad(x, width, mode=_NUMPY_MODE[mode])


def pad_adjoint(grad: np.ndarray, pads: Pairs, mode: str) -> np.ndarray:
    """Adjoint of :func:`pad`: fold the gradient of the padded array back onto the input.

    grad: (..., *(S + lo + hi)) -> (..., *S).
    """
    lead = grad.ndim - len(pads)
    for axis_offset, (lo, hi) in enumerate(pads):
        axis = lead + axis_offset
        size = grad.shape[axis] - lo - hi
        inner = [slice(None)] * grad.ndim
        inner[axis] = slice(lo, lo + size)
        folded = grad[tuple(inner)].copy()
        if mode != "zeros":
            for position in [*range(-lo, 0), *range(size, size + hi)]:
                src = [slice(None)] * grad.ndim
                dst = [slice(None)] * grad.ndim
                src[axis] = position + lo
                dst[axis] = source_index(position, size, mode)
                folded[tuple(dst)] += grad[tuple(src)]
        grad = folded
    return grad

"""Dtypes and values: what the algorithms compute in, and whether an array is finite."""

from __future__ import annotations

import numpy as np


def result_dtype(lhs: np.ndarray, rhs: np.ndarray) -> np.dtype:
    return np.result_type(lhs, rhs)


def compute_dtype(dtype) -> np.dtype:
    """The dtype BLAS and the compiled loops compute in: float32 and float64 as they are,
    anything else (float16, integers) in float64."""
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.dtype(np.float32), np.dtype(np.float64)) else np.dtype(np.float64)


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

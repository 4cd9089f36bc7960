"""Winograd F(2, 3) along every axis: F(2, 3), F(2x2, 3x3) and F(2x2x2, 3x3x3), for
3-tap window-stride-1 correlations in 1, 2 and 3 dims (dilated ones on phases).

4^d multiplications per 2^d outputs instead of 6^d (2.25x fewer than direct in 2-D,
3.4x in 3-D); its float32 error stays near GEMM's (docs/winograd.md). See
``_winograd``.
"""

from __future__ import annotations

from .._rules import Correlation
from . import _winograd

name = "winograd"
TILES = {1: (2,), 2: (2, 2), 3: (2, 2, 2)}  # outputs per tile per axis, by spatial dims
MIXES_TAPS = True  # the transforms mix every tap of a tile (see _primitive.only_samples)


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return _winograd.supports(TILES, lhs_shape, rhs_shape, corr)


def compiled_variant(lhs_shape, rhs_shape, corr: Correlation) -> str:
    """The compiled kernels a call runs (see ``_primitive``): the tile transforms."""
    return "transforms"


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    return _winograd.workspace_bytes(TILES, lhs_shape, rhs_shape, corr, itemsize)


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    return _winograd.counts(TILES, lhs_shape, rhs_shape, corr, itemsize)


def run(lhs, rhs, corr: Correlation, workspace_limit: int):
    """lhs (G, B, C, *S), rhs (G, O, C, 3, ...) -> (G, B, O, *S')."""
    return _winograd.run(TILES, name, lhs, rhs, corr, workspace_limit)

"""Winograd F(2, 3) along every axis: F(2, 3), F(2x2, 3x3) and F(2x2x2, 3x3x3), for
3-tap window-stride-1 correlations in 1, 2 and 3 dims (dilated ones on phases).

4^d multiplications per 2^d outputs instead of 6^d (2.25x fewer than direct in 2-D,
3.4x in 3-D); its float32 error stays near GEMM's (docs/winograd.md). See
``_winograd``.
"""

from __future__ import annotations

from . import _winograd

name = "winograd"
TILES = {1: (2,), 2: (2, 2), 3: (2, 2, 2)}  # outputs per tile per axis, by spatial dims
MIXES_TAPS = True  # the transforms mix every tap of a tile (see _primitive.only_samples)

supports, compiled_variant, workspace_bytes, counts, run = _winograd.entry_points(name, TILES)

"""Winograd with 4 outputs per tile axis: F(4, 3), F(4x4, 3x3) and, in 3-D, F(2x4x4,
3x3x3), for 3-tap window-stride-1 correlations (dilated ones on phases).

36 multiplications per 16 outputs in 2-D instead of 144 (4x fewer than direct, 1.78x
fewer than F(2x2, 3x3)); 144 per 32 in 3-D (6x fewer than direct). Its float32 error is
up to ~10x that of F(2x2, 3x3), within a quarter of the library's float32 tolerance;
F(4x4x4, 3x3x3) is left out: its error reaches 60 % of it (docs/winograd.md). See
``_winograd``.
"""

from __future__ import annotations

from . import _winograd

name = "winograd4"
TILES = {1: (4,), 2: (4, 4), 3: (2, 4, 4)}  # outputs per tile per axis, by spatial dims
MIXES_TAPS = True  # the transforms mix every tap of a tile (see _primitive.only_samples)

supports, compiled_variant, workspace_bytes, counts, run = _winograd.entry_points(name, TILES)

"""Winograd F(2x2, 3x3): 3x3 window-stride-1 correlations with 16 multiplies per 2x2
output tile instead of 36 (2.25x fewer), as 16 GEMMs over channels.

With input tiles d (4x4, overlapping by 2) and filters g (3x3):

    U = G g G^T (16 per (o, c)),  V = B^T d B (16 per (c, tile)),
    M[ab] = U[ab] @ V[ab]  (one (O x C) @ (C x tiles) GEMM per ab, groups batched),
    Y = A^T M A  (2x2 outputs per tile).

Exact in real arithmetic; in floating point the error is a small multiple of GEMM's.
Chunked over B under the workspace limit (V, M and the padded input count).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._rules import Correlation
from ._common import chunk, dilate_and_pad_into, padded_shape, prod, result_dtype

name = "winograd"
G_MAT = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def supports(lhs_shape, rhs_shape, corr: Correlation) -> bool:
    return (
        tuple(rhs_shape[3:]) == (3, 3)
        and corr.window_strides == (1, 1)
        and corr.rhs_dilation == (1, 1)
        and corr.lhs_dilation == (1, 1)
    )


def _tiles(lhs_shape, corr: Correlation):
    out = corr.output_spatial(lhs_shape[3:], (3, 3))
    th, tw = (out[0] + 1) // 2, (out[1] + 1) // 2
    return out, th, tw


def workspace_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Peak bytes for the whole batch: the padded input, its tile grid, ~4 V-sized and 2
    M-sized arrays (the transforms' temporaries)."""
    image, row = _bytes(lhs_shape, rhs_shape, corr, itemsize)
    return lhs_shape[1] * (image + _tiles(lhs_shape, corr)[1] * row)


def _bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> tuple[int, int]:
    """(padded image, one tile row of grid + transforms) bytes for all groups."""
    g, _, c = lhs_shape[:3]
    o = rhs_shape[1]
    _, th, tw = _tiles(lhs_shape, corr)
    image = g * c * prod(padded_shape(lhs_shape[3:], corr)) * itemsize
    row = g * (4 * (2 * tw + 2) * c + 16 * tw * (4 * c + 2 * o)) * itemsize
    return image, row


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: 16 GEMMs of (O x C x B*tiles) and the tile transforms."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    _, th, tw = _tiles(lhs_shape, corr)
    tiles = b * th * tw
    flops = 2.0 * g * 16 * o * c * tiles
    # input transform ~ 12 passes over C x 16 x tiles, output ~ 6 over O x 16 x tiles
    moved = g * tiles * 16 * (12 * c + 6 * o) * itemsize
    return Counts(flops, min(o, c, tiles), bytes=moved, calls=60)


def _bt(d, axis):
    """B^T along ``axis`` (length 4) of d: rows (d0-d2, d1+d2, d2-d1, d1-d3)."""
    t = [np.take(d, i, axis=axis) for i in range(4)]
    return np.stack([t[0] - t[2], t[1] + t[2], t[2] - t[1], t[1] - t[3]], axis=axis)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, H, W), rhs (G, O, C, 3, 3) -> (G, B, O, H', W')."""
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    dtype = result_dtype(lhs, rhs)
    out, th, tw = _tiles(lhs.shape, corr)
    wp = 2 * tw + 2
    isz = dtype.itemsize
    # U[a, b', g, o, c] = (G w G^T)[a, b']
    u = np.einsum("ai,goci j,bj->abgoc".replace(" ", ""), G_MAT, rhs.astype(np.float64), G_MAT)
    u = np.ascontiguousarray(u.reshape(16, g, o, c).astype(dtype))
    image, row = _bytes(lhs.shape, rhs.shape, corr, isz)
    if image + th * row <= workspace_limit:
        b_chunk, band = chunk(b, image + th * row, workspace_limit), th
    else:  # one image at a time, in bands of tile rows
        b_chunk, band = 1, chunk(th, row, workspace_limit - image)
    padded = padded_shape(lhs.shape[3:], corr)
    result = np.empty((g, b, o, *out), dtype=dtype)
    for b0 in range(0, b, b_chunk):
        n = min(b, b0 + b_chunk) - b0
        inner = np.empty((g, n, c, *padded), dtype=dtype)
        dilate_and_pad_into(lhs[:, b0 : b0 + n].astype(dtype, copy=False), corr, inner)
        for r0 in range(0, th, band):
            tr = min(th, r0 + band) - r0
            # rows 2*r0 .. 2*(r0+tr)+2 of the padded input, zero-extended to whole tiles
            grid = np.zeros((g, c, n, 2 * tr + 2, wp), dtype=dtype)
            top, bottom = 2 * r0, min(padded[0], 2 * (r0 + tr) + 2)
            pw = min(padded[1], wp)
            if bottom > top:
                grid[..., : bottom - top, :pw] = inner[..., top:bottom, :pw].transpose(
                    0, 2, 1, 3, 4
                )
            y = _band(grid, u, g, c, o, n, tr, tw)
            rows = min(out[0] - 2 * r0, 2 * tr)
            result[:, b0 : b0 + n, :, 2 * r0 : 2 * r0 + rows] = y[..., :rows, : out[1]]
    return result


def _band(grid, u, g, c, o, n, th, tw):
    """Winograd of one band: grid (G, C, n, 2*th+2, 2*tw+2) -> (G, n, O, 2*th, 2*tw)."""
    s = grid.strides
    # d: (G, C, n, th, tw, 4, 4) overlapping 4x4 tiles with step 2
    d = as_strided(
        grid,
        (g, c, n, th, tw, 4, 4),
        (s[0], s[1], s[2], 2 * s[3], 2 * s[4], s[3], s[4]),
        writeable=False,
    )
    v = _bt(_bt(d, 5), 6)  # (G, C, n, th, tw, 4, 4)
    v = np.ascontiguousarray(v.transpose(5, 6, 0, 1, 2, 3, 4)).reshape(16, g, c, n * th * tw)
    m = np.matmul(u, v)  # (16, G, O, tiles)
    del v
    m = m.reshape(4, 4, g, o, n, th, tw)
    # A^T along a then b: (m0 + m1 + m2, m1 - m2 - m3)
    r = np.stack([m[0] + m[1] + m[2], m[1] - m[2] - m[3]])  # (2, 4, G, O, n, th, tw)
    del m
    y = np.stack([r[:, 0] + r[:, 1] + r[:, 2], r[:, 1] - r[:, 2] - r[:, 3]], axis=1)
    # y[i, j, g, o, n, th, tw] -> (G, n, O, th, i, tw, j)
    return y.transpose(2, 4, 3, 5, 0, 6, 1).reshape(g, n, o, 2 * th, 2 * tw)

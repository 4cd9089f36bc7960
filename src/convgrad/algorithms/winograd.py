"""Winograd F(2x2, 3x3): 3x3 window-stride-1 correlations with 16 multiplies per 2x2
output tile instead of 36 (2.25x fewer), as 16 GEMMs over channels.

With input tiles d (4x4, overlapping by 2) and filters g (3x3):

    U = G g G^T (16 per (o, c)),  V = B^T d B (16 per (c, tile)),
    M[ab] = U[ab] @ V[ab]  (one (O x C) @ (C x tiles) GEMM per ab, groups batched),
    Y = A^T M A  (2x2 outputs per tile).

Exact in real arithmetic; in floating point the error is a small multiple of GEMM's.
Input with inf/NaN goes to ``gemm`` (a tile transform would spread it across the tile).
Chunked over B under the workspace limit (V, M and the padded input count).
"""

from __future__ import annotations

import numpy as np

from .._rules import Correlation
from ._common import chunk, dilate_and_pad_into, padded_shape, result_dtype, scratch

name = "winograd"
G_MAT = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
KRON = np.kron(G_MAT, G_MAT)  # (16, 9): U[ab] = sum_ij G[a, i] G[b, j] w[i, j]


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
    image = g * c * (2 * th + 2) * (2 * tw + 2) * itemsize
    row = g * (6 * (2 * tw + 2) * c + 16 * tw * (2 * c + 2 * o)) * itemsize
    return image, row


def counts(lhs_shape, rhs_shape, corr: Correlation, itemsize: int):
    """Machine-free work: 16 GEMMs of (O x C x B*tiles) and the tile transforms."""
    from .._plan import Counts

    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    _, th, tw = _tiles(lhs_shape, corr)
    tiles = b * th * tw
    flops = 2.0 * g * 16 * o * c * tiles
    # input transform ~ 4 passes over C x 16 x tiles, output ~ 2 over O x 16 x tiles
    moved = g * tiles * 16 * (4 * c + 2 * o) * itemsize
    return Counts(flops, min(o, c, tiles), bytes=moved, calls=60)


def _bt(d, axis):
    """B^T along ``axis`` (length 4) of d: rows (d0-d2, d1+d2, d2-d1, d1-d3)."""
    t = [np.take(d, i, axis=axis) for i in range(4)]
    return np.stack([t[0] - t[2], t[1] + t[2], t[2] - t[1], t[1] - t[3]], axis=axis)


def run(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation, workspace_limit: int) -> np.ndarray:
    """lhs (G, B, C, H, W), rhs (G, O, C, 3, 3) -> (G, B, O, H', W')."""
    if not np.isfinite(lhs).all():  # a tile transform would spread inf/NaN to 2x2 outputs
        from . import gemm

        return gemm.run(lhs, rhs, corr, workspace_limit)
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    dtype = result_dtype(lhs, rhs)
    out, th, tw = _tiles(lhs.shape, corr)
    isz = dtype.itemsize
    # U[ab, g, c, o] = (G w G^T)[a, b] for filter w = rhs[g, o, c]
    taps = np.ascontiguousarray(rhs.astype(dtype, copy=False).transpose(3, 4, 0, 2, 1))
    u = (KRON.astype(dtype) @ taps.reshape(9, -1)).reshape(16, g, c, o)
    image, row = _bytes(lhs.shape, rhs.shape, corr, isz)
    if image + th * row <= workspace_limit:
        b_chunk, band = chunk(b, image + th * row, workspace_limit), th
    else:  # one image at a time, in bands of tile rows
        b_chunk, band = 1, chunk(th, row, workspace_limit - image)
    result = np.empty((g, b, o, *out), dtype=dtype)
    # on this thread with threaded BLAS, not in jobs: with one job per core the NumPy
    # transforms ran 1.5x slower (3x3-14: 14 instead of 9 ms)
    chunks = [(0, b0) for b0 in range(0, b, b_chunk)]
    _run_chunks(lhs, u, corr, result, (b_chunk, band), chunks)
    return result


def _run_chunks(lhs, u, corr: Correlation, result, sizes, chunks):
    """Fill result[:, b0 : b0 + b_chunk] for each (0, b0) of ``chunks``; u (16, G, C, O)."""
    g, b, c = lhs.shape[:3]
    b_chunk, band = sizes
    dtype = result.dtype
    out, th, tw = _tiles(lhs.shape, corr)
    padded = padded_shape(lhs.shape[3:], corr)
    for _, b0 in chunks:
        n = min(b, b0 + b_chunk) - b0
        # channels-last padded input, zero-extended to whole tiles: (G, n, hp, wp, C)
        grid = np.zeros((g, n, 2 * th + 2, 2 * tw + 2, c), dtype=dtype)
        inner = grid[:, :, : padded[0], : padded[1]].transpose(0, 1, 4, 2, 3)
        dilate_and_pad_into(lhs[:, b0 : b0 + n].astype(dtype, copy=False), corr, inner)
        for r0 in range(0, th, band):
            tr = min(th, r0 + band) - r0
            y = _band(grid[:, :, 2 * r0 : 2 * (r0 + tr) + 2], u, tr, tw)
            rows = min(out[0] - 2 * r0, 2 * tr)
            target = result[:, b0 : b0 + n, :, 2 * r0 : 2 * r0 + rows]
            np.copyto(target, y[:, :, :rows, : out[1]].transpose(0, 1, 4, 2, 3))


def _band(grid, u, th, tw):
    """Winograd of one band, channels last: grid (G, n, 2*th+2, 2*tw+2, C), u (16, G, C, O)
    -> y (G, n, 2*th, 2*tw, O). Every elementwise op runs along the channels."""
    g, n, _, _, c = grid.shape
    o = u.shape[-1]
    rows = [grid[:, :, a : a + 2 * th : 2] for a in range(4)]  # (G, n, th, wp, C)
    t = [rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3]]
    tiles = g * n * th * tw
    v = scratch("winograd-v", 16 * tiles * c, grid.dtype).reshape(16, g, n, th, tw, c)
    for a, ta in enumerate(t):
        cols = [ta[:, :, :, b : b + 2 * tw : 2] for b in range(4)]  # (G, n, th, tw, C)
        np.subtract(cols[0], cols[2], out=v[4 * a])
        np.add(cols[1], cols[2], out=v[4 * a + 1])
        np.subtract(cols[2], cols[1], out=v[4 * a + 2])
        np.subtract(cols[1], cols[3], out=v[4 * a + 3])
    del t, rows
    m = scratch("winograd-m", 16 * tiles * o, grid.dtype).reshape(16, g, n * th * tw, o)
    np.matmul(v.reshape(16, g, n * th * tw, c), u, out=m)
    m = m.reshape(4, 4, g, n, th, tw, o)
    # A^T along a: r0 = m0 + m1 + m2, r1 = m1 - m2 - m3 (each (4, G, n, th, tw, O) over b)
    r = scratch("winograd-r", 8 * tiles * o, grid.dtype).reshape(2, 4, g, n, th, tw, o)
    r0, r1 = r
    np.add(m[0], m[1], out=r0)
    r0 += m[2]
    np.subtract(m[1], m[2], out=r1)
    r1 -= m[3]
    y = np.empty((g, n, 2 * th, 2 * tw, o), dtype=grid.dtype)
    for i, r in enumerate((r0, r1)):
        even, odd = y[:, :, i::2, 0::2], y[:, :, i::2, 1::2]  # (G, n, th, tw, O)
        np.add(r[0], r[1], out=even)
        even += r[2]
        np.subtract(r[1], r[2], out=odd)
        odd -= r[3]
    return y

"""Winograd F(m, r) transforms as data: Cook-Toom matrices from interpolation points.

A 1-D correlation of ``m`` outputs with an ``r``-tap filter g from an input tile d of
``alpha = m + r - 1`` samples is

    y = A^T [(G g) * (B^T d)]        A^T (m, alpha), G (alpha, r), B^T (alpha, alpha),

with ``alpha`` multiplications instead of ``m * r``. The matrices come from ``alpha - 1``
finite points p and the point at infinity: ``A^T[i, j] = p_j^i`` and ``G[j, k] = p_j^k``
(Vandermonde rows; infinity's row picks the leading coefficient), and ``B^T`` is the
inverse transpose of the square Vandermonde matrix, computed exactly in rationals. Each
row of ``B^T`` is scaled to coprime integers, and the matching row of ``G`` by the
inverse. In d dimensions the same matrices apply along every axis (tensor products).

Points decide the float32 error. For F(4, 3), ``(0, 1, -1, 1/2, -2)`` (Barabasz et al.,
"Error analysis and improving the accuracy of Winograd convolution", 2020) is 1.6-4.6x
more accurate than ``(0, ±1, ±2)`` or ``(0, ±1, ±1/2)``; measured errors are in
docs/winograd.md and in the tests.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

HALF = Fraction(1, 2)
POINTS = {  # finite interpolation points of F(m, 3); infinity is always added
    2: (0, 1, -1),
    4: (0, 1, -1, HALF, -2),
    6: (0, 1, -1, HALF, -HALF, 2, -2),
}


def _vandermonde(points, columns: int) -> list[list[Fraction]]:
    """Rows (1, p, p^2, ...) for every finite point, then infinity's (0, ..., 0, 1)."""
    rows = [[Fraction(p) ** k for k in range(columns)] for p in points]
    return [*rows, [Fraction(int(k == columns - 1)) for k in range(columns)]]


def _inverse(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """Exact inverse by Gauss-Jordan elimination."""
    n = len(matrix)
    rows = [row[:] + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                f = rows[r][col]
                rows[r] = [a - f * b for a, b in zip(rows[r], rows[col])]
    return [row[n:] for row in rows]


@functools.cache
def cook_toom(m: int, r: int, points: tuple | None = None):
    """(A^T (m, alpha), G (alpha, r), B^T (alpha, alpha)) of F(m, r) as float64 arrays,
    from ``alpha - 1`` finite points (default ``POINTS[m]``) and infinity."""
    alpha = m + r - 1
    points = POINTS[m] if points is None else points
    if len(points) != alpha - 1 or len(set(points)) != alpha - 1:
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} distinct points, got {points}")
    at = [list(col) for col in zip(*_vandermonde(points, m))]
    g = _vandermonde(points, r)
    bt = [list(col) for col in zip(*_inverse(_vandermonde(points, alpha)))]
    for j, row in enumerate(bt):  # B^T rows to coprime integers, G rows by the inverse
        den = math.lcm(*(v.denominator for v in row))
        scale = Fraction(den, math.gcd(*((v * den).numerator for v in row)))
        bt[j] = [v * scale for v in row]
        g[j] = [v / scale for v in g[j]]
    as_array = lambda rows: np.array([[float(v) for v in row] for row in rows])  # noqa: E731
    return as_array(at), as_array(g), as_array(bt)


def sparse_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ptr (rows + 1,), columns, values) of the nonzeros of ``matrix``, row by row, each
    row padded to an even count with a zero term (the compiled loop sums two at a time)."""
    nz = [np.flatnonzero(row) for row in matrix]
    nz = [np.append(c, c[0]) if len(c) % 2 else c for c in nz]  # every row has a nonzero
    ptr = np.concatenate([[0], np.cumsum([len(c) for c in nz])]).astype(np.int64)
    cols = np.concatenate(nz).astype(np.int64)
    vals = [np.where(np.arange(len(c)) < np.count_nonzero(r), r[c], 0) for r, c in zip(matrix, nz)]
    return ptr, cols, np.concatenate(vals)


@dataclass(frozen=True)
class Tiles:
    """F(m_1 x ... x m_d, 3 x ... x 3): outputs ``ms`` per tile along each of d = len(ms)
    spatial axes, laid out for the compiled transform (always three axes: missing leading
    ones are size 1 with identity matrices).

    ``step`` (3,): outputs per tile per axis; ``alpha`` (3,): transformed points per axis;
    ``planes``: prod(alpha), the GEMMs per tile; ``filters`` (planes, 3^d): the filter
    transform, kron(G_1, ..., G_d); ``bt`` and ``at``: per axis ``(ptr (3, R + 1),
    columns (3, Z), values (3, Z))`` of B^T and A^T padded to common sizes.
    """

    ms: tuple[int, ...]

    @property
    def dims(self) -> int:
        return len(self.ms)

    @functools.cached_property
    def alpha(self) -> tuple[int, ...]:
        return (1,) * (3 - self.dims) + tuple(m + 2 for m in self.ms)

    @functools.cached_property
    def step(self) -> tuple[int, ...]:
        return (1,) * (3 - self.dims) + tuple(self.ms)

    @functools.cached_property
    def planes(self) -> int:
        return math.prod(self.alpha)

    @functools.cached_property
    def filters(self) -> np.ndarray:
        return functools.reduce(np.kron, [cook_toom(m, 3)[1] for m in self.ms])

    @functools.cached_property
    def bt(self):
        return self._packed(2)

    @functools.cached_property
    def at(self):
        return self._packed(0)

    def _packed(self, which: int):
        ident = sparse_rows(np.ones((1, 1)))
        axes = [ident] * (3 - self.dims) + [sparse_rows(cook_toom(m, 3)[which]) for m in self.ms]
        rows = max(len(p) for p, _, _ in axes)
        nnz = max(len(c) for _, c, _ in axes)
        ptr = np.zeros((3, rows), np.int64)
        cols = np.zeros((3, nnz), np.int64)
        vals = np.zeros((3, nnz))
        for ax, (p, c, v) in enumerate(axes):
            ptr[ax, : len(p)], cols[ax, : len(c)], vals[ax, : len(v)] = p, c, v
        return ptr, cols, vals

    def terms(self, which: str) -> int:
        """Multiply-adds per tile and channel of the input (``'bt'``) or output (``'at'``)
        transform as the compiled loop does them, axis by axis: each axis's terms (its
        matrix's nonzeros, rows padded to even counts) times the points of the block's
        other axes at that pass."""
        mats = [cook_toom(m, 3)[2 if which == "bt" else 0] for m in self.ms]
        size = [mat.shape[1] for mat in mats]  # block extents, transformed axis by axis
        total = 0
        for ax, mat in enumerate(mats):
            total += math.prod(size) // size[ax] * len(sparse_rows(mat)[1])
            size[ax] = mat.shape[0]
        return total

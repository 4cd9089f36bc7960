"""The compiled loops of Winograd (``_winograd``): a band's input gathered channels-last,
its tiles transformed axis by axis by a matrix given as data, its outputs scattered back
channels-first. Serial ``nogil`` numba functions, one compile per dtype, cached on disk;
each runs inside a job. Indices into flat arrays are unsigned where the loop is hot: a
signed index costs a wraparound test per element (1.6x slower copies).
"""

from __future__ import annotations

import numpy as np

from ._compiled import JIT_OPTIONS, lazy_kernel


@lazy_kernel
def transform(numba):
    """Transform the tiles of a band, axis by axis, with a matrix given as sparse rows: B^T
    from the input grid into the planes (``to_planes``), or A^T from the planes into the
    output grid. The tiles go by lines along x (n_x tiles); every step is a sum of a few
    vectors of a line's n_x * C values (contiguous in both layouts), cut in blocks of
    ``lb`` values that stay in cache.

    ``grid``: (k, G0, G1, E, n_x, C) with E = alpha_x (input) or m_x (output), cell (z, y,
    i, t) holding sample (z, y, t*m_x + i); ``planes``: (P, k*n0*n1*n_x, C), planes ``ps``
    apart; both flat. ``geo`` = (k, n0, n1 tile lines, n_x*C, lb, G0, G1, step (3), alpha
    (3), ps, to_planes); ``ptr`` (3, R + 1), ``cols``, ``vals`` (3, Z): per axis the
    matrix's nonzeros; t1 (alpha_1*alpha_2*lb), t2 (alpha_2*lb): buffers of the partial
    sums. Serial (it runs in a job)."""

    @numba.njit(**dict(JIT_OPTIONS, parallel=False))
    def kernel(grid, planes, geo, ptr, cols, vals, t1, t2):
        k, n0, n1, size, lb, g0, g1 = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6]
        step, alpha = geo[7:10], geo[10:13]
        ps, to_planes = geo[13], geo[14] == 1
        a1, a2 = alpha[1], alpha[2]
        rows = alpha if to_planes else step
        e = a2 if to_planes else step[2]
        gz, gy, gx = g1 * e * size, e * size, size  # grid strides of (z, y, i) in a line
        pz, py, px = a1 * a2 * ps, a2 * ps, ps  # plane strides
        sz, sy, sx = (gz, gy, gx) if to_planes else (pz, py, px)
        dz, dy, dx = (pz, py, px) if to_planes else (gz, gy, gx)
        z_real, y_real = alpha[0] > 1, a1 > 1
        src, dst = (grid, planes) if to_planes else (planes, grid)
        for line in range(k * n0 * n1):
            i1, r = line % n1, line // n1
            i0, kk = r % n0, r // n0
            goff = ((kk * g0 + i0 * step[0]) * g1 + i1 * step[1]) * e * size
            so, do = (goff, line * size) if to_planes else (line * size, goff)
            for l0 in range(0, size, lb):
                nl = min(lb, size - l0)
                for oz in range(rows[0]):
                    for oy in range(rows[1]):
                        for ox in range(rows[2]):
                            # partial sums along z (t1), then y (t2), then x: each
                            # recomputed when the index it depends on moves
                            first = 2 if ox > 0 else (1 if oy > 0 else 0)
                            for level in range(first, 3):
                                if (level == 0 and not z_real) or (level == 1 and not y_real):
                                    continue
                                for v in range(
                                    a1 * a2 if level == 0 else (a2 if level == 1 else 1)
                                ):
                                    if level == 0:
                                        out, d, axis, row = t1, v * lb, 0, oz
                                        into, s, stride = (
                                            src,
                                            so + l0 + v // a2 * sy + v % a2 * sx,
                                            sz,
                                        )
                                    elif level == 1:
                                        out, d, axis, row = t2, v * lb, 1, oy
                                        if z_real:
                                            into, s, stride = t1, v * lb, a2 * lb
                                        else:
                                            into, s, stride = src, so + l0 + v * sx, sy
                                    else:
                                        out, axis, row = dst, 2, ox
                                        d = do + l0 + oz * dz + oy * dy + ox * dx
                                        if y_real:
                                            into, s, stride = t2, 0, lb
                                        else:
                                            into, s, stride = src, so + l0, sx
                                    # out[d : d + nl] = sum of the row's terms, two at a
                                    # time (rows padded to an even count with a zero term):
                                    # zero-based loops over slices, vectorised by LLVM
                                    acc = out[d : d + nl]
                                    q0, q1 = ptr[axis, row], ptr[axis, row + 1]
                                    xs, vx = into[s + cols[axis, q0] * stride :], vals[axis, q0]
                                    ys = into[s + cols[axis, q0 + 1] * stride :]
                                    vy = vals[axis, q0 + 1]
                                    for c in range(nl):
                                        acc[c] = vx * xs[c] + vy * ys[c]
                                    for q in range(q0 + 2, q1, 2):
                                        xs, vx = into[s + cols[axis, q] * stride :], vals[axis, q]
                                        ys = into[s + cols[axis, q + 1] * stride :]
                                        vy = vals[axis, q + 1]
                                        for c in range(nl):
                                            acc[c] += vx * xs[c] + vy * ys[c]

    return kernel


@lazy_kernel
def copy(numba):
    """A band's grid (k, G0, G1, E, n_x, C), flat and channels-last, x expanded by tile
    (cell (z, y, i, t) is sample (z, y, t*m + i) of the band), to or from a channels-first
    array (G, B, C, D, H, W), flat with element strides (G, B, C, D, H) and a unit last
    one. ``into_grid``: from src (channels-first) into dst (the grid), zero where a cell
    is outside src; else from src (the grid) into dst (channels-first), cells outside it
    dropped. ``prm`` = (g, b0, k, C, G0, G1, E, n_x, m, channel block, then per axis
    first, D, offset, bound: see ``_winograd._axis_params``). Serial (it runs in a job)."""

    @numba.njit(**dict(JIT_OPTIONS, parallel=False))
    def kernel(src, dst, strides, prm, into_grid):
        u = np.uint64  # unsigned indices: no wraparound test per element (1.6x faster)
        gi, b0, k, nc, g0, g1, e, nx, m, cb = prm[0:10]
        f0, d0, o0, n0, f1, d1, o1, n1, f2, d2, o2, n2 = prm[10:22]
        sc = u(strides[2])
        at = 0  # the grid's row (kk, gz, gy)
        for kk in range(k):
            for gz in range(g0):
                z = (f0 + gz) * d0 + o0
                for gy in range(g1):
                    y = (f1 + gy) * d1 + o1
                    if z < 0 or z >= n0 or y < 0 or y >= n1:
                        if into_grid:
                            for j in range(e * nx * nc):
                                dst[u(at + j)] = 0
                        at += e * nx * nc
                        continue
                    row = gi * strides[0] + (b0 + kk) * strides[1] + z * strides[3]
                    row += y * strides[4]
                    for c0 in range(0, nc, cb):  # a block of channels: cb lines at once
                        nb = u(min(cb, nc - c0))
                        for t in range(nx):
                            cell = at + t * nc + c0
                            for i in range(e):
                                x = (f2 + i + m * t) * d2 + o2
                                line = u(row + c0 * strides[2] + x)
                                inside = 0 <= x < n2
                                if into_grid and inside:
                                    for c in range(nb):
                                        dst[u(cell) + c] = src[line + c * sc]
                                elif into_grid:
                                    for c in range(nb):
                                        dst[u(cell) + c] = 0
                                elif inside:
                                    for c in range(nb):
                                        dst[line + c * sc] = src[u(cell) + c]
                                cell += nx * nc
                    at += e * nx * nc

    return kernel

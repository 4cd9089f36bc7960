"""The slow textbook definition of convolution and its gradients, in float64.

Independent of the library's primitive (it shares no code with it): explicit
padding, then one loop over kernel taps with ``np.einsum``. Gradients are the
adjoint of that same loop (scatter instead of gather), and the padding-mode
adjoint uses ``np.add.at`` on explicit index maps. Used by the tests and by the
``convgrad demo`` command to show the largest difference.
"""

from __future__ import annotations

import itertools

import numpy as np

_NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _tuple(v, nd):
    return (v,) * nd if isinstance(v, int) else tuple(v)


def resolve_padding(padding, in_spatial, kernel, stride, dilation):
    """(low, high) per dim for any padding form, 'same' with the odd pixel at the end,
    'full' with d*(k-1) on both sides (every overlap of input and dilated kernel)."""
    nd = len(kernel)
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "full":
        return [(d * (k - 1), d * (k - 1)) for k, d in zip(kernel, dilation)]
    if padding == "same":
        pairs = []
        for n, k, s, d in zip(in_spatial, kernel, stride, dilation):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            pairs.append((total // 2, total - total // 2))
        return pairs
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def _index_map(n, lo, hi, mode):
    """Source index in [0, n) of every padded position, or -1 for a zero."""
    pos = np.arange(-lo, n + hi)
    if mode == "zeros":
        return np.where((pos >= 0) & (pos < n), pos, -1)
    if mode == "replicate":
        return np.clip(pos, 0, n - 1)
    if mode == "circular":
        return pos % n
    period = 2 * (n - 1)
    r = pos % period if period else pos * 0
    return np.where(r < n, r, period - r)


def _pad_matrix(n, lo, hi, mode):
    """(n + lo + hi, n) 0/1 matrix P with padded = P @ x along one axis."""
    idx = _index_map(n, lo, hi, mode)
    mat = np.zeros((len(idx), n))
    rows = np.nonzero(idx >= 0)[0]
    np.add.at(mat, (rows, idx[rows]), 1.0)
    return mat


def _pad(x, pads, mode):
    for axis, (lo, hi) in enumerate(pads):
        mat = _pad_matrix(x.shape[2 + axis], lo, hi, mode)
        x = np.moveaxis(np.tensordot(x, mat, axes=([2 + axis], [1])), -1, 2 + axis)
    return x


def _unpad(g, pads, in_spatial, mode):
    for axis, (lo, hi) in enumerate(pads):
        mat = _pad_matrix(in_spatial[axis], lo, hi, mode)
        g = np.moveaxis(np.tensordot(g, mat, axes=([2 + axis], [0])), -1, 2 + axis)
    return g


def _setup(x_shape, w_shape, stride, padding, dilation):
    nd = len(w_shape) - 2
    stride, dilation = _tuple(stride, nd), _tuple(dilation, nd)
    kernel = tuple(w_shape[2:])
    pads = resolve_padding(padding, x_shape[2:], kernel, stride, dilation)
    padded = [n + lo + hi for n, (lo, hi) in zip(x_shape[2:], pads)]
    out = [(p - d * (k - 1) - 1) // s + 1 for p, k, s, d in zip(padded, kernel, stride, dilation)]
    return nd, stride, dilation, kernel, pads, out


def _tap_slices(tap, stride, dilation, out):
    return tuple(
        slice(j * d, j * d + (o - 1) * s + 1, s) for j, s, d, o in zip(tap, stride, dilation, out)
    )


def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """x (N, C, *S), w (K, C/g, *k) -> (N, K, *S_out), float64, batched input only."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd, stride, dilation, kernel, pads, out = _setup(x.shape, w.shape, stride, padding, dilation)
    xp = _pad(x, pads, padding_mode)
    n, c = x.shape[:2]
    k = w.shape[0]
    cg, kg = c // groups, k // groups
    y = np.zeros((n, k, *out))
    for g in range(groups):
        xs = xp[:, g * cg : (g + 1) * cg]
        ws = w[g * kg : (g + 1) * kg]
        for tap in itertools.product(*[range(t) for t in kernel]):
            window = xs[(slice(None), slice(None), *_tap_slices(tap, stride, dilation, out))]
            y[:, g * kg : (g + 1) * kg] += np.einsum(
                "nc...,kc->nk...", window, ws[(Ellipsis, *tap)]
            )
    if b is not None:
        y += np.asarray(b, np.float64).reshape(-1, *(1,) * nd)
    return y


def conv_grads(x, w, gy, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """(dx, dw, db) of ``conv`` for output gradient gy, by the adjoint of its tap loop."""
    x, w, gy = (np.asarray(a, np.float64) for a in (x, w, gy))
    nd, stride, dilation, kernel, pads, out = _setup(x.shape, w.shape, stride, padding, dilation)
    xp = _pad(x, pads, padding_mode)
    n, c = x.shape[:2]
    k = w.shape[0]
    cg, kg = c // groups, k // groups
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for g in range(groups):
        cs, ks = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        for tap in itertools.product(*[range(t) for t in kernel]):
            sl = (slice(None), cs, *_tap_slices(tap, stride, dilation, out))
            gxp[sl] += np.einsum("nk...,kc->nc...", gy[:, ks], w[(ks, slice(None), *tap)])
            gw[(ks, slice(None), *tap)] += np.tensordot(
                gy[:, ks], xp[sl], axes=([0, *range(2, 2 + nd)], [0, *range(2, 2 + nd)])
            )
    gx = _unpad(gxp, pads, x.shape[2:], padding_mode)
    return gx, gw, gy.sum(axis=(0, *range(2, gy.ndim)))


def conv_transpose(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Direct scatter definition: y[n, k, i*s - p + j*d] += x[n, c, i] * w[c, k, j]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd = w.ndim - 2
    stride, dilation = _tuple(stride, nd), _tuple(dilation, nd)
    padding, output_padding = _tuple(padding, nd), _tuple(output_padding, nd)
    kernel = w.shape[2:]
    n, c = x.shape[:2]
    kg = w.shape[1]
    cg = c // groups
    full = [
        (i - 1) * s + d * (k - 1) + 1 + op
        for i, s, d, k, op in zip(x.shape[2:], stride, dilation, kernel, output_padding)
    ]
    y = np.zeros((n, kg * groups, *full))
    for g in range(groups):
        cs, ks = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        for tap in itertools.product(*[range(t) for t in kernel]):
            sl = (slice(None), ks, *_tap_slices(tap, stride, dilation, x.shape[2:]))
            y[sl] += np.einsum("nc...,ck->nk...", x[:, cs], w[(cs, slice(None), *tap)])
    crop = tuple(slice(p, f - p) for p, f in zip(padding, full))
    y = y[(slice(None), slice(None), *crop)]
    if b is not None:
        y = y + np.asarray(b, np.float64).reshape(-1, *(1,) * nd)
    return y

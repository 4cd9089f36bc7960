"""The slow textbook definition of convolution and its gradients, in float64.

Independent of the library's primitive (it shares no code with it): one loop over
kernel taps with ``np.einsum`` over the input samples each tap meets. Zero padding
is never built nor multiplied (an inf or NaN reaches exactly the outputs that meet
it on a sample, and huge paddings cost nothing); the other padding modes pad
explicitly by index maps. Gradients are the adjoint of that same loop (scatter
instead of gather), and the padding-mode adjoint uses ``np.add.at`` on the index maps. Used by the tests and by the
``convgrad demo`` command to show the largest difference.
"""

from __future__ import annotations

import itertools

import numpy as np


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
    """Source index in [0, n) of every padded position (a non-zero padding mode)."""
    pos = np.arange(-lo, n + hi)
    if mode == "replicate":
        return np.clip(pos, 0, n - 1)
    if mode == "circular":
        return pos % n
    period = 2 * (n - 1)
    r = pos % period if period else pos * 0
    return np.where(r < n, r, period - r)


def _pad(x, pads, mode):
    """x padded in a non-zero mode: every padded position a copy of an input sample."""
    for axis, (lo, hi) in enumerate(pads):
        x = np.take(x, _index_map(x.shape[2 + axis], lo, hi, mode), axis=2 + axis)
    return x


def _unpad(g, pads, in_spatial, mode):
    """Adjoint of ``_pad``: each padded position's gradient added to the sample it copies."""
    for axis, (lo, hi) in enumerate(pads):
        idx = _index_map(in_spatial[axis], lo, hi, mode)
        moved = np.moveaxis(g, 2 + axis, 0)
        folded = np.zeros((in_spatial[axis], *moved.shape[1:]))
        np.add.at(folded, idx, moved)
        g = np.moveaxis(folded, 0, 2 + axis)
    return g


def _setup(x_shape, w_shape, stride, padding, dilation):
    nd = len(w_shape) - 2
    stride, dilation = _tuple(stride, nd), _tuple(dilation, nd)
    kernel = tuple(w_shape[2:])
    pads = resolve_padding(padding, x_shape[2:], kernel, stride, dilation)
    padded = [n + lo + hi for n, (lo, hi) in zip(x_shape[2:], pads)]
    out = [(p - d * (k - 1) - 1) // s + 1 for p, k, s, d in zip(padded, kernel, stride, dilation)]
    return nd, stride, dilation, kernel, pads, out


def _reach(count, size, step, offset):
    """(first, last) of the i in [0, count) with 0 <= i*step + offset < size, or None."""
    first = max(0, -(offset // step))
    last = min(count - 1, (size - 1 - offset) // step)
    return (first, last) if first <= last else None


def _tap(tap, stride, dilation, pads, in_spatial, out):
    """(input slices, output slices) of the samples one kernel tap multiplies: output i
    reads input i*s + j*d - lo, where that is inside the input. Zero padding is never
    multiplied (an inf or NaN weight reaches only outputs that meet a sample with it);
    None if the tap meets no sample."""
    src, dst = [], []
    for j, s, d, (lo, _), size, n in zip(tap, stride, dilation, pads, in_spatial, out):
        reach = _reach(n, size, s, j * d - lo)
        if reach is None:
            return None
        first, last = reach
        dst.append(slice(first, last + 1))
        src.append(slice(first * s + j * d - lo, last * s + j * d - lo + 1, s))
    return tuple(src), tuple(dst)


def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """x (N, C, *S), w (K, C/g, *k) -> (N, K, *S_out), float64, batched input only."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd, stride, dilation, kernel, pads, out = _setup(x.shape, w.shape, stride, padding, dilation)
    if padding_mode != "zeros":
        x, pads = _pad(x, pads, padding_mode), [(0, 0)] * nd
    n, c = x.shape[:2]
    k = w.shape[0]
    cg, kg = c // groups, k // groups
    y = np.zeros((n, k, *out))
    for g in range(groups):
        cs, ks = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        for tap in itertools.product(*[range(t) for t in kernel]):
            where = _tap(tap, stride, dilation, pads, x.shape[2:], out)
            if where is None:
                continue
            src, dst = where
            y[(slice(None), ks, *dst)] += np.einsum(
                "nc...,kc->nk...", x[(slice(None), cs, *src)], w[(ks, slice(None), *tap)]
            )
    if b is not None:
        y += np.asarray(b, np.float64).reshape(-1, *(1,) * nd)
    return y


def conv_grads(x, w, gy, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """(dx, dw, db) of ``conv`` for output gradient gy, by the adjoint of its tap loop."""
    x, w, gy = (np.asarray(a, np.float64) for a in (x, w, gy))
    nd, stride, dilation, kernel, pads, out = _setup(x.shape, w.shape, stride, padding, dilation)
    xp = x
    if padding_mode != "zeros":
        xp, pads_used = _pad(x, pads, padding_mode), [(0, 0)] * nd
    else:
        pads_used = pads
    n, c = x.shape[:2]
    k = w.shape[0]
    cg, kg = c // groups, k // groups
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for g in range(groups):
        cs, ks = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        for tap in itertools.product(*[range(t) for t in kernel]):
            where = _tap(tap, stride, dilation, pads_used, xp.shape[2:], out)
            if where is None:
                continue
            src, dst = where
            go = gy[(slice(None), ks, *dst)]
            gxp[(slice(None), cs, *src)] += np.einsum(
                "nk...,kc->nc...", go, w[(ks, slice(None), *tap)]
            )
            gw[(ks, slice(None), *tap)] += np.tensordot(
                go,
                xp[(slice(None), cs, *src)],
                axes=([0, *range(2, 2 + nd)], [0, *range(2, 2 + nd)]),
            )
    gx = gxp if padding_mode == "zeros" else _unpad(gxp, pads, x.shape[2:], padding_mode)
    return gx, gw, gy.sum(axis=(0, *range(2, gy.ndim)))


def conv_transpose(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Direct scatter definition: y[n, k, i*s - p + j*d] += x[n, c, i] * w[c, k, j], kept
    where that position is inside the output."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd = w.ndim - 2
    stride, dilation = _tuple(stride, nd), _tuple(dilation, nd)
    padding, output_padding = _tuple(padding, nd), _tuple(output_padding, nd)
    kernel = w.shape[2:]
    n, c = x.shape[:2]
    kg = w.shape[1]
    cg = c // groups
    out = [
        (i - 1) * s + d * (k - 1) + 1 + op - 2 * p
        for i, s, d, k, op, p in zip(x.shape[2:], stride, dilation, kernel, output_padding, padding)
    ]
    y = np.zeros((n, kg * groups, *out))
    for g in range(groups):
        cs, ks = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        for tap in itertools.product(*[range(t) for t in kernel]):
            src, dst = [], []
            for j, s, d, p, size, m in zip(tap, stride, dilation, padding, x.shape[2:], out):
                reach = _reach(size, m, s, j * d - p)  # input i lands at i*s + j*d - p
                if reach is None:
                    break
                first, last = reach
                src.append(slice(first, last + 1))
                dst.append(slice(first * s + j * d - p, last * s + j * d - p + 1, s))
            else:
                y[(slice(None), ks, *dst)] += np.einsum(
                    "nc...,ck->nk...", x[(slice(None), cs, *src)], w[(cs, slice(None), *tap)]
                )
    if b is not None:
        y = y + np.asarray(b, np.float64).reshape(-1, *(1,) * nd)
    return y

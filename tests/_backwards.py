"""Hand-written 2-D convolution backward passes for grading by ``convgrad.check``.

Independent of convgrad (NumPy only). ``scatter_backward`` is the adjoint of the forward
loop over kernel taps; ``conv_style_backward`` writes each gradient as a convolution (the
textbook way: dE/dX a full convolution with flipped filters, dE/dW X correlated with dE/dO).
Keyword flags plant the classic mistakes.
"""

from __future__ import annotations

import numpy as np


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def scatter_backward(
    x,
    w,
    gy,
    stride,
    padding,
    dilation,
    groups,
    *,
    ignore_stride=False,
    ignore_groups=False,
    overwrite_batch=False,
):
    (sh, sw), (ph, pw), (dh, dw_) = _pair(stride), _pair(padding), _pair(dilation)
    if ignore_stride:
        sh = sw = 1
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    kg = k // groups
    ho, wo = gy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for g in range(groups):
        cs = slice(0, cg) if ignore_groups else slice(g * cg, (g + 1) * cg)
        ks = slice(g * kg, (g + 1) * kg)
        for i in range(r):
            for j in range(s):
                rows = slice(i * dh, i * dh + (ho - 1) * sh + 1, sh)
                cols = slice(j * dw_, j * dw_ + (wo - 1) * sw + 1, sw)
                window = xp[:, cs, rows, cols]
                if overwrite_batch:
                    for b in range(n):  # '=' where '+=' was meant: keeps the last sample only
                        dw[ks, :, i, j] = np.einsum("khw,chw->kc", gy[b, ks], window[b])
                else:
                    dw[ks, :, i, j] += np.einsum("nkhw,nchw->kc", gy[:, ks], window)
                dxp[:, cs, rows, cols] += np.einsum("nkhw,kc->nchw", gy[:, ks], w[ks, :, i, j])
    dx = dxp[:, :, ph : ph + h, pw : pw + wd]
    return dx, dw, gy.sum(axis=(0, 2, 3))


def _corr2d(a, b):
    """Valid cross-correlation of 2-D arrays a (P, Q) and b (R, S) -> (P-R+1, Q-S+1)."""
    p, q = a.shape
    r, s = b.shape
    out = np.zeros((p - r + 1, q - s + 1))
    for i in range(r):
        for j in range(s):
            out += b[i, j] * a[i : i + p - r + 1, j : j + q - s + 1]
    return out


def _spread(a, sh, sw):
    """Insert s-1 zeros between samples of a 2-D array."""
    out = np.zeros(((a.shape[0] - 1) * sh + 1, (a.shape[1] - 1) * sw + 1))
    out[::sh, ::sw] = a
    return out


def conv_style_backward(
    x,
    w,
    gy,
    stride,
    padding,
    dilation,
    groups,
    *,
    no_flip=False,
    pad_off_by_one=False,
    no_remainder=False,
):
    (sh, sw), (ph, pw), (dh, dw_) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    kg = k // groups
    re, se = dh * (r - 1) + 1, dw_ * (s - 1) + 1  # dilated kernel extent
    hp, wp = h + 2 * ph, wd + 2 * pw
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dx = [[None] * c for _ in range(n)]
    dw = np.zeros_like(w)
    for b in range(n):
        for co in range(c):
            g = co // cg
            acc = None if no_remainder else np.zeros((hp, wp))
            for ko in range(g * kg, (g + 1) * kg):
                kernel = _spread(w[ko, co - g * cg], dh, dw_)
                if not no_flip:
                    kernel = kernel[::-1, ::-1]
                d = _spread(gy[b, ko], sh, sw)
                lo_h, lo_w = re - 1, se - 1
                if pad_off_by_one:  # k - p instead of k - 1 - p once there is padding
                    lo_h, lo_w = lo_h + (ph > 0), lo_w + (pw > 0)
                full = _corr2d(np.pad(d, ((lo_h, re - 1), (lo_w, se - 1))), kernel)
                if no_remainder:  # forgets the rows the stride never reached
                    acc = full if acc is None else acc + full
                else:  # those rows keep a zero gradient
                    acc[: full.shape[0], : full.shape[1]] += full[:hp, :wp]
            dx[b][co] = acc[ph : ph + h, pw : pw + wd]
            for ko in range(g * kg, (g + 1) * kg):
                d = _spread(gy[b, ko], sh, sw)
                corr = _corr2d(xp[b, co], d)  # tap (i, j) of dW reads corr[i*dh, j*dw]
                dw[ko, co - g * cg] += corr[: (r - 1) * dh + 1 : dh, : (s - 1) * dw_ + 1 : dw_]
    return np.array(dx), dw, gy.sum(axis=(0, 2, 3))

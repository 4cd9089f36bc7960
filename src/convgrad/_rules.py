"""Rules as data: each pass of a convolution as one generalised correlation.

Pure, shape-only functions. ``functional`` runs these steps and ``explain``
renders the same objects, so the explanation cannot drift from the code.

With k_eff = d(k-1)+1, out_dil = (out-1)s+1 per spatial dim and forward
padding (lo, hi):

* forward  y  = x ⋆ w                strides s, rhs dilation d, padding (lo, hi)
* input    dx = dil_s(dy) ⋆ flip(wᵀ) strides 1, lhs dilation s, rhs dilation d,
                                     padding (k_eff-lo-1, in+k_eff-1-out_dil-(k_eff-lo-1))
* weight   dw = xᵀ ⋆ dyᵀ             strides d, rhs dilation s,
                                     padding (lo, out_dil-in+k_eff-lo-1); N is summed
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._spec import ConvSpec, Pairs


@dataclass(frozen=True)
class Correlation:
    """Parameters of ``correlate(lhs (G,B,C,*S), rhs (G,O,C,*K)) -> (G,B,O,*S')``.

    Output length per dim: ((S-1)*lhs_dilation + 1 + lo + hi - rhs_dilation*(K-1) - 1)
    // window_stride + 1. Negative padding crops. Frozen and hashable: it doubles as a
    cache key for planning.
    """

    window_strides: tuple[int, ...]
    padding: Pairs
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]

    def output_spatial(self, lhs_spatial: tuple[int, ...], rhs_spatial: tuple[int, ...]):
        return tuple(
            ((s - 1) * ld + 1 + lo + hi - rd * (k - 1) - 1) // ws + 1
            for s, k, ws, (lo, hi), ld, rd in zip(
                lhs_spatial,
                rhs_spatial,
                self.window_strides,
                self.padding,
                self.lhs_dilation,
                self.rhs_dilation,
            )
        )


def zero_padded(spec: ConvSpec) -> ConvSpec:
    """The spec seen by the correlation once a non-zero padding mode is applied explicitly."""
    if spec.padding_mode == "zeros":
        return spec
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spec.in_spatial, spec.pads))
    return replace(spec, in_spatial=padded, pads=((0, 0),) * spec.nd, padding_mode="zeros")


def forward(spec: ConvSpec) -> Correlation:
    """y = x ⋆ w: lhs x (g, N, C/g, *S), rhs w (g, K/g, C/g, *k)."""
    ones = (1,) * spec.nd
    return Correlation(spec.stride, spec.pads, ones, spec.dilation)


def input_grad(spec: ConvSpec) -> Correlation:
    """dx = dilate_s(dy) ⋆ flip(w) with in/out swapped: lhs dy (g, N, K/g, *S_out),
    rhs flip(w) (g, C/g, K/g, *k)."""
    pads = []
    for size, out, k_eff, s, (lo, _) in zip(
        spec.in_spatial, spec.out_spatial, spec.effective_kernel, spec.stride, spec.pads
    ):
        low = k_eff - lo - 1
        pads.append((low, size + k_eff - 1 - ((out - 1) * s + 1) - low))
    return Correlation((1,) * spec.nd, tuple(pads), spec.stride, spec.dilation)


def weight_grad(spec: ConvSpec) -> Correlation:
    """dw[k, c] = sum_n x[n, c] ⋆ dy[n, k]: lhs x with N<->C (g, C/g, N, *S),
    rhs dy with N<->C (g, K/g, N, *S_out); output (g, C/g, K/g, *k)."""
    pads = []
    for size, out, k_eff, s, (lo, _) in zip(
        spec.in_spatial, spec.out_spatial, spec.effective_kernel, spec.stride, spec.pads
    ):
        pads.append((lo, (out - 1) * s + 1 - size + k_eff - lo - 1))
    return Correlation(spec.dilation, tuple(pads), (1,) * spec.nd, spec.stride)

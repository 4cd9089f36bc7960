"""Each pass of a layer as the correlation convgrad runs, for :func:`convgrad.explain`.

Built from :mod:`convgrad._rules` (the same Correlation objects the functions run) and the
algorithm registry (its choice and workspace), so the explanation cannot drift from the code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from . import _primitive, _rules
from ._explain_text import _pad_text, _remainders, _x
from ._rules import Correlation
from ._spec import ConvSpec


@dataclass(frozen=True)
class Pass:
    """One pass of the layer as the correlation convgrad runs.

    ``lhs_shape`` (G, B, C, *S) ⋆ ``rhs_shape`` (G, O, C, *K) -> ``out_shape`` (G, B, O, *S'),
    with parameters ``corr``; ``result_shape`` is the result in the user's layout. ``gemm`` is
    the im2col product per group: (G, rows, depth, cols) meaning G × [rows × depth]·[depth ×
    cols]. ``macs`` counts the multiply-adds of the definition; ``gemm_macs`` those of the
    im2col product (which also multiplies the zeros a stride-dilated operand carries).
    """

    name: str
    title: str
    equation: str
    lhs: str
    rhs: str
    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    result_shape: tuple[int, ...]
    corr: Correlation
    slides: str
    summed: str
    flipped: bool
    notes: tuple[str, ...]
    gemm: tuple[int, int, int, int]
    macs: int
    gemm_macs: int
    workspace_bytes: int
    algorithm: str
    padded_bytes: int = 0

    @property
    def gemm_text(self) -> str:
        g, rows, depth, cols = self.gemm
        return f"{g} × [{rows} × {depth}] · [{depth} × {cols}] -> {g} × [{rows} × {cols}]"

    def corr_text(self) -> str:
        c = self.corr
        return (
            f"window strides {c.window_strides}, padding {c.padding}, "
            f"lhs dilation {c.lhs_dilation}, rhs dilation {c.rhs_dilation}"
        )


class _How(NamedTuple):
    """How the passes run: the item size of the compute dtype and the algorithm option."""

    itemsize: int
    algorithm: str


def _gemm(lhs_shape, rhs_shape, out_shape) -> tuple[int, int, int, int]:
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    return (g, o, c * math.prod(rhs_shape[3:]), b * math.prod(out_shape[3:]))


def _algorithm_module(algorithm: str):
    from .algorithms import REGISTRY

    return REGISTRY[algorithm]


def _workspace(algorithm: str, lhs_shape, rhs_shape, corr, itemsize) -> int:
    from .algorithms import gemm

    fn = getattr(_algorithm_module(algorithm), "workspace_bytes", gemm.workspace_bytes)
    return int(fn(lhs_shape, rhs_shape, corr, itemsize))


def _make_pass(
    name,
    title,
    equation,
    lhs,
    rhs,
    lhs_shape,
    rhs_shape,
    corr,
    result_shape,
    slides,
    summed,
    flipped,
    notes,
    macs,
    how: _How,
) -> Pass:
    out_spatial = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    out_shape = (lhs_shape[0], lhs_shape[1], rhs_shape[1], *out_spatial)
    itemsize, algorithm = how
    if algorithm == "auto":
        algorithm = _primitive.choose(lhs_shape, rhs_shape, corr, itemsize)
    elif not _algorithm_module(algorithm).supports(lhs_shape, rhs_shape, corr):
        raise ValueError(f"algorithm {algorithm!r} does not support the {name} pass of this layer")
    gemm = _gemm(lhs_shape, rhs_shape, out_shape)
    return Pass(
        name=name,
        title=title,
        equation=equation,
        lhs=lhs,
        rhs=rhs,
        lhs_shape=tuple(lhs_shape),
        rhs_shape=tuple(rhs_shape),
        out_shape=out_shape,
        result_shape=tuple(result_shape),
        corr=corr,
        slides=slides,
        summed=summed,
        flipped=flipped,
        notes=tuple(notes),
        gemm=gemm,
        macs=int(macs),
        gemm_macs=int(gemm[0] * gemm[1] * gemm[2] * gemm[3]),
        workspace_bytes=_workspace(algorithm, lhs_shape, rhs_shape, corr, itemsize),
        algorithm=algorithm,
        padded_bytes=_padded_bytes(lhs_shape, rhs_shape, corr, itemsize),
    )


def _padded_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the zero-padded, stride-spread copy of lhs (0 when none is needed); where
    that copy would dwarf the columns, gemm copies lhs with one zero per dim instead."""
    from .algorithms._common import padding_bounded

    if all(ld == 1 for ld in corr.lhs_dilation) and all(p == (0, 0) for p in corr.padding):
        return 0
    if not padding_bounded(lhs_shape, rhs_shape, corr):
        return math.prod(lhs_shape[:3]) * math.prod(s + 1 for s in lhs_shape[3:]) * itemsize
    spatial = [
        max((s - 1) * ld + 1 + lo + hi, 0)
        for s, ld, (lo, hi) in zip(lhs_shape[3:], corr.lhs_dilation, corr.padding)
    ]
    return math.prod(lhs_shape[:3]) * math.prod(spatial) * itemsize


def _defined_macs(spec: ConvSpec) -> int:
    """Multiply-adds of the definition: N·K·(C/g)·∏k·∏out (the same for all three passes)."""
    return (
        spec.batch
        * spec.out_channels
        * (spec.in_channels // spec.groups)
        * math.prod(spec.kernel)
        * math.prod(spec.out_spatial)
    )


def _dilated(values) -> str:
    return "adjacent" if all(v == 1 for v in values) else f"{values} apart"


def _conv_passes(spec: ConvSpec, how: _How) -> dict[str, Pass]:
    g, n = spec.groups, spec.batch
    cg, kg = spec.in_channels // g, spec.out_channels // g
    inner = _rules.zero_padded(spec)
    s_in, s_out, k = inner.in_spatial, spec.out_spatial, spec.kernel
    st, dil = spec.stride, spec.dilation
    macs = _defined_macs(spec)
    grp = f" of k's group ({cg} of {spec.in_channels})" if g > 1 else f" ({cg})"
    grp_k = f" of c's group ({kg} of {spec.out_channels})" if g > 1 else f" ({kg})"
    mode = (
        f"; X is first padded in '{spec.padding_mode}' mode" if spec.padding_mode != "zeros" else ""
    )
    stride_txt = "1" if all(v == 1 for v in st) else str(st)

    fwd = _rules.forward(inner)
    forward = _make_pass(
        "forward",
        "Forward: O = X ⋆ F + b",
        "O[n, k] = b[k] + Σ_c X[n, c] ⋆ F[k, c]",
        "X",
        "F",
        (g, n, cg, *s_in),
        (g, kg, cg, *k),
        fwd,
        spec.output_shape,
        f"each filter F[k] ({_x(k)}, taps {_dilated(dil)}) slides over the padded X[n] "
        f"(padding {_pad_text(fwd.padding)}{mode}) in steps of {stride_txt}",
        f"c over the input channels{grp}, and the {math.prod(k)} kernel taps",
        False,
        [],
        macs,
        how,
    )

    dx = _rules.input_grad(inner)
    rems = _remainders(spec)
    notes = [
        "a 'full' correlation: the padding k_eff − 1 − low per side lets every tap of the "
        "flipped filter reach every input position",
    ]
    if any(v > 1 for v in st):
        notes.append(
            f"stride {st}: dE/dO is spread out first, with s − 1 zeros between its samples "
            "(lhs dilation), so each gradient lands where its window started"
        )
    if any(rems):
        notes.append(
            f"the stride does not divide: rows never read by the forward pass ({rems} per dim) "
            "get a zero gradient; the high padding shrinks to keep dE/dX the size of X"
        )
    if spec.padding_mode != "zeros":
        notes.append(
            f"then the '{spec.padding_mode}' pad's adjoint folds the border gradient back onto X"
        )
    input_grad = _make_pass(
        "input_grad",
        "dE/dX: the full correlation of dE/dO with the flipped filters",
        "dE/dX[n, c] = Σ_k dilate_s(dE/dO[n, k]) ⋆ flip(F[k, c])",
        "dE/dO",
        "flip(F)ᵀ",
        (g, n, kg, *s_out),
        (g, cg, kg, *k),
        dx,
        spec.input_shape,
        f"each flipped filter flip(F[:, c]) ({_x(k)}, taps {_dilated(dil)}) slides in steps of 1 "
        f"over dE/dO[n] spread by the stride {st} and padded {_pad_text(dx.padding)}",
        f"k over the output channels{grp_k}, and the kernel taps; "
        "F is used with its in/out axes swapped (C/g filters of depth K/g)",
        True,
        notes,
        macs,
        how,
    )

    dw = _rules.weight_grad(inner)
    notes = [f"no sum over channels: one correlation per pair (k, c), {kg * cg * g} pairs in all"]
    if any(v > 1 for v in st):
        notes.append(
            f"stride {st}: dE/dO is the sliding window, its taps spread out by the stride "
            "(rhs dilation) — the zeros are skipped, never multiplied"
        )
    if any(v > 1 for v in dil):
        notes.append(
            f"dilation {dil}: the window moves in steps of d over X, one step per filter tap"
        )
    weight_grad = _make_pass(
        "weight_grad",
        "dE/dF: each input channel correlated with each output-gradient map",
        "dE/dF[k, c] = Σ_n X[n, c] ⋆ dilate_s(dE/dO[n, k])",
        "Xᵀ",
        "dE/dOᵀ",
        (g, cg, n, *s_in),
        (g, kg, n, *s_out),
        dw,
        spec.weight_shape,
        f"the output-gradient map dE/dO[n, k] ({_x(s_out)}, taps {_dilated(st)}) slides as the "
        f"kernel over X[n, c] padded {_pad_text(dw.padding)}{mode}, in steps of the dilation "
        f"{dil}; it fits {_x(k)} times = the filter size",
        f"n over the batch ({n}) and the {math.prod(s_out)} output positions",
        False,
        notes,
        macs,
        how,
    )
    return {"forward": forward, "input_grad": input_grad, "weight_grad": weight_grad}


def _transposed_passes(spec: ConvSpec, how: _How) -> dict[str, Pass]:
    """A transposed layer O = X ⋆ᵀ F is the input-gradient rule of the convolution ``spec``
    (which maps Y's layout to X's); its dE/dX is that convolution's forward rule and its dE/dW
    that convolution's weight rule with the roles of X and dE/dO swapped."""
    g, n = spec.groups, spec.batch
    cx, ky = spec.out_channels // g, spec.in_channels // g  # per group: X channels, Y channels
    s_x, s_y, k = spec.out_spatial, spec.in_spatial, spec.kernel
    st, dil = spec.stride, spec.dilation
    macs = _defined_macs(spec)

    fwd = _rules.input_grad(spec)
    forward = _make_pass(
        "forward",
        "Forward: O = X ⋆ᵀ F, the input-gradient rule of the matching convolution",
        "O[n, k] = b[k] + Σ_c dilate_s(X[n, c]) ⋆ flip(F[c, k])",
        "X",
        "flip(F)ᵀ",
        (g, n, cx, *s_x),
        (g, ky, cx, *k),
        fwd,
        spec.input_shape,
        f"each flipped filter ({_x(k)}, taps {_dilated(dil)}) slides in steps of 1 over X spread "
        f"by the stride {st} (s − 1 zeros between samples), padded {_pad_text(fwd.padding)}",
        f"c over the input channels ({cx}{' per group' if g > 1 else ''}) and the kernel taps",
        True,
        [
            "this is exactly dE/dX of the convolution with filters F mapping O's shape to X's shape: "
            "the transposed convolution is that convolution's backward pass run forward"
        ],
        macs,
        how,
    )
    bwd = _rules.forward(spec)
    input_grad = _make_pass(
        "input_grad",
        "dE/dX: an ordinary convolution of dE/dO with F",
        "dE/dX[n, c] = Σ_k dE/dO[n, k] ⋆ F[c, k]   (stride s, padding p)",
        "dE/dO",
        "F",
        (g, n, ky, *s_y),
        (g, cx, ky, *k),
        bwd,
        spec.output_shape,
        f"each filter F[c] ({_x(k)}, taps {_dilated(dil)}) slides over dE/dO padded {_pad_text(bwd.padding)} in steps "
        f"of {st}",
        f"k over the output channels ({ky}{' per group' if g > 1 else ''}) and the kernel taps",
        False,
        [],
        macs,
        how,
    )
    wg = _rules.weight_grad(spec)
    weight_grad = _make_pass(
        "weight_grad",
        "dE/dF: each output-gradient map correlated with each input map",
        "dE/dF[c, k] = Σ_n dE/dO[n, k] ⋆ dilate_s(X[n, c])",
        "dE/dOᵀ",
        "Xᵀ",
        (g, ky, n, *s_y),
        (g, cx, n, *s_x),
        wg,
        spec.weight_shape,
        f"the input map X[n, c] ({_x(s_x)}, taps {_dilated(st)}) slides as the kernel over "
        f"dE/dO[n, k] padded {_pad_text(wg.padding)}, in steps of the dilation {dil}",
        f"n over the batch ({n}) and the {math.prod(s_x)} input positions",
        False,
        [f"one correlation per pair (c, k), {cx * ky * g} pairs in all"],
        macs,
        how,
    )
    return {"forward": forward, "input_grad": input_grad, "weight_grad": weight_grad}

"""Each pass of a layer as the step convgrad runs, for :func:`convgrad.explain`.

Built from the steps of :mod:`convgrad._rules` (the very objects ``functional`` runs:
operands, correlation, result) and the algorithm registry (its choice and workspace), so
the explanation cannot drift from the code. Only the words are written here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from .. import _primitive, _rules
from .._rules import Correlation, Step
from .._spec import ConvSpec
from .explain_text import pad_text, remainders, shape_text


@dataclass(frozen=True)
class Pass:
    """One pass of the layer: the ``step`` convgrad runs and what a reader is told of it.

    ``lhs_shape`` (G, B, C, *S) ⋆ ``rhs_shape`` (G, O, C, *K) -> ``out_shape`` (G, B, O, *S'),
    with parameters ``corr``; ``result_shape`` is the result in the user's layout (all
    read from ``step``). ``gemm`` is the im2col product per group: (G, rows, depth, cols)
    meaning G × [rows × depth]·[depth × cols]. ``macs`` counts the multiply-adds of the
    definition; ``gemm_macs`` those of the im2col product (which also multiplies the zeros
    a stride-dilated operand carries).
    """

    step: Step
    title: str
    equation: str
    slides: str
    summed: str
    notes: tuple[str, ...]
    macs: int
    algorithm: str
    workspace_bytes: int
    padded_bytes: int = 0

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def lhs(self) -> str:
        return self.step.lhs.label

    @property
    def rhs(self) -> str:
        return self.step.rhs.label

    @property
    def lhs_shape(self) -> tuple[int, ...]:
        return self.step.lhs_shape

    @property
    def rhs_shape(self) -> tuple[int, ...]:
        return self.step.rhs_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.step.out_shape

    @property
    def result_shape(self) -> tuple[int, ...]:
        return self.step.result.shape

    @property
    def corr(self) -> Correlation:
        return self.step.corr

    @property
    def flipped(self) -> bool:
        return self.step.flipped

    @property
    def gemm(self) -> tuple[int, int, int, int]:
        g, b, c = self.lhs_shape[:3]
        o = self.rhs_shape[1]
        return (g, o, c * math.prod(self.rhs_shape[3:]), b * math.prod(self.out_shape[3:]))

    @property
    def gemm_macs(self) -> int:
        return math.prod(self.gemm)

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


class How(NamedTuple):
    """How the passes run: the item size of the compute dtype and the algorithm option."""

    itemsize: int
    algorithm: str


def _algorithm_module(algorithm: str):
    from ..algorithms import REGISTRY

    return REGISTRY[algorithm]


def _workspace(algorithm: str, lhs_shape, rhs_shape, corr, itemsize) -> int:
    from ..algorithms import gemm

    fn = getattr(_algorithm_module(algorithm), "workspace_bytes", gemm.workspace_bytes)
    return int(fn(lhs_shape, rhs_shape, corr, itemsize))


def _described(step: Step, how: How, macs: int, **words) -> Pass:
    """``step`` with the algorithm that would run it, its workspace and the reader's words."""
    lhs_shape, rhs_shape, corr = step.lhs_shape, step.rhs_shape, step.corr
    itemsize, algorithm = how
    if algorithm == "auto":
        algorithm = _primitive.choose(lhs_shape, rhs_shape, corr, itemsize)
    elif not _algorithm_module(algorithm).supports(lhs_shape, rhs_shape, corr):
        raise ValueError(
            f"algorithm {algorithm!r} does not support the {step.name} pass of this layer"
        )
    return Pass(
        step,
        macs=int(macs),
        algorithm=algorithm,
        workspace_bytes=_workspace(algorithm, lhs_shape, rhs_shape, corr, itemsize),
        padded_bytes=_padded_bytes(lhs_shape, rhs_shape, corr, itemsize),
        **words,
    )


def _padded_bytes(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the zero-padded, stride-spread copy of lhs (0 when none is needed); where
    that copy would dwarf the columns, gemm copies lhs with one zero per dim instead."""
    from ..algorithms._geometry import padding_bounded

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


def conv_passes(spec: ConvSpec, how: How) -> dict[str, Pass]:
    """The three passes of the convolution ``spec``: its steps, in words."""
    steps = _rules.steps(spec)
    g, n = spec.groups, spec.batch
    cg, kg = spec.in_channels // g, spec.out_channels // g
    k, st, dil = spec.kernel, spec.stride, spec.dilation
    macs = _defined_macs(spec)
    grp = f" of k's group ({cg} of {spec.in_channels})" if g > 1 else f" ({cg})"
    grp_k = f" of c's group ({kg} of {spec.out_channels})" if g > 1 else f" ({kg})"
    mode = (
        f"; X is first padded in '{spec.padding_mode}' mode" if spec.padding_mode != "zeros" else ""
    )
    stride_txt = "1" if all(v == 1 for v in st) else str(st)

    step = steps["forward"]
    forward = _described(
        step,
        how,
        macs,
        title="Forward: O = X ⋆ F + b",
        equation="O[n, k] = b[k] + Σ_c X[n, c] ⋆ F[k, c]",
        slides=f"each filter F[k] ({shape_text(k)}, taps {_dilated(dil)}) slides over the "
        f"padded X[n] (padding {pad_text(step.corr.padding)}{mode}) in steps of {stride_txt}",
        summed=f"c over the input channels{grp}, and the {math.prod(k)} kernel taps",
        notes=(),
    )

    step = steps["input_grad"]
    rems = remainders(spec)
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
    if step.result.folded:
        notes.append(
            f"then the '{spec.padding_mode}' pad's adjoint folds the border gradient back onto X"
        )
    input_grad = _described(
        step,
        how,
        macs,
        title="dE/dX: the full correlation of dE/dO with the flipped filters",
        equation="dE/dX[n, c] = Σ_k dilate_s(dE/dO[n, k]) ⋆ flip(F[k, c])",
        slides=f"each flipped filter flip(F[:, c]) ({shape_text(k)}, taps {_dilated(dil)}) slides "
        f"in steps of 1 over dE/dO[n] spread by the stride {st} and padded "
        f"{pad_text(step.corr.padding)}",
        summed=f"k over the output channels{grp_k}, and the kernel taps; "
        "F is used with its in/out axes swapped (C/g filters of depth K/g)",
        notes=tuple(notes),
    )

    step = steps["weight_grad"]
    s_out = step.rhs_shape[3:]  # dE/dO's maps are the sliding windows
    pairs = g * step.lhs_shape[1] * step.rhs_shape[1]
    notes = [f"no sum over channels: one correlation per pair (k, c), {pairs} pairs in all"]
    if any(v > 1 for v in st):
        notes.append(
            f"stride {st}: dE/dO is the sliding window, its taps spread out by the stride "
            "(rhs dilation) — the zeros are skipped, never multiplied"
        )
    if any(v > 1 for v in dil):
        notes.append(
            f"dilation {dil}: the window moves in steps of d over X, one step per filter tap"
        )
    weight_grad = _described(
        step,
        how,
        macs,
        title="dE/dF: each input channel correlated with each output-gradient map",
        equation="dE/dF[k, c] = Σ_n X[n, c] ⋆ dilate_s(dE/dO[n, k])",
        slides=f"the output-gradient map dE/dO[n, k] ({shape_text(s_out)}, taps "
        f"{_dilated(st)}) slides as the kernel over X[n, c] padded "
        f"{pad_text(step.corr.padding)}{mode}, in steps of the dilation {dil}; it fits "
        f"{shape_text(step.out_shape[3:])} times = the filter size",
        summed=f"n over the batch ({n}) and the {math.prod(s_out)} output positions",
        notes=tuple(notes),
    )
    return {"forward": forward, "input_grad": input_grad, "weight_grad": weight_grad}


def transposed_passes(spec: ConvSpec, how: How) -> dict[str, Pass]:
    """A transposed layer O = X ⋆ᵀ F is the input-gradient rule of the convolution ``spec``
    (which maps Y's layout to X's); its dE/dX is that convolution's forward rule and its dE/dW
    that convolution's weight rule with the roles of X and dE/dO swapped."""
    steps = _rules.steps(spec, transposed=True)
    g, n = spec.groups, spec.batch
    cx, ky = spec.out_channels // g, spec.in_channels // g  # per group: X channels, Y channels
    k, st, dil = spec.kernel, spec.stride, spec.dilation
    macs = _defined_macs(spec)
    per_group = " per group" if g > 1 else ""

    step = steps["forward"]
    forward = _described(
        step,
        how,
        macs,
        title="Forward: O = X ⋆ᵀ F, the input-gradient rule of the matching convolution",
        equation="O[n, k] = b[k] + Σ_c dilate_s(X[n, c]) ⋆ flip(F[c, k])",
        slides=f"each flipped filter ({shape_text(k)}, taps {_dilated(dil)}) slides in steps of 1 "
        f"over X spread by the stride {st} (s − 1 zeros between samples), padded "
        f"{pad_text(step.corr.padding)}",
        summed=f"c over the input channels ({cx}{per_group}) and the kernel taps",
        notes=(
            "this is exactly dE/dX of the convolution with filters F mapping O's shape to X's "
            "shape: the transposed convolution is that convolution's backward pass run forward",
        ),
    )
    step = steps["input_grad"]
    input_grad = _described(
        step,
        how,
        macs,
        title="dE/dX: an ordinary convolution of dE/dO with F",
        equation="dE/dX[n, c] = Σ_k dE/dO[n, k] ⋆ F[c, k]   (stride s, padding p)",
        slides=f"each filter F[c] ({shape_text(k)}, taps {_dilated(dil)}) slides over dE/dO "
        f"padded {pad_text(step.corr.padding)} in steps of {st}",
        summed=f"k over the output channels ({ky}{per_group}) and the kernel taps",
        notes=(),
    )
    step = steps["weight_grad"]
    s_x = step.rhs_shape[3:]  # X's maps are the sliding windows
    pairs = g * step.lhs_shape[1] * step.rhs_shape[1]
    weight_grad = _described(
        step,
        how,
        macs,
        title="dE/dF: each output-gradient map correlated with each input map",
        equation="dE/dF[c, k] = Σ_n dE/dO[n, k] ⋆ dilate_s(X[n, c])",
        slides=f"the input map X[n, c] ({shape_text(s_x)}, taps {_dilated(st)}) slides as the "
        f"kernel over dE/dO[n, k] padded {pad_text(step.corr.padding)}, in steps of the "
        f"dilation {dil}",
        summed=f"n over the batch ({n}) and the {math.prod(s_x)} input positions",
        notes=(f"one correlation per pair (c, k), {pairs} pairs in all",),
    )
    return {"forward": forward, "input_grad": input_grad, "weight_grad": weight_grad}

"""Rules as data: each pass of a convolution as one step on the generalised correlation.

Pure, shape-only functions of a :class:`~convgrad._spec.ConvSpec`. A :class:`Step` is a
whole pass: which argument becomes the lhs and which the rhs and how each is laid out
(:class:`Operand`: groups first, N<->C or in/out swapped, flipped, padded in the padding
mode), the :class:`Correlation` it runs, and how the correlation's output becomes the
public result (:class:`Result`: groups merged back, cropped, the pad's adjoint folded
in). ``functional`` runs steps with one runner (``_runner.run``) and ``explain`` renders
the very same steps, so the explanation cannot drift from the code.

With k_eff = d(k-1)+1, out_dil = (out-1)s+1 per spatial dim and forward
padding (lo, hi):

* forward  y  = x ⋆ w                strides s, rhs dilation d, padding (lo, hi)
* input    dx = dil_s(dy) ⋆ flip(wᵀ) strides 1, lhs dilation s, rhs dilation d,
                                     padding (k_eff-lo-1, in+k_eff-1-out_dil-(k_eff-lo-1))
* weight   dw = xᵀ ⋆ dyᵀ             strides d, rhs dilation s,
                                     padding (lo, out_dil-in+k_eff-lo-1); N is summed

A transposed convolution is the input gradient of the convolution ``spec`` describes
(``_spec.transpose_spec``): its passes are the three rules above with the roles of x and
grad_output exchanged (``transposed=True``); its forward pass is the input-gradient rule.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from ._spec import ConvSpec, Pairs

# what a reader sees for each argument and result (X input, F filters, O output, E the loss)
LABELS = {
    "x": "X",
    "weight": "F",
    "grad_output": "dE/dO",
    "output": "O",
    "grad_input": "dE/dX",
    "grad_weight": "dE/dF",
}

# the pass that makes each result
PASSES = {"output": "forward", "grad_input": "input_grad", "grad_weight": "weight_grad"}


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


@dataclass(frozen=True)
class Operand:
    """One argument of a public function laid out as an operand of the correlation.

    ``source`` names the argument (``"x"``, ``"weight"`` or ``"grad_output"``). Groups
    first: a data array (N, G*C, *S) becomes (G, N, C, *S), the weight (G*K, C, *k)
    becomes (G, K, C, *k) (views). Then ``swap`` exchanges axes 1 and 2 (N<->C for data,
    in/out for the weight) and ``flip`` reverses every spatial axis. ``padded``: the array
    is first padded in the spec's padding mode (its (low, high) pads become samples).
    """

    source: str
    swap: bool = False
    flip: bool = False
    padded: bool = False

    @property
    def is_weight(self) -> bool:
        return self.source == "weight"

    @property
    def label(self) -> str:
        """'X', 'F', 'dE/dO', 'Xᵀ', 'flip(F)ᵀ', ..."""
        name = LABELS[self.source]
        return (f"flip({name})" if self.flip else name) + ("ᵀ" if self.swap else "")


@dataclass(frozen=True)
class Result:
    """How the correlation's output (G, B, O, *S') becomes the public result ``target``.

    ``swap`` exchanges axes 1 and 2 back; then groups merge into the channels (data
    layout, (N, G*O, *S')) or, for ``"grad_weight"``, into the filters (``shape``).
    ``crop``: the spatial sizes kept (None: all). ``folded``: the padding mode's adjoint
    folds the border back. ``shape`` is the result in the user's layout.
    """

    target: str
    shape: tuple[int, ...]
    swap: bool = False
    crop: tuple[int, ...] | None = None
    folded: bool = False

    @property
    def is_weight(self) -> bool:
        return self.target == "grad_weight"

    @property
    def label(self) -> str:
        return LABELS[self.target]


@dataclass(frozen=True)
class Step:
    """One pass: ``lhs`` ⋆ ``rhs`` under ``corr`` -> ``result``.

    ``lhs_shape`` (G, B, C, *S) and ``rhs_shape`` (G, O, C, *K) are the operands' shapes
    (batched: an unbatched input has B = 1); ``pads`` and ``padding_mode`` are those of
    the spec, for padded operands and a folded result.
    """

    lhs: Operand
    rhs: Operand
    corr: Correlation
    result: Result
    groups: int
    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    pads: Pairs
    padding_mode: str

    @property
    def name(self) -> str:
        """The pass: "forward", "input_grad" or "weight_grad" (from the result it makes)."""
        return PASSES[self.result.target]

    @property
    def out_shape(self) -> tuple[int, ...]:
        """(G, B, O, *S'): the correlation's output, before it is mapped back."""
        spatial = self.corr.output_spatial(self.lhs_shape[3:], self.rhs_shape[3:])
        return (*self.lhs_shape[:2], self.rhs_shape[1], *spatial)

    @property
    def flipped(self) -> bool:
        return self.rhs.flip


# ------------------------------------------------------------------------ shapes


def zero_padded(spec: ConvSpec) -> ConvSpec:
    """The spec seen by the correlation once a non-zero padding mode is applied explicitly."""
    if spec.padding_mode == "zeros":
        return spec
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spec.in_spatial, spec.pads))
    return replace(spec, in_spatial=padded, pads=((0, 0),) * spec.nd, padding_mode="zeros")


def grouped_data_shape(spec: ConvSpec, source: str, swap: bool = False) -> tuple[int, ...]:
    """x's (G, N, C/G, *S) or grad_output's (G, N, K/G, *S_out); N<->C with ``swap``."""
    g = spec.groups
    if source == "x":
        channels, spatial = spec.in_channels, spec.in_spatial
    else:
        channels, spatial = spec.out_channels, spec.out_spatial
    lead = (channels // g, spec.batch) if swap else (spec.batch, channels // g)
    return (g, *lead, *spatial)


def grouped_weight_shape(spec: ConvSpec, swap: bool = False) -> tuple[int, ...]:
    """The weight as (G, K/G, C/G, *k), or (G, C/G, K/G, *k) with in/out ``swap``."""
    g = spec.groups
    pair = (spec.out_channels // g, spec.in_channels // g)
    return (g, *(pair[::-1] if swap else pair), *spec.kernel)


def operand_shape(spec: ConvSpec, operand: Operand) -> tuple[int, ...]:
    """The shape ``operand`` has in the correlation of a pass of ``spec``."""
    if operand.is_weight:
        return grouped_weight_shape(spec, operand.swap)
    return grouped_data_shape(spec, operand.source, operand.swap)


# ------------------------------------------------------------------------- rules
# Each rule names its operands and result by their roles in the convolution ``spec``.
# With ``transposed`` it gives a pass of the transposed convolution ``spec`` describes
# (``_spec.transpose_spec``): x and grad_output (output and grad_input) exchange names.
# The rules are pure and memoised per spec (a layer runs the same steps every call), so
# running a step costs a dictionary look-up, not building it again.

STEPS_KEPT = 1024


def _step(spec, lhs: Operand, rhs: Operand, corr, result: Result, transposed: bool) -> Step:
    inner = zero_padded(spec)  # the operands' shapes once the padding mode is applied
    lhs_shape, rhs_shape = operand_shape(inner, lhs), operand_shape(inner, rhs)
    if transposed:
        lhs, rhs = _exchanged(lhs), _exchanged(rhs)
        result = replace(result, target=_EXCHANGED[result.target])
    groups, pads, mode = spec.groups, spec.pads, spec.padding_mode
    return Step(lhs, rhs, corr, result, groups, lhs_shape, rhs_shape, pads, mode)


# a transposed layer's x is its convolution's grad_output, its output that one's grad_input
_EXCHANGED = {
    "x": "grad_output",
    "grad_output": "x",
    "weight": "weight",
    "output": "grad_input",
    "grad_input": "output",
    "grad_weight": "grad_weight",
}


def _exchanged(operand: Operand) -> Operand:
    """``operand`` read from the other data argument (x <-> grad_output)."""
    return Operand(_EXCHANGED[operand.source], operand.swap, operand.flip, operand.padded)


@functools.lru_cache(maxsize=STEPS_KEPT)
def forward(spec: ConvSpec, transposed: bool = False) -> Step:
    """y = x ⋆ w: lhs x (g, N, C/g, *S), rhs w (g, K/g, C/g, *k).

    Transposed: the transposed convolution's dE/dx, this rule on its grad_output."""
    inner = zero_padded(spec)
    corr = Correlation(spec.stride, inner.pads, (1,) * spec.nd, spec.dilation)
    # a transposed convolution's spec may ask for fewer rows than the correlation yields
    out = corr.output_spatial(inner.in_spatial, spec.kernel)
    crop = None if out == spec.out_spatial else spec.out_spatial
    result = Result("output", spec.output_shape, crop=crop)
    lhs = Operand("x", padded=spec.padding_mode != "zeros")
    return _step(spec, lhs, Operand("weight"), corr, result, transposed)


@functools.lru_cache(maxsize=STEPS_KEPT)
def input_grad(spec: ConvSpec, transposed: bool = False) -> Step:
    """dx = dilate_s(dy) ⋆ flip(w) with in/out swapped, the full correlation: lhs dy
    (g, N, K/g, *S_out), rhs flip(w) (g, C/g, K/g, *k).

    Transposed: the transposed convolution's output, this rule on its x."""
    inner = zero_padded(spec)
    pads = []
    for size, out, k_eff, s, (lo, _) in zip(
        inner.in_spatial, spec.out_spatial, spec.effective_kernel, spec.stride, inner.pads
    ):
        low = k_eff - lo - 1
        pads.append((low, size + k_eff - 1 - ((out - 1) * s + 1) - low))
    corr = Correlation((1,) * spec.nd, tuple(pads), spec.stride, spec.dilation)
    result = Result("grad_input", spec.input_shape, folded=spec.padding_mode != "zeros")
    rhs = Operand("weight", swap=True, flip=True)
    return _step(spec, Operand("grad_output"), rhs, corr, result, transposed)


@functools.lru_cache(maxsize=STEPS_KEPT)
def weight_grad(spec: ConvSpec, transposed: bool = False) -> Step:
    """dw[k, c] = sum_n x[n, c] ⋆ dy[n, k]: lhs x with N<->C (g, C/g, N, *S), rhs dy
    with N<->C (g, K/g, N, *S_out); output (g, C/g, K/g, *k), swapped back.

    Transposed: the transposed convolution's dE/dw, x and grad_output exchanged."""
    inner = zero_padded(spec)
    pads = []
    for size, out, k_eff, s, (lo, _) in zip(
        inner.in_spatial, spec.out_spatial, spec.effective_kernel, spec.stride, inner.pads
    ):
        pads.append((lo, (out - 1) * s + 1 - size + k_eff - lo - 1))
    corr = Correlation(spec.dilation, tuple(pads), (1,) * spec.nd, spec.stride)
    lhs = Operand("x", swap=True, padded=spec.padding_mode != "zeros")
    rhs = Operand("grad_output", swap=True)
    result = Result("grad_weight", spec.weight_shape, swap=True)
    return _step(spec, lhs, rhs, corr, result, transposed)


def steps(spec: ConvSpec, transposed: bool = False) -> dict[str, Step]:
    """The three passes by name: of the convolution ``spec``, or of the transposed
    convolution it describes, whose output is the input-gradient rule."""
    if transposed:
        passes = (
            input_grad(spec, transposed=True),
            forward(spec, transposed=True),
            weight_grad(spec, transposed=True),
        )
    else:
        passes = (forward(spec), input_grad(spec), weight_grad(spec))
    return {step.name: step for step in passes}

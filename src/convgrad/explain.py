"""``explain``: every shape of a convolution layer, and each gradient written as a convolution.

The report is built from the very objects the code runs: the :class:`~convgrad._spec.ConvSpec`
of the layer, the :class:`~convgrad._rules.Correlation` of each pass and the planner's choice,
so what it says cannot drift from what ``convgrad`` computes.

    >>> report = explain((5, 100, 100), (10, 5, 5, 5))
    >>> report.shapes["grad_weight"]
    (10, 5, 5, 5)
    >>> print(report)            # plain text; report.print() uses rich in a terminal
    >>> report.figure("tiling.png")   # which (X[c], dE/dO[k]) pair makes each dE/dF[k, c]

Notation: X input, F filters (weight), O output, E the loss; ``⋆`` is cross-correlation
(what deep-learning libraries call convolution).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from . import _primitive, _rules
from ._module import float_dtype, positive_int
from ._rules import Correlation
from ._spec import ConvSpec, _shape_tuple, _weight_nd, conv_spec, transpose_spec

__all__ = ["explain", "Report", "Pass", "cli_main"]

ORIGIN_INPUT = (5, 100, 100)
ORIGIN_WEIGHT = (10, 5, 5, 5)


def _dim_names(nd: int) -> tuple[str, ...]:
    return {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}[nd]


def _x(shape) -> str:
    return "×".join(str(v) for v in shape)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _limit_text(workspace: int, limit: int) -> str:
    if workspace <= limit:
        return f" (within the {_bytes(limit)} workspace limit)"
    return f" in all, built in chunks over the batch and channels to fit the {_bytes(limit)} limit"


def _count(n: int) -> str:
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


# ----------------------------------------------------------------------------- data


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


@dataclass(repr=False)
class Report:
    """What ``explain`` found. Fields are plain data so tests can compare them with the code.

    shapes: name -> shape (input, weight, bias, output, grad_output, grad_input, grad_weight,
    grad_bias); padding: resolved (low, high) per spatial dim of the convolution that runs
    (for a transposed layer: of the forward convolution it is the input gradient of);
    output_formula: one filled-in line per spatial dim; passes: "forward", "input_grad",
    "weight_grad" -> :class:`Pass`; macs: pass name -> multiply-adds (plus "total").
    """

    spec: ConvSpec
    transposed: bool
    options: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    padding: tuple[tuple[int, int], ...]
    padding_text: tuple[str, ...]
    output_formula: tuple[str, ...]
    passes: dict[str, Pass]
    depth_note: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    itemsize: int = 8
    workspace_limit: int = _primitive.DEFAULT_WORKSPACE_LIMIT

    def __repr__(self) -> str:
        kind = "transposed convolution" if self.transposed else "convolution"
        sh = self.shapes
        return (
            f"<Report {self.spec.nd}-D {kind}: X {_x(sh['input'])}, F {_x(sh['weight'])} -> "
            f"O {_x(sh['output'])}>"
        )

    # -------------------------------------------------------------- derived numbers
    @property
    def macs(self) -> dict[str, int]:
        out = {name: p.macs for name, p in self.passes.items()}
        out["total"] = sum(out.values())
        return out

    @property
    def gemm_macs(self) -> dict[str, int]:
        return {name: p.gemm_macs for name, p in self.passes.items()}

    @property
    def algorithms(self) -> dict[str, str]:
        return {name: p.algorithm for name, p in self.passes.items()}

    @property
    def workspace_bytes(self) -> dict[str, int]:
        return {name: p.workspace_bytes for name, p in self.passes.items()}

    @property
    def gemms(self) -> dict[str, tuple[int, int, int, int]]:
        return {name: p.gemm for name, p in self.passes.items()}

    # -------------------------------------------------------------------- printing
    def _sections(self) -> list[tuple[str, list[str]]]:
        s = self.spec
        kind = "transposed convolution" if self.transposed else "convolution"
        head = (
            f"{s.nd}-D {kind}: X {_x(self.shapes['input'])}, F {_x(self.shapes['weight'])}"
            f" -> O {_x(self.shapes['output'])}"
        )
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        shapes = [f"{head}", f"options: {opts}", ""]
        labels = {
            "input": "X      input",
            "weight": "F      filters (weight)",
            "bias": "b      bias",
            "output": "O      output",
            "grad_output": "dE/dO  output gradient",
            "grad_input": "dE/dX  input gradient",
            "grad_weight": "dE/dF  filter gradient",
            "grad_bias": "dE/db  bias gradient",
        }
        for key, label in labels.items():
            shapes.append(f"  {label:<26} {_x(self.shapes[key])}")
        sizes = list(self.padding_text) + list(self.output_formula)
        sections = [("Shapes", shapes), ("Padding and output size", sizes)]
        for p in self.passes.values():
            lines = [
                p.equation,
                f"slides:  {p.slides}",
                f"summed:  {p.summed}",
                f"flipped: {'yes, the filters are rotated 180° (flipped in every spatial dim)' if p.flipped else 'no'}",
                *p.notes,
                f"runs as: correlate(lhs {p.lhs} {_x(p.lhs_shape)}, rhs {p.rhs} "
                f"{_x(p.rhs_shape)}) -> {_x(p.out_shape)}",
                f"         {p.corr_text()}",
                f"im2col GEMM: {p.gemm_text}",
                f"multiply-adds: {_count(p.macs)}"
                + (f" ({p.macs:,})" if p.macs >= 1000 else "")
                + (
                    f"; the im2col GEMM does {_count(p.gemm_macs)}, counting the zeros it pads "
                    "and inserts"
                    if p.gemm_macs != p.macs
                    else ""
                ),
                f"workspace: {_bytes(p.workspace_bytes)} im2col columns"
                + _limit_text(p.workspace_bytes, self.workspace_limit)
                + (f" + {_bytes(p.padded_bytes)} padded copy" if p.padded_bytes else "")
                + f"; algorithm: {p.algorithm}",
            ]
            sections.append((p.title, lines))
        sections.append(("Why the channel depths need not match", [self.depth_note]))
        total = self.macs["total"]
        tail = [
            f"multiply-adds per training step (forward + dE/dX + dE/dF): {_count(total)}"
            + (f" ({total:,})" if total >= 1000 else ""),
            *self.notes,
        ]
        sections.append(("Cost", tail))
        return sections

    def __str__(self) -> str:
        out = []
        for title, lines in self._sections():
            out.append(f"== {title} ==")
            out.extend(lines)
            out.append("")
        return "\n".join(out).rstrip() + "\n"

    def __rich__(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        panels = []
        for title, lines in self._sections():
            text = Text()
            for i, line in enumerate(lines):
                if i:
                    text.append("\n")
                style = None
                if line.startswith(("dE/dX[", "dE/dF[", "O[")):
                    style = "bold"
                for key in ("slides:", "summed:", "flipped:", "runs as:", "im2col GEMM:"):
                    if line.startswith(key):
                        text.append(key, style="cyan")
                        line = line[len(key) :]
                        break
                text.append(line, style=style)
            panels.append(Panel(text, title=f"[bold]{title}[/bold]", title_align="left"))
        return Group(*panels)

    def print(self, file=None) -> None:
        """Print with rich when writing to a terminal and rich is installed, else plain text."""
        file = sys.stdout if file is None else file
        if getattr(file, "isatty", lambda: False)():
            try:
                from rich.console import Console
            except ImportError:  # pragma: no cover - rich is optional
                pass
            else:
                Console(file=file).print(self)
                return
        print(str(self), end="", file=file)

    def figure(self, path=None, *, worked: bool | None = None, max_channels: int = 12):
        """Draw the tiling of dE/dF (which input map and output-gradient map make each
        filter-gradient tile); PNG/SVG/PDF by the extension of ``path``. ``worked`` adds the
        numbers of one worked example (default: when the layer is small). Returns the
        matplotlib Figure."""
        from ._figure import draw

        return draw(self, path, worked=worked, max_channels=max_channels)


# ------------------------------------------------------------------------ building


def _gemm(lhs_shape, rhs_shape, out_shape) -> tuple[int, int, int, int]:
    g, b, c = lhs_shape[:3]
    o = rhs_shape[1]
    return (g, o, c * math.prod(rhs_shape[3:]), b * math.prod(out_shape[3:]))


class _How(NamedTuple):
    """How the passes run: the item size of the compute dtype and the algorithm option."""

    itemsize: int
    algorithm: str


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
        padded_bytes=_padded_bytes(lhs_shape, corr, itemsize),
    )


def _padded_bytes(lhs_shape, corr: Correlation, itemsize: int) -> int:
    """Bytes of the zero-padded, stride-spread copy of lhs (0 when none is needed)."""
    if all(ld == 1 for ld in corr.lhs_dilation) and all(p == (0, 0) for p in corr.padding):
        return 0
    spatial = [
        max((s - 1) * ld + 1 + lo + hi, 0)
        for s, ld, (lo, hi) in zip(lhs_shape[3:], corr.lhs_dilation, corr.padding)
    ]
    return math.prod(lhs_shape[:3]) * math.prod(spatial) * itemsize


def _pad_text(pads) -> str:
    return ", ".join(f"({lo}, {hi})" for lo, hi in pads)


def _remainders(spec: ConvSpec) -> list[int]:
    """Rows of padded X that the last window never reaches, per dim."""
    return [
        size + lo + hi - ((out - 1) * s + ke)
        for size, (lo, hi), out, s, ke in zip(
            spec.in_spatial, spec.pads, spec.out_spatial, spec.stride, spec.effective_kernel
        )
    ]


def _padding_lines(spec: ConvSpec, padding: Any, transposed: bool, tpad) -> list[str]:
    names = _dim_names(spec.nd)
    if transposed:
        lines = [f"padding {tpad} (PyTorch's meaning): each side of the output is cropped by p;"]
        lines.append(
            "equivalently the input, spread out by the stride, gets d·(k−1)−p zeros per side: "
            + ", ".join(
                f"{n}: {d}·({k}−1)−{p} = {d * (k - 1) - p}"
                for n, d, k, p in zip(names, spec.dilation, spec.kernel, tpad)
            )
        )
        return lines
    if isinstance(padding, str) and padding == "same":
        lines = [
            "padding 'same': out = ⌈in / s⌉, total = max((out−1)·s + d·(k−1) + 1 − in, 0), "
            "low = ⌊total/2⌋, high = the rest (the odd pixel goes at the high end)"
        ]
        for n, size, k, s, d, (lo, hi) in zip(
            names, spec.in_spatial, spec.kernel, spec.stride, spec.dilation, spec.pads
        ):
            out = -(-size // s)
            lines.append(
                f"  {n}: out = ⌈{size}/{s}⌉ = {out}, total = max(({out}−1)·{s} + {d}·({k}−1) + 1 "
                f"− {size}, 0) = {lo + hi} -> low {lo}, high {hi}"
            )
        return lines
    desc = "'valid' (no padding)" if padding == "valid" else repr(padding)
    lines = [f"padding {desc} -> (low, high) per dim: {_pad_text(spec.pads)}"]
    if spec.padding_mode != "zeros":
        lines.append(
            f"padding_mode '{spec.padding_mode}': X is padded explicitly with copies of its own "
            "border before the correlation; the gradient of that pad folds the border back "
            "(each padded position's gradient is added onto the X position it copied)"
        )
    return lines


def _output_lines(spec: ConvSpec, transposed: bool, tpad, out_pad) -> list[str]:
    names = _dim_names(spec.nd)
    lines = []
    if transposed:
        lines.append("out = (in − 1)·s − 2p + d·(k − 1) + output_padding + 1")
        for n, size, k, s, d, p, op, out in zip(
            names,
            spec.out_spatial,
            spec.kernel,
            spec.stride,
            spec.dilation,
            tpad,
            out_pad,
            spec.in_spatial,
        ):
            lines.append(f"  {n}: ({size} − 1)·{s} − 2·{p} + {d}·({k} − 1) + {op} + 1 = {out}")
        return lines
    lines.append("out = ⌊(in + low + high − d·(k − 1) − 1) / s⌋ + 1")
    rems = _remainders(spec)
    for n, size, k, s, d, (lo, hi), out, r in zip(
        names,
        spec.in_spatial,
        spec.kernel,
        spec.stride,
        spec.dilation,
        spec.pads,
        spec.out_spatial,
        rems,
    ):
        line = f"  {n}: ⌊({size} + {lo} + {hi} − {d}·({k} − 1) − 1) / {s}⌋ + 1 = {out}"
        if r:
            line += (
                f"   (stride leaves {r}: the last {r} row(s) of padded X are never read, so "
                "their dE/dX is 0)"
            )
        lines.append(line)
    return lines


def explain(
    input_shape,
    weight_shape,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    padding_mode="zeros",
    *,
    transposed: bool = False,
    output_padding=0,
    batch: int | None = None,
    dtype="float64",
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> Report:
    """Explain a convolution layer: shapes, resolved padding, each pass as a correlation.

    input_shape (N, C, *S) or (C, *S); weight_shape (K, C/groups, *k), or for
    ``transposed=True`` (C, K/groups, *k) as in PyTorch. Options as for :func:`convgrad.conv`
    (``padding`` may be 'same'/'valid'/ints/(low, high) pairs; transposed: int per dim and
    ``output_padding``). ``batch`` prepends a batch size to an unbatched ``input_shape``.
    ``dtype`` (float16, float32 or float64) sets the item size used for workspace and the
    planner (float16 runs in float32). ``algorithm`` and ``workspace_limit`` are the functions'
    options of those names: the algorithm each pass would run and the limit its workspace is
    chunked under. Raises the same ValueError/TypeError as the functions for a bad layer.
    """
    compute = float_dtype(dtype)
    itemsize = max(compute.itemsize, 4)  # float16 is computed with float32 accumulation
    from .functional import _options

    run_options = _options(algorithm, workspace_limit)
    input_shape = _shape_tuple(input_shape, "input_shape")
    weight_shape = _shape_tuple(weight_shape, "weight_shape")
    _weight_nd(weight_shape, "weight_shape")
    if batch is not None:
        input_shape = _with_batch(input_shape, weight_shape, batch)
    if transposed:
        if padding_mode != "zeros":
            raise ValueError(
                f"padding_mode of a transposed convolution must be 'zeros', got {padding_mode!r}"
            )
        spec = transpose_spec(
            input_shape, weight_shape, stride, padding, output_padding, groups, dilation
        )
        options = dict(
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            dilation=dilation,
            groups=groups,
        )
        tpad = tuple(lo for lo, _ in spec.pads)
        out_pad = _tuple(output_padding, spec.nd)
    else:
        if output_padding not in (0, None) and any(_tuple(output_padding, len(weight_shape) - 2)):
            raise ValueError("output_padding is only for a transposed convolution")
        spec = conv_spec(input_shape, weight_shape, stride, padding, dilation, groups, padding_mode)
        options = dict(
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            padding_mode=padding_mode,
        )
        tpad = out_pad = None
    if algorithm != "auto":
        options["algorithm"] = algorithm
    if workspace_limit is not None:
        options["workspace_limit"] = workspace_limit
    how = _How(itemsize, run_options["algorithm"])
    passes = _transposed_passes(spec, how) if transposed else _conv_passes(spec, how)
    shapes = _shapes(spec, transposed)
    depth = _depth_note(spec, transposed)
    notes = []
    if spec.groups > 1:
        cg, kg = spec.in_channels // spec.groups, spec.out_channels // spec.groups
        if transposed:
            cg, kg = kg, cg
        notes.append(
            f"groups={spec.groups}: channels split into {spec.groups} independent convolutions "
            f"of {cg} -> {kg} channels; convgrad runs them as one batched GEMM (G leading axis)"
        )
    return Report(
        spec=spec,
        transposed=transposed,
        options=options,
        shapes=shapes,
        padding=spec.pads,
        padding_text=tuple(_padding_lines(spec, padding, transposed, tpad)),
        output_formula=tuple(_output_lines(spec, transposed, tpad, out_pad)),
        passes=passes,
        depth_note=depth,
        notes=tuple(notes),
        itemsize=itemsize,
        workspace_limit=(
            _primitive.DEFAULT_WORKSPACE_LIMIT if workspace_limit is None else int(workspace_limit)
        ),
    )


def _with_batch(input_shape: tuple, weight_shape: tuple, batch) -> tuple:
    batch = positive_int(batch, "batch")
    nd = len(weight_shape) - 2
    if len(input_shape) == nd + 1:
        return (int(batch), *input_shape)
    if len(input_shape) == nd + 2 and input_shape[0] != batch:
        raise ValueError(f"batch ({batch}) differs from input_shape[0] ({input_shape[0]})")
    return input_shape


def _tuple(value, nd):
    if isinstance(value, (int, np.integer)):
        return (int(value),) * nd
    return tuple(value)


def _shapes(spec: ConvSpec, transposed: bool) -> dict[str, tuple[int, ...]]:
    if not transposed:
        x, y, w, k = spec.input_shape, spec.output_shape, spec.weight_shape, spec.out_channels
    else:  # the transposed layer maps the spec's output layout to its input layout
        x, y, w, k = spec.output_shape, spec.input_shape, spec.weight_shape, spec.in_channels
    return {
        "input": x,
        "weight": w,
        "bias": (k,),
        "output": y,
        "grad_output": y,
        "grad_input": x,
        "grad_weight": w,
        "grad_bias": (k,),
    }


def _defined_macs(spec: ConvSpec) -> int:
    """Multiply-adds of the definition: N·K·(C/g)·∏k·∏out (the same for all three passes)."""
    return (
        spec.batch
        * spec.out_channels
        * (spec.in_channels // spec.groups)
        * math.prod(spec.kernel)
        * math.prod(spec.out_spatial)
    )


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


def _dilated(values) -> str:
    return "adjacent" if all(v == 1 for v in values) else f"{values} apart"


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
        f"c over the input channels ({cx} per group) and the kernel taps",
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
        f"k over the output channels ({ky} per group) and the kernel taps",
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


def _depth_note(spec: ConvSpec, transposed: bool) -> str:
    g, n = spec.groups, spec.batch
    if transposed:
        c, k = spec.out_channels, spec.in_channels
        return (
            f"F[c] is a stack of {k // g} maps, X[n, c] and dE/dO[n, k] are single maps: "
            f"dE/dF is {c}·{k // g} separate correlations, one per pair (c, k) in the same group, "
            f"dE/dF[c, k] = Σ_n dE/dO[n, k] ⋆ dilate_s(X[n, c]). Inside the primitive the batch "
            f"axis N = {n} is the summed depth (both operands have it), the channels are batch "
            "axes."
        )
    c, k = spec.in_channels, spec.out_channels
    cg = c // g
    pair = (
        ""
        if g == 1
        else f" (k and c in the same group: c runs over the {cg} channels of k's group)"
    )
    return (
        f"F[k] is {cg} channels deep, but dE/dO[k] is a single map. dE/dF is not one correlation "
        f"of a {cg}-deep array with a 1-deep one: it is {k}·{cg} = {k * cg} separate "
        f"{spec.nd}-D correlations, one per pair (k, c){pair}: "
        f"dE/dF[k, c] = Σ_n X[n, c] ⋆ dE/dO[n, k]. Stacking the {cg} results for one k gives "
        f"back a {cg}-deep filter gradient. In the primitive, X and dE/dO have N <-> C swapped: "
        f"X's channels become the batch, dE/dO's channels the filters, and the batch axis "
        f"N = {n}, which both arrays share, is the depth that is summed."
    )


# ------------------------------------------------------------------------------- CLI


def cli_main(argv: list[str]) -> int:
    """``convgrad explain``: print the explanation of a layer (default: the origin layer)."""
    from ._explain_cli import main

    return main(argv)

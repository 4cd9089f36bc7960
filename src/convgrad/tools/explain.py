"""``explain``: every shape of a convolution layer, and each gradient written as a convolution.

The report is built from the very objects the code runs: the :class:`~convgrad._spec.ConvSpec`
of the layer, the :class:`~convgrad._rules.Step` of each pass (its operands, correlation and
result) and the planner's choice, so what it says cannot drift from what ``convgrad``
computes.

    >>> report = explain((5, 100, 100), (10, 5, 5, 5))
    >>> report.shapes["grad_weight"]
    (10, 5, 5, 5)
    >>> print(report)            # plain text; report.print() uses rich in a terminal
    >>> report.figure("tiling.png")   # which (X[c], dE/dO[k]) pair makes each dE/dF[k, c]

Notation: X input, F filters (weight), O output, E the loss; ``⋆`` is cross-correlation
(what deep-learning libraries call convolution).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._plan import get_workspace_limit
from .._spec import (
    ConvSpec,
    conv_spec,
    float_dtype,
    int_tuple,
    positive_int,
    shape_tuple,
    transpose_spec,
    weight_nd,
)
from .._validate import run_options
from .explain_passes import How, Pass, conv_passes, transposed_passes
from .explain_text import (
    bytes_text,
    count_text,
    depth_note,
    limit_text,
    output_lines,
    padding_lines,
    shape_text,
)

__all__ = ["explain", "Report", "Pass"]

ORIGIN_INPUT = (5, 100, 100)
ORIGIN_WEIGHT = (10, 5, 5, 5)


@dataclass(repr=False)
class Report:
    """What :func:`explain` found; its fields are plain data, comparable with the code.

    Attributes
    ----------
    shapes : dict of str to tuple of int
        ``input``, ``weight``, ``bias``, ``output``, ``grad_output``, ``grad_input``,
        ``grad_weight``, ``grad_bias``.
    padding : tuple of (int, int)
        The resolved (low, high) padding per spatial dim of the convolution that runs
        (for a transposed layer: of the forward convolution it is the input gradient of).
    output_formula : tuple of str
        One filled-in output-size formula per spatial dim.
    passes : dict of str to Pass
        ``forward``, ``input_grad``, ``weight_grad``: each written as a correlation
        (operands, which axes are summed, the algorithm, its GEMM and workspace).
    macs : dict of str to int
        Multiply-adds per pass, and their ``total``.

    Examples
    --------
    >>> import convgrad
    >>> report = convgrad.explain((3, 8, 8), (4, 3, 3, 3), padding="same")
    >>> report.padding
    ((1, 1), (1, 1))
    >>> sorted(report.passes)
    ['forward', 'input_grad', 'weight_grad']
    >>> print(report)  # doctest: +ELLIPSIS
    == Shapes ==
    2-D convolution: X 3×8×8, F 4×3×3×3 -> O 4×8×8
    ...
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
    workspace_limit: int = field(default_factory=get_workspace_limit)  # in force when made

    def __repr__(self) -> str:
        kind = "transposed convolution" if self.transposed else "convolution"
        sh = self.shapes
        return (
            f"<Report {self.spec.nd}-D {kind}: X {shape_text(sh['input'])}, F {shape_text(sh['weight'])} -> "
            f"O {shape_text(sh['output'])}>"
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
            f"{s.nd}-D {kind}: X {shape_text(self.shapes['input'])}, F {shape_text(self.shapes['weight'])}"
            f" -> O {shape_text(self.shapes['output'])}"
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
            shapes.append(f"  {label:<26} {shape_text(self.shapes[key])}")
        sizes = list(self.padding_text) + list(self.output_formula)
        sections = [("Shapes", shapes), ("Padding and output size", sizes)]
        for p in self.passes.values():
            lines = [
                p.equation,
                f"slides:  {p.slides}",
                f"summed:  {p.summed}",
                f"flipped: {'yes, the filters are rotated 180° (flipped in every spatial dim)' if p.flipped else 'no'}",
                *p.notes,
                f"runs as: correlate(lhs {p.lhs} {shape_text(p.lhs_shape)}, rhs {p.rhs} "
                f"{shape_text(p.rhs_shape)}) -> {shape_text(p.out_shape)}",
                f"         {p.corr_text()}",
                f"im2col GEMM: {p.gemm_text}",
                f"multiply-adds: {count_text(p.macs)}"
                + (f" ({p.macs:,})" if p.macs >= 1000 else "")
                + (
                    f"; the im2col GEMM does {count_text(p.gemm_macs)}, counting the zeros it pads "
                    "and inserts"
                    if p.gemm_macs != p.macs
                    else ""
                ),
                f"algorithm: {p.algorithm}; workspace: {bytes_text(p.workspace_bytes)}"
                + (" of im2col columns" if p.algorithm == "gemm" else "")
                + limit_text(p.workspace_bytes, self.workspace_limit)
                + (
                    f" + {bytes_text(p.padded_bytes)} padded copy"
                    if p.padded_bytes and p.algorithm == "gemm"
                    else ""
                ),
            ]
            sections.append((p.title, lines))
        sections.append(("Why the channel depths need not match", [self.depth_note]))
        total = self.macs["total"]
        tail = [
            f"multiply-adds per training step (forward + dE/dX + dE/dF): {count_text(total)}"
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

    def print(self, file=None, width: int | None = None) -> None:
        """Print with rich when writing to a terminal and rich is installed, else plain text
        wrapped to ``width`` columns (default: the terminal's width)."""
        from .wrap import wrap_text

        file = sys.stdout if file is None else file
        if getattr(file, "isatty", lambda: False)():
            try:
                from rich.console import Console
            except ImportError:  # pragma: no cover - rich is optional
                pass
            else:
                Console(file=file, width=width).print(self)
                return
        print(wrap_text(str(self), width), end="", file=file)

    def figure(self, path=None, *, worked: bool | None = None, max_channels: int = 12):
        """Draw the tiling of dE/dF (which input map and output-gradient map make each
        filter-gradient tile); PNG/SVG/PDF by the extension of ``path``. ``worked`` adds the
        numbers of one worked example (default: when the layer is small). Returns the
        matplotlib Figure. Needs matplotlib (the ``show`` extra): without it, raises
        ``convgrad._extras.MissingExtraError`` (an ImportError) saying how to install it."""
        from .figure import draw

        return draw(self, path, worked=worked, max_channels=max_channels)

    # ---------------------------------------------------------------- explorer page
    def to_html(self, path=None, *, seed: int = 0) -> str:
        """The interactive gradient explorer of this layer: one self-contained HTML page
        (scripts and styles inline, no network) where pointing at any cell of O, dE/dX, dE/dF
        or dE/db highlights the cells that make it and writes out its sum with a worked
        example's numbers (random integers from ``seed``). Written to ``path`` when given;
        returns the HTML. Raises ValueError for a layer too large to embed
        (``convgrad.tools.explorer.MAX_VALUES`` values of one sample)."""
        from .explorer import to_html

        text = to_html(self, seed=seed)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    def _repr_html_(self) -> str | None:
        """A notebook's rich display: the explorer, or None (the text) for too large a layer."""
        from .explorer import to_html

        try:
            return to_html(self, fragment=True)
        except ValueError:
            return None


def explain(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    transposed: bool = False,
    output_padding: int | Sequence[int] = 0,
    batch: int | None = None,
    dtype: Any = "float64",
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> Report:
    """Explain a convolution layer: shapes, resolved padding, each pass as a correlation.

    The report is built from the objects the functions run (the layer's spec, each
    pass's operands and the planner's choice), so it cannot drift from what convgrad
    computes. It prints as text, draws the tiling of dE/dF (:meth:`Report.figure`) and
    writes an interactive explorer page (:meth:`Report.to_html`).

    Parameters
    ----------
    input_shape : sequence of int
        ``(N, C, *S)`` or ``(C, *S)``.
    weight_shape : sequence of int
        ``(K, C // groups, *k)``, or for ``transposed=True`` ``(C, K // groups, *k)`` as
        in PyTorch.
    stride, padding, dilation, groups, padding_mode
        As for :func:`convgrad.conv` (for a transposed layer: as for
        :func:`convgrad.conv_transpose`, padding an int per dim, padding_mode 'zeros').
    transposed : bool, default False
        Keyword only. Explain a transposed convolution.
    output_padding : int or sequence of int, default 0
        Keyword only. Of a transposed convolution.
    batch : int, optional
        Keyword only. Prepended as the batch size to an unbatched ``input_shape``.
    dtype : {'float64', 'float32', 'float16'}, default 'float64'
        Keyword only. Sets the item size used for workspace and the planner (float16
        runs in float32).
    algorithm : str, default 'auto'
        Keyword only. The functions' option: the algorithm each pass would run.
    workspace_limit : int, optional
        Keyword only. The limit the workspace is chunked under (default: the limit in
        force, :func:`convgrad.get_workspace_limit`).

    Returns
    -------
    Report
        ``shapes``, ``padding``, ``output_formula``, ``passes`` (each gradient as a
        correlation: which array slides over which, which axes are summed), ``macs``,
        ``algorithms`` and ``workspace_bytes``.

    Raises
    ------
    ValueError, TypeError
        The same as the functions raise for a bad layer.

    Examples
    --------
    The layer of the origin question:

    >>> import convgrad
    >>> report = convgrad.explain((5, 100, 100), (10, 5, 5, 5))
    >>> report
    <Report 2-D convolution: X 5×100×100, F 10×5×5×5 -> O 10×96×96>
    >>> report.shapes["grad_weight"], report.shapes["grad_input"]
    ((10, 5, 5, 5), (5, 100, 100))
    >>> report.macs["forward"] == 10 * 5 * 5 * 5 * 96 * 96
    True
    >>> "weight_grad" in report.passes
    True
    """
    compute = float_dtype(dtype)
    itemsize = max(compute.itemsize, 4)  # float16 is computed with float32 accumulation
    run_options(algorithm, workspace_limit)
    input_shape = shape_tuple(input_shape, "input_shape")
    weight_shape = shape_tuple(weight_shape, "weight_shape")
    weight_nd(weight_shape, "weight_shape")
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
        out_pad = int_tuple(output_padding, spec.nd, "output_padding", 0)
    else:
        nd = len(weight_shape) - 2
        if output_padding is not None and any(int_tuple(output_padding, nd, "output_padding", 0)):
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
    how = How(itemsize, algorithm)
    passes = transposed_passes(spec, how) if transposed else conv_passes(spec, how)
    shapes = _shapes(spec, transposed)
    depth = depth_note(spec, transposed)
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
        padding_text=tuple(padding_lines(spec, padding, transposed, tpad, out_pad)),
        output_formula=tuple(output_lines(spec, transposed, tpad, out_pad)),
        passes=passes,
        depth_note=depth,
        notes=tuple(notes),
        itemsize=itemsize,
        workspace_limit=get_workspace_limit() if workspace_limit is None else int(workspace_limit),
    )


def _with_batch(input_shape: tuple, weight_shape: tuple, batch) -> tuple:
    batch = positive_int(batch, "batch")
    nd = len(weight_shape) - 2
    if len(input_shape) == nd + 1:
        return (int(batch), *input_shape)
    if len(input_shape) == nd + 2 and input_shape[0] != batch:
        raise ValueError(f"batch ({batch}) differs from input_shape[0] ({input_shape[0]})")
    return input_shape


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

"""The figure of :meth:`convgrad.tools.explain.Report.figure`: the tiling of dE/dF.

Rows are the input channels X[c], columns the output-gradient maps dE/dO[k]; the tile at
(c, k) is the filter gradient that pair makes (dE/dF[k, c] for a convolution, dE/dF[c, k]
for a transposed one), coloured by group; pairs from different groups make no tile.
Optionally a worked example with numbers for one pair, computed by convgrad itself.
matplotlib (the ``show`` extra) is imported here only, with the Agg backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .explain_text import shape_text

_SUFFIXES = (".png", ".svg", ".pdf")
_HIGHLIGHT = "#c0392b"
_GREY = "#d9d9d9"


def require_matplotlib():
    """matplotlib, or :class:`convgrad._extras.MissingExtraError` naming the ``show`` extra."""
    from .._extras import require

    return require("matplotlib", extra="show", purpose="drawing figures")


def _shown(n: int, limit: int) -> list[int | None]:
    """Indices to draw: all if few, else the first limit-2, a gap (None) and the last."""
    if n <= limit:
        return list(range(n))
    return [*range(limit - 2), None, n - 1]


def _mix(color, amount: float):
    """Blend an RGB(A) colour towards white by ``amount`` (0 = unchanged)."""
    r, g, b = color[:3]
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _box(shape: tuple[int, ...], size: float) -> tuple[float, float, int]:
    """(width, height, layers) of the drawn box for an array of spatial ``shape``."""
    if len(shape) == 1:
        return size, size * min(1.0, max(1.0 / shape[0], 0.16)), 1
    h, w = shape[-2], shape[-1]
    m = max(h, w)
    return size * w / m, size * h / m, (min(shape[0], 3) if len(shape) == 3 else 1)


def _draw_array(ax, cx, cy, shape, size, face, edge, *, grid_max=16, lw=1.0, zorder=2):
    """Draw an array of spatial ``shape`` as a box centred at (cx, cy); returns its half
    height. 3-D arrays are drawn as a stack of up to three offset slices."""
    from matplotlib.patches import Rectangle

    w, h, layers = _box(shape, size)
    off = 0.07 * size
    rows, cols = (1, shape[0]) if len(shape) == 1 else (shape[-2], shape[-1])
    for layer in reversed(range(layers)):
        x0 = cx - w / 2 + layer * off - (layers - 1) * off / 2
        y0 = cy - h / 2 + layer * off - (layers - 1) * off / 2
        ax.add_patch(
            Rectangle((x0, y0), w, h, facecolor=face, edgecolor=edge, lw=lw, zorder=zorder - layer)
        )
        if layer == 0 and rows <= grid_max and cols <= grid_max:
            for i in range(1, cols):
                ax.plot(
                    [x0 + w * i / cols] * 2,
                    [y0, y0 + h],
                    color=edge,
                    lw=0.4,
                    alpha=0.6,
                    zorder=zorder,
                )
            for i in range(1, rows):
                ax.plot(
                    [x0, x0 + w],
                    [y0 + h * i / rows] * 2,
                    color=edge,
                    lw=0.4,
                    alpha=0.6,
                    zorder=zorder,
                )
    return h / 2 + (layers - 1) * off / 2


def layout(report):
    """Channel counts, spatial shapes and group sizes of the tiling."""
    spec = report.spec
    shapes = report.shapes
    nd = spec.nd
    x_shape, o_shape, w_shape = shapes["input"], shapes["output"], shapes["weight"]
    c, k = x_shape[-nd - 1], o_shape[-nd - 1]
    g = spec.groups
    return dict(
        C=c,
        K=k,
        G=g,
        cg=c // g,
        kg=k // g,
        x_sp=x_shape[-nd:],
        o_sp=o_shape[-nd:],
        k_sp=w_shape[2:],
        nd=nd,
    )


def _pair_formula(report, k, c) -> str:
    """' = Σₙ A ⋆ B' for the pair (k, c); the sliding map is spread by the stride (s − 1 zeros
    between samples) when the stride is > 1, as in the report's equations."""
    spread = any(s > 1 for s in report.spec.stride)
    sep = "," if isinstance(k, int) else ", "
    if report.transposed:
        a, b = f"dE/dO[n{sep}{k}]", f"X[n{sep}{c}]"
        head = f"[{c}{sep}{k}]" if not isinstance(k, int) else ""
    else:
        a, b = f"X[n{sep}{c}]", f"dE/dO[n{sep}{k}]"
        head = f"[{k}{sep}{c}]" if not isinstance(k, int) else ""
    if spread:
        b = f"dilate_s({b})"
    return f"{head} = Σₙ {a} $\\star$ {b}"


def _tile_name(report, k: int, c: int, cg: int, kg: int) -> str:
    if report.transposed:
        return f"[{c},{k % kg}]"
    return f"[{k},{c % cg}]"


def draw(report, path=None, *, worked: bool | None = None, max_channels: int = 12):
    """Draw ``report``'s dE/dF tiling; save to ``path`` (PNG, SVG or PDF by extension)."""
    require_matplotlib()
    from matplotlib.figure import Figure  # a bare Figure draws with Agg, never a GUI

    if path is not None and Path(path).suffix.lower() not in _SUFFIXES:
        raise ValueError(f"figure path must end in one of {_SUFFIXES}, got {str(path)!r}")
    if max_channels < 3:
        raise ValueError(f"max_channels must be >= 3, got {max_channels!r}")
    lay = layout(report)
    cols = _shown(lay["K"], max_channels)
    rows = _shown(lay["C"], max_channels)
    if worked is None:
        worked = worked_possible(lay) and math.prod(lay["x_sp"]) <= 100
    plan = _worked_plan(report, lay) if worked and worked_possible(lay) else None

    # sizes in inches: the tiling is drawn at 1 inch per cell, the worked example at `ws`
    title_h, unit = 1.3, 1.0
    tx, ty = len(cols) + 1.3, len(rows) + 1.7
    fig_w = max(8.0, tx * unit + 0.4)
    worked_h = ws = 0.0
    if plan is not None:
        wd, hd = plan["size"]
        ws = min(0.3, (fig_w - 0.4) / wd)
        worked_h = hd * ws + 0.3
    fig_h = title_h + ty * unit + worked_h
    fig = Figure(figsize=(fig_w, fig_h), dpi=110)
    ax = fig.add_axes(
        ((fig_w - tx * unit) / 2 / fig_w, worked_h / fig_h, tx * unit / fig_w, ty * unit / fig_h)
    )
    _draw_tiling(ax, report, lay, rows, cols, room=(fig_w + tx * unit) / 2 - 0.3)
    title, subtitle = _titles(report, lay)
    fig.text(0.5, 1 - 0.12 / fig_h, title, ha="center", va="top", fontsize=13, fontweight="bold")
    fig.text(
        0.5,
        1 - 0.48 / fig_h,
        subtitle,
        ha="center",
        va="top",
        fontsize=9,
        color="#444444",
        linespacing=1.6,
    )
    if plan is not None:
        wd, hd = plan["size"]
        left = (fig_w - wd * ws) / 2
        ax_w = fig.add_axes((left / fig_w, 0.15 / fig_h, wd * ws / fig_w, hd * ws / fig_h))
        _draw_worked(ax_w, plan)
    if path is not None:
        fig.savefig(path, dpi=110, facecolor="white")
    return fig


def _titles(report, lay):
    spec = report.spec
    title = f"dE/dF{_pair_formula(report, 'k', 'c')}: one tile per pair"
    parts = [
        f"X {shape_text(report.shapes['input'])}",
        f"dE/dO {shape_text(report.shapes['grad_output'])}",
        f"dE/dF {shape_text(report.shapes['grad_weight'])}",
        f"stride {spec.stride}",
        f"padding {report.options['padding']!r}"
        + ("" if report.transposed else f" = {tuple(report.padding)}"),
    ]
    if spec.padding_mode != "zeros":
        parts.append(f"padding_mode {spec.padding_mode!r}")
    if any(d > 1 for d in spec.dilation):
        parts.append(f"dilation {spec.dilation}")
    if lay["G"] > 1:
        parts.append(f"groups {lay['G']}")
    sub = "   ·   ".join(parts)
    sub += "\nrows: input channels X[c]   ·   columns: output-gradient maps dE/dO[k]"
    sub += "\neach tile: the filter gradient of that pair, summed over the batch"
    return title, sub


def _draw_tiling(ax, report, lay, rows, cols, room: float = 8.0):
    """``room``: inches from the left of the tiling to the right edge of the figure."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    cg, kg, g = lay["cg"], lay["kg"], lay["G"]
    size = 0.62
    ax.set_xlim(-0.75, len(cols) + 0.55)
    ax.set_ylim(-len(rows) - 0.95, 0.75)
    ax.set_aspect("equal")
    ax.axis("off")

    # highlighted pair: a column k and a row c of the same group, both drawn
    kh = min(2, lay["K"] - 1) if min(2, lay["K"] - 1) in cols else cols[0]
    grp = kh // kg
    ch = next(
        (c for c in rows if c is not None and c // cg == grp and c % cg == min(1, cg - 1)), None
    )
    if ch is None:
        ch = next((c for c in rows if c is not None and c // cg == grp), None)

    for j, k in enumerate(cols):
        x = j + 1
        if k is None:
            ax.text(x, 0, "⋯", ha="center", va="center", fontsize=16, color="#666666")
            continue
        color = palette(k // kg % 10)
        hh = _draw_array(
            ax,
            x,
            0.12,
            lay["o_sp"],
            size,
            _mix(color, 0.72),
            _mix(color, 0.1),
            lw=2.0 if k == kh else 1.0,
        )
        ax.text(
            x,
            0.12 + hh + 0.04,
            f"dE/dO[{k}]",
            ha="center",
            va="bottom",
            fontsize=8.5,
            fontweight="bold" if k == kh else None,
        )
        if j == 0:
            ax.text(
                x,
                0.12 - hh - 0.04,
                shape_text(lay["o_sp"]),
                ha="center",
                va="top",
                fontsize=7,
                color="#555555",
            )
    for i, c in enumerate(rows):
        y = -(i + 1)
        if c is None:
            ax.text(0, y, "⋮", ha="center", va="center", fontsize=16, color="#666666")
            continue
        color = palette(c // cg % 10)
        hh = _draw_array(
            ax,
            -0.05,
            y,
            lay["x_sp"],
            size,
            _mix(color, 0.72),
            _mix(color, 0.1),
            lw=2.0 if c == ch else 1.0,
        )
        ax.text(
            -0.05 - size / 2 - 0.05,
            y,
            f"X[{c}]",
            ha="right",
            va="center",
            fontsize=8.5,
            rotation=90,
            fontweight="bold" if c == ch else None,
        )
        if i == 0:
            ax.text(
                -0.05,
                y - hh - 0.03,
                shape_text(lay["x_sp"]),
                ha="center",
                va="top",
                fontsize=7,
                color="#555555",
            )

    for i, c in enumerate(rows):
        for j, k in enumerate(cols):
            x, y = j + 1, -(i + 1)
            if c is None or k is None:
                if (c is None) != (k is None):
                    ax.text(
                        x,
                        y,
                        "⋮" if c is None else "⋯",
                        ha="center",
                        va="center",
                        fontsize=12,
                        color="#999999",
                    )
                continue
            same = c // cg == k // kg
            if not same:
                ax.plot([x], [y], marker="o", ms=2.5, color=_GREY)
                continue
            color = palette(k // kg % 10)
            hl = c == ch and k == kh
            hh = _draw_array(
                ax,
                x,
                y + 0.06,
                lay["k_sp"],
                size * 0.62,
                _mix(color, 0.3),
                _HIGHLIGHT if hl else _mix(color, 0.0),
                lw=2.2 if hl else 0.8,
                zorder=4,
            )
            ax.text(
                x,
                y + 0.06 - hh - 0.03,
                _tile_name(report, k, c, cg, kg),
                ha="center",
                va="top",
                fontsize=7,
                color=_HIGHLIGHT if hl else "#333333",
            )

    if ch is not None and kh is not None:
        jx, iy = cols.index(kh) + 1, -(rows.index(ch) + 1)
        head_h = _box(lay["o_sp"], size)[1] / 2
        tile_w, tile_h, _ = _box(lay["k_sp"], size * 0.62)
        row_w = _box(lay["x_sp"], size)[0] / 2
        ax.plot(
            [jx, jx],
            [0.12 - head_h - 0.02, iy + 0.06 + tile_h / 2 + 0.02],
            ls="--",
            lw=1.0,
            color=_HIGHLIGHT,
            zorder=1,
        )
        ax.plot(
            [-0.05 + row_w + 0.02, jx - tile_w / 2 - 0.02],
            [iy, iy],
            ls="--",
            lw=1.0,
            color=_HIGHLIGHT,
            zorder=1,
        )
        name = _tile_name(report, kh, ch, cg, kg)
        note = f"dE/dF{name}{_pair_formula(report, kh, ch)}"
        # one short line each, so the note stays left of the first column
        lines = note.replace(" = ", " =\n").replace(" dilate_s(", "\ndilate_s(")
        ax.text(
            -0.7,
            0.62 if "dilate_s" not in lines else 0.72,
            "highlighted:\n" + lines,
            ha="left",
            va="center" if "dilate_s" not in lines else "top",
            fontsize=8,
            color=_HIGHLIGHT,
            linespacing=1.4,
        )
    kernel = shape_text(lay["k_sp"])
    if report.transposed:
        stack = (
            f"each row c stacks its {kg} tile{'s' if kg > 1 else ''} into dE/dF[c] ({kg}×{kernel}): its depth "
            "comes from the output channels k"
        )
    else:
        stack = (
            f"each column k stacks its {cg} tile{'s' if cg > 1 else ''} into dE/dF[k] ({cg}×{kernel}): its depth "
            "comes from the input channels c, not from dE/dO[k]"
        )
    import textwrap

    stack = "\n".join(textwrap.wrap(stack, max(40, int(room * 12.5))))
    ax.text(-0.7, -len(rows) - 0.38, stack, ha="left", va="top", fontsize=8.5, color="#333333")
    if g > 1:
        ax.text(
            len(cols) + 0.5,
            -len(rows) - 0.8,
            f"{g} groups (colours); grey dots: pairs from different groups make no tile",
            ha="right",
            va="center",
            fontsize=8,
            color="#555555",
        )


# ---------------------------------------------------------------------- worked example


def worked_possible(lay) -> bool:
    return lay["nd"] in (1, 2) and max(lay["x_sp"]) <= 12 and max(lay["o_sp"]) <= 12


def worked_numbers(report, lay):
    """One pair of one sample with small integers: (lhs, window, result, captions)."""
    from .. import functional

    spec = report.spec
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(1, 1, *lay["x_sp"])).astype(np.float64)
    dy = rng.integers(-2, 3, size=(1, 1, *lay["o_sp"])).astype(np.float64)
    k_shape = (1, 1, *lay["k_sp"])
    if report.transposed:
        w = np.zeros(k_shape)
        opts = report.options
        _, gw, _ = functional.conv_transpose_backward(
            dy,
            x,
            w,
            None,
            opts["stride"],
            opts["padding"],
            opts["output_padding"],
            1,
            opts["dilation"],
        )
    else:
        gw = functional.conv_weight_grad(
            x, dy, k_shape, spec.stride, spec.pads, spec.dilation, 1, spec.padding_mode
        )
        if spec.padding_mode != "zeros":  # show the array the window really slides over
            mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
            x = np.pad(x, ((0, 0), (0, 0), *spec.pads), mode=mode[spec.padding_mode])
    return x[0, 0], dy[0, 0], gw[0, 0]


def _matrix_size(values, pads, spread) -> tuple[int, int]:
    v = np.atleast_2d(values)
    pads = ((0, 0), *pads) if len(pads) == 1 else tuple(pads)
    spread = (1, *spread) if len(spread) == 1 else tuple(spread)
    rows = (v.shape[0] - 1) * spread[0] + 1 + pads[0][0] + pads[0][1]
    cols = (v.shape[1] - 1) * spread[1] + 1 + pads[1][0] + pads[1][1]
    return cols, rows


def _matrix(ax, x0, y0, values, title, *, cmap, pads, spread):
    """Numbers of a 1-D/2-D array as a coloured table (one unit per cell) with its top-left
    corner at (x0, y0). ``pads`` ((lo, hi), ...) draws zero padding around it in grey;
    ``spread`` inserts s-1 zeros between samples (a stride-dilated operand)."""
    from matplotlib.patches import Rectangle

    v = np.atleast_2d(values)
    pads = ((0, 0), *pads) if len(pads) == 1 else tuple(pads)
    spread = (1, *spread) if len(spread) == 1 else tuple(spread)
    cols, rows = _matrix_size(values, pads, spread)
    lim = max(np.abs(v).max(), 1.0)
    for r in range(rows):
        for c in range(cols):
            rr, cc = r - pads[0][0], c - pads[1][0]
            inside = rr >= 0 and cc >= 0 and rr % spread[0] == 0 and cc % spread[1] == 0
            inside = inside and rr // spread[0] < v.shape[0] and cc // spread[1] < v.shape[1]
            x, y = x0 + c, y0 - (r + 1)
            if inside:
                val = v[rr // spread[0], cc // spread[1]]
                face, text = cmap(0.5 + 0.32 * val / lim), f"{val:g}"
            else:
                face, text = "#f0f0f0", "0"
            ax.add_patch(Rectangle((x, y), 1, 1, facecolor=face, edgecolor="white", lw=1.2))
            ax.text(
                x + 0.5,
                y + 0.5,
                text,
                ha="center",
                va="center",
                fontsize=7.5,
                color="#222222" if inside else "#b0b0b0",
            )
    ax.text(x0 + cols / 2, y0 + 0.3, title, ha="center", va="bottom", fontsize=8.5)
    return cols, rows


_GAP = 2.0  # table units between the worked example's matrices


def _worked_plan(report, lay) -> dict:
    """The three matrices of the worked example, their titles, and the block's size."""
    x, dy, gw = worked_numbers(report, lay)
    spec = report.spec
    ones = ((0, 0),) * lay["nd"]
    spread = spec.stride if any(s > 1 for s in spec.stride) else (1,) * lay["nd"]
    tail = " spread by the stride" if any(s > 1 for s in spec.stride) else ""
    if report.transposed:
        pads = tuple(report.passes["weight_grad"].corr.padding)
        mats = [
            (
                dy,
                "dE/dO[0, k]" + (" (zero padding grey)" if any(map(any, pads)) else ""),
                pads,
                (1,) * lay["nd"],
            ),
            (x, "X[0, c]" + tail, ones, spread),
            (gw, "dE/dF[c, k]", ones, (1,) * lay["nd"]),
        ]
        what = "dE/dO"
    else:
        pads = spec.pads if spec.padding_mode == "zeros" else ones
        if spec.padding_mode != "zeros":  # x is shown already padded with its own border
            x_title = f"X[0, c] padded in '{spec.padding_mode}' mode"
        else:
            x_title = "X[0, c]" + (" (zero padding grey)" if any(map(any, pads)) else "")
        mats = [
            (
                x,
                x_title,
                pads,
                (1,) * lay["nd"],
            ),
            (dy, "dE/dO[0, k]" + tail, ones, spread),
            (gw, "dE/dF[k, c]", ones, (1,) * lay["nd"]),
        ]
        what = "X"
    sizes = [_matrix_size(v, p, s) for v, _, p, s in mats]
    width = sum(w for w, _ in sizes) + 2 * _GAP
    dil = "" if all(d == 1 for d in spec.dilation) else f" in steps of the dilation {spec.dilation}"
    caption = (
        f"Worked example, one sample, one pair, computed by convgrad: the middle map slides over "
        f"{what}{dil}; at each position, the sum of the products is one tap of the filter "
        "gradient (red: the first position and the tap it gives)."
    )
    height = max(h for _, h in sizes) + 4.0
    return dict(mats=mats, size=(width + 0.4, height), caption=caption, sizes=sizes)


def _draw_worked(ax, plan) -> None:
    import textwrap

    import matplotlib

    cmap = matplotlib.colormaps["RdBu_r"]
    ax.axis("off")
    width, height = plan["size"]
    ax.set_xlim(-0.2, width - 0.2)
    ax.set_ylim(-height + 1.2, 1.2)
    from matplotlib.patches import Rectangle

    x0 = 0.0
    tallest = max(h for _, h in plan["sizes"])
    for i, (values, title, pads, spread) in enumerate(plan["mats"]):
        w, h = _matrix(ax, x0, 0, values, title, cmap=cmap, pads=pads, spread=spread)
        if i < 2:
            sym = "$\\star$" if i == 0 else "="
            ax.text(x0 + w + _GAP / 2, -tallest / 2, sym, ha="center", va="center", fontsize=18)
        if i == 2:  # the window of the first position and the tap it makes
            ww, wh = plan["sizes"][1]
            style = dict(fill=False, edgecolor=_HIGHLIGHT, lw=2.0, zorder=5)
            ax.add_patch(Rectangle((0, -wh), ww, wh, ls="--", **style))
            ax.add_patch(Rectangle((x0, -1), 1, 1, **style))
        x0 += w + _GAP
    chars = max(40, int(width * 4.2))
    ax.text(
        0,
        -tallest - 0.6,
        "\n".join(textwrap.wrap(plan["caption"], chars)),
        ha="left",
        va="top",
        fontsize=8,
        color="#444444",
    )

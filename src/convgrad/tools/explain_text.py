"""The words of :func:`convgrad.explain`: number formatting, the padding and output-size
lines with the user's numbers filled in, and why the channel depths need not match."""

from __future__ import annotations

from typing import Any

from .._spec import ConvSpec


def _dim_names(nd: int) -> tuple[str, ...]:
    return {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}[nd]


def shape_text(shape) -> str:
    return "×".join(str(v) for v in shape)


def bytes_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def limit_text(workspace: int, limit: int) -> str:
    if workspace <= limit:
        return f" (within the {bytes_text(limit)} workspace limit)"
    return (
        f" in all, built in chunks over the batch and channels to fit the {bytes_text(limit)} limit"
    )


def count_text(n: int) -> str:
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


def pad_text(pads) -> str:
    return ", ".join(f"({lo}, {hi})" for lo, hi in pads)


def remainders(spec: ConvSpec) -> list[int]:
    """Rows of padded X that the last window never reaches, per dim."""
    return [
        size + lo + hi - ((out - 1) * s + ke)
        for size, (lo, hi), out, s, ke in zip(
            spec.in_spatial, spec.pads, spec.out_spatial, spec.stride, spec.effective_kernel
        )
    ]


def padding_lines(spec: ConvSpec, padding: Any, transposed: bool, tpad, out_pad=None) -> list[str]:
    names = _dim_names(spec.nd)
    if transposed:
        out_pad = out_pad or (0,) * spec.nd
        lines = [f"padding {tpad} (PyTorch's meaning): each side of the output is cropped by p;"]
        extra = " (the high end also gets output_padding more)" if any(out_pad) else ""
        lines.append(
            f"equivalently the input, spread out by the stride, gets d·(k−1)−p zeros per side{extra}"
        )
        for n, d, k, p, op in zip(names, spec.dilation, spec.kernel, tpad, out_pad):
            low = d * (k - 1) - p
            high = f", high {low} + {op} = {low + op}" if any(out_pad) else ""
            lines.append(f"  {n}: {d}·({k}−1)−{p} = {low}{high}")
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
    if isinstance(padding, str) and padding == "full":
        lines = [
            "padding 'full': d·(k−1) zeros on both sides of every dim, so every overlap of X "
            "with the dilated kernel is an output (SciPy's correlate(mode='full')); "
            "at stride 1, out = in + d·(k−1)"
        ]
        for n, k, d, (lo, hi) in zip(names, spec.kernel, spec.dilation, spec.pads):
            lines.append(f"  {n}: {d}·({k}−1) = {lo} -> low {lo}, high {hi}")
        return lines
    desc = "'valid' (no padding)" if padding == "valid" else repr(padding)
    lines = [f"padding {desc} -> (low, high) per dim: {pad_text(spec.pads)}"]
    if spec.padding_mode != "zeros":
        lines.append(
            f"padding_mode '{spec.padding_mode}': X is padded explicitly with copies of its own "
            "border before the correlation; the gradient of that pad folds the border back "
            "(each padded position's gradient is added onto the X position it copied)"
        )
    return lines


def output_lines(spec: ConvSpec, transposed: bool, tpad, out_pad) -> list[str]:
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
    rems = remainders(spec)
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


def depth_note(spec: ConvSpec, transposed: bool) -> str:
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

"""The gradient explorer: one self-contained HTML page for a layer :func:`convgrad.explain`
accepts, where pointing at any cell of O, dE/dX, dE/dF or dE/db highlights the cells that
make it and writes the sum out with the numbers of a worked example.

Everything the page shows is computed here, from the layer's :class:`~convgrad.tools.explain.Report`
and the public functions: the worked example's values (small random integers) run through
:func:`convgrad.conv` / :func:`convgrad.conv_backward` (or the transposed pair), and the
padded position each tap reads comes from :func:`convgrad.conv` itself run on the positions
``1..n``. The page's script only expands those per-dimension index tables into the terms of
one cell; :func:`contributions` is the same expansion in Python, which the tests sum and
compare with the library's numbers for every cell.

Every layer is drawn through one forward convolution, the one the code runs: a *big* side
(its input, padded) and a *small* side (its output), with a weight ``(small channels,
big channels / groups, *kernel)``. Its three correlations are

- ``gather``: small[o] = Σ_j big_padded[o·s + j·d] · W[j]             (conv forward; dE/dX of
  a transposed convolution)
- ``scatter``: big[i] = Σ over the padded positions p that copy i of the window of the
  zero-inserted small map at p, times the flipped taps (conv dE/dX; transposed forward)
- ``weight``: W[j] = Σ_o big_padded[o·s + j·d] · small[o]               (dE/dF of both)

and ``sum`` (dE/db) adds a whole output-gradient map.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
from importlib import resources
from typing import Any

import numpy as np

__all__ = [
    "page_data",
    "contributions",
    "decode",
    "display_source",
    "term_value",
    "to_html",
    "MAX_VALUES",
]

# The page embeds every value of the worked example; past this many it would be too heavy.
MAX_VALUES = 3_000_000
LOW, HIGH = -2, 2  # the worked example's integers

_LABELS = {
    "X": "X",
    "F": "F",
    "b": "b",
    "O": "O",
    "dO": "dE/dO",
    "dX": "dE/dX",
    "dF": "dE/dF",
    "db": "dE/db",
}


def _x(shape) -> str:
    return "×".join(str(int(v)) for v in shape)


# --------------------------------------------------------------------------- index tables


def _source_table(n: int, lo: int, length: int, mode: str) -> list[int]:
    """Input index each padded position 0..length-1 copies (-1: a zero or outside).

    Asked of :func:`convgrad.conv` itself: a 1x1 correlation of the positions 1..n padded by
    ``(lo, length - n - lo)`` in ``mode`` returns, at each padded position, 1 + the index it
    copies, or 0 for zero padding.
    """
    from ... import functional

    if mode == "zeros":
        return [p - lo if 0 <= p - lo < n else -1 for p in range(length)]
    positions = np.arange(1, n + 1, dtype=np.float64)[None, None]
    pads = ((lo, length - n - lo),)
    copied = functional.conv(positions, np.ones((1, 1, 1)), padding=pads, padding_mode=mode)[0, 0]
    return [int(round(v)) - 1 for v in copied]


def _dims(spec) -> list[dict[str, Any]]:
    dims = []
    for a in range(spec.nd):
        n, out, k = spec.in_spatial[a], spec.out_spatial[a], spec.kernel[a]
        s, d = spec.stride[a], spec.dilation[a]
        lo, hi = spec.pads[a]
        read = (out - 1) * s + d * (k - 1) + 1  # padded positions any window reaches
        length = max(n + lo + hi, read)
        dims.append(
            dict(
                n=n,
                out=out,
                k=k,
                s=s,
                d=d,
                lo=lo,
                hi=hi,
                L=length,
                read=read,
                E=length + d * (k - 1),
                src=_source_table(n, lo, length, spec.padding_mode),
            )
        )
    return dims


# --------------------------------------------------------------------------- worked values


def _encode(a: np.ndarray) -> dict[str, Any]:
    ints = np.rint(a)
    if not np.allclose(a, ints, rtol=0, atol=1e-6):  # pragma: no cover - integer inputs
        raise AssertionError("the worked example's results are not integers")
    top = int(np.abs(ints).max()) if ints.size else 0
    dtype = next(t for t in ("<i1", "<i2", "<i4") if top <= np.iinfo(np.dtype(t)).max)
    raw = np.ascontiguousarray(ints.astype(dtype)).tobytes()
    return {
        "shape": list(a.shape),
        "dtype": dtype[1:],
        "b64": base64.b64encode(raw).decode("ascii"),
    }


def decode(entry: dict[str, Any]) -> np.ndarray:
    """An array of the page's data back as float64 (for the tests)."""
    raw = base64.b64decode(entry["b64"])
    return np.frombuffer(raw, dtype="<" + entry["dtype"]).astype(np.float64).reshape(entry["shape"])


def _worked(report, seed: int) -> dict[str, np.ndarray]:
    from ... import functional

    nd = report.spec.nd
    sample = lambda shape: (1, *shape[-(nd + 1) :])  # noqa: E731 - one sample of the batch
    rng = np.random.default_rng(seed)
    draw = lambda shape: rng.integers(LOW, HIGH + 1, size=shape).astype(np.float64)  # noqa: E731
    x = draw(sample(report.shapes["input"]))
    w = draw(report.shapes["weight"])
    b = draw(report.shapes["bias"])
    dy = draw(sample(report.shapes["output"]))
    opts = dict(report.options)
    if report.transposed:
        y = functional.conv_transpose(x, w, b, **opts)
        dx, dw, db = functional.conv_transpose_backward(dy, x, w, b, **opts)
    else:
        y = functional.conv(x, w, b, **opts)
        dx, dw, db = functional.conv_backward(dy, x, w, b, **opts)
    return {"X": x[0], "F": w, "b": b, "O": y[0], "dO": dy[0], "dX": dx[0], "dF": dw, "db": db}


# --------------------------------------------------------------------------- the page's data


def _passes(transposed: bool, mode: str) -> list[dict[str, Any]]:
    """The three tabs: which array is shown how, and what each result is made of."""
    if not transposed:
        big, small = "X", "dO"
        fold = (
            "zero padding is cut off"
            if mode == "zeros"
            else f"each {mode} padding cell sends its gradient back to the cell it copies"
        )
        forward = [
            dict(name="X", view="padded", role="a"),
            dict(name="F", view="plain", role="b"),
            dict(name="b", view="plain", role="b"),
            dict(name="O", view="plain", role="out", kind="gather", a="X", b="F", bias="b"),
        ]
        forward_text = (
            "O[k] = b[k] + Σ_c X[c] ⋆ F[k, c]: filter F[k] slides over the padded X at the "
            "stride; each cell of O adds the products of its window."
        )
        grad_in = [
            dict(name="dO", view="E", role="a"),
            dict(name="F", view="flip", role="b"),
            dict(name="dX", view="plain", role="out", kind="scatter", a="dO", b="F"),
        ]
        grad_in_text = (
            "dE/dX[c] = Σ_k dE/dO[k] ⋆ rot180(F[k, c]): dE/dO with stride−1 zeros inserted "
            "between its cells and d·(k−1) zeros around it, correlated with the flipped "
            f"filters (a full convolution); {fold}."
        )
        grad_w_text = (
            "dE/dF[k, c] = X[c] ⋆ dE/dO[k]: the whole map dE/dO[k] slides over the padded X[c] "
            "(its cells stride apart, the map moving by the dilation); dE/db[k] = Σ dE/dO[k]."
        )
        weight_panels = [
            dict(name=big, view="padded", role="a"),
            dict(name=small, view="plain", role="b"),
            dict(name="dF", view="plain", role="out", kind="weight", a=big, b=small),
            dict(name="db", view="plain", role="out", kind="sum", a="dO"),
        ]
    else:
        big, small = "dO", "X"
        forward = [
            dict(name="X", view="E", role="a"),
            dict(name="F", view="flip", role="b"),
            dict(name="b", view="plain", role="b"),
            dict(name="O", view="plain", role="out", kind="scatter", a="X", b="F", bias="b"),
        ]
        forward_text = (
            "O[k] = b[k] + Σ_c X[c] ⋆ rot180(F[c, k]): X with stride−1 zeros inserted between "
            "its cells and d·(k−1) zeros around it, correlated with the flipped filters; the "
            "padding p crops p cells off each side of that full result."
        )
        grad_in = [
            dict(name="dO", view="padded", role="a"),
            dict(name="F", view="plain", role="b"),
            dict(name="dX", view="plain", role="out", kind="gather", a="dO", b="F"),
        ]
        grad_in_text = (
            "dE/dX[c] = Σ_k dE/dO[k] ⋆ F[c, k]: an ordinary strided correlation (the forward "
            "pass of the convolution this layer is the transpose of), over dE/dO padded by p."
        )
        grad_w_text = (
            "dE/dF[c, k] = dE/dO[k] ⋆ X[c]: the whole map X[c] slides over the padded dE/dO[k] "
            "(its cells stride apart, the map moving by the dilation); dE/db[k] = Σ dE/dO[k]."
        )
        weight_panels = [
            dict(name=big, view="padded", role="a"),
            dict(name=small, view="plain", role="b"),
            dict(name="dF", view="plain", role="out", kind="weight", a=big, b=small),
            dict(name="db", view="plain", role="out", kind="sum", a="dO"),
        ]
    return [
        dict(id="forward", tab="Forward: O", text=forward_text, panels=forward),
        dict(id="input_grad", tab="dE/dX", text=grad_in_text, panels=grad_in),
        dict(id="weight_grad", tab="dE/dF and dE/db", text=grad_w_text, panels=weight_panels),
    ]


def page_data(report, seed: int = 0) -> dict[str, Any]:
    """Everything the page needs, as JSON-ready data: the layer, the per-dim index tables,
    the worked example's arrays (base64 little-endian integers) and the three passes."""
    spec = report.spec
    sizes = {k: int(np.prod(v[-(spec.nd + 1) :])) for k, v in report.shapes.items()}
    sizes["weight"] = sizes["grad_weight"] = int(np.prod(report.shapes["weight"]))
    total = sum(sizes.values())
    if total > MAX_VALUES:
        raise ValueError(
            f"the explorer page embeds every value of one sample: this layer has {total:,} "
            f"(at most {MAX_VALUES:,}); explain a smaller layer (fewer channels or a smaller map)"
        )
    arrays = _worked(report, seed)
    kind = "transposed convolution" if report.transposed else "convolution"
    sh = report.shapes
    batch = sh["input"][0] if len(sh["input"]) == spec.nd + 2 else None
    sample_note = (
        f"The worked example is one sample of the batch of {batch}: over a batch, dE/dF and "
        "dE/db add these sums over the samples."
        if batch and batch > 1
        else ""
    )
    return {
        "version": 1,
        "head": f"{spec.nd}-D {kind}: X {_x(sh['input'])}, F {_x(sh['weight'])} → O "
        f"{_x(sh['output'])}",
        "options": ", ".join(f"{k}={v!r}" for k, v in report.options.items()),
        "transposed": bool(report.transposed),
        "nd": spec.nd,
        "mode": spec.padding_mode,
        "groups": spec.groups,
        "big_ch": spec.in_channels,
        "small_ch": spec.out_channels,
        "dims": _dims(spec),
        "seed": seed,
        "range": [LOW, HIGH],
        "sample_note": sample_note,
        "labels": _LABELS,
        "arrays": {name: _encode(a) for name, a in arrays.items()},
        "passes": _passes(report.transposed, spec.padding_mode),
    }


# --------------------------------------------------------------------------- contributions


def _panel(data: dict, pass_id: str, name: str) -> dict:
    for p in data["passes"]:
        if p["id"] == pass_id:
            for panel in p["panels"]:
                if panel["name"] == name:
                    return panel
    raise KeyError(f"no panel {name!r} in pass {pass_id!r}")


def _small_at(dim: dict, t: int):
    """Index of the small map's cell at position t of its zero-inserted, padded form."""
    r = t - dim["d"] * (dim["k"] - 1)
    if r < 0 or r % dim["s"] or r // dim["s"] >= dim["out"]:
        return None
    return r // dim["s"]


def _disp_of_big(dims, view: str, ch: int, index) -> tuple:
    """Where cell ``index`` of a big-side map is drawn in a ``view`` (padded or plain)."""
    if view == "padded":
        return (ch, *(i + dim["lo"] for i, dim in zip(index, dims)))
    return (ch, *index)


def contributions(data: dict, pass_id: str, name: str, index) -> list[tuple]:
    """The terms of result cell ``name[index]`` in tab ``pass_id``, from the page's tables.

    Each term is ``(a, b)``; each of a and b is ``None`` (the number 1) or ``(array,
    shown_at, source)``: the panel's array, the cell of the panel it is drawn at (padded or
    zero-inserted coordinates) and the array's index it holds (None: a zero of the padding or
    one the stride inserts). The cell is the sum of the products.
    """
    dims = data["dims"]
    panel = _panel(data, pass_id, name)
    kind = panel["kind"]
    index = tuple(int(i) for i in index)
    groups, big_ch, small_ch = data["groups"], data["big_ch"], data["small_ch"]
    bg, sg = big_ch // groups, small_ch // groups
    a_name = panel["a"]
    terms: list[tuple] = []
    if kind == "gather":
        s_ch, o = index[0], index[1:]
        g = s_ch // sg
        per_dim = [
            [
                (o_a * dim["s"] + j * dim["d"], j, dim["src"][o_a * dim["s"] + j * dim["d"]])
                for j in range(dim["k"])
            ]
            for o_a, dim in zip(o, dims)
        ]
        for bp in range(bg):
            c = g * bg + bp
            for combo in itertools.product(*per_dim):
                p = tuple(t[0] for t in combo)
                j = tuple(t[1] for t in combo)
                src = tuple(t[2] for t in combo)
                a = (a_name, (c, *p), None if min(src) < 0 else (c, *src))
                terms.append((a, (panel["b"], (s_ch, bp, *j), (s_ch, bp, *j))))
    elif kind == "scatter":
        b_ch, i = index[0], index[1:]
        g = b_ch // bg
        bp = b_ch - g * bg
        per_dim = []
        for i_a, dim in zip(i, dims):
            opts = []
            for p in range(dim["L"]):
                if dim["src"][p] != i_a:
                    continue
                for jf in range(dim["k"]):
                    t = p + jf * dim["d"]
                    opts.append((t, jf, _small_at(dim, t)))
            per_dim.append(opts)
        for s_ch in range(g * sg, (g + 1) * sg):
            for combo in itertools.product(*per_dim):
                t = tuple(c[0] for c in combo)
                jf = tuple(c[1] for c in combo)
                o = tuple(c[2] for c in combo)
                real = all(v is not None for v in o)
                a = (a_name, (s_ch, *t), (s_ch, *o) if real else None)
                j = tuple(dim["k"] - 1 - v for v, dim in zip(jf, dims))
                terms.append((a, (panel["b"], (s_ch, bp, *jf), (s_ch, bp, *j))))
    elif kind == "weight":
        s_ch, bp, j = index[0], index[1], index[2:]
        g = s_ch // sg
        c = g * bg + bp
        per_dim = [
            [
                (o_a, o_a * dim["s"] + j_a * dim["d"], dim["src"][o_a * dim["s"] + j_a * dim["d"]])
                for o_a in range(dim["out"])
            ]
            for j_a, dim in zip(j, dims)
        ]
        for combo in itertools.product(*per_dim):
            o = tuple(t[0] for t in combo)
            p = tuple(t[1] for t in combo)
            src = tuple(t[2] for t in combo)
            a = (a_name, (c, *p), None if min(src) < 0 else (c, *src))
            terms.append((a, (panel["b"], (s_ch, *o), (s_ch, *o))))
    elif kind == "sum":
        (k,) = index
        shape = data["arrays"][a_name]["shape"][1:]
        view = _panel(data, pass_id, a_name)["view"]
        for pos in itertools.product(*(range(n) for n in shape)):
            terms.append(((a_name, _disp_of_big(dims, view, k, pos), (k, *pos)), None))
    else:  # pragma: no cover - the passes above name no other kind
        raise ValueError(kind)
    if panel.get("bias"):
        terms.append((None, (panel["bias"], (index[0],), (index[0],))))
    return terms


def display_source(data: dict, pass_id: str, name: str, shown_at) -> tuple | None:
    """The array index a cell of a panel shows (None: a zero of the padding or the stride),
    as the page draws it."""
    view = _panel(data, pass_id, name)["view"]
    dims = data["dims"]
    shown_at = tuple(shown_at)
    if view == "plain":
        return shown_at
    if view == "flip":
        lead, taps = shown_at[:2], shown_at[2:]
        return (*lead, *(dim["k"] - 1 - t for t, dim in zip(taps, dims)))
    ch, pos = shown_at[0], shown_at[1:]
    if view == "padded":
        src = [dim["src"][p] for p, dim in zip(pos, dims)]
    else:  # "E": the zero-inserted, padded small map
        src = [_small_at(dim, t) for t, dim in zip(pos, dims)]
        src = [-1 if v is None else v for v in src]
    return None if min(src) < 0 else (ch, *src)


def term_value(arrays: dict[str, np.ndarray], term: tuple) -> float:
    """The product of one term, with ``arrays`` the page's arrays (or any others of the
    same shapes)."""
    value = 1.0
    for ref in term:
        if ref is None:
            continue
        name, _, src = ref
        value *= 0.0 if src is None else float(arrays[name][src])
    return value


# --------------------------------------------------------------------------- the page


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def to_html(report, *, seed: int = 0, title: str | None = None, fragment: bool = False) -> str:
    """The explorer page of ``report``'s layer: one HTML document, scripts and styles inline.

    ``fragment=True`` gives a ``<div>`` with its own style and script (a notebook's rich
    display) instead of a whole document."""
    data = page_data(report, seed)
    data["report"] = str(report)
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    title = title or f"convgrad explorer — {data['head']}"
    body = (
        '<div class="cgx-wrap"><div class="cgx"><noscript>The explorer needs JavaScript.'
        "</noscript></div>"
        f'<script type="application/json" class="cgx-data">{payload}</script>'
        f"<style>{_asset('explorer.css')}</style>"
        f"<script>{_asset('explorer.js')}</script></div>"
    )
    if fragment:
        return body
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>\n"
    )

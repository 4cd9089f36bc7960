"""The gradient explorer page: its terms add up to the library's numbers, for every cell.

For every result cell (O, dE/dX, dE/dF, dE/db) of small layers covering every option, the
terms the page highlights (``convgrad.tools.explorer.contributions``, the same expansion of the
embedded index tables that the page's script does: ``test_explorer_browser`` compares the
two) are summed with their weights and compared with convgrad's own result, first with the
page's integers and then with random floats in the same places, so that a term at a wrong
index cannot hide behind a zero.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convgrad
from convgrad import explain, reference
from convgrad.tools.explorer import (
    MAX_VALUES,
    contributions,
    decode,
    display_source,
    page_data,
    term_value,
    to_html,
)

ROOT = Path(__file__).resolve().parent.parent

# (input_shape, weight_shape, options): every option of explain
LAYERS = {
    "stride": ((2, 7, 7), (4, 2, 3, 3), {"stride": 2, "padding": 1}),
    "stride-remainder": ((1, 8, 7), (2, 1, 3, 2), {"stride": (3, 2)}),
    "asymmetric": ((1, 5, 6), (2, 1, 3, 3), {"padding": ((2, 0), (1, 3))}),
    "same-stride": ((2, 8, 7), (2, 2, 3, 4), {"stride": 2, "padding": "same"}),
    "full": ((1, 5), (2, 1, 3), {"padding": "full"}),
    "reflect": ((1, 6, 5), (2, 1, 3, 3), {"padding": 2, "padding_mode": "reflect"}),
    "replicate": ((1, 5, 5), (1, 1, 3, 2), {"padding": (2, 1), "padding_mode": "replicate"}),
    "circular": ((2, 5, 4), (2, 2, 3, 3), {"padding": 2, "stride": 2, "padding_mode": "circular"}),
    "dilation": ((1, 9, 8), (2, 1, 3, 2), {"dilation": (2, 3), "padding": 1}),
    "groups": ((4, 5, 5), (6, 2, 2, 3), {"groups": 2, "padding": 1}),
    "depthwise": ((3, 6), (3, 1, 3), {"groups": 3, "stride": 2}),
    "1d": ((2, 11), (3, 2, 4), {"stride": 2, "padding": ((1, 2),), "dilation": 2}),
    "3d": ((2, 4, 5, 4), (2, 2, 2, 3, 2), {"padding": 1, "stride": (1, 2, 1)}),
    "batch": ((3, 2, 5, 5), (2, 2, 3, 3), {"stride": 2}),
    "transposed": ((2, 4, 4), (2, 3, 3, 3), {"stride": 2, "padding": 1, "transposed": True}),
    "transposed-outpad": (
        (2, 3, 4),
        (2, 2, 3, 2),
        {"stride": (2, 3), "padding": (0, 1), "output_padding": (1, 2), "transposed": True},
    ),
    "transposed-dilation-groups": (
        (4, 5),
        (4, 1, 3),
        {"dilation": 2, "groups": 2, "output_padding": 1, "transposed": True},
    ),
    "transposed-3d": ((2, 2, 3, 3), (2, 1, 2, 2, 3), {"stride": 2, "transposed": True}),
}


def _library(report, arrays):
    """convgrad's results for one sample with ``arrays``' X, F, b and dE/dO."""
    opts = dict(report.options)
    x, w, b, dy = arrays["X"][None], arrays["F"], arrays["b"], arrays["dO"][None]
    if report.transposed:
        y = convgrad.conv_transpose(x, w, b, **opts)
        dx, dw, db = convgrad.conv_transpose_backward(dy, x, w, b, **opts)
    else:
        y = convgrad.conv(x, w, b, **opts)
        dx, dw, db = convgrad.conv_backward(dy, x, w, b, **opts)
    return {"O": y[0], "dX": dx[0], "dF": dw, "db": db}


def _results(data):
    for p in data["passes"]:
        for panel in p["panels"]:
            if panel["role"] == "out":
                yield p["id"], panel["name"]


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_cells_terms_sum_to_the_librarys_result(name):
    input_shape, weight_shape, options = LAYERS[name]
    report = explain(input_shape, weight_shape, **options)
    data = page_data(report)
    page = {k: decode(v) for k, v in data["arrays"].items()}
    # the page's integers are convgrad's results on its inputs
    want = _library(report, page)
    for key, value in want.items():
        np.testing.assert_array_equal(page[key], value, err_msg=key)
    rng = np.random.default_rng(1)
    floats = {k: rng.standard_normal(page[k].shape) for k in ("X", "F", "b", "dO")}
    floats.update(_library(report, floats))
    seen = set()
    for pass_id, out in _results(data):
        seen.add((pass_id, out))
        for index in np.ndindex(*page[out].shape):
            terms = contributions(data, pass_id, out, index)
            assert terms, (pass_id, out, index)
            got = sum(term_value(page, t) for t in terms)
            assert got == page[out][index], (pass_id, out, index, got)
            got = sum(term_value(floats, t) for t in terms)
            assert got == pytest.approx(floats[out][index], abs=1e-9), (pass_id, out, index)
            # each term's cells are drawn where the page shows the value it multiplies
            for ref in (r for t in terms for r in t if r is not None):
                array, shown_at, source = ref
                assert display_source(data, pass_id, array, shown_at) == source, ref
    assert {o for _, o in seen} == {"O", "dX", "dF", "db"}


def test_the_layers_cover_every_option():
    reports = {k: explain(i, w, **o) for k, (i, w, o) in LAYERS.items()}
    specs = [r.spec for r in reports.values()]
    conv = [r for r in reports.values() if not r.transposed]
    assert {r.spec.padding_mode for r in conv} == {"zeros", "reflect", "replicate", "circular"}
    assert any(lo != hi for s in specs for lo, hi in s.pads)
    assert {s.nd for s in specs} == {1, 2, 3}
    assert {r.spec.nd for r in reports.values() if r.transposed} == {1, 2, 3}
    assert any(r.options["padding"] == "same" and max(r.spec.stride) > 1 for r in conv)
    assert any(max(s.dilation) > 1 for s in specs) and any(s.groups > 1 for s in specs)
    assert any(s.groups == s.in_channels == s.out_channels for s in specs)  # depthwise
    # a stride that leaves rows of the padded input unread
    assert any(
        (n + lo + hi - d * (k - 1) - 1) % s
        for sp in specs
        for n, (lo, hi), k, s, d in zip(sp.in_spatial, sp.pads, sp.kernel, sp.stride, sp.dilation)
    )
    assert any(r.transposed and np.any(r.options["output_padding"]) for r in reports.values())
    assert any(len(r.shapes["input"]) == r.spec.nd + 2 for r in reports.values())


@pytest.mark.parametrize("name", ["stride", "reflect", "transposed", "1d"])
def test_page_results_match_the_reference(name):
    """The page's numbers, judged by the slow float64 reference (not by convgrad itself)."""
    input_shape, weight_shape, options = LAYERS[name]
    report = explain(input_shape, weight_shape, **options)
    a = {k: decode(v) for k, v in page_data(report)["arrays"].items()}
    opts = {k: v for k, v in report.options.items() if k != "transposed"}
    if report.transposed:
        y = reference.conv_transpose(a["X"][None], a["F"], a["b"], **opts)
        np.testing.assert_allclose(a["O"], y[0], atol=1e-9)
        return
    mode = opts.pop("padding_mode")
    y = reference.conv(a["X"][None], a["F"], a["b"], padding_mode=mode, **opts)
    dx, dw, db = reference.conv_grads(
        a["X"][None], a["F"], a["dO"][None], padding_mode=mode, **opts
    )
    np.testing.assert_allclose(a["O"], y[0], atol=1e-9)
    np.testing.assert_allclose(a["dX"], dx[0], atol=1e-9)
    np.testing.assert_allclose(a["dF"], dw, atol=1e-9)
    np.testing.assert_allclose(a["db"], db, atol=1e-9)


def test_padding_cells_say_what_they_copy():
    """Reflect padding of 2 around 1..5 is 3 2 | 1 2 3 4 5 | 4 3; zero padding shows -1."""
    data = page_data(explain((1, 5), (1, 1, 3), padding=2, padding_mode="reflect"))
    assert data["dims"][0]["src"] == [2, 1, 0, 1, 2, 3, 4, 3, 2]
    data = page_data(explain((1, 5), (1, 1, 3), padding=((1, 2),), padding_mode="circular"))
    assert data["dims"][0]["src"] == [4, 0, 1, 2, 3, 4, 0, 1]
    data = page_data(explain((1, 5), (1, 1, 2), stride=2, padding=((1, 1),)))
    dim = data["dims"][0]
    assert dim["src"] == [-1, 0, 1, 2, 3, 4, -1] and dim["read"] == 6  # the last is never read


def test_weight_gradient_meets_the_whole_output_gradient_map():
    """dE/dF[k, c] of the origin layer: the 96x96 window of X[c] at the tap, and all of
    dE/dO[k]."""
    data = page_data(explain((5, 100, 100), (10, 5, 5, 5)))
    terms = contributions(data, "weight_grad", "dF", (3, 2, 1, 4))
    assert len(terms) == 96 * 96
    xs = {t[0][2] for t in terms}
    assert xs == {(2, i + 1, j + 4) for i in range(96) for j in range(96)}
    assert {t[1][2] for t in terms} == {(3, i, j) for i in range(96) for j in range(96)}


def test_input_gradient_reads_flipped_taps_and_the_strides_zeros():
    """dE/dX of a stride-2 conv: the window of zero-inserted dE/dO meets real cells only at
    taps of the stride's parity; each real term pairs dE/dO[o] with F[j] where o*s + j = i."""
    data = page_data(explain((1, 9), (1, 1, 3), stride=2))
    for i in range(9):
        terms = contributions(data, "input_grad", "dX", (0, i))
        real = [(t[0][2][1], t[1][2][2]) for t in terms if t[0][2] is not None]
        assert sorted(real) == sorted((o, j) for o in range(4) for j in range(3) if o * 2 + j == i)
        assert len(terms) == 3  # every flipped tap is shown, zeros included


def test_page_is_self_contained_and_small():
    html = to_html(explain((5, 100, 100), (10, 5, 5, 5)))
    assert len(html.encode()) < 1_500_000
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(link|img|iframe)\b", html)
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert not re.search(r"https?://", html)
    assert html.count("<script") == 2 and html.count("<style") == 1


def test_report_to_html_repr_html_and_refusal(tmp_path):
    report = explain((2, 7, 7), (4, 2, 3, 3), stride=2, padding=1)
    path = tmp_path / "page.html"
    text = report.to_html(path)
    assert path.read_text(encoding="utf-8") == text
    data = json.loads(
        re.search(r'class="cgx-data">(.*?)</script>', text, re.S).group(1).replace("<\\/", "</")
    )
    assert data["head"].startswith("2-D convolution: X 2×7×7")
    fragment = report._repr_html_()
    assert fragment.startswith('<div class="cgx-wrap">') and "<html" not in fragment
    big = explain((64, 128, 128), (64, 64, 3, 3))
    assert 64 * 128 * 128 * 3 > MAX_VALUES
    with pytest.raises(ValueError, match="smaller layer"):
        big.to_html()
    assert big._repr_html_() is None  # a notebook falls back to the text


def _run(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "convgrad", "explain", *args],
        capture_output=True,
        text=True,
        env=env,
    )


def test_cli_html(tmp_path):
    path = tmp_path / "x.html"
    proc = _run("--input", "1x9", "--weight", "2x1x3", "--stride", "2", "--html", str(path))
    assert proc.returncode == 0, proc.stderr
    assert f"explorer page written to {path}" in proc.stdout
    assert "cgx-data" in path.read_text(encoding="utf-8")
    proc = _run("--input", "1x9", "--weight", "2x1x3", "--html", str(tmp_path / "x.png"))
    assert proc.returncode == 2 and "--html" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("--input", "64x128x128", "--weight", "64x64x3x3", "--html", str(path))
    assert proc.returncode == 2 and "smaller layer" in proc.stderr
    assert proc.stdout == ""  # refused before the report is printed


def test_import_does_not_load_the_explorer():
    code = "import sys, convgrad; print([m for m in sys.modules if 'explorer' in m])"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["explorer-origin", "explorer-stride"])
def test_docs_pages_hold_the_current_numbers(name):
    """docs/ pages embed what page_data computes today (regenerate: docs/make_explorer_docs.py)."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from make_explorer_docs import PAGES
    finally:
        sys.path.remove(str(ROOT / "docs"))
    text = (ROOT / "docs" / f"{name}.html").read_text(encoding="utf-8")
    data = json.loads(
        re.search(r'class="cgx-data">(.*?)</script>', text, re.S).group(1).replace("<\\/", "</")
    )
    data.pop("report")
    input_shape, weight_shape, options = PAGES[name]
    assert data == json.loads(json.dumps(page_data(explain(input_shape, weight_shape, **options))))

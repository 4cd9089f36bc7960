"""The explorer page in a real browser: headless Chromium driven by Playwright.

The page loads without console errors; its script expands every cell's terms exactly as
``convgrad.tools.explorer.contributions`` does (whose sums ``test_explorer`` checks against the
library); selecting a cell highlights exactly the cells of those terms (read back from the
DOM); screenshots are saved under pytest's tmp dir (and copied to $CONVGRAD_ARTIFACTS when
that is set). Skipped, saying why, where Playwright or a Chromium is missing: ``.ci/run``
installs Debian's ``chromium``; $CONVGRAD_CHROMIUM names another executable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from convgrad import explain
from convgrad.tools.explorer import contributions, decode, page_data
from test_explorer import LAYERS

pytestmark = pytest.mark.slow  # a real browser for each test

ROOT = Path(__file__).resolve().parent.parent


def _chromium() -> str | None:
    named = os.environ.get("CONVGRAD_CHROMIUM")
    if named:
        return named
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need playwright (the test extra: pip install -e '.[test]')")
    exe = _chromium()
    if exe is None:
        pytest.skip(
            "browser tests need Chromium: apt-get install chromium (as .ci/run does), "
            "or set CONVGRAD_CHROMIUM to a Chromium or Chrome executable"
        )
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start;
        # --disable-dev-shm-usage: containers often have a tiny /dev/shm
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


class Page:
    """One loaded explorer page and the errors its console reported."""

    def __init__(self, browser, path: Path, hash: str = "", height: int = 1000):
        self.page = browser.new_page(viewport={"width": 1400, "height": height})
        self.page.set_default_timeout(10_000)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.as_uri() + hash)
        self.page.wait_for_selector(".cgx-wrap[data-ready='2']", timeout=20_000)

    def js(self, code: str, arg=None):
        return self.page.evaluate(code, arg)

    def highlighted(self, cls: str = "hl") -> set[tuple[str, tuple[int, ...]]]:
        cells = self.page.eval_on_selector_all(
            f".cgx-panels i.{cls}",
            "els => els.map(e => [e.closest('[data-p]').dataset.p, e.dataset.i])",
        )
        return {(name, tuple(int(v) for v in i.split(","))) for name, i in cells}

    def drawn(self) -> set[tuple[str, tuple[int, ...]]]:
        cells = self.page.eval_on_selector_all(
            ".cgx-panels i[data-i]",
            "els => els.map(e => [e.closest('[data-p]').dataset.p, e.dataset.i])",
        )
        return {(name, tuple(int(v) for v in i.split(","))) for name, i in cells}

    def close(self):
        self.page.close()


def _write(tmp_path, name, report) -> Path:
    path = tmp_path / f"{name}.html"
    report.to_html(path)
    return path


def _canon(ref) -> str:
    if ref is None:
        return "1"
    name, shown, src = ref
    return f"{name}@{list(shown)}={None if src is None else list(src)}"


def _artifact(path: Path) -> None:
    target = os.environ.get("CONVGRAD_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def _results(data):
    for p in data["passes"]:
        for panel in p["panels"]:
            if panel["role"] == "out":
                yield p["id"], panel["name"]


@pytest.mark.parametrize("name", list(LAYERS))
def test_page_script_expands_every_cell_as_python_does(browser, tmp_path, name):
    """For every result cell, the page's terms are exactly the Python terms (whose sums equal
    the library's results: test_explorer)."""
    input_shape, weight_shape, options = LAYERS[name]
    report = explain(input_shape, weight_shape, **options)
    data = page_data(report)
    page = Page(browser, _write(tmp_path, name, report))
    got = page.js(
        """() => {
        const w = document.querySelector('.cgx-wrap'), D = JSON.parse(
            w.querySelector('script.cgx-data').textContent), out = {};
        for (const p of D.passes) for (const panel of p.panels) {
            if (panel.role !== 'out') continue;
            const shape = D.arrays[panel.name].shape, n = shape.reduce((a, b) => a * b, 1);
            for (let flat = 0; flat < n; flat++) {
                let r = flat; const idx = [];
                for (let a = shape.length - 1; a >= 0; a--) { idx.unshift(r % shape[a]); r = Math.floor(r / shape[a]); }
                out[p.id + ':' + panel.name + ':' + idx.join(',')] = w.cgx.contributions(p.id, panel.name, idx);
            }
        }
        return out;
    }"""
    )
    want = {}
    for pass_id, out in _results(data):
        shape = decode(data["arrays"][out]).shape
        for index in np.ndindex(*shape):
            terms = contributions(data, pass_id, out, index)
            want[f"{pass_id}:{out}:{','.join(map(str, index))}"] = sorted(
                f"{_canon(a)}*{_canon(b)}" for a, b in terms
            )
    assert set(got) == set(want)
    for key, terms in got.items():
        assert sorted(f"{_canon(a)}*{_canon(b)}" for a, b in terms) == want[key], key
    assert page.errors == []
    page.close()


# (layer, tab, result, index): cells clicked in the page
CLICKS = [
    ("stride", "forward", "O", (1, 0, 0)),
    ("stride", "forward", "O", (3, 3, 2)),
    ("stride", "input_grad", "dX", (1, 6, 5)),
    ("stride", "weight_grad", "dF", (2, 1, 2, 0)),
    ("stride", "weight_grad", "db", (3,)),
    ("reflect", "forward", "O", (1, 0, 1)),
    ("reflect", "input_grad", "dX", (0, 1, 0)),
    ("reflect", "weight_grad", "dF", (0, 0, 0, 2)),
    ("circular", "input_grad", "dX", (1, 4, 0)),
    ("replicate", "forward", "O", (0, 5, 5)),
    ("same-stride", "input_grad", "dX", (1, 7, 6)),
    ("asymmetric", "weight_grad", "dF", (1, 0, 2, 1)),
    ("dilation", "input_grad", "dX", (0, 4, 3)),
    ("groups", "forward", "O", (4, 2, 1)),
    ("groups", "input_grad", "dX", (3, 1, 1)),
    ("1d", "input_grad", "dX", (1, 0)),
    ("1d", "weight_grad", "dF", (2, 1, 3)),
    ("transposed", "forward", "O", (2, 0, 0)),
    ("transposed", "forward", "O", (1, 4, 3)),
    ("transposed", "input_grad", "dX", (1, 3, 3)),
    ("transposed-outpad", "forward", "O", (1, 7, 10)),
    ("transposed-outpad", "weight_grad", "dF", (1, 1, 2, 0)),
    ("transposed-outpad", "weight_grad", "db", (1,)),
]


@pytest.mark.parametrize("name, tab, result, index", CLICKS)
def test_clicking_a_cell_highlights_exactly_its_terms(browser, tmp_path, name, tab, result, index):
    input_shape, weight_shape, options = LAYERS[name]
    report = explain(input_shape, weight_shape, **options)
    data = page_data(report)
    page = Page(browser, _write(tmp_path, name, report))
    page.page.click(f"[data-tab='{tab}']")
    page.page.click(f".cgx-panels [data-p='{result}'] i[data-i='{','.join(map(str, index))}']")
    terms = contributions(data, tab, result, index)
    want = {(ref[0], tuple(ref[1])) for t in terms for ref in t if ref is not None}
    assert page.highlighted() == want  # small layers: every cell is drawn
    assert page.highlighted("sel") == {(result, tuple(index))}
    # a padding-mode copy marks the input cell it copies
    homes = set()
    for ref in (r for t in terms for r in t if r is not None and r[2] is not None):
        panel = next(
            p for q in data["passes"] if q["id"] == tab for p in q["panels"] if p["name"] == ref[0]
        )
        if panel["view"] == "padded":
            home = (ref[2][0], *(v + d["lo"] for v, d in zip(ref[2][1:], data["dims"])))
            if home != tuple(ref[1]):
                homes.add((ref[0], home))
    assert page.highlighted("from") == homes - want
    want_value = decode(data["arrays"][result])[tuple(index)]
    total = page.page.get_attribute(".cgx-sum [data-total]", "data-total")
    assert float(total) == want_value
    assert page.page.locator(".cgx-sum .cgx-ok").count() == 1
    assert page.errors == []
    page.close()


def test_mode_padding_is_marked_and_explained(browser, tmp_path):
    report = explain(*LAYERS["reflect"][:2], **LAYERS["reflect"][2])
    page = Page(browser, _write(tmp_path, "reflect", report))
    # X padded by 2 in reflect mode: the corner at (-2, -2) copies X[0, 2, 2]
    cell = page.page.locator(".cgx-panels [data-p='X'] i[data-i='0,0,0']")
    assert "copy" in cell.get_attribute("class")
    cell.hover()
    assert page.page.text_content(".cgx-info") == (
        "X[0, -2, -2]: reflect padding, a copy of X[0, 2, 2] = "
        + f"{int(decode(page_data(report)['arrays']['X'])[0, 2, 2])}".replace("-", "\u2212")
    )
    assert page.errors == []
    page.close()


def test_three_d_layers_show_one_depth_slice(browser, tmp_path):
    input_shape, weight_shape, options = LAYERS["3d"]
    report = explain(input_shape, weight_shape, **options)
    data = page_data(report)
    page = Page(browser, _write(tmp_path, "3d", report))
    index = (1, 3, 1, 2)
    page.js("([i]) => document.querySelector('.cgx-wrap').cgx.select('forward', 'O', i)", [index])
    terms = contributions(data, "forward", "O", index)
    want = {(ref[0], tuple(ref[1])) for t in terms for ref in t if ref is not None}
    drawn = page.drawn()
    assert page.highlighted() == want & drawn
    assert page.highlighted("sel") == {("O", index)}
    # X is drawn at the first padded depth the window reads: O depth 3 reads X depths 3..4
    assert {i[1] for n, i in drawn if n == "X"} == {3}
    assert "highlighted at depth 3, 4" in page.page.text_content("[data-p='X'] .cgx-zhl")
    page.page.fill("[data-p='X'] input[data-nav='z']", "4")
    assert {i[1] for n, i in page.drawn() if n == "X"} == {4}
    assert page.highlighted() == want & page.drawn()
    assert page.errors == []
    page.close()


def test_step_through_slides_the_window(browser, tmp_path):
    report = explain(*LAYERS["stride"][:2], **LAYERS["stride"][2])
    page = Page(browser, _write(tmp_path, "stride", report))
    page.page.click("[data-stepbtn='first']")
    assert page.highlighted("sel") == {("O", (0, 0, 0))}
    page.page.click("[data-stepbtn='next']")
    page.page.click("[data-stepbtn='next']")
    assert page.highlighted("sel") == {("O", (0, 0, 2))}
    window = {i for n, i in page.highlighted() if n == "X"}
    assert {i[1:] for i in window} == {(r, c) for r in range(3) for c in range(4, 7)}
    page.page.click("[data-stepbtn='prev']")
    assert page.highlighted("sel") == {("O", (0, 0, 1))}
    page.page.click("[data-stepbtn='play']")
    page.page.wait_for_function(
        "() => document.querySelector('.cgx-panels i.sel').dataset.i === '0,0,3'", timeout=5000
    )
    page.page.click("[data-stepbtn='play']")  # pause
    assert page.page.text_content("[data-stepbtn='play']").endswith("play")
    page.page.keyboard.press("ArrowDown")
    assert page.highlighted("sel") == {("O", (0, 1, 3))}
    assert page.errors == []
    page.close()


def test_origin_page_moves_its_windows_and_screenshots(browser, tmp_path):
    report = explain((5, 100, 100), (10, 5, 5, 5))
    data = page_data(report)
    page = Page(browser, _write(tmp_path, "origin", report), height=1100)
    assert len(page.page.locator(".cgx-panels i[data-i]").all()) < 6000  # a window, not 100x100
    page.js("() => document.querySelector('.cgx-wrap').cgx.select('forward', 'O', [9, 95, 95])")
    want = {
        (r[0], tuple(r[1]))
        for t in contributions(data, "forward", "O", (9, 95, 95))
        for r in t
        if r is not None
    }
    assert page.highlighted() == want  # X, F and O moved their windows to the corner and row 9
    assert len(want) == 5 * 25 * 2 + 1
    shot = tmp_path / "explorer-origin-forward.png"
    page.page.screenshot(path=str(shot), full_page=True)
    _artifact(shot)
    # dE/dF[3, 2, 1, 4] meets the 96x96 window of X[2] at (1, 4): the drawn part is highlighted
    page.page.click("[data-tab='weight_grad']")
    page.js("() => document.querySelector('.cgx-wrap').cgx.select('weight_grad', 'dF', [3,2,1,4])")
    xs = {i for n, i in page.highlighted() if n == "X"}
    drawn_x = {i for n, i in page.drawn() if n == "X"}
    assert xs and xs == {i for i in drawn_x if i[0] == 2 and 1 <= i[1] <= 96 and 4 <= i[2] <= 99}
    assert page.page.locator(".cgx-sum .cgx-more").count() == 1  # 9216 terms, the first shown
    # the window moves with its buttons
    first = min(i[2] for i in drawn_x)
    page.page.click("[data-p='X'] button[data-nav='s1'][data-step='1']")
    assert min(i[2] for n, i in page.drawn() if n == "X") > first
    shot = tmp_path / "explorer-origin-weight-grad.png"
    page.page.screenshot(path=str(shot), full_page=True)
    _artifact(shot)
    assert shot.stat().st_size > 10_000
    assert page.errors == []
    page.close()


def test_two_notebook_fragments_on_one_page(browser, tmp_path):
    a = explain((1, 6), (1, 1, 3))._repr_html_()
    b = explain((1, 5, 5), (2, 1, 3, 3), stride=2)._repr_html_()
    path = tmp_path / "notebook.html"
    path.write_text(f"<!DOCTYPE html><html><body><p>out[1]</p>{a}<p>out[2]</p>{b}</body></html>")
    page = Page(browser, path)
    page.page.wait_for_function(
        "() => document.querySelectorAll(\".cgx-wrap[data-ready='2']\").length === 2"
    )
    heads = page.page.eval_on_selector_all(".cgx-h1", "els => els.map(e => e.textContent)")
    assert "1-D convolution" in heads[0] and "2-D convolution" in heads[1]
    assert page.errors == []
    page.close()

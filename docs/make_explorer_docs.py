"""Regenerate the explorer pages in docs/ and their screenshots:
``PYTHONPATH=src python docs/make_explorer_docs.py``.

The screenshots need Playwright and a Chromium (``chromium`` on PATH or $CONVGRAD_CHROMIUM);
without them only the pages are written.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from convgrad import explain  # noqa: E402

DOCS = ROOT / "docs"

# name -> (input_shape, weight_shape, options)
PAGES = {
    "explorer-origin": ((5, 100, 100), (10, 5, 5, 5), {}),
    "explorer-stride": ((2, 7, 7), (4, 2, 3, 3), {"stride": 2, "padding": 1}),
}
# name -> (tab, result, index) selected in the screenshot
SHOTS = {
    "explorer-origin": ("weight_grad", "dF", [3, 2, 1, 4]),
    "explorer-stride": ("input_grad", "dX", [1, 3, 2]),
}


def main() -> None:
    for name, (input_shape, weight_shape, options) in PAGES.items():
        path = DOCS / f"{name}.html"
        explain(input_shape, weight_shape, **options).to_html(path)
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")
    exe = os.environ.get("CONVGRAD_CHROMIUM") or shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        exe = None
    if exe is None:
        print("no Playwright or Chromium: screenshots not taken")
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        for name, (tab, result, index) in SHOTS.items():
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto((DOCS / f"{name}.html").as_uri())
            page.wait_for_selector(".cgx-wrap[data-ready='2']")
            page.evaluate(
                "([t, r, i]) => document.querySelector('.cgx-wrap').cgx.select(t, r, i)",
                [tab, result, index],
            )
            shot = DOCS / f"{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"{shot.relative_to(ROOT)}: {shot.stat().st_size:,} bytes")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()

"""Regenerate docs/explain.md and its figures: ``PYTHONPATH=src python docs/make_explain_docs.py``."""

from __future__ import annotations

import contextlib
import functools
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import _backwards as hand  # noqa: E402
from convgrad import check, explain  # noqa: E402
from convgrad.tools.explain_cli import main as explain_cli  # noqa: E402

DOCS = ROOT / "docs"


def main() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        explain_cli([])
    origin = out.getvalue().rstrip()
    explain((5, 100, 100), (10, 5, 5, 5)).figure(DOCS / "explain-origin.png")
    explain((2, 7, 7), (4, 2, 3, 3), stride=2, padding=1).figure(DOCS / "explain-stride.png")
    report = check(functools.partial(hand.scatter_backward, ignore_stride=True))
    graded = str(report).replace("partial(scatter_backward)", "my_backward")
    text = (DOCS / "explain.template.md").read_text()
    text = text.replace("{origin}", origin).replace("{graded}", graded)
    (DOCS / "explain.md").write_text(text)


if __name__ == "__main__":
    main()

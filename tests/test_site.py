"""The reference site builds with warnings as errors, offline, from the docstrings."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("sphinx", "numpydoc", "pydata_sphinx_theme", "myst_parser")


@pytest.mark.slow
def test_site_builds_with_warnings_as_errors(tmp_path):
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed (missing {', '.join(missing)})")
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(ROOT / "docs"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in (
        "conv_weight_grad",
        "conv_transpose_backward",
        "set_workspace_limit",
        "ConvTranspose3d",
        "softmax_cross_entropy",
        "gradcheck",
        "Report",
    ):
        assert name in api, f"{name} missing from the API page"
    assert "Parameters" in api and "Examples" in api
    gradients = (out / "gradients.html").read_text(encoding="utf-8")
    assert "full" in gradients and "10, 96, 96" in gradients
    for page in ("explain", "layers", "dask", "benchmarks", "parallelism", "architecture"):
        assert (out / f"{page}.html").is_file(), f"{page}.html not built"
    # the explorer pages are served as they are
    assert (out / "explorer-origin.html").read_bytes() == (
        ROOT / "docs" / "explorer-origin.html"
    ).read_bytes()

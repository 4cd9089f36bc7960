"""Packaging: the MIT license shipped in the wheel and the sdist, metadata, changelog."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import convgrad

pytestmark = pytest.mark.slow  # builds a wheel and an sdist

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]


def test_license_is_mit_by_convgrad_developers():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "convgrad developers" in text.splitlines()[2]
    assert "Permission is hereby granted, free of charge" in text
    project = _pyproject()
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]


def test_metadata_classifiers_and_changelog():
    project = _pyproject()
    assert project["version"] == convgrad.__version__
    classifiers = project["classifiers"]
    assert "Programming Language :: Python :: 3.10" in classifiers
    # a license expression replaces license classifiers (setuptools refuses both)
    assert not any(c.startswith("License ::") for c in classifiers)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{convgrad.__version__}] - unreleased" in changelog


def test_wheel_and_sdist_ship_the_license(tmp_path):
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("license-files needs setuptools >= 77")
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "from setuptools import build_meta as b\n"
        "names = [b.build_wheel('dist'), b.build_sdist('dist')]\n"
        "print('built:', *names)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    built = [line for line in result.stdout.splitlines() if line.startswith("built: ")]
    wheel_name, sdist_name = built[-1].split()[1:]
    license_text = (ROOT / "LICENSE").read_text()
    with zipfile.ZipFile(tree / "dist" / wheel_name) as wheel:
        name = f"convgrad-{convgrad.__version__}.dist-info/licenses/LICENSE"
        assert wheel.read(name).decode() == license_text
        metadata = wheel.read(f"convgrad-{convgrad.__version__}.dist-info/METADATA").decode()
        # the explorer page's script and style are package data, read at run time
        for asset in ("explorer.js", "explorer.css"):
            want = (ROOT / "src" / "convgrad" / "tools" / "explorer" / asset).read_bytes()
            assert wheel.read(f"convgrad/tools/explorer/{asset}") == want
        # the marker that tells type checkers the package is typed (PEP 561)
        assert "convgrad/py.typed" in wheel.namelist()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    with tarfile.open(tree / "dist" / sdist_name) as sdist:
        member = sdist.extractfile(f"convgrad-{convgrad.__version__}/LICENSE")
        assert member.read().decode() == license_text

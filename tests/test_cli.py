"""The command line and the import footprint, in subprocesses."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "matplotlib",
    "rich",
    "tqdm",
    "dask",
    "distributed",
    "torch",
    "sklearn",
    "scipy.signal",
    "numba",
)


def _run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_import_is_light():
    code = f"import sys, convgrad; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import convgrad loaded {result.stdout.strip()}"


def test_demo_runs_the_origin_layer():
    result = _run("-m", "convgrad", "demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for shape in ("5x100x100", "10x5x5x5", "10x96x96"):
        assert shape in out
    assert out.strip().endswith("OK")


def test_help_and_unknown_command():
    assert "commands:" in _run("-m", "convgrad", "--help").stdout
    result = _run("-m", "convgrad", "no-such-command")
    assert result.returncode == 2
    assert "unknown command" in result.stderr


def test_no_arguments_separates_explain_from_demo(capsys):
    from convgrad import cli

    assert cli.main([]) == 0
    out = capsys.readouterr().out
    explain_part, _, demo_part = out.partition("\n== convgrad demo ==\n")
    assert "== Cost ==" in explain_part and "origin layer" in demo_part and "OK" in demo_part

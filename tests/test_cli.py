"""The command line and the import footprint, in subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_import_is_light():
    code = f"import sys, convgrad; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import convgrad loaded {result.stdout.strip()}"


@pytest.mark.slow
def test_demo_runs_the_origin_layer():
    result = _run("-m", "convgrad", "demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for shape in ("5x100x100", "10x5x5x5", "10x96x96"):
        assert shape in out
    assert out.strip().endswith("OK")


@pytest.mark.slow
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


# ------------------------------------------------------------- argparse, --version


@pytest.mark.slow
def test_version_is_the_packages():
    import convgrad

    result = _run("-m", "convgrad", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"convgrad {convgrad.__version__}\n"
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    with open(pyproject, "rb") as fh:
        assert tomllib.load(fh)["project"]["version"] == convgrad.__version__


def test_version_falls_back_to_the_package_without_metadata(monkeypatch, capsys):
    import importlib.metadata

    import convgrad
    from convgrad import cli

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(convgrad, "__version__", "9.9.9")
    assert cli.version() == "9.9.9"
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == "convgrad 9.9.9\n"


@pytest.mark.slow
def test_help_lists_every_command_and_imports_none_of_them():
    from convgrad.cli import COMMANDS

    code = (
        "import sys\n"
        "from convgrad import cli\n"
        "assert cli.main(['--help']) == 0\n"
        "lazy = ('convgrad.tools.demo', 'convgrad.tools.explain_cli', 'convgrad.tools.check_cli',\n"
        "        'convgrad.examples.digits',\n"
        "        'convgrad.examples.digits_dask')\n"
        "print('loaded:', [m for m in lazy if m in sys.modules])\n"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("loaded: []")
    for name in COMMANDS:
        assert f"    {name}" in result.stdout
    assert "options without a command go to convgrad explain" in " ".join(result.stdout.split())


def test_commands_get_their_own_arguments_and_options_go_to_explain(capsys):
    from convgrad import cli

    with pytest.raises(SystemExit) as exit_:  # the command's own argparse, as before
        cli.main(["explain", "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: convgrad explain")
    assert cli.main(["--input", "2x6x6", "--weight", "3x2x3x3", "--padding", "full"]) == 0
    assert "O 3×8×8" in capsys.readouterr().out
    assert cli.main(["explain", "--input", "2x6x6", "--nonsense"]) == 2
    assert "unrecognized arguments: --nonsense" in capsys.readouterr().err
    assert cli.main(["-h"]) == 0 and "commands:" in capsys.readouterr().out


@pytest.mark.slow
def test_unknown_command_names_the_choices():
    result = _run("-m", "convgrad", "expalin")
    assert result.returncode == 2
    assert "unknown command 'expalin' (choose from explain, check, demo" in result.stderr
    assert result.stderr.startswith("usage: convgrad")

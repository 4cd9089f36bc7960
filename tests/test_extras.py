"""Optional extras: a missing package gives one clear error naming its extra and the pip
command; the ``convgrad`` command prints it as one line and exits with status 2.

A package is hidden by ``sys.modules[name] = None``, which makes ``import name`` raise
ImportError as if it were not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import convgrad
from convgrad import cli
from convgrad._extras import MissingExtraError, require


def _hide(monkeypatch, *names):
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def _pip(extra: str) -> str:
    return f'pip install "convgrad[{extra}]"'


def _one_line_and_status_2(capsys, argv, package, extra) -> str:
    """Run ``convgrad argv``: status 2, one line on stderr naming ``package`` and the pip
    command of ``extra``, no traceback. Returns stdout."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("convgrad: ")
    assert f"needs {package}," in lines[0] and lines[0].endswith(_pip(extra))
    assert "Traceback" not in out + err
    return out


# ------------------------------------------------------------------------------ require


def test_require_returns_the_module():
    assert require("json", extra="show", purpose="reading") is json


def test_require_names_the_extra_and_the_pip_command(monkeypatch):
    _hide(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtraError) as info:
        require("matplotlib", extra="show", purpose="drawing figures")
    error = info.value
    assert str(error) == (
        "drawing figures needs matplotlib, from convgrad's optional extra 'show': "
        'pip install "convgrad[show]"'
    )
    assert isinstance(error, ImportError) and isinstance(error.__cause__, ImportError)
    assert (error.name, error.package, error.extra) == ("matplotlib", "matplotlib", "show")


def test_require_uses_the_pip_name_of_the_package(monkeypatch):
    _hide(monkeypatch, "sklearn")
    with pytest.raises(MissingExtraError, match="needs scikit-learn, ") as info:
        require("sklearn", extra="examples", package="scikit-learn", purpose="the data")
    assert str(info.value).endswith(_pip("examples"))


def test_require_says_which_import_failed_inside_an_installed_package(tmp_path, monkeypatch):
    package = tmp_path / "convgrad_test_broken"
    package.mkdir()
    (package / "__init__.py").write_text("import convgrad_test_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "convgrad_test_broken", raising=False)
    with pytest.raises(MissingExtraError) as info:
        require("convgrad_test_broken", extra="show", purpose="this")
    message = str(info.value)
    assert message.startswith("this needs convgrad_test_broken, ")
    assert "importing convgrad_test_broken failed" in message
    assert "convgrad_test_absent_dependency" in message


# ---------------------------------------------------------------------- show: figures


def test_report_figure_without_matplotlib(monkeypatch, tmp_path):
    report = convgrad.explain((5, 100, 100), (10, 5, 5, 5))
    _hide(monkeypatch, "matplotlib", "matplotlib.figure")
    with pytest.raises(MissingExtraError, match="drawing figures needs matplotlib") as info:
        report.figure(tmp_path / "tiling.png")
    assert info.value.extra == "show" and str(info.value).endswith(_pip("show"))
    assert not (tmp_path / "tiling.png").exists()
    assert "== Cost ==" in str(report)  # the report itself needs nothing


def test_explain_figure_without_matplotlib_fails_before_the_report(monkeypatch, capsys, tmp_path):
    _hide(monkeypatch, "matplotlib", "matplotlib.figure")
    figure = tmp_path / "tiling.png"
    argv = ["explain", "--input", "5x100x100", "--weight", "10x5x5x5", "--figure", str(figure)]
    out = _one_line_and_status_2(capsys, argv, "matplotlib", "show")
    assert out == "" and not figure.exists()


def test_explain_without_figure_needs_neither_matplotlib_nor_rich(monkeypatch, capsys):
    _hide(monkeypatch, "matplotlib", "rich", "rich.console")
    assert cli.main(["explain"]) == 0
    out, err = capsys.readouterr()
    assert "== Cost ==" in out and err == ""


# -------------------------------------------------------------------- examples: digits


def test_train_digits_without_scikit_learn(monkeypatch, capsys):
    _hide(monkeypatch, "sklearn", "sklearn.datasets", "sklearn.model_selection")
    out = _one_line_and_status_2(capsys, ["train-digits"], "scikit-learn", "examples")
    assert out == ""  # stopped before training


def test_train_digits_without_tqdm_or_matplotlib(monkeypatch, capsys, tmp_path):
    pytest.importorskip("sklearn")
    _hide(monkeypatch, "tqdm", "tqdm.auto", "matplotlib")
    plot = str(tmp_path / "curves.png")
    argv = ["train-digits", "--plot", plot]
    assert _one_line_and_status_2(capsys, argv, "tqdm", "examples") == ""
    argv = ["train-digits", "--plot", plot, "--no-progress"]
    assert _one_line_and_status_2(capsys, argv, "matplotlib", "examples") == ""


def test_digits_functions_without_their_packages(monkeypatch):
    from convgrad.examples import digits

    history = {"step_loss": [1.0], "train_loss": [1.0], "test_loss": [1.0]}
    history |= {"train_acc": [0.5], "test_acc": [0.5]}
    _hide(monkeypatch, "sklearn", "tqdm", "tqdm.auto", "matplotlib")
    with pytest.raises(MissingExtraError, match="scikit-learn"):
        digits.load_data()
    with pytest.raises(MissingExtraError, match="needs matplotlib"):
        digits.plot_history(history, "never-written.png")
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8), dtype=np.float32)
    y = np.arange(40) % 10
    data = (x[:32], y[:32], x[32:], y[32:])
    with pytest.raises(MissingExtraError, match="progress bar needs tqdm"):
        digits.train(epochs=1, data=data)
    # without a progress bar tqdm is not needed
    history = digits.train(epochs=1, batch_size=16, progress=False, data=data)
    assert len(history["step_loss"]) == 2 and len(history["test_acc"]) == 1


@pytest.mark.slow
def test_digits_module_run_as_a_script_without_scikit_learn():
    code = (
        "import runpy, sys; sys.modules['sklearn'] = None; "
        "sys.argv = ['digits', '--no-plot']; "
        "runpy.run_module('convgrad.examples.digits', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "convgrad: the digits data needs scikit-learn, from convgrad's optional extra "
        "'examples': " + _pip("examples")
    ]


# ------------------------------------------------------------------------------- dask


def test_train_digits_dask_without_distributed_or_dask(monkeypatch, capsys):
    pytest.importorskip("dask.array")
    _hide(monkeypatch, "distributed")
    assert _one_line_and_status_2(capsys, ["train-digits-dask"], "distributed", "dask") == ""
    _hide(monkeypatch, "dask", "dask.array")
    assert _one_line_and_status_2(capsys, ["train-digits-dask"], "dask", "dask") == ""


def test_dask_path_without_dask_array(monkeypatch):
    da = pytest.importorskip("dask.array")
    x = da.zeros((2, 1, 5, 5), chunks=(1, 1, 5, 5))
    w = np.ones((1, 1, 3, 3))
    # a fresh import of the dask path, with dask.array gone
    monkeypatch.delitem(sys.modules, "convgrad._dask", raising=False)
    monkeypatch.delattr(convgrad, "_dask", raising=False)
    _hide(monkeypatch, "dask.array")
    with pytest.raises(MissingExtraError, match="convolving dask arrays needs dask, ") as info:
        convgrad.conv(x, w)
    assert info.value.extra == "dask" and str(info.value).endswith(_pip("dask"))


def test_out_of_core_example_without_dask(monkeypatch, tmp_path):
    from convgrad.examples import out_of_core

    _hide(monkeypatch, "dask", "dask.array")
    with pytest.raises(MissingExtraError, match="needs dask, ") as info:
        out_of_core.main(["--n", "2", "--dir", str(tmp_path)])
    assert info.value.extra == "dask"
    assert list(tmp_path.iterdir()) == []  # stopped before writing anything


# --------------------------------------------------------- a fresh venv without extras


def _core_only_venv(tmp_path):
    """A fresh venv (no pip, no network) that sees convgrad's source and its core
    dependencies only (numpy, scipy, numba with llvmlite, threadpoolctl), linked from this
    environment: none of the extras' packages is importable there."""
    import importlib
    import sysconfig
    from pathlib import Path

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    core = tmp_path / "core"
    core.mkdir()
    for name in ("numpy", "scipy", "numba", "llvmlite", "threadpoolctl"):
        path = Path(importlib.import_module(name).__file__)
        source = path.parent if path.name == "__init__.py" else path
        (core / source.name).symlink_to(source)
        libs = source.parent / f"{name}.libs"  # a manylinux wheel's vendored libraries
        if libs.exists():
            (core / libs.name).symlink_to(libs)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    src = Path(convgrad.__file__).resolve().parents[1]
    Path(purelib, "core.pth").write_text(f"{core}\n{src}\n")
    assert Path(sysconfig.get_paths()["purelib"]) != Path(purelib)
    return python


@pytest.mark.slow
def test_a_fresh_venv_without_extras(tmp_path):
    """With the core alone: the extras' packages are absent, the README's main command
    runs, and each command or function that needs an extra stops with one line naming
    it and the pip command (status 2 for a command, no traceback)."""
    python = _core_only_venv(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def run(*args):
        return subprocess.run(
            [str(python), *args], capture_output=True, text=True, env=env, timeout=600
        )

    absent = "import importlib.util as u; print([n for n in %r if u.find_spec(n)])"
    extras = ("matplotlib", "rich", "sklearn", "tqdm", "dask", "distributed")
    assert run("-c", absent % (extras,)).stdout.strip() == "[]"
    main = run("-m", "convgrad")
    assert main.returncode == 0, main.stderr
    assert "== Cost ==" in main.stdout and "Traceback" not in main.stderr
    for argv, package, extra in (
        (["train-digits"], "scikit-learn", "examples"),
        (["train-digits-dask"], "dask", "dask"),
        (["explain", "--figure", str(tmp_path / "f.png")], "matplotlib", "show"),
    ):
        done = run("-m", "convgrad", *argv)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (argv, done.stderr)
        assert f"needs {package}," in lines[0] and lines[0].endswith(_pip(extra))
    script = (
        "import numpy as np, convgrad\n"
        "from convgrad._extras import MissingExtraError\n"
        "y = convgrad.conv(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)))\n"
        "assert (y == 9).all()\n"
        "from convgrad.examples import out_of_core\n"
        "try:\n"
        f"    out_of_core.main(['--n', '2', '--dir', {str(tmp_path)!r}])\n"
        "except MissingExtraError as error:\n"
        "    print('missing', error.extra)\n"
    )
    done = run("-c", script)
    assert done.stdout.strip() == "missing dask", done.stderr

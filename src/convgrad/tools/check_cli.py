"""The ``convgrad check`` command: import the user's function, grade it, print the report."""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .check import DEFAULT_TIMEOUT, FEATURES, Raised, TimedOut, check, in_thread, timeout_seconds


def _load(target: str, timeout: float | None = DEFAULT_TIMEOUT) -> Callable:
    """The function named by ``module:function`` or ``path/to/file:function``, imported in
    a worker thread as the cases are run: an import that raises (SystemExit included) or
    does not finish within ``timeout`` seconds is a ValueError. As ``python file.py``
    does, a file's folder goes first on ``sys.path``, so the file can import its
    neighbours."""
    if ":" not in target:
        raise ValueError(f"expected module:function or path/to/file.py:function, got {target!r}")
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"expected module:function or path/to/file.py:function, got {target!r}")
    path = Path(module_name)
    is_path = module_name.endswith(".py") or "/" in module_name or os.sep in module_name
    if is_path or path.is_file():  # a file, even one without .py, is read as Python source
        if not path.is_file():
            raise ValueError(f"no such file: {module_name}")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        loader = importlib.machinery.SourceFileLoader(path.stem or "graded", str(path))
        spec = importlib.util.spec_from_file_location(loader.name, path, loader=loader)
        module = importlib.util.module_from_spec(spec)

        def do_import():
            spec.loader.exec_module(module)
            return module

    else:
        if "" not in sys.path:
            sys.path.insert(0, "")

        def do_import():
            return importlib.import_module(module_name)

    try:
        module = in_thread(do_import, timeout)
    except TimedOut:
        raise ValueError(
            f"cannot import {module_name}: it did not finish within {timeout:g} s"
        ) from None
    except Raised as raised:  # report the user's import error in one line
        exc, why = raised.error, raised.text
        if isinstance(exc, SystemExit):
            why = f"it called {raised.text}"
        elif isinstance(exc, ModuleNotFoundError) and exc.name == module_name:
            why += " (a file is given as path/to/file.py:function)"
        raise ValueError(f"cannot import {module_name}: {why}") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ValueError(f"{module_name} has no attribute {attr!r}")
    if not callable(fn):
        raise ValueError(f"{target} is not callable")
    return fn


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _ArgumentError(message)


def main(argv: list[str]) -> int:
    """``convgrad check module:function``: exit 0 if every checked feature passes, 1 if any
    failed, timed out or nothing could be graded, 2 on bad usage or a target that cannot
    be imported."""
    parser = _Parser(
        prog="convgrad check",
        description="Grade a 2-D convolution backward fn(x, weight, grad_output, stride, "
        "padding, dilation, groups) -> (dx, dw, db) against convgrad.",
    )
    parser.add_argument("target", help="module:function or path/to/file.py:function")
    parser.add_argument("--skip", default="", help=f"comma-separated features from {FEATURES}")
    parser.add_argument(
        "--features", default="", help="comma-separated: run only these features (default: all)"
    )
    parser.add_argument("--tuples", action="store_true", help="fn accepts (h, w) tuples")
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--atol", type=float, default=1e-9)
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="seconds one case (and the import) may take; a case past it fails and grading "
        "stops (default %(default)g)",
    )
    try:
        args = parser.parse_args(argv)
        timeout = timeout_seconds(args.timeout)
        skip = [s.strip() for s in args.skip.split(",") if s.strip()]
        fn = _load(args.target, timeout)
        only = [s.strip() for s in args.features.split(",") if s.strip()] or None
        report = check(
            fn,
            skip=skip,
            features=only,
            tuples=args.tuples,
            rtol=args.rtol,
            atol=args.atol,
            timeout=timeout,
        )
    except (_ArgumentError, ValueError, TypeError, ImportError, SyntaxError) as exc:
        print(f"convgrad check: error: {exc}", file=sys.stderr)
        return 2
    report.print()
    return 0 if report.ok else 1

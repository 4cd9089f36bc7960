"""Optional extras: import a module where it is used, or fail with one clear message.

convgrad's own dependencies are NumPy, SciPy, numba and threadpoolctl. The rest comes with
an optional extra (``pyproject.toml``): ``show`` (matplotlib; rich only prettifies terminal
output and is used when present), ``examples`` (scikit-learn, tqdm, matplotlib) and ``dask``
(dask, distributed). :func:`require` imports a module of one of them or raises
:class:`MissingExtraError` naming the extra and the pip command that installs it; the
``convgrad`` command prints that error as one line and exits with status 2.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType

__all__ = ["MissingExtraError", "require", "run_command"]


class MissingExtraError(ImportError):
    """A feature needs a package of one of convgrad's optional extras, and it is missing.

    ``name`` is the module that failed to import, ``package`` the distribution that
    provides it (as pip spells it), ``extra`` the convgrad extra that lists it.
    """

    def __init__(self, message: str, *, name: str, package: str, extra: str):
        super().__init__(message, name=name)
        self.package = package
        self.extra = extra


def require(module: str, *, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import and return ``module``, or raise :class:`MissingExtraError`.

    ``extra``: the convgrad extra that provides it; ``purpose``: what needs it, as the start
    of the sentence ("drawing figures"); ``package``: the name pip installs it by (default:
    the top-level name of ``module``).
    """
    top = module.partition(".")[0]
    package = top if package is None else package
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = (
            f"{purpose} needs {package}, from convgrad's optional extra {extra!r}: "
            f'pip install "convgrad[{extra}]"'
        )
        missing = getattr(exc, "name", None)
        if missing is not None and missing.partition(".")[0] != top:
            # the package is there but one of its own imports failed: say which
            message += f" (importing {module} failed: {exc})"
        raise MissingExtraError(message, name=module, package=package, extra=extra) from exc


def run_command(function: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run a command's ``main(argv)``; a missing extra is printed as one line on stderr
    (``convgrad: ...``) and gives exit status 2, without a traceback."""
    try:
        return int(function(argv) or 0)
    except MissingExtraError as exc:
        print(f"convgrad: {exc}", file=sys.stderr)
        return 2

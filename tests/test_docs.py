"""The public docstrings: numpydoc sections present, and their examples run as doctests."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import convgrad

# the modules whose public docstrings are documentation (their examples run here)
MODULES = [
    "convgrad.functional",
    "convgrad.layers",
    "convgrad.nn",
    "convgrad._module",
    "convgrad._plan",
    "convgrad.tools.explain",
    "convgrad.tools.check",
    "convgrad.tools.gradcheck",
]


def _public_objects():
    """(qualified name, object) of every public function and class: ``convgrad.__all__``
    and ``convgrad.nn.__all__``."""
    import convgrad.nn as nn

    seen = {}
    for module, names in ((convgrad, convgrad.__all__), (nn, nn.__all__)):
        for name in names:
            obj = getattr(module, name)
            seen.setdefault(id(obj), (f"{module.__name__}.{name}", obj))
    return list(seen.values())


PUBLIC = _public_objects()


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_docstring_has_numpydoc_sections(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert "\nExamples\n--------\n" in doc, f"{name} has no Examples section"
    assert ">>> " in doc.split("\nExamples\n--------\n")[1], f"{name}: no example code"
    takes_arguments = bool(inspect.signature(obj).parameters)
    if takes_arguments and not (inspect.isclass(obj) and issubclass(obj, tuple)):
        assert "\nParameters\n----------\n" in doc, f"{name} has no Parameters section"
    if inspect.isfunction(obj) and name != "convgrad.get_workspace_limit":
        assert "\nReturns\n-------\n" in doc, f"{name} has no Returns section"
        assert "\nRaises\n------\n" in doc, f"{name} has no Raises section"


def _doctests():
    finder = doctest.DocTestFinder()
    tests = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for test in finder.find(module):
            # the module's own docstring is an overview, not an example to run
            if test.name != module_name and test.examples:
                tests.append(test)
    return sorted(tests, key=lambda t: t.name)


DOCTESTS = _doctests()


def test_every_public_object_has_a_doctest():
    names = {t.name for t in DOCTESTS}
    for name, obj in PUBLIC:
        qualified = f"{obj.__module__}.{obj.__qualname__}"
        assert qualified in names, f"{name} ({qualified}): no doctest found"


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_examples(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    failures = []
    runner.run(test, out=failures.append)
    assert runner.failures == 0, "".join(failures)

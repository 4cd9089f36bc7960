"""The teaching tools around the functions: ``convgrad.explain`` and ``convgrad.check``.

- ``explain``: a layer's report (``explain.py``), each pass in words
  (``explain_passes.py``, ``explain_text.py``), its figure (``figure.py``) and the
  ``convgrad explain`` command (``explain_cli.py``);
- ``check``: grading a hand-written backward pass (``check.py``, with the classic causes
  of wrong gradients in ``check_causes.py``) and finite-difference checks
  (``gradcheck.py``);
- ``demo.py``: the ``convgrad demo`` command; ``wrap.py``: prose wrapped to the terminal.

The functions are reached as ``convgrad.explain``, ``convgrad.check`` and
``convgrad.gradcheck``; this package binds no names of its own, so each module here is
reached by its own name (``convgrad.tools.explain.Report``).
"""

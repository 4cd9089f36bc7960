"""Grade someone's own convolution backward pass, and finite-difference gradient checks.

``check(fn)`` runs a user's 2-D convolution backward over a battery of configurations of
rising difficulty and compares it with convgrad's ``conv_backward``.

Protocol of ``fn``::

    dx, dw, db = fn(x, weight, grad_output, stride, padding, dilation, groups)

* ``x``: NumPy float64 array (N, C, H, W); ``weight``: (K, C // groups, R, S);
  ``grad_output``: dE/dO, (N, K, H_out, W_out) with PyTorch's output size
  ``H_out = (H + 2*padding - dilation*(R-1) - 1) // stride + 1``;
* ``stride``, ``padding``, ``dilation``, ``groups``: ints (zero padding on both sides);
  with ``tuples=True`` stride, padding and dilation may also be (h, w) tuples;
* returns ``dx`` (N, C, H, W), ``dw`` (K, C // groups, R, S) and ``db`` (K,) (``db`` may be
  None if the layer has no bias; it is then not graded). Anything array-like is accepted.
* must not write into ``x``, ``weight`` or ``grad_output`` (a case where it does fails).
* each gradient must be a real floating-point array: a complex, integer or other result
  fails (its imaginary part is never silently dropped); NaN or inf in it fails too.

Each case calls ``fn`` in a daemon thread of its own. Whatever ``fn`` raises, SystemExit
(``sys.exit``) included, fails that case; only KeyboardInterrupt is passed on. A case that
has not returned after ``timeout`` seconds (30 by default) fails as timed out, and grading
stops there: a Python thread cannot be killed, so the hung call is left running in the
background until the process exits, and the features after it are reported as not
graded. Code that holds the GIL (a long loop inside a C extension) delays the timeout
until it lets go, and ``os._exit`` or a crash of the interpreter itself cannot be caught.

A wrong gradient is compared with the classic wrong results, recomputed from convgrad's own
functions (filters not flipped, the stride ignored, an off-by-one padding, the batch
averaged, groups mixed up, H and W swapped, ...): the report leads with one *finding* per
cause it recognises, naming every feature that cause explains, rather than one hint per
failing feature. A function that cannot be called as above (wrong number of arguments)
is reported once, before any feature, and nothing is graded.

Features, in order: basic, channels, batch, non_square, stride, stride_remainder, padding,
dilation, groups, combined, tuples. Declare what ``fn`` does not support with
``unsupported={"dilation", "groups"}`` (or ``skip=``): those are skipped, not failed, and so
is every feature that needs them. ``tuples`` runs only with ``tuples=True``.
"""

from __future__ import annotations

import html
import inspect
import math
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .check_causes import diagnose

__all__ = [
    "check",
    "CheckReport",
    "FeatureResult",
    "Finding",
    "FEATURES",
]


@dataclass(frozen=True)
class _Case:
    n: int
    c: int
    k: int
    hw: tuple[int, int]
    rs: tuple[int, int]
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1

    def describe(self) -> str:
        parts = [
            f"x {self.n}×{self.c}×{self.hw[0]}×{self.hw[1]}",
            f"w {self.k}×{self.c // self.groups}×{self.rs[0]}×{self.rs[1]}",
        ]
        for name in ("stride", "padding", "dilation", "groups"):
            value = getattr(self, name)
            if value not in (0, 1) or name == "padding" and value:
                parts.append(f"{name} {value}")
        return ", ".join(parts)


# feature -> (cases, features it needs, one-line description)
_BATTERY: dict[str, tuple[list[_Case], tuple[str, ...], str]] = {
    "basic": ([_Case(1, 1, 1, (6, 6), (3, 3))], (), "1 channel, 1 filter, 1 sample"),
    "channels": (
        [_Case(1, 3, 4, (6, 6), (3, 3)), _Case(1, 2, 1, (5, 5), (2, 2))],
        (),
        "many input channels and filters",
    ),
    "batch": (
        [_Case(3, 2, 3, (6, 6), (3, 3)), _Case(2, 1, 1, (5, 5), (3, 3))],
        ("channels",),
        "batch of several samples",
    ),
    "non_square": (
        [_Case(1, 2, 2, (6, 9), (2, 3)), _Case(1, 1, 2, (7, 5), (3, 2))],
        ("channels",),
        "H != W and R != S",
    ),
    "stride": (
        [_Case(1, 2, 2, (7, 7), (3, 3), stride=2), _Case(1, 1, 2, (9, 9), (3, 3), stride=3)],
        ("channels",),
        "stride that divides the input exactly",
    ),
    "stride_remainder": (
        [
            _Case(1, 2, 2, (8, 8), (3, 3), stride=2),
            _Case(1, 1, 2, (10, 10), (3, 3), stride=3),
            _Case(1, 1, 1, (9, 9), (2, 2), stride=3),
        ],
        ("channels", "stride"),
        "stride that leaves rows unread",
    ),
    "padding": (
        [_Case(1, 2, 2, (6, 6), (3, 3), padding=1), _Case(1, 1, 2, (5, 5), (3, 3), padding=2)],
        ("channels",),
        "zero padding",
    ),
    "dilation": (
        [_Case(1, 2, 2, (8, 8), (3, 3), dilation=2), _Case(1, 1, 1, (9, 9), (2, 2), dilation=3)],
        ("channels",),
        "dilated filters",
    ),
    "groups": (
        [
            _Case(1, 4, 6, (6, 6), (3, 3), groups=2),
            _Case(1, 3, 3, (6, 6), (3, 3), groups=3),
            _Case(1, 4, 8, (5, 5), (2, 2), groups=4),
        ],
        ("channels",),
        "grouped and depthwise",
    ),
    "combined": (
        [
            _Case(2, 4, 6, (9, 11), (3, 2), stride=2, padding=1, dilation=2, groups=2),
            _Case(3, 2, 4, (11, 8), (2, 3), stride=3, padding=1, dilation=1, groups=1),
        ],
        (
            "channels",
            "batch",
            "non_square",
            "stride",
            "stride_remainder",
            "padding",
            "dilation",
            "groups",
        ),
        "everything at once",
    ),
    "tuples": (
        [
            _Case(1, 2, 2, (9, 10), (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
            _Case(2, 2, 2, (8, 9), (2, 3), stride=(1, 3), padding=(0, 2), dilation=(2, 1)),
        ],
        ("channels", "batch", "non_square", "stride", "padding", "dilation"),
        "per-dim (h, w) stride, padding, dilation",
    ),
}
FEATURES: tuple[str, ...] = tuple(_BATTERY)
_GRADS = ("dx", "dw", "db")
_PRETTY = {"dx": "dX", "dw": "dW", "db": "db"}
DEFAULT_TIMEOUT = 30.0  # seconds per case
PROTOCOL = "fn(x, weight, grad_output, stride, padding, dilation, groups)"


@dataclass
class FeatureResult:
    """Outcome of one feature: status 'pass', 'fail' or 'skip'; max_error: the largest
    absolute error of dx/dw/db over the cases run (None where never compared, NaN where a
    result held NaN); unusable: the gradients whose result could not be compared at all,
    with why ('shape', 'complex', 'dtype', 'type'); causes: the recognised mistakes that
    explain the failing case (cause -> advice, shared with the report's findings); hint:
    advice for what no cause explains."""

    feature: str
    status: str
    description: str
    cases: int = 0
    max_error: dict[str, float | None] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)
    failing_case: str = ""
    message: str = ""
    hint: str = ""
    timed_out: bool = False
    causes: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "fail"


@dataclass
class Finding:
    """One likely cause of failures: ``cause`` (a key such as 'unflipped'), ``advice``
    (what the result equals and what to change) and the failing ``features`` it explains."""

    cause: str
    advice: str
    features: list[str]


@dataclass(repr=False)
class CheckReport:
    """Per-feature results of :func:`check`, led by its ``findings`` (one per recognised
    cause, in the order of the first feature each explains) or, if ``fn`` cannot be
    called as the protocol says, by ``signature`` (and nothing graded). ``ok`` is True only
    if every checked feature passed and at least one was checked. Shown as its table by
    ``print``, ``repr`` (a REPL), IPython and Jupyter."""

    results: list[FeatureResult]
    function: str = "fn"
    timeout: float | None = DEFAULT_TIMEOUT
    findings: list[Finding] = field(default_factory=list)
    signature: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.signature
            and all(r.ok for r in self.results)
            and any(r.status == "pass" for r in self.results)
        )

    @property
    def failures(self) -> list[str]:
        return [r.feature for r in self.results if r.status == "fail"]

    @property
    def passed(self) -> list[str]:
        return [r.feature for r in self.results if r.status == "pass"]

    @property
    def skipped(self) -> list[str]:
        return [r.feature for r in self.results if r.status == "skip"]

    def __getitem__(self, feature: str) -> FeatureResult:
        for r in self.results:
            if r.feature == feature:
                return r
        raise KeyError(feature)

    @property
    def timed_out(self) -> list[str]:
        """The features whose case did not return within the timeout (grading stopped)."""
        return [r.feature for r in self.results if r.timed_out]

    def _rows(self):
        for r in self.results:
            errs = [r.unusable.get(g) or _fmt_err(r.max_error.get(g)) for g in _GRADS]
            note = r.message if r.status != "pass" else r.description
            yield r, errs, note

    def _details(self, r: FeatureResult) -> list[tuple[str, str]]:
        """(kind, text) lines under a failing row: 'at' the case, 'see' its findings,
        'hint' for what no finding explains."""
        if r.status != "fail":
            return []
        lines = [("at", r.failing_case)] if r.failing_case else []
        numbers = [i for i, f in enumerate(self.findings, 1) if r.feature in f.features]
        if numbers:
            plural = "s" if len(numbers) > 1 else ""
            lines.append(("see", f"finding{plural} {', '.join(map(str, numbers))} above"))
        lines += [("hint", hint) for hint in r.hint.splitlines()]
        return lines

    def _lead(self) -> list[str]:
        """The paragraphs before the table: the signature problem, or the findings."""
        if self.signature:
            return [
                f"fn cannot be called as check calls it: {self.signature}",
                f"check calls dx, dw, db = {PROTOCOL} (see help(convgrad.check)); "
                "nothing was graded",
            ]
        return [
            f"finding {i} ({', '.join(f.features)}): {f.advice}"
            for i, f in enumerate(self.findings, 1)
        ]

    def _summary(self) -> str:
        if self.signature:
            return f"FAILED: fn cannot be called as {PROTOCOL}"
        if self.ok:
            return f"OK: {self.function} passes all {len(self.passed)} checked features" + (
                f" ({len(self.skipped)} skipped)" if self.skipped else ""
            )
        if not self.passed and not self.failures:
            return "nothing was checked: every feature was skipped"
        summary = f"FAILED: {', '.join(self.failures)}"
        if self.timed_out:
            summary += f" (timed out in {self.timed_out[0]}: the features after it not graded)"
        return summary

    def __str__(self) -> str:
        return self.format()

    def format(self, width: int | None = None) -> str:
        """The report as plain text; with ``width``, its prose (findings, hints, summary)
        is wrapped to that many columns (table rows are left whole)."""
        from .wrap import wrap_line

        def prose(line: str, indent: int | None = None) -> list[str]:
            return [line] if width is None else wrap_line(line, width, indent)

        head = (
            f"{'feature':<17} {'result':<6} {'max|ΔdX|':>9} {'max|ΔdW|':>9} {'max|Δdb|':>9}  note"
        )
        lines = [f"check of {self.function}"]
        for line in self._lead():
            lines += prose(line, 4)
        lines += [head, "-" * len(head)]
        for r, errs, note in self._rows():
            lines.append(
                f"{r.feature:<17} {r.status.upper():<6} {errs[0]:>9} {errs[1]:>9} "
                f"{errs[2]:>9}  {note}"
            )
            for kind, text in self._details(r):
                label = f"{kind}:" if kind == "hint" else kind
                lines += prose(f"{'':<17} {label} {text}", 18 + len(label) + 1)
        lines += prose(self._summary(), 8)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        """IPython shows the table (not a dataclass dump)."""
        printer.text(f"<CheckReport of {self.function}>" if cycle else str(self))

    def _repr_html_(self) -> str:
        """Jupyter shows the report as an HTML table."""
        esc = html.escape
        colour = {"pass": "#1a7f37", "fail": "#cf222e", "skip": "#9a6700"}
        parts = [f"<div><p><b>check of {esc(self.function)}</b></p>"]
        lead = self._lead()
        if lead:
            parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in lead) + "</ul>")
        heads = ("feature", "result", "max|ΔdX|", "max|ΔdW|", "max|Δdb|", "note")
        parts.append("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in heads))
        parts.append("</tr></thead><tbody>")
        for r, errs, note in self._rows():
            details = "".join(
                f"<br><small>{esc(kind + (': ' if kind == 'hint' else ' ') + text)}</small>"
                for kind, text in self._details(r)
            )
            cells = [
                f"<td>{esc(r.feature)}</td>",
                f'<td style="color:{colour[r.status]}"><b>{r.status.upper()}</b></td>',
                *(f'<td style="text-align:right">{esc(e)}</td>' for e in errs),
                f'<td style="text-align:left">{esc(note)}{details}</td>',
            ]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append(f"</tbody></table><p><b>{esc(self._summary())}</b></p></div>")
        return "".join(parts)

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        head = Text(f"check of {self.function}", style="bold")
        for line in self._lead():
            head.append(f"\n{line}", style="bold red" if self.signature else "bold yellow")
        table = Table()
        for name, just in (
            ("feature", "left"),
            ("result", "left"),
            ("max|ΔdX|", "right"),
            ("max|ΔdW|", "right"),
            ("max|Δdb|", "right"),
            ("note", "left"),
        ):
            table.add_column(name, justify=just, overflow="fold")
        colour = {"pass": "green", "fail": "bold red", "skip": "yellow"}
        for r, errs, note in self._rows():
            text = Text(note)
            for kind, line in self._details(r):
                style = {"at": "dim", "see": "bold", "hint": "cyan"}[kind]
                text.append(f"\n{kind}{':' if kind == 'hint' else ''} {line}", style=style)
            table.add_row(r.feature, Text(r.status.upper(), style=colour[r.status]), *errs, text)
        summary = Text(self._summary(), style="bold green" if self.ok else "bold red")
        return Group(head, table, summary)

    def print(self, file=None, width: int | None = None) -> None:
        """Print as a rich table in a terminal (if rich is installed), else plain text with
        its prose wrapped to ``width`` columns (default: the terminal's width)."""
        from .wrap import terminal_width

        file = sys.stdout if file is None else file
        if getattr(file, "isatty", lambda: False)():
            try:
                from rich.console import Console
            except ImportError:  # pragma: no cover
                pass
            else:
                Console(file=file, width=width).print(self)
                return
        print(self.format(terminal_width() if width is None else width), file=file)


def _fmt_err(value: float | None) -> str:
    """'-' for not compared; 'nan' and 'inf' as such."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.1e}"


def _worse(a: float | None, b: float | None) -> float | None:
    """The larger error of two, NaN winning and None (not compared) losing."""
    if a is None or b is None:
        return b if a is None else a
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


# ---------------------------------------------------------------------------- running


def _reference(x, w, gy, case: _Case):
    from ..functional import conv_backward

    bias = np.zeros(w.shape[0])
    return conv_backward(gy, x, w, bias, case.stride, case.padding, case.dilation, case.groups)


def _output_hw(case: _Case) -> tuple[int, ...]:
    """PyTorch's output size of the case, from the one place convgrad computes it."""
    from .._spec import conv_spec

    x_shape = (case.n, case.c, *case.hw)
    w_shape = (case.k, case.c // case.groups, *case.rs)
    spec = conv_spec(x_shape, w_shape, case.stride, case.padding, case.dilation, case.groups)
    return spec.out_spatial


def _arrays(case: _Case, rng: np.random.Generator):
    x = rng.standard_normal((case.n, case.c, *case.hw))
    w = rng.standard_normal((case.k, case.c // case.groups, *case.rs))
    gy = rng.standard_normal((case.n, case.k, *_output_hw(case)))
    return x, w, gy


class _CaseFailure(Exception):
    def __init__(
        self,
        message: str,
        bad: tuple[str, ...] = (),
        errors: dict | None = None,
        raised: bool = False,
        written: bool = False,
        unusable: dict | None = None,
        timed_out: bool = False,
        causes: dict | None = None,
        signature: str = "",
    ):
        super().__init__(message)
        self.bad = bad
        self.errors = errors or {}
        self.raised = raised  # fn raised: there are no results to give hints about
        self.written = written  # fn wrote into an input array
        self.unusable = unusable or {}  # gradient -> why its result could not be compared
        self.timed_out = timed_out  # fn did not return in time
        self.causes = causes or {}  # cause -> (gradients it explains, advice)
        self.signature = signature  # fn cannot be called with the protocol's arguments


class TimedOut(Exception):
    pass


class Raised(Exception):
    def __init__(self, error: BaseException, text: str):
        super().__init__(text)
        self.error = error
        self.text = text  # 'Name: message' or 'sys.exit(code)', made in the worker thread


def _text(exc: BaseException) -> str:
    """'Name: message' of an exception (``sys.exit(code)`` for SystemExit). Called in the
    worker thread, where a hostile ``__str__`` can only fail or hang that thread."""
    try:
        if isinstance(exc, SystemExit):
            return f"sys.exit({exc.code!r})"
        return f"{type(exc).__name__}: {exc}"
    except BaseException:  # noqa: BLE001
        return f"{type(exc).__name__} (its message cannot be shown)"


class _NotAnArray:
    """In place of a gradient that np.array could not convert: why."""

    def __init__(self, why: str):
        self.why = why


def in_thread(call: Callable[[], Any], timeout: float | None) -> Any:
    """``call()`` in a daemon thread: its result; Raised carrying whatever it raised
    (SystemExit included; a KeyboardInterrupt is re-raised as is); TimedOut if it has not
    returned after ``timeout`` seconds (it is then left running: threads cannot be killed)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - sys.exit in graded code is its failure
            box["text"] = _text(exc)
            box["error"] = exc

    worker = threading.Thread(target=target, name="convgrad-check-case", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimedOut
    if "error" in box:
        error = box.pop("error")
        if isinstance(error, KeyboardInterrupt):
            raise error
        raise Raised(error, box["text"])
    return box["value"]


def _describe_raised(raised: Raised) -> str:
    if isinstance(raised.error, SystemExit):
        return f"called {raised.text}: a graded function must return its gradients"
    return f"raised {raised.text}"


def _results(got: Any) -> Any:
    """In the worker thread: fn's return value as three plain ndarray copies (None kept; a
    _NotAnArray for one that cannot be converted), or a str saying what is wrong. Copies of
    the base class: an ndarray subclass cannot bring its own arithmetic into the grading,
    and fn cannot change a result after returning it."""
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return f"must return (dx, dw, db), got {type(got).__name__}"
    out: list[Any] = []
    for value in tuple(got):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(np.array(value, copy=True, subok=False))
        except Exception as exc:  # noqa: BLE001 - anything that is not an array of numbers
            out.append(_NotAnArray(_text(exc)))
    return tuple(out)


def _run_case(fn, case: _Case, rng, rtol: float, atol: float, timeout: float | None = None):
    """Compare fn with convgrad on one case; return errors or raise _CaseFailure."""
    x, w, gy = _arrays(case, rng)
    want = _reference(x, w, gy, case)
    args = [a.copy() for a in (x, w, gy)]
    options = (case.stride, case.padding, case.dilation, case.groups)
    try:
        got = in_thread(lambda: _results(fn(*args, *options)), timeout)
    except TimedOut:
        raise _CaseFailure(
            f"timed out: no result after {timeout:g} s", _GRADS, raised=True, timed_out=True
        ) from None
    except Raised as raised:  # any error of the user's function is a failure
        where = _user_frame(raised.error.__traceback__)
        message = f"{_describe_raised(raised)}{where}"
        signature = raised.text if _at_the_call(raised.error) else ""
        raise _CaseFailure(message, _GRADS, raised=True, signature=signature) from None
    if isinstance(got, str):
        raise _CaseFailure(got, _GRADS)
    written = [
        name
        for name, before, after in zip(("x", "weight", "grad_output"), (x, w, gy), args)
        if not np.array_equal(before, after)
    ]
    if written:  # the caller's arrays would be corrupted: a bug even if the gradients are right
        raise _CaseFailure(
            f"fn wrote into its input {', '.join(written)}: a backward pass must leave x, "
            "weight and grad_output unchanged (copy before modifying)",
            (),
            written=True,
        )
    errors, bad, problems, unusable, tols = {}, [], [], {}, [rtol]
    for name, value, ref in zip(_GRADS, got, want):
        pretty = _PRETTY[name]
        if value is None and name == "db":
            continue  # no bias: not graded
        problem, why = _unusable(pretty, value, ref.shape)
        if problem:
            bad.append(name)
            problems.append(problem)
            unusable[name] = why
            continue
        tol = rtol
        if value.dtype.itemsize <= 4:
            tol = max(rtol, 1e-4 if value.dtype.itemsize == 4 else 1e-2)  # float32 / float16
        tols.append(tol)
        value = value.astype(np.float64)
        err = float(np.max(np.abs(value - ref))) if ref.size else 0.0
        errors[name] = err
        if not err <= atol + tol * max(float(np.max(np.abs(ref))), 1.0):
            bad.append(name)
            if np.isnan(value).any():
                problems.append(f"{pretty} holds NaN")
            elif np.isinf(value).any():
                problems.append(f"{pretty} holds inf")
            else:
                problems.append(f"{pretty} wrong")
    if bad:
        shapes = tuple(g for g in bad if unusable.get(g) == "shape")
        values = tuple(g for g in bad if g not in unusable)
        tol = max(tols)
        causes = diagnose(
            got, want, x, w, gy, case, values, shapes, lambda a, b: _close(a, b, tol, atol)
        )
        raise _CaseFailure(
            "; ".join(problems), tuple(bad), errors, unusable=unusable, causes=causes
        )
    return errors


def _at_the_call(error: BaseException) -> bool:
    """A TypeError raised by the call itself (wrong number or names of arguments), not
    inside fn: the traceback has no frame below this module's."""
    if not isinstance(error, TypeError):
        return False
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename == __file__


def _signature_problem(fn: Callable) -> str:
    """Why ``fn`` cannot take the protocol's seven positional arguments ('' if it can, or
    if its signature cannot be read)."""
    try:
        signature = inspect.signature(fn)
    except Exception:  # noqa: BLE001 - builtins, hostile objects: found when called
        return ""
    try:
        signature.bind(*range(7))
    except TypeError as exc:
        return f"its signature is {_name(fn)}{signature}: {exc}"
    return ""


def _unusable(pretty: str, value: Any, shape: tuple) -> tuple[str, str]:
    """(problem, short reason) when a result cannot be compared at all, else ('', '')."""
    if isinstance(value, _NotAnArray):
        return f"{pretty} is not an array of numbers ({value.why})", "type"
    if value.dtype.kind == "c":
        return (
            f"{pretty} is complex ({value.dtype}): return a real array (the .real of an FFT's "
            "result, once its imaginary part is checked to be ~0)",
            "complex",
        )
    if value.dtype.kind != "f":
        return f"{pretty} has dtype {value.dtype}, expected a floating-point array", "dtype"
    if value.shape != shape:
        return f"{pretty} has shape {value.shape}, expected {shape}", "shape"
    return "", ""


def _user_frame(tb) -> str:
    """' (at file.py:line)': the innermost frame of a traceback that is the user's code, not
    an installed library's or Python's own ('' if there is none)."""
    import sysconfig
    import traceback

    libraries = {sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")}
    frames = [
        f
        for f in traceback.extract_tb(tb)
        if f.filename != __file__ and not any(f.filename.startswith(lib) for lib in libraries)
    ]
    if not frames:
        return ""
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})"


def _close(a, b, rtol, atol) -> bool:
    if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
        return False
    a = a.astype(np.float64)
    return a.shape == b.shape and bool(
        np.max(np.abs(a - b), initial=0.0) <= atol + rtol * max(np.max(np.abs(b)), 1.0)
    )


def _hint(
    feature: str,
    bad: tuple[str, ...],
    case: _Case,
    history: dict[str, set],
    raised: bool = False,
    written: bool = False,
    timeout: float | None = None,
) -> str:
    """One line per distinct piece of advice; gradients that share one are named together."""
    s, p, d, g = case.stride, case.padding, case.dilation, case.groups
    if timeout is not None:
        return (
            f"fn did not return within {timeout:g} s here: look for a loop that never ends; "
            f"if fn is only slow, raise the limit: check(fn, timeout=...) or --timeout"
        )
    if written:
        return (
            "copy an input before changing it in place (x = x.copy()); np.pad returns a new array"
        )
    if raised:
        if feature == "basic":
            return "fn fails on the simplest case: fix the error above first"
        if feature == "tuples":
            return "fn does not take (h, w) tuples: leave out tuples=True (--tuples)"
        return (
            f"if fn does not support {feature}, declare it: check(fn, skip={{{feature!r}}}) "
            f"or convgrad check --skip {feature}; it is then skipped, not failed"
        )
    good_before = (
        {gr for gr in _GRADS if all(gr in ok for ok in history.values())} if history else set()
    )
    grouped: dict[tuple[str, str], list[str]] = {}
    for gr in bad:
        lead = ""
        if feature == "stride" and gr in good_before:
            lead = f"{{names}} right at stride 1 but not at stride {s}: "
        elif feature == "stride_remainder" and gr in good_before:
            lead = f"{{names}} right when the stride divides the input, but not at {case.hw}: "
        elif feature not in ("basic",) and gr in good_before:
            lead = f"{{names}} the earlier features but not {feature}: "
        text = _HINTS.get((feature, gr)) or _HINTS.get((feature, "*")) or ""
        if feature == "combined" and gr not in good_before:
            text, lead = "fix the failing features above first: this case mixes them all", ""
        if text:
            grouped.setdefault((lead, text.format(s=s, p=p, d=d, g=g)), []).append(_PRETTY[gr])
    hints = []
    for (lead, text), names in grouped.items():
        many = len(names) > 1
        joined = " and ".join([", ".join(names[:-1]), names[-1]] if many else names)
        verb = ("are" if many else "is") if "right" in lead else ("pass" if many else "passes")
        hints.append(lead.format(names=f"{joined} {verb}") + text)
    return "\n".join(hints)


_HINTS = {
    ("basic", "dx"): "dE/dX is the 'full' convolution of dE/dO with the 180°-rotated filter: pad "
    "dE/dO by k−1 on each side and correlate it with flip(F)",
    ("basic", "dw"): "dE/dF = X ⋆ dE/dO: slide dE/dO over X (no flip), one product sum per tap",
    ("basic", "db"): "dE/db[k] is the sum of dE/dO[:, k] over the batch and all positions",
    ("channels", "dx"): "dE/dX[c] = Σ_k full(dE/dO[k], flip(F[k, c])): sum over the output "
    "channels k, using each filter's slice c",
    ("channels", "dw"): "dE/dF[k, c] = X[c] ⋆ dE/dO[k]: one correlation per pair (k, c), no sum "
    "over channels; the result has F's shape (K, C, R, S)",
    ("channels", "db"): "dE/db has one entry per filter k: sum dE/dO[:, k]",
    ("batch", "dx"): "each sample's dE/dX uses only that sample's dE/dO",
    ("batch", "dw"): "dE/dF[k, c] = Σ_n X[n, c] ⋆ dE/dO[n, k]: sum (not average) over the batch",
    ("batch", "db"): "dE/db sums over the batch too (not the mean)",
    ("non_square", "*"): "height and width are independent: check H/W and R/S are not swapped "
    "(kernel rows R slide over H, columns S over W)",
    ("stride", "dx"): "dE/dO must be spread out by the stride ({s}−1 zeros between its samples) "
    "before the full convolution with flip(F)",
    ("stride", "dw"): "dE/dO must be spread out by the stride: dE/dF[k, c][j] = Σ_i "
    "X[c][i·{s} + j]·dE/dO[k][i]",
    ("stride", "db"): "dE/db does not depend on the stride: just sum dE/dO",
    ("stride_remainder", "dx"): "with a stride that does not divide, the last rows of X are "
    "never read: their dE/dX is 0, and dE/dX must still have X's full shape (pad the high end)",
    ("stride_remainder", "dw"): "with a stride that does not divide, only the rows the windows "
    "actually read enter dE/dF: slide the stride-spread dE/dO over X, don't resize X",
    ("stride_remainder", "db"): "dE/db: sum dE/dO",
    ("padding", "dx"): "with padding p={p}, compute the gradient of the padded X and crop p from "
    "each side (equivalently, pad dE/dO by k−1−p for the full convolution)",
    ("padding", "dw"): "with padding p={p}, slide dE/dO over the zero-padded X",
    ("padding", "db"): "dE/db: sum dE/dO",
    ("dilation", "dx"): "with dilation d={d}, the flipped filter has d−1 zeros between taps, and "
    "the full convolution pads by d·(k−1)",
    ("dilation", "dw"): "with dilation d={d}, tap j of dE/dF reads X at i·s + j·d: dE/dO slides "
    "over X in steps of d",
    ("dilation", "db"): "dE/db: sum dE/dO",
    ("groups", "dx"): "with groups={g}, channels of group i get gradient only from the filters "
    "and dE/dO channels of group i (weight is (K, C/groups, R, S))",
    ("groups", "dw"): "with groups={g}, dE/dF[k, c] pairs filter k with input channel "
    "(k // (K/groups))·(C/groups) + c only",
    ("groups", "db"): "dE/db: sum dE/dO per filter",
    ("combined", "*"): "every feature passes alone but not together: check the order (spread by "
    "the stride, pad d·(k−1)−p, correlate with the dilated flipped filter, per group, per sample)",
    ("tuples", "*"): "per-dim (h, w) values: apply stride, padding, dilation [0] to H and [1] to W",
}


def _declared(values: Iterable[str] | str | None, name: str) -> set[str]:
    if values is None:
        return set()
    items = {values} if isinstance(values, str) else set(values)
    unknown = items - set(FEATURES)
    if unknown:
        raise ValueError(f"{name} must name features from {FEATURES}, got {sorted(unknown)}")
    return items


def check(
    fn: Callable[..., Any],
    *,
    unsupported: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
    features: Iterable[str] | None = None,
    tuples: bool = False,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    seed: int = 0,
    stop_on_failure: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> CheckReport:
    """Grade a hand-written 2-D convolution backward pass against ``conv_backward``.

    ``fn`` is called as ``dx, dw, db = fn(x, weight, grad_output, stride, padding,
    dilation, groups)`` over a battery of configurations of rising difficulty (features,
    in order: basic, channels, batch, non_square, stride, stride_remainder, padding,
    dilation, groups, combined, tuples); the whole protocol is in
    ``help(convgrad.tools.check)``. A wrong result is compared with the classic mistakes
    (filters not flipped, the stride ignored, an off-by-one padding, ...) and the report
    leads with one finding per cause it recognises.

    Parameters
    ----------
    fn : callable
        ``fn(x, weight, grad_output, stride, padding, dilation, groups) -> (dx, dw, db)``
        with x (N, C, H, W), weight (K, C // groups, R, S) and grad_output (N, K, H_out,
        W_out) float64 arrays; ``db`` may be None.
    unsupported, skip : iterable of str, optional
        Features ``fn`` does not take: skipped, with every feature that needs them.
    features : iterable of str, optional
        Run only these.
    tuples : bool, default False
        ``fn`` accepts (h, w) tuples for stride, padding and dilation.
    rtol, atol : float, default 1e-6 and 1e-9
        A case passes when ``max|got - want| <= atol + rtol*max(|want|, 1)`` for dx, dw
        and db (rtol at least 1e-4 for a float32 result, 1e-2 for float16).
    seed : int, default 0
        Seeds the random cases.
    stop_on_failure : bool, default False
        Stop at the first failing feature.
    timeout : float or None, default 30
        Seconds one case may take; a case past it fails as timed out and grading stops.

    Returns
    -------
    CheckReport
        ``ok``, ``failures``, ``findings``; prints (and shows in a REPL or notebook) as
        a table.

    Raises
    ------
    TypeError
        ``fn`` is not callable.
    ValueError
        An unknown feature name, or a bad timeout.

    Examples
    --------
    >>> import convgrad
    >>> def mine(x, w, g, stride, padding, dilation, groups):
    ...     return convgrad.conv_backward(g, x, w, None, stride, padding, dilation, groups)
    >>> report = convgrad.check(mine)
    >>> report.ok, report.failures
    (True, [])
    >>> def unflipped(x, w, g, stride, padding, dilation, groups):
    ...     dx, dw, db = mine(x, w[..., ::-1, ::-1], g, stride, padding, dilation, groups)
    ...     return dx, mine(x, w, g, stride, padding, dilation, groups)[1], db
    >>> report = convgrad.check(unflipped, features=["basic"])
    >>> report.ok, report.failures
    (False, ['basic'])
    >>> [finding.cause for finding in report.findings]
    ['unflipped']
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    timeout = timeout_seconds(timeout)
    skipped = _declared(unsupported, "unsupported") | _declared(skip, "skip")
    wanted = set(FEATURES) if features is None else _declared(features, "features")
    if not tuples:
        skipped.add("tuples")
    rng = np.random.default_rng(seed)
    results: list[FeatureResult] = []
    history: dict[str, set] = {}
    status: dict[str, str] = {}
    hung = ""
    signature = _signature_problem(fn)
    for feature, (cases, needs, description) in _BATTERY.items():
        result = FeatureResult(feature, "skip", description)
        results.append(result)
        missing = [n for n in needs if n in skipped or status.get(n) == "skip"]
        if feature not in wanted:
            result.message = "not selected"
        elif feature in skipped:
            result.message = (
                "not declared (tuples=False)"
                if feature == "tuples" and not tuples
                else "declared unsupported"
            )
        elif signature:
            result.message = "not graded: fn cannot be called (see above)"
        elif missing:
            result.message = f"needs {', '.join(missing)} (skipped)"
        elif hung:
            result.message = f"not graded: fn timed out in {hung}"
        else:
            signature = _run_feature(fn, result, cases, rng, rtol, atol, history, timeout)
            if signature:  # any call fails the same way: this feature is not graded either
                results[-1] = result = FeatureResult(feature, "skip", description)
                result.message = "not graded: fn cannot be called (see above)"
            if result.timed_out:  # the hung call still runs: grading more would race it
                hung = feature
        status[feature] = result.status
        if stop_on_failure and result.status == "fail":
            break
    report = CheckReport(results, function=_name(fn), timeout=timeout, signature=signature)
    report.findings = _findings(results)
    return report


def _findings(results: list[FeatureResult]) -> list[Finding]:
    """One finding per recognised cause, with every failing feature it explains, in the
    order of the features (the advice is worded with the first one's numbers)."""
    found: dict[str, Finding] = {}
    for r in results:
        for cause, advice in r.causes.items():
            if cause in found:
                found[cause].features.append(r.feature)
            else:
                found[cause] = Finding(cause, advice, [r.feature])
    return list(found.values())


def timeout_seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"timeout must be a number of seconds or None, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {value!r}")
    return float(value)


def _name(fn) -> str:
    try:
        inner = getattr(fn, "func", None)  # functools.partial
        if inner is not None and callable(inner):
            return f"partial({_name(inner)})"
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
        return name if isinstance(name, str) else type(fn).__name__
    except Exception:  # noqa: BLE001 - a callable whose attributes raise
        return type(fn).__name__


def _run_feature(fn, result: FeatureResult, cases, rng, rtol, atol, history, timeout) -> str:
    """Run the feature's cases into ``result``; returns why fn cannot be called at all
    ('' when it can), in which case grading stops."""
    errors: dict[str, float | None] = {g: None for g in _GRADS}
    good = set(_GRADS)
    for case in cases:
        result.cases += 1
        try:
            errs = _run_case(fn, case, rng, rtol, atol, timeout)
        except _CaseFailure as failure:
            if failure.signature:
                return failure.signature
            errs = failure.errors
            for g, why in failure.unusable.items():
                result.unusable.setdefault(g, why)
            if result.status != "fail":
                result.status = "fail"
                result.failing_case = case.describe()
                here = [f"{_PRETTY[g]} {errs[g]:.2g}" for g in failure.bad if g in errs]
                if here:
                    result.failing_case += f" (max error here: {', '.join(here)})"
                result.message = str(failure)
                result.causes = {cause: advice for cause, (_, advice) in failure.causes.items()}
                explained = {g for grads, _ in failure.causes.values() for g in grads}
                # a result of the wrong kind is explained by the message, not by the maths;
                # what a finding explains gets no generic hint
                maths = [
                    g
                    for g in failure.bad
                    if failure.unusable.get(g, "shape") == "shape" and g not in explained
                ]
                if maths or failure.raised or failure.written:
                    result.hint = _hint(
                        result.feature,
                        tuple(maths),
                        case,
                        history,
                        failure.raised,
                        failure.written,
                        timeout if failure.timed_out else None,
                    )
            good -= set(failure.bad)
            if failure.timed_out:
                result.timed_out = True
                break
        for g in _GRADS:
            errors[g] = _worse(errors[g], errs.get(g))
    if result.status != "fail":
        result.status = "pass"
    result.max_error = errors
    history[result.feature] = good
    return ""

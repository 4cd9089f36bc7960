"""check() grades hand-written backward passes; gradcheck() catches wrong gradients."""

from __future__ import annotations

import functools
import io
import math
import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import convgrad
from convgrad.tools.check import FEATURES, check
from convgrad.tools.gradcheck import GradcheckError, gradcheck

sys.path.insert(0, os.path.dirname(__file__))
import _backwards as hand  # noqa: E402  (NumPy-only implementations, independent of convgrad)


@pytest.mark.parametrize("fn", [hand.scatter_backward, hand.conv_style_backward])
def test_correct_implementations_pass(fn):
    report = check(fn, tuples=True)
    assert report.ok, str(report)
    assert report.failures == [] and report.passed == list(FEATURES)
    text = str(report)
    assert all(feature in text for feature in FEATURES) and "OK" in text


# (implementation, every failing feature, the cause recognised, words of its advice)
WRONG = {
    "no stride in backward": (
        functools.partial(hand.scatter_backward, ignore_stride=True),
        ["stride", "stride_remainder", "combined"],
        "stride_ignored",
        "dX and dW equal the result with the stride ignored",
    ),
    "no flip in dX": (
        functools.partial(hand.conv_style_backward, no_flip=True),
        [f for f in FEATURES if f != "tuples"],
        "unflipped",
        "dX equals the result with unflipped filters",
    ),
    "groups ignored": (
        functools.partial(hand.scatter_backward, ignore_groups=True),
        ["groups", "combined"],
        "groups_first",
        "every group reading the first group's channels: with groups=2",
    ),
    "off-by-one padding": (
        functools.partial(hand.conv_style_backward, pad_off_by_one=True),
        ["padding", "combined"],
        "padding_shift",
        "dX equals the right result shifted by one pixel",
    ),
    "dW not summed over the batch": (
        functools.partial(hand.scatter_backward, overwrite_batch=True),
        ["batch", "combined"],
        "batch_one",
        "dW equals one sample's gradient: sum over the batch",
    ),
    "stride remainder dropped": (
        functools.partial(hand.conv_style_backward, no_remainder=True),
        ["stride_remainder", "combined"],
        "remainder_dropped",
        "X's full shape",
    ),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_implementations_get_one_finding_for_their_one_mistake(name):
    fn, failing, cause, words = WRONG[name]
    report = check(fn)
    assert not report.ok
    assert report.failures == failing, str(report)
    assert [f.cause for f in report.findings] == [cause], str(report)
    finding = report.findings[0]
    assert finding.features == failing and words in finding.advice, finding
    for feature in failing:  # each failing feature points at the finding, with no own hint
        result = report[feature]
        assert result.failing_case and list(result.causes) == [cause]
        assert result.hint == "", result.hint
    text = str(report)
    assert text.count(finding.advice) == 1 and "hint:" not in text, text
    assert text.splitlines()[1] == f"finding 1 ({', '.join(failing)}): {finding.advice}"
    assert text.count("see finding 1 above") == len(failing)
    assert "FAILED" in text


def test_an_unflipped_kernel_is_one_finding_not_one_hint_per_feature():
    report = check(functools.partial(hand.conv_style_backward, no_flip=True))
    assert len(report.failures) == 10 and len(report.findings) == 1
    text = str(report)
    assert text.count("unflipped") == 1
    # none of the per-feature advice that has nothing to do with the flip
    for unrelated in ("H/W", "spread out by the stride", "with padding p=", "groups="):
        assert unrelated not in text, unrelated


def _transposed_kernel(x, w, gy, stride, padding, dilation, groups):
    """Planted mistake: dX from the filters with rows and columns exchanged."""
    dx, _, _ = hand.scatter_backward(
        x, w.swapaxes(2, 3).copy(), gy, stride, padding, dilation, groups
    )
    _, dw, db = hand.scatter_backward(x, w, gy, stride, padding, dilation, groups)
    return dx, dw, db


def _hw_swapped(x, w, gy, *options):
    """Planted mistake: dX comes back (W, H) when the image is not square."""
    dx, dw, db = hand.scatter_backward(x, w, gy, *options)
    return (dx.swapaxes(2, 3) if x.shape[2] != x.shape[3] else dx), dw, db


def _batch_mean(x, w, gy, *options):
    """Planted mistake: dW and db averaged over the batch."""
    dx, dw, db = hand.scatter_backward(x, w, gy, *options)
    return dx, dw / len(x), db / len(x)


@pytest.mark.parametrize(
    "fn, features, cause, words",
    [
        (_transposed_kernel, ["basic", "channels", "batch"], "kernel_transposed", "dX equals"),
        (_hw_swapped, ["basic", "channels", "non_square"], "hw_swapped", "(1, 2, 9, 6)"),
        (_batch_mean, ["basic", "channels", "batch"], "batch_mean", "dW and db equal the batch"),
    ],
)
def test_more_classic_mistakes_are_recognised(fn, features, cause, words):
    report = check(fn, features=features)
    assert [f.cause for f in report.findings] == [cause], str(report)
    assert words in report.findings[0].advice
    assert report.findings[0].features == report.failures


def test_unrecognised_failures_keep_their_feature_hints():
    def doubled_dw(*args):
        dx, dw, db = hand.scatter_backward(*args)
        return dx, 2 * dw, db

    report = check(doubled_dw, features=["basic"])
    assert report.findings == [] and report["basic"].causes == {}
    assert "dE/dF = X ⋆ dE/dO" in report["basic"].hint and "hint:" in str(report)


def _three_arguments(x, w, gy):
    return hand.scatter_backward(x, w, gy, 1, 0, 1, 1)


@pytest.mark.parametrize("fn", [_three_arguments, functools.partial(_three_arguments, 1), getattr])
def test_a_wrong_signature_is_reported_once_before_any_feature(fn):
    report = check(fn)
    assert not report.ok and report.signature and report.failures == []
    assert report.findings == [] and report.passed == []
    assert all(r.status == "skip" for r in report.results)
    text = str(report)
    lines = text.splitlines()
    assert lines[1].startswith("fn cannot be called as check calls it: ")
    assert text.count(report.signature) == 1
    assert "declare it" not in text and "hint:" not in text
    assert lines[-1] == (
        "FAILED: fn cannot be called as fn(x, weight, grad_output, stride, padding, dilation, "
        "groups)"
    )
    if fn is _three_arguments:  # read from the signature, before any call
        assert "_three_arguments(x, w, gy): too many positional arguments" in report.signature
    if fn is getattr:  # no readable signature: the TypeError of the first call
        assert "TypeError: getattr expected at most 3 arguments" in report.signature


def test_a_type_error_inside_fn_is_a_failure_not_a_signature_problem():
    def raises_inside(x, w, gy, stride, padding, dilation, groups):
        if stride != 1:
            return len(5)  # a TypeError raised by fn's own code
        return hand.scatter_backward(x, w, gy, stride, padding, dilation, groups)

    report = check(raises_inside, features=["basic", "channels", "stride"])
    assert report.signature == "" and report.failures == ["stride"]
    assert "TypeError: object of type 'int' has no len()" in report["stride"].message


def test_the_report_shows_its_table_in_a_repl_ipython_and_jupyter():
    report = check(functools.partial(hand.conv_style_backward, no_flip=True))
    assert repr(report) == str(report)

    class Printer:  # IPython's pretty printer, reduced to what _repr_pretty_ uses
        def __init__(self):
            self.out = []

        def text(self, value):
            self.out.append(value)

    printer = Printer()
    report._repr_pretty_(printer, cycle=False)
    assert printer.out == [str(report)]
    page = report._repr_html_()
    assert page.startswith("<div>") and page.count("<tr>") == 1 + len(FEATURES)
    assert "dX equals the result with unflipped filters" in page
    assert "<b>FAIL</b>" in page and "partial(conv_style_backward)" in page
    assert "rotate F by 180°" in page and "&lt;" not in page.replace("<", "")


def test_only_the_broken_gradient_is_blamed():
    report = check(functools.partial(hand.conv_style_backward, no_flip=True))
    errors = report["basic"].max_error
    assert errors["dx"] > 1e-3 and errors["dw"] < 1e-9 and errors["db"] < 1e-9


def test_unsupported_features_are_skipped_not_failed():
    def no_dilation_no_groups(x, w, gy, stride, padding, dilation, groups):
        if dilation != 1 or groups != 1:
            raise NotImplementedError("dilation and groups are not supported")
        return hand.scatter_backward(x, w, gy, stride, padding, dilation, groups)

    report = check(no_dilation_no_groups, unsupported={"dilation", "groups"})
    assert report.ok, str(report)
    assert set(report.skipped) == {"dilation", "groups", "combined", "tuples"}
    assert "declared unsupported" in report["dilation"].message
    assert "needs dilation" in report["combined"].message

    # the same function without the declaration fails exactly there, with its own message
    report = check(no_dilation_no_groups)
    assert report.failures == ["dilation", "groups", "combined"]
    assert "NotImplementedError: dilation and groups" in report["dilation"].message


def test_wrong_shapes_and_return_values():
    def transposed_dw(x, w, gy, *options):
        dx, dw, db = hand.scatter_backward(x, w, gy, *options)
        return dx, dw.swapaxes(0, 1), db

    report = check(transposed_dw)
    assert report.failures[0] == "channels"
    assert "dW has shape (3, 4, 3, 3), expected (4, 3, 3, 3)" in report["channels"].message
    assert [f.cause for f in report.findings] == ["kc_swapped"]
    assert "dW has its first two axes swapped" in report.findings[0].advice

    report = check(lambda *args: None)
    assert report.failures[0] == "basic" and "must return (dx, dw, db)" in report["basic"].message


def test_db_none_is_not_graded_and_features_subset():
    def no_bias(*args):
        dx, dw, _ = hand.scatter_backward(*args)
        return dx, dw, None

    report = check(no_bias, features={"basic", "channels", "stride"})
    assert report.ok and report.passed == ["basic", "channels", "stride"]
    assert report["basic"].max_error["db"] is None  # not compared
    basic_row = next(line for line in str(report).splitlines() if line.startswith("basic"))
    assert basic_row.split()[4] == "-"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unsupported must name features"):
        check(hand.scatter_backward, unsupported={"dilaton"})
    with pytest.raises(TypeError, match="callable"):
        check("not a function")


def test_report_renders_with_rich():
    rich = pytest.importorskip("rich.console")
    report = check(functools.partial(hand.scatter_backward, ignore_groups=True))
    console = rich.Console(file=io.StringIO(), width=160, record=True)
    console.print(report)
    text = console.export_text()
    assert "groups" in text and "FAIL" in text and "see finding 1 above" in text
    assert text.splitlines()[1].startswith("finding 1 (groups, combined): dX and dW equal the")


def test_plain_report_wraps_its_prose_to_the_width_and_keeps_the_table():
    report = check(functools.partial(hand.conv_style_backward, no_flip=True))
    buf = io.StringIO()
    report.print(buf, width=70)  # not a terminal: plain text
    lines = buf.getvalue().splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("feature "))
    assert head > 2 and all(len(line) <= 70 for line in lines[:head])  # the finding, wrapped
    assert lines[2].startswith("    ")  # continuation lines indented
    rows = [line for line in lines if line.startswith("basic ")]
    assert rows == [line for line in str(report).splitlines() if line.startswith("basic ")]
    assert buf.getvalue().split() == str(report).split()  # no word lost


# ------------------------------------------------------------------------------- CLI


def _run(*args, cwd=None):
    env = dict(os.environ)
    src = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "convgrad", "check", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.slow
def test_cli_check(tmp_path):
    module = tmp_path / "mine.py"
    module.write_text(
        "import sys\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "import functools, _backwards as hand\n"
        "good = hand.scatter_backward\n"
        "bad = functools.partial(hand.scatter_backward, ignore_groups=True)\n"
    )
    ok = _run("mine:good", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout
    bad = _run(f"{module}:bad")
    assert bad.returncode == 1 and "groups" in bad.stdout and "FAILED" in bad.stdout
    skipped = _run(f"{module}:bad", "--skip", "groups")
    assert skipped.returncode == 0, skipped.stdout
    for args in (
        ("nocolon",),
        ("mine:missing",),
        ("nosuchmodule_xyz:f",),
        ("mine:good", "--skip", "x"),
    ):
        proc = _run(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


# -------------------------------------------------------------------------- gradcheck


def _conv_pair(stride=2, padding=1):
    def fn(x, w):
        return convgrad.conv(x, w, stride=stride, padding=padding)

    def backward(g, x, w):
        return convgrad.conv_backward(g, x, w, stride=stride, padding=padding)[:2]

    return fn, backward


def test_gradcheck_passes_a_right_gradient():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 2))
    fn, backward = _conv_pair()
    result = gradcheck(fn, x, w, backward=backward)
    assert result.ok and result.checked == x.size + w.size
    assert max(result.max_error) < 1e-6


def test_gradcheck_catches_a_wrong_gradient():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((2, 2, 3, 3))
    fn, backward = _conv_pair()

    def unflipped(g, x, w):  # dX with the filters not rotated
        dx = convgrad.conv_input_grad(g, np.flip(w, (2, 3)), x.shape, stride=2, padding=1)
        return dx, backward(g, x, w)[1]

    with pytest.raises(GradcheckError, match="worst: array 0"):
        gradcheck(fn, x, w, backward=unflipped)
    result = gradcheck(fn, x, w, backward=unflipped, raise_exception=False)
    assert not result.ok and result.worst[0] == 0 and result.max_error[1] < 1e-6


def test_gradcheck_says_how_many_elements_were_checked_and_how_many_failed():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((1, 1, 5, 5)), rng.standard_normal((1, 1, 3, 3))
    fn, backward = _conv_pair(stride=1, padding=0)

    def one_wrong_tap(g, x, w):
        dx, dw = backward(g, x, w)
        dw = dw.copy()
        dw[0, 0, 1, 1] += 1.0  # exactly one element of 25 + 9 is wrong
        return dx, dw

    result = gradcheck(fn, x, w, backward=one_wrong_tap, raise_exception=False)
    assert (result.checked, result.failed) == (34, 1) and not result.ok
    assert str(result).startswith("gradcheck FAILED: 1 of 34 elements checked disagree; worst:")
    with pytest.raises(GradcheckError, match="FAILED: 1 of 34 elements checked disagree"):
        gradcheck(fn, x, w, backward=one_wrong_tap)
    good = gradcheck(fn, x, w, backward=backward)
    assert good.failed == 0 and str(good).startswith("gradcheck OK: all 34 elements checked agree")

    def nan_dx(g, x, w):
        dx, dw = backward(g, x, w)
        dx = dx.copy()
        dx[0, 0, 0, 0] = np.nan
        return dx, dw

    result = gradcheck(fn, x, w, backward=nan_dx, raise_exception=False)
    assert not result.ok and result.failed == 1 and result.worst[1] == (0, 0, 0, 0)


def test_gradcheck_any_function_and_fn_backward():
    def f(a, b):
        return np.sin(a) * b

    f.backward = lambda g, a, b: (g * np.cos(a) * b, g * np.sin(a))
    a, b = np.linspace(-1, 1, 6).reshape(2, 3), np.linspace(0.5, 2, 6).reshape(2, 3)
    assert gradcheck(f, a, b).ok
    with pytest.raises(GradcheckError):
        gradcheck(f, a, b, backward=lambda g, a, b: (g * np.cos(a), None))
    with pytest.raises(TypeError, match="backward"):
        gradcheck(np.sin, a)


def test_float32_implementation_is_graded_at_float32_precision():
    def single(*args):
        return tuple(a.astype(np.float32) for a in hand.scatter_backward(*args))

    def single_wrong(*args):
        dx, dw, db = hand.scatter_backward(*args)
        return dx.astype(np.float32), (dw * 1.001).astype(np.float32), db.astype(np.float32)

    assert check(single).ok
    assert check(single_wrong).failures[0] == "basic"  # a 0.1 % error is still caught


def _no_groups(x, w, gy, stride, padding, dilation, groups):
    if groups != 1:
        raise NotImplementedError("groups")  # the line the report must point at
    return hand.scatter_backward(x, w, gy, stride, padding, dilation, groups)


def test_a_raising_function_gets_one_targeted_hint():
    report = check(_no_groups)
    groups = report["groups"]
    assert report.failures == ["groups", "combined"]
    line = _no_groups.__code__.co_firstlineno + 2
    assert f"NotImplementedError: groups (at test_check.py:{line})" in groups.message
    # one hint, telling how to declare the feature, not three generic gradient hints
    assert groups.hint.count("\n") == 0 and "skip" in groups.hint and "groups" in groups.hint
    assert check(_no_groups, skip={"groups"}).ok


def _square_only(x, w, gy, stride, padding, dilation, groups):
    """Planted mistake: dX and dW left at zero unless images and kernels are square."""
    dx, dw, db = hand.scatter_backward(x, w, gy, stride, padding, dilation, groups)
    if x.shape[2] != x.shape[3] or w.shape[2] != w.shape[3]:
        return np.zeros_like(dx), np.zeros_like(dw), db
    return dx, dw, db


def test_gradients_sharing_a_hint_are_named_together():
    hint = check(_square_only, features=["basic", "channels", "non_square"])["non_square"].hint
    lines = hint.splitlines()
    assert len(lines) == 1, hint
    assert lines[0].startswith("dX and dW pass the earlier features but not non_square")


def _writes_into_x(x, w, gy, stride, padding, dilation, groups):
    grads = hand.scatter_backward(x, w, gy, stride, padding, dilation, groups)
    x *= 0  # a classic: reusing an input as scratch space
    return grads


def test_writing_into_an_input_fails():
    report = check(_writes_into_x)
    assert not report.ok and report.failures[0] == "basic"
    assert "wrote into its input x" in report["basic"].message
    assert "copy" in report["basic"].hint


# ------------------------------------------------------- a graded function cannot fool it


def _row(report, feature):
    """The plain-text table row of a feature: [feature, result, dX, dW, db, note...]."""
    return next(line for line in str(report).splitlines() if line.startswith(feature)).split()


def test_sys_exit_and_other_base_exceptions_fail_the_case():
    def exits(*args):
        sys.exit(0)

    report = check(exits)
    assert not report.ok and report["basic"].status == "fail"
    assert "called sys.exit(0)" in report["basic"].message
    assert _row(report, "basic")[2:5] == ["-", "-", "-"]  # nothing compared

    class Escape(BaseException):
        pass

    def escapes(x, w, gy, stride, padding, dilation, groups):
        if stride != 1:
            raise Escape("out")
        return hand.scatter_backward(x, w, gy, stride, padding, dilation, groups)

    report = check(escapes, features=["basic", "channels", "stride"])
    assert report.passed == ["basic", "channels"] and report.failures == ["stride"]
    assert "raised Escape: out" in report["stride"].message


class _Liar(np.ndarray):
    """An ndarray whose difference with anything is zero: it would pass any comparison."""

    def __sub__(self, other):
        return np.zeros(self.shape)

    def __rsub__(self, other):
        return np.zeros(self.shape)


def test_an_array_subclass_or_an_exception_cannot_lie_to_the_grader():
    def lies(*args):
        dx, dw, db = hand.scatter_backward(*args)
        return np.zeros_like(dx).view(_Liar), dw, db

    report = check(lies, features=["basic"])
    assert report.failures == ["basic"] and "dX wrong" in report["basic"].message

    class Hostile(Exception):
        def __str__(self):
            sys.exit(0)  # formatting the message must not end the grading either

    def raises_hostile(*args):
        raise Hostile

    report = check(raises_hostile, features=["basic"])
    assert report.failures == ["basic"]
    assert "raised Hostile (its message cannot be shown)" in report["basic"].message


def test_keyboard_interrupt_is_passed_on():
    def interrupted(*args):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        check(interrupted)


def test_a_hanging_case_times_out_and_grading_stops():
    release = threading.Event()

    def hangs_on_stride(x, w, gy, stride, padding, dilation, groups):
        if stride != 1:
            release.wait()  # hangs until the test lets it go
        return hand.scatter_backward(x, w, gy, stride, padding, dilation, groups)

    try:
        report = check(hangs_on_stride, timeout=0.2)
    finally:
        release.set()
    assert not report.ok and report.timed_out == ["stride"]
    assert report.failures == ["stride"]
    assert report["stride"].message == "timed out: no result after 0.2 s"
    assert "timeout" in report["stride"].hint
    after = FEATURES[FEATURES.index("stride") + 1 :]
    assert all(report[f].status == "skip" for f in after)
    assert report["padding"].message == "not graded: fn timed out in stride"
    assert set(report.passed) == {"basic", "channels", "batch", "non_square"}
    assert "timed out in stride" in str(report).splitlines()[-1]


def test_timeout_is_checked():
    for bad, error in (
        (0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        ("1", TypeError),
        (True, TypeError),
    ):
        with pytest.raises(error, match="timeout must be"):
            check(hand.scatter_backward, timeout=bad)
    assert check(hand.scatter_backward, features=["basic"], timeout=None).ok


def test_complex_and_non_float_results_fail_clearly():
    def complex_dw(*args):
        dx, dw, db = hand.scatter_backward(*args)
        return dx, dw.astype(np.complex128), db  # right real part, zero imaginary part

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning: nothing is silently dropped
        report = check(complex_dw, features=["basic"])
    assert not report.ok and "dW is complex (complex128)" in report["basic"].message
    assert _row(report, "basic")[3] == "complex"
    assert report["basic"].hint == ""  # no advice on the maths of a right real part

    def integer_db(*args):
        dx, dw, db = hand.scatter_backward(*args)
        return dx, dw, np.round(db).astype(np.int64)

    report = check(integer_db, features=["basic"])
    assert "db has dtype int64, expected a floating-point array" in report["basic"].message

    class NoArray:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("cannot be converted")

    def not_an_array(*args):
        dx, dw, db = hand.scatter_backward(*args)
        return NoArray(), dw, db

    report = check(not_an_array, features=["basic"])
    assert "dX is not an array of numbers (RuntimeError: cannot be converted)" in (
        report["basic"].message
    )


@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "inf")])
def test_nan_and_inf_errors_are_shown_as_such_and_fail(bad, shown):
    def poisoned(*args):
        dx, dw, db = hand.scatter_backward(*args)
        dx = dx.copy()
        dx.flat[0] = bad
        return dx, dw, db

    report = check(poisoned, features=["basic", "channels"])
    assert report.failures == ["basic", "channels"]
    assert f"dX holds {'NaN' if shown == 'nan' else 'inf'}" in report["basic"].message
    assert _row(report, "basic")[2] == shown
    assert math.isnan(report["basic"].max_error["dx"]) == (shown == "nan")
    assert "shape" not in str(report)


def test_a_wrong_shape_is_labelled_shape():
    def cropped_dx(*args):
        dx, dw, db = hand.scatter_backward(*args)
        return dx[:, :, 1:], dw, db

    report = check(cropped_dx, features=["basic"])
    assert _row(report, "basic")[2] == "shape" and report["basic"].unusable == {"dx": "shape"}
    assert report["basic"].max_error["dx"] is None


def test_gradcheck_failure_in_float32_says_why():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))

    def fn(x, w):  # computes in float32: eps=1e-6 is below its resolution
        return convgrad.conv(x.astype(np.float32), w.astype(np.float32))

    def backward(g, x, w):
        return convgrad.conv_backward(g, x, w)[:2]

    with pytest.raises(GradcheckError, match="float32.*float64"):
        gradcheck(fn, x, w, backward=backward)
    # the advice works
    assert gradcheck(fn, x, w, backward=backward, eps=1e-3, rtol=1e-2, atol=1e-3).ok


@pytest.mark.slow
def test_cli_features_runs_only_those(tmp_path):
    module = tmp_path / "mine2.py"
    module.write_text(
        "import sys\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "import functools, _backwards as hand\n"
        "bad = functools.partial(hand.scatter_backward, ignore_groups=True)\n"
    )
    only = _run(f"{module}:bad", "--features", "basic,channels,stride")
    assert only.returncode == 0, only.stdout + only.stderr
    assert "passes all 3 checked features" in only.stdout
    wrong = _run(f"{module}:bad", "--features", "basic,nonsense")
    assert wrong.returncode == 2 and "nonsense" in wrong.stderr


@pytest.mark.slow
def test_cli_exit_status_when_fn_exits_or_hangs(tmp_path):
    module = tmp_path / "hostile.py"
    module.write_text(
        "import sys, time\n"
        "def exits(*args):\n"
        "    sys.exit(0)\n"
        "def hangs(*args):\n"
        "    time.sleep(3600)\n"
    )
    exits = _run(f"{module}:exits", "--features", "basic")
    assert exits.returncode == 1, exits.stdout + exits.stderr
    assert "called sys.exit(0)" in exits.stdout and "FAILED: basic" in exits.stdout
    hangs = _run(f"{module}:hangs", "--timeout", "0.5")
    assert hangs.returncode == 1, hangs.stdout + hangs.stderr
    assert "timed out: no result after 0.5 s" in hangs.stdout
    assert "not graded: fn timed out in basic" in hangs.stdout


@pytest.mark.slow
def test_cli_refuses_what_cannot_be_graded_in_one_line(tmp_path):
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "hangs_on_import.py").write_text("import time\ntime.sleep(3600)\n")
    (tmp_path / "fine.py").write_text("def fn(*args):\n    return None\n")
    cases = {
        "sys.exit(0)": (f"{tmp_path / 'exits_on_import.py'}:fn",),
        "did not finish within 0.5 s": (
            f"{tmp_path / 'hangs_on_import.py'}:fn",
            "--timeout",
            "0.5",
        ),
        "no such file": (f"{tmp_path / 'nosuch'}:fn",),
        "timeout must be a positive number": (f"{tmp_path / 'fine.py'}:fn", "--timeout", "0"),
        "invalid float value": (f"{tmp_path / 'fine.py'}:fn", "--timeout", "soon"),
        "expected module:function": (f"{tmp_path / 'fine.py'}:",),
    }
    for words, args in cases.items():
        proc = _run(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert words in proc.stderr, proc.stderr


@pytest.mark.slow
def test_cli_imports_a_file_with_its_folder_on_the_path(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "helpers.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "import _backwards as hand\n"
        "backward = hand.scatter_backward\n"
    )
    (folder / "mine.py").write_text("from helpers import backward\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for target in (f"{folder / 'mine.py'}:backward", "../work/mine.py:backward"):
        proc = _run(target, "--features", "basic", cwd=elsewhere)
        assert proc.returncode == 0, (target, proc.stdout, proc.stderr)
        assert "OK" in proc.stdout


@pytest.mark.slow
def test_cli_reads_a_file_without_py_suffix(tmp_path):
    (tmp_path / "mine").write_text(
        "import sys\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "import _backwards as hand\n"
        "good = hand.scatter_backward\n"
    )
    for target in ("mine:good", "./mine:good", f"{tmp_path / 'mine'}:good"):
        proc = _run(target, "--features", "basic", cwd=tmp_path)
        assert proc.returncode == 0, (target, proc.stdout, proc.stderr)
        assert "OK" in proc.stdout

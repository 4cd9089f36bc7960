"""Extreme but legal options cost time and memory bounded by the work and the output;
sizes past what int64 can index are refused at the door."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convgrad as cg
from conftest import assert_close
from convgrad import reference as ref
from convgrad._primitive import correlate
from convgrad._rules import Correlation
from convgrad._spec import MAX_ELEMENTS, MAX_SIZE
from convgrad.algorithms import REGISTRY
from oracles import direct_correlation, pass_cases

X = np.zeros((1, 2, 8, 8))
W = np.zeros((3, 2, 3, 3))


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: cg.conv(X, W, stride=2**63), "stride must be at most 1152921504606846976"),
        (lambda: cg.conv(X, W, stride=(1, MAX_SIZE + 1)), "stride must be at most"),
        (lambda: cg.conv(X, W, dilation=2**64), "dilation must be at most"),
        (lambda: cg.conv(X, W, padding=2**63), "padding must be at most"),
        (lambda: cg.conv(X, W, padding=((0, 2**61), 0)), "padding must be at most"),
        (
            lambda: cg.conv(X, W, padding="same", dilation=2**59),
            "dilation * (kernel size - 1) + 1 must be at most",
        ),
        (lambda: cg.conv(X, W, padding=2**40), "more than any array can hold"),
        (lambda: cg.conv(X, W, padding=((0, 2**60), 0)), "padding plus x spatial size"),
        (
            lambda: cg.conv_input_grad(np.zeros((1, 3, 1, 1)), W, (1, 2, 8, 8), stride=2**61),
            "stride must be at most",
        ),
        (
            lambda: cg.conv_weight_grad(X, np.zeros((1, 3, 6, 6)), (3, 2, 3, 3), dilation=2**70),
            "dilation must be at most",
        ),
        (lambda: cg.conv_transpose(X, W.swapaxes(0, 1), stride=2**63), "stride must be at most"),
        (
            lambda: cg.conv_transpose(X, W.swapaxes(0, 1), output_padding=2**63, stride=2**63),
            "must be at most",
        ),
        (
            lambda: cg.conv_transpose(X, W.swapaxes(0, 1), stride=2**59),
            "before the padding is cropped",
        ),
    ],
)
def test_sizes_past_int64_are_refused_at_the_door(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value), str(info.value)


def test_the_limits_leave_int64_room():
    # a few sizes added (padded extent plus a dilated tap offset) still fit in an int64
    assert 4 * MAX_SIZE < 2**63 and 8 * MAX_ELEMENTS <= 2**62


def test_cli_refuses_a_huge_stride_in_one_line(capsys):
    from convgrad.cli import main

    assert main(["explain", "--stride", str(2**63)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stride must be at most" in err and "Traceback" not in err


# ------------------------------------------------------- huge strides, dilations, padding

EXTREME = [  # (input, weight, options) of forward convolutions; each gives three correlations
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=10**6, padding=1)),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=(3000, 2), padding=(1, 0))),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(dilation=10**6, padding="same")),
    ((1, 2, 9, 7), (2, 2, 3, 2), dict(dilation=(10**4, 3), stride=2, padding="same")),
    ((1, 2, 8, 8), (3, 2, 3, 3), dict(stride=10**6, padding=10**6)),
    ((1, 2, 9), (2, 2, 5), dict(stride=7, dilation=10**5, padding=2 * 10**5)),
    ((1, 2, 4, 3, 3), (2, 2, 2, 2, 2), dict(stride=(10**5, 1, 2), padding=(1, 10**4, 0))),
]


def _extreme_cases():
    cases = pass_cases(EXTREME)
    # a transposed convolution's stride: lhs dilation 1000 over a 2x3 input
    cases.append(
        (
            "transposed",
            (1, 1, 2, 2, 3),
            (1, 3, 2, 3, 3),
            Correlation((1, 1), ((2, 2), (2, 2)), (1000, 1000), (1, 1)),
        )
    )
    return cases


def _peak(call):
    """(call(), peak bytes traced during it), after one warm-up call (compiled loops are
    built or loaded on first use), with no workspace kept from earlier calls: every
    buffer the call uses is counted, whatever ran before (``_measured``)."""
    call()
    return _measured(call)


@pytest.mark.slow
@pytest.mark.parametrize("name", tuple(REGISTRY))
@pytest.mark.parametrize("case", _extreme_cases(), ids=lambda c: c[0])
def test_huge_strides_and_dilations_cost_memory_bounded_by_work_and_output(name, case):
    _, lhs_shape, rhs_shape, corr = case
    if not REGISTRY[name].supports(lhs_shape, rhs_shape, corr):
        return
    rng = np.random.default_rng(4)
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    expected = direct_correlation(lhs, rhs, corr)
    got, peak = _peak(lambda: correlate(lhs, rhs, corr, algorithm=name))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    # the work's bound: the output, its im2col columns (C x taps per output) twice (the
    # windows and their copy), an int64 index per output and tap (gemm's gathered
    # windows), the inputs' copies and small per-call structures; nothing that grows
    # with stride or dilation
    taps = int(np.prod(rhs_shape[3:]))
    columns = expected.nbytes // rhs_shape[1] * lhs_shape[2] * taps
    index = expected.size // (expected.shape[0] * expected.shape[1] * rhs_shape[1]) * taps * 8
    bound = expected.nbytes + 2 * columns + index + 4 * (lhs.nbytes + rhs.nbytes) + 2**20
    assert peak <= bound, (peak, bound)


def test_every_huge_case_runs_somewhere_else_than_gemm():
    # the cases keep reaching the layout-building algorithms, not only the fallback
    names = {
        n for _, a, b, c in _extreme_cases() for n in REGISTRY if REGISTRY[n].supports(a, b, c)
    }
    assert {"phase", "implicit", "implicit_dw", "blocked_dw", "direct"} <= names


@pytest.mark.parametrize("kind", ["stride", "dilation", "padding"])
def test_huge_options_through_the_public_functions(kind):
    options = {
        "stride": dict(stride=10**9, padding=1),
        "dilation": dict(dilation=10**9, padding="same"),
        "padding": dict(padding=10**9, stride=10**9),
    }[kind]
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    y, peak_y = _peak(lambda: cg.conv(x, w, **options))
    gy = rng.standard_normal(y.shape)
    (gx, gw, _), peak_g = _peak(lambda: cg.conv_backward(gy, x, w, **options))
    assert max(peak_y, peak_g) < 2**20
    stride = options.get("stride", 1)
    dilation = options.get("dilation", 1)
    padding = options["padding"]
    np.testing.assert_allclose(y, ref.conv(x, w, None, stride, padding, dilation), atol=1e-10)
    rx, rw, _ = ref.conv_grads(x, w, gy, stride, padding, dilation)
    np.testing.assert_allclose(gx, rx, atol=1e-10)
    np.testing.assert_allclose(gw, rw, atol=1e-10)


def test_explain_of_a_huge_stride_is_immediate():
    from convgrad import explain

    report, peak = _peak(lambda: explain((5, 100, 100), (10, 5, 5, 5), stride=10**9))
    assert peak < 4 * 2**20 and report.passes


# ----------------------------------------------------------------------- out of memory

ONE = np.broadcast_to(np.float32(1), (1, 1, 1, 1))  # an input that takes no memory


@pytest.mark.parametrize(
    "call, words",
    [
        (  # 1.42 PiB: past any address space, refused at once
            lambda: cg.conv(ONE, np.ones((1, 1, 1, 1), np.float32), padding=10**7),
            "conv: the output (1, 1, 20000001, 20000001) float32 needs 1.42 PiB",
        ),
        (  # unbatched: the caller's (C, *S) shape, not the internal (G, B, O, *S)
            lambda: cg.conv(ONE[0], np.ones((2, 1, 1, 1)), padding=10**7),
            "conv: the output (2, 20000001, 20000001) float64 needs 5.68 PiB",
        ),
        (
            lambda: cg.conv_transpose(
                np.ones((2, 3, 4, 4), np.float32), np.ones((3, 2, 3, 3), np.float32), stride=10**7
            ),
            "conv_transpose: the output (2, 2, 30000003, 30000003) float32 needs 12.8 PiB",
        ),
    ],
)
def test_an_output_past_memory_is_named_as_the_caller_sees_it(call, words):
    with pytest.raises(MemoryError) as info:
        call()
    assert str(info.value).startswith(words), str(info.value)
    assert "out of memory" in str(info.value)


def test_a_memory_error_inside_a_gradient_names_all_its_outputs(monkeypatch):
    from convgrad import functional
    from convgrad._runner import run

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate a workspace")

    def runner(step, *args, **kwargs):
        if step.name == "weight_grad":
            exhausted()
        return run(step, *args, **kwargs)

    monkeypatch.setattr(functional, "run", runner)
    x, w = np.zeros((2, 3, 8, 8), np.float32), np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(MemoryError) as info:
        cg.conv_backward(np.zeros((2, 4, 6, 6), np.float32), x, w)
    message = str(info.value)
    assert message.startswith(
        "conv_backward: the outputs (2, 3, 8, 8) float32 and (4, 3, 3, 3) float32 need 1.92 KiB"
    ), message
    assert "Unable to allocate a workspace" in message
    with pytest.raises(MemoryError, match=r"^conv_weight_grad: the output \(4, 3, 3, 3\) float32"):
        cg.conv_weight_grad(x, np.zeros((2, 4, 6, 6), np.float32), w.shape)


# ------------------------------------------------ extreme but legal options, at random

LIMIT = 2**20  # the workspace limit the property test runs under
BIG = st.one_of(st.integers(1, 3), st.integers(1, 10**6))


@st.composite
def extreme_configs(draw):
    """A convolution or transposed convolution with strides and dilations up to 10**6,
    kernels larger than the input (padded to fit), sizes of 1; its output stays small."""
    nd = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    c, k = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    spatial = draw(st.lists(st.integers(1, 6 if nd < 3 else 3), min_size=nd, max_size=nd))
    kernel = draw(st.lists(st.integers(1, 4 if nd < 3 else 2), min_size=nd, max_size=nd))
    stride = draw(st.lists(BIG, min_size=nd, max_size=nd))
    dilation = draw(st.lists(BIG, min_size=nd, max_size=nd))
    transposed = draw(st.booleans())
    if transposed:  # padding crops the scattered output down to a few samples per dim
        sizes = draw(st.lists(st.integers(1, 6), min_size=nd, max_size=nd))
        full = [
            (n - 1) * s + d * (kk - 1) + 1 for n, s, d, kk in zip(spatial, stride, dilation, kernel)
        ]
        padding = tuple(max(0, (f - m) // 2) for f, m in zip(full, sizes))
        options = dict(
            stride=tuple(stride), padding=padding, groups=groups, dilation=tuple(dilation)
        )
        return True, (draw(st.integers(1, 2)), c, *spatial), (c, k // groups, *kernel), options
    if draw(st.booleans()):
        padding = "same"
    else:  # at least enough to fit the dilated kernel, and a few samples more
        padding = tuple(
            max(0, -(-(d * (kk - 1) + 1 - n) // 2)) + draw(st.integers(0, 2))
            for n, kk, d in zip(spatial, kernel, dilation)
        )
    options = dict(stride=tuple(stride), padding=padding, dilation=tuple(dilation), groups=groups)
    return False, (draw(st.integers(1, 2)), c, *spatial), (k, c // groups, *kernel), options


@pytest.fixture(scope="module")
def warm():
    """Every compiled loop built (or loaded) once, outside the measured calls."""
    x = np.ones((2, 4, 9, 9))
    cg.conv(x, np.ones((4, 1, 3, 3)), padding=1, groups=4, algorithm="direct")
    cg.conv(x, np.ones((4, 4, 3, 3)), padding=1, algorithm="winograd")
    for name in ("implicit_dw", "blocked_dw"):
        cg.conv_weight_grad(x, x, (4, 1, 3, 3), padding=1, groups=4, algorithm=name)
        cg.conv_weight_grad(x, x, (4, 4, 3, 3), padding=1, algorithm=name)


def _measured(call):
    """(call(), peak traced bytes) with no workspace kept from earlier calls."""
    from convgrad import _process
    from convgrad.algorithms import _workspace

    kept = _workspace.workspaces
    _workspace.workspaces = _process.Workspaces(_process.KEEP_BYTES)
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        _workspace.workspaces = kept


@pytest.mark.slow
@settings(max_examples=50, deadline=None, derandomize=True)
@given(extreme_configs(), st.integers(0, 2**32 - 1))
def test_extreme_options_cost_bounded_memory_and_match_the_reference(warm, config, seed):
    transposed, x_shape, w_shape, options = config
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    if transposed:
        expected = ref.conv_transpose(x, w, **options)
        gy = rng.standard_normal(expected.shape)
        y, peak_y = _measured(lambda: cg.conv_transpose(x, w, workspace_limit=LIMIT, **options))
        (gx, gw, _), peak_g = _measured(
            lambda: cg.conv_transpose_backward(gy, x, w, workspace_limit=LIMIT, **options)
        )
        rx = ref.conv(
            gy,
            w,
            None,
            options["stride"],
            options["padding"],
            options["dilation"],
            options["groups"],
        )
        _, rw, _ = ref.conv_grads(
            gy, w, x, options["stride"], options["padding"], options["dilation"], options["groups"]
        )
    else:
        expected = ref.conv(x, w, **options)
        gy = rng.standard_normal(expected.shape)
        y, peak_y = _measured(lambda: cg.conv(x, w, workspace_limit=LIMIT, **options))
        (gx, gw, _), peak_g = _measured(
            lambda: cg.conv_backward(gy, x, w, workspace_limit=LIMIT, **options)
        )
        rx, rw, _ = ref.conv_grads(x, w, gy, **options)
    assert_close(y, expected)
    assert_close(gx, rx)
    assert_close(gw, rw)
    # the workspace limit, the arrays themselves (results, inputs' and filters' copies) a
    # few times over, small per-call structures; nothing that grows with the options
    arrays = sum(a.nbytes for a in (x, w, gy, expected, rx, rw))
    assert max(peak_y, peak_g) <= LIMIT + 8 * arrays + 2**20, (peak_y, peak_g, arrays)


def test_all_finite_reads_a_flipped_transposed_filter_view_in_memory_order():
    """A dX pass's filters are a flipped, transposed view of the caller's: the finiteness
    check reads them as the contiguous array they are (a 0-d array stays as it is)."""
    from convgrad.algorithms._dtypes import all_finite, memory_order

    w = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    view = w[None].transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    ordered = memory_order(view)
    assert ordered.flags.c_contiguous and np.shares_memory(ordered, w)
    assert sorted(ordered.ravel()) == sorted(view.ravel())
    assert memory_order(np.array(1.0)).shape == () and all_finite(np.array(1.0))
    w[1, 2, 3, 4] = np.nan
    assert not all_finite(view) and all_finite(view[..., 1:, :])


@pytest.mark.parametrize("shape", [(5000,), (700, 3), (2, 3, 40, 41), (1, 3000), (3, 1, 2000)])
def test_all_finite_answers_in_small_blocks(shape):
    from convgrad.algorithms._dtypes import all_finite

    a = np.zeros(shape)
    views = (a, a.swapaxes(0, -1), a[..., ::-1], a.T[::-1])
    assert all(all_finite(v, block=64) for v in views)
    for index in (0, a.size // 2, a.size - 1):
        for value in (np.nan, np.inf, -np.inf):
            a.flat[index] = value
            assert not any(all_finite(v, block=64) for v in views)
            a.flat[index] = 0.0
    _, peak = _peak(lambda: all_finite(np.zeros(2**22, np.float32).reshape(2**11, 2**11)))
    assert peak < 2**24 + 2**21  # the array itself, and booleans for one block only

"""Winograd weight gradients (``winograd_dw``): F(3, 2) per axis against the float64
definition (``oracles.direct_correlation``) on layers' weight-gradient correlations, with
workspaces full of NaN, many blocks and jobs; its float32 error; its fallback to gemm;
and where the planner takes it."""

from __future__ import annotations

import numpy as np
import pytest

from convgrad import _plan, _process, _rules
from convgrad._primitive import correlate
from convgrad._rules import Correlation
from convgrad._spec import conv_spec
from convgrad.algorithms import gemm, winograd_dw
from convgrad.algorithms._winograd_tiles import cook_toom
from oracles import direct_correlation

FLOAT32_TOLERANCE = 2e-5  # the library's float32 promise (tests/conftest.py: assert_close)

# (input, weight, options) of layers whose weight gradient has 3 outputs per axis
LAYERS = [
    ((2, 3, 9, 11), (4, 3, 3, 3), dict(padding=1)),
    ((1, 2, 8, 8), (5, 2, 3, 3), {}),  # no padding, even sizes
    ((2, 3, 7, 6), (2, 3, 3, 3), {}),  # odd rhs: a last chunk of one sample
    ((2, 4, 10, 9), (4, 4, 3, 3), dict(padding=2, dilation=2)),  # phases
    ((2, 4, 12, 13), (6, 2, 3, 3), dict(padding=((3, 1), (0, 2)), dilation=(3, 2), groups=2)),
    ((3, 2, 17), (4, 2, 3), dict(padding=1)),  # 1-D
    ((2, 3, 16), (5, 3, 3), dict(padding=((2, 0),), dilation=2)),
    ((1, 5, 6, 7), (3, 5, 3, 3), dict(padding=((4, 1), (2, 3)))),  # padding past a chunk
]


def _operands(x_shape, w_shape, options, dtype=np.float64, seed=0):
    """(lhs, rhs, corr) of the layer's weight-gradient correlation, as the library forms
    them (strided views of x and grad_output)."""
    from convgrad._runner import operand

    spec = conv_spec(x_shape, w_shape, **options)
    step = _rules.weight_grad(spec)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    dy = rng.standard_normal((x_shape[0], w_shape[0], *spec.out_spatial)).astype(dtype)
    arrays = {"x": x, "grad_output": dy}
    lhs = operand(step, step.lhs, arrays[step.lhs.source])
    rhs = operand(step, step.rhs, arrays[step.rhs.source])
    return lhs, rhs, step.corr


def test_f32_matrices_compute_three_outputs_from_two_taps():
    at, g, bt = cook_toom(3, 2, (0, 1, -1))
    rng = np.random.default_rng(1)
    for _ in range(5):
        d, w = rng.standard_normal(4), rng.standard_normal(2)
        np.testing.assert_allclose(
            at @ ((g @ w) * (bt @ d)), np.correlate(d, w, "valid"), atol=1e-12
        )


@pytest.mark.parametrize("layer", LAYERS, ids=[str(c[0]) for c in LAYERS])
@pytest.mark.parametrize("jobs", [1, 3])
def test_poisoned_workspaces_many_blocks_and_jobs_match_the_definition(layer, jobs, monkeypatch):
    """Every workspace handed out is full of NaN, blocks hold one row of chunks, and the
    rows are split over 1 or 3 jobs: the result is the definition's, without gemm."""
    lhs, rhs, corr = _operands(*layer)
    assert winograd_dw.supports(lhs.shape, rhs.shape, corr)
    expected = direct_correlation(lhs, rhs, corr)

    def poisoned(slot, size, dtype):
        return np.full(size, np.nan, dtype=dtype)

    def no_gemm(*args):
        raise AssertionError("winograd_dw fell back to gemm")

    monkeypatch.setattr(winograd_dw, "scratch", poisoned)
    monkeypatch.setattr(gemm, "run", no_gemm)
    monkeypatch.setattr(_process.jobs, "workers", lambda n: max(1, min(n, jobs)))
    monkeypatch.setattr(_process, "SERIAL_WORK", 0.0)
    for min_depth, block_bytes in ((1, 1), (256, 2**23)):  # one row a block; whole
        monkeypatch.setattr(winograd_dw, "MIN_DEPTH", min_depth)
        monkeypatch.setattr(winograd_dw, "BLOCK_BYTES", block_bytes)
        got = correlate(lhs, rhs, corr, algorithm="winograd_dw")
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
        got32 = correlate(
            lhs.astype(np.float32), rhs.astype(np.float32), corr, algorithm="winograd_dw"
        )
        np.testing.assert_allclose(got32, expected, atol=2e-5 * np.abs(expected).max())


def test_float32_error_stays_within_a_quarter_of_the_tolerance():
    """On a layer of the benchmark's kind (256 channels, 14x14, batch 8): max |error| /
    max(1, max |expected|) against the float64 definition, as for the forward tiles."""
    lhs, rhs, corr = _operands((8, 64, 14, 14), (48, 64, 3, 3), dict(padding=1), np.float32, 3)
    expected = direct_correlation(lhs, rhs, corr)
    got = correlate(lhs, rhs, corr, algorithm="winograd_dw")
    assert got.dtype == np.float32
    error = np.abs(got - expected).max() / max(1.0, np.abs(expected).max())
    assert 1e-9 < error <= FLOAT32_TOLERANCE / 4, error


@pytest.mark.parametrize("where", ["lhs", "rhs"])
def test_an_inf_or_nan_sends_the_call_to_gemm(where, monkeypatch):
    """A tile transform would spread an inf or NaN over its chunk's outputs: the call is
    computed by gemm instead, once, and the non-finite values reach only their windows."""
    lhs, rhs, corr = _operands(*LAYERS[0])
    lhs, rhs = lhs.copy(), rhs.copy()
    target = lhs if where == "lhs" else rhs
    target[0, 1, 0, 2, 3] = np.nan
    target[0, 0, 1, 4, 5] = np.inf
    calls = []
    original = gemm.run
    monkeypatch.setattr(gemm, "run", lambda *a: calls.append(1) or original(*a))
    got = correlate(lhs, rhs, corr, algorithm="winograd_dw")
    expected = direct_correlation(lhs, rhs, corr)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-10, atol=1e-10)
    assert calls == [1]


def test_counts_are_the_points_gemms():
    """GEMM flops: 2 * points * B * O per chunk of every (channel, phase)."""
    lhs, rhs, corr = _operands(*LAYERS[3])  # 2 phases per axis, 7x6 rhs
    counts = winograd_dw.counts(lhs.shape, rhs.shape, corr, 4, cores=2, limit=2**28)
    g, b, c = lhs.shape[:3]
    o = rhs.shape[1]
    # phase p of an axis holds ceil((K - p) / 2) rhs samples: chunks of two, the most of any
    chunks = [(-(-k // 2) + 1) // 2 for k in rhs.shape[3:]]
    assert counts.gemm_flops == 2.0 * g * 16 * b * o * c * 4 * chunks[0] * chunks[1]


@pytest.mark.parametrize(
    "x_shape, w_shape, options, expected",
    [  # many channels: 2.25x fewer multiplications outweigh the tiles (two threads: 3x3-14
        # 4.5-4.7 ms, gemm 6.0-6.7; dilated 8.2, gemm 11.3)
        ((8, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), "winograd_dw"),
        ((4, 256, 28, 28), (256, 256, 3, 3), dict(padding=2, dilation=2), "winograd_dw"),
        # 64 channels: the tiles (4x the input, through L3) outweigh the savings (3x3-56
        # 9.6-10 ms against blocked_dw's 5.5)
        ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), "blocked_dw"),
    ],
)
def test_the_planner_takes_it_where_it_was_measured_fastest(x_shape, w_shape, options, expected):
    lhs, rhs, corr = _operands(x_shape, w_shape, options, np.float32)
    est = _plan.estimates(lhs.shape, rhs.shape, corr, 4, threads=2, limit=2**28)
    assert min(est, key=est.get) == expected


def test_workspace_limit_below_one_row_goes_to_gemm(monkeypatch):
    lhs, rhs, corr = _operands(*LAYERS[0])
    calls = []
    original = gemm.run
    monkeypatch.setattr(gemm, "run", lambda *a: calls.append(1) or original(*a))
    got = correlate(lhs, rhs, corr, algorithm="winograd_dw", workspace_limit=64)
    np.testing.assert_allclose(got, direct_correlation(lhs, rhs, corr), rtol=1e-10, atol=1e-10)
    assert calls == [1]


def test_jobs_fill_the_cores_up_to_the_rows_and_their_sums_share():
    """Under simulate(16) and simulate(64) the rows (channel, phase, chunk row) form one
    job per core where they are enough, and counts() says so; each job's sums count
    against SUMS_SHARE of the limit, which caps them; the results match one thread's."""
    from conftest import assert_close

    lhs, rhs, corr = _operands((2, 8, 30, 30), (8, 8, 3, 3), dict(padding=1), np.float32)
    expected = direct_correlation(lhs, rhs, corr)
    with _process.jobs.simulate(1):
        one = correlate(lhs, rhs, corr, algorithm="winograd_dw")
    rows = 2 * 15  # images x chunk rows (30 outputs: 15 chunks of two)
    for cores, limit in ((16, 2**28), (64, 2**28), (64, 2**20)):
        est = winograd_dw.counts(lhs.shape, rhs.shape, corr, 4, cores=cores, limit=limit)
        cap = min(cores, rows)
        if limit == 2**20:  # 16 points x 8 x 8 sums of 4 bytes each, and their planes
            assert est.jobs < cap
        else:
            assert est.jobs == cap
        with _process.jobs.simulate(cores) as busy:
            got = correlate(lhs, rhs, corr, algorithm="winograd_dw", workspace_limit=limit)
        assert busy[0] == est.jobs
        assert_close(got, one, np.float32)
        assert_close(got, expected, np.float32)


RAW = [  # raw correlations with 3 outputs per axis: cropping, uneven strides
    ((1, 2, 3, 9, 8), (1, 4, 3, 6, 5), Correlation((1, 1), ((-1, 0), (0, -1)), (1, 1), (1, 1))),
    ((1, 2, 3, 11, 13), (1, 4, 3, 6, 9), Correlation((3, 2), ((-1, 3), (2, -2)), (1, 1), (1, 1))),
    ((2, 3, 2, 20), (2, 2, 2, 12), Correlation((4,), ((0, 0),), (1,), (1,))),
    ((1, 2, 2, 4, 4), (1, 3, 2, 2, 2), Correlation((1, 1), ((0, 0), (0, 0)), (1, 1), (1, 1))),
]


@pytest.mark.parametrize("case", RAW, ids=[str(c[1]) for c in RAW])
def test_cropping_and_uneven_window_strides_match_the_definition(case):
    lhs_shape, rhs_shape, corr = case
    assert winograd_dw.supports(lhs_shape, rhs_shape, corr)
    rng = np.random.default_rng(11)
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    lhs.flags.writeable = rhs.flags.writeable = False
    expected = direct_correlation(lhs, rhs, corr)
    got = correlate(lhs, rhs, corr, algorithm="winograd_dw")
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    got16 = correlate(lhs.astype(np.float16), rhs.astype(np.float16), corr, algorithm="winograd_dw")
    assert got16.dtype == np.float16
    np.testing.assert_allclose(got16, expected, atol=5e-3 * max(1, np.abs(expected).max()))

"""Winograd F(m, 3): the Cook-Toom matrices, the float32 error of every registered tile,
both tile sizes on bands of every size, and honest counts for the planner.

Every result is judged against the float64 definition (``oracles.direct_correlation``)
or, for the matrices, against ``np.correlate``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from convgrad import _plan
from convgrad._primitive import correlate
from convgrad._rules import Correlation
from convgrad.algorithms import REGISTRY, _winograd
from convgrad.algorithms._winograd_tiles import POINTS, Tiles, cook_toom
from oracles import direct_correlation

WINOGRAD = [name for name in REGISTRY if hasattr(REGISTRY[name], "TILES")]
FLOAT32_TOLERANCE = 2e-5  # the library's float32 promise (tests/conftest.py: assert_close)


def _corr(dims: int, padding=1, dilation=1) -> Correlation:
    return Correlation((1,) * dims, ((padding, padding),) * dims, (1,) * dims, (dilation,) * dims)


@pytest.mark.parametrize("m", sorted(POINTS))
def test_cook_toom_matrices_compute_the_correlation(m):
    at, g, bt = cook_toom(m, 3)
    assert at.shape == (m, m + 2) and g.shape == (m + 2, 3) and bt.shape == (m + 2, m + 2)
    assert np.array_equal(bt, np.round(bt))  # B^T's rows are scaled to integers
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, w = rng.standard_normal(m + 2), rng.standard_normal(3)
        np.testing.assert_allclose(
            at @ ((g @ w) * (bt @ d)), np.correlate(d, w, "valid"), atol=1e-12
        )


def test_cook_toom_takes_any_distinct_points():
    at, g, bt = cook_toom(3, 3, (0, 1, -1, 3))
    d, w = np.arange(5.0) ** 2, np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), np.correlate(d, w, "valid"), atol=1e-12)
    with pytest.raises(ValueError, match="distinct points"):
        cook_toom(3, 3, (0, 1, 1, 2))


def test_tiles_lay_out_three_axes_and_count_their_terms():
    t = Tiles((2, 4, 4))
    assert t.alpha == (4, 6, 6) and t.step == (2, 4, 4) and t.planes == 144
    assert t.filters.shape == (144, 27)
    flat = Tiles((4,))
    assert flat.alpha == (1, 1, 6) and flat.step == (1, 1, 4)
    at, _, bt = cook_toom(4, 3)

    def terms(matrix):  # the loop's terms: each row's nonzeros, padded to an even count
        return sum(-(-np.count_nonzero(row) // 2) * 2 for row in matrix)

    assert flat.terms("bt") == terms(bt) >= np.count_nonzero(bt)
    assert flat.terms("at") == terms(at)
    # 2-D: the first pass sees 6 rows of the block, the second 6 (B^T) or 4 (A^T) columns
    square = Tiles((4, 4))
    assert square.terms("bt") == 12 * terms(bt)
    assert square.terms("at") == 10 * terms(at)


# float32 error: standard normal data, max |error| / max(1, max |expected|), against the
# float64 definition; a quarter of the tolerance at most (the benchmark shapes, measured
# in docs/winograd.md, stay within the same bound)
ERROR_CASES = {
    1: ((1, 2, 128, 300), (1, 96, 128, 3)),
    2: ((1, 2, 96, 18, 17), (1, 64, 96, 3, 3)),
    3: ((1, 1, 32, 9, 12, 11), (1, 24, 32, 3, 3, 3)),
}


@pytest.mark.parametrize("name", WINOGRAD)
@pytest.mark.parametrize("dims", sorted(ERROR_CASES))
def test_float32_error_of_every_tile_stays_within_a_quarter_of_the_tolerance(name, dims):
    lhs_shape, rhs_shape = ERROR_CASES[dims]
    corr = _corr(dims)
    assert REGISTRY[name].supports(lhs_shape, rhs_shape, corr)
    rng = np.random.default_rng(100 + dims)
    lhs = rng.standard_normal(lhs_shape, dtype=np.float32)
    rhs = rng.standard_normal(rhs_shape, dtype=np.float32)
    expected = direct_correlation(lhs, rhs, corr)
    got = correlate(lhs, rhs, corr, algorithm=name)
    assert got.dtype == np.float32
    error = np.abs(got - expected).max() / max(1.0, np.abs(expected).max())
    assert error <= FLOAT32_TOLERANCE / 4, error
    # and far from exact: the tile's arithmetic runs in float32, not in float64
    assert error > 1e-8


@pytest.mark.slow
def test_the_next_larger_tiles_miss_the_bound():
    """F(6x6, 3x3) and F(4x4x4, 3x3x3), which no algorithm uses, err past a quarter of the
    tolerance on layers of the benchmark's sizes (the registered tiles: a quarter at most,
    docs/winograd.md)."""
    cases = {
        2: ((1, 8, 256, 14, 14), (1, 256, 256, 3, 3), {2: (6, 6)}),
        3: ((1, 2, 128, 8, 14, 14), (1, 128, 128, 3, 3, 3), {3: (4, 4, 4)}),
    }
    for dims, (lhs_shape, rhs_shape, sizes) in cases.items():
        rng = np.random.default_rng(100 + dims)
        lhs = rng.standard_normal(lhs_shape, dtype=np.float32)
        rhs = rng.standard_normal(rhs_shape, dtype=np.float32)
        expected = direct_correlation(lhs, rhs, _corr(dims))
        got = _winograd.run(sizes, "larger", lhs, rhs, _corr(dims), 2**30)
        error = np.abs(got - expected).max() / max(1.0, np.abs(expected).max())
        assert error > FLOAT32_TOLERANCE / 4, (dims, error)


# bands of every size (whole images down to one tile row of one image); odd sizes,
# cropping, dilation phases, groups, 1-D to 3-D
PATH_CASES = [
    ((2, 3, 4, 23), (2, 5, 4, 3), Correlation((1,), ((2, 0),), (1,), (2,))),
    ((1, 3, 5, 13, 10), (1, 4, 5, 3, 3), Correlation((1, 1), ((1, 2), (-1, 1)), (1, 1), (1, 1))),
    ((3, 2, 3, 11, 14), (3, 2, 3, 3, 3), Correlation((1, 1), ((2, 2), (3, 1)), (1, 1), (2, 3))),
    (
        (1, 2, 3, 6, 9, 7),
        (1, 4, 3, 3, 3, 3),
        Correlation((1, 1, 1), ((1, 1),) * 3, (1,) * 3, (1, 2, 1)),
    ),
]


@pytest.mark.parametrize("name", WINOGRAD)
@pytest.mark.parametrize("case", range(len(PATH_CASES)))
def test_bands_of_every_size_match_the_definition(name, case):
    lhs_shape, rhs_shape, corr = PATH_CASES[case]
    rng = np.random.default_rng(case)
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    expected = direct_correlation(lhs, rhs, corr)
    for limit in (2**30, 8192, 64):  # small limits: bands of a few tile rows, of one
        got = correlate(lhs, rhs, corr, algorithm=name, workspace_limit=limit)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("name", WINOGRAD)
@pytest.mark.parametrize("where", ["first", "last"])
def test_an_inf_or_nan_in_any_band_sends_the_call_to_gemm(name, where, monkeypatch):
    """The bands check the input they gather, in their jobs: a NaN and an inf in the first
    or the last band of many (small limit) each reach only the outputs whose windows hold
    them, as ``gemm`` gives them, and the call asks gemm exactly once."""
    from convgrad.algorithms import gemm

    lhs_shape, rhs_shape, corr = PATH_CASES[1]
    rng = np.random.default_rng(9)
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    at = (0, 0, 1, 0, 0) if where == "first" else (0, 0, 2, 12, 9)
    lhs[at] = np.nan
    lhs[(0, 0, 3, 6 if where == "first" else 11, 4)] = np.inf
    calls = []
    original = gemm.run
    monkeypatch.setattr(gemm, "run", lambda *a: calls.append(1) or original(*a))
    got = correlate(lhs, rhs, corr, algorithm=name, workspace_limit=8192)
    expected = direct_correlation(lhs, rhs, corr)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    assert (~finite).any() and finite.any()
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-10, atol=1e-10)
    assert calls == [1]


def test_counts_are_the_tiles_gemms():
    """GEMM flops: 2 * alpha^d * O * C per tile, over every tile of every phase."""
    f4 = REGISTRY["winograd4"]
    lhs_shape, rhs_shape = (1, 8, 64, 56, 56), (1, 64, 64, 3, 3)
    tiles = 8 * 14 * 14
    assert (
        f4.counts(lhs_shape, rhs_shape, _corr(2), 4, cores=2, limit=2**28).gemm_flops
        == 2 * 36 * 64 * 64 * tiles
    )
    # a dilation of 2: four 14x14 phases of a 28x28 output, 4x4 tiles of 4x4 outputs each
    lhs_shape, rhs_shape = (1, 4, 32, 28, 28), (1, 16, 32, 3, 3)
    counts = f4.counts(
        lhs_shape, rhs_shape, _corr(2, padding=2, dilation=2), 4, cores=2, limit=2**28
    )
    assert counts.gemm_flops == 2 * 36 * 16 * 32 * 4 * 4 * 16
    f2 = REGISTRY["winograd"]
    lhs_shape, rhs_shape = (1, 2, 8, 7, 8, 9), (1, 4, 8, 3, 3, 3)
    tiles = 2 * math.prod(-(-n // 2) for n in (7, 8, 9))
    assert (
        f2.counts(lhs_shape, rhs_shape, _corr(3), 4, cores=2, limit=2**28).gemm_flops
        == 2 * 64 * 4 * 8 * tiles
    )


def test_the_planner_takes_the_larger_tile_where_it_pays():
    # 3x3 layers with 64-128 channels on 28-56 pixel maps: F(4x4, 3x3)
    for lhs_shape, rhs_shape in (
        ((1, 8, 64, 56, 56), (1, 64, 64, 3, 3)),
        ((1, 8, 128, 28, 28), (1, 128, 128, 3, 3)),
    ):
        assert _plan.choose(lhs_shape, rhs_shape, _corr(2), 4, threads=2) == "winograd4"
    # 512 channels on 7x7 maps: the transformed filters (36 x 512 x 512) dwarf the work
    choice = _plan.choose((1, 8, 512, 7, 7), (1, 512, 512, 3, 3), _corr(2), 4, threads=2)
    assert choice not in WINOGRAD


def test_bands_shrink_to_a_cores_share_of_a_limit_that_binds():
    """The fewest bands within a core's share of the limit, of equal rows (within one):
    an image of 40 rows of tiles under a limit of 13 a band is cut 10 + 10 + 10 + 10, not
    13 + 13 + 13 + 1."""
    lhs_shape, rhs_shape, corr = (1, 4, 16, 80, 80), (1, 16, 16, 3, 3), _corr(2)
    for name in WINOGRAD:
        geom = _winograd.Geometry(lhs_shape, rhs_shape, corr, REGISTRY[name].TILES)
        full = geom.phase_tiles(geom.axis, 0)
        limit = 2 * geom.band_bytes(full // 3, 16, 16, 4)  # two cores: a third of an image
        rows, images = _winograd.band(geom, lhs_shape, rhs_shape, 4, limit, 2)
        most = max(r for r in range(1, full + 1) if geom.band_bytes(r, 16, 16, 4) <= limit // 2)
        assert full // 3 <= most < full // 2
        assert images == 1 and rows <= most and -(-full // rows) == -(-full // most)
        assert rows == -(-full // -(-full // most))  # equal bands, the last within one row

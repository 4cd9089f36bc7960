"""Every registered correlation algorithm against a direct float64 evaluation.

Driven by the registry: each algorithm is run, through ``correlate(..., algorithm=name)``,
on every case its ``supports()`` accepts (so ``supports()`` may only say True where the
algorithm is exact), over 1/2/3-D and stride, padding, lhs/rhs dilation and groups. The
cases are the correlations of real forward, input-gradient and weight-gradient passes
(built by ``_rules``) plus a few raw ones with cropping.
"""

from __future__ import annotations

import tracemalloc
import zlib

import numpy as np
import pytest

from convgrad import _process, _rules
from convgrad._primitive import correlate
from convgrad._rules import Correlation
from convgrad._runner import operand
from convgrad._spec import conv_spec
from convgrad.algorithms import REGISTRY, _workspace
from oracles import direct_correlation, pass_cases

# ------------------------------------------------------------------------------- cases

# (input_shape, weight_shape, options) of forward convolutions; each gives three correlations
CONVS = [
    ((2, 3, 9), (4, 3, 3), {}),
    ((2, 4, 11), (6, 2, 4), dict(stride=3, padding=((2, 1),), groups=2)),
    ((1, 2, 13), (3, 2, 3), dict(dilation=3, padding=4)),
    ((2, 3, 8, 7), (5, 3, 3, 3), dict(padding=1)),
    ((2, 3, 9, 8), (4, 3, 3, 2), dict(stride=2, padding=((0, 2), (1, 0)))),
    ((1, 4, 10, 9), (4, 2, 3, 3), dict(stride=(2, 3), dilation=(1, 2), groups=2)),
    ((2, 6, 8, 8), (6, 1, 3, 3), dict(padding=1, groups=6)),  # depthwise
    ((2, 6, 9, 9), (12, 1, 5, 5), dict(padding=2, stride=2, groups=6)),  # depthwise x2
    ((1, 2, 12, 11), (3, 2, 7, 7), dict(padding=3)),  # large kernel, few channels
    ((2, 8, 6, 6), (4, 8, 1, 1), {}),  # pointwise
    ((1, 24, 6, 7), (4, 24, 3, 3), dict(padding=1)),  # C*kw > 64: no row merge in implicit
    ((2, 8, 7, 7), (4, 8, 1, 1), dict(stride=2)),  # strided pointwise
    ((2, 4, 6, 6), (4, 4, 3, 3), dict(dilation=2, padding=2)),
    ((1, 2, 5, 6, 4), (3, 2, 3, 3, 2), dict(padding=1)),
    ((2, 3, 5, 6, 7), (4, 3, 3, 3, 3), dict(padding=(1, 0, 2), dilation=(1, 2, 1))),  # 3x3x3
    ((2, 2, 6, 5, 5), (2, 1, 2, 3, 3), dict(stride=(2, 1, 2), dilation=(1, 2, 1), groups=2)),
]


def _cases():
    cases = pass_cases(CONVS)
    # raw correlations: cropping (negative padding), lhs dilation with window strides
    cases.append(
        (
            "crop",
            (1, 2, 3, 9, 8),
            (1, 4, 3, 3, 2),
            Correlation((1, 2), ((-1, 2), (1, -2)), (1, 1), (2, 1)),
        )
    )
    cases.append(  # a dilated 3x3 with cropping and uneven padding (winograd's phases)
        (
            "dil-crop",
            (1, 2, 3, 11, 13),
            (1, 4, 3, 3, 3),
            Correlation((1, 1), ((-1, 2), (3, -1)), (1, 1), (2, 3)),
        )
    )
    cases.append(
        (
            "ld+ws",
            (2, 1, 2, 6, 5),
            (2, 3, 2, 3, 3),
            Correlation((2, 3), ((2, 1), (0, 2)), (3, 2), (1, 2)),
        )
    )
    return cases


CASES = _cases()
ALGORITHMS = tuple(REGISTRY)


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_algorithm_matches_direct_evaluation(name, case):
    _, lhs_shape, rhs_shape, corr = case
    algorithm = REGISTRY[name]
    if not algorithm.supports(lhs_shape, rhs_shape, corr):
        with pytest.raises(ValueError, match="does not support"):
            correlate(np.zeros(lhs_shape), np.zeros(rhs_shape), corr, algorithm=name)
        return
    rng = np.random.default_rng(zlib.crc32(case[0].encode()))  # the same in every process
    lhs = rng.standard_normal(lhs_shape)
    rhs = rng.standard_normal(rhs_shape)
    expected = direct_correlation(lhs, rhs, corr)
    lhs.flags.writeable = False
    rhs.flags.writeable = False
    got = correlate(lhs, rhs, corr, algorithm=name)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    got32 = correlate(lhs.astype(np.float32), rhs.astype(np.float32), corr, algorithm=name)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=0, atol=2e-5 * max(1, np.abs(expected).max()))
    # a tiny workspace forces every chunking path; results must not change
    full = algorithm.workspace_bytes(lhs_shape, rhs_shape, corr, 8)
    for limit in (64, max(64, full // 3 + 8)):
        small = correlate(lhs, rhs, corr, algorithm=name, workspace_limit=limit)
        np.testing.assert_allclose(small, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    # strided views (as the public functions pass them: groups split, N and C swapped,
    # a flipped kernel, every other sample) give the same result
    wide = np.zeros((lhs_shape[1], lhs_shape[0], lhs_shape[2], *lhs_shape[3:-1], 2 * lhs_shape[-1]))
    lhs_view = wide.swapaxes(0, 1)[..., ::2]
    lhs_view[...] = lhs
    rhs_view = np.flip(np.flip(rhs, axis=-1).copy(), axis=-1)
    assert not lhs_view.flags.c_contiguous and rhs_view.strides[-1] < 0
    got = correlate(lhs_view, rhs_view, corr, algorithm=name)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    wide[..., : lhs_shape[-1]] = lhs.swapaxes(0, 1)  # a view with a unit last axis
    got = correlate(wide.swapaxes(0, 1)[..., : lhs_shape[-1]], rhs, corr, algorithm=name)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_supports_something(name):
    assert any(REGISTRY[name].supports(c[1], c[2], c[3]) for c in CASES)


def test_auto_matches_direct_evaluation_everywhere():
    for _, lhs_shape, rhs_shape, corr in CASES:
        rng = np.random.default_rng(7)
        lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
        np.testing.assert_allclose(
            correlate(lhs, rhs, corr), direct_correlation(lhs, rhs, corr), rtol=1e-9, atol=1e-9
        )


# --------------------------------------------------------------------------- workspace

# a forward 3x3 conv whose unchunked workspace (~ 16 MiB of columns) dwarfs the limit
BIG = conv_spec((16, 16, 32, 32), (16, 16, 3, 3), padding=1)
BIG_DX = conv_spec((16, 16, 32, 32), (16, 16, 3, 3), padding=1, stride=2)


BIG_DEPTHWISE = conv_spec((16, 64, 32, 32), (64, 1, 3, 3), padding=1, groups=64)


def _weight_grad_operands(spec, rng):
    """(lhs, rhs, corr) of a weight gradient as ``functional`` passes them: views of x
    (N, C, *S) and grad_output (N, K, *S_out) with groups split and N <-> C swapped."""
    step = _rules.weight_grad(spec)
    x = rng.standard_normal(spec.input_shape).astype(np.float32)
    dy = rng.standard_normal(spec.output_shape).astype(np.float32)
    return operand(step, step.lhs, x), operand(step, step.rhs, dy), step.corr


@pytest.mark.slow
@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("which", ["fwd", "dx", "depthwise", "dw", "dw-strided", "dw-depthwise"])
def test_workspace_limit_bounds_peak_memory(name, which, monkeypatch):
    rng = np.random.default_rng(0)
    operands = None
    if which in ("fwd", "dx", "depthwise"):  # depthwise: 64 channels, batch 16
        step = {
            "fwd": _rules.forward(BIG),
            "dx": _rules.input_grad(BIG_DX),
            "depthwise": _rules.forward(BIG_DEPTHWISE),
        }[which]
        lhs_shape, rhs_shape, corr = step.lhs_shape, step.rhs_shape, step.corr
    else:  # weight gradients: the whole grad_output (a strided view) is the rhs
        spec = {"dw": BIG, "dw-strided": BIG_DX, "dw-depthwise": BIG_DEPTHWISE}[which]
        operands = _weight_grad_operands(spec, rng)
        lhs_shape, rhs_shape, corr = operands[0].shape, operands[1].shape, operands[2]
    algorithm = REGISTRY[name]
    if not algorithm.supports(lhs_shape, rhs_shape, corr):
        pytest.skip(f"{name} does not support this case")
    if operands is None:
        lhs = rng.standard_normal(lhs_shape).astype(np.float32)
        rhs = rng.standard_normal(rhs_shape).astype(np.float32)
    else:
        lhs, rhs, _ = operands
    full = algorithm.workspace_bytes(lhs_shape, rhs_shape, corr, 4)
    small = full < 256 * 1024  # per-core buffers only: the limit cannot bind
    limit = 64 * 1024 if small else min(1024 * 1024, full // 4)
    expected = correlate(lhs, rhs, corr, algorithm="gemm")
    out_bytes = expected.nbytes
    assert small or full > 2 * limit >= 2 * 64 * 1024  # the limit forces chunking
    correlate(lhs, rhs, corr, algorithm=name, workspace_limit=limit)  # compiled loops loaded
    # no workspace kept from earlier calls, in any thread: every buffer is counted
    monkeypatch.setattr(_workspace, "workspaces", _process.Workspaces(_process.KEEP_BYTES))
    tracemalloc.start()
    try:
        got = correlate(lhs, rhs, corr, algorithm=name, workspace_limit=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # limit + output + small temporaries (kernel copies, ufunc buffers of 8192 items)
    assert peak <= limit + out_bytes + 256 * 1024, (peak, limit, out_bytes)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_gemm_gathered_windows_match_direct_evaluation(case, monkeypatch):
    """gemm's windows gathered through index maps (its path where the padded lhs would
    dwarf the columns) on every case, with its chunking."""
    from convgrad.algorithms import gemm

    _, lhs_shape, rhs_shape, corr = case
    monkeypatch.setattr(gemm, "_sparse", lambda *shapes: True)
    rng = np.random.default_rng(11)
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    expected = direct_correlation(lhs, rhs, corr)
    for limit in (64, 2**28):
        got = correlate(lhs, rhs, corr, algorithm="gemm", workspace_limit=limit)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def _masks(a: np.ndarray) -> np.ndarray:
    """Which cells are NaN, +inf, -inf (stacked)."""
    return np.stack([np.isnan(a), np.isposinf(a), np.isneginf(a)])


NON_FINITE = {  # (lhs value, rhs value) put into one cell each; None: all finite there
    "lhs-nan": (np.nan, None),
    "rhs-nan": (None, np.nan),
    "rhs-inf": (None, np.inf),
    "both": (-np.inf, np.nan),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("where", NON_FINITE)
def test_non_finite_values_reach_only_their_windows(name, where):
    """An inf or NaN in either operand reaches exactly the outputs whose windows meet it on
    a sample (padding and inserted zeros are not multiplied): the exact definition's cells,
    NaN where it has NaN and inf of the same sign where it has inf."""
    _check_non_finite(name, where)


@pytest.mark.slow
@pytest.mark.parametrize("where", NON_FINITE)
def test_blocked_dw_read_in_place_keeps_non_finite_values_to_their_windows(monkeypatch, where):
    """The same with blocked_dw's products read in place on every case (its compiled sums
    reassociate, so inf and NaN must still come out where the definition has them)."""
    from convgrad.algorithms import blocked_dw

    monkeypatch.setattr(blocked_dw, "IN_PLACE_DEPTH", 1)
    monkeypatch.setattr(blocked_dw, "IN_PLACE_COLUMNS", 1 << 30)
    _check_non_finite("blocked_dw", where)


def _check_non_finite(name: str, where: str) -> None:
    lhs_value, rhs_value = NON_FINITE[where]
    for _, lhs_shape, rhs_shape, corr in CASES:
        if not REGISTRY[name].supports(lhs_shape, rhs_shape, corr):
            continue
        rng = np.random.default_rng(3)
        lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
        if lhs_value is not None:
            lhs[(0,) * (lhs.ndim - 1) + (lhs.shape[-1] // 2,)] = lhs_value
        if rhs_value is not None:  # one filter tap, off the centre
            rhs[(0,) * (rhs.ndim - 1) + (0,)] = rhs_value
        expected = _masks(direct_correlation(lhs, rhs, corr))
        with np.errstate(invalid="ignore"):
            got = _masks(correlate(lhs, rhs, corr, algorithm=name))
            got32 = correlate(lhs.astype(np.float32), rhs.astype(np.float32), corr, algorithm=name)
            small = correlate(lhs, rhs, corr, algorithm=name, workspace_limit=64)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(_masks(got32), expected)
        np.testing.assert_array_equal(_masks(small), expected)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_exact_path_matches_direct_evaluation(case):
    from convgrad.algorithms import exact

    _, lhs_shape, rhs_shape, corr = case
    rng = np.random.default_rng(12)
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    expected = direct_correlation(lhs, rhs, corr)
    for limit in (64, 2**28):
        got = exact.run(lhs, rhs, corr, limit)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    got = exact.run(lhs.astype(np.float32), rhs.astype(np.float32), corr, 2**28)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * max(1, np.abs(expected).max()))


def test_sweep_reaches_both_paths_of_implicit_dw():
    """The sweep above runs implicit_dw's compiled dot products (B*O small) and its BLAS
    path; this keeps both in the sweep if the cases change."""
    from convgrad.algorithms import implicit_dw

    sizes = [lhs[1] * rhs[1] for _, lhs, rhs, corr in CASES if implicit_dw.supports(lhs, rhs, corr)]
    assert min(sizes) <= implicit_dw.SMALL < max(sizes)


@pytest.mark.parametrize(  # ranges of one output, of three with a short last one, of two
    "groups, b, o, parts", [(1, 1, 5, 5), (12, 2, 7, 3), (8, 2, 5, 3), (40, 1, 1, 1)]
)  # with a short last one, one range per group (MIN_JOBS = 32 jobs wanted)
def test_implicit_dw_small_path_splits_outputs_into_ranges(groups, b, o, parts):
    """The compiled dot products (B*O <= SMALL) give every output of every job's output
    range, 8 positions per pass and the rest one at a time (a 3x4 = 12-position filter),
    in float64 and float32, against the float64 definition."""
    from convgrad.algorithms import implicit_dw

    assert b * o <= implicit_dw.SMALL
    assert implicit_dw.MIN_JOBS == 32 and implicit_dw._parts(groups, o) == parts
    rng = np.random.default_rng(groups * 100 + o)
    corr = Correlation((1, 1), ((0, 1), (2, 0)), (1, 1), (1, 1))
    lhs = rng.standard_normal((groups, b, 6, 9, 10))
    rhs = rng.standard_normal((groups, o, 6, 8, 9))
    expected = direct_correlation(lhs, rhs, corr)
    assert expected.shape[3:] == (3, 4)
    got = implicit_dw.run(lhs, rhs, corr, 2**28)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    got32 = implicit_dw.run(lhs.astype(np.float32), rhs.astype(np.float32), corr, 2**28)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize(
    "lhs_shape, rhs_shape, corr",
    [  # 3 x 2 taps (M = 7 * 6 = 42 rows: 7 blocks), 6 outputs (a block of 4 and 2 more)
        (
            (1, 7, 2, 14, 40),
            (1, 6, 2, 12, 39),
            Correlation((1, 1), ((0, 0), (0, 0)), (1, 1), (1, 1)),
        ),
        # rhs dilation 2 (a strided layer's: phases), groups 2, padding: 4 x 5 taps, so
        # M = 100 rows (4 past the blocks), 5 outputs (1 past them)
        (
            (2, 5, 3, 21, 30),
            (2, 5, 3, 10, 14),
            Correlation((1, 1), ((1, 0), (0, 1)), (1, 1), (2, 2)),
        ),
    ],  # fmt: skip
)
def test_blocked_dw_reads_rows_in_place_or_copies_them_alike(
    monkeypatch, in_place, lhs_shape, rhs_shape, corr
):
    """blocked_dw's products read in place (register blocks of 6 rows by 4 columns, the
    rows and columns past them one at a time, over several depth blocks) or from copied
    columns through BLAS, in float64 and float32, against the float64 definition; the
    compiled variant says which."""
    from convgrad.algorithms import blocked_dw

    monkeypatch.setattr(blocked_dw, "IN_PLACE_COLUMNS", 1000 if in_place else 0)
    monkeypatch.setattr(blocked_dw, "IN_PLACE_DEPTH", 1)
    monkeypatch.setattr(blocked_dw, "DEPTH_BLOCK", 100)  # several blocks of the depth
    assert blocked_dw.compiled_variant(lhs_shape, rhs_shape, corr) == (
        "dots" if in_place else "copy_runs"
    )
    rng = np.random.default_rng(sum(lhs_shape))
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    expected = direct_correlation(lhs, rhs, corr)
    got = blocked_dw.run(lhs, rhs, corr, 2**28)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    got32 = blocked_dw.run(lhs.astype(np.float32), rhs.astype(np.float32), corr, 2**28)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def _unsplit_dw_sweep():
    """Weight-gradient correlations with no rhs dilation (blocked_dw's unsplit planes):
    1-D to 3-D, uneven, large and negative padding, window strides (a dilated layer's),
    lhs dilation, three images (runs read past a row into the next image's)."""
    cases = []
    for nd, lo, hi, ws, ld in [
        (1, 2, 1, 1, 1), (1, 0, 3, 2, 1), (2, 1, 1, 1, 1), (2, 2, 0, 1, 1), (2, 3, 3, 2, 1),
        (2, -1, 2, 1, 1), (2, 1, 2, 1, 2), (3, 1, 1, 1, 1), (3, 0, 2, 1, 1),
    ]:  # fmt: skip
        spatial = (5, 7, 9)[3 - nd :]
        corr = Correlation((ws,) * nd, ((lo, hi),) * nd, (ld,) * nd, (1,) * nd)
        taps = (2, 3, 2)[3 - nd :]
        padded = [(s - 1) * ld + 1 + lo + hi for s in spatial]
        kernel = tuple(p - (t - 1) * ws for p, t in zip(padded, taps))
        cases.append(((1, 3, 2, *spatial), (1, 4, 2, *kernel), corr))
    return cases


@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("lhs_shape, rhs_shape, corr", _unsplit_dw_sweep())
def test_blocked_dw_rows_share_padding_and_read_only_what_is_laid_out(
    monkeypatch, in_place, lhs_shape, rhs_shape, corr
):
    """blocked_dw's unsplit planes: a row's high padding is the next row's low padding,
    reads past the last image land on zeroed overhang. Workspaces are handed out full of
    NaN and gemm (the fallback for non-finite sums) is off, so a read of anything not
    laid out fails."""
    from convgrad.algorithms import blocked_dw, gemm

    def poisoned(slot, size, dtype):
        return np.full(size, np.nan, dtype=dtype)

    def no_fallback(*args):
        raise AssertionError("blocked_dw fell back to gemm")

    rng = np.random.default_rng(sum(lhs_shape) + sum(rhs_shape))
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    expected = direct_correlation(lhs, rhs, corr)
    monkeypatch.setattr(blocked_dw, "scratch", poisoned)
    monkeypatch.setattr(gemm, "run", no_fallback)
    monkeypatch.setattr(blocked_dw, "IN_PLACE_COLUMNS", 1000 if in_place else 0)
    monkeypatch.setattr(blocked_dw, "IN_PLACE_DEPTH", 1)
    got = blocked_dw.run(lhs, rhs, corr, 2**28)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_blocked_dw_grid_shares_padding():
    """The 3-D benchmark layer's weight gradient (16 x 28 x 28, padding 1) lays out
    17 x 29 x 29 planes, not 18 x 30 x 30: its runs cover 7 % fewer grid positions."""
    from convgrad.algorithms import blocked_dw

    corr = Correlation((1,) * 3, ((1, 1),) * 3, (1,) * 3, (1,) * 3)
    q, _, _ = blocked_dw._phases((1, 32, 2, 16, 28, 28), (1, 32, 2, 16, 28, 28), corr)
    assert q == (17, 29, 29)


@pytest.mark.parametrize("compiled", [True, False])  # the job compiled / its Python loop
@pytest.mark.parametrize("stack_below", [0, 1000])  # every phase per tap / stacked
@pytest.mark.parametrize("most_bytes", [2**22, 6000])  # one block / many blocks of columns
@pytest.mark.parametrize(
    "lhs_shape, rhs_shape, corr",
    [  # a transposed 4x4 stride 2 (four phases of four taps), groups 2, two images
        ((2, 2, 3, 5, 6), (2, 4, 3, 4, 4), Correlation((1, 1), ((2, 2), (2, 2)), (2, 2), (1, 1))),
        # 3-D, uneven taps per phase (kernel 3 on stride 2: 2 and 1 taps per dim), cropped
        (
            (1, 2, 3, 4, 3, 5),
            (1, 5, 3, 3, 3, 3),
            Correlation((1,) * 3, ((1, 2),) * 3, (2,) * 3, (1,) * 3),
        ),
    ],  # fmt: skip
)
def test_phase_stacked_taps_match_the_definition(
    monkeypatch, compiled, stack_below, most_bytes, lhs_shape, rhs_shape, corr
):
    """A phase's taps as one stacked GEMM and the shifted sum of its products (in blocks
    of columns when its products outgrow their share) give the definition's result, as
    the per-tap GEMMs do, in a compiled job and in its Python loop."""
    from convgrad.algorithms import _compiled_jobs, phase

    if compiled and not _compiled_jobs.available():
        pytest.skip("no int64 cblas in NumPy's BLAS")
    monkeypatch.setattr(_compiled_jobs, "ENABLED", compiled)
    monkeypatch.setattr(phase, "STACK_BELOW", stack_below)
    monkeypatch.setattr(phase, "STACK_BYTES", most_bytes)
    stacked = []
    if compiled:  # the job's plan: a stacked block's columns per phase (0: per tap)
        plan = phase._job_plan
        monkeypatch.setattr(
            phase, "_job_plan", lambda *a: stacked.extend(plan(*a)[0][:, 11] > 0) or plan(*a)
        )
    else:
        original = phase._stacked_taps
        monkeypatch.setattr(phase, "_stacked_taps", lambda *a: stacked.append(1) or original(*a))
    rng = np.random.default_rng(7)
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    expected = direct_correlation(lhs, rhs, corr)
    got = phase.run(lhs, rhs, corr, 2**28)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    assert stacked or not compiled  # the compiled job planned every phase
    assert any(stacked) == (stack_below > 0)
    got32 = phase.run(lhs.astype(np.float32), rhs.astype(np.float32), corr, 2**28)
    np.testing.assert_allclose(got32, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def _phase_sweep():
    """Lhs-dilated correlations (transposed layers) whose phases read on both sides of
    the samples: strides 2-3, kernels 1-5, uneven, large and negative padding, rhs
    dilation, three images (so reads past a row wrap into the next image's)."""
    cases = []
    for nd, ld, k, lo, hi, rd in [
        (1, 2, 4, 2, 2, 1), (1, 3, 5, 4, 1, 1), (1, 2, 3, 0, 3, 2), (1, 2, 1, 0, 0, 1),
        (2, 2, 4, 2, 2, 1), (2, 2, 3, 1, 2, 1), (2, 3, 4, 3, 0, 1), (2, 2, 5, 6, 4, 1),
        (2, 2, 3, -1, 2, 2), (3, 2, 4, 2, 2, 1), (3, 2, 3, 2, 1, 1),
    ]:  # fmt: skip
        spatial = (5, 4, 6)[3 - nd :]
        corr = Correlation((1,) * nd, ((lo, hi),) * nd, (ld,) * nd, (rd,) * nd)
        cases.append(((1, 3, 2, *spatial), (1, 3, 2, *(k,) * nd), corr))
    return cases


@pytest.mark.parametrize("lhs_shape, rhs_shape, corr", _phase_sweep())
@pytest.mark.parametrize("stack_below", [0, 1000])
def test_phase_padding_shared_between_rows_matches_the_definition(
    monkeypatch, lhs_shape, rhs_shape, corr, stack_below
):
    """A row's high padding is the next row's low padding in phase's flat layout: every
    read past a row lands on zeros, past the last image on the zeroed overhang. Workspaces
    (and the result) are handed out full of NaN, so a read of anything not laid out, or
    an output not written, shows."""
    from convgrad.algorithms import phase

    def poisoned(slot, size, dtype):
        return np.full(size, np.nan, dtype=dtype)

    rng = np.random.default_rng(sum(lhs_shape) + sum(rhs_shape))
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    expected = direct_correlation(lhs, rhs, corr)
    empty = np.empty
    monkeypatch.setattr(phase, "scratch", poisoned)
    monkeypatch.setattr(phase, "STACK_BELOW", stack_below)
    # the result too: every output, a phase no tap meets included, is written
    monkeypatch.setattr(np, "empty", lambda *a, **k: np.full_like(empty(*a, **k), np.nan))
    got = phase.run(lhs, rhs, corr, 2**28)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_phase_grid_shares_padding():
    """The 3-D transposed benchmark layer (8 x 14 x 14, kernel 4, stride 2, padding 1) lays
    out 9 x 15 x 15 per image, not 10 x 16 x 16: a fifth fewer products."""
    from convgrad.algorithms import phase

    corr = Correlation((1,) * 3, ((2, 2),) * 3, (2,) * 3, (1,) * 3)
    _, grid, _ = phase._plan((1, 2, 32, 8, 14, 14), (1, 16, 32, 4, 4, 4), corr)
    assert grid == (9, 15, 15)


@pytest.mark.parametrize("compiled", [True, False])  # the job compiled / its Python loop
@pytest.mark.parametrize(
    "kernel, stride, calls",
    [((4, 4), (2, 2), 4), ((3, 3), (2, 2), 5), ((4, 4, 4), (2, 2, 2), 8), ((7,), (3,), 3)],
)
def test_implicit_merges_the_taps_of_a_shift_over_consecutive_phases(
    monkeypatch, compiled, kernel, stride, calls
):
    """A strided correlation's taps that share a shift and read consecutive phases are one
    BLAS call per group: a 4x4 kernel on stride 2 four calls over 4*C rows, a 3x3 five
    (its phases (0, 0) and (1, 0) are not consecutive at one shift); the results are the
    definition's."""
    from convgrad.algorithms import _blas, _compiled_jobs, implicit

    if compiled and not _compiled_jobs.available():
        pytest.skip("no int64 cblas in NumPy's BLAS")
    monkeypatch.setattr(_compiled_jobs, "ENABLED", compiled)
    counted = []
    if compiled:  # the job's table of calls, run for each group of its part (a[0][0])
        table = implicit._job_calls
        monkeypatch.setattr(
            implicit,
            "_job_calls",
            lambda *a: counted.extend([1] * a[0][0] * len(table(*a)[0])) or table(*a),
        )
    else:
        original = _blas.gemm
        monkeypatch.setattr(_blas, "gemm", lambda *a, **k: counted.append(1) or original(*a, **k))
    nd = len(kernel)
    corr = Correlation(stride, ((1, 2),) * nd, (1,) * nd, (1,) * nd)
    rng = np.random.default_rng(len(kernel) * 10 + kernel[0])
    lhs = rng.standard_normal((2, 1, 3, *(9,) * nd))  # two groups, one image
    rhs = rng.standard_normal((2, 4, 3, *kernel))
    expected = direct_correlation(lhs, rhs, corr)
    got = implicit.run(lhs, rhs, corr, 2**28)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    assert len(counted) == 2 * calls


def test_scratch_is_reused_per_thread_and_capped():
    import threading

    from convgrad import _process
    from convgrad.algorithms import _workspace

    first = _workspace.scratch("test-slot", 1000, np.float32)
    again = _workspace.scratch("test-slot", 500, np.float32)
    assert np.shares_memory(first, again)  # reused: no fresh pages
    other = {}
    thread = threading.Thread(
        target=lambda: other.setdefault("b", _workspace.scratch("test-slot", 1000, np.float32))
    )
    thread.start()
    thread.join()
    assert not np.shares_memory(first, other["b"])  # each thread has its own
    huge = _process.KEEP_BYTES // 4 + 1
    big = _workspace.scratch("test-big", huge, np.float32)
    assert not np.shares_memory(big, _workspace.scratch("test-big", huge, np.float32))  # not kept
    assert 0 < _process.workspaces.kept_bytes <= _process.KEEP_BYTES  # one budget for all threads
    # a new buffer evicts the least recently used ones to fit the budget
    most = int(_process.KEEP_BYTES * 0.6) // 4
    a = _workspace.scratch("test-a", most, np.float32)
    del a
    b = _workspace.scratch("test-b", most, np.float32)
    assert np.shares_memory(b, _workspace.scratch("test-b", most, np.float32))  # kept
    assert "test-a" not in _process.workspaces.slots()
    assert 0 < _process.workspaces.kept_bytes <= _process.KEEP_BYTES


def test_results_never_alias_reused_workspaces():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 4, 12, 12)), rng.standard_normal((6, 4, 3, 3))
    for name in ALGORITHMS:
        lhs_shape, rhs_shape = (1, 2, 4, 12, 12), (1, 6, 4, 3, 3)
        corr = Correlation((1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1))
        if not REGISTRY[name].supports(lhs_shape, rhs_shape, corr):
            continue
        lhs, rhs = x.reshape(lhs_shape), w.reshape(rhs_shape)
        first = correlate(lhs, rhs, corr, algorithm=name)
        kept = first.copy()
        correlate(lhs * 2, rhs, corr, algorithm=name)  # reuses the same workspaces
        np.testing.assert_array_equal(first, kept)


COMPILED_CALLS = """
import numpy as np, convgrad as cg
x = np.ones((2, 4, 9, 9), np.float32)
cg.conv(x, np.ones((4, 1, 3, 3), np.float32), padding=1, groups=4, algorithm="direct")
cg.conv_weight_grad(x, x, (4, 1, 3, 3), padding=1, groups=4, algorithm="implicit_dw")
cg.conv_weight_grad(x, x, (4, 1, 3, 3), padding=1, groups=4, algorithm="blocked_dw")
big = np.ones((1, 8, 40, 40), np.float32)  # products read in place (blocked_dw's dots)
cg.conv_weight_grad(big, big, (8, 8, 3, 3), padding=1, algorithm="blocked_dw")
"""


@pytest.mark.slow
def test_compiled_loops_are_loaded_from_numba_cache_in_a_new_process():
    """A kernel whose cache key changes per process (e.g. one closing over another jitted
    function) recompiles in every process: seconds per process. The second process must
    load every kernel from the cache."""
    import os
    import subprocess
    import sys

    pytest.importorskip("numba")
    env = dict(os.environ, NUMBA_DEBUG_CACHE="1")
    run = [sys.executable, "-c", COMPILED_CALLS]
    subprocess.run(run, env=env, check=True, capture_output=True)
    second = subprocess.run(run, env=env, check=True, capture_output=True, text=True).stdout
    assert "data loaded" in second
    assert "data saved" not in second, second


def test_kernels_calling_a_compiled_helper_hold_its_source_hash():
    """numba keys a kernel's disk cache by the kernel's own bytecode and closure, not by
    the helpers it calls: each such kernel closes over a hash of the helper's source, so
    that editing the helper recompiles it instead of loading stale code."""
    import hashlib
    import inspect

    pytest.importorskip("numba")
    from convgrad.algorithms import _compiled, direct

    _, stamp = _compiled.copy_run()
    source = inspect.getsource(_compiled.copy_run).encode()
    assert stamp == hashlib.sha256(source).hexdigest()[:16]
    for kernel in (direct._one_at_a_time(), direct._two_at_a_time()):
        assert stamp in [cell.cell_contents for cell in kernel.py_func.__closure__]


@pytest.mark.parametrize("serial_flops", [0.0, float("inf")])
def test_compiled_loops_agree_on_the_pool_and_on_the_calling_thread(monkeypatch, serial_flops):
    """Small work runs on the calling thread alone (handing jobs to the pool costs more
    than it saves); both launches give the same results."""
    pytest.importorskip("numba")
    monkeypatch.setattr(_process, "SERIAL_WORK", serial_flops)
    for name in ("direct", "implicit_dw"):
        for _, lhs_shape, rhs_shape, corr in CASES:
            if not REGISTRY[name].supports(lhs_shape, rhs_shape, corr):
                continue
            rng = np.random.default_rng(5)
            lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
            expected = direct_correlation(lhs, rhs, corr)
            got = correlate(lhs, rhs, corr, algorithm=name)
            np.testing.assert_allclose(
                got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max()
            )

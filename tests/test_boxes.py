"""Boxes of output rows (algorithms/_boxes): more jobs than images where the images are
fewer than the cores, each box the same correlation on the rows it reads."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from conftest import assert_close
from convgrad import _process
from convgrad._primitive import correlate
from convgrad._rules import Correlation
from convgrad.algorithms import REGISTRY, _boxes, _parallel, _workspace, blocked_dw
from oracles import direct_correlation, pass_cases


def test_a_box_is_the_same_correlation_on_the_input_rows_it_reads():
    """Any box of any correlation (strides, dilations, padding incl. negative, boxes that
    read padding only) equals that part of the whole output."""
    rng = np.random.default_rng(3)
    checked = padding_only = 0
    while checked < 200:
        nd = int(rng.integers(1, 4))
        spatial, kernel = tuple(rng.integers(1, 9, nd)), tuple(rng.integers(1, 4, nd))
        pads = tuple((int(rng.integers(-1, 6)), int(rng.integers(-1, 6))) for _ in range(nd))
        corr = Correlation(
            tuple(rng.integers(1, 4, nd)), pads, tuple(rng.integers(1, 3, nd)),
            tuple(rng.integers(1, 3, nd)),
        )  # fmt: skip
        out = corr.output_spatial(spatial, kernel)
        if min(out) <= 0:
            continue
        lhs, rhs = rng.standard_normal((1, 2, 2, *spatial)), rng.standard_normal((1, 3, 2, *kernel))
        box = tuple(
            slice(*sorted(rng.choice(n + 1, 2, replace=False)))
            for n in out[: rng.integers(1, nd + 1)]
        )
        slices, box_corr = _boxes.band(spatial, kernel, corr, box)
        images = (slice(None),) * 3
        part = direct_correlation(lhs[images + slices], rhs, box_corr)
        whole = direct_correlation(lhs, rhs, corr)
        np.testing.assert_allclose(part, whole[images + box])
        padding_only += not part.any()
        checked += 1
    assert padding_only > 0


# small dense layers of one or two images, like the benchmark's (3x3, strided, dilated,
# stem, conv1d, conv3d); their forward, input- and weight-gradient correlations
LAYERS = [
    ((2, 8, 12, 11), (8, 8, 3, 3), dict(padding=1)),
    ((1, 6, 13, 12), (8, 6, 3, 3), dict(stride=2, padding=1)),
    ((2, 6, 12, 12), (6, 6, 3, 3), dict(padding=2, dilation=2)),
    ((1, 3, 16, 15), (8, 3, 7, 7), dict(stride=2, padding=3)),
    ((2, 4, 40), (6, 4, 9), dict(padding=4)),
    ((1, 4, 6, 7, 6), (4, 4, 3, 3, 3), dict(padding=1)),
]
# (winograd cuts its own bands: tests/test_winograd.py)
SPLIT = ("gemm", "implicit", "phase", "blocked_dw")
CASES = [
    (name, case)
    for case in pass_cases(LAYERS)
    for name in SPLIT
    if REGISTRY[name].supports(*case[1:])
]


def _most_jobs(name: str, lhs_shape, rhs_shape, corr: Correlation) -> int:
    """The jobs a correlation splits into when neither the work per job nor the Python of
    a job bounds them: images, and rows of the leading output dims (for blocked_dw the
    products' rows, MIN_ROWS each)."""
    g, b = lhs_shape[:2]
    out = corr.output_spatial(lhs_shape[3:], rhs_shape[3:])
    rows = math.prod(out[: max(1, len(out) - 1)])
    if name == "blocked_dw":  # (group, channel) pairs, and parts of the rows (b, t)
        return g * lhs_shape[2] * max(1, b * math.prod(out) // blocked_dw.MIN_ROWS)
    return g * b * rows


@pytest.fixture
def free_jobs(monkeypatch):
    """Jobs bounded by the work's shape alone: a box (or a part of blocked_dw's rows) worth
    any work, a call's Python free."""
    monkeypatch.setattr(_boxes, "PARALLEL_FLOPS", 1.0)
    monkeypatch.setattr(_boxes, "CALL_FLOPS", 1e-9)
    monkeypatch.setattr(blocked_dw, "PART_FLOPS", 1.0)


@pytest.mark.parametrize("name,case", CASES, ids=[f"{n}-{c[0]}" for n, c in CASES])
def test_boxes_fill_the_cores_and_give_the_one_thread_result(free_jobs, name, case):
    """Under simulate(16) and simulate(64) a call of one or two images forms as many jobs
    as the cores, or as its rows allow, and counts() says so; every output is summed in
    the same order as on one thread (BLAS picks its kernels by size, so the last bits may
    differ) and matches the float64 definition."""
    _, lhs_shape, rhs_shape, corr = case
    rng = np.random.default_rng(7)
    lhs = rng.standard_normal(lhs_shape).astype(np.float32)
    rhs = rng.standard_normal(rhs_shape).astype(np.float32)
    expected = direct_correlation(lhs, rhs, corr)
    with _process.jobs.simulate(1):
        one = correlate(lhs, rhs, corr, algorithm=name)
    jobs = REGISTRY[name].counts(lhs_shape, rhs_shape, corr, 4, cores=2, limit=2**28).jobs
    for cores in (16, 64):
        with _process.jobs.simulate(cores) as busy:
            got = correlate(lhs, rhs, corr, algorithm=name)
        assert max(busy) == min(cores, _most_jobs(name, lhs_shape, rhs_shape, corr), jobs)
        assert jobs == _most_jobs(name, lhs_shape, rhs_shape, corr)
        assert_close(got, one, np.float32)
        assert_close(got, expected, np.float32)


def test_a_box_is_worth_its_hand_out_and_jobs_stop_where_their_python_queues():
    """Each box holds PARALLEL_FLOPS at least, and the jobs W/N + N*h of N jobs of work W
    and Python h each (one at a time under the GIL) stop at N = sqrt(W/h)."""
    for units, flops, calls in itertools.product((1, 2, 8), (1e6, 3e7, 4e8, 5e9), (5, 12, 40)):
        boxes = _boxes.most_boxes(units, (4096,), flops, calls)
        assert boxes == 1 or flops / boxes >= _parallel.PARALLEL_FLOPS
        bound = math.sqrt(units * flops / (calls * _boxes.CALL_FLOPS))
        assert boxes == 1 or units * boxes <= bound


# the benchmark's dense cells of few images: (input, weight, options), the algorithm of
# the pass, the jobs it forms on 16 and on 64 cores, and why not more
BENCHMARK = [
    # 8 images, 236 MFLOP each: 8 * 2 boxes of 12 calls' Python (60 us) each
    (((8, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)), "fwd", "gemm", 16, 16),
    # 4 images, 925 MFLOP each: 4 * 6 boxes
    (((4, 256, 28, 28), (256, 256, 3, 3), dict(padding=2, dilation=2)), "fwd", "gemm", 16, 24),
    (((4, 256, 28, 28), (256, 256, 3, 3), dict(padding=2, dilation=2)), "dx", "gemm", 16, 24),
    # implicit and phase: a box is one compiled job (JOB_CALLS = 3 calls' Python, 15 us),
    # so N jobs stop at sqrt(W / 1.2 MFLOP). 4 images of 302 MFLOP: 4 * 7 boxes
    (((4, 64, 4096), (64, 64, 9), dict(padding=4)), "fwd", "implicit", 16, 28),
    # 2 images of 694 MFLOP: 17 boxes each worth it, cut 16 x 2 over (depth, rows)
    (((2, 32, 16, 28, 28), (32, 32, 3, 3, 3), dict(padding=1)), "fwd", "implicit", 16, 64),
    # 8 images of 58 MFLOP: 8 * 2 boxes
    (((8, 128, 28, 28), (128, 128, 3, 3), dict(stride=2, padding=1)), "dx", "phase", 16, 16),
    # weight gradients (blocked_dw) of 2 and 4 images, one (group, image) pair a job,
    # their products read in place (7 calls a pair: the layouts and one compiled call):
    # 2 images of 694 MFLOP (on 17 x 29 x 29 planes) in 2 * 11 parts of the products'
    # rows; 4 images of 302 MFLOP in 4 * 5 parts
    (((2, 32, 16, 28, 28), (32, 32, 3, 3, 3), dict(padding=1)), "dw", "blocked_dw", 16, 22),
    (((4, 64, 4096), (64, 64, 9), dict(padding=4)), "dw", "blocked_dw", 16, 20),
]


@pytest.mark.parametrize("layer,pass_,name,at16,at64", BENCHMARK)
def test_the_benchmarks_dense_cells_form_as_many_jobs_as_pay(layer, pass_, name, at16, at64):
    """counts() of the benchmark's shapes (not run: the test above runs the same rule on
    small shapes): the jobs on 16 and 64 cores are the images and as many boxes as pay."""
    from convgrad.algorithms import _compiled_jobs

    if name in ("implicit", "phase") and not _compiled_jobs.available():
        pytest.skip("no compiled jobs here (no int64 cblas in NumPy's BLAS)")
    (case,) = [c for c in pass_cases([layer]) if c[0] == f"{pass_}0"]
    jobs = REGISTRY[name].counts(*case[1:], 4, cores=2, limit=2**28).jobs
    assert (min(16, jobs), min(64, jobs)) == (at16, at64)


@pytest.mark.parametrize(
    "name,limit,fewer",
    [
        ("implicit", 800 * 2**10, True),
        ("gemm", 1536 * 2**10, False),
    ],
)
def test_boxes_in_flight_keep_within_the_workspace_limit(
    free_jobs, monkeypatch, name, limit, fewer
):
    """Each job's workspace times the jobs in flight stays within the limit: where the
    boxes' halo rows (implicit's padded rows) would not fit, fewer boxes are formed than the
    40 rows."""
    rng = np.random.default_rng(9)
    lhs = rng.standard_normal((1, 1, 16, 40, 40)).astype(np.float32)
    rhs = rng.standard_normal((1, 16, 16, 3, 3)).astype(np.float32)
    corr = Correlation((1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1))
    kept = _process.Workspaces(_process.KEEP_BYTES)
    monkeypatch.setattr(_workspace, "workspaces", kept)
    with _process.jobs.simulate(64) as busy:
        got = correlate(lhs, rhs, corr, algorithm=name, workspace_limit=limit)
    per_job = sum(b.nbytes for slot, b in kept._buffers().items() if "weights" not in slot)
    assert max(busy) * per_job <= limit, (busy, per_job)
    assert 1 < max(busy) < 40 if fewer else max(busy) == 40, busy
    assert_close(got, direct_correlation(lhs, rhs, corr), np.float32)

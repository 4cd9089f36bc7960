"""Jobs of ``phase`` and ``implicit`` as one compiled call (algorithms/_gemm_jobs): the
same results as their Python loops and as the float64 definition, on every option."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close
from convgrad import _process, _rules
from convgrad._primitive import correlate
from convgrad._spec import transpose_spec
from convgrad.algorithms import REGISTRY, _boxes, _compiled_jobs
from oracles import CASES, TRANSPOSE_CASES, direct_correlation, pass_cases

NAMES = ("implicit", "phase")


def _transposed_cases() -> list[tuple]:
    """(name, lhs_shape, rhs_shape, corr) of each pass of each transposed convolution."""
    cases = []
    for index, (x_shape, w_shape, options) in enumerate(TRANSPOSE_CASES):
        for step in _rules.steps(transpose_spec(x_shape, w_shape, **options)).values():
            cases.append((f"t-{step.name}{index}", step.lhs_shape, step.rhs_shape, step.corr))
    return cases


SWEEP = [
    (name, case)
    for case in pass_cases(CASES) + _transposed_cases()
    for name in NAMES
    if REGISTRY[name].supports(*case[1:])
]


@pytest.fixture(params=["compiled", "python"])
def path(request, monkeypatch):
    """Each job compiled (skipped where NumPy's BLAS has no int64 cblas), or its Python
    loop: (the path, a list of what each job was given: the compiled module or None)."""
    compiled = request.param == "compiled"
    monkeypatch.setattr(_compiled_jobs, "ENABLED", compiled)
    if compiled and not _compiled_jobs.available():
        pytest.skip("no int64 cblas in NumPy's BLAS")
    given = []
    kernels = _compiled_jobs.kernels
    monkeypatch.setattr(
        _compiled_jobs, "kernels", lambda *a: given.append(kernels(*a)) or given[-1]
    )
    return request.param, given


def _ran_the_path(path) -> bool:
    """Whether every job ran the path asked for (and some job ran)."""
    name, given = path
    return bool(given) and all((g is not None) == (name == "compiled") for g in given)


def test_the_sweep_has_both_algorithms_on_every_kind_of_case():
    """Both algorithms, lhs-dilated and strided correlations among the cases."""
    names = {name for name, _ in SWEEP}
    assert names == set(NAMES)
    assert any(any(ld > 1 for ld in case[3].lhs_dilation) for name, case in SWEEP)
    assert any(any(s > 1 for s in case[3].window_strides) for name, case in SWEEP)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,case", SWEEP, ids=[f"{n}-{c[0]}" for n, c in SWEEP])
def test_jobs_match_the_definition(path, name, case, dtype):
    """Every pass of every option (strides, dilations, padding incl. negative and 'same',
    groups, 1-3-D, transposed) through each algorithm that supports it."""
    _, lhs_shape, rhs_shape, corr = case
    rng = np.random.default_rng(11)
    lhs = rng.standard_normal(lhs_shape).astype(dtype)
    rhs = rng.standard_normal(rhs_shape).astype(dtype)
    got = correlate(lhs, rhs, corr, algorithm=name)
    assert got.dtype == dtype
    assert_close(got, direct_correlation(lhs, rhs, corr), dtype)
    assert _ran_the_path(path)


# boxes of rows, several images per job, merged row shifts, stacked taps in blocks; rows
# of 64 samples and more (their borders zeroed alone), strided, lhs-dilated
BOXED = [
    ("implicit", (1, 2, 3, 4, 140), (1, 4, 3, 3, 5), _rules.Correlation((1, 2), ((1, 1), (2, 1)), (1, 1), (1, 1))),
    ("implicit", (1, 1, 2, 70), (1, 3, 2, 3), _rules.Correlation((1,), ((1, 1),), (2,), (1,))),
    ("phase", (1, 2, 3, 3, 70), (1, 2, 3, 3, 4), _rules.Correlation((1, 1), ((1, 1), (2, 2)), (1, 2), (1, 1))),
    ("implicit", (1, 2, 6, 13, 12), (1, 8, 6, 3, 3), _rules.Correlation((2, 2), ((1, 1),) * 2, (1, 1), (1, 1))),
    ("implicit", (1, 3, 3, 16, 15), (1, 8, 3, 7, 7), _rules.Correlation((2, 2), ((3, 3),) * 2, (1, 1), (1, 1))),
    ("implicit", (2, 1, 2, 30), (2, 4, 2, 5), _rules.Correlation((1,), ((2, -1),), (1,), (2,))),
    ("implicit", (1, 2, 3, 7, 6), (1, 4, 3, 3, 3), _rules.Correlation((2, 1), ((2, 2),) * 2, (2, 3), (1, 1))),
    ("phase", (1, 2, 5, 9, 8), (1, 4, 5, 4, 4), _rules.Correlation((1, 1), ((2, 2),) * 2, (2, 2), (1, 1))),
    ("phase", (2, 1, 6, 5, 4, 5), (2, 40, 6, 3, 3, 3), _rules.Correlation((1,) * 3, ((1, 2),) * 3, (2,) * 3, (1,) * 3)),
    ("phase", (1, 3, 4, 20), (1, 2, 4, 7), _rules.Correlation((1,), ((1, 3),), (2,), (3,))),
    # 3-D, few output channels: each phase's 8 taps stacked in two groups of 4
    ("phase", (1, 2, 4, 4, 5, 5), (1, 6, 4, 4, 4, 4), _rules.Correlation((1,) * 3, ((2, 2),) * 3, (2,) * 3, (1,) * 3)),
]  # fmt: skip


@pytest.mark.parametrize("stack_bytes", [2**22, 3000])
@pytest.mark.parametrize("name,lhs_shape,rhs_shape,corr", BOXED)
def test_jobs_on_boxes_match_the_python_loops_and_the_definition(
    monkeypatch, name, lhs_shape, rhs_shape, corr, stack_bytes
):
    """Under simulate(1) and simulate(16) (boxes of rows, any work worth a job), with
    stacked products in one block or many: compiled and Python jobs agree to rounding
    and match the float64 definition."""
    from convgrad.algorithms import phase

    monkeypatch.setattr(_boxes, "PARALLEL_FLOPS", 1.0)
    monkeypatch.setattr(_boxes, "CALL_FLOPS", 1e-9)
    monkeypatch.setattr(phase, "STACK_BYTES", stack_bytes)
    if not _compiled_jobs.available():
        pytest.skip("no int64 cblas in NumPy's BLAS")
    rng = np.random.default_rng(5)
    lhs = rng.standard_normal(lhs_shape).astype(np.float32)
    rhs = rng.standard_normal(rhs_shape).astype(np.float32)
    expected = direct_correlation(lhs, rhs, corr)
    for cores in (1, 16):
        results = {}
        for enabled in (True, False):
            monkeypatch.setattr(_compiled_jobs, "ENABLED", enabled)
            with _process.jobs.simulate(cores):
                results[enabled] = correlate(lhs, rhs, corr, algorithm=name)
        assert_close(results[True], results[False], np.float32)
        assert_close(results[True], expected, np.float32)


def test_a_3d_phase_stacks_its_taps_in_groups_at_one_depth_offset():
    """A 3-D transposed layer's phases (2 x 2 x 2 taps) stack 4 taps a GEMM, 1-D and 2-D
    ones all of a phase's taps."""
    from convgrad.algorithms import phase

    corr3 = _rules.Correlation((1,) * 3, ((2, 2),) * 3, (2,) * 3, (1,) * 3)
    plan = phase._job_plan((1, 2, 4, 4, 5, 5), (1, 6, 4, 4, 4, 4), corr3, 4, 2**22)[0]
    assert (plan[:, 10] == 8).all() and (plan[:, 11] > 0).all() and (plan[:, 12] == 4).all()
    corr2 = _rules.Correlation((1,) * 2, ((2, 2),) * 2, (2,) * 2, (1,) * 2)
    plan = phase._job_plan((1, 2, 4, 5, 5), (1, 6, 4, 4, 4), corr2, 4, 2**22)[0]
    assert (plan[:, 10] == 4).all() and (plan[:, 12] == 4).all()


def test_read_only_and_strided_inputs_reach_the_compiled_jobs(path):
    """A read-only lhs, a view with steps and negative strides: read, never written."""
    rng = np.random.default_rng(9)
    base = rng.standard_normal((2, 1, 6, 22, 19)).astype(np.float32)
    lhs = base[:, :, ::2, ::-2, 1:]  # (2, 1, 3, 11, 18), negative and stepped strides
    lhs.flags.writeable = False
    before = base.copy()
    rhs = rng.standard_normal((2, 4, 3, 3, 3)).astype(np.float32)
    for name, corr in (
        ("implicit", _rules.Correlation((2, 1), ((1, 1),) * 2, (1, 1), (1, 1))),
        ("phase", _rules.Correlation((1, 1), ((2, 2),) * 2, (2, 2), (1, 1))),
    ):
        got = correlate(lhs, rhs, corr, algorithm=name)
        assert_close(got, direct_correlation(lhs, rhs, corr), np.float32)
    assert _ran_the_path(path)
    np.testing.assert_array_equal(base, before)


def test_a_compiled_gemm_checks_its_operands():
    """The compiled jobs' BLAS call: the product where the operands fit their buffers
    (offsets, leading dimensions, beta), nothing at all where one does not."""
    if not _compiled_jobs.available():
        pytest.skip("no int64 cblas in NumPy's BLAS")
    from convgrad.algorithms import _gemm_jobs

    rng = np.random.default_rng(2)
    m, n, k = 5, 7, 4
    for dtype in (np.float32, np.float64):
        fn = _compiled_jobs.address(np.dtype(dtype))
        a = rng.standard_normal(3 + m * 6).astype(dtype)  # A at 3, row stride 6
        b = rng.standard_normal(1 + k * 9).astype(dtype)  # B at 1, row stride 9
        c = rng.standard_normal(2 + m * 8).astype(dtype)  # C at 2, row stride 8
        c0 = c.copy()
        A = a[3:].reshape(m, 6)[:, :k].astype(np.float64)
        B = b[1:].reshape(k, 9)[:, :n].astype(np.float64)
        C = c0[2:].reshape(m, 8)[:, :n].astype(np.float64)
        assert _gemm_jobs.gemm(fn, m, n, k, a, 3, 6, b, 1, 9, 1.0, c, 2, 8)
        assert_close(c[2:].reshape(m, 8)[:, :n], A @ B + C, dtype)
        np.testing.assert_array_equal(c[2:].reshape(m, 8)[:, n:], c0[2:].reshape(m, 8)[:, n:])
        after = c.copy()
        for bad in (
            (a, 6, 6, b, 1, 9, c, 2, 8),  # A's last row past its end
            (a, 3, 3, b, 1, 9, c, 2, 8),  # lda shorter than a row of k
            (a, 3, 6, b, 4, 9, c, 2, 8),  # B past its end
            (a, 3, 6, b, 1, 9, c, 4, 8),  # C past its end
            (a, -1, 6, b, 1, 9, c, 2, 8),  # a negative offset
        ):
            a_, ao, lda, b_, bo, ldb, c_, co, ldc = bad
            assert not _gemm_jobs.gemm(fn, m, n, k, a_, ao, lda, b_, bo, ldb, 0.0, c_, co, ldc)
        np.testing.assert_array_equal(c, after)
    with pytest.raises(IndexError, match="out of bounds"):
        _compiled_jobs.check(1, "phase")


def test_float16_results_and_disabled_jobs_run_the_python_loops(monkeypatch):
    """A float16 result (float32 compute) or ENABLED False: no compiled job is asked for."""
    assert _compiled_jobs.kernels(np.dtype(np.float32), np.dtype(np.float16)) is None
    monkeypatch.setattr(_compiled_jobs, "ENABLED", False)
    assert _compiled_jobs.kernels(np.dtype(np.float32), np.dtype(np.float32)) is None
    assert not _compiled_jobs.available()

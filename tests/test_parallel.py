"""Jobs on convgrad's own threads with a single-threaded BLAS (algorithms/_parallel)."""

from __future__ import annotations

import multiprocessing
import os
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import convgrad
from convgrad import _process
from convgrad._primitive import correlate
from convgrad.algorithms import _parallel
from oracles import SPLIT, split_case


def _blas_threads() -> list[int]:
    """Threads of the BLAS libraries convgrad's jobs call (NumPy's), read live."""
    return [lib.num_threads for lib in _process.blas_controllers().lib_controllers]


def test_jobs_run_in_order_with_single_threaded_blas_then_restore_it():
    before = _blas_threads()
    seen = []

    def job(x):
        seen.append((threading.current_thread().name, _blas_threads()))
        threading.Event().wait(0.02)  # long enough for a pool thread to join
        return x * x

    assert _parallel.run_jobs(job, [1, 2, 3, 4, 5]) == [1, 4, 9, 16, 25]
    assert _blas_threads() == before
    assert all(threads == [1] * len(before) for _, threads in seen)
    assert any(name.startswith("convgrad") for name, _ in seen)


def test_a_failing_job_raises_after_every_running_job_ends_and_blas_is_restored():
    """After an error no job is started; the call raises once none is running."""
    before = _blas_threads()
    running, ended = [0], []

    def job(x):
        running[0] += 1
        threading.Event().wait(0.05)
        running[0] -= 1
        if x == 0:
            raise ValueError("job 0 failed")
        ended.append(x)

    with pytest.raises(ValueError, match="job 0 failed"):
        _parallel.run_jobs(job, [0, 1, 2, 3, 4, 5])
    assert running == [0]  # nothing still running when the error reaches the caller
    assert len(ended) < 5  # no new job after the error
    assert _blas_threads() == before


def test_one_job_runs_on_the_calling_thread_and_leaves_blas_alone():
    before = _blas_threads()
    got = _parallel.run_jobs(lambda _: (threading.current_thread(), _blas_threads()), [0])
    assert got == [(threading.current_thread(), before)]


def test_jobs_always_use_the_pool_whatever_ran_before():
    """No timed mode switch: a call's jobs go to the pool right after any other call."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 64, 16, 16)), rng.standard_normal((64, 64, 1, 1))
    convgrad.conv(x, w)  # a large 1x1 conv: its matmuls ran in jobs too
    here = threading.current_thread()

    def where(_):
        threading.Event().wait(0.02)  # long enough for a pool thread to join
        return threading.current_thread()

    names = set(_parallel.run_jobs(where, [0, 1, 2]))
    assert names != {here}


def test_a_callers_blas_limit_of_one_thread_means_one_job():
    with threadpool_limits(limits=1, user_api="blas"):
        assert _parallel.workers(8) == 1
    assert _parallel.workers(1) == 1


@pytest.mark.parametrize("jobs", [1, 2, 3])
@pytest.mark.parametrize("name,case", [(c[0], c[1:]) for c in SPLIT])
def test_split_algorithms_agree_with_the_reference_for_any_number_of_jobs(
    monkeypatch, jobs, name, case
):
    lhs, rhs, corr, expected = split_case(*case)
    monkeypatch.setattr(_process.jobs, "workers", lambda n: max(1, min(n, jobs)))
    monkeypatch.setattr(_process, "SERIAL_WORK", 0.0)  # small calls split too
    got = correlate(lhs, rhs, corr, algorithm=name)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_concurrent_calls_from_many_threads_agree_and_restore_blas():
    before = _blas_threads()
    cases = [split_case(*case[1:]) + (case[0],) for case in SPLIT]
    errors = []

    def caller(k):
        for lhs, rhs, corr, expected, name in cases[k % 2 :] * 3:
            got = correlate(lhs, rhs, corr, algorithm=name)
            if not np.allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()):
                errors.append((k, name))

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _blas_threads() == before


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_jobs_on_threads_of_its_own():
    case = SPLIT[0]
    lhs, rhs, corr, expected = split_case(*case[1:])
    correlate(lhs, rhs, corr, algorithm=case[0])  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(correlate, (lhs, rhs, corr), dict(algorithm=case[0])).get(60)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_under_a_callers_blas_limit_of_one_every_job_runs_on_the_calling_thread():
    def where(_):
        threading.Event().wait(0.02)  # long enough for a pool thread to join, were it asked
        return threading.current_thread()

    with threadpool_limits(limits=1, user_api="blas"):
        names = set(_process.jobs.run(where, [0, 1, 2, 3], blas=False))
    assert names == {threading.current_thread()}

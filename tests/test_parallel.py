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


# ------------------------------------------------------------------ passes side by side


def test_calls_side_by_side_each_keep_their_share_and_the_callers_context():
    """Each call runs on a thread of its own with its share of the threads for its jobs,
    in a copy of the caller's context (a scoped workspace limit, an open recording), BLAS
    single-threaded meanwhile; results in order, BLAS restored after."""
    before = _blas_threads()
    started = [threading.Event(), threading.Event()]

    def call(k):
        def body():
            started[k].set()
            together = started[1 - k].wait(5)  # both running at once
            convgrad._plan.record(f"call{k}")
            return (
                threading.current_thread().name,
                _process.jobs.workers(64),
                convgrad.get_workspace_limit(),
                _blas_threads(),
                together,
            )

        return body

    with convgrad.set_workspace_limit(3 * 2**20), convgrad._plan.recording() as names:
        got = _process.jobs.side_by_side([call(0), call(1)], (1, 3))
    assert _blas_threads() == before
    assert sorted(names) == ["call0", "call1"]
    assert [workers for _, workers, *_ in got] == [1, 3]
    assert all(limit == 3 * 2**20 for _, _, limit, _, _ in got)
    if _process.CORES > 1:
        assert all(together for *_, together in got)
        assert got[0][0] != got[1][0]
        assert all(threads == [1] * len(before) for _, _, _, threads, _ in got)


def test_a_failing_call_side_by_side_raises_after_the_other_ends():
    """The error reaches the caller once a call that started has ended (one not started
    yet is not run), and the pool serves the next call."""
    started, ended = threading.Event(), threading.Event()

    def slow():
        started.set()
        threading.Event().wait(0.05)
        ended.set()
        return 1

    def failing():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        _process.jobs.side_by_side([failing, slow], (1, 1))
    assert ended.is_set() == started.is_set()
    assert _process.jobs.side_by_side([slow, lambda: 2], (1, 1)) == [1, 2]
    assert _process.jobs.workers(64) == min(64, _process.CORES, _process.blas_threads())


@pytest.mark.parametrize("transposed", [False, True])
def test_backward_passes_side_by_side_match_the_reference(monkeypatch, transposed):
    """Where the planner puts a backward's two passes side by side, each on its share of
    the threads and half the workspace limit, the gradients are the definition's."""
    from convgrad import _plan, reference

    shares_asked = []

    def always(passes, itemsize, threads=None, limit=None):
        shares_asked.append(limit)
        return (1, max(1, _process.CORES - 1))

    monkeypatch.setattr(_plan, "side_by_side", always)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 6, 9, 10))
    opts = dict(stride=2, padding=1, groups=2)
    if transposed:  # the adjoint of conv(gy, w): its dx is conv's, its dw conv's dw
        w = rng.standard_normal((6, 2, 4, 4))
        gy = rng.standard_normal(reference.conv_transpose(x, w, **opts).shape)
        got = convgrad.conv_transpose_backward(gy, x, w, **opts)
        want = (reference.conv(gy, w, **opts), reference.conv_grads(gy, w, x, **opts)[1])
    else:
        w = rng.standard_normal((4, 3, 3, 3))
        gy = rng.standard_normal(reference.conv(x, w, **opts).shape)
        with convgrad.set_workspace_limit(2**20):
            got = convgrad.conv_backward(gy, x, w, **opts)
        want = reference.conv_grads(x, w, gy, **opts)[:2]
        assert shares_asked == [2**20]
    for g, r in zip(got[:2], want[:2]):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)


class _StubbornBlas:
    """A BLAS thread control that ignores a raise while ``busy`` is set, as OpenBLAS 0.3.31
    did while another thread was inside one of its calls."""

    def __init__(self, threads: int):
        self.num_threads, self.busy = threads, threading.Event()

    def set_num_threads(self, threads: int) -> None:
        if not (threads > self.num_threads and self.busy.is_set()):
            self.num_threads = threads


def test_a_restore_that_blas_ignores_is_retried_until_it_takes(monkeypatch):
    """A restore that did not take stays pending: counted as in force (the jobs' thread
    count, the next call's save) and tried again until it takes; the retrying thread
    then ends."""
    import types

    stub = _StubbornBlas(4)
    monkeypatch.setattr(
        _process, "blas_controllers", lambda: types.SimpleNamespace(lib_controllers=[stub])
    )
    with _process.blas:
        assert stub.num_threads == 1
        stub.busy.set()
    assert stub.num_threads == 1  # ignored
    assert _process.blas.pending() == {stub: 4}
    assert _process.blas_threads() == 4
    with _process.blas:  # a call meanwhile saves the pending count, not the one thread
        assert stub.num_threads == 1
    assert _process.blas.pending() == {stub: 4}
    stub.busy.clear()
    for _ in range(500):
        if stub.num_threads == 4 and not any(
            t.name == "convgrad_blas_restore" for t in threading.enumerate()
        ):
            break
        threading.Event().wait(0.01)
    assert stub.num_threads == 4
    assert not _process.blas.pending()
    assert not any(t.name == "convgrad_blas_restore" for t in threading.enumerate())


@pytest.mark.parametrize("jobs,limit", [(1, None), (2, None), (3, None), (16, None), (16, 1)])
def test_a_pointwise_weight_gradient_sums_its_images_in_jobs(monkeypatch, jobs, limit):
    """A 1x1 layer's weight gradient splits its images between jobs, each range of them
    summing into a partial of its own (added in order): the float64 definition, whatever
    the jobs, with groups; with more jobs than images the channels are split too, and
    under a workspace limit too small for two partials only the channels are."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6, 7, 9)).astype(np.float32)
    gy = rng.standard_normal((5, 4, 7, 9)).astype(np.float32)
    expected = np.einsum("ngol,ngcl->goc", *(
        a.reshape(5, 2, -1, 63).astype(np.float64) for a in (gy, x)
    )).reshape(4, 3, 1, 1)  # fmt: skip
    monkeypatch.setattr(_process.jobs, "workers", lambda n: max(1, min(n, jobs)))
    monkeypatch.setattr(_process, "SERIAL_WORK", 0.0)
    monkeypatch.setattr(_parallel, "PARALLEL_FLOPS", 0.0)
    seen = []
    real = _parallel.run_jobs
    monkeypatch.setattr(
        _parallel, "run_jobs", lambda job, args: seen.append(len(args)) or real(job, args)
    )
    got = convgrad.conv_weight_grad(
        x, gy, (4, 3, 1, 1), groups=2, algorithm="gemm", workspace_limit=limit
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    if jobs <= 2:  # the groups are enough
        assert seen == [jobs]
    else:
        images = 1 if limit else min(jobs, 5)
        assert seen == [images * min(3, jobs // images)]

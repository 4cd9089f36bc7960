"""convgrad as a citizen of the user's process: forked children, many user threads,
interrupts, the process-wide state in ``convgrad._process``, the compile notice.

Every child and thread gets a deadline: a dead or hung child fails the test, never
hangs it.
"""

from __future__ import annotations

import _thread
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import convgrad as cg
from convgrad import _plan, _process, reference
from convgrad._primitive import correlate
from convgrad.algorithms import REGISTRY

pytestmark = pytest.mark.slow  # forks, subprocesses and threads stressing the process-wide state

DEADLINE_S = 120


# ------------------------------------------------------------------------ workloads


def _layers():
    """(name, x, w, options): layers that reach every algorithm through ``auto``."""
    rng = np.random.default_rng(7)
    return [
        ("origin", rng.standard_normal((2, 3, 12, 12)), rng.standard_normal((4, 3, 3, 3)), {}),
        (
            "depthwise",
            rng.standard_normal((2, 8, 12, 12)),
            rng.standard_normal((8, 1, 3, 3)),
            dict(padding=1, groups=8),
        ),
        (
            "dense",
            rng.standard_normal((4, 16, 14, 14)),
            rng.standard_normal((16, 16, 3, 3)),
            dict(padding=1),
        ),
        (
            "strided",
            rng.standard_normal((2, 6, 11, 11)),
            rng.standard_normal((5, 6, 3, 3)),
            dict(stride=2, padding=1),
        ),
    ]


def _public_results(dtype) -> dict:
    """Every public function (and a layer) on the workload layers, in ``dtype``."""
    out = {}
    for name, x, w, opts in _layers():
        x, w = x.astype(dtype), w.astype(dtype)
        b = np.linspace(-1, 1, w.shape[0]).astype(dtype)
        y = cg.conv(x, w, b, **opts)
        gy = np.cos(np.arange(y.size)).reshape(y.shape).astype(dtype)
        out[name, "conv"] = y
        out[name, "input_grad"] = cg.conv_input_grad(gy, w, x.shape, **opts)
        out[name, "weight_grad"] = cg.conv_weight_grad(x, gy, w.shape, **opts)
        out[name, "bias_grad"] = cg.conv_bias_grad(gy)
        dx, dw, db = cg.conv_backward(gy, x, w, b, **opts)
        out[name, "backward"] = np.concatenate([dx.ravel(), dw.ravel(), db.ravel()])
        if "groups" not in opts:  # transposed: the weight read as (C_in=K, C_out/g=C, *k)
            stride = opts.get("stride", 1)
            t = cg.conv_transpose(gy, w, None, stride=stride)
            gt = np.sin(np.arange(t.size)).reshape(t.shape).astype(dtype)
            out[name, "transpose"] = t
            tx, tw, _ = cg.conv_transpose_backward(gt, gy, w, None, stride=stride)
            out[name, "transpose_backward"] = np.concatenate([tx.ravel(), tw.ravel()])
        layer = cg.Conv2d(x.shape[1], w.shape[0], 3, dtype=dtype, seed=0, **opts)
        ly = layer(x)
        out[name, "layer"] = np.concatenate([ly.ravel(), layer.backward(gy).ravel()])
    return out


def _expected_public() -> dict:
    """The same results from the float64 reference (transposed passes: by their adjoint
    identities on the reference, ``conv_transpose = conv_input_grad``)."""
    out = {}
    for name, x, w, opts in _layers():
        b = np.linspace(-1, 1, w.shape[0])
        y = reference.conv(x, w, b, **opts)
        gy = np.cos(np.arange(y.size)).reshape(y.shape)
        dx, dw, db = reference.conv_grads(x, w, gy, **opts)
        out[name, "conv"] = y
        out[name, "input_grad"], out[name, "weight_grad"], out[name, "bias_grad"] = dx, dw, db
        out[name, "backward"] = np.concatenate([dx.ravel(), dw.ravel(), db.ravel()])
        if "groups" not in opts:
            stride = opts.get("stride", 1)
            t = reference.conv_transpose(gy, w, None, stride=stride)
            gt = np.sin(np.arange(t.size)).reshape(t.shape)
            # d/dgy <conv_transpose(gy, w), gt> = conv(gt, w); d/dw = the weight gradient of
            # conv(gt, w) at output gy
            tx = reference.conv(gt, w, None, stride=stride)
            _, tw, _ = reference.conv_grads(gt, w, gy, stride=stride)
            out[name, "transpose"] = t
            out[name, "transpose_backward"] = np.concatenate([tx.ravel(), tw.ravel()])
        layer = cg.Conv2d(x.shape[1], w.shape[0], 3, dtype=np.float64, seed=0, **opts)
        ly = reference.conv(x, layer.weight, layer.bias, **opts)
        lx, _, _ = reference.conv_grads(x, layer.weight, gy, **opts)
        out[name, "layer"] = np.concatenate([ly.ravel(), lx.ravel()])
    return out


def _registry_cases():
    """(name, lhs, rhs, corr) for every algorithm, on a correlation it supports."""
    from oracles import SPLIT, split_case

    cases, seen = [], set()
    for entry in SPLIT:
        if entry[0] in seen:
            continue
        seen.add(entry[0])
        lhs, rhs, corr, expected = split_case(*entry[1:])
        cases.append((entry[0], lhs, rhs, corr, expected))
    assert seen == set(REGISTRY), set(REGISTRY) - seen
    return cases


def _registry_results(dtype) -> dict:
    return {
        name: correlate(lhs.astype(dtype), rhs.astype(dtype), corr, algorithm=name)
        for name, lhs, rhs, corr, _ in _registry_cases()
    }


def _mismatches(got: dict, expected: dict, rtol: float) -> list:
    bad = []
    for key, want in expected.items():
        have = np.asarray(got[key], dtype=np.float64)
        scale = max(1.0, float(np.abs(want).max()))
        if have.shape != want.shape or not np.allclose(have, want, rtol=0, atol=rtol * scale):
            bad.append(key)
    return bad


RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def _child_work() -> list:
    """What a child computes: every public function and every algorithm, both dtypes;
    returns the keys that disagree with the float64 reference."""
    expected = _expected_public()
    reg_expected = {name: e for name, *_, e in _registry_cases()}
    bad = []
    for dtype in (np.float32, np.float64):
        with np.errstate(all="ignore"):
            bad += _mismatches(_public_results(dtype), expected, RTOL[dtype])
            bad += _mismatches(_registry_results(dtype), reg_expected, RTOL[dtype])
    return bad


@pytest.fixture(scope="module")
def parent_ran_everything():
    """Every algorithm in the registry (and the compiled loops on the pool and on the
    calling thread) has run in this process, in both dtypes, before any fork."""
    assert _child_work() == []
    saved = _process.SERIAL_WORK
    _process.SERIAL_WORK = 0.0  # small calls on the pool's threads too
    try:
        assert _child_work() == []
    finally:
        _process.SERIAL_WORK = saved


# ---------------------------------------------------------------------------- fork


def _wait_child(pid: int) -> int:
    """The child's exit status; kills it and fails past the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child {pid} hung for {DEADLINE_S} s")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_of_os_fork_is_exact_after_the_parent_ran_everything(parent_ran_everything):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        code = 3
        try:
            os.write(write, pickle.dumps(_child_work()))
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    assert _wait_child(pid) == 0
    assert pickle.loads(data) == []


def _queue_child_work(queue) -> None:
    queue.put(_child_work())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_multiprocessing_fork_child_is_exact(parent_ran_everything):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_queue_child_work, args=(queue,))
    child.start()
    try:
        bad = queue.get(timeout=DEADLINE_S)
    finally:
        child.join(DEADLINE_S)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    assert bad == []


def _pool_task(dtype_name: str) -> list:
    dtype = np.dtype(dtype_name).type
    with np.errstate(all="ignore"):
        return _mismatches(_public_results(dtype), _expected_public(), RTOL[dtype])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_pool_of_workers_is_exact(parent_ran_everything):
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map_async(_pool_task, ["float32", "float64"] * 2).get(DEADLINE_S)
    assert results == [[]] * 4


# ------------------------------------------------------------------------- threads


def _run_threads(target, count: int) -> list:
    errors: list = []

    def guarded(k):
        try:
            target(k)
        except BaseException as error:  # noqa: BLE001 - reported to the test
            errors.append((k, repr(error)))

    threads = [threading.Thread(target=guarded, args=(k,), daemon=True) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def test_many_user_threads_calling_different_functions_are_exact():
    expected = _expected_public()
    keys = sorted(expected, key=str)
    before = [lib.num_threads for lib in _process.blas_controllers().lib_controllers]

    def caller(k):
        for dtype in (np.float32, np.float64) if k % 2 else (np.float64, np.float32):
            got = _public_results(dtype)
            mine = keys[k % 3 :: 3]  # each thread checks its own share
            bad = _mismatches(
                {key: got[key] for key in mine}, {key: expected[key] for key in mine}, RTOL[dtype]
            )
            assert bad == [], bad

    assert _run_threads(caller, 6) == []
    assert [lib.num_threads for lib in _process.blas_controllers().lib_controllers] == before
    assert _process.blas.users == 0


def test_dask_threaded_scheduler_is_exact():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    name, x, w, opts = _layers()[1]  # depthwise: the compiled loops
    y = reference.conv(x, w, None, **opts)
    gy = np.cos(np.arange(y.size)).reshape(y.shape)
    dx, dw, _ = reference.conv_grads(x, w, gy, **opts)
    xd = da.from_array(x.astype(np.float32), chunks=(1, *x.shape[1:]))
    gd = da.from_array(gy.astype(np.float32), chunks=(1, *gy.shape[1:]))
    with dask.config.set(scheduler="threads", num_workers=4):
        got_y = cg.conv(xd, w.astype(np.float32), **opts).compute()
        got_dx, got_dw = dask.compute(*cg.conv_backward(gd, xd, w.astype(np.float32), **opts)[:2])
    for got, want in ((got_y, y), (got_dx, dx), (got_dw, dw)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1, np.abs(want).max()))


def test_workspace_limit_as_a_context_is_per_thread_and_never_sticks():
    default = cg.get_workspace_limit()
    barrier = threading.Barrier(4)

    def user(k):
        limit = (k + 1) * 2**20
        for _ in range(200):
            with cg.set_workspace_limit(limit):
                barrier.wait(5) if _ == 0 else None
                assert cg.get_workspace_limit() == limit
            assert cg.get_workspace_limit() == default

    assert _run_threads(user, 4) == []
    assert cg.get_workspace_limit() == default
    cg.set_workspace_limit(3 * 2**20)  # a plain setting holds for the process
    try:
        seen = []
        t = threading.Thread(target=lambda: seen.append(cg.get_workspace_limit()))
        t.start()
        t.join()
        assert seen == [3 * 2**20] and cg.get_workspace_limit() == 3 * 2**20
    finally:
        cg.set_workspace_limit(default)
    assert cg.get_workspace_limit() == default


def test_a_plain_setting_during_another_threads_block_wins_after_it():
    default = cg.get_workspace_limit()
    inside, done = threading.Event(), threading.Event()

    def scoped():
        with cg.set_workspace_limit(2**20):
            inside.set()
            done.wait(5)
            assert cg.get_workspace_limit() == 2**20

    t = threading.Thread(target=scoped)
    t.start()
    inside.wait(5)
    try:
        cg.set_workspace_limit(5 * 2**20)
        done.set()
        t.join(5)
        assert cg.get_workspace_limit() == 5 * 2**20
    finally:
        cg.set_workspace_limit(default)


# ------------------------------------------------------------------------ interrupt


def test_keyboard_interrupt_during_a_long_call_leaves_the_process_as_it_was():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 64, 40, 40)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    before = [lib.num_threads for lib in _process.blas_controllers().lib_controllers]
    cg.conv(x[:2], w, padding=1)  # compiled, pool started
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in range(200):  # each call ~0.1 s: the interrupt lands inside one
                cg.conv_weight_grad(x, x, (64, 64, 9, 9), padding=4, algorithm="gemm")
    finally:
        timer.cancel()
    assert _process.blas.users == 0
    assert [lib.num_threads for lib in _process.blas_controllers().lib_controllers] == before
    assert _process.workspaces.kept_bytes <= _process.KEEP_BYTES
    small = x[:2, :4, :9, :9].astype(np.float64)
    expected = reference.conv(small, w[:5, :4].astype(np.float64), padding=1)
    for name in ("gemm", "implicit", "direct"):
        got = cg.conv(small, w[:5, :4].astype(np.float64), padding=1, algorithm=name)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------- the process itself

ALL_ALGORITHMS = textwrap.dedent(
    """
    import json, os, sys, threading
    import numpy as np
    sys.path.insert(0, {tests!r})
    before = dict(os.environ)
    import test_process as t
    from convgrad import _process
    _process.SERIAL_WORK = 0.0
    bad = []
    def work():
        bad.extend(t._child_work())
    threads = [threading.Thread(target=work) for _ in range(3)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = None
    print(json.dumps({{"bad": [str(b) for b in bad], "env_same": dict(os.environ) == before,
                      "layer": layer}}))
    """
)


@pytest.mark.parametrize("threading_layer", [None, "workqueue", "forksafe"])
def test_every_algorithm_from_threads_never_touches_environ_or_a_threading_layer(
    threading_layer,
):
    """Runs in a fresh process (after this one filled the compiled-code cache): every
    algorithm, both dtypes, from three threads at once. os.environ is unchanged, numba
    never starts a threading layer (so none of its layers, e.g. 'workqueue', which aborts
    on concurrent launches, matters), and results are exact."""
    import json

    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if threading_layer:
        env["NUMBA_THREADING_LAYER"] = threading_layer
    script = ALL_ALGORITHMS.format(tests=os.path.dirname(__file__))
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"bad": [], "env_same": True, "layer": None}


NOTICE_CALL = (
    "import numpy as np, convgrad as cg; x = np.ones((1, 2, 9, 9), np.float32); "
    "cg.conv_weight_grad(x, x[:, :, :7, :7], (2, 2, 3, 3), algorithm='blocked_dw')"
)


def test_a_compile_prints_one_notice_a_cache_load_none_and_the_setting_hides_it(tmp_path):
    def run(cache, quiet):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / cache))
        env.pop(_process.QUIET_ENV, None)
        if quiet:
            env[_process.QUIET_ENV] = "1"
        done = subprocess.run(
            [sys.executable, "-c", NOTICE_CALL], env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert run("a", quiet=True) == ""  # compiled, silently
    assert run("a", quiet=False) == ""  # loaded from the cache: no compile, no notice
    noisy = run("b", quiet=False)  # a fresh cache: compiles
    assert noisy.count("compiling") == 1 and _process.QUIET_ENV in noisy
    assert noisy.strip() == _process.CompileNotice.MESSAGE


@pytest.mark.skipif(_process.CORES < 2, reason="one core: no helper threads")
def test_a_call_never_waits_for_a_helper_that_has_not_started():
    """With every helper busy in another thread's call, a call's jobs all run on its own
    thread and it returns at once: it waits only for helpers that took one of its jobs
    (a sleeping thread can take 50-100 us to wake; a busy one, the other call's time)."""
    pool_threads, all_in = set(), threading.Event()

    def hold(k):
        if threading.current_thread().name.startswith("convgrad_"):
            pool_threads.add(threading.current_thread().name)
            if len(pool_threads) == _process.CORES:
                all_in.set()
        time.sleep(0.6)
        return k

    jobs = list(range(_process.CORES))
    others = [  # each takes CORES - 1 helpers (no BLAS limit: each call gets its helpers)
        threading.Thread(target=lambda: _process.jobs.run(hold, jobs, blas=False))
        for _ in range(_process.CORES)
    ]
    for other in others:
        other.start()
    assert all_in.wait(5)  # every pool thread is inside ``hold``
    start = time.perf_counter()
    names = _process.jobs.run(lambda k: (k, threading.current_thread().name), list(range(6)))
    took = time.perf_counter() - start
    for other in others:
        other.join()
    assert [k for k, _ in names] == list(range(6))
    assert {name for _, name in names} == {threading.current_thread().name}
    assert took < 0.3, took  # not the 0.6 s the helpers were busy for


def test_jobs_follow_the_callers_blas_limit_and_a_job_never_waits_on_new_jobs():
    with threadpool_limits(limits=1, user_api="blas"):
        assert _process.jobs.workers(64) == 1
    inner = []
    got = _process.jobs.run(lambda k: inner.append(_process.jobs.workers(8)) or k, [0, 1, 2])
    assert got == [0, 1, 2]
    assert 1 in inner  # a job running on a pool thread would run nested jobs itself
    assert _process.split_range(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert _process.split_range(2, 8) == [(0, 1), (1, 2)]


def test_a_call_under_serial_work_keeps_its_jobs_on_the_calling_thread(monkeypatch):
    """Waking a helper and passing the GIL cost more than a small call's work: a call of
    less than SERIAL_WORK forms its jobs for one thread (and is planned for one); a
    larger one uses the pool. Both are exact."""
    from convgrad import _plan

    seen, threads = [], []
    run = _process.JobPool.run

    def recording_run(self, job, args, *, blas=True):
        seen.append(self.workers(len(args)))
        threads.append(_plan.threads_in_force())
        return run(self, job, args, blas=blas)

    monkeypatch.setattr(_process.JobPool, "run", recording_run)
    rng = np.random.default_rng(13)
    for shape, small in (((2, 16, 32, 32), True), ((8, 32, 64, 64), False)):
        x, w = rng.standard_normal(shape), rng.standard_normal((shape[1], shape[1], 3, 3))
        work = 2 * x.size * shape[1] * 9  # the small call: 9.4 MFLOP, once worth two jobs
        assert (work < _process.SERIAL_WORK) == small and work > 4e6
        seen.clear()
        threads.clear()
        got = cg.conv(x, w, padding=1, algorithm="gemm")
        np.testing.assert_allclose(got, reference.conv(x, w, padding=1), rtol=1e-10, atol=1e-10)
        assert seen  # the call formed jobs
        if small:
            assert set(seen) == {1} and set(threads) == {1}
        elif _process.CORES > 1:
            assert max(seen) == min(_process.CORES, _process.blas_threads(), 8)


def test_simulating_a_larger_machine_forms_its_jobs_and_stays_exact():
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((8, 16, 96, 96)), rng.standard_normal((16, 1, 3, 3))
    assert 2 * x.size * 9 >= _process.SERIAL_WORK  # enough work for the pool
    expected = reference.conv(x, w, padding=1, groups=16)
    for cores in (1, 8, 64):
        with _process.jobs.simulate(cores) as busy:
            got = cg.conv(x, w, padding=1, groups=16, algorithm="direct")
        assert max(busy, default=1) == cores
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    assert _process.jobs.cores() == _process.CORES


def test_direct_cuts_bands_per_thread_count_with_the_same_bits():
    """One image: direct cuts its rows into bands for JOBS_PER_THREAD jobs per thread
    (thinner bands on more cores); a band does not change any output's sum, so every
    thread count gives the same bits, and the float64 definition."""
    from convgrad._rules import Correlation
    from convgrad.algorithms import direct

    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 5, 40, 40)).astype(np.float32)
    w = rng.standard_normal((10, 5, 5, 5)).astype(np.float32)
    lhs_shape, rhs_shape = (1, 1, 5, 40, 40), (1, 10, 5, 5, 5)
    corr = Correlation((1, 1), ((0, 0), (0, 0)), (1, 1), (1, 1))
    bands = {t: direct._band(lhs_shape, rhs_shape, corr, 4, threads=t)[0] for t in (1, 2, 16)}
    assert bands[1] > bands[2] > bands[16], bands
    results = []
    for cores in (1, 2, 16):
        with _process.jobs.simulate(cores):
            results.append(cg.conv(x, w, algorithm="direct"))
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])
    expected = reference.conv(x.astype(np.float64), w.astype(np.float64))
    np.testing.assert_allclose(results[0], expected, rtol=0, atol=2e-5 * np.abs(expected).max())


# ------------------------------------------------------------------- kernel builds


@pytest.fixture
def fresh_builds(monkeypatch):
    """A process whose kernels, as far as 'auto' knows, are not built yet: builds run in
    the background."""
    builds = _process.KernelBuilds()
    monkeypatch.setattr(_process, "kernel_builds", builds)
    yield builds
    builds.wait()


COMPILED = {name for name, impl in REGISTRY.items() if hasattr(impl, "compiled_variant")}


def test_auto_never_waits_for_a_build_and_is_exact_before_and_after_it(fresh_builds, monkeypatch):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    opts = dict(padding=1, groups=8)
    expected = reference.conv_grads(x.astype(float), w.astype(float), gy.astype(float), **opts)

    def backward():
        with _plan.recording() as names:
            got = cg.conv_backward(gy, x, w, **opts)
        for g, e in zip(got[:2], expected[:2]):
            np.testing.assert_allclose(g, e, rtol=0, atol=2e-5 * max(1, np.abs(e).max()))
        return set(names)

    release = threading.Event()
    build = fresh_builds._build
    monkeypatch.setattr(
        fresh_builds, "_build", lambda key, job: (release.wait(DEADLINE_S), build(key, job))
    )
    first = backward()  # the builds (here: of kernels compiled already) are held back
    release.set()
    fresh_builds.wait()
    built = {key[0] for key in fresh_builds._ready}
    assert built and built <= COMPILED, built  # the planner's compiled choices were built
    assert not first & built, first  # meanwhile the first call ran what needs no build
    assert backward() & built  # once built, they run


def test_builds_of_one_key_start_once_and_wait_returns_when_all_ended(fresh_builds):
    started, release = [], threading.Event()

    def build():
        started.append(1)
        release.wait(DEADLINE_S)

    assert not fresh_builds.start("k", build)
    assert not fresh_builds.start("k", build)  # already building: not started again
    assert not fresh_builds.ready("k")
    release.set()
    fresh_builds.wait()
    assert fresh_builds.ready("k") and started == [1]
    assert fresh_builds.start("k", build) and started == [1]


def test_a_failed_build_is_ready_so_the_call_that_runs_it_raises(fresh_builds):
    def build():
        raise RuntimeError("no compiler")

    fresh_builds.start("bad", build)
    fresh_builds.wait()
    assert fresh_builds.ready("bad")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_waits_for_a_running_build_and_the_child_builds_its_own(fresh_builds):
    finished = threading.Event()

    def build():
        time.sleep(0.3)
        finished.set()

    fresh_builds.start("slow", build)
    pid = os.fork()
    if pid == 0:  # the child: the build had ended before the fork; nothing runs now
        code = 3
        try:
            builds = _process.kernel_builds
            ok = finished.is_set() and builds.ready("slow") and not builds._building
            x = np.ones((1, 2, 6, 6), np.float32)
            y = cg.conv(x, np.ones((2, 1, 3, 3), np.float32), groups=2)
            builds.wait()
            code = 0 if ok and np.allclose(y, 9) else 4
        finally:
            os._exit(code)
    assert _wait_child(pid) == 0
    assert finished.is_set()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
def test_the_pool_has_one_thread_per_core_the_process_may_use():
    script = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from convgrad import _process; print(_process.CORES, _process.jobs.workers(64))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=DEADLINE_S
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]


def test_calls_inside_on_this_thread_wait_for_their_builds(fresh_builds):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    with fresh_builds.on_this_thread(), _plan.recording() as names:
        y = cg.conv(x, w, padding=1, groups=8)
    built = {key[0] for key in fresh_builds._ready}
    assert built and set(names) <= built  # it waited, then ran the planner's choice
    expected = reference.conv(x.astype(float), w.astype(float), padding=1, groups=8)
    np.testing.assert_allclose(y, expected, rtol=0, atol=2e-5 * np.abs(expected).max())

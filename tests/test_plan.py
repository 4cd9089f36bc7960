"""The planner: choice, override, autotune cache, workspace limit setting, and the
public functions' results through each algorithm."""

from __future__ import annotations

import numpy as np
import pytest

import convgrad
from convgrad import _plan, _process, reference
from convgrad._rules import Correlation
from convgrad.algorithms import REGISTRY


def test_choose_returns_a_supporting_algorithm_with_finite_estimates():
    corr = Correlation((1, 1), ((1, 1), (1, 1)), (2, 2), (1, 1))
    lhs_shape, rhs_shape = (1, 2, 8, 7, 7), (1, 4, 8, 3, 3)
    est = _plan.estimates(lhs_shape, rhs_shape, corr, 4)
    assert set(est) == {n for n, m in REGISTRY.items() if m.supports(lhs_shape, rhs_shape, corr)}
    assert all(np.isfinite(v) and v > 0 for v in est.values())
    assert _plan.choose(lhs_shape, rhs_shape, corr, 4) in est


def test_cost_model_prefers_no_inserted_zeros_for_strided_input_grad():
    # dX of a stride-2 3x3 conv: gemm would multiply 3/4 zeros
    corr = Correlation((1, 1), ((1, 2), (1, 2)), (2, 2), (1, 1))
    assert _plan.choose((1, 8, 128, 14, 14), (1, 128, 128, 3, 3), corr, 4) == "phase"


@pytest.mark.parametrize(
    "x_shape, w_shape, options, expected",
    [  # many input and output channels: winograd_dw (tests/test_winograd_dw.py); strided,
        # where blocked_dw's (B*T, O) sums per image outweigh gemm's column copy (measured
        # on two threads: gemm 1.8-2.0 ms, blocked_dw 2.2-2.4)
        ((8, 128, 28, 28), (128, 128, 3, 3), dict(padding=1, stride=2), "gemm"),
        # few channels, long runs: blocked_dw reads them in place (conv3d 3.8-4.3 ms, gemm
        # 10.7-13.7; 3x3-56 4.9-5.4, gemm 9.1-9.6)
        ((2, 32, 16, 28, 28), (32, 32, 3, 3, 3), dict(padding=1), "blocked_dw"),
        ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), "blocked_dw"),
    ],
)
def test_weight_gradients_go_where_they_were_measured_fastest(x_shape, w_shape, options, expected):
    """The benchmark's dense weight gradients, planned for two threads."""
    from convgrad._rules import weight_grad
    from convgrad._runner import operand
    from convgrad._spec import conv_spec

    spec = conv_spec(x_shape, w_shape, **options)
    step = weight_grad(spec)
    arrays = {
        "x": np.empty(x_shape, np.float32),
        "grad_output": np.empty((x_shape[0], w_shape[0], *spec.out_spatial), np.float32),
    }
    lhs = operand(step, step.lhs, arrays[step.lhs.source])
    rhs = operand(step, step.rhs, arrays[step.rhs.source])
    est = _plan.estimates(lhs.shape, rhs.shape, step.corr, 4, threads=2, limit=2**28)
    assert min(est, key=est.get) == expected


def test_counts_take_the_cores_and_the_limit_as_inputs(monkeypatch):
    """Every algorithm's counts() depends on the machine only through its ``cores`` and
    ``limit`` arguments: the same with the process's core count replaced everywhere, and
    the copies of the per-image algorithms are split over the cores given."""
    import importlib

    from convgrad.algorithms import fft

    corr = Correlation((1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1))
    cases = [
        ((1, 4, 8, 14, 14), (1, 8, 8, 3, 3), corr),  # every dense candidate
        ((8, 2, 1, 20, 20), (8, 1, 1, 9, 9), Correlation((1, 1), ((4, 4), (4, 4)), (1, 1), (1, 1))),
    ]

    def all_counts(cores, limit):
        fft.tiling.cache_clear()
        return {
            (name, i): REGISTRY[name].counts(*case, 4, cores=cores, limit=limit)
            for i, case in enumerate(cases)
            for name in _plan.candidates(*case)
        }

    expected = all_counts(3, 2**26)
    for module in ("convgrad._process", "convgrad.algorithms._parallel", "convgrad.algorithms.direct",
                   "convgrad.algorithms.implicit_dw", "convgrad.algorithms._winograd"):  # fmt: skip
        monkeypatch.setattr(importlib.import_module(module), "CORES", 97, raising=False)
    assert all_counts(3, 2**26) == expected
    fft.tiling.cache_clear()
    names = {name for name, _ in expected}
    assert {"gemm", "implicit", "winograd", "fft"} <= names
    for name in ("gemm", "implicit"):
        one = REGISTRY[name].counts(*cases[0], 4, cores=1, limit=2**26)
        four = REGISTRY[name].counts(*cases[0], 4, cores=4, limit=2**26)
        assert four.bytes < one.bytes


def test_seconds_is_linear_in_the_counts():
    c = _plan.Counts(gemm_flops=1e9, gemm_min_dim=64, bytes=1e8, calls=10)
    double = _plan.Counts(gemm_flops=2e9, gemm_min_dim=64, bytes=2e8, calls=20)
    assert _plan.seconds(double) == pytest.approx(2 * _plan.seconds(c))


def test_set_workspace_limit_plain_and_as_context_manager():
    before = convgrad.get_workspace_limit()
    assert before == 256 * 2**20
    with convgrad.set_workspace_limit(1024):
        assert convgrad.get_workspace_limit() == 1024
    assert convgrad.get_workspace_limit() == before
    token = convgrad.set_workspace_limit(4096)
    try:
        assert convgrad.get_workspace_limit() == 4096
    finally:
        convgrad.set_workspace_limit(token.previous)
    assert convgrad.get_workspace_limit() == before
    for bad in (0, -1, 1.5, "big", True):
        with pytest.raises(ValueError, match="workspace limit"):
            convgrad.set_workspace_limit(bad)


def test_autotune_caches_the_winner_and_stays_exact():
    _plan.clear_autotune_cache()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    expected = reference.conv(x, w, stride=1, padding=1)
    with _plan.recording() as first:
        y = convgrad.conv(x, w, padding=1, algorithm="autotune")
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)
    assert len(_process.autotune_cache) == 1
    (entry,) = _plan.autotune_timings()
    winner, seconds = entry["winner"], entry["seconds"]
    assert first == [winner]
    # the winner is the fastest of the candidates timed, each a real algorithm that
    # supports the call, and the cost model's estimate comes with each
    assert winner == min(seconds, key=seconds.get)
    assert set(seconds) <= set(_plan.candidates(entry["lhs_shape"], entry["rhs_shape"],
                                                entry["correlation"]))  # fmt: skip
    assert all(t > 0 for t in seconds.values()) and set(entry["estimates"]) == set(seconds)
    assert entry["dtype"] == "float64" and entry["lhs_shape"] == (1, 2, 3, 9, 9)
    with _plan.recording() as second:
        y2 = convgrad.conv(x, w, padding=1, algorithm="autotune")
    assert second == [winner]
    assert _plan.autotune_timings()[0]["seconds"] == seconds  # cached: not timed again
    np.testing.assert_allclose(y2, expected, rtol=1e-10, atol=1e-10)


def test_unknown_algorithm_is_rejected_by_name():
    with pytest.raises(ValueError, match="algorithm must be"):
        convgrad.conv(np.zeros((1, 1, 4)), np.zeros((1, 1, 2)), algorithm="winograd9")


OPTIONS = [
    dict(stride=2, padding=1),
    dict(padding=2, dilation=2, groups=2),
    dict(padding=((1, 0), (2, 1))),
    dict(padding=1, padding_mode="reflect"),
]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("name", ["auto", "autotune", *REGISTRY])
def test_public_functions_through_every_algorithm(name, options):
    rng = np.random.default_rng(1)
    groups = options.get("groups", 1)
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 4 // groups, 3, 3))
    y_ref = reference.conv(x, w, **options)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref, _ = reference.conv_grads(x, w, gy, **options)
    kw = dict(options, algorithm=name)
    try:
        y = convgrad.conv(x, w, **kw)
        gx = convgrad.conv_input_grad(gy, w, x.shape, **kw)
        gw = convgrad.conv_weight_grad(x, gy, w.shape, **kw)
    except ValueError as exc:  # a named algorithm may not support one of the passes
        assert name in REGISTRY and "does not support" in str(exc)
        return
    for got, want in ((y, y_ref), (gx, gx_ref), (gw, gw_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


def test_the_cost_model_takes_the_thread_count():
    """Work spreads over as many threads as it has jobs: a one-job count costs the same on
    one thread and on two, one with many jobs half as much on two."""
    one_job = _plan.Counts(gemm_flops=1e9, gemm_min_dim=64, bytes=1e6, calls=10, jobs=1)
    many = _plan.Counts(gemm_flops=1e9, gemm_min_dim=64, bytes=1e6, calls=10, jobs=64)
    assert _plan.seconds(one_job, threads=1) == pytest.approx(_plan.seconds(one_job, threads=2))
    calls = 10 * _plan.MACHINE["CALL_S"]
    assert _plan.seconds(many, threads=1) - calls == pytest.approx(
        2 * (_plan.seconds(many, threads=2) - calls)
    )
    # a single image through a dense layer: im2col's jobs are images, the compiled loop's
    # are bands of rows; with more threads only the latter gets faster
    corr = Correlation((1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1))
    shapes = ((1, 1, 4, 32, 32), (1, 4, 4, 3, 3), corr, 4)
    est1, est2 = _plan.estimates(*shapes, threads=1), _plan.estimates(*shapes, threads=2)
    assert est1["gemm"] == pytest.approx(est2["gemm"])
    assert est2["direct"] < est1["direct"]
    for threads in (1, 2, 8):
        assert (
            _plan.choose(*shapes, threads=threads)
            == min(_plan.estimates(*shapes, threads=threads).items(), key=lambda kv: kv[1])[0]
        )


def _backward_passes(monkeypatch, run):
    """The (lhs_shape, rhs_shape, corr, algorithm) of the two passes ``run`` asks
    ``_plan.side_by_side`` about (run one after the other here)."""
    asked = []
    monkeypatch.setattr(_plan, "side_by_side", lambda passes, *a, **k: asked.append(passes))
    run()
    monkeypatch.undo()
    return asked[-1]


def test_passes_go_side_by_side_where_one_cannot_use_the_threads(monkeypatch):
    """Never on one thread; a 3-D transposed layer of two images, whose passes form fewer
    jobs than 64 threads, side by side on 64, the threads shared out; a depthwise
    layer (compiled loops that scale) and a 3x3 layer whose passes each fill both threads
    and differ 2x in length, one after the other on two."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 32, 8, 14, 14)).astype(np.float32)
    w = rng.standard_normal((32, 16, 4, 4, 4)).astype(np.float32)
    gy = np.zeros((2, 16, 16, 28, 28), np.float32)
    small = _backward_passes(
        monkeypatch, lambda: convgrad.conv_transpose_backward(gy, x, w, stride=2, padding=1)
    )
    assert _plan.side_by_side(small, 4, threads=1) is None
    shares = _plan.side_by_side(small, 4, threads=64)
    assert shares is not None and sum(shares) == 64 and min(shares) >= 1
    xd = np.zeros((8, 144, 56, 56), np.float32)
    wd = np.zeros((144, 1, 3, 3), np.float32)
    depthwise = _backward_passes(
        monkeypatch, lambda: convgrad.conv_backward(xd, xd, wd, padding=1, groups=144)
    )
    assert _plan.side_by_side(depthwise, 4, threads=2) is None
    xs = np.zeros((8, 64, 56, 56), np.float32)
    ws = np.zeros((64, 64, 3, 3), np.float32)
    dense = _backward_passes(monkeypatch, lambda: convgrad.conv_backward(xs, xs, ws, padding=1))
    assert _plan.side_by_side(dense, 4, threads=2) is None

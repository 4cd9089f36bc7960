"""The FFT algorithm's own paths against the float64 definition: overlap-save tiles, the
kernel's transforms by DFT GEMMs or by rfftn, made once or per chunk; its transform
sizes; the planner's choice for large and small kernels; its workspace; float32 error
on long transforms. (The registry sweeps of test_algorithms run it on every case too.)"""

from __future__ import annotations

import tracemalloc
import zlib

import numpy as np
import pytest

import convgrad as cg
from convgrad import _plan, _process, _rules, reference
from convgrad._primitive import correlate
from convgrad._rules import Correlation
from convgrad._spec import conv_spec
from convgrad.algorithms import _workspace, fft
from oracles import direct_correlation
from test_algorithms import CASES

FFT_CASES = [case for case in CASES if fft.supports(*case[1:])]


def _check(lhs, rhs, corr, expected, **options):
    got = correlate(lhs, rhs, corr, algorithm="fft", **options)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    got32 = correlate(lhs.astype(np.float32), rhs.astype(np.float32), corr, algorithm="fft")
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=0, atol=2e-5 * max(1, np.abs(expected).max()))


def _operands(case):
    name, lhs_shape, rhs_shape, corr = case
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    lhs.flags.writeable = rhs.flags.writeable = False
    return lhs, rhs, corr, direct_correlation(lhs, rhs, corr)


def test_the_sweep_reaches_fft_on_most_cases():
    assert len(FFT_CASES) >= 40
    assert any(len(case[1]) == 6 for case in FFT_CASES)  # 3-D
    assert any(case[1][2] == 1 for case in FFT_CASES)  # one channel (depthwise)


@pytest.mark.parametrize("tile", [1, 3])
@pytest.mark.parametrize("case", FFT_CASES, ids=[c[0] for c in FFT_CASES])
def test_overlap_save_tiles_match_direct_evaluation(case, tile, monkeypatch):
    """Tiles of 1 and 3 outputs per dim (the cost model's choice is often one tile here):
    every tile's window, shift and picked entries, with strides, padding and crops."""
    lhs, rhs, corr, expected = _operands(case)

    def tiles(lhs_shape, rhs_shape, corr, itemsize, cores, limit):
        whole = fft.dims(lhs_shape, rhs_shape, corr)
        return whole and tuple(fft._tiled(d, min(tile, d.count)) for d in whole)

    monkeypatch.setattr(fft, "tiling", tiles)
    _check(lhs, rhs, corr, expected)
    _check(lhs, rhs, corr, expected, workspace_limit=64)


@pytest.mark.parametrize("by_dft", [True, False])
@pytest.mark.parametrize("case", FFT_CASES, ids=[c[0] for c in FFT_CASES])
def test_kernel_transforms_by_dft_or_rfftn_once_or_per_chunk(case, by_dft, monkeypatch):
    lhs, rhs, corr, expected = _operands(case)
    monkeypatch.setattr(fft, "kernel_by_dft", lambda geometry, kernel: by_dft)
    _check(lhs, rhs, corr, expected)
    monkeypatch.setattr(fft, "SMALL_KERNEL", 0)  # the kernel's transforms per chunk
    got = correlate(lhs, rhs, corr, algorithm="fft", workspace_limit=64)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def test_transform_lengths_are_scipys_next_fast_len():
    import scipy.fft

    for n in [*range(1, 3000), 4097, 16465, 65537, 10**6 + 1]:
        assert fft.fast_len(n) == scipy.fft.next_fast_len(n, real=True), n


LARGE = {  # (x shape, w shape, options): kernels where the transforms pay
    "7x7-56": ((8, 64, 56, 56), (64, 64, 7, 7), dict(padding=3)),
    "k31-1d": ((4, 32, 16384), (32, 32, 31), dict(padding=15)),
    "15x15": ((4, 16, 128, 128), (16, 16, 15, 15), dict(padding=7)),
    "11x11": ((8, 32, 64, 64), (32, 32, 11, 11), dict(padding=5)),
    "k65-1d": ((4, 32, 16384), (32, 32, 65), dict(padding=32)),
    "depthwise-31": ((8, 96, 56, 56), (96, 1, 31, 31), dict(padding=15, groups=96)),
}
SMALL = {  # where they do not
    "3x3-56": ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    "3x3-14": ((8, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    "1x1": ((8, 256, 56, 56), (64, 256, 1, 1), dict()),
    "depthwise-3": ((8, 144, 56, 56), (144, 1, 3, 3), dict(padding=1, groups=144)),
    "depthwise-7": ((8, 96, 56, 56), (96, 1, 7, 7), dict(padding=3, groups=96)),
    "conv1d-k3": ((4, 64, 4096), (64, 64, 3), dict(padding=1)),
    "stem": ((8, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)),
}


def _choices(x_shape, w_shape, options, threads=2):
    spec = conv_spec(x_shape, w_shape, **options)
    return {
        step.name: _plan.choose(step.lhs_shape, step.rhs_shape, step.corr, 4, threads)
        for step in _rules.steps(spec).values()
    }


@pytest.mark.parametrize("name", LARGE)
def test_the_planner_picks_fft_for_large_kernels(name):
    choices = _choices(*LARGE[name])
    assert choices["forward"] == "fft" and choices["input_grad"] == "fft", choices


@pytest.mark.parametrize("name", SMALL)
def test_the_planner_leaves_small_kernels_to_the_others(name):
    assert "fft" not in _choices(*SMALL[name]).values()


def test_chunked_work_stays_under_the_workspace_limit(monkeypatch):
    """Several chunks of (groups, tiles, channels, filters), the kernel's transforms per
    chunk: the peak stays under the limit plus the output and small temporaries."""
    rng = np.random.default_rng(8)
    spec = conv_spec((2, 8, 40, 44), (8, 8, 9, 9), padding=4)
    step = _rules.forward(spec)
    lhs = rng.standard_normal(step.lhs_shape).astype(np.float32)
    rhs = rng.standard_normal(step.rhs_shape).astype(np.float32)
    corr, limit = step.corr, 128 * 1024
    geometry = fft.tiling(
        step.lhs_shape, step.rhs_shape, corr, 4, _process.CORES, _process.DEFAULT_WORKSPACE_LIMIT
    )
    full = fft.workspace_bytes(step.lhs_shape, step.rhs_shape, corr, 4)
    plan = fft.plan(step.lhs_shape, step.rhs_shape, geometry, 4, limit, _process.CORES)
    assert full > 4 * limit and not plan.kernel_once  # the limit binds
    expected = direct_correlation(lhs, rhs, corr)
    correlate(lhs, rhs, corr, algorithm="fft", workspace_limit=limit)
    monkeypatch.setattr(_workspace, "workspaces", _process.Workspaces(_process.KEEP_BYTES))
    tracemalloc.start()
    try:
        got = correlate(lhs, rhs, corr, algorithm="fft", workspace_limit=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * np.abs(expected).max())
    assert peak <= limit + got.nbytes + 256 * 1024, (peak, limit, got.nbytes)


@pytest.mark.slow
def test_float32_error_on_long_transforms_meets_the_float32_tolerance():
    """Long signals and large kernels (transforms of 16875 points, 32 channels summed):
    the float32 error against float64 stays within the tests' float32 bound."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 32, 16384)).astype(np.float32)
    w = rng.standard_normal((16, 32, 65)).astype(np.float32)
    want = cg.conv(x.astype(np.float64), w.astype(np.float64), padding=32, algorithm="gemm")
    got = cg.conv(x, w, padding=32, algorithm="fft")
    assert np.abs(got - want).max() <= 2e-5 * max(1, np.abs(want).max())
    gy = rng.standard_normal(want.shape).astype(np.float32)
    want = cg.conv_weight_grad(x.astype(np.float64), gy.astype(np.float64), w.shape, padding=32,
                               algorithm="gemm")  # fmt: skip
    got = cg.conv_weight_grad(x, gy, w.shape, padding=32, algorithm="fft")
    assert np.abs(got - want).max() <= 2e-5 * max(1, np.abs(want).max())


def test_public_functions_through_fft_unbatched_and_transposed():
    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((3, 17, 15)), rng.standard_normal((4, 3, 7, 6))
    options = dict(padding=(3, 2), dilation=(1, 2))
    y = cg.conv(x, w, algorithm="fft", **options)
    np.testing.assert_allclose(y, reference.conv(x[None], w, **options)[0], atol=1e-10)
    gy = rng.standard_normal(y.shape)
    gx, gw, _ = reference.conv_grads(x[None], w, gy[None], **options)
    gx_fft = cg.conv_input_grad(gy, w, x.shape, algorithm="fft", **options)
    np.testing.assert_allclose(gx_fft, gx[0], atol=1e-10)
    gw_fft = cg.conv_weight_grad(x, gy, w.shape, algorithm="fft", **options)
    np.testing.assert_allclose(gw_fft, gw, atol=1e-9)
    wt = rng.standard_normal((3, 2, 5, 5))  # a transposed convolution at stride 1
    t = cg.conv_transpose(x, wt, padding=1, algorithm="fft")
    np.testing.assert_allclose(t, reference.conv_transpose(x[None], wt, padding=1)[0], atol=1e-10)
    with pytest.raises(ValueError, match="does not support"):  # lhs dilation
        cg.conv_transpose(x, wt, stride=2, algorithm="fft")
    assert fft.supports((1, 1, 1, 9), (1, 1, 1, 3), Correlation((1,), ((0, 0),), (1,), (1,)))

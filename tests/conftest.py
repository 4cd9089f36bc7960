"""Shared fixtures and helpers for the convgrad tests."""

from __future__ import annotations

import numpy as np
import pytest

from convgrad import _process

# kernels build on the calling thread: 'auto' picks the same algorithm in every run
# (tests of background builds turn it back on)
_process.kernel_builds.background = False


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def assert_close(actual, expected, dtype=np.float64, scale=None):
    """Compare with a tolerance suited to the dtype, relative to the expected magnitude."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    rtol = {np.float64: 1e-10, np.float32: 2e-5, np.float16: 5e-3}[np.dtype(dtype).type]
    scale = scale if scale is not None else max(1.0, float(np.abs(expected).max(initial=0)))
    err = float(np.abs(actual.astype(np.float64) - expected).max(initial=0))
    assert err <= rtol * scale, f"max error {err:.3e} > {rtol * scale:.3e}"

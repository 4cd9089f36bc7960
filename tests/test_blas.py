"""The raw BLAS wrapper: offsets, leading dimensions, beta, trans_a and trans_b against
NumPy, on both back ends (NumPy's own OpenBLAS via CBLAS, SciPy's Fortran capsule), and
bounds."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from convgrad.algorithms import _blas


def _view(buf, off, rows, cols, ld):
    return as_strided(buf[off:], (rows, cols), (ld * buf.itemsize, buf.itemsize))


@pytest.fixture(params=["default", "fortran"])
def backend(request, monkeypatch):
    if request.param == "fortran":
        monkeypatch.setattr(
            _blas,
            "_FUNCS",
            {"f": ("fortran", _blas._scipy_blas("s")), "d": ("fortran", _blas._scipy_blas("d"))},
        )  # fmt: skip
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_offsets_ld_beta_and_transpose(backend, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(400).astype(dtype)
    b = rng.standard_normal(400).astype(dtype)
    c = rng.standard_normal(200).astype(dtype)
    m, n, k = 5, 7, 4
    tol = 1e-5 if dtype == np.float32 else 1e-12
    before = _view(c, 3, m, n, 9).copy()
    _blas.gemm(a, 11, 13, b, 5, 17, c, 3, 9, m, n, k, 1.0)
    want = _view(a, 11, m, k, 13) @ _view(b, 5, k, n, 17) + before
    np.testing.assert_allclose(_view(c, 3, m, n, 9), want, atol=tol)
    _blas.gemm(a, 0, 6, b, 2, 8, c, 3, 9, m, n, k, 0.0, trans_b=True)
    want = _view(a, 0, m, k, 6) @ _view(b, 2, n, k, 8).T
    np.testing.assert_allclose(_view(c, 3, m, n, 9), want, atol=tol)
    before = _view(c, 3, m, n, 9).copy()  # A read transposed: A[k, m], beta 1
    _blas.gemm(a, 7, 10, b, 2, 8, c, 3, 9, m, n, k, 1.0, trans_a=True)
    want = _view(a, 7, k, m, 10).T @ _view(b, 2, k, n, 8) + before
    np.testing.assert_allclose(_view(c, 3, m, n, 9), want, atol=tol)
    _blas.gemm(a, 1, 6, b, 0, 5, c, 3, 9, m, n, k, 0.0, trans_a=True, trans_b=True)
    want = _view(a, 1, k, m, 6).T @ _view(b, 0, n, k, 5).T
    np.testing.assert_allclose(_view(c, 3, m, n, 9), want, atol=tol)
    # prepared buffers: the same call, the same result
    ba, bb, bc = _blas.buffer(a), _blas.buffer(b), _blas.buffer(c)
    _blas.gemm(ba, 11, 13, bb, 5, 17, bc, 3, 9, m, n, k, 0.0)
    np.testing.assert_allclose(
        _view(c, 3, m, n, 9), _view(a, 11, m, k, 13) @ _view(b, 5, k, n, 17), atol=tol
    )


def test_gemm_refuses_out_of_bounds_access():
    a, b, c = np.zeros(10), np.zeros(10), np.zeros(10)
    with pytest.raises(IndexError, match="out of bounds"):
        _blas.gemm(_blas.buffer(a), 5, 3, b, 0, 3, _blas.buffer(c), 0, 3, 2, 3, 3, 0.0)
    with pytest.raises(ValueError, match="contiguous"):
        _blas.buffer(np.zeros((4, 4))[:, ::2])
    with pytest.raises(ValueError, match="one dtype"):
        _blas.gemm(a, 0, 3, b.astype(np.float32), 0, 3, c, 0, 3, 1, 3, 3, 0.0)
    read_only = np.zeros(10)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _blas.gemm(a, 0, 3, b, 0, 3, read_only, 0, 3, 1, 3, 3, 0.0)
    with pytest.raises(IndexError, match="out of bounds"):
        _blas.gemm(a, 5, 3, b, 0, 3, c, 0, 3, 2, 3, 3, 0.0)

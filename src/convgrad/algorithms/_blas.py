"""Raw BLAS ?gemm (NumPy's own OpenBLAS via ctypes, else SciPy's cython_blas): offsets,
leading dimensions and ``beta`` that ``np.matmul`` cannot express, so shifted views of one padded buffer
feed the GEMM without any copy and products accumulate in place.

``gemm(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, m, n, k, beta, trans_b=False)``
computes, in row-major terms, ``C[m, n] = A[m, k] @ B[k, n] (+ beta C)`` where each matrix
lives in a flat contiguous array at an element offset with a row stride (``B`` read as
``B[n, k]`` transposed when ``trans_b``). Every access is bounds-checked before the call.
"""

from __future__ import annotations

import ctypes

import numpy as np

_FUNCS: dict = {}
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _numpy_cblas(prefix: str):
    """(function, int type) of ``cblas_?gemm`` in the OpenBLAS that NumPy itself loaded, so
    there is one BLAS thread pool, not two; None if it cannot be found."""
    import glob
    import os

    base = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(base, "lib*openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol, int_type in (
            (f"scipy_cblas_{prefix}gemm64_", ctypes.c_int64),
            (f"cblas_{prefix}gemm64_", ctypes.c_int64),
            (f"scipy_cblas_{prefix}gemm", ctypes.c_int),
            (f"cblas_{prefix}gemm", ctypes.c_int),
        ):
            func = getattr(lib, symbol, None)
            if func is not None:
                func.restype = None
                return func, int_type
    return None


def _scipy_blas(prefix: str):
    """Fortran ``?gemm`` from SciPy's cython_blas capsule (fallback)."""
    from scipy.linalg import cython_blas

    capsule = cython_blas.__pyx_capi__[f"{prefix}gemm"]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    pint, ptr = ctypes.POINTER(ctypes.c_int), ctypes.c_void_p
    proto = ctypes.CFUNCTYPE(
        None,
        ctypes.c_char_p,
        ctypes.c_char_p,
        pint,
        pint,
        pint,
        ptr,
        ptr,
        pint,
        ptr,
        pint,
        ptr,
        ptr,
        pint,
    )
    return proto(address)


def _func(dtype: np.dtype):
    prefix = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}[np.dtype(dtype)]
    if prefix not in _FUNCS:
        found = _numpy_cblas(prefix)
        _FUNCS[prefix] = ("cblas", *found) if found else ("fortran", _scipy_blas(prefix), None)
    return _FUNCS[prefix]


def supported(dtype) -> bool:
    return np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))


def _check(array: np.ndarray, offset: int, rows: int, cols: int, ld: int, label: str) -> None:
    if not (array.flags.c_contiguous and cols <= ld):
        raise ValueError(f"BLAS operand {label}: not a contiguous buffer or ld < cols")
    last = offset + (rows - 1) * ld + cols - 1
    if offset < 0 or last >= array.size:
        raise IndexError(f"BLAS operand {label} out of bounds: {offset}..{last} of {array.size}")


def gemm(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, m, n, k, beta, trans_b=False):
    """Row-major C[m, n] = A[m, k] @ op(B) + beta * C on flat contiguous buffers."""
    if m <= 0 or n <= 0:
        return
    # a single row may have any stride; BLAS still wants ld >= its row length
    lda = max(lda, k) if m == 1 else lda
    ldc = max(ldc, n) if m == 1 else ldc
    if trans_b:
        ldb = max(ldb, k) if n == 1 else ldb
    else:
        ldb = max(ldb, n) if k == 1 else ldb
    dtype = c.dtype
    assert a.dtype == dtype and b.dtype == dtype and c.flags.writeable
    _check(a, a_off, m, k, lda, "A")
    if trans_b:
        _check(b, b_off, n, k, ldb, "B")
    else:
        _check(b, b_off, k, n, ldb, "B")
    _check(c, c_off, m, n, ldc, "C")
    scalar = np.ctypeslib.as_ctypes_type(dtype)
    isz = dtype.itemsize
    kind, func, int_type = _func(dtype)
    pa = ctypes.c_void_p(a.ctypes.data + a_off * isz)
    pb = ctypes.c_void_p(b.ctypes.data + b_off * isz)
    pc = ctypes.c_void_p(c.ctypes.data + c_off * isz)
    if kind == "cblas":
        i = int_type
        func(
            ROW_MAJOR,
            NO_TRANS,
            TRANS if trans_b else NO_TRANS,
            i(m),
            i(n),
            i(k),
            scalar(1.0),
            pa,
            i(lda),
            pb,
            i(ldb),
            scalar(beta),
            pc,
            i(ldc),
        )
        return
    one, beta_ = scalar(1.0), scalar(beta)
    # column-major: C^T[n, m] = op(B)^T[n, k] @ A^T[k, m]
    func(
        b"T" if trans_b else b"N",
        b"N",
        ctypes.byref(ctypes.c_int(n)),
        ctypes.byref(ctypes.c_int(m)),
        ctypes.byref(ctypes.c_int(k)),
        ctypes.byref(one),
        pb,
        ctypes.byref(ctypes.c_int(ldb)),
        pa,
        ctypes.byref(ctypes.c_int(lda)),
        ctypes.byref(beta_),
        pc,
        ctypes.byref(ctypes.c_int(ldc)),
    )

"""Raw BLAS ?gemm (NumPy's own OpenBLAS via ctypes, else SciPy's cython_blas): offsets,
leading dimensions and ``beta`` that ``np.matmul`` cannot express, so shifted views of one padded buffer
feed the GEMM without any copy and products accumulate in place.

``gemm(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, m, n, k, beta, trans_b=False,
trans_a=False)`` computes, in row-major terms, ``C[m, n] = A[m, k] @ B[k, n] (+ beta C)``
where each matrix lives in a flat contiguous array at an element offset with a row
stride (``B`` read as ``B[n, k]`` transposed when ``trans_b``, ``A`` as ``A[k, m]`` when
``trans_a``). Every access is bounds-checked before the call.
``a``, ``b`` and ``c`` may be ``buffer(array)``: an array's size and address read once,
for the many calls of a loop (a call then costs about 2 us of Python, not 6).
"""

from __future__ import annotations

import ctypes
from typing import NamedTuple

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


class Buffer(NamedTuple):
    """A flat contiguous array as ``gemm`` reads it: its size, address and dtype, read once."""

    array: np.ndarray
    size: int
    address: int
    itemsize: int
    char: str


def buffer(array: np.ndarray) -> Buffer:
    """``array`` (C-contiguous) prepared for many ``gemm`` calls."""
    if not array.flags.c_contiguous:
        raise ValueError("BLAS operand: not a contiguous buffer")
    return Buffer(array, array.size, array.ctypes.data, array.itemsize, array.dtype.char)


def _func(char: str):
    """(kind, function) of ?gemm for a dtype's char: cblas with its argument types set
    (ctypes converts plain ints and floats), or SciPy's Fortran one."""
    got = _FUNCS.get(char)
    if got is None:
        prefix = {"f": "s", "d": "d"}[char]
        found = _numpy_cblas(prefix)
        if found:
            func, i = found
            scalar = ctypes.c_float if prefix == "s" else ctypes.c_double
            enum, ptr = ctypes.c_int, ctypes.c_void_p
            func.argtypes = [enum, enum, enum, i, i, i, scalar, ptr, i, ptr, i, scalar, ptr, i]
            got = ("cblas", func)
        else:
            got = ("fortran", _scipy_blas(prefix))
        _FUNCS[char] = got
    return got


def gemm_address(dtype) -> int | None:
    """The address of NumPy's OpenBLAS ``cblas_?gemm`` with int64 sizes for ``dtype``
    (float32 or float64), for compiled callers (``_gemm_jobs``); None where that BLAS
    was not found or takes 32-bit sizes (the callers then run their Python loops)."""
    kind, func = _func(np.dtype(dtype).char)
    if kind != "cblas" or func.argtypes[3] is not ctypes.c_int64:
        return None
    return ctypes.cast(func, ctypes.c_void_p).value


def supported(dtype) -> bool:
    return np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))


def _check(size: int, offset: int, rows: int, cols: int, ld: int, label: str) -> None:
    if cols > ld:
        raise ValueError(f"BLAS operand {label}: ld {ld} < its {cols} columns")
    last = offset + (rows - 1) * ld + cols - 1
    if offset < 0 or last >= size:
        raise IndexError(f"BLAS operand {label} out of bounds: {offset}..{last} of {size}")


def gemm(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, m, n, k, beta, trans_b=False, trans_a=False):
    """Row-major C[m, n] = op(A) @ op(B) + beta * C on flat contiguous buffers (arrays,
    or ``buffer``s of them)."""
    if m <= 0 or n <= 0:
        return
    a = a if type(a) is Buffer else buffer(a)
    b = b if type(b) is Buffer else buffer(b)
    c = c if type(c) is Buffer else buffer(c)
    # each operand as stored: (rows, columns); a single row may have any stride, BLAS
    # still wants ld >= its row length
    rows_a, cols_a = (k, m) if trans_a else (m, k)
    rows_b, cols_b = (n, k) if trans_b else (k, n)
    lda = max(lda, cols_a) if rows_a == 1 else lda
    ldb = max(ldb, cols_b) if rows_b == 1 else ldb
    ldc = max(ldc, n) if m == 1 else ldc
    if not (a.char == b.char == c.char and c.array.flags.writeable):
        raise ValueError("BLAS operands: one dtype, and a writeable C")
    _check(a.size, a_off, rows_a, cols_a, lda, "A")
    _check(b.size, b_off, rows_b, cols_b, ldb, "B")
    _check(c.size, c_off, m, n, ldc, "C")
    kind, func = _func(c.char)
    isz = c.itemsize
    pa, pb, pc = a.address + a_off * isz, b.address + b_off * isz, c.address + c_off * isz
    if kind == "cblas":
        op_a, op_b = (TRANS if t else NO_TRANS for t in (trans_a, trans_b))
        func(ROW_MAJOR, op_a, op_b, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc)
        return
    scalar = ctypes.c_float if c.char == "f" else ctypes.c_double
    one, beta_ = scalar(1.0), scalar(beta)
    # column-major: C^T[n, m] = op(B)^T[n, k] @ A^T[k, m]
    func(
        b"T" if trans_b else b"N",
        b"T" if trans_a else b"N",
        ctypes.byref(ctypes.c_int(n)),
        ctypes.byref(ctypes.c_int(m)),
        ctypes.byref(ctypes.c_int(k)),
        ctypes.byref(one),
        ctypes.c_void_p(pb),
        ctypes.byref(ctypes.c_int(ldb)),
        ctypes.c_void_p(pa),
        ctypes.byref(ctypes.c_int(lda)),
        ctypes.byref(beta_),
        ctypes.c_void_p(pc),
        ctypes.byref(ctypes.c_int(ldc)),
    )

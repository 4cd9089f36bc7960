"""Whether and how ``phase`` and ``implicit`` run a job as one compiled call.

The compiled jobs (``_gemm_jobs``, numba, imported on first use) call NumPy's OpenBLAS
through its int64 ``cblas_?gemm``. Where that is missing, where the result's dtype is not
the compute dtype (float16 results), or while ``ENABLED`` is False (tests compare both),
the algorithms run the same job as a Python loop of BLAS calls and NumPy copies.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _blas
from ._compiled import as_3d, flat_view, lazy_kernel, unit_rows

ENABLED = True  # False: every job runs its Python loop
# a compiled job's Python (views, workspaces, the call's arguments: about 15 us), in
# calls of _boxes.CALL_FLOPS: what bounds the boxes a call is cut into
JOB_CALLS = 3


@functools.cache
def address(dtype) -> int | None:
    """The int64 ``cblas_?gemm`` for ``dtype`` (see ``_blas.gemm_address``)."""
    return _blas.gemm_address(dtype)


def available() -> bool:
    """Whether jobs can run compiled at all (float32 shown for both dtypes: one BLAS)."""
    return ENABLED and address(np.dtype(np.float32)) is not None


@lazy_kernel
def loops(numba):
    """The module of the compiled jobs and their loops (``_gemm_jobs``), imported on first
    use; its loops compile on their first call (the Python jobs use ``shifted_sum``)."""
    from . import _gemm_jobs

    return _gemm_jobs


def kernels(compute: np.dtype, result: np.dtype):
    """The compiled jobs' module for a job computing in ``compute`` into a ``result`` of
    that dtype, or None (then the job runs its Python loop)."""
    if compute != result or compute.char not in "fd" or not available():
        return None
    return loops()


def source(lhs: np.ndarray, compute: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """lhs (G, B, C, *S) as the compiled jobs read it: in ``compute``, its spatial dims
    padded in front to three, a read-only flat view and element strides."""
    part = unit_rows(lhs.astype(compute, copy=False))
    return flat_view(part.reshape(*part.shape[:3], *as_3d(part.shape[3:], 1)), writeable=False)


def target(result: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A part of the result (G, B, O, *S_out) as the compiled jobs write it (see source)."""
    shaped = result.reshape(*result.shape[:3], *as_3d(result.shape[3:], 1))
    return flat_view(shaped, writeable=True)


def vector(values, fill: int) -> np.ndarray:
    """A per-dim tuple as the int64 array of three the compiled jobs take."""
    return np.array(as_3d(tuple(values), fill), dtype=np.int64)


def read_only_int64(values) -> np.ndarray:
    """values as a read-only int64 array (memoised plans: shared by every job)."""
    out = np.array(values, dtype=np.int64)
    out.flags.writeable = False
    return out


def check(status: int, algorithm: str) -> None:
    """Raise where a compiled job found a BLAS operand out of its buffer (a bug)."""
    if status:
        raise IndexError(f"{algorithm}: a BLAS operand out of bounds in a compiled job")

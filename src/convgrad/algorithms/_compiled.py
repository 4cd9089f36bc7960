"""Compiled loops: numba, imported and compiled on first use only, cached on disk.

``import convgrad`` never imports numba; an algorithm's kernel is built the first time
it runs (compiled once per dtype, then loaded from numba's cache).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable

# parallel loops over independent jobs, no Python error checks in the hot path
JIT_OPTIONS = {"parallel": True, "cache": True, "nogil": True, "error_model": "numpy"}


@functools.cache
def threadsafe_layer() -> bool:
    """Whether numba has a threading layer that takes parallel loops from several threads
    at once (OpenMP or TBB). Without one it falls back to 'workqueue', which aborts the
    process on concurrent launches (dask's threads): the loops are then compiled serial."""
    import numba

    if numba.config.THREADING_LAYER == "workqueue":  # chosen by the user
        return False
    for module in ("numba.np.ufunc.omppool", "numba.np.ufunc.tbbpool"):
        try:
            importlib.import_module(module)
            return True
        except ImportError:
            continue
    return False


def lazy_kernel(build: Callable) -> Callable[[], Callable]:
    """Decorator: ``build(numba)`` returns a jitted kernel; the decorated function returns
    it, built on the first call."""

    @functools.cache
    def kernel():
        # GNU OpenMP threads spin for a while after a parallel loop by default and steal the
        # cores from the BLAS call that follows (6x slower GEMMs measured); waiting passively
        # avoids that. It must be set before numba starts its OpenMP pool; a user's own
        # setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import numba

        JIT_OPTIONS["parallel"] = threadsafe_layer()
        return build(numba)

    return kernel


SERIAL_FLOPS = 4e6  # below this, waking the worker threads (50-100 us) costs more than they save


def launch(kernel: Callable, flops: float, *args):
    """``kernel(*args)``, on the calling thread alone when its work is under SERIAL_FLOPS
    (numba's thread count is per calling thread, so other threads are unaffected)."""
    if flops >= SERIAL_FLOPS:
        return kernel(*args)
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(previous)

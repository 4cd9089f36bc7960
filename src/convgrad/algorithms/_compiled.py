"""Compiled loops: numba, imported and compiled on first use only, cached on disk.

``import convgrad`` never imports numba; an algorithm's kernel is built the first time
it runs (compiled once per dtype, then loaded from numba's cache). Every kernel is a
serial ``nogil`` loop over a range of independent jobs ``(start, stop)``; ``launch``
splits the jobs into one range per core and runs them on convgrad's job pool
(``_process.jobs``), side by side. No numba threading layer (OpenMP, TBB, workqueue) is
ever started: the loops are fork-safe and thread-safe by construction, and the compiled
code does not depend on the process's numba settings (one cache entry per dtype).

The loops take arrays as flat views with element strides (``flat_view``), inputs
read-only (one argument type per dtype), 1-D and 2-D work as 3-D (``as_3d``), and the
correlation's parameters as int64 arrays (``loop_params``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import _process
from .._rules import Correlation

# serial loops (parallel over jobs on the pool), no Python error checks in the hot path
JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}


@functools.cache
def _notice_compiles() -> None:
    """Print the compile notice when numba starts compiling one of convgrad's kernels (a
    load from the disk cache is no compile and prints nothing)."""
    from numba.core import event

    class CompileListener(event.Listener):
        def on_start(self, ev):
            dispatcher = (ev.data or {}).get("dispatcher")
            module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
            if module.startswith("convgrad."):
                _process.compile_notice.compiling()

        def on_end(self, ev):
            pass

    event.register("numba:compile", CompileListener())


def lazy_kernel(build: Callable) -> Callable[[], Callable]:
    """Decorator: ``build(numba)`` returns a jitted kernel; the decorated function returns
    it, built on the first call."""

    @functools.cache
    def kernel():
        import numba

        _notice_compiles()
        return build(numba)

    return kernel


@functools.cache
def copy_run() -> tuple[Callable, str]:
    """(``copy(dst, at, src, start, count)``, stamp): a compiled
    ``dst[at : at + count] = src[start : start + count]`` on 1-D arrays, for kernels to call
    on short runs (rows). A loop in a function of its own vectorises where the same loop
    inside a large kernel does not: a grouped 3x3 forward pass ran 30 % faster with it.

    A kernel calls it as a global of its own module, bound before the kernel compiles
    (a closure would make numba's cache key differ in every process). numba keys its disk
    cache by the kernel's own bytecode and closure only, so a kernel also holds ``stamp``
    (a hash of this source) in its closure: a change here recompiles the callers."""
    import hashlib
    import inspect

    import numba

    @numba.njit(nogil=True, error_model="numpy")  # compiled into each caller, not cached
    def copy(dst, at, src, start, count):
        into = dst[at : at + count]
        part = src[start : start + count]
        for j in range(count):
            into[j] = part[j]

    stamp = hashlib.sha256(inspect.getsource(copy_run).encode()).hexdigest()[:16]
    return copy, stamp


BALANCE = 2  # ranges per thread: a thread that starts late takes fewer


def launch(kernel: Callable, count: int, *args) -> None:
    """``kernel(start, stop, *args)`` over the jobs ``range(count)``: BALANCE contiguous
    ranges per thread (``_process.jobs.workers``: one for a call under
    ``_process.SERIAL_WORK``), taken in turn."""
    parts = _process.jobs.workers(count)
    if parts <= 1:
        kernel(0, count, *args)
        return
    ranges = _process.split_range(count, BALANCE * parts)  # taken in turn: balanced
    _process.jobs.run(lambda r: kernel(r[0], r[1], *args), ranges, blas=False)


# ---------------------------------------------------------- arrays as the loops take them


def as_3d(shape: tuple[int, ...], fill: int) -> tuple[int, ...]:
    """Spatial dims padded in front to three (compiled loops run 1-D and 2-D as 3-D)."""
    return (fill,) * (3 - len(shape)) + tuple(shape)


def flat_view(a: np.ndarray, writeable: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(1-D view from a's first element, element strides of all but the last axis), for
    compiled loops that index by hand; a's strides must be non-negative, the last unit.
    Inputs pass ``writeable=False``: numba compiles one kernel per argument type, and a
    read-only array is another type (one specialisation per dtype, not two)."""
    isz = a.itemsize
    writeable = a.flags.writeable if writeable is None else writeable and a.flags.writeable
    if a.flags.c_contiguous and a.size:  # a plain view (as_strided costs a few us)
        flat = a.reshape(-1)
        if not writeable:
            flat = flat.view()
            flat.flags.writeable = False
    else:
        span = sum((n - 1) * s for n, s in zip(a.shape, a.strides)) // isz + 1
        flat = as_strided(a, shape=(span,), strides=(isz,), writeable=writeable)
    return flat, np.array([s // isz for s in a.strides[:-1]], dtype=np.int64)


def read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of a (compiled loops' inputs: one argument type, see flat_view)."""
    view = a.view()
    view.flags.writeable = False
    return view


def loop_params(corr: Correlation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low padding, lhs dilation, rhs dilation) per spatial dim, padded in front to three,
    as the int64 arrays the compiled loops take."""
    lows = tuple(lo for lo, _ in corr.padding)
    return tuple(
        np.array(as_3d(tuple(v), fill), dtype=np.int64)
        for v, fill in ((lows, 0), (corr.lhs_dilation, 1), (corr.rhs_dilation, 1))
    )


def unit_rows(a: np.ndarray) -> np.ndarray:
    """a itself if flat_view can index it, else a contiguous copy."""
    if any(s < 0 for s in a.strides) or a.strides[-1] != a.itemsize:
        return np.ascontiguousarray(a)
    return a

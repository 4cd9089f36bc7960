"""Compiled loops: numba, imported and compiled on first use only, cached on disk.

``import convgrad`` never imports numba; an algorithm's kernel is built the first time
it runs (compiled once per dtype, then loaded from numba's cache). Every kernel is a
serial ``nogil`` loop over a range of independent jobs ``(start, stop)``; ``launch``
splits the jobs into one range per core and runs them on convgrad's job pool
(``_process.jobs``), side by side. No numba threading layer (OpenMP, TBB, workqueue) is
ever started: the loops are fork-safe and thread-safe by construction, and the compiled
code does not depend on the process's numba settings (one cache entry per dtype).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from .. import _process

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


BALANCE = 4  # ranges per thread: a thread that starts late takes fewer
SERIAL_FLOPS = 4e6  # below this, handing jobs to the pool (~50 us) costs more than it saves


def launch(kernel: Callable, flops: float, count: int, *args) -> None:
    """``kernel(start, stop, *args)`` over the jobs ``range(count)``: BALANCE contiguous
    ranges per thread (``_process.jobs.workers``), taken in turn, or all on the calling
    thread when the work is under SERIAL_FLOPS."""
    parts = 1 if flops < SERIAL_FLOPS else _process.jobs.workers(count)
    if parts <= 1:
        kernel(0, count, *args)
        return
    ranges = _process.split_range(count, BALANCE * parts)  # taken in turn: balanced
    _process.jobs.run(lambda r: kernel(r[0], r[1], *args), ranges, blas=False)

"""Workspaces of the algorithms: reused per-thread buffers, and how a limit splits work.

The buffers themselves (kept per thread, up to ``_process.KEEP_BYTES`` for all threads)
live in ``convgrad._process.workspaces``; this module is how algorithms use them.
"""

from __future__ import annotations

import numpy as np

from .._process import workspaces


def scratch(slot: str, size: int, dtype) -> np.ndarray:
    """A flat workspace of ``size`` elements, reused between calls of this thread.

    Fresh large buffers cost a page fault per 4 KiB on first touch, on every call (about a
    third of a big weight gradient's time); workspaces are therefore kept per thread (so
    concurrent dask threads never share one) and reused, up to ``_process.KEEP_BYTES`` for
    all threads together; a new buffer evicts this thread's least recently used ones to
    fit (the layer that runs now is the one likely to run again; a buffer still in use
    stays valid through its views). ``slot`` names one live buffer of an algorithm: two
    buffers in use at once need two slots. Contents are undefined; never return a
    workspace (or a view of it) as a result.
    """
    return workspaces.get(slot, size, dtype)


def laid_out(slot: str, a: np.ndarray, dtype) -> np.ndarray:
    """a copied C-contiguous, as ``dtype``, into this thread's reused workspace ``slot``
    (filters re-laid for BLAS: a fresh copy of a few MiB each call costs page faults and
    unmapping; measured 3x3-14 winograd 12 -> 8 ms). Read-only use by jobs is fine."""
    out = scratch(slot, a.size, dtype).reshape(a.shape)
    np.copyto(out, a, casting="unsafe")
    return out


def unaliased(length: int, itemsize: int) -> int:
    """A row stride for rows of ``length`` items: ``length``, or 16 items more where the
    rows would lie a multiple of 1 KiB apart. Rows that far apart hit the same cache sets
    as they are copied into and packed by BLAS (4K aliasing; measured on blocked_dw's
    columns: 1 run in 6 took 35 instead of 14 ms, depending on where the buffers landed)."""
    return length + (16 if (length * itemsize) % 1024 == 0 else 0)


SMALL_COPY = 64 * 1024  # a copy of the rhs this small is made whatever the limit


def kernel_share(nbytes: int, limit: int) -> int | None:
    """The workspace limit left once a laid-out copy of the rhs (``nbytes``) is counted
    against it, or None where that copy would take more than half the limit (and more
    than SMALL_COPY): the caller then hands the correlation to ``gemm``, which lays the
    rhs out chunk by chunk (a weight gradient's rhs is the whole grad_output)."""
    return max(1, limit - nbytes) if nbytes <= max(limit // 2, SMALL_COPY) else None


def chunk(total: int, per_item: int, budget: int) -> int:
    """How many items (>= 1) of ``per_item`` bytes fit in ``budget`` bytes."""
    return max(1, min(total, budget // max(per_item, 1)))

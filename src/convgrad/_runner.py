"""The one runner: a :class:`~convgrad._rules.Step` run on the caller's arrays.

``run`` lays each operand out as its step says (padded in the padding mode, groups first,
swapped, flipped: views wherever NumPy allows), calls the primitive, and maps the output
back to the user's layout. Every pass of every public function goes through it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from . import _process
from ._padding import pad, pad_adjoint
from ._primitive import correlate
from ._rules import Operand, Step
from .algorithms._workspace import scratch


def groups_first(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, G*C, *S) -> (G, N, C, *S), a view."""
    n, gc = a.shape[:2]
    return a.reshape(n, groups, gc // groups, *a.shape[2:]).swapaxes(0, 1)


def groups_merged(a: np.ndarray) -> np.ndarray:
    """(G, N, C, *S) -> (N, G*C, *S)."""
    g, n, c = a.shape[:3]
    return a.swapaxes(0, 1).reshape(n, g * c, *a.shape[3:])


def operand(step: Step, op: Operand, array: np.ndarray) -> np.ndarray:
    """``array`` (data (N, C, *S), batched, or weight (K, C/g, *k)) laid out as ``op`` of
    ``step``: (G, B, C, *S) or (G, O, C, *K)."""
    g = step.groups
    if op.padded:  # into this thread's reused buffer: a fresh one costs its page faults
        lead = array.shape[: array.ndim - len(step.pads)]
        sizes = array.shape[len(lead) :]
        shape = (*lead, *(n + lo + hi for n, (lo, hi) in zip(sizes, step.pads)))
        out = scratch(f"padded-{op.source}", math.prod(shape), array.dtype).reshape(shape)
        array = _padded(array, step, out)
    if op.is_weight:
        array = array.reshape(g, array.shape[0] // g, *array.shape[1:])
    else:
        array = groups_first(array, g)
    if op.swap:
        array = array.swapaxes(1, 2)
    if op.flip:
        array = np.flip(array, axis=tuple(range(3, array.ndim)))
    return array


PARALLEL_PAD_BYTES = 2**20  # a padded copy this large is split over the pool by its first axis


def _padded(array: np.ndarray, step: Step, out: np.ndarray) -> np.ndarray:
    """``array`` padded in the step's mode into ``out``: a copy through memory, so a large
    one is cut along its first axis into one job per core (the copy of a reflect-padded
    3x3-56 input took 1.1 ms of the 4.7 ms forward pass on one thread)."""
    parts = _process.jobs.workers(array.shape[0]) if out.nbytes >= PARALLEL_PAD_BYTES else 1
    if parts <= 1:
        return pad(array, step.pads, step.padding_mode, out)
    ranges = _process.split_range(array.shape[0], parts)
    _process.jobs.run(
        lambda r: pad(array[r[0] : r[1]], step.pads, step.padding_mode, out[r[0] : r[1]]),
        ranges,
        blas=False,
    )
    return out


def mapped_back(step: Step, out: np.ndarray) -> np.ndarray:
    """The correlation's output (G, B, O, *S') as ``step``'s result in the user's layout
    (batched: (N, C, *S), or the weight's (K, C/g, *k))."""
    result = step.result
    if result.swap:
        out = out.swapaxes(1, 2)
    if result.is_weight:
        return out.reshape(result.shape)
    out = groups_merged(out)
    if result.crop is not None:
        out = out[(Ellipsis, *(slice(0, n) for n in result.crop))]
    if result.folded:
        out = pad_adjoint(out, step.pads, step.padding_mode)
    return out


def run(
    step: Step,
    arrays: Mapping[str, np.ndarray],
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> np.ndarray:
    """``step`` on ``arrays`` (by argument name: x and grad_output batched (N, C, *S),
    weight (K, C/g, *k)) -> its result, batched."""
    lhs = operand(step, step.lhs, arrays[step.lhs.source])
    rhs = operand(step, step.rhs, arrays[step.rhs.source])
    out = correlate(lhs, rhs, step.corr, algorithm=algorithm, workspace_limit=workspace_limit)
    return mapped_back(step, out)

"""The one primitive: a generalised dilated cross-correlation, batched over groups.

    out[g, b, o, i] = sum_{c, j} pad(dilate(lhs))[g, b, c, i*ws + j*rd] * rhs[g, o, c, j]

with lhs (G, B, C, *S), rhs (G, O, C, *K), out (G, B, O, *S'). Forward, input and
weight gradients and transposed convolution are all calls of it (see ``_rules``).
Which algorithm computes it is the planner's choice (``_plan``) unless named.

Padding and the zeros of lhs dilation are not samples: an inf or NaN in either operand
reaches exactly the outputs whose windows meet it on a sample. Every algorithm keeps that
for the lhs; where one would multiply those zeros by a non-finite rhs, ``correlate``
computes the correlation exactly instead (``algorithms.exact``).
"""

from __future__ import annotations

import functools

import numpy as np

from . import _plan, _process
from ._rules import Correlation
from .algorithms import REGISTRY, exact
from .algorithms._dtypes import all_finite
from .algorithms._geometry import prod

MODES = ("auto", "autotune")


def algorithm_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def check_algorithm(algorithm) -> str:
    if algorithm not in MODES and algorithm not in REGISTRY:
        raise ValueError(
            f"algorithm must be 'auto', 'autotune' or one of {tuple(REGISTRY)}, got {algorithm!r}"
        )
    return algorithm


def choose(lhs_shape, rhs_shape, corr: Correlation, itemsize: int, limit: int | None = None) -> str:
    """The algorithm 'auto' picks for this correlation (under the workspace ``limit``,
    default the one in force)."""
    return _plan.choose(lhs_shape, rhs_shape, corr, itemsize, limit=limit)


def correlate(
    lhs: np.ndarray,
    rhs: np.ndarray,
    corr: Correlation,
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> np.ndarray:
    """lhs (G, B, C, *S) ⋆ rhs (G, O, C, *K) -> (G, B, O, *S'). A call whose work is under
    ``_process.SERIAL_WORK`` runs its jobs on the calling thread (and is planned so)."""
    limit = _plan.get_workspace_limit() if workspace_limit is None else int(workspace_limit)
    check_algorithm(algorithm)
    with _process.jobs.serial(dense_flops(lhs.shape, rhs.shape, corr) < _process.SERIAL_WORK):
        return _correlate(lhs, rhs, corr, algorithm, limit)


def dense_flops(lhs_shape, rhs_shape, corr: Correlation) -> float:
    """2 x the multiply-adds of the correlation, inserted zeros and padding included."""
    g, b, c = lhs_shape[:3]
    outputs = prod(corr.output_spatial(lhs_shape[3:], rhs_shape[3:]))
    return 2.0 * g * b * c * rhs_shape[1] * prod(rhs_shape[3:]) * outputs


def _correlate(lhs, rhs, corr: Correlation, algorithm: str, limit: int) -> np.ndarray:
    if algorithm == "autotune":
        algorithm, result, _ = _plan.autotune(lhs, rhs, corr, limit)
        if result is not None:
            _plan.record(algorithm)
            return _exact_if_needed(algorithm, lhs, rhs, corr, limit, result)
    elif algorithm == "auto":
        algorithm = _ready_choice(lhs, rhs, corr, limit)
    if not _supported(algorithm, lhs.shape, rhs.shape, corr):
        raise ValueError(f"algorithm {algorithm!r} does not support this correlation: {corr}")
    _plan.record(algorithm)
    return _exact_if_needed(algorithm, lhs, rhs, corr, limit)


@functools.lru_cache(maxsize=1024)
def _supported(algorithm: str, lhs_shape, rhs_shape, corr: Correlation) -> bool:
    """``REGISTRY[algorithm].supports(...)``, memoised (a pure function of the shapes)."""
    return REGISTRY[algorithm].supports(lhs_shape, rhs_shape, corr)


def _build_key(algorithm: str, lhs, rhs, corr: Correlation, dtype: np.dtype):
    """The key of the compiled kernel ``algorithm`` would run here in ``dtype``, or None if
    it runs none (``compiled_variant``, where a module defines it)."""
    variant = getattr(REGISTRY[algorithm], "compiled_variant", None)
    if variant is None:
        return None
    kind = variant(lhs.shape, rhs.shape, corr)
    if kind is None:
        return None
    return (algorithm, kind, dtype.str)


def _ready_choice(lhs, rhs, corr: Correlation, limit: int) -> str:
    """'auto''s algorithm: the planner's choice, or, while its compiled kernel is still
    being built in the background (first use in a process), the planner's best among
    the algorithms that need no build, so that no call waits for a compile."""
    dtype = np.result_type(lhs, rhs)
    name = choose(lhs.shape, rhs.shape, corr, dtype.itemsize, limit)
    key = _build_key(name, lhs, rhs, corr, dtype)
    if key is None or _process.kernel_builds.ready(key) or lhs.size == 0 or rhs.size == 0:
        return name
    # the build runs the algorithm on a zero input of one group and one image: the same
    # kernel variant and dtype, a fraction of the work
    small_lhs = np.zeros((1, 1, *lhs.shape[2:]), dtype=lhs.dtype)
    small_rhs = np.zeros((1, *rhs.shape[1:]), dtype=rhs.dtype)
    impl = REGISTRY[name]

    def build():  # one image of zeros: on the building thread, no jobs for the pool
        with _process.jobs.serial():
            impl.run(small_lhs, small_rhs, corr, limit)

    if _process.kernel_builds.start(key, build):
        return name
    avoid = frozenset(
        other
        for other in _plan.candidates(lhs.shape, rhs.shape, corr)
        if (k := _build_key(other, lhs, rhs, corr, dtype)) is not None
        and not _process.kernel_builds.ready(k)
    )
    return _plan.choose(lhs.shape, rhs.shape, corr, dtype.itemsize, avoid=avoid, limit=limit)


def only_samples(algorithm: str, corr: Correlation) -> bool:
    """Whether ``algorithm`` multiplies the rhs by lhs samples only: no padding, no lhs
    dilation (gemm's, implicit's and the others' zeros are then never read), and not
    Winograd (``MIXES_TAPS``: its transforms mix every tap of a tile)."""
    return (
        not getattr(REGISTRY[algorithm], "MIXES_TAPS", False)
        and all(ld == 1 for ld in corr.lhs_dilation)
        and all(lo <= 0 and hi <= 0 for lo, hi in corr.padding)
    )


def _exact_if_needed(algorithm, lhs, rhs, corr: Correlation, limit: int, result=None):
    """``algorithm``'s result (``result`` if already computed), or the exact one where an
    inf or NaN in the rhs would meet padding or inserted zeros. Checked on the smaller
    side: the rhs (filters) before running, or the result (a weight gradient's, small)
    after it, and then the rhs only if the result is not finite."""
    impl = REGISTRY[algorithm]
    if only_samples(algorithm, corr):
        return impl.run(lhs, rhs, corr, limit) if result is None else result
    outputs = lhs.shape[0] * lhs.shape[1] * rhs.shape[1]
    outputs *= prod(corr.output_spatial(lhs.shape[3:], rhs.shape[3:]))
    if result is None and rhs.size <= outputs:
        if not all_finite(rhs):
            return exact.run(lhs, rhs, corr, limit)
        return impl.run(lhs, rhs, corr, limit)
    if result is None:
        result = impl.run(lhs, rhs, corr, limit)
    if all_finite(result) or all_finite(rhs):  # a finite result met no inf/NaN at all
        return result
    return exact.run(lhs, rhs, corr, limit)

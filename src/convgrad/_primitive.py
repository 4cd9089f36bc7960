"""The one primitive: a generalised dilated cross-correlation, batched over groups.

    out[g, b, o, i] = sum_{c, j} pad(dilate(lhs))[g, b, c, i*ws + j*rd] * rhs[g, o, c, j]

with lhs (G, B, C, *S), rhs (G, O, C, *K), out (G, B, O, *S'). Forward, input and
weight gradients and transposed convolution are all calls of it (see ``_rules``).
Which algorithm computes it is the planner's choice (``_plan``) unless named.
"""

from __future__ import annotations

import numpy as np

from . import _plan
from ._plan import DEFAULT_WORKSPACE_LIMIT  # noqa: F401 - kept for callers
from ._rules import Correlation
from .algorithms import REGISTRY

MODES = ("auto", "autotune")


def algorithm_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def check_algorithm(algorithm) -> str:
    if algorithm not in MODES and algorithm not in REGISTRY:
        raise ValueError(
            f"algorithm must be 'auto', 'autotune' or one of {tuple(REGISTRY)}, got {algorithm!r}"
        )
    return algorithm


def choose(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> str:
    """The algorithm 'auto' picks for this correlation."""
    return _plan.choose(lhs_shape, rhs_shape, corr, itemsize)


def correlate(
    lhs: np.ndarray,
    rhs: np.ndarray,
    corr: Correlation,
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> np.ndarray:
    """lhs (G, B, C, *S) ⋆ rhs (G, O, C, *K) -> (G, B, O, *S')."""
    limit = _plan.get_workspace_limit() if workspace_limit is None else int(workspace_limit)
    check_algorithm(algorithm)
    if algorithm == "autotune":
        algorithm, result = _plan.autotune(lhs, rhs, corr, limit)
        if result is not None:
            _plan.record(algorithm)
            return result
    elif algorithm == "auto":
        algorithm = choose(lhs.shape, rhs.shape, corr, np.result_type(lhs, rhs).itemsize)
    impl = REGISTRY[algorithm]
    if not impl.supports(lhs.shape, rhs.shape, corr):
        raise ValueError(f"algorithm {algorithm!r} does not support this correlation: {corr}")
    _plan.record(algorithm)
    return impl.run(lhs, rhs, corr, limit)

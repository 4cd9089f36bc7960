"""The one primitive: a generalised dilated cross-correlation, batched over groups.

    out[g, b, o, i] = sum_{c, j} pad(dilate(lhs))[g, b, c, i*ws + j*rd] * rhs[g, o, c, j]

with lhs (G, B, C, *S), rhs (G, O, C, *K), out (G, B, O, *S'). Forward, input and
weight gradients and transposed convolution are all calls of it (see ``_rules``).
"""

from __future__ import annotations

import numpy as np

from ._rules import Correlation
from .algorithms import REGISTRY

DEFAULT_WORKSPACE_LIMIT = 256 * 2**20


def algorithm_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def check_algorithm(algorithm) -> str:
    if algorithm != "auto" and algorithm not in REGISTRY:
        raise ValueError(f"algorithm must be 'auto' or one of {tuple(REGISTRY)}, got {algorithm!r}")
    return algorithm


def choose(lhs_shape, rhs_shape, corr: Correlation, itemsize: int) -> str:
    """The algorithm 'auto' picks for this correlation."""
    return "gemm"


def correlate(
    lhs: np.ndarray,
    rhs: np.ndarray,
    corr: Correlation,
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> np.ndarray:
    """lhs (G, B, C, *S) ⋆ rhs (G, O, C, *K) -> (G, B, O, *S')."""
    limit = DEFAULT_WORKSPACE_LIMIT if workspace_limit is None else int(workspace_limit)
    if algorithm == "auto":
        algorithm = choose(lhs.shape, rhs.shape, corr, lhs.itemsize)
    impl = REGISTRY[algorithm]
    if not impl.supports(lhs.shape, rhs.shape, corr):
        raise ValueError(f"algorithm {algorithm!r} does not support this correlation: {corr}")
    return impl.run(lhs, rhs, corr, limit)

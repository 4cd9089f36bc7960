"""Correlation algorithms, each a module with the same ``supports / workspace_bytes /
counts / run``.

``run(lhs (G, B, C, *S), rhs (G, O, C, *K), corr, workspace_limit) -> (G, B, O, *S')``.
"""

from __future__ import annotations

from . import (
    blocked_dw,
    direct,
    fft,
    gemm,
    implicit,
    implicit_dw,
    phase,
    winograd,
    winograd4,
    winograd_dw,
)

REGISTRY = {
    module.name: module
    for module in (
        gemm,
        implicit,
        implicit_dw,
        blocked_dw,
        phase,
        direct,
        winograd,
        winograd4,
        winograd_dw,
        fft,
    )
}

"""What several test modules share: the primitive's definition evaluated directly, the
configurations more than one module runs, and the correlations of real passes.

``direct_correlation`` is the float64 oracle every algorithm is checked against;
``pass_cases`` turns forward convolutions into the correlations their three passes run
(read from ``convgrad._rules``, so the tests type no operand shapes of their own).
"""

from __future__ import annotations

import itertools

import numpy as np

from convgrad import _rules
from convgrad._rules import Correlation
from convgrad._spec import conv_spec


def _real_samples(j, size, n, ws, rd, ld, lo):
    """(output slice, lhs slice) of one dim: the outputs i whose tap j lands on a real lhs
    sample (not padding, not an inserted zero), and those samples; None if there are none."""
    hits = [
        (i, (i * ws + j * rd - lo) // ld)
        for i in range(n)
        if (i * ws + j * rd - lo) % ld == 0 and 0 <= (i * ws + j * rd - lo) // ld < size
    ]
    if not hits:
        return None
    (i0, p0), (i1, p1) = hits[0], hits[-1]
    step = hits[1][0] - i0 if len(hits) > 1 else 1
    out, src = slice(i0, i1 + 1, step), slice(p0, p1 + 1, max(1, step * ws // ld))
    assert [i for i, _ in hits] == list(range(n)[out]) and [p for _, p in hits] == list(
        range(size)[src]
    )
    return out, src


def direct_correlation(lhs: np.ndarray, rhs: np.ndarray, corr: Correlation) -> np.ndarray:
    """The primitive's definition evaluated in float64, tap by tap, over real samples only:
    padding and inserted zeros contribute nothing (they are never multiplied, so an inf or
    NaN reaches exactly the outputs whose windows put it on a sample)."""
    lhs, rhs = lhs.astype(np.float64), rhs.astype(np.float64)
    nd = rhs.ndim - 3
    out_spatial = corr.output_spatial(lhs.shape[3:], rhs.shape[3:])
    out = np.zeros((lhs.shape[0], lhs.shape[1], rhs.shape[1], *out_spatial))
    for tap in itertools.product(*(range(k) for k in rhs.shape[3:])):
        dims = [
            _real_samples(j, size, n, ws, rd, ld, lo)
            for j, size, n, ws, rd, ld, (lo, _) in zip(
                tap, lhs.shape[3:], out_spatial, corr.window_strides, corr.rhs_dilation,
                corr.lhs_dilation, corr.padding,
            )
        ]  # fmt: skip
        if None in dims:
            continue
        window = lhs[(Ellipsis, *(src for _, src in dims))]
        out[(Ellipsis, *(dst for dst, _ in dims))] += np.einsum(
            "gbc...,goc->gbo...", window, rhs[(Ellipsis, *tap)]
        )
    assert out.ndim == 3 + nd
    return out


# ------------------------------------------------------- correlations of real passes

PASS_PREFIX = {"forward": "fwd", "input_grad": "dx", "weight_grad": "dw"}


def pass_cases(convs) -> list[tuple]:
    """(name, lhs_shape, rhs_shape, corr) of each pass of each (input_shape, weight_shape,
    options) forward convolution, named 'fwd3', 'dx3', 'dw3' for the fourth."""
    cases = []
    for index, (x_shape, w_shape, options) in enumerate(convs):
        for step in _rules.steps(conv_spec(x_shape, w_shape, **options)).values():
            name = f"{PASS_PREFIX[step.name]}{index}"
            cases.append((name, step.lhs_shape, step.rhs_shape, step.corr))
    return cases


# ---------------------------------------------------------- public-function configurations

# (input shape, weight shape, options): every option, alone and combined
CASES = [
    ((2, 3, 11), (4, 3, 3), dict()),
    ((2, 3, 11), (4, 3, 3), dict(stride=2, padding=1)),
    ((2, 4, 13), (6, 2, 4), dict(stride=3, dilation=2, groups=2, padding=((2, 0),))),
    ((1, 3, 10), (3, 1, 3), dict(groups=3, padding="same")),
    ((2, 3, 10), (2, 3, 4), dict(padding="same", stride=3)),
    ((2, 3, 9), (4, 3, 3), dict(padding=2, padding_mode="reflect")),
    ((2, 3, 9), (4, 3, 3), dict(padding=3, padding_mode="circular", stride=2)),
    ((2, 3, 9, 8), (4, 3, 3, 3), dict()),
    ((2, 3, 9, 8), (4, 3, 3, 2), dict(stride=(2, 3), padding=(1, 2))),
    ((2, 4, 10, 9), (4, 2, 3, 3), dict(groups=2, dilation=(2, 1), padding=((1, 3), (0, 2)))),
    ((1, 4, 8, 8), (8, 1, 3, 3), dict(groups=4, padding="same")),  # depthwise, multiplier 2
    ((2, 3, 10, 7), (5, 3, 4, 3), dict(padding="same", stride=2)),
    ((2, 3, 10, 7), (5, 3, 3, 3), dict(padding="same", stride=(3, 2), dilation=(1, 2))),
    ((2, 2, 7, 7), (3, 2, 3, 3), dict(padding=(1, 2), padding_mode="reflect", stride=2)),
    ((2, 2, 7, 6), (3, 2, 3, 3), dict(padding="same", padding_mode="replicate")),
    ((2, 2, 7, 6), (3, 2, 3, 3), dict(padding=((2, 1), (0, 3)), padding_mode="circular")),
    ((2, 6, 9, 9), (6, 3, 1, 1), dict(groups=2)),  # 1x1
    ((2, 6, 9, 9), (4, 6, 1, 1), dict(stride=2)),  # strided 1x1
    ((2, 3, 8, 9), (4, 3, 3, 3), dict(stride=3, padding="valid")),  # stride does not divide
    ((2, 3, 5, 6, 7), (4, 3, 3, 2, 3), dict(padding=1)),
    ((1, 4, 6, 7, 5), (4, 2, 2, 3, 3), dict(stride=(2, 1, 2), dilation=(1, 2, 1), groups=2)),
    ((2, 2, 6, 5, 6), (3, 2, 3, 3, 3), dict(padding="same", stride=2, padding_mode="reflect")),
]
IDS = [f"{len(w) - 2}d-{i}" for i, (_, w, _) in enumerate(CASES)]

TRANSPOSE_CASES = [
    ((2, 3, 7), (3, 2, 3), dict()),
    ((2, 4, 7), (4, 3, 4), dict(stride=2, padding=1, output_padding=1, groups=2)),
    ((2, 3, 5, 6), (3, 2, 3, 3), dict(stride=2, padding=1, output_padding=(1, 0))),
    (
        (2, 4, 5, 4),
        (4, 1, 3, 2),
        dict(stride=(3, 2), dilation=(1, 2), groups=4, output_padding=(2, 1)),
    ),
    (
        (1, 2, 5, 5),
        (2, 3, 3, 3),
        dict(dilation=2, output_padding=1),
    ),  # output_padding < dilation only
    ((2, 2, 3, 4, 3), (2, 2, 2, 3, 2), dict(stride=2, padding=(0, 1, 0), output_padding=(1, 0, 1))),
]


# ------------------------------------------------------------- algorithms split into jobs

# the algorithms that split their work into jobs, on cases with several jobs' worth:
# (name, lhs (G, B, C, *S), rhs (G, O, C, *K), window strides, padding, rhs dilation[, lhs
# dilation])
SPLIT = [
    ("implicit", (3, 8, 5, 9, 11), (3, 6, 5, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ("implicit", (1, 5, 4, 13, 12), (1, 7, 4, 3, 2), (2, 2), ((1, 0), (0, 1)), (1, 1)),
    ("implicit", (4, 1, 3, 10, 10), (4, 2, 3, 3, 3), (1, 1), ((0, 0), (0, 0)), (2, 2)),
    ("blocked_dw", (2, 3, 4, 12, 11), (2, 5, 4, 9, 8), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ("blocked_dw", (1, 4, 3, 14, 13), (1, 6, 3, 6, 6), (1, 1), ((1, 1), (1, 1)), (2, 2)),
    ("gemm", (3, 8, 5, 9, 11), (3, 6, 5, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ("gemm", (4, 1, 3, 10, 10), (4, 2, 3, 3, 3), (2, 1), ((0, 1), (0, 0)), (2, 2)),
    ("gemm", (1, 4, 3, 14, 13), (1, 6, 3, 6, 6), (1, 1), ((1, 1), (1, 1)), (2, 2)),
    ("phase", (2, 5, 3, 7, 6), (2, 4, 3, 3, 4), (1, 1), ((2, 1), (3, 2)), (1, 1), (2, 2)),
    ("phase", (1, 3, 4, 5, 6), (1, 2, 4, 4, 3), (1, 1), ((2, 2), (1, 2)), (1, 2), (2, 3)),
    ("winograd", (2, 5, 3, 9, 10), (2, 4, 3, 3, 3), (1, 1), ((1, 1), (1, 0)), (1, 1)),
    ("winograd", (1, 4, 3, 29), (1, 5, 3, 3), (1,), ((2, 1),), (3,)),
    ("winograd4", (2, 5, 3, 9, 10), (2, 4, 3, 3, 3), (1, 1), ((1, 1), (1, 0)), (1, 1)),
    (
        "winograd4",
        (1, 3, 4, 6, 7, 9),
        (1, 5, 4, 3, 3, 3),
        (1, 1, 1),
        ((1, 1), (0, 2), (1, 0)),
        (1, 2, 1),
    ),
    ("direct", (3, 4, 2, 9, 11), (3, 2, 2, 3, 3), (1, 1), ((1, 1), (2, 0)), (1, 2)),
    ("direct", (1, 2, 3, 6, 7), (1, 4, 3, 2, 3), (1, 1), ((1, 1), (1, 2)), (1, 1), (2, 1)),
    ("implicit_dw", (3, 4, 2, 9, 11), (3, 2, 2, 7, 9), (1, 1), ((1, 1), (1, 0)), (1, 1)),
    ("implicit_dw", (2, 2, 3, 8, 9), (2, 3, 3, 7, 14), (2, 1), ((0, 1), (1, 1)), (1, 1), (1, 2)),
    ("winograd_dw", (2, 5, 4, 12, 11), (2, 6, 4, 10, 9), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ("winograd_dw", (1, 4, 3, 14, 13), (1, 6, 3, 13, 11), (2, 2), ((2, 2), (1, 2)), (1, 1)),
    ("winograd_dw", (1, 4, 3, 29), (1, 5, 3, 27), (1,), ((0, 0),), (1,)),
    ("fft", (2, 4, 8, 40, 36), (2, 8, 8, 9, 9), (1, 1), ((4, 4), (4, 3)), (1, 1)),
    ("fft", (6, 3, 1, 30, 29), (6, 2, 1, 7, 5), (2, 1), ((3, 2), (4, 4)), (1, 2)),  # depthwise
    ("fft", (1, 1, 6, 33, 31), (1, 12, 6, 8, 8), (1, 1), ((0, 0), (2, 5)), (1, 1)),  # one image
]


def split_case(lhs_shape, rhs_shape, strides, padding, rhs_dilation, lhs_dilation=None):
    """(lhs, rhs, corr, the float64 direct definition)."""
    corr = Correlation(strides, padding, lhs_dilation or (1,) * len(strides), rhs_dilation)
    rng = np.random.default_rng(1)
    lhs = rng.standard_normal(lhs_shape).astype(np.float32)
    rhs = rng.standard_normal(rhs_shape).astype(np.float32)
    expected = direct_correlation(lhs, rhs, corr)
    return lhs, rhs, corr, expected

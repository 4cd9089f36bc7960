"""Hypothesis sweeps over random configurations against the reference.

Hypothesis shrinks a failure to the smallest failing configuration it can find.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import convgrad as cg
from conftest import assert_close
from convgrad import reference as ref

pytestmark = pytest.mark.slow  # hypothesis property sweeps

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples in every run: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def conv_configs(draw):
    nd = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, 2))
    k = groups * draw(st.integers(1, 2))
    kernel = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    stride = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    dilation = draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd))
    spatial = draw(st.lists(st.integers(1, 7 if nd < 3 else 5), min_size=nd, max_size=nd))
    form = draw(st.sampled_from(["int", "dims", "pairs", "valid", "same"]))
    padding = {
        "int": draw(st.integers(0, 2)),
        "dims": tuple(draw(st.lists(st.integers(0, 2), min_size=nd, max_size=nd))),
        "pairs": tuple(
            tuple(p)
            for p in draw(
                st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=nd, max_size=nd)
            )
        ),
        "valid": "valid",
        "same": "same",
    }[form]
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    batched = draw(st.booleans())
    n = draw(st.integers(1, 2))
    pairs = ref.resolve_padding(padding, spatial, kernel, stride, dilation)
    for size, (lo, hi), kk, d in zip(spatial, pairs, kernel, dilation):
        assume(size + lo + hi >= d * (kk - 1) + 1)
        if mode == "reflect":
            assume(max(lo, hi) < size)
        if mode == "circular":
            assume(max(lo, hi) <= size)
    options = dict(
        stride=tuple(stride),
        padding=padding,
        dilation=tuple(dilation),
        groups=groups,
        padding_mode=mode,
    )
    return (n, c, *spatial), (k, c // groups, *kernel), batched, options


@SETTINGS
@given(conv_configs(), st.integers(0, 2**32 - 1))
def test_random_configurations_match_reference(config, seed):
    x_shape, w_shape, batched, options = config
    rng = np.random.default_rng(seed)
    if not batched:
        x_shape = (1, *x_shape[1:])
    x, w, b = (
        rng.standard_normal(x_shape),
        rng.standard_normal(w_shape),
        rng.standard_normal(w_shape[0]),
    )
    expected = ref.conv(x, w, b, **options)
    gy = rng.standard_normal(expected.shape)
    rx, rw, rb = ref.conv_grads(x, w, gy, **options)
    if not batched:  # the same numbers through the unbatched (C, *S) layout
        x, gy, expected, rx = x[0], gy[0], expected[0], rx[0]
    assert_close(cg.conv(x, w, b, **options), expected)
    gx, gw, gb = cg.conv_backward(gy, x, w, b, **options)
    assert_close(gx, rx)
    assert_close(gw, rw)
    assert_close(gb, rb)


@st.composite
def transpose_configs(draw):
    nd = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    c = groups * draw(st.integers(1, 2))
    kg = draw(st.integers(1, 2))
    kernel = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    stride = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    dilation = draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd))
    spatial = draw(st.lists(st.integers(1, 5), min_size=nd, max_size=nd))
    padding = draw(st.lists(st.integers(0, 2), min_size=nd, max_size=nd))
    out_pad = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
    for size, kk, s, d, p, op in zip(spatial, kernel, stride, dilation, padding, out_pad):
        assume((size - 1) * s - 2 * p + d * (kk - 1) + op + 1 >= 1)
    options = dict(
        stride=tuple(stride),
        padding=tuple(padding),
        output_padding=tuple(out_pad),
        groups=groups,
        dilation=tuple(dilation),
    )
    return (2, c, *spatial), (c, kg, *kernel), options


@SETTINGS
@given(transpose_configs(), st.integers(0, 2**32 - 1))
def test_random_transposed_configurations(config, seed):
    x_shape, w_shape, options = config
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * options["groups"])
    expected = ref.conv_transpose(x, w, b, **options)
    assert_close(cg.conv_transpose(x, w, b, **options), expected)
    g = rng.standard_normal(expected.shape)
    gx, gw, gb = cg.conv_transpose_backward(g, x, w, b, **options)
    inner = float(((expected - b.reshape(-1, *(1,) * (w.ndim - 2))) * g).sum())
    assert np.isclose(inner, float((x * gx).sum()), rtol=1e-9, atol=1e-9)
    assert np.isclose(inner, float((w * gw).sum()), rtol=1e-9, atol=1e-9)
    assert_close(gb, g.sum(axis=(0, *range(2, g.ndim))))

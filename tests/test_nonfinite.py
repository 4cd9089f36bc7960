"""An inf or NaN weight reaches exactly the cells the definition gives it, on every
algorithm: padding and inserted zeros are not samples, so they are never multiplied.

Compared with the exact float64 reference (``convgrad.reference``) everywhere, and with
PyTorch where PyTorch keeps to the definition too: input gradients, transposed
convolutions and unpadded forwards (its padded forward and weight gradient multiply the
padding, so 0 * inf shows up there as NaN cells the definition does not have).
"""

from __future__ import annotations

import numpy as np
import pytest

import convgrad as cg
from convgrad import reference as ref
from convgrad.algorithms import REGISTRY

torch = pytest.importorskip("torch")
F = torch.nn.functional

CASES = {  # x shape, w shape, options
    "valid3x3": ((2, 3, 10, 10), (4, 3, 3, 3), dict()),
    "5x5-s2-p2": ((1, 2, 11, 11), (3, 2, 5, 5), dict(stride=2, padding=2)),
    "dilated": ((1, 2, 11, 11), (2, 2, 3, 3), dict(dilation=2, padding=2)),
    "same-grouped": ((1, 4, 8, 7), (4, 2, 3, 3), dict(padding=1, groups=2)),
    "strided-1d": ((2, 2, 13), (3, 2, 4), dict(stride=3, padding=1)),
}
TAPS = {"corner": (0, 0), "centre": (1, 1)}  # filter (0, 0)'s tap, in its first two dims


def _masks(a) -> np.ndarray:
    a = np.asarray(a)
    return np.stack([np.isnan(a), np.isposinf(a), np.isneginf(a)])


def _run(call):
    """call(), or None where the forced algorithm does not support that pass."""
    try:
        with np.errstate(invalid="ignore", over="ignore"):
            return call()
    except ValueError as exc:
        if "does not support" not in str(exc):
            raise
        return None


def _with_bad_tap(w: np.ndarray, tap: str, value: float) -> np.ndarray:
    w = w.copy()
    index = (0, 0, *(min(t, n - 1) for t, n in zip(TAPS[tap], w.shape[2:])))
    index += (0,) * (w.ndim - len(index))
    w[index] = value
    return w


@pytest.mark.parametrize("name", tuple(REGISTRY))
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("tap", TAPS)
@pytest.mark.parametrize("case", CASES)
def test_a_bad_weight_reaches_the_cells_of_the_definition(case, tap, value, name):
    x_shape, w_shape, options = CASES[case]
    rng = np.random.default_rng(20)
    x, gy_w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    w = _with_bad_tap(gy_w, tap, value)
    with np.errstate(invalid="ignore"):
        y_ref = ref.conv(x, w, **options)
        gy = rng.standard_normal(y_ref.shape)
        gx_ref, _, _ = ref.conv_grads(x, w, gy, **options)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = {3: F.conv1d, 4: F.conv2d}[x.ndim](xt, wt, **options)
    yt.backward(torch.tensor(gy))
    # the reference keeps to the definition where PyTorch does
    np.testing.assert_array_equal(_masks(gx_ref), _masks(xt.grad.numpy()))
    if "padding" not in options:
        np.testing.assert_array_equal(_masks(y_ref), _masks(yt.detach().numpy()))
    assert _masks(gx_ref).any() and not _masks(gx_ref).all()  # it reaches some cells only

    y = _run(lambda: cg.conv(x, w, algorithm=name, **options))
    if y is not None:
        np.testing.assert_array_equal(_masks(y), _masks(y_ref))
        y32 = _run(
            lambda: cg.conv(x.astype(np.float32), w.astype(np.float32), algorithm=name, **options)
        )
        np.testing.assert_array_equal(_masks(y32), _masks(y_ref))
    gx = _run(lambda: cg.conv_input_grad(gy, w, x.shape, algorithm=name, **options))
    if gx is not None:
        np.testing.assert_array_equal(_masks(gx), _masks(gx_ref))
    # the weight gradient's rhs is grad_output: one bad cell there
    gy_bad = gy.copy()
    gy_bad[(0, 0, *(n // 2 for n in gy.shape[2:]))] = value
    with np.errstate(invalid="ignore"):
        _, gw_ref, _ = ref.conv_grads(x, w, gy_bad, **options)
    gw = _run(lambda: cg.conv_weight_grad(x, gy_bad, w.shape, algorithm=name, **options))
    if gw is not None:
        np.testing.assert_array_equal(_masks(gw), _masks(gw_ref))


TRANSPOSED = {
    "s2-p1-op1": ((1, 2, 4, 4), (2, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    "s3-d2": ((2, 2, 3, 4), (2, 2, 3, 3), dict(stride=3, dilation=2)),
    "grouped-1d": ((1, 4, 5), (4, 1, 4), dict(stride=2, padding=2, groups=2)),
}


@pytest.mark.parametrize("name", tuple(REGISTRY))
@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("case", TRANSPOSED)
def test_a_bad_weight_of_a_transposed_convolution(case, value, name):
    x_shape, w_shape, options = TRANSPOSED[case]
    rng = np.random.default_rng(21)
    x = rng.standard_normal(x_shape)
    w = _with_bad_tap(rng.standard_normal(w_shape), "corner", value)
    with np.errstate(invalid="ignore"):
        y_ref = ref.conv_transpose(x, w, **options)
    xt = torch.tensor(x)
    yt = {3: F.conv_transpose1d, 4: F.conv_transpose2d}[x.ndim](xt, torch.tensor(w), **options)
    np.testing.assert_array_equal(_masks(y_ref), _masks(yt.numpy()))
    assert _masks(y_ref).any() and not _masks(y_ref).all()
    y = _run(lambda: cg.conv_transpose(x, w, algorithm=name, **options))
    if y is not None:
        np.testing.assert_array_equal(_masks(y), _masks(y_ref))


def _runs_somewhere(name: str, x_shape, w_shape, options) -> bool:
    x, w = np.ones(x_shape), np.ones(w_shape)
    y = ref.conv(x, w, **options)
    calls = (
        lambda: cg.conv(x, w, algorithm=name, **options),
        lambda: cg.conv_input_grad(y, w, x.shape, algorithm=name, **options),
        lambda: cg.conv_weight_grad(x, y, w.shape, algorithm=name, **options),
    )
    return any(_run(call) is not None for call in calls)


def test_every_algorithm_meets_a_bad_weight_somewhere():
    # each algorithm runs some pass of the cases above (none is skipped everywhere)
    ran = {name for name in REGISTRY for case in CASES.values() if _runs_somewhere(name, *case)}
    assert ran == set(REGISTRY)

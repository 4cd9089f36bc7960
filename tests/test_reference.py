"""The slow reference itself is checked: its gradients by finite differences, its values
by PyTorch where installed. Everything else is judged against it."""

from __future__ import annotations

import numpy as np
import pytest

from convgrad import reference as ref

CONFIGS = [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=((0, 2), (1, 0)), dilation=(1, 2)),
    dict(padding="same", stride=2, groups=2),
    dict(padding=1, padding_mode="reflect"),
    dict(padding=(2, 1), padding_mode="circular", dilation=2),
    dict(padding=2, padding_mode="replicate", stride=3),
]


@pytest.mark.parametrize("options", CONFIGS)
def test_reference_gradients_by_finite_differences(options):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((4, 4 // options.get("groups", 1), 3, 2))
    gy = rng.standard_normal(ref.conv(x, w, **options).shape)
    gx, gw, gb = ref.conv_grads(x, w, gy, **options)

    def loss(x_, w_):
        return float((ref.conv(x_, w_, **options) * gy).sum())

    eps = 1e-6
    for array, grad, which in ((x, gx, 0), (w, gw, 1)):
        for index in [tuple(rng.integers(0, s) for s in array.shape) for _ in range(6)]:
            plus, minus = array.copy(), array.copy()
            plus[index] += eps
            minus[index] -= eps
            args_p = (plus, w) if which == 0 else (x, plus)
            args_m = (minus, w) if which == 0 else (x, minus)
            numeric = (loss(*args_p) - loss(*args_m)) / (2 * eps)
            assert abs(numeric - grad[index]) < 1e-6 * max(1, abs(numeric))
    np.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3)))


def test_reference_transpose_is_adjoint_of_conv():
    """<conv_transpose(x, w), y> == <x, conv(y, w)> with the same weight."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 2, 3, 4))  # transposed layout (C=6, K/g=2, ...), groups=3
    options = dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    x = rng.standard_normal((2, 6, 5, 4))
    y = ref.conv_transpose(x, w, groups=3, output_padding=(1, 0), **options)
    g = rng.standard_normal(y.shape)
    forward = ref.conv(g, w, groups=3, **options)
    assert forward.shape == x.shape
    np.testing.assert_allclose((y * g).sum(), (x * forward).sum(), rtol=1e-12)


def test_reference_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 2))
    b = rng.standard_normal(6)
    got = ref.conv(x, w, b, stride=2, padding=1, dilation=(1, 2), groups=2)
    want = F.conv2d(*map(torch.tensor, (x, w, b)), stride=2, padding=1, dilation=(1, 2), groups=2)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-12)
    wt = rng.standard_normal((4, 3, 3, 2))
    got = ref.conv_transpose(x, wt, None, 2, 1, 1, 2, 1)
    want = F.conv_transpose2d(torch.tensor(x), torch.tensor(wt), None, 2, 1, 1, 2, 1)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-12)

"""Every class of bad input gets a ValueError/TypeError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

import convgrad as cg

X = np.zeros((2, 4, 8, 8))
W = np.zeros((6, 2, 3, 3))
GY = np.zeros((2, 6, 6, 6))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: cg.conv(X[0, 0], W), ValueError, "x must have 4 dims"),
        (lambda: cg.conv(X, W[0]), ValueError, "x must have 3 dims"),
        (lambda: cg.conv(X, np.zeros((6,))), ValueError, "weight must have 3, 4 or 5 dims"),
        (lambda: cg.conv(X, np.zeros((2, 4, 8, 8, 3, 3, 3))), ValueError, "weight must have"),
        (
            lambda: cg.conv(X, W),
            ValueError,
            "expected x of shape (2, 4, 8, 8) to have 2 channels (weight.shape[1] * groups = "
            "2 * 1), but got 4 channels instead",
        ),
        (lambda: cg.conv(X, W, groups=3), ValueError, "divisible by groups"),
        (lambda: cg.conv(X, np.zeros((5, 2, 3, 3)), groups=2), ValueError, "out channels (5)"),
        (lambda: cg.conv(X, W, groups=0), ValueError, "groups"),
        (lambda: cg.conv(X, W, groups=2.0), TypeError, "groups"),
        (lambda: cg.conv(X, W, groups=2, stride=0), ValueError, "stride must be >= 1"),
        (
            lambda: cg.conv(X, W, groups=2, stride=(1, 2, 3)),
            ValueError,
            "stride must be an int or a sequence of 2",
        ),
        (lambda: cg.conv(X, W, groups=2, stride=1.5), TypeError, "stride"),
        (lambda: cg.conv(X, W, groups=2, dilation=-1), ValueError, "dilation must be >= 1"),
        (lambda: cg.conv(X, W, groups=2, padding=-1), ValueError, "padding must be >= 0"),
        (lambda: cg.conv(X, W, groups=2, padding=((1, -1), 0)), ValueError, "padding must be >= 0"),
        (
            lambda: cg.conv(X, W, groups=2, padding="causal"),
            ValueError,
            "padding must be 'valid', 'same', 'full'",
        ),
        (
            lambda: cg.conv(X, W, groups=2, padding=(1, 2, 3)),
            ValueError,
            "one entry per spatial dim",
        ),
        (lambda: cg.conv(X, W, groups=2, padding=((1, 2, 3), 0)), TypeError, "(low, high) pairs"),
        (
            lambda: cg.conv(X, W, groups=2, padding_mode="mirror"),
            ValueError,
            "padding_mode must be one of",
        ),
        (lambda: cg.conv(X, W, groups=2, padding=8, padding_mode="reflect"), ValueError, "reflect"),
        (
            lambda: cg.conv(X, W, groups=2, padding=9, padding_mode="circular"),
            ValueError,
            "circular",
        ),
        (lambda: cg.conv(X, np.zeros((6, 2, 9, 9)), groups=2), ValueError, "output would be empty"),
        (lambda: cg.conv(X, W, groups=2, dilation=4), ValueError, "output would be empty"),
        (lambda: cg.conv(X, W, np.zeros(5), groups=2), ValueError, "bias must have shape (6,)"),
        (
            lambda: cg.conv(X.astype(int), W, groups=2),
            TypeError,
            "x must have dtype float16, float32 or float64",
        ),
        (lambda: cg.conv(X, W.astype(bool), groups=2), TypeError, "weight must have dtype"),
        (lambda: cg.conv(X.astype(complex), W, groups=2), TypeError, "x must have dtype"),
        (lambda: cg.conv(X.astype(object), W, groups=2), TypeError, "x must have dtype"),
        (
            lambda: cg.conv(X, W, np.zeros(6, dtype=np.int32), groups=2),
            TypeError,
            "bias must have dtype",
        ),
        (lambda: cg.conv(X, W, groups=2, algorithm="magic"), ValueError, "algorithm must be"),
        (lambda: cg.conv(X, W, groups=2, workspace_limit=0), ValueError, "workspace_limit"),
        (
            lambda: cg.conv_input_grad(GY, W, (2, 4, 8, 9), groups=2),
            ValueError,
            "grad_output must have shape (2, 6, 6, 7)",
        ),
        (
            lambda: cg.conv_input_grad(GY, W, (2, 4), groups=2),
            ValueError,
            "input_shape must have 4 dims",
        ),
        (
            lambda: cg.conv_input_grad(GY, W, "2x4x8x8", groups=2),
            TypeError,
            "input_shape must be a sequence of ints",
        ),
        (
            lambda: cg.conv_input_grad(GY.astype(np.int64), W, X.shape, groups=2),
            TypeError,
            "grad_output must have dtype",
        ),
        (
            lambda: cg.conv_weight_grad(X, GY[:, :5], W.shape, groups=2),
            ValueError,
            "grad_output must have shape",
        ),
        (
            lambda: cg.conv_weight_grad(X, GY, (6, 4, 3, 3), groups=2),
            ValueError,
            "expected x of shape (2, 4, 8, 8) to have 8 channels",
        ),
        (
            lambda: cg.conv_weight_grad(X, GY, (6, 2, 0, 3), groups=2),
            ValueError,
            "weight.shape must have positive sizes",
        ),
        (
            lambda: cg.conv_backward(GY[0], X, W, groups=2),
            ValueError,
            "grad_output must have shape",
        ),
        (
            lambda: cg.conv_backward(GY, X, W, np.zeros((6, 1)), groups=2),
            ValueError,
            "bias must have shape",
        ),
        (
            lambda: cg.conv_bias_grad(np.zeros((6,))),
            ValueError,
            "grad_output must have 3 to 5 dims",
        ),
        (
            lambda: cg.conv_bias_grad(np.zeros((2, 6, 3)), batched="yes"),
            TypeError,
            "batched must be a bool",
        ),
        (
            lambda: cg.conv_bias_grad(np.zeros((2, 6, 3), dtype=int)),
            TypeError,
            "grad_output must have dtype",
        ),
        (
            lambda: cg.conv_transpose(X, W),
            ValueError,
            "expected input of shape (2, 4, 8, 8) to have 6 channels (weight.shape[0]",
        ),
        (
            lambda: cg.conv_transpose(X, np.zeros((4, 3, 3, 3)), stride=2, output_padding=2),
            ValueError,
            "output_padding must be smaller than stride or dilation",
        ),
        (
            lambda: cg.conv_transpose(X, np.zeros((4, 3, 3, 3)), padding="same"),
            ValueError,
            "padding of a transposed convolution",
        ),
        (
            lambda: cg.conv_transpose(X, np.zeros((4, 3, 3, 3)), padding=6),
            ValueError,
            "output would be empty",
        ),
        (
            lambda: cg.conv_transpose(X, np.zeros((4, 3, 3, 3)), groups=3),
            ValueError,
            "divisible by groups",
        ),
        (
            lambda: cg.conv_transpose(X, np.zeros((4, 3, 3, 3)), np.zeros(4)),
            ValueError,
            "bias must have shape (3,)",
        ),
        (
            lambda: cg.conv_transpose_backward(np.zeros((2, 3, 9, 9)), X, np.zeros((4, 3, 3, 3))),
            ValueError,
            "grad_output must have shape (2, 3, 10, 10)",
        ),
    ],
)
def test_bad_input_raises_naming_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value), str(info.value)


def test_stride_list_and_numpy_ints_are_accepted():
    y = cg.conv(X, W, groups=np.int64(2), stride=[np.int32(2), 1], padding=[(1, 0), np.int64(1)])
    assert y.shape == (2, 6, 4, 8)

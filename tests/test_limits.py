"""Extreme but legal options cost time and memory bounded by the work and the output;
sizes past what int64 can index are refused at the door."""

from __future__ import annotations

import numpy as np
import pytest

import convgrad as cg
from convgrad._spec import MAX_ELEMENTS, MAX_SIZE

X = np.zeros((1, 2, 8, 8))
W = np.zeros((3, 2, 3, 3))


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: cg.conv(X, W, stride=2**63), "stride must be at most 1152921504606846976"),
        (lambda: cg.conv(X, W, stride=(1, MAX_SIZE + 1)), "stride must be at most"),
        (lambda: cg.conv(X, W, dilation=2**64), "dilation must be at most"),
        (lambda: cg.conv(X, W, padding=2**63), "padding must be at most"),
        (lambda: cg.conv(X, W, padding=((0, 2**61), 0)), "padding must be at most"),
        (
            lambda: cg.conv(X, W, padding="same", dilation=2**59),
            "dilation * (kernel size - 1) + 1 must be at most",
        ),
        (lambda: cg.conv(X, W, padding=2**40), "more than any array can hold"),
        (lambda: cg.conv(X, W, padding=((0, 2**60), 0)), "padding plus x spatial size"),
        (
            lambda: cg.conv_input_grad(np.zeros((1, 3, 1, 1)), W, (1, 2, 8, 8), stride=2**61),
            "stride must be at most",
        ),
        (
            lambda: cg.conv_weight_grad(X, np.zeros((1, 3, 6, 6)), (3, 2, 3, 3), dilation=2**70),
            "dilation must be at most",
        ),
        (lambda: cg.conv_transpose(X, W.swapaxes(0, 1), stride=2**63), "stride must be at most"),
        (
            lambda: cg.conv_transpose(X, W.swapaxes(0, 1), output_padding=2**63, stride=2**63),
            "must be at most",
        ),
        (
            lambda: cg.conv_transpose(X, W.swapaxes(0, 1), stride=2**59),
            "before the padding is cropped",
        ),
    ],
)
def test_sizes_past_int64_are_refused_at_the_door(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value), str(info.value)


def test_the_limits_leave_int64_room():
    # a few sizes added (padded extent plus a dilated tap offset) still fit in an int64
    assert 4 * MAX_SIZE < 2**63 and 8 * MAX_ELEMENTS <= 2**62


def test_cli_refuses_a_huge_stride_in_one_line(capsys):
    from convgrad.cli import main

    assert main(["explain", "--stride", str(2**63)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stride must be at most" in err and "Traceback" not in err

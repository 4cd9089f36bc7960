"""padding='full': d*(k-1) zeros on both sides of every spatial dim, SciPy's
correlate(mode='full'), checked against scipy.signal.correlate, PyTorch with that padding
given explicitly, and the float64 reference for all three gradients."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

import convgrad as cg
from conftest import assert_close
from convgrad import reference as ref


def _arrays(x_shape, w_shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(x_shape), rng.standard_normal(w_shape)


def _dilated(kernel: np.ndarray, dilation: tuple[int, ...]) -> np.ndarray:
    """The kernel with d-1 zeros between its taps in every dim."""
    shape = tuple(d * (k - 1) + 1 for k, d in zip(kernel.shape, dilation))
    out = np.zeros(shape)
    out[tuple(slice(None, None, d) for d in dilation)] = kernel
    return out


def _scipy_full(x, w, dilation):
    """y[n, k] = sum_c correlate(x[n, c], dilate(w[k, c]), mode='full')."""
    n, c = x.shape[:2]
    k = w.shape[0]
    out = None
    for b, o in itertools.product(range(n), range(k)):
        acc = sum(
            signal.correlate(x[b, i], _dilated(w[o, i], dilation), mode="full", method="direct")
            for i in range(c)
        )
        if out is None:
            out = np.zeros((n, k, *acc.shape))
        out[b, o] = acc
    return out


@pytest.mark.parametrize(
    "x_shape, w_shape, dilation",
    [
        ((2, 3, 9), (4, 3, 3), (1,)),
        ((2, 2, 7, 6), (3, 2, 3, 2), (1, 1)),
        ((1, 2, 7, 6), (2, 2, 2, 3), (2, 1)),
        ((1, 2, 4, 5, 3), (2, 2, 2, 3, 2), (1, 2, 1)),
    ],
)
def test_full_padding_is_scipy_correlate_full(x_shape, w_shape, dilation):
    x, w = _arrays(x_shape, w_shape)
    y = cg.conv(x, w, padding="full", dilation=dilation)
    kernel = w_shape[2:]
    expected_spatial = tuple(n + d * (k - 1) for n, k, d in zip(x_shape[2:], kernel, dilation))
    assert y.shape == (x_shape[0], w_shape[0], *expected_spatial)
    assert_close(y, _scipy_full(x, w, dilation))


def test_full_padding_with_stride_is_the_strided_full_result():
    x, w = _arrays((2, 3, 10, 9), (4, 3, 3, 2))
    full = cg.conv(x, w, padding="full")
    strided = cg.conv(x, w, padding="full", stride=(2, 3))
    assert_close(strided, full[:, :, ::2, ::3])


FULL_CASES = [
    ((2, 3, 11), (4, 3, 3), dict(padding="full")),
    ((2, 4, 9), (6, 2, 4), dict(padding="full", stride=3, dilation=2, groups=2)),
    ((2, 3, 7, 6), (4, 3, 3, 2), dict(padding="full", stride=(2, 1))),
    ((1, 4, 6, 7), (4, 1, 3, 3), dict(padding="full", groups=4, dilation=(1, 2))),
    ((2, 2, 7, 8), (3, 2, 3, 3), dict(padding="full", padding_mode="circular", stride=2)),
    ((1, 2, 4, 5, 4), (3, 2, 2, 3, 2), dict(padding="full", stride=(1, 2, 1))),
]


@pytest.mark.parametrize("x_shape, w_shape, options", FULL_CASES)
def test_full_padding_forward_and_gradients_match_reference(x_shape, w_shape, options):
    x, w = _arrays(x_shape, w_shape)
    b = np.random.default_rng(7).standard_normal(w_shape[0])
    y = cg.conv(x, w, b, **options)
    assert_close(y, ref.conv(x, w, b, **options))
    gy = np.random.default_rng(1).standard_normal(y.shape)
    rx, rw, rb = ref.conv_grads(x, w, gy, **options)
    gx, gw, gb = cg.conv_backward(gy, x, w, b, **options)
    assert_close(gx, rx)
    assert_close(gw, rw)
    assert_close(gb, rb)
    assert_close(cg.conv_input_grad(gy, w, x.shape, **options), rx)
    assert_close(cg.conv_weight_grad(x, gy, w.shape, **options), rw)


def test_reference_full_padding_is_the_explicit_padding():
    """The oracle's own 'full' against the same convolution with the ints written out."""
    x, w = _arrays((1, 2, 7, 6), (3, 2, 3, 2))
    explicit = dict(padding=((4, 4), (1, 1)), dilation=(2, 1))
    assert_close(ref.conv(x, w, padding="full", dilation=(2, 1)), ref.conv(x, w, **explicit))


@pytest.mark.parametrize("x_shape, w_shape, options", FULL_CASES)
def test_full_padding_matches_torch_with_the_padding_written_out(x_shape, w_shape, options):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    nd = len(w_shape) - 2
    options = dict(options)
    options.pop("padding")
    mode = options.pop("padding_mode", "zeros")
    dilation = options.get("dilation", 1)
    dilation = (dilation,) * nd if isinstance(dilation, int) else dilation
    pads = [d * (k - 1) for k, d in zip(w_shape[2:], dilation)]
    x, w = _arrays(x_shape, w_shape, seed=3)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    if mode == "zeros":
        yt = conv(xt, wt, padding=tuple(pads), **options)
    else:
        flat = [p for p in reversed(pads) for _ in range(2)]
        yt = conv(F.pad(xt, flat, mode=mode), wt, **options)
    gy = np.random.default_rng(4).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    all_options = dict(options, padding="full", padding_mode=mode)
    assert_close(cg.conv(x, w, **all_options), yt.detach().numpy())
    gx, gw, _ = cg.conv_backward(gy, x, w, **all_options)
    assert_close(gx, xt.grad.numpy())
    assert_close(gw, wt.grad.numpy())


def test_full_padding_layer_matches_torch_layer():
    torch = pytest.importorskip("torch")
    layer = cg.Conv2d(3, 4, (3, 2), stride=2, padding="full", dilation=(1, 2), dtype=np.float64)
    assert layer.padding == "full"
    tlayer = torch.nn.Conv2d(3, 4, (3, 2), stride=2, padding=(2, 2), dilation=(1, 2)).double()
    with torch.no_grad():
        tlayer.weight.copy_(torch.from_numpy(layer.weight))
        tlayer.bias.copy_(torch.from_numpy(layer.bias))
    x = np.random.default_rng(5).standard_normal((2, 3, 7, 6))
    y = layer(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = tlayer(xt)
    assert_close(y, yt.detach().numpy())
    gy = np.random.default_rng(6).standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    assert_close(layer.backward(gy), xt.grad.numpy())
    assert_close(layer.weight_grad, tlayer.weight.grad.numpy())
    assert_close(layer.bias_grad, tlayer.bias.grad.numpy())


def test_full_padding_is_refused_where_it_has_no_meaning():
    x, w = _arrays((1, 2, 5), (2, 2, 3))
    with pytest.raises(ValueError, match="padding of a transposed convolution"):
        cg.conv_transpose(x, w, padding="full")
    with pytest.raises(ValueError, match="padding of a transposed convolution"):
        cg.ConvTranspose1d(2, 2, 3, padding="full")
    # reflect needs padding < size: d*(k-1) = 4 on an input of 4
    with pytest.raises(ValueError, match="padding_mode='reflect' needs padding"):
        cg.conv(np.zeros((1, 2, 4)), np.zeros((2, 2, 5)), padding="full", padding_mode="reflect")
    with pytest.raises(ValueError, match="'valid', 'same', 'full'"):
        cg.conv(x, w, padding="fulll")


def test_full_padding_on_dask_arrays():
    da = pytest.importorskip("dask.array")
    x, w = _arrays((4, 2, 6, 5), (3, 2, 3, 2))
    xd = da.from_array(x, chunks=(2, 2, 6, 5))
    y = cg.conv(xd, w, padding="full", stride=2)
    assert y.shape == (4, 3, 4, 3)
    assert_close(y.compute(), cg.conv(x, w, padding="full", stride=2))
    gy = np.random.default_rng(8).standard_normal(y.shape)
    gw = cg.conv_weight_grad(xd, da.from_array(gy, chunks=(2, 3, 4, 3)), w.shape, 2, "full")
    assert_close(gw.compute(), cg.conv_weight_grad(x, gy, w.shape, 2, "full"))


@pytest.mark.slow
def test_explain_states_the_full_padding_formula():
    report = cg.explain((2, 7, 9), (3, 2, 3, 2), padding="full", dilation=(2, 1))
    assert report.padding == ((4, 4), (1, 1))
    assert report.shapes["output"] == (3, 11, 10)
    text = str(report)
    assert "padding 'full': d·(k−1) zeros on both sides" in text
    assert "out = in + d·(k−1)" in text and "H: 2·(3−1) = 4" in text
    proc = subprocess.run(
        [sys.executable, "-m", "convgrad", "explain", "--input", "2x7x9", "--weight", "3x2x3x2"]
        + ["--padding", "full"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "padding 'full'" in proc.stdout and "O 3×9×10" in proc.stdout

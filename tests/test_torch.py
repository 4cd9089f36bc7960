"""Cross-checks against PyTorch (a test oracle only): forward and autograd gradients."""

from __future__ import annotations

import numpy as np
import pytest

import convgrad as cg
from conftest import assert_close
from convgrad.reference import resolve_padding
from oracles import CASES, IDS, TRANSPOSE_CASES

torch = pytest.importorskip("torch")
F = torch.nn.functional
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
TORCH_MODE = {
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
    "zeros": "constant",
}


def _torch_conv(x, w, b, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """PyTorch convolution with any padding: explicit F.pad, then an unpadded conv."""
    nd = w.ndim - 2
    expand = lambda v: (v,) * nd if isinstance(v, int) else tuple(v)  # noqa: E731
    pairs = resolve_padding(
        padding, tuple(x.shape[2:]), tuple(w.shape[2:]), expand(stride), expand(dilation)
    )
    flat = [p for pair in reversed(pairs) for p in pair]
    x = F.pad(x, flat, mode=TORCH_MODE[padding_mode])
    return CONV[nd](x, w, b, stride=stride, dilation=dilation, groups=groups)


def _leaves(*arrays):
    return [torch.tensor(a, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("x_shape, w_shape, options", CASES, ids=IDS)
def test_conv_and_gradients_match_torch(x_shape, w_shape, options):
    rng = np.random.default_rng(10)
    x, w, b = (
        rng.standard_normal(x_shape),
        rng.standard_normal(w_shape),
        rng.standard_normal(w_shape[0]),
    )
    xt, wt, bt = _leaves(x, w, b)
    yt = _torch_conv(xt, wt, bt, **options)
    gy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    assert_close(cg.conv(x, w, b, **options), yt.detach().numpy())
    gx, gw, gb = cg.conv_backward(gy, x, w, b, **options)
    assert_close(gx, xt.grad.numpy())
    assert_close(gw, wt.grad.numpy())
    assert_close(gb, bt.grad.numpy())


NATIVE = [  # options PyTorch takes directly (its own padding placement and modes)
    dict(padding="same"),
    dict(padding="same", dilation=2),
    dict(padding=(1, 2), padding_mode="reflect"),
    dict(padding=2, padding_mode="circular", stride=2),
    dict(padding="same", padding_mode="replicate", dilation=(2, 1)),
    dict(padding="valid", stride=3, groups=2),
]


@pytest.mark.parametrize("options", NATIVE)
def test_native_torch_layer_options(options):
    rng = np.random.default_rng(11)
    layer = torch.nn.Conv2d(4, 6, (4, 3), dtype=torch.float64, **options)
    x = rng.standard_normal((2, 4, 9, 8))
    xt = torch.tensor(x, requires_grad=True)
    yt = layer(xt)
    gy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    assert_close(cg.conv(x, w, b, **options), yt.detach().numpy())
    gx, gw, gb = cg.conv_backward(gy, x, w, b, **options)
    assert_close(gx, xt.grad.numpy())
    assert_close(gw, layer.weight.grad.numpy())
    assert_close(gb, layer.bias.grad.numpy())


@pytest.mark.parametrize("x_shape, w_shape, options", TRANSPOSE_CASES)
def test_conv_transpose_matches_torch(x_shape, w_shape, options):
    rng = np.random.default_rng(12)
    nd = len(w_shape) - 2
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * options.get("groups", 1))
    xt, wt, bt = _leaves(x, w, b)
    yt = CONV_T[nd](xt, wt, bt, **options)
    gy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    assert_close(cg.conv_transpose(x, w, b, **options), yt.detach().numpy())
    gx, gw, gb = cg.conv_transpose_backward(gy, x, w, b, **options)
    assert_close(gx, xt.grad.numpy())
    assert_close(gw, wt.grad.numpy())
    assert_close(gb, bt.grad.numpy())


def test_float32_matches_torch_float32():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    xt, wt = _leaves(x, w)
    yt = F.conv2d(xt, wt, stride=2, padding=1)
    gy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(gy))
    assert_close(cg.conv(x, w, stride=2, padding=1), yt.detach().numpy(), np.float32)
    gx, gw, _ = cg.conv_backward(gy, x, w, stride=2, padding=1)
    assert_close(gx, xt.grad.numpy(), np.float32)
    assert_close(gw, wt.grad.numpy(), np.float32)


def test_torch_grad_module_functions():
    """conv_input_grad / conv_weight_grad agree with torch.nn.grad on a strided case."""
    rng = np.random.default_rng(14)
    x, w = rng.standard_normal((2, 4, 11, 10)), rng.standard_normal((6, 2, 3, 3))
    options = dict(stride=2, padding=1, dilation=2, groups=2)
    gy = rng.standard_normal(cg.conv(x, w, **options).shape)
    tx, tw, tg = (torch.tensor(a) for a in (x, w, gy))
    assert_close(
        cg.conv_input_grad(gy, w, x.shape, **options),
        torch.nn.grad.conv2d_input(x.shape, tw, tg, **options).numpy(),
    )
    assert_close(
        cg.conv_weight_grad(x, gy, w.shape, **options),
        torch.nn.grad.conv2d_weight(tx, w.shape, tg, **options).numpy(),
    )

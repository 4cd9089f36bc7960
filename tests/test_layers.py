"""Conv layers: forward/backward against the functional API, the float64 reference and
torch.nn with copied weights; PyTorch's initialisation; accumulation; errors."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import convgrad
from convgrad import functional as F
from convgrad import reference
from convgrad.layers import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
)
from convgrad.nn import Linear

# (class, constructor args, constructor kwargs, input shape)
CONV_CASES = [
    (Conv1d, (3, 4, 3), dict(stride=2, padding=1, padding_mode="reflect"), (2, 3, 11)),
    (Conv1d, (4, 6, 2), dict(dilation=3, groups=2, bias=False), (5, 4, 9)),
    (
        Conv2d,
        (4, 6, (3, 2)),
        dict(padding="same", dilation=2, groups=2, padding_mode="circular"),
        (2, 4, 7, 6),
    ),
    (Conv2d, (3, 5, 3), dict(stride=(2, 1), padding=(1, 0)), (3, 3, 8, 7)),
    (Conv2d, (3, 5, 3), dict(padding=1), (3, 6, 6)),  # unbatched
    (Conv3d, (2, 4, 2), dict(padding=1, bias=False, padding_mode="replicate"), (2, 2, 4, 3, 5)),
    (Conv3d, (2, 2, (2, 3, 1)), dict(stride=2, groups=2), (1, 2, 5, 6, 3)),
]
TRANSPOSE_CASES = [
    (ConvTranspose1d, (4, 2, 3), dict(stride=2, padding=1, output_padding=1), (2, 4, 6)),
    (
        ConvTranspose2d,
        (4, 6, 3),
        dict(stride=2, padding=1, output_padding=1, groups=2),
        (2, 4, 4, 5),
    ),
    (ConvTranspose2d, (2, 3, (2, 3)), dict(dilation=2, bias=False), (2, 4, 5)),  # unbatched
    (
        ConvTranspose3d,
        (2, 3, 2),
        dict(stride=2, dilation=2, output_padding=1, bias=False),
        (1, 2, 3, 2, 3),
    ),
]
ALL_CASES = CONV_CASES + TRANSPOSE_CASES


def _case_id(case) -> str:
    cls, args, kwargs, shape = case
    return f"{cls.__name__}{args}-{'x'.join(map(str, shape))}"


def _run(case, seed=0):
    cls, args, kwargs, shape = case
    layer = cls(*args, **kwargs, dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal(shape)
    y = layer(x)
    gy = rng.standard_normal(y.shape)
    gx = layer.backward(gy)
    return layer, x, y, gy, gx


def _is_transpose(layer) -> bool:
    return type(layer).__name__.startswith("ConvTranspose")


@pytest.mark.parametrize("case", ALL_CASES, ids=_case_id)
def test_layer_matches_functional_api(case):
    layer, x, y, gy, gx = _run(case)
    opts = dict(
        stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups
    )
    if _is_transpose(layer):
        ref_y = F.conv_transpose(
            x, layer.weight, layer.bias, output_padding=layer.output_padding, **opts
        )
        ref = F.conv_transpose_backward(
            gy, x, layer.weight, layer.bias, output_padding=layer.output_padding, **opts
        )
    else:
        ref_y = F.conv(x, layer.weight, layer.bias, padding_mode=layer.padding_mode, **opts)
        ref = F.conv_backward(
            gy, x, layer.weight, layer.bias, padding_mode=layer.padding_mode, **opts
        )
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(gx, ref[0])
    np.testing.assert_array_equal(layer.weight_grad, ref[1])
    if layer.bias is None:
        assert layer.bias_grad is None and ref[2] is None
    else:
        np.testing.assert_array_equal(layer.bias_grad, ref[2])


@pytest.mark.parametrize("case", ALL_CASES, ids=_case_id)
def test_layer_matches_slow_reference(case):
    """Against the independent float64 textbook definition (batched inputs)."""
    layer, x, y, gy, gx = _run(case)
    batched = x.ndim == layer.weight.ndim
    xb, yb, gyb, gxb = (a if batched else a[None] for a in (x, y, gy, gx))
    if _is_transpose(layer):
        ref_y = reference.conv_transpose(
            xb,
            layer.weight,
            layer.bias,
            layer.stride,
            layer.padding,
            layer.output_padding,
            layer.groups,
            layer.dilation,
        )
        # the transposed convolution is the input gradient of a convolution of its output:
        # its own input gradient is that convolution, its weight gradient the conv's dW
        ref_gx = reference.conv(
            gyb, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups
        )
        _, ref_gw, _ = reference.conv_grads(
            gyb, layer.weight, xb, layer.stride, layer.padding, layer.dilation, layer.groups
        )
        ref_gx = ref_gx[(Ellipsis, *(slice(0, n) for n in xb.shape[2:]))]
    else:
        ref_y = reference.conv(
            xb,
            layer.weight,
            layer.bias,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            layer.padding_mode,
        )
        ref_gx, ref_gw, _ = reference.conv_grads(
            xb,
            layer.weight,
            gyb,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            layer.padding_mode,
        )
    np.testing.assert_allclose(yb, ref_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gxb, ref_gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.weight_grad, ref_gw, rtol=1e-10, atol=1e-10)
    if layer.bias is not None:
        axes = (0, *range(2, gyb.ndim))
        np.testing.assert_allclose(layer.bias_grad, gyb.sum(axis=axes), rtol=1e-10, atol=1e-10)


TORCH_NAMES = {
    Conv1d: "Conv1d",
    Conv2d: "Conv2d",
    Conv3d: "Conv3d",
    ConvTranspose1d: "ConvTranspose1d",
    ConvTranspose2d: "ConvTranspose2d",
    ConvTranspose3d: "ConvTranspose3d",
}


@pytest.mark.parametrize("case", ALL_CASES, ids=_case_id)
def test_layer_matches_torch_with_copied_weights(case):
    torch = pytest.importorskip("torch")
    cls, args, kwargs, shape = case
    layer, x, y, gy, gx = _run(case)
    tlayer = getattr(torch.nn, TORCH_NAMES[cls])(*args, **kwargs).double()
    with torch.no_grad():
        tlayer.weight.copy_(torch.from_numpy(layer.weight))
        if layer.bias is not None:
            tlayer.bias.copy_(torch.from_numpy(layer.bias))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = tlayer(xt)
    yt.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        layer.weight_grad, tlayer.weight.grad.numpy(), rtol=1e-10, atol=1e-10
    )
    if layer.bias is not None:
        np.testing.assert_allclose(
            layer.bias_grad, tlayer.bias.grad.numpy(), rtol=1e-10, atol=1e-10
        )


def test_transpose_output_size_matches_torch():
    torch = pytest.importorskip("torch")
    layer = ConvTranspose2d(3, 2, 3, stride=3, padding=1, dtype=np.float64, seed=0)
    tlayer = torch.nn.ConvTranspose2d(3, 2, 3, stride=3, padding=1).double()
    with torch.no_grad():
        tlayer.weight.copy_(torch.from_numpy(layer.weight))
        tlayer.bias.copy_(torch.from_numpy(layer.bias))
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    for size in [(10, 10), (11, 12), (2, 3, 12, 10)]:
        y = layer(x, output_size=size)
        yt = tlayer(torch.from_numpy(x), output_size=list(size))
        assert y.shape == tuple(yt.shape)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        gx = layer.backward(np.ones_like(y))  # backward uses the output_padding of that call
        assert gx.shape == x.shape
    with pytest.raises(ValueError, match="output_size"):
        layer(x, output_size=(13, 10))


# ----------------------------------------------------------------- initialisation


INIT_CASES = [
    # (class, args, kwargs, PyTorch's fan_in = weight.shape[1] * prod(kernel))
    (Conv2d, (64, 128, 5), {}, 64 * 25),
    (Conv1d, (96, 60, 7), dict(groups=3), 32 * 7),
    (Conv3d, (16, 32, 3), {}, 16 * 27),
    (ConvTranspose2d, (64, 128, 5), {}, 128 * 25),  # weight (in, out/groups, ...)
    (ConvTranspose1d, (60, 96, 7), dict(groups=3), 32 * 7),
    (ConvTranspose3d, (32, 16, 3), {}, 16 * 27),
]


@pytest.mark.parametrize(
    "cls, args, kwargs, fan_in", INIT_CASES, ids=lambda v: getattr(v, "__name__", None)
)
def test_default_init_is_pytorchs_distribution(cls, args, kwargs, fan_in):
    layer = cls(*args, **kwargs, seed=0)
    bound = 1 / math.sqrt(fan_in)
    for name, arr in (("weight", layer.weight), ("bias", layer.bias)):
        assert arr.dtype == np.float32, name
        assert np.abs(arr).max() <= bound, name
    w = layer.weight.astype(np.float64)
    # U(-b, b): mean 0, variance b^2 / 3, extremes near +-b (n >= 10^4 samples)
    assert w.size >= 10_000
    assert abs(w.mean()) < 4 * bound / math.sqrt(3 * w.size)
    assert w.var() == pytest.approx(bound**2 / 3, rel=0.05)
    assert w.max() > 0.99 * bound and w.min() < -0.99 * bound
    assert layer.bias.min() < 0 < layer.bias.max()
    assert np.abs(layer.bias).max() > 0.5 * bound


@pytest.mark.parametrize(
    "cls, args, kwargs, fan_in", INIT_CASES, ids=lambda v: getattr(v, "__name__", None)
)
def test_default_init_matches_a_torch_layer(cls, args, kwargs, fan_in):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tlayer = getattr(torch.nn, TORCH_NAMES[cls])(*args, **kwargs)
    layer = cls(*args, **kwargs, seed=0)
    tw = tlayer.weight.detach().numpy().astype(np.float64)
    w = layer.weight.astype(np.float64)
    assert w.shape == tw.shape
    assert layer.bias.shape == tuple(tlayer.bias.shape)
    # both bounded by the same b, both with variance b^2 / 3
    assert np.abs(w).max() <= np.abs(tw).max() * 1.01
    assert np.abs(tw).max() <= np.abs(w).max() * 1.01
    assert w.var() == pytest.approx(tw.var(), rel=0.08)
    tb = tlayer.bias.detach().numpy()
    assert np.abs(layer.bias).max() <= 1 / math.sqrt(fan_in) >= np.abs(tb).max()


def test_seed_and_rng_are_reproducible():
    a, b = Conv2d(3, 4, 3, seed=7), Conv2d(3, 4, 3, seed=7)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    c = Conv2d(3, 4, 3, seed=8)
    assert not np.array_equal(a.weight, c.weight)
    d = Conv2d(3, 4, 3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weight, d.weight)
    with pytest.raises(ValueError, match="rng or seed"):
        Conv2d(3, 4, 3, rng=np.random.default_rng(0), seed=0)
    with pytest.raises(TypeError, match="rng"):
        Conv2d(3, 4, 3, rng=0)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dtype_is_kept(dtype):
    layer = ConvTranspose2d(2, 3, 3, dtype=dtype, seed=0)
    assert layer.weight.dtype == dtype and layer.bias.dtype == dtype
    x = np.ones((1, 2, 4, 4), dtype)
    y = layer(x)
    assert y.dtype == dtype
    layer.backward(np.ones_like(y))
    assert layer.weight_grad.dtype == dtype and layer.bias_grad.dtype == dtype


# ------------------------------------------------------------ gradient bookkeeping


@pytest.mark.parametrize("case", [CONV_CASES[0], TRANSPOSE_CASES[1]], ids=_case_id)
def test_gradients_accumulate_until_zero_grad(case):
    layer, x, y, gy, gx = _run(case)
    first_w, first_b = layer.weight_grad.copy(), layer.bias_grad.copy()
    layer(x)
    layer.backward(gy)
    np.testing.assert_allclose(layer.weight_grad, 2 * first_w, rtol=1e-12)
    np.testing.assert_allclose(layer.bias_grad, 2 * first_b, rtol=1e-12)
    layer.zero_grad()
    assert not layer.weight_grad.any() and not layer.bias_grad.any()
    assert layer.weight_grad.shape == layer.weight.shape
    layer.backward(gy)  # backward again uses the kept input
    np.testing.assert_allclose(layer.weight_grad, first_w, rtol=1e-12)


def test_grads_start_at_zero_and_parameters_are_listed():
    layer = Conv1d(2, 3, 3, seed=0)
    assert not layer.weight_grad.any() and not layer.bias_grad.any()
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    nobias = Conv1d(2, 3, 3, bias=False, seed=0)
    assert nobias.bias is None and nobias.bias_grad is None
    assert [name for name, _ in nobias.named_parameters()] == ["weight"]


def test_inputs_are_not_written_and_read_only_inputs_work():
    layer = Conv2d(2, 3, 3, padding=1, seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    x.flags.writeable = False
    x_copy = x.copy()
    y = layer(x)
    gy = np.ones_like(y)
    gy.flags.writeable = False
    layer.backward(gy)
    layer.backward(gy)
    np.testing.assert_array_equal(x, x_copy)
    assert (gy == 1).all()


@pytest.mark.parametrize("cls", [Conv2d, ConvTranspose2d])
def test_backward_before_forward_raises(cls):
    layer = cls(2, 3, 3, seed=0)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 3, 4, 4), np.float32))


@pytest.mark.parametrize("case", [CONV_CASES[2], TRANSPOSE_CASES[0]], ids=_case_id)
def test_wrong_shaped_gradient_raises_and_names_the_shape(case):
    layer, x, y, gy, gx = _run(case)
    before = layer.weight_grad.copy()
    bad = np.ones((*y.shape[:-1], y.shape[-1] + 1))
    with pytest.raises(ValueError, match=r"grad_y must have .*" + str(y.shape[-1])):
        layer.backward(bad)
    np.testing.assert_array_equal(layer.weight_grad, before)  # nothing accumulated


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: Conv2d(3, 4, 3, groups=2), ValueError, "in_channels"),
        (lambda: Conv2d(4, 3, 3, groups=2), ValueError, "out_channels"),
        (lambda: Conv2d(0, 3, 3), ValueError, "in_channels"),
        (lambda: Conv2d(2.0, 3, 3), TypeError, "in_channels"),
        (lambda: Conv2d(2, 3, (3, 3, 3)), ValueError, "kernel_size"),
        (lambda: Conv2d(2, 3, 0), ValueError, "kernel_size"),
        (lambda: Conv2d(2, 3, 3, stride=0), ValueError, "stride"),
        (lambda: Conv2d(2, 3, 3, padding="causal"), ValueError, "padding"),
        (lambda: Conv2d(2, 3, 3, padding=-1), ValueError, "padding"),
        (lambda: Conv2d(2, 3, 3, padding_mode="mirror"), ValueError, "padding_mode"),
        (lambda: Conv2d(2, 3, 3, bias=None), TypeError, "bias"),
        (lambda: Conv2d(2, 3, 3, dtype=np.int32), TypeError, "dtype"),
        (
            lambda: ConvTranspose2d(2, 3, 3, stride=2, output_padding=2),
            ValueError,
            "output_padding",
        ),
        (lambda: ConvTranspose2d(2, 3, 3, padding="same"), ValueError, "padding"),
        (lambda: ConvTranspose2d(2, 3, 3, padding_mode="reflect"), ValueError, "padding_mode"),
    ],
)
def test_bad_constructor_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_bad_input_is_refused_by_forward():
    layer = Conv2d(2, 3, 3, seed=0)
    with pytest.raises(ValueError) as info:
        layer(np.ones((1, 3, 5, 5), np.float32))
    assert str(info.value) == (
        "Conv2d with in_channels=2 expected input [1, 3, 5, 5] to have 2 channels (axis 1), "
        "but got 3 channels instead"
    )
    with pytest.raises(ValueError, match=r"expected input \[3, 5, 5\] to have 2 channels"):
        layer(np.ones((3, 5, 5), np.float32))  # unbatched
    with pytest.raises(ValueError, match=r"ConvTranspose1d with in_channels=4 expected input"):
        ConvTranspose1d(4, 2, 3)(np.ones((1, 2, 5)))
    with pytest.raises(TypeError, match="dtype"):
        layer(np.ones((1, 2, 5, 5), np.int64))


@pytest.mark.slow
def test_layers_are_exported_and_import_stays_light():
    for name in (
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
    ):
        assert getattr(convgrad, name) is getattr(convgrad.layers, name)
        assert name in convgrad.__all__
    code = (
        "import sys, convgrad, convgrad.nn; "
        "heavy = [m for m in ('torch', 'matplotlib', 'tqdm', 'sklearn', 'dask', 'rich') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dask_input_passes_through_when_supported():
    da = pytest.importorskip("dask.array")
    pytest.importorskip("convgrad._dask")
    layer = Conv2d(2, 3, 3, padding=1, seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 2, 5, 5))
    y = layer(da.from_array(x, chunks=(2, 2, 5, 5)))
    gx = layer.backward(da.ones(y.shape, chunks=(2, 3, 5, 5)))
    dask_w = np.asarray(layer.weight_grad)
    ref = Conv2d(2, 3, 3, padding=1, seed=0, dtype=np.float64)
    np.testing.assert_allclose(np.asarray(y), ref(x), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(gx), ref.backward(np.ones(y.shape)), rtol=1e-12)
    np.testing.assert_allclose(dask_w, ref.weight_grad, rtol=1e-12)


@pytest.mark.parametrize(
    "make", [lambda d: Conv2d(2, 3, 3, dtype=d), lambda d: Linear(4, 2, dtype=d)]
)
def test_dtype_is_validated_and_none_means_float32(make):
    for bad in ("foo", "int8", object):
        with pytest.raises(TypeError, match="dtype"):
            make(bad)
    # PyTorch: dtype=None is the default dtype, float32
    assert make(None).weight.dtype == np.float32
    assert make("float64").weight.dtype == np.float64


# ------------------------------------------------- the input kept for backward, changed


def _one_ulp_up(x):
    x.flat[x.size // 2] = np.nextafter(x.flat[x.size // 2], np.inf)


def _swap_first_and_last(x):
    first, last = x.flat[0], x.flat[-1]
    x.flat[0], x.flat[-1] = last, first


def _reverse(x):
    flat = x.reshape(-1)  # a view: the test inputs are contiguous
    flat[:] = flat[::-1].copy()


IN_PLACE = {
    "x*=2": lambda x: x.__imul__(2),
    "x[0]=0": lambda x: x.__setitem__(0, 0),
    "one element one ulp up": _one_ulp_up,
    "two elements swapped": _swap_first_and_last,
    "reversed": _reverse,
}


def _twin(case):
    """A layer built like _run's, for comparisons."""
    cls, args, kwargs, _ = case
    return cls(*args, **kwargs, dtype=np.float64, seed=0)


@pytest.mark.parametrize("modify", IN_PLACE.values(), ids=list(IN_PLACE))
@pytest.mark.parametrize("case", ALL_CASES, ids=_case_id)
def test_input_changed_in_place_after_forward_is_refused(case, modify):
    layer, x, _, gy, _ = _run(case)
    weight_grad = layer.weight_grad.copy()
    modify(x)
    name = type(layer).__name__
    with pytest.raises(RuntimeError, match=f"^{name}.backward: the input saved by forward was "):
        layer.backward(gy)
    np.testing.assert_array_equal(layer.weight_grad, weight_grad)  # nothing was added
    # forward again on the changed input: backward then gives its exact gradients
    layer.zero_grad()
    layer(x)
    gx = layer.backward(gy)
    twin = _twin(case)
    twin(x.copy())
    np.testing.assert_array_equal(gx, twin.backward(gy))
    np.testing.assert_array_equal(layer.weight_grad, twin.weight_grad)


def test_the_error_says_how_to_avoid_it():
    layer, x, _, gy, _ = _run(CONV_CASES[3])
    x[0, 0, 0, 0] += 1
    with pytest.raises(RuntimeError) as info:
        layer.backward(gy)
    message = str(info.value)
    assert "modified in place after forward" in message
    assert "call forward again" in message and "x.copy()" in message


@pytest.mark.parametrize("case", ALL_CASES, ids=_case_id)
def test_unchanged_input_gives_the_same_gradients_every_time(case):
    layer, x, _, gy, gx = _run(case)
    twin = _twin(case)
    twin(x.copy())
    np.testing.assert_array_equal(gx, twin.backward(gy))
    np.testing.assert_array_equal(layer.weight_grad, twin.weight_grad)
    x *= 2
    x /= 2  # changed and changed back: the same values, so backward is allowed
    np.testing.assert_array_equal(layer.backward(gy), gx)
    np.testing.assert_array_equal(layer.weight_grad, 2 * twin.weight_grad)


def test_read_only_and_strided_inputs_are_kept_without_copies_and_checked():
    rng = np.random.default_rng(5)
    layer = Conv2d(3, 4, 3, padding=1, seed=0, dtype=np.float64)
    base = rng.standard_normal((2, 5, 6, 3))  # channels last
    views = {
        "channels-last transposed": base.transpose(0, 3, 1, 2),
        "every other column": rng.standard_normal((2, 3, 5, 12))[..., ::2],
    }
    for name, x in views.items():
        assert not x.flags.c_contiguous, name
        x.flags.writeable = False  # a read-only view of a writeable array
        y = layer(x)
        gy = rng.standard_normal(y.shape)
        layer.zero_grad()
        gx = layer.backward(gy)
        np.testing.assert_array_equal(layer.backward(gy), gx)  # twice, read-only
        twin = Conv2d(3, 4, 3, padding=1, seed=0, dtype=np.float64)
        twin(np.ascontiguousarray(x))
        np.testing.assert_array_equal(gx, twin.backward(gy))
        # a change made through the array the view looks into is seen
        x.base[1, 2, 3, 0] = 7.0
        with pytest.raises(RuntimeError, match="modified in place after forward"):
            layer.backward(gy)


def test_a_list_input_is_kept_as_the_layers_own_array():
    layer = Conv1d(1, 2, 2, seed=0, dtype=np.float64)
    x = [[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]]
    y = layer(x)
    gy = np.arange(y.size, dtype=np.float64).reshape(y.shape)
    x[0][0][0] = 9.0  # changes the list, not the array the layer made from it
    twin = Conv1d(1, 2, 2, seed=0, dtype=np.float64)
    twin(np.array([[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]]))
    np.testing.assert_array_equal(layer.backward(gy), twin.backward(gy))
    np.testing.assert_array_equal(layer.weight_grad, twin.weight_grad)

"""convgrad against the independent float64 reference, on every option, 1-, 2- and 3-D."""

from __future__ import annotations

import numpy as np
import pytest

import convgrad as cg
from conftest import assert_close
from convgrad import reference as ref
from oracles import CASES, IDS, TRANSPOSE_CASES


def _arrays(x_shape, w_shape, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal(x_shape),
        rng.standard_normal(w_shape),
        rng.standard_normal(w_shape[0]),
    )


@pytest.mark.parametrize("x_shape, w_shape, options", CASES, ids=IDS)
def test_forward_and_gradients_match_reference(x_shape, w_shape, options):
    x, w, b = _arrays(x_shape, w_shape)
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
    assert_close(cg.conv_bias_grad(gy), rb)


@pytest.mark.parametrize("x_shape, w_shape, options", CASES, ids=IDS)
def test_adjoint_identity(x_shape, w_shape, options):
    """<conv(x, w), g> == <x, dX(g)> == <w, dW(g)>: exact in float64, no finite differences."""
    x, w, _ = _arrays(x_shape, w_shape, seed=2)
    y = cg.conv(x, w, **options)
    g = np.random.default_rng(3).standard_normal(y.shape)
    lhs = float((y * g).sum())
    if options.get("padding_mode", "zeros") == "zeros":  # linear in x only without mode padding
        assert np.isclose(lhs, (x * cg.conv_input_grad(g, w, x.shape, **options)).sum(), rtol=1e-10)
    assert np.isclose(lhs, (w * cg.conv_weight_grad(x, g, w.shape, **options)).sum(), rtol=1e-10)


@pytest.mark.parametrize("x_shape, w_shape, options", TRANSPOSE_CASES)
def test_transpose_matches_reference(x_shape, w_shape, options):
    x, w, _ = _arrays(x_shape, w_shape)
    b = np.random.default_rng(5).standard_normal(w_shape[1] * options.get("groups", 1))
    y = cg.conv_transpose(x, w, b, **options)
    assert_close(y, ref.conv_transpose(x, w, b, **options))
    g = np.random.default_rng(4).standard_normal(y.shape)
    gx, gw, gb = cg.conv_transpose_backward(g, x, w, b, **options)
    # adjoint identities against the reference transposed conv (linear in x and in w)
    inner = float((ref.conv_transpose(x, w, **options) * g).sum())
    assert np.isclose(inner, (x * gx).sum(), rtol=1e-10)
    assert np.isclose(inner, (w * gw).sum(), rtol=1e-10)
    assert_close(gb, g.sum(axis=(0, *range(2, g.ndim))))
    # finite differences on a few weight entries
    eps, rng = 1e-6, np.random.default_rng(6)
    for _ in range(3):
        i = tuple(rng.integers(0, s) for s in w.shape)
        wp, wm = w.copy(), w.copy()
        wp[i] += eps
        wm[i] -= eps
        numeric = (
            (ref.conv_transpose(x, wp, **options) - ref.conv_transpose(x, wm, **options)) * g
        ).sum() / (2 * eps)
        assert abs(numeric - gw[i]) < 1e-6 * max(1.0, abs(numeric))


def test_transpose_is_input_gradient():
    x, w, _ = _arrays((2, 6, 5, 5), (6, 2, 3, 3))
    options = dict(stride=2, padding=1, dilation=1, groups=3)
    out_shape = (2, 6, 9, 9)  # (5-1)*2 - 2 + 3 = 9
    np.testing.assert_allclose(
        cg.conv_transpose(x, w, **options),
        cg.conv_input_grad(x, w, out_shape, **options),
        atol=1e-12,
    )


def test_origin_layer_exactly():
    """X 5x100x100, 10 filters 5x5x5 -> O 10x96x96; dE/dF 10x5x5x5; dE/dX 5x100x100."""
    rng = np.random.default_rng(7)
    x, w, b = (
        rng.standard_normal((5, 100, 100)),
        rng.standard_normal((10, 5, 5, 5)),
        rng.standard_normal(10),
    )
    o = cg.conv(x, w, b)
    assert o.shape == (10, 96, 96)
    assert_close(o, ref.conv(x[None], w, b)[0])
    gy = rng.standard_normal(o.shape)
    gx, gw, gb = cg.conv_backward(gy, x, w, b)
    rx, rw, rb = ref.conv_grads(x[None], w, gy[None])
    assert (gx.shape, gw.shape, gb.shape) == ((5, 100, 100), (10, 5, 5, 5), (10,))
    assert_close(gx, rx[0])
    assert_close(gw, rw)
    assert_close(gb, rb)
    # the origin answer: dE/dF[k, c] is X[c] correlated with dE/dO[k] (valid), for every pair
    for k, c in [(0, 0), (9, 4), (3, 2)]:
        single = cg.conv(x[c][None, None], gy[k][None, None])[0, 0]
        assert_close(gw[k, c], single)


def test_unbatched_equals_batched_of_one(rng):
    x, w, b = (
        rng.standard_normal((3, 8, 7)),
        rng.standard_normal((4, 3, 3, 3)),
        rng.standard_normal(4),
    )
    options = dict(stride=2, padding=1)
    y = cg.conv(x, w, b, **options)
    np.testing.assert_array_equal(y, cg.conv(x[None], w, b, **options)[0])
    gy = rng.standard_normal(y.shape)
    gx, gw, gb = cg.conv_backward(gy, x, w, b, **options)
    bx, bw, bb = cg.conv_backward(gy[None], x[None], w, b, **options)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gx, bx[0])
    np.testing.assert_array_equal(gw, bw)
    np.testing.assert_array_equal(gb, bb)
    assert cg.conv_input_grad(gy, w, x.shape, **options).shape == x.shape
    np.testing.assert_allclose(cg.conv_bias_grad(gy, batched=False), gy.sum(axis=(1, 2)))
    xt = rng.standard_normal((4, 5, 5))
    wt = rng.standard_normal((4, 2, 3, 3))
    np.testing.assert_allclose(
        cg.conv_transpose(xt, wt, stride=2)[None], cg.conv_transpose(xt[None], wt, stride=2)
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_low_precision_dtypes(dtype, rng):
    x = rng.standard_normal((2, 4, 12, 12)).astype(dtype)
    w = (rng.standard_normal((6, 4, 3, 3)) / 6).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    y = cg.conv(x, w, b, padding=1, stride=2)
    assert y.dtype == dtype
    assert_close(y, ref.conv(x, w, b, padding=1, stride=2), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, gb = cg.conv_backward(gy, x, w, b, padding=1, stride=2)
    rx, rw, rb = ref.conv_grads(x, w, gy, padding=1, stride=2)
    assert gx.dtype == gw.dtype == gb.dtype == dtype
    for got, want in ((gx, rx), (gw, rw), (gb, rb)):
        assert_close(got, want, dtype)
    yt = cg.conv_transpose(x, w.transpose(1, 0, 2, 3).copy(), stride=2)
    assert yt.dtype == dtype


def test_float16_accumulates_in_float32():
    """A long float16 sum that float16 accumulation would get visibly wrong."""
    x = np.full((1, 1, 4096), 1.0, dtype=np.float16)
    w = np.full((1, 1, 4096), 0.1, dtype=np.float16)
    y = cg.conv(x, w)
    exact = 4096 * float(np.float16(0.1))
    assert abs(float(y[0, 0, 0]) - exact) / exact < 1e-3


def test_mixed_dtypes_promote_as_numpy(rng):
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3))
    assert cg.conv(x, w).dtype == np.float64
    assert cg.conv(x, w.astype(np.float16)).dtype == np.float32
    gy = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    assert cg.conv_weight_grad(x, gy, w.shape).dtype == np.float32


def test_non_contiguous_read_only_and_array_like_inputs(rng):
    base = rng.standard_normal((2, 6, 10, 12))
    x = base[:, ::2, :, ::2]  # non-contiguous view
    w = np.asfortranarray(rng.standard_normal((4, 3, 3, 3)))
    b = rng.standard_normal(4)
    for a in (x, w, b):
        a.flags.writeable = False
    expected = ref.conv(x, w, b, padding=1)
    assert_close(cg.conv(x, w, b, padding=1), expected)

    class ArrayLike:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return np.asarray(self.a, dtype=dtype)

    assert_close(cg.conv(ArrayLike(x), ArrayLike(w), b.tolist(), padding=1), expected)
    gy = rng.standard_normal(expected.shape)
    gy.flags.writeable = False
    gx, gw, gb = cg.conv_backward(gy, x, w, b, padding=1, padding_mode="reflect")
    rx, rw, _ = ref.conv_grads(x, w, gy, padding=1, padding_mode="reflect")
    assert_close(gx, rx)
    assert_close(gw, rw)


def test_inputs_are_never_written(rng):
    arrays = [rng.standard_normal(s) for s in ((2, 4, 7, 7), (4, 2, 3, 3), (4,))]
    copies = [a.copy() for a in arrays]
    x, w, b = arrays
    y = cg.conv(x, w, b, padding=1, groups=2, padding_mode="circular")
    gy = rng.standard_normal(y.shape)
    gy_copy = gy.copy()
    cg.conv_backward(gy, x, w, b, padding=1, groups=2, padding_mode="circular")
    cg.conv_transpose(x, w, b[:4], groups=2)
    for a, c in zip([*arrays, gy], [*copies, gy_copy]):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize(
    "shape, pads",
    [
        ((2, 3, 5, 6), ((1, 2), (3, 0))),
        ((3, 2, 7), ((2, 3),)),
        ((1, 2, 4, 5, 6), ((1, 1), (2, 0), (0, 3))),
    ],
)
def test_mode_padding_into_a_buffer_is_numpys(mode, shape, pads, rng):
    """The padding modes written into a reused buffer (interior once, then each border row
    from the row it repeats, axis by axis) give np.pad's array, corners included, over
    whatever the buffer held."""
    from convgrad._padding import pad

    x = rng.standard_normal(shape)
    width = [(0, 0)] * (x.ndim - len(pads)) + list(pads)
    expected = np.pad(x, width, mode={"replicate": "edge", "circular": "wrap"}.get(mode, mode))
    out = np.full(expected.shape, np.nan)
    assert pad(x, pads, mode, out) is out
    np.testing.assert_array_equal(out, expected)


def test_mode_padded_inputs_are_laid_out_in_parallel_and_never_shared(rng, monkeypatch):
    """A mode-padded input goes into a reused buffer of the calling thread, cut over the
    pool by images when large: two calls in a row each get their own exact result (the
    second's padding does not reach the first's), on one thread and on the pool alike."""
    from threadpoolctl import threadpool_limits

    from convgrad import _runner

    monkeypatch.setattr(_runner, "PARALLEL_PAD_BYTES", 1)  # the split even for this size
    split = []
    original = _runner.pad
    monkeypatch.setattr(_runner, "pad", lambda a, *r: split.append(a.shape[0]) or original(a, *r))
    x1, x2 = rng.standard_normal((2, 4, 4, 9, 8))
    w = rng.standard_normal((3, 4, 3, 3))
    opts = dict(padding=(2, 1), padding_mode="reflect")
    first = cg.conv(x1, w, **opts)
    second = cg.conv(x2, w, **opts)
    assert_close(first, ref.conv(x1, w, **opts))
    assert_close(second, ref.conv(x2, w, **opts))
    assert not np.shares_memory(first, second)
    if _runner._process.jobs.workers(4) > 1:  # a machine of more than one core
        assert max(split) < 4  # the four images in parts
    with threadpool_limits(1):
        split.clear()
        np.testing.assert_array_equal(cg.conv(x1, w, **opts), first)
        assert split == [4]


def test_rows_never_touched_get_zero_gradient(rng):
    """Stride 3 over 8 rows with a 3-tap kernel uses rows 0..5 only: rows 6, 7 get 0."""
    x = rng.standard_normal((1, 1, 8))
    w = rng.standard_normal((1, 1, 3))
    gy = rng.standard_normal((1, 1, 2))
    gx = cg.conv_input_grad(gy, w, x.shape, stride=3)
    np.testing.assert_array_equal(gx[0, 0, 6:], 0)
    assert np.all(gx[0, 0, :6] != 0)


def test_small_workspace_limit_gives_same_answer(rng):
    x, w = rng.standard_normal((3, 4, 12, 12)), rng.standard_normal((5, 4, 3, 3))
    y = cg.conv(x, w, padding=1)
    np.testing.assert_allclose(cg.conv(x, w, padding=1, workspace_limit=2000), y, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        cg.conv_weight_grad(x, gy, w.shape, padding=1, workspace_limit=1000),
        cg.conv_weight_grad(x, gy, w.shape, padding=1),
        atol=1e-10,
    )


@pytest.mark.parametrize(
    "x_shape, w_shape, options",
    [
        ((2, 2, 7), (3, 2, 3), dict(stride=2, padding=(1,), padding_mode="reflect")),
        (
            (1, 4, 6, 7),
            (4, 2, 3, 2),
            dict(stride=(2, 3), dilation=(1, 2), groups=2, padding="same"),
        ),
        (
            (2, 2, 4, 4, 5),
            (2, 2, 2, 2, 3),
            dict(padding=1, padding_mode="circular", stride=(1, 2, 2)),
        ),
    ],
)
def test_gradients_by_finite_differences(x_shape, w_shape, options):
    """Central differences of E = <conv(x, w, b), g> against all three gradients."""
    rng = np.random.default_rng(8)
    x, w, b = (
        rng.standard_normal(x_shape),
        rng.standard_normal(w_shape),
        rng.standard_normal(w_shape[0]),
    )
    g = rng.standard_normal(cg.conv(x, w, b, **options).shape)
    grads = cg.conv_backward(g, x, w, b, **options)
    eps = 1e-6
    for which, (array, grad) in enumerate(zip((x, w, b), grads)):
        for _ in range(5):
            i = tuple(rng.integers(0, s) for s in array.shape)
            plus, minus = [list((x, w, b)) for _ in range(2)]
            plus[which], minus[which] = array.copy(), array.copy()
            plus[which][i] += eps
            minus[which][i] -= eps
            numeric = ((cg.conv(*plus, **options) - cg.conv(*minus, **options)) * g).sum() / (
                2 * eps
            )
            assert abs(numeric - grad[i]) < 1e-6 * max(1.0, abs(numeric)), (which, i)


@pytest.mark.parametrize("kind", ["f8", "f4", "f2"])
def test_non_native_byte_order_is_accepted_and_left_alone(kind, rng):
    """Arrays in the other byte order ('>f8' on little-endian machines) give the native
    results, in the native dtype, and are never modified."""
    other = ">" if np.little_endian else "<"
    x, w, b = (rng.standard_normal(s) for s in ((2, 4, 8, 7), (6, 2, 3, 3), (6,)))
    native = [a.astype(kind) for a in (x, w, b)]
    swapped = [a.astype(other + kind) for a in native]
    assert not any(a.dtype.isnative for a in swapped)
    before = [a.copy() for a in swapped]
    opts = dict(stride=2, padding=1, groups=2)
    y = cg.conv(*swapped, **opts)
    assert y.dtype == np.dtype(kind) and y.dtype.isnative
    np.testing.assert_array_equal(y, cg.conv(*native, **opts))
    assert_close(y, ref.conv(x, w, b, **opts), dtype=np.dtype(kind).type)
    gy = rng.standard_normal(y.shape).astype(kind)
    grads = cg.conv_backward(gy.astype(other + kind), *swapped, **opts)
    for got, want in zip(grads, cg.conv_backward(gy, *native, **opts)):
        assert got.dtype == np.dtype(kind)
        np.testing.assert_array_equal(got, want)
    # the transposed convolution, from y back to x's shape
    t = cg.conv_transpose(y.astype(other + kind), swapped[1], None, stride=2, padding=1, groups=2)
    np.testing.assert_array_equal(
        t, cg.conv_transpose(y, native[1], None, stride=2, padding=1, groups=2)
    )
    for a, c in zip(swapped, before):
        assert a.dtype == c.dtype
        np.testing.assert_array_equal(a, c)

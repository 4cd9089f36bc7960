"""nn companions: each module against torch, a finite-difference check through a whole
network, optimizers against torch.optim, save/load and refusal of bad files."""

from __future__ import annotations

import math
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest

from convgrad import nn


def _torch():
    return pytest.importorskip("torch")


# ------------------------------------------------------------------------ modules


def test_relu_forward_backward():
    x = np.array([[-2.0, -0.0, 0.5], [3.0, -1e-9, 1e-9]])
    relu = nn.ReLU()
    np.testing.assert_array_equal(relu(x), np.maximum(x, 0))
    g = np.arange(6.0).reshape(2, 3) + 1
    np.testing.assert_array_equal(relu.backward(g), g * (x > 0))
    assert relu(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize(
    "kernel, stride, padding, shape",
    [
        (2, None, 0, (2, 3, 8, 8)),
        (3, 2, 1, (2, 2, 7, 9)),
        ((2, 3), (1, 2), 0, (3, 5, 6)),
        (3, 1, 1, (1, 1, 4, 4)),
    ],
)
def test_maxpool_matches_torch(kernel, stride, padding, shape):
    torch = _torch()
    x = np.random.default_rng(0).standard_normal(shape)
    pool = nn.MaxPool2d(kernel, stride, padding)
    y = pool(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.max_pool2d(xt, kernel, stride, padding)
    gy = np.random.default_rng(1).standard_normal(y.shape)
    yt.backward(torch.from_numpy(gy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(pool.backward(gy), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_maxpool_gradient_by_definition():
    """Without torch: each output's gradient lands on its window's maximum."""
    x = np.random.default_rng(2).standard_normal((1, 1, 4, 4))
    pool = nn.MaxPool2d(2)
    y = pool(x)
    g = pool.backward(np.ones_like(y))
    assert g.sum() == 4 and set(np.unique(g)) == {0.0, 1.0}
    for i in range(2):
        for j in range(2):
            win = x[0, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
            assert y[0, 0, i, j] == win.max()
            assert g[0, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2][win == win.max()] == 1


def test_flatten_round_trip():
    x = np.arange(24.0).reshape(2, 3, 4)
    f = nn.Flatten()
    assert f(x).shape == (2, 12)
    np.testing.assert_array_equal(f.backward(f(x)), x)


def test_linear_matches_torch_and_init_bounds():
    torch = _torch()
    lin = nn.Linear(300, 200, dtype=np.float64, seed=0)
    bound = 1 / math.sqrt(300)
    assert np.abs(lin.weight).max() <= bound and lin.weight.max() > 0.99 * bound
    assert lin.weight.var() == pytest.approx(bound**2 / 3, rel=0.05)
    assert np.abs(lin.bias).max() <= bound
    tl = torch.nn.Linear(300, 200).double()
    assert lin.weight.var() == pytest.approx(tl.weight.detach().numpy().var(), rel=0.05)
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(lin.weight))
        tl.bias.copy_(torch.from_numpy(lin.bias))
    x = np.random.default_rng(1).standard_normal((7, 300))
    gy = np.random.default_rng(2).standard_normal((7, 200))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = tl(xt)
    yt.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(lin(x), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lin.backward(gy), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lin.weight_grad, tl.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lin.bias_grad, tl.bias.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_cross_entropy_matches_torch_and_is_stable():
    torch = _torch()
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((9, 5)) * 3
    labels = rng.integers(0, 5, 9)
    loss, grad = nn.softmax_cross_entropy(logits, labels)
    lt = torch.from_numpy(logits).requires_grad_(True)
    tloss = torch.nn.functional.cross_entropy(lt, torch.from_numpy(labels))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=1e-12, atol=1e-14)
    big, g = nn.softmax_cross_entropy(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([0, 0]))
    assert np.isfinite(big) and big == pytest.approx(500.0)
    assert np.isfinite(g).all()


@pytest.mark.parametrize(
    "labels, error, match",
    [
        (np.array([0.0, 1.0]), TypeError, "labels"),
        (np.array([0, 1, 2]), ValueError, "labels must have shape"),
        (np.array([0, 3]), ValueError, r"labels must lie in \[0, 3\)"),
    ],
)
def test_cross_entropy_rejects_bad_labels(labels, error, match):
    with pytest.raises(error, match=match):
        nn.softmax_cross_entropy(np.zeros((2, 3)), labels)


@pytest.mark.parametrize(
    "make, x_shape",
    [
        (nn.ReLU, (2, 3)),
        (lambda: nn.MaxPool2d(2), (1, 1, 4, 4)),
        (nn.Flatten, (2, 3, 4)),
        (lambda: nn.Linear(3, 2, seed=0), (4, 3)),
    ],
    ids=["ReLU", "MaxPool2d", "Flatten", "Linear"],
)
def test_companions_refuse_backward_before_forward_and_bad_gradients(make, x_shape):
    with pytest.raises(RuntimeError, match="before forward"):
        make().backward(np.ones(x_shape))
    module = make()
    y = module(np.random.default_rng(0).standard_normal(x_shape))
    with pytest.raises(ValueError, match="grad_y must have the shape"):
        module.backward(np.ones((*y.shape, 1)))
    with pytest.raises(RuntimeError, match="before computing"):
        nn.CrossEntropyLoss().backward()


# ------------------------------------------------------- NaN and ±inf, as in PyTorch


def _special(shape, seed, dtype=np.float64):
    """Standard normal values with about 10% NaN, 7% +inf and 7% -inf (seeded)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    pick = rng.random(shape)
    x[pick < 0.1] = np.nan
    x[(pick >= 0.1) & (pick < 0.17)] = np.inf
    x[(pick >= 0.17) & (pick < 0.24)] = -np.inf
    return x.astype(dtype)


def _same(actual, expected, rtol=1e-12):
    """Equal values, with NaN and ±inf in the same places."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol, equal_nan=True)


def test_relu_nan_and_inf_as_torch():
    torch = _torch()
    x = np.concatenate([[np.nan, np.inf, -np.inf, -0.0, 0.0, 2.0, -3.0], _special(40, 0)])
    relu = nn.ReLU()
    y = relu(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.relu(xt)
    gy = np.random.default_rng(1).standard_normal(x.shape)
    yt.backward(torch.from_numpy(gy))
    _same(y, yt.detach().numpy())
    np.testing.assert_array_equal(np.signbit(y), np.signbit(yt.detach().numpy()))
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == 0
    _same(relu.backward(gy), xt.grad.numpy())
    assert relu.backward(gy)[0] == gy[0]  # NaN passes its gradient on, as in torch
    # NaN and ±inf in the incoming gradient go where torch sends them
    gy_special = _special(x.shape, 2)
    xt.grad = None
    torch.relu(xt).backward(torch.from_numpy(gy_special))
    _same(relu.backward(gy_special), xt.grad.numpy())


@pytest.mark.parametrize(
    "kernel, stride, padding, shape",
    [
        (2, None, 0, (2, 3, 8, 8)),
        (3, 2, 1, (2, 2, 7, 9)),
        ((2, 3), (1, 2), (1, 1), (3, 5, 6)),
        (3, 1, 1, (1, 2, 5, 5)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_maxpool_nan_and_inf_as_torch(kernel, stride, padding, shape, dtype):
    torch = _torch()
    x = _special(shape, 3, dtype)
    x[..., 0, :] = -np.inf  # windows whose maximum is -inf, next to the padding
    pool = nn.MaxPool2d(kernel, stride, padding)
    x_before = x.copy()
    y = pool(x)
    np.testing.assert_array_equal(x, x_before)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.max_pool2d(xt, kernel, stride, padding)
    gy = np.random.default_rng(4).standard_normal(y.shape).astype(dtype)
    yt.backward(torch.from_numpy(gy))
    assert np.isnan(y).any() and np.isinf(y).any()
    _same(y, yt.detach().numpy())
    _same(pool.backward(gy), xt.grad.numpy(), rtol=1e-6)


def test_maxpool_all_minus_inf_window_with_padding_sends_the_gradient_inside():
    pool = nn.MaxPool2d((1, 2), padding=(0, 1))
    x = np.full((1, 1, 1, 4), -np.inf)
    y = pool(x)
    np.testing.assert_array_equal(y, np.full((1, 1, 1, 3), -np.inf))
    # windows (pad, x0), (x1, x2), (x3, pad): the first element inside wins each tie
    np.testing.assert_array_equal(pool.backward(np.ones_like(y)), [[[[1.0, 1.0, 0.0, 1.0]]]])


def test_flatten_and_linear_nan_and_inf_as_torch():
    torch = _torch()
    x = _special((4, 2, 3), 5)
    flat = nn.Flatten()
    _same(flat(x), torch.flatten(torch.from_numpy(x), 1).numpy())
    gy = _special((4, 6), 6)
    _same(flat.backward(gy), gy.reshape(4, 2, 3))

    lin = nn.Linear(6, 3, dtype=np.float64, seed=0)
    tl = torch.nn.Linear(6, 3).double()
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(lin.weight))
        tl.bias.copy_(torch.from_numpy(lin.bias))
    xl = _special((5, 6), 7)
    xl[0] = np.random.default_rng(8).standard_normal(6)  # one finite row stays finite
    xt = torch.from_numpy(xl).requires_grad_(True)
    yt = tl(xt)
    gl = np.random.default_rng(9).standard_normal((5, 3))
    yt.backward(torch.from_numpy(gl))
    y = lin(xl)
    assert np.isfinite(y[0]).all() and np.isnan(y).any()
    _same(y, yt.detach().numpy())
    _same(lin.backward(gl), xt.grad.numpy())
    _same(lin.weight_grad, tl.weight.grad.numpy())
    _same(lin.bias_grad, tl.bias.grad.numpy())


def test_cross_entropy_nan_and_inf_as_torch():
    torch = _torch()
    nan, inf = np.nan, np.inf
    rows = [
        ([nan, 1.0, 2.0], 0),
        ([1.0, nan, 2.0], 0),
        ([inf, 1.0, 2.0], 0),
        ([1.0, 2.0, inf], 0),
        ([-inf, 1.0, 2.0], 0),  # the label's logit is -inf: loss +inf
        ([1.0, -inf, 2.0], 0),  # another logit -inf: finite
        ([-inf, -inf, -inf], 2),
        ([0.5, -1.0, 2.0], 1),
    ]
    for batch in ([r] for r in rows), [rows[5:]], [rows]:
        for chosen in batch:
            logits = np.array([r for r, _ in chosen])
            labels = np.array([k for _, k in chosen])
            loss, grad = nn.softmax_cross_entropy(logits, labels)
            lt = torch.from_numpy(logits).requires_grad_(True)
            tloss = torch.nn.functional.cross_entropy(lt, torch.from_numpy(labels))
            tloss.backward()
            _same(np.float64(loss), tloss.detach().numpy())
            _same(grad, lt.grad.numpy())
    assert math.isnan(nn.softmax_cross_entropy(np.array([[nan, 1.0]]), np.array([1]))[0])


def test_one_nan_pixel_gives_a_nan_loss_as_in_torch():
    """A NaN input must not vanish in ReLU: the loss is NaN (torch agrees), not finite
    with NaN hiding in every gradient."""
    torch = _torch()
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64, seed=0),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, 3, dtype=np.float64, seed=1),
    )
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(18, 3),
    ).double()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 1, 6, 6))
    x[2, 0, 3, 3] = np.nan
    labels = np.array([0, 1, 2, 0])
    loss, _, grads = _loss_and_grads(model, x, labels)
    tloss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(labels))
    tloss.backward()
    assert math.isnan(loss) and math.isnan(tloss.item())
    for name, param in tm.named_parameters():
        assert np.isnan(grads[name]).any() == bool(param.grad.isnan().any()), name


# ------------------------------------------------------------------ whole network


def _small_net(seed: int, dtype=np.float64) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 6 * 6, 4, dtype=dtype, rng=rng),
    )


def _loss_and_grads(model, x, labels):
    model.zero_grad()
    loss, g = nn.softmax_cross_entropy(model(x), labels)
    gx = model.backward(g)
    return loss, gx, {name: p.grad.copy() for name, p in model.named_parameters()}


def test_finite_differences_through_a_whole_network():
    model = _small_net(0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 6, 6))
    labels = np.array([0, 3, 1])
    _, gx, grads = _loss_and_grads(model, x, labels)

    def loss_at() -> float:
        return nn.softmax_cross_entropy(model(x), labels)[0]

    eps = 1e-6
    checked = 0
    for name, p in model.named_parameters():
        flat = p.value.reshape(-1)
        for i in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            orig = flat[i]
            flat[i] = orig + eps
            up = loss_at()
            flat[i] = orig - eps
            down = loss_at()
            flat[i] = orig
            numeric = (up - down) / (2 * eps)
            assert grads[name].reshape(-1)[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8), name
            checked += 1
    xf = x.reshape(-1)
    for i in rng.choice(xf.size, size=10, replace=False):
        orig = xf[i]
        xf[i] = orig + eps
        up = loss_at()
        xf[i] = orig - eps
        down = loss_at()
        xf[i] = orig
        assert gx.reshape(-1)[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)
    assert checked == sum(min(6, g.size) for g in grads.values())


def test_whole_network_matches_torch():
    torch = _torch()
    model = _small_net(3)
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(72, 4),
    ).double()
    state = model.state_dict()
    assert set(state) == set(tm.state_dict())  # same '0.weight'-style names
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    x = np.random.default_rng(4).standard_normal((5, 2, 6, 6))
    labels = np.array([0, 1, 2, 3, 1])
    loss, gx, grads = _loss_and_grads(model, x, labels)
    xt = torch.from_numpy(x).requires_grad_(True)
    tloss = torch.nn.functional.cross_entropy(tm(xt), torch.from_numpy(labels))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, param in tm.named_parameters():
        np.testing.assert_allclose(
            grads[name], param.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name
        )


def test_sequential_parameters_and_zero_grad():
    model = _small_net(0)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias"]
    assert len(model) == 7 and isinstance(model[6], nn.Linear)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6))
    model.backward(np.ones_like(model(x)))
    assert all(p.grad.any() for p in model.parameters())
    model.zero_grad()
    assert not any(p.grad.any() for p in model.parameters())


# ---------------------------------------------------------------------- optimizers


def _optimizer_trajectory(make_ours, make_torch, steps=6):
    torch = _torch()
    rng = np.random.default_rng(0)
    lin = nn.Linear(4, 3, dtype=np.float64, seed=0)
    tparams = [
        torch.tensor(lin.weight.copy(), requires_grad=True),
        torch.tensor(lin.bias.copy(), requires_grad=True),
    ]
    opt, topt = make_ours(lin.parameters()), make_torch(tparams)
    for _ in range(steps):
        gw, gb = rng.standard_normal((3, 4)), rng.standard_normal(3)
        opt.zero_grad()
        lin.weight_grad, lin.bias_grad = lin.weight_grad + gw, lin.bias_grad + gb
        old = lin.weight
        old_copy = old.copy()
        opt.step()
        np.testing.assert_array_equal(old, old_copy)  # a new array, the old one untouched
        topt.zero_grad()
        tparams[0].grad, tparams[1].grad = torch.from_numpy(gw), torch.from_numpy(gb)
        topt.step()
        np.testing.assert_allclose(lin.weight, tparams[0].detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(lin.bias, tparams[1].detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=0.1),
        dict(lr=0.1, momentum=0.9),
        dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
    ],
)
def test_sgd_matches_torch(kwargs):
    torch = _torch()
    _optimizer_trajectory(lambda p: nn.SGD(p, **kwargs), lambda p: torch.optim.SGD(p, **kwargs))


@pytest.mark.parametrize(
    "kwargs", [dict(lr=0.01), dict(lr=0.1, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)]
)
def test_adam_matches_torch(kwargs):
    torch = _torch()
    _optimizer_trajectory(lambda p: nn.Adam(p, **kwargs), lambda p: torch.optim.Adam(p, **kwargs))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
        ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ],
)
def test_optimizers_take_nan_and_inf_gradients_as_torch(name, kwargs):
    torch = _torch()
    lin = nn.Linear(4, 3, dtype=np.float64, seed=0)
    tparams = [torch.tensor(lin.weight.copy()), torch.tensor(lin.bias.copy())]
    opt = getattr(nn, name)(lin.parameters(), **kwargs)
    topt = getattr(torch.optim, name)(tparams, **kwargs)
    for step in range(3):
        gw, gb = _special((3, 4), 10 + step), _special(3, 20 + step)
        opt.zero_grad()
        lin.weight_grad, lin.bias_grad = gw, gb
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf, inf / inf
            opt.step()
        tparams[0].grad, tparams[1].grad = torch.from_numpy(gw), torch.from_numpy(gb)
        topt.step()
        _same(lin.weight, tparams[0].numpy())
        _same(lin.bias, tparams[1].numpy())


def test_optimizer_arguments_are_checked():
    lin = nn.Linear(2, 2, seed=0)
    with pytest.raises(ValueError, match="lr"):
        nn.SGD(lin.parameters(), lr=-1)
    with pytest.raises(ValueError, match="betas"):
        nn.Adam(lin, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="nesterov"):
        nn.SGD(lin, nesterov=True)
    with pytest.raises(TypeError, match="params"):
        nn.SGD([lin.weight])
    with pytest.raises(ValueError, match="empty"):
        nn.Adam([])


# --------------------------------------------------------------------- save / load


def _states_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_save_load_round_trip(tmp_path):
    a, b = _small_net(0), _small_net(1)
    assert not _states_equal(a, b)
    path = tmp_path / "model.npz"
    assert nn.save(a, path) == str(path)
    assert nn.save(a, tmp_path / "noext") == str(tmp_path / "noext.npz")
    assert (tmp_path / "noext.npz").exists()
    with np.load(path, allow_pickle=False) as data:  # readable without pickle
        assert sorted(data.files) == sorted(a.state_dict())
    nn.load(b, path)
    assert _states_equal(a, b)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6))
    np.testing.assert_array_equal(a(x), b(x))


def _write(path, state):
    np.savez(path, **state)
    return path


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: {k: v for k, v in s.items() if k != "3.bias"}, r"missing.*'3\.bias'"),
        (lambda s: {**s, "7.weight": np.zeros(3)}, r"unexpected.*'7\.weight'"),
        (lambda s: {**s, "6.weight": np.zeros((4, 71))}, r"'6\.weight' must have shape \(4, 72\)"),
        (lambda s: {**s, "0.bias": np.arange(3)}, r"'0\.bias' must be a float array"),
        (
            lambda s: {**s, "6.bias": np.array([{"evil": 1}, 2, 3, 4], dtype=object)},
            r"'6\.bias'.*pickled",
        ),
    ],
    ids=["missing", "unexpected", "shape", "int-dtype", "object"],
)
def test_mismatched_files_are_refused_and_model_unchanged(tmp_path, edit, match):
    model = _small_net(0)
    before = model.state_dict()
    state = edit(_small_net(1).state_dict())
    path = _write(tmp_path / "bad.npz", state)
    with pytest.raises(ValueError, match=match):
        nn.load(model, path)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_pickle_files_are_refused(tmp_path):
    model = _small_net(0)
    before = model.state_dict()
    path = tmp_path / "model.pkl"
    with open(path, "wb") as fh:
        pickle.dump(model.state_dict(), fh)
    with pytest.raises(ValueError, match="not a parameter archive"):
        nn.load(model, path)
    npy = tmp_path / "one.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match=r"\.npz archive"):
        nn.load(model, npy)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def _first_member_data(path) -> tuple[bytearray, int]:
    """The bytes of a zip archive and the offset of its first member's (stored or
    deflated) data, read from the member's local header."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        offset = archive.infolist()[0].header_offset
    name_length = int.from_bytes(data[offset + 26 : offset + 28], "little")
    extra_length = int.from_bytes(data[offset + 28 : offset + 30], "little")
    return data, offset + 30 + name_length + extra_length


def _damaged_files(tmp_path):
    """name -> path of a damaged copy of a saved model (deterministic damage)."""
    raw, compressed = tmp_path / "raw.npz", tmp_path / "compressed.npz"
    np.savez(raw, **_small_net(0).state_dict())
    np.savez_compressed(compressed, **_small_net(0).state_dict())
    data, start = _first_member_data(raw)
    flipped = bytearray(data)
    start += 128  # past the .npy header: the array's bytes
    flipped[start : start + 16] = bytes(255 - b for b in data[start : start + 16])
    packed, start = _first_member_data(compressed)
    packed[start : start + 8] = b"\xff" * 8
    files = {
        "empty": b"",
        "truncated": bytes(data[: len(data) // 2]),
        "tail cut": bytes(data[:-10]),
        "bad CRC": bytes(flipped),
        "zip magic then junk": b"PK\x03\x04" + bytes(range(64)),
        "damaged deflate": bytes(packed),
    }
    paths = {}
    for i, (name, content) in enumerate(files.items()):
        paths[name] = tmp_path / f"damaged{i}.npz"
        paths[name].write_bytes(content)
    return paths


def test_load_refuses_empty_truncated_and_corrupt_files_naming_them(tmp_path):
    target = _small_net(1)
    before = target.state_dict()
    for name, path in _damaged_files(tmp_path).items():
        with pytest.raises(ValueError) as info:
            nn.load(target, path)
        assert repr(str(path)) in str(info.value), (name, str(info.value))
        after = target.state_dict()
        assert all(np.array_equal(before[k], after[k]) for k in before), name
    with pytest.raises(FileNotFoundError):
        nn.load(target, tmp_path / "missing.npz")


def test_save_refuses_a_path_without_a_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _small_net(0)
    for path in ("", str(tmp_path / "sub") + os.sep):
        with pytest.raises(ValueError, match="path must name a file"):
            nn.save(model, path)
    assert list(tmp_path.iterdir()) == []  # no hidden '.npz' written anywhere
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        nn.save(model, 3)


def test_the_other_byte_order_is_accepted(tmp_path):
    """'>f8' arrays (on a little-endian machine) give the native results and are left
    alone; archives and dtypes in that byte order load as native float arrays."""
    other = ">" if np.little_endian else "<"
    model = _small_net(0)
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6))
    labels = np.array([0, 3, 1])
    swapped = x.astype(other + "f8")
    before = swapped.copy()
    loss, gx, grads = _loss_and_grads(model, x, labels)
    loss_s, gx_s, grads_s = _loss_and_grads(model, swapped, labels)
    assert loss_s == loss
    np.testing.assert_array_equal(gx_s, gx)
    for name in grads:
        np.testing.assert_array_equal(grads_s[name], grads[name])
        assert grads_s[name].dtype == np.float64
    assert swapped.dtype == np.dtype(other + "f8")
    np.testing.assert_array_equal(swapped, before)

    source = _small_net(1)
    state = {k: v.astype(other + "f8") for k, v in source.state_dict().items()}
    nn.load(model, _write(tmp_path / "swapped.npz", state))
    assert _states_equal(model, source)
    assert all(v.dtype == np.float64 for v in model.state_dict().values())
    lin = nn.Linear(3, 2, dtype=other + "f4", seed=0)
    assert lin.weight.dtype == np.float32 and lin.weight.dtype.isnative


def test_load_casts_floats_to_the_model_dtype(tmp_path):
    model32 = _small_net(0, dtype=np.float32)
    path = _write(tmp_path / "m.npz", _small_net(1, dtype=np.float64).state_dict())
    nn.load(model32, path)
    assert all(v.dtype == np.float32 for v in model32.state_dict().values())
    np.testing.assert_allclose(
        model32.state_dict()["0.weight"], _small_net(1).state_dict()["0.weight"], rtol=1e-6
    )


@pytest.mark.parametrize(
    "modify",
    [
        lambda x: x.__imul__(2),
        lambda x: x.__setitem__((1, 2), np.nextafter(x[1, 2], np.inf)),
        lambda x: x.__setitem__(slice(None), x[::-1].copy()),  # rows permuted
        lambda x: x.__setitem__(slice(None), x[:, ::-1].copy()),  # features permuted
    ],
    ids=["x*=2", "one element one ulp up", "rows reversed", "features reversed"],
)
def test_linear_refuses_an_input_changed_in_place(modify):
    layer = nn.Linear(5, 3, seed=0, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((4, 5))
    gy = np.random.default_rng(3).standard_normal((4, 3))
    layer(x)
    gx = layer.backward(gy)
    np.testing.assert_array_equal(layer.backward(gy), gx)  # twice, unchanged
    weight_grad = layer.weight_grad.copy()
    modify(x)
    with pytest.raises(RuntimeError, match="^Linear.backward: the input saved by forward was "):
        layer.backward(gy)
    np.testing.assert_array_equal(layer.weight_grad, weight_grad)
    layer.zero_grad()
    layer(x)  # forward again: backward gives the changed input's exact gradients
    layer.backward(gy)
    np.testing.assert_array_equal(layer.weight_grad, gy.T @ x)


def test_linear_takes_read_only_and_strided_input():
    layer = nn.Linear(5, 3, seed=0, dtype=np.float64)
    base = np.random.default_rng(2).standard_normal((4, 10))
    x = base[:, ::2]
    x.flags.writeable = False
    gy = np.ones((4, 3))
    layer(x)
    layer.backward(gy)
    np.testing.assert_array_equal(layer.weight_grad, gy.T @ np.ascontiguousarray(x))
    base[0, 0] += 1  # seen through the read-only view
    with pytest.raises(RuntimeError, match="modified in place after forward"):
        layer.backward(gy)


def test_in_place_change_is_caught_inside_a_network():
    model = _small_net(0)
    x = np.random.default_rng(4).standard_normal((2, 2, 6, 6))
    _, g = nn.softmax_cross_entropy(model(x), np.array([0, 3]))
    x[0, 1, 2, 3] = 0.0
    with pytest.raises(RuntimeError, match="^Conv2d.backward: the input saved by forward"):
        model.backward(g)

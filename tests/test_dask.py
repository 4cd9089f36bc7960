"""Dask arrays through every public function: same results and errors as NumPy, lazily.

Threaded scheduler for the bulk; a 2-process LocalCluster (loopback) for a subset, a
killed worker, and an out-of-core run over a ``.npy`` memmap under a memory bound.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from dask.core import get_dependencies  # noqa: E402

import convgrad as cg  # noqa: E402
from convgrad import _dask, functional  # noqa: E402

pytestmark = pytest.mark.slow  # dask graphs and LocalClusters

RNG = np.random.default_rng(1234)


def randn(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


def lazy(a, batch=2, other=None):
    """``a`` as dask, ``batch`` rows per chunk, ``other`` elements per chunk elsewhere."""
    return da.from_array(a, chunks=(batch, *(other or s for s in a.shape[1:])))


def close(actual, expected, rtol=1e-10, atol=1e-10):
    assert isinstance(actual, np.ndarray)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@pytest.fixture(autouse=True)
def threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


def test_import_convgrad_does_not_import_dask():
    code = "import sys, convgrad; sys.exit(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], env=os.environ).returncode == 0


# --------------------------------------------------------------- every function vs NumPy

CONV_CASES = [
    # (input shape, weight shape, options)
    ((5, 3, 11), (4, 3, 3), dict(stride=2, padding=1)),
    ((5, 4, 12), (6, 2, 3), dict(groups=2, dilation=2, padding="same", padding_mode="circular")),
    ((5, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), padding=((1, 2), (0, 1)), groups=2)),
    ((5, 3, 9, 9), (4, 3, 3, 3), dict(padding=2, padding_mode="reflect", dilation=(1, 2))),
    ((5, 2, 6, 5, 7), (3, 2, 2, 3, 2), dict(stride=2, padding=1, padding_mode="replicate")),
    ((5, 4, 5, 6, 5), (4, 1, 3, 1, 2), dict(groups=4, padding="same", stride=(1, 2, 2))),
]


@pytest.mark.parametrize("x_shape, w_shape, opts", CONV_CASES)
def test_conv_functions_match_numpy(x_shape, w_shape, opts):
    x, w, b = randn(*x_shape), randn(*w_shape), randn(w_shape[0])
    y = cg.conv(x, w, b, **opts)
    gy = randn(*y.shape)
    # several batch chunks (5 = 2 + 2 + 1) and chunked channel/spatial axes, merged first
    xd, gyd = lazy(x, 2, 1), lazy(gy, 2, 3)

    yd = cg.conv(xd, w, b, **opts)
    assert isinstance(yd, da.Array) and yd.chunks[0] == (2, 2, 1)
    assert all(len(c) == 1 for c in yd.chunks[1:])
    close(yd.compute(), y)
    close(
        cg.conv_input_grad(gyd, w, x.shape, **opts).compute(),
        cg.conv_input_grad(gy, w, x.shape, **opts),
    )
    close(
        cg.conv_weight_grad(xd, gyd, w.shape, **opts).compute(),
        cg.conv_weight_grad(x, gy, w.shape, **opts),
    )
    close(cg.conv_bias_grad(gyd).compute(), cg.conv_bias_grad(gy))
    expected = cg.conv_backward(gy, x, w, b, **opts)
    lazy_grads = cg.conv_backward(gyd, xd, w, b, **opts)
    assert lazy_grads[0].chunks[0] == (2, 2, 1)
    for got, want in zip(dask.compute(*lazy_grads), expected):
        close(got, want)
    grad_x, grad_w, grad_b = cg.conv_backward(gyd, xd, w, None, **opts)
    assert grad_b is None
    close(grad_w.compute(), expected[1])


TRANSPOSE_CASES = [
    ((5, 4, 7), (4, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((5, 4, 6, 5), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0), groups=2, dilation=(1, 2))),
    # output_padding >= stride (allowed as it is < dilation)
    ((5, 2, 5, 4), (2, 2, 3, 3), dict(stride=1, output_padding=1, dilation=2)),
    ((5, 2, 4, 3, 4), (2, 3, 2, 3, 2), dict(stride=2, padding=(0, 1, 0))),
]


@pytest.mark.parametrize("x_shape, w_shape, opts", TRANSPOSE_CASES)
def test_transposed_functions_match_numpy(x_shape, w_shape, opts):
    x, w = randn(*x_shape), randn(*w_shape)
    b = randn(w_shape[1] * opts.get("groups", 1))
    y = cg.conv_transpose(x, w, b, **opts)
    gy = randn(*y.shape)
    xd, gyd = lazy(x, 2, 1), lazy(gy, 3, 2)
    yd = cg.conv_transpose(xd, w, b, **opts)
    assert yd.chunks[0] == (2, 2, 1)
    close(yd.compute(), y)
    for got, want in zip(
        dask.compute(*cg.conv_transpose_backward(gyd, xd, w, b, **opts)),
        cg.conv_transpose_backward(gy, x, w, b, **opts),
    ):
        close(got, want)


def test_unbatched_input():
    x, w, b = randn(3, 10, 9), randn(4, 3, 3, 3), randn(4)
    y = cg.conv(x, w, b, padding=1)
    gy = randn(*y.shape)
    xd, gyd = da.from_array(x, chunks=(1, 5, 5)), da.from_array(gy, chunks=(2, 5, 5))
    close(cg.conv(xd, w, b, padding=1).compute(), y)
    close(
        cg.conv_input_grad(gyd, w, x.shape, padding=1).compute(),
        cg.conv_input_grad(gy, w, x.shape, padding=1),
    )
    close(
        cg.conv_weight_grad(xd, gyd, w.shape, padding=1).compute(),
        cg.conv_weight_grad(x, gy, w.shape, padding=1),
    )
    close(cg.conv_bias_grad(gyd, False).compute(), cg.conv_bias_grad(gy, False))
    for got, want in zip(
        dask.compute(*cg.conv_backward(gyd, xd, w, b, padding=1)),
        cg.conv_backward(gy, x, w, b, padding=1),
    ):
        close(got, want)
    wt = randn(3, 2, 2, 2)
    close(cg.conv_transpose(xd, wt, stride=2).compute(), cg.conv_transpose(x, wt, stride=2))
    gt = randn(*cg.conv_transpose(x, wt, stride=2).shape)
    for got, want in zip(
        dask.compute(*cg.conv_transpose_backward(da.from_array(gt, chunks=1), xd, wt, None, 2)[:2]),
        cg.conv_transpose_backward(gt, x, wt, None, 2)[:2],
    ):
        close(got, want)


def test_numpy_and_dask_mixed():
    x, w, b = randn(6, 3, 8, 8), randn(4, 3, 3, 3), randn(4)
    gy = randn(6, 4, 6, 6)
    expected = cg.conv_backward(gy, x, w, b)
    wd, bd = da.from_array(w, chunks=(2, 1, 3, 3)), da.from_array(b, chunks=2)
    for args in [
        (lazy(gy, 4), x, w, b),  # x NumPy: chunked like grad_output
        (gy, lazy(x, 4), w, b),  # grad_output NumPy: chunked like x
        (lazy(gy, 2), lazy(x, 3), w, b),  # different batch chunks: x's follow grad_output's
        (gy, x, wd, bd),  # only weight and bias are dask
    ]:
        grads = cg.conv_backward(*args)
        assert all(isinstance(g, da.Array) for g in grads)
        for got, want in zip(dask.compute(*grads), expected):
            close(got, want)
    close(cg.conv_weight_grad(x, lazy(gy, 4), w.shape).compute(), expected[1])
    close(cg.conv_weight_grad(lazy(x, 5), gy, w.shape).compute(), expected[1])
    close(cg.conv(x, wd, bd).compute(), cg.conv(x, w, b))
    close(cg.conv_input_grad(gy, wd, x.shape).compute(), expected[0])


@pytest.mark.parametrize(
    "dtypes", [("float32",) * 3, ("float16",) * 3, ("float16", "float32", "float16")]
)
def test_dtypes_and_half_precision_follow_numpy(dtypes):
    xt, wt, gt = (np.dtype(d) for d in dtypes)
    x, w, b = randn(9, 3, 7, 7, dtype=xt), randn(4, 3, 3, 3, dtype=wt), randn(4, dtype=wt)
    gy = randn(9, 4, 5, 5, dtype=gt)
    tol = dict(rtol=2e-3, atol=2e-2) if np.float16 in (xt, wt, gt) else dict(rtol=1e-5, atol=1e-5)
    close(cg.conv(lazy(x, 4), w, b).compute(), cg.conv(x, w, b), **tol)
    for got, want in zip(
        dask.compute(*cg.conv_backward(lazy(gy, 2), lazy(x, 2), w, b)),
        cg.conv_backward(gy, x, w, b),
    ):
        close(got, want, **tol)
    # float16 partial sums accumulate in float32: the tree sum of 5 chunks stays as exact
    close(cg.conv_bias_grad(lazy(gy, 2)).compute(), cg.conv_bias_grad(gy), **tol)


def test_against_torch():
    torch = pytest.importorskip("torch")
    x, w, b = randn(5, 4, 9, 9), randn(6, 2, 3, 3), randn(6)
    gy = randn(5, 6, 5, 5)
    opts = dict(stride=2, padding=1, groups=2)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, **opts)
    yt.backward(torch.tensor(gy))
    close(cg.conv(lazy(x), w, b, **opts).compute(), yt.detach().numpy())
    got = dask.compute(*cg.conv_backward(lazy(gy), lazy(x), w, b, **opts))
    for g, t in zip(got, (xt, wt, bt)):
        close(g, t.grad.numpy())


# ---------------------------------------------------------------- laziness and graphs


def _raising_scheduler(*args, **kwargs):
    raise AssertionError("a convgrad function computed something when called")


def test_calling_computes_nothing(monkeypatch):
    calls = []

    def source(block):
        calls.append(block.shape)
        return block

    x, w, b = randn(6, 3, 8, 8), randn(4, 3, 3, 3), randn(4)
    xd = lazy(x, 2).map_blocks(source, dtype=x.dtype, meta=np.empty((0,) * 4))
    gyd = lazy(randn(6, 4, 6, 6), 2).map_blocks(source, dtype=x.dtype, meta=np.empty((0,) * 4))
    wt = randn(3, 2, 2, 2)
    # no task may run, and no NumPy convolution either (dask never probes with empty arrays)
    for name in _dask.__all__:
        monkeypatch.setattr(functional, name, _raising_scheduler)
    with dask.config.set(scheduler=_raising_scheduler):
        results = [
            cg.conv(xd, w, b),
            cg.conv_input_grad(gyd, w, x.shape),
            cg.conv_weight_grad(xd, gyd, w.shape),
            cg.conv_bias_grad(gyd),
            *cg.conv_backward(gyd, xd, w, b),
            cg.conv_transpose(xd, wt),
            *cg.conv_transpose_backward(lazy(randn(6, 2, 9, 9)), xd, wt, b[:2]),
            cg.conv(xd[0], w, b),
        ]
    monkeypatch.undo()
    assert calls == []
    assert all(isinstance(r, da.Array) and r._meta.dtype == r.dtype for r in results)
    computed = dask.compute(*results)
    assert calls and all(0 not in shape for shape in calls)
    assert [r.shape for r in computed] == [r.shape for r in results]


def _graph(*arrays):
    """The low-level graph that ``dask.compute(*arrays)`` runs (optimised together)."""
    import dask.base

    if hasattr(dask.base, "collections_to_dsk"):  # dask < 2025
        return dict(dask.base.collections_to_dsk(arrays, optimize_graph=True))
    expr = dask.base.collections_to_expr(arrays, optimize_graph=True)
    return dict(expr.optimize().__dask_graph__())


def test_weight_and_bias_enter_the_graph_once():
    # w: 12.8 kB; chunks of x and grad_output: 1.2 and 2 kB
    x, w, b = randn(16, 2, 6, 6), randn(32, 2, 5, 5), randn(32)
    gy = randn(16, 32, 2, 2)
    wd = da.from_array(w, chunks=8)  # a dask weight in 4 pieces: merged once
    for weight, arrays in [
        (w, [cg.conv(lazy(x, 2), w, b)]),
        (w, cg.conv_backward(lazy(gy, 2), lazy(x, 2), w, b)),
        (wd, cg.conv_backward(lazy(gy, 2), lazy(x, 2), wd, b)),
    ]:
        graph = _graph(*arrays)
        # no task carries the weight (or a piece of it) but the weight's own keys
        carriers = {k for k, v in graph.items() if len(pickle.dumps(v)) >= w.nbytes // 4}
        assert len(carriers) == (1 if weight is w else 4)
        (weight_key,) = _dask._once(weight).__dask_keys__()[0][0][0]
        assert weight_key in graph
        users = [k for k in graph if weight_key in get_dependencies(graph, k)]
        assert len(users) == 8  # 8 batch chunks; conv_backward: one task for all three


def test_weight_grad_is_a_tree_of_partial_sums():
    x, gy = randn(40, 2, 5, 5), randn(40, 3, 3, 3)
    grad_w = cg.conv_weight_grad(lazy(x, 1), lazy(gy, 1), (3, 2, 3, 3))
    graph = _graph(grad_w)
    fan_in = max(len(get_dependencies(graph, k)) for k in graph)
    assert fan_in <= _dask.SPLIT_EVERY
    close(grad_w.compute(), cg.conv_weight_grad(x, gy, (3, 2, 3, 3)))


def test_empty_batch_chunks_are_dropped():
    x, w = randn(5, 2, 6, 6), randn(3, 2, 3, 3)
    xd = da.from_array(x, chunks=((2, 0, 2, 1), 2, 6, 6))  # a chunk of 0 rows
    assert 0 in xd.chunks[0]
    y = cg.conv(xd, w)
    assert y.chunks[0] == (2, 2, 1)
    close(y.compute(), cg.conv(x, w))


# ------------------------------------------------------------------------- eager errors

X, W, GY = randn(4, 3, 8, 8), randn(6, 3, 3, 3), randn(4, 6, 6, 6)
ERROR_CASES = [
    ("conv", (X.astype(int), W), {}),
    ("conv", (X, W.astype(np.complex128)), {}),
    ("conv", (X, W[:, :2]), {}),
    ("conv", (X, W), dict(groups=2)),
    ("conv", (X, W, np.zeros(5)), {}),
    ("conv", (X, W, np.zeros(6, dtype=bool)), {}),
    ("conv", (X, W), dict(padding_mode="mirror")),
    ("conv", (X, W), dict(padding=-1)),
    ("conv", (X, W), dict(stride=(1, 0))),
    ("conv", (X[..., :2], W), {}),
    ("conv", (X, W), dict(algorithm="magic")),
    ("conv", (X, W), dict(workspace_limit=0)),
    ("conv_input_grad", (GY[:, :5], W, X.shape), {}),
    ("conv_input_grad", (GY, W, X.shape[1:]), {}),
    ("conv_weight_grad", (X, GY[:3], W.shape), {}),
    ("conv_weight_grad", (X, GY, (6, 3, 3)), {}),
    ("conv_bias_grad", (GY[0, 0],), {}),
    ("conv_bias_grad", (GY, 1), {}),
    ("conv_bias_grad", (GY.astype(np.int32),), {}),
    ("conv_backward", (GY, X, W, np.zeros(3)), {}),
    ("conv_backward", (GY[..., :5], X, W), {}),
    ("conv_transpose", (X, W[:, :2]), {}),
    ("conv_transpose", (X[:, :, :3], randn(3, 2, 3, 3)), dict(output_padding=2, stride=2)),
    ("conv_transpose", (X, randn(3, 2, 3, 3)), dict(padding="same")),
    ("conv_transpose_backward", (GY, X, randn(3, 2, 3, 3)), {}),
]


@pytest.mark.parametrize("name, args, kwargs", ERROR_CASES)
def test_errors_are_eager_and_identical_to_numpy(name, args, kwargs):
    func = getattr(cg, name)
    with pytest.raises((ValueError, TypeError)) as numpy_error:
        func(*args, **kwargs)
    # each array argument in turn as dask; the first in each group that is an array
    for i, arg in enumerate(args):
        if not isinstance(arg, np.ndarray) or i > 1:
            continue
        lazy_args = list(args)
        lazy_args[i] = da.from_array(arg, chunks=1)
        with dask.config.set(scheduler=_raising_scheduler):
            with pytest.raises(numpy_error.type) as dask_error:
                func(*lazy_args, **kwargs)
        assert str(dask_error.value) == str(numpy_error.value)


def test_unknown_chunk_sizes_are_refused():
    xd = lazy(X, 2)
    xd = xd[xd[:, 0, 0, 0] > -np.inf]  # a boolean mask leaves the batch length unknown
    with pytest.raises(ValueError, match="x must have known chunk sizes"):
        cg.conv(xd, W)


# ------------------------------------------------------------------- out of core


def test_out_of_core_forward_and_weight_grad_stay_under_a_memory_bound(tmp_path):
    """x on disk (.npy), y streamed to disk, dE/dw for E = |y|^2 / 2 (dE/dy = y)."""
    from convgrad.examples import out_of_core

    bound = 3 * 2**20  # bytes of Python/NumPy heap the computation may use at its peak
    n, c, size = 160, 3, 64
    out_of_core.write_random(tmp_path / "x.npy", (n, c, size, size))
    w = randn(4, c, 3, 3, dtype=np.float32)
    grad_w, peak = out_of_core.forward_and_weight_grad(
        tmp_path / "x.npy", tmp_path / "y.npy", w, rows=4, workspace_limit=2**18
    )
    x, y = np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy")
    assert x.nbytes > 2 * bound and y.nbytes > 2 * bound
    assert peak < bound, f"peak {peak / 2**20:.1f} MiB over the {bound / 2**20:.0f} MiB bound"
    np.testing.assert_allclose(y, cg.conv(x, w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        grad_w, out_of_core.numpy_weight_grad(tmp_path / "x.npy", w, 16), rtol=1e-4
    )


# ------------------------------------------------------- a LocalCluster of 2 processes


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    psutil = pytest.importorskip("psutil")
    import cloudpickle

    # the workers cannot import this test module: ship its functions by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster)
    pids = set()
    try:
        yield client, pids
        pids.update(client.run(os.getpid).values())
    finally:
        client.close()
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    # every worker process that ever ran is gone, the killed one and its replacement too
    psutil.wait_procs([p for p in map(_process, pids) if p is not None], timeout=10)
    assert not [
        pid for pid in pids if psutil.pid_exists(pid) and _process(pid).status() != "zombie"
    ]


def _process(pid):
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _on_cluster(client, arrays):
    return client.gather(client.compute(list(arrays)))


def test_local_cluster_matches_threads_and_numpy(client):
    client, _ = client
    x, w, b = randn(7, 4, 9, 8), randn(6, 2, 3, 3), randn(6)
    opts = dict(stride=(2, 1), padding="same", groups=2, padding_mode="circular")
    gy = randn(*cg.conv(x, w, b, **opts).shape)
    xd, gyd = lazy(x, 2, 3), lazy(gy, 3)
    arrays = [cg.conv(xd, w, b, **opts), *cg.conv_backward(gyd, xd, w, b, **opts)]
    wt = randn(4, 3, 2, 3)
    arrays += [cg.conv_transpose(xd, wt, b[:3], stride=2), cg.conv_bias_grad(gyd)]
    on_cluster = _on_cluster(client, arrays)
    on_threads = dask.compute(*arrays)
    expected = [cg.conv(x, w, b, **opts), *cg.conv_backward(gy, x, w, b, **opts)]
    expected += [cg.conv_transpose(x, wt, b[:3], stride=2), cg.conv_bias_grad(gy)]
    for got, same, want in zip(on_cluster, on_threads, expected):
        np.testing.assert_array_equal(got, same)  # the same tasks, bit for bit
        close(got, want)


# float32: a shard and the whole batch may take different exact algorithms (winograd for
# 50 images, gemm for 25), whose roundings differ by ~1e-6; Adam's normalised steps carry
# that to a few 1e-5 in the parameters after 8 steps
@pytest.mark.parametrize("dtype, shards, tolerance", [("float64", 3, 1e-12), ("float32", 2, 1e-4)])
def test_data_parallel_training_reaches_the_single_process_parameters(
    client, dtype, shards, tolerance
):
    pytest.importorskip("sklearn")
    from convgrad.examples import digits, digits_dask

    client, _ = client
    x, y, _, _ = digits.load_data(0, dtype=dtype)
    data = (x[:400], y[:400])
    common = dict(steps=8, batch_size=50, lr=3e-3, seed=0, dtype=np.dtype(dtype))
    parallel, losses = digits_dask.train_parallel(client, data, shards=shards, **common)
    single, single_losses = digits_dask.train_single(data, **common)
    assert losses[-1] < losses[0]  # it trains
    np.testing.assert_allclose(losses, single_losses, rtol=1e-5)
    assert digits_dask.max_difference(parallel, single) < tolerance
    # and it is not trivially so: the parameters moved much more than that
    assert digits_dask.max_difference(parallel, digits.build_model(0, dtype=dtype)) > 1e-3


def _die_once(block, marker):
    """Kill this worker process the first time any chunk gets here."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return block


def test_killed_worker_is_replaced_and_the_result_is_exact(client, tmp_path):
    client, pids = client
    before = client.run(os.getpid)
    pids.update(before.values())
    x, w, b = randn(8, 3, 10, 10), randn(5, 3, 3, 3), randn(5)
    gy = randn(8, 5, 8, 8)
    marker = str(tmp_path / "killed")
    xd = lazy(x, 2).map_blocks(_die_once, marker, dtype=x.dtype, meta=np.empty((0,) * 4))
    grads = cg.conv_backward(lazy(gy, 2), xd, w, b)
    got = _on_cluster(client, grads)

    killed = int(open(marker).read())
    assert killed in before.values()
    expected = dask.compute(*cg.conv_backward(lazy(gy, 2), lazy(x, 2), w, b))
    for g, want in zip(got, expected):
        np.testing.assert_array_equal(g, want)
    # the nanny replaced the worker; nothing is left running or held
    client.wait_for_workers(2, timeout=30)
    after = client.run(os.getpid)
    pids.update(after.values())
    assert len(after) == 2 and killed not in after.values()
    assert _process(killed) is None or _process(killed).status() == "zombie"
    assert not any(client.processing().values())
    deadline = time.monotonic() + 10
    while any(client.has_what().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(client.has_what().values())


# ------------------------------------------------------------------- layers and the CLI


def test_layers_take_dask_input_and_keep_lazy_gradients():
    x, gy = randn(6, 3, 9, 9), randn(6, 4, 5, 5)
    lazy_layer = cg.Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64, seed=0)
    layer = cg.Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64, seed=0)
    y = lazy_layer(lazy(x, 2))
    grad_x = lazy_layer.backward(lazy(gy, 2))
    assert isinstance(y, da.Array) and isinstance(grad_x, da.Array)
    assert isinstance(lazy_layer.weight_grad, da.Array)  # documented: lazy until computed
    close(y.compute(), layer(x))
    close(grad_x.compute(), layer.backward(gy))
    close(np.asarray(lazy_layer.weight_grad), layer.weight_grad)
    close(np.asarray(lazy_layer.bias_grad), layer.bias_grad)

    t_lazy = cg.ConvTranspose2d(3, 2, 3, stride=2, dtype=np.float64, seed=1)
    t = cg.ConvTranspose2d(3, 2, 3, stride=2, dtype=np.float64, seed=1)
    yt = t(x)
    close(t_lazy(lazy(x, 4)).compute(), yt)
    gt = randn(*yt.shape)
    close(t_lazy.backward(lazy(gt, 4)).compute(), t.backward(gt))
    close(np.asarray(t_lazy.weight_grad), t.weight_grad)


def test_cli_knows_the_data_parallel_command(capsys):
    from convgrad import cli

    assert cli.COMMANDS["train-digits-dask"][0] == "convgrad.examples.digits_dask:main"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train-digits-dask", "--help"])
    assert exit_.value.code == 0 and "--shards" in capsys.readouterr().out


def test_other_byte_order_is_accepted():
    other = ">" if np.little_endian else "<"
    x, w, b = randn(4, 3, 7, 7), randn(5, 3, 3, 3), randn(5)
    xs, ws = x.astype(other + "f8"), w.astype(other + "f8")
    lazy_x = lazy(xs, 2)
    assert not lazy_x.dtype.isnative
    close(cg.conv(lazy_x, ws, b, padding=1).compute(), cg.conv(x, w, b, padding=1))
    gy = randn(4, 5, 7, 7)
    for got, want in zip(
        dask.compute(*cg.conv_backward(lazy(gy, 2), lazy_x, ws, b, padding=1)),
        cg.conv_backward(gy, x, w, b, padding=1),
    ):
        close(got, want)
    assert xs.dtype == np.dtype(other + "f8")


class _PastTheChecks(Exception):
    pass


def _stop_before_training(monkeypatch):
    """Loading the data is the step before the cluster starts: make it end the command."""
    from convgrad.examples import digits

    def stop(*args, **kwargs):
        raise _PastTheChecks

    monkeypatch.setattr(digits, "load_data", stop)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--shards", "0"], "argument --shards: must be a positive integer, got '0'"),
        (["--shards", "-1"], "argument --shards: must be a positive integer, got '-1'"),
        (["--shards", "two"], "argument --shards: must be a positive integer, got 'two'"),
        (["--workers", "0"], "argument --workers: must be a positive integer"),
        (["--steps", "-3"], "argument --steps: must be a positive integer"),
        (["--batch-size", "0"], "argument --batch-size: must be a positive integer"),
        (["--lr", "-0.1"], "argument --lr: must be a positive number, got '-0.1'"),
        (["--lr", "nan"], "argument --lr: must be a positive number, got 'nan'"),
    ],
)
def test_data_parallel_command_refuses_bad_counts(args, words, capsys, monkeypatch):
    """Only the argument parsing runs (no cluster is started)."""
    from convgrad import cli

    _stop_before_training(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train-digits-dask", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and words in err, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("convgrad")


def test_data_parallel_command_takes_good_counts(monkeypatch):
    from convgrad import cli

    _stop_before_training(monkeypatch)
    with pytest.raises(_PastTheChecks):
        cli.main(["train-digits-dask", "--shards", "3", "--workers", "1", "--lr", "0.01"])

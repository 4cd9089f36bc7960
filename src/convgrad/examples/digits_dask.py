"""Data-parallel training of the digits CNN: each batch split over Dask workers.

    convgrad train-digits-dask                # or: python -m convgrad.examples.digits_dask
    convgrad train-digits-dask --steps 60 --batch-size 64 --workers 2 --shards 4

The network, data, loss and optimizer are those of ``convgrad.examples.digits``. A
``LocalCluster`` of ``--workers`` processes (1 thread each, loopback only) gets the training
set once. Each step the client splits the batch into ``--shards`` shards; the current
parameters go to each worker once (``scatter``); each shard's task runs forward and
backward on its images and returns its gradients weighted by its share of the batch, so
that their sum is the gradient of the batch-mean loss; Dask sums the shards in a tree
(``dask.array`` ``sum(split_every=2)``) and the client takes the Adam step.

Then (unless ``--no-check``) the same steps run in this one process with
``digits.train_step`` on whole batches, and the largest parameter difference is printed:
the two runs reach the same parameters up to float rounding.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from .. import nn
from .._extras import require, run_command
from . import digits

__all__ = ["batches", "train_single", "train_parallel", "main"]

_MODELS: dict[tuple, nn.Module] = {}  # one model per worker process, reused across steps


def _require_dask_array():
    return require(
        "dask.array", extra="dask", package="dask", purpose="data-parallel training with Dask"
    )


def batches(n: int, batch_size: int, steps: int, seed: int) -> list[np.ndarray]:
    """The index arrays of ``steps`` batches: seeded epoch permutations cut in batches."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < steps:
        order = rng.permutation(n)
        out += [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return out[:steps]


def _flat(model: nn.Module, attribute: str) -> np.ndarray:
    return np.concatenate([getattr(p, attribute).ravel() for p in model.parameters()])


def _unflat(model: nn.Module, vector: np.ndarray) -> dict[str, np.ndarray]:
    state, start = {}, 0
    for name, p in model.named_parameters():
        size = p.value.size
        state[name] = vector[start : start + size].reshape(p.value.shape)
        start += size
    return state


def _shard_task(params: np.ndarray, data: tuple, index: np.ndarray, batch: int) -> np.ndarray:
    """On a worker: [gradient * shard/batch, loss * shard, correct] of one shard, float64."""
    x, y = data
    key = (params.dtype.str, params.size)
    if key not in _MODELS:
        _MODELS[key] = digits.build_model(0, dtype=params.dtype)
    model = _MODELS[key]
    model.load_state_dict(_unflat(model, params))
    model.zero_grad()
    loss, correct = digits.forward_backward(model, x[index], y[index])
    share = len(index) / batch
    grads = _flat(model, "grad").astype(np.float64) * share
    return np.concatenate([grads, [loss * len(index), correct]])


def train_single(data: tuple, steps: int, batch_size: int, lr: float, seed: int, dtype: Any):
    """``steps`` Adam steps in this process. Returns (model, per-step mean losses)."""
    x, y = data
    model = digits.build_model(seed, dtype=dtype)
    optimizer = nn.Adam(model.parameters(), lr=lr)
    losses = []
    for step, index in enumerate(batches(len(y), batch_size, steps, seed)):
        optimizer.lr = digits.cosine_lr(lr, step, steps)
        losses.append(digits.train_step(model, optimizer, x[index], y[index])[0])
    return model, losses


def train_parallel(
    client: Any,
    data: tuple,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    dtype: Any,
    shards: int,
):
    """The same steps with each batch split in ``shards`` over the workers of ``client``.

    Returns (model, per-step mean losses).
    """
    da = _require_dask_array()
    import dask

    x, y = data
    model = digits.build_model(seed, dtype=dtype)
    optimizer = nn.Adam(model.parameters(), lr=lr)
    size = _flat(model, "value").size
    [data_on_workers] = client.scatter([(x, y)], broadcast=True)  # once, for every step
    shard_task = dask.delayed(_shard_task, pure=True)
    losses = []
    for step, index in enumerate(batches(len(y), batch_size, steps, seed)):
        [params] = client.scatter([_flat(model, "value")], broadcast=True, hash=False)
        parts = [
            da.from_delayed(
                shard_task(params, data_on_workers, part, len(index)), (size + 2,), dtype=np.float64
            )
            for part in np.array_split(index, shards)
            if len(part)
        ]
        total = da.stack(parts).sum(axis=0, split_every=2)
        (total,) = dask.compute(total, scheduler=client)
        optimizer.zero_grad()
        for p, g in zip(model.parameters(), _unflat(model, total[:size]).values()):
            p.grad = g.astype(p.value.dtype)
        optimizer.lr = digits.cosine_lr(lr, step, steps)
        optimizer.step()
        losses.append(total[size] / len(index))
        del params
    return model, losses


def max_difference(a: nn.Module, b: nn.Module) -> float:
    """Largest |a - b| over every parameter, relative to the largest |b|."""
    va, vb = _flat(a, "value").astype(np.float64), _flat(b, "value").astype(np.float64)
    return float(np.abs(va - vb).max() / np.abs(vb).max())


def _positive(kind: type, text: str) -> Any:
    """``kind(text)`` if it is a finite number > 0, else an argparse error (which names
    the option: 'argument --shards: must be a positive integer, got '0'')."""
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if not 0 < value < float("inf"):
        noun = "integer" if kind is int else "number"
        raise argparse.ArgumentTypeError(f"must be a positive {noun}, got {text!r}")
    return value


def _count(text: str) -> int:
    return _positive(int, text)


def _rate(text: str) -> float:
    return _positive(float, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="convgrad train-digits-dask", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--steps", type=_count, default=60, help="optimizer steps (%(default)s)")
    parser.add_argument("--batch-size", type=_count, default=64, help="default %(default)s")
    parser.add_argument("--lr", type=_rate, default=3e-3, help="Adam peak lr (%(default)s)")
    parser.add_argument("--workers", type=_count, default=2, help="worker processes (%(default)s)")
    parser.add_argument("--shards", type=_count, default=None, help="per batch (= workers)")
    parser.add_argument("--seed", type=int, default=0, help="default %(default)s")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--no-check", action="store_true", help="skip the single-process run")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    shards = args.shards or args.workers
    # the optional packages it needs, before any work
    _require_dask_array()
    distributed = require("distributed", extra="dask", purpose="training on a Dask LocalCluster")
    digits.require_sklearn()
    Client, LocalCluster = distributed.Client, distributed.LocalCluster

    x_train, y_train, x_test, y_test = digits.load_data(args.seed, dtype=args.dtype)
    data = (x_train, y_train)
    common = (args.steps, args.batch_size, args.lr, args.seed, np.dtype(args.dtype))
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        start = time.perf_counter()
        model, losses = train_parallel(client, data, *common, shards=shards)
        seconds = time.perf_counter() - start
    _, acc = digits.evaluate(model, x_test, y_test)
    print(
        f"{args.steps} steps, batch {args.batch_size} in {shards} shards over {args.workers} "
        f"workers: {seconds:.1f} s; loss {losses[0]:.3f} -> {np.mean(losses[-5:]):.3f}, "
        f"test accuracy {acc:.2%}"
    )
    if args.no_check:
        return 0
    start = time.perf_counter()
    single, single_losses = train_single(data, *common)
    seconds = time.perf_counter() - start
    diff = max_difference(model, single)
    tolerance = 1e-4 if args.dtype == "float32" else 1e-9
    print(
        f"single process: {seconds:.1f} s, loss -> {np.mean(single_losses[-5:]):.3f}; "
        f"parameters differ by at most {diff:.1e} (relative; tolerance {tolerance:.0e})"
    )
    ok = diff <= tolerance
    print("OK: same parameters" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_command(main, sys.argv[1:]))

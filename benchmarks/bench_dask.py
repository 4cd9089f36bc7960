"""Dask benchmark (not a test): the origin layer with a batch, in-process vs Dask.

    PYTHONPATH=src python benchmarks/bench_dask.py [--batch 256] [--chunks 16,32,64]

The origin layer: x (N, 5, 100, 100), 10 filters (10, 5, 5, 5), float32; forward
y = conv(x, w, b) plus backward conv_backward(dE/dy, x, w, b). Timed three ways:
- in-process NumPy (the BLAS's own threads, then 1 BLAS thread);
- Dask threads (2 threads, 1 BLAS thread each), one row per chunk size;
- a LocalCluster of 2 worker processes, 1 thread and 1 BLAS thread each (threadpoolctl),
  loopback only, one row per chunk size.
For Dask, x and dE/dy are already in memory (persisted on the workers) and the results
stay there (``persist``): the times are computing and scheduling, not shipping 100s of MB
back and forth. Per-task overhead: the time of 200 empty tasks on the same scheduler / 200.
The best of ``--repeat`` runs is printed; on a shared machine only ratios within one run
mean anything.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time

import numpy as np

import convgrad as cg


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _noop(block):
    return block


def _limit_blas():
    """Run on each worker: 1 BLAS thread from now on (the limiter is kept alive)."""
    import threadpoolctl

    global _LIMITER
    _LIMITER = threadpoolctl.threadpool_limits(1)
    return [info["num_threads"] for info in threadpoolctl.threadpool_info()]


def _data(batch: int, rng: np.random.Generator):
    x = rng.standard_normal((batch, 5, 100, 100), dtype=np.float32)
    w = rng.standard_normal((10, 5, 5, 5), dtype=np.float32)
    b = rng.standard_normal(10, dtype=np.float32)
    gy = rng.standard_normal((batch, 10, 96, 96), dtype=np.float32)
    return x, w, b, gy


def _lazy_step(x, w, b, gy):
    return [cg.conv(x, w, b), *cg.conv_backward(gy, x, w, b)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--chunks", default="16,32,64", help="batch rows per chunk, comma list")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster")
    args = parser.parse_args(argv)
    chunk_sizes = [int(c) for c in args.chunks.split(",")]

    import dask
    import dask.array as da
    from threadpoolctl import threadpool_limits

    x, w, b, gy = _data(args.batch, np.random.default_rng(0))
    print(
        f"origin layer x ({args.batch}, 5, 100, 100) * w (10, 5, 5, 5), float32, forward + "
        f"backward; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"dask {dask.__version__}"
    )
    rows: list[tuple[str, str, float, int]] = []  # (way, chunk, seconds, tasks)

    cg.conv(x[:2], w, b)  # warm up
    rows.append(("numpy, BLAS threads", "-", _best(lambda: _lazy_numpy(x, w, b, gy), 1), 0))
    with threadpool_limits(1):
        rows.append(("numpy, 1 BLAS thread", "-", _best(lambda: _lazy_numpy(x, w, b, gy), 1), 0))
    numpy_time = min(r[2] for r in rows)

    def run_dask(label, persist, chunks, overhead):
        for rows_per_chunk in chunks:
            # inputs made where they are used (on the workers), as a loader would
            rng = da.random.default_rng(0)
            xd, gyd = (
                persist(
                    rng.standard_normal(
                        size=a.shape, dtype=a.dtype, chunks=(rows_per_chunk, -1, -1, -1)
                    )
                )
                for a in (x, gy)
            )
            ntasks = _tasks(_lazy_step(xd, w, b, gyd))

            repeats = itertools.count()

            def step(xd=xd, gyd=gyd, repeats=repeats):
                # fresh keys each repeat: a cluster may still hold the last repeat's results
                # (released asynchronously), which would make a repeat free
                tag = next(repeats)
                xs, gs = (a.map_blocks(np.asarray, name=f"{a.name}-{tag}") for a in (xd, gyd))
                results = persist(*_lazy_step(xs, w, b, gs))
                del results

            rows.append((label, str(rows_per_chunk), _best(step, args.repeat), ntasks))
        print(f"  per-task overhead, {label}: {overhead * 1e3:.2f} ms")

    with threadpool_limits(1), dask.config.set(scheduler="threads", num_workers=2):

        def persist_threads(*arrays):
            out = dask.persist(*arrays)
            return out[0] if len(out) == 1 else out

        overhead = _best(lambda: da.ones(200, chunks=1).map_blocks(_noop).persist(), 2) / 200
        run_dask("dask threads (2)", persist_threads, chunk_sizes, overhead)

    if not args.no_cluster:
        from distributed import Client, LocalCluster, wait

        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            blas = client.run(_limit_blas)
            print(f"  worker BLAS threads: {sorted(blas.values())}")

            def persist_cluster(*arrays):
                out = client.persist(list(arrays))
                wait(out)
                return out[0] if len(out) == 1 else out

            overhead = (
                _best(lambda: persist_cluster(da.ones(200, chunks=1).map_blocks(_noop)), 2) / 200
            )
            run_dask("LocalCluster 2x1", persist_cluster, chunk_sizes, overhead)

    print(f"\n  {'way':<22} {'chunk':>5} {'tasks':>5} {'seconds':>8} {'vs numpy':>9}")
    for way, chunk, seconds, tasks in rows:
        print(f"  {way:<22} {chunk:>5} {tasks:>5} {seconds:>8.2f} {seconds / numpy_time:>8.2f}x")
    for way in dict.fromkeys(r[0] for r in rows if r[1] != "-"):
        best = min((r for r in rows if r[0] == way), key=lambda r: r[2])
        print(f"  best chunk for {way}: {best[1]} rows ({best[2]:.2f} s)")
    return 0


def _tasks(arrays) -> int:
    """Tasks that one step adds to the graph (its inputs are persisted already)."""
    import dask.base

    if hasattr(dask.base, "collections_to_dsk"):  # dask < 2025
        graph = dask.base.collections_to_dsk(arrays, optimize_graph=True)
    else:
        graph = dask.base.collections_to_expr(arrays, optimize_graph=True).optimize()
        graph = graph.__dask_graph__()
    inputs = {k for a in arrays for k in graph if str(k[0]).startswith("standard_normal")}
    return len(graph) - len(inputs)


def _lazy_numpy(x, w, b, gy):
    return cg.conv(x, w, b), cg.conv_backward(gy, x, w, b)


if __name__ == "__main__":
    raise SystemExit(main())

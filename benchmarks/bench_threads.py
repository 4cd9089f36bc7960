"""How convgrad's calls scale with threads: each cell of bench_torch on 1 and on 2 threads.

    PYTHONPATH=src python benchmarks/bench_threads.py             # every cell, 5 repeats
    PYTHONPATH=src python benchmarks/bench_threads.py --cases origin --threads 1,2
    PYTHONPATH=src python benchmarks/bench_threads.py --jobs-table  # docs/parallelism.md's

Per cell: the median time with BLAS (and so convgrad's job count) limited to each thread
count by threadpoolctl, the speedup from the first to the last count, PyTorch's own speedup
on the same cell and thread counts (``torch.set_num_threads``, timed the same way in the
same run: what this machine lets a runtime of native threads reach), and the number of
jobs the same code forms on machines of 8, 16 and 64 cores (``_process.jobs.simulate``:
the jobs are formed as there and run here one after another), since this machine cannot
show them. Samples of the thread counts are interleaved, each after --warmup seconds of
the same call. Also times the origin layer with a batch of 256 in-process against dask's
threaded scheduler over batch chunks of 64 (needs the dask extra), as ``bench_dask`` does.

THE MACHINE MUST BE QUIET: run nothing else alongside.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_torch import CASES, QUIET_NOTE, blas_note, make_calls, sample  # noqa: E402

SIMULATED_CORES = (8, 16, 64)


def job_counts(fn) -> list[int]:
    """The largest job count of any call inside ``fn`` on machines of SIMULATED_CORES."""
    try:
        from convgrad import _process
    except ImportError:  # a convgrad without the job pool's simulation
        return [0] * len(SIMULATED_CORES)
    out = []
    for cores in SIMULATED_CORES:
        with _process.jobs.simulate(cores) as counts:
            fn()
        out.append(max(counts, default=1))
    return out


def jobs_table(cases, torch, F, tgrad, cg) -> list[str]:
    """docs/parallelism.md's table: per cell its passes, their algorithms and the jobs
    each forms on SIMULATED_CORES cores (a value shared by every pass is written once)."""
    from convgrad import _plan, _process

    def joined(values) -> str:
        values = [str(v) for v in values]
        return values[0] if len(set(values)) == 1 else " / ".join(values)

    head = "| cell | algorithm | " + " | ".join(str(c) for c in SIMULATED_CORES) + " |"
    rows = [head, "|---|---|" + "---:|" * len(SIMULATED_CORES)]
    for case in cases:
        passes, algorithms, counts = [], [], []
        for pass_, (fn, *_rest) in make_calls(case, torch, F, tgrad, cg).items():
            fn()
            _process.kernel_builds.wait()  # the algorithms of warm calls, builds done
            with _plan.recording() as chosen:
                fn()
            passes.append(pass_)
            algorithms.append("+".join(sorted(set(chosen))))
            counts.append(job_counts(fn))
        per_core = [joined(c[i] for c in counts) for i in range(len(SIMULATED_CORES))]
        cell = f"{case.name} {' / '.join(passes)} (batch {case.n})"
        rows.append(f"| {cell} | {joined(algorithms)} | " + " | ".join(per_core) + " |")
    return rows


def medians(fn, counts, args, on_threads) -> dict[int, float]:
    """{thread count: fn's median seconds}, samples of the counts interleaved, each after
    --warmup seconds of fn; ``on_threads(t)``: a context in which fn runs on t threads."""
    times = {t: [] for t in counts}
    for _ in range(args.repeats):
        for t in counts:
            with on_threads(t):
                times[t].append(sample(fn, args.warmup))
    return {t: statistics.median(v) for t, v in times.items()}


@contextlib.contextmanager
def torch_threads(torch, threads: int):
    """PyTorch on ``threads`` threads inside the block, its own count restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def dask_comparison(threads: int, repeats: int) -> None:
    try:
        import dask
        import dask.array as da
    except ImportError:
        print("(dask comparison skipped: no dask)")
        return
    from threadpoolctl import threadpool_limits

    import convgrad as cg

    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 5, 100, 100)).astype(np.float32)
    w = rng.standard_normal((10, 5, 5, 5)).astype(np.float32)
    xd = da.from_array(x, chunks=(64, 5, 100, 100))

    def in_process():
        return cg.conv(x, w)

    def on_dask():
        with dask.config.set(scheduler="threads", num_workers=threads):
            return cg.conv(xd, w).compute()

    with threadpool_limits(threads):
        a = statistics.median(sample(in_process, 0.15) for _ in range(repeats))
        b = statistics.median(sample(on_dask, 0.15) for _ in range(repeats))
    print(
        f"origin layer, batch 256, {threads} threads: in-process {a * 1e3:.0f} ms, "
        f"dask threads over chunks of 64: {b * 1e3:.0f} ms (in-process/dask {a / b:.2f})"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="", help="comma-separated case names (default all)")
    parser.add_argument("--passes", default="", help="comma-separated passes, e.g. fwd,dX")
    parser.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=0.15, help="seconds")
    parser.add_argument("--no-dask", action="store_true", help="skip the dask comparison")
    parser.add_argument(
        "--no-torch", action="store_true", help="skip PyTorch's own speedup per cell"
    )
    parser.add_argument(
        "--jobs-table",
        action="store_true",
        help="print only docs/parallelism.md's table of job counts (no timing)",
    )
    args = parser.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]

    import torch
    import torch.nn.functional as F
    import torch.nn.grad as tgrad
    from threadpoolctl import threadpool_limits

    import convgrad as cg
    from convgrad import _plan, _process

    # steady state: every kernel built before its call returns, so that no sample times
    # the algorithm auto runs while a build is under way
    _process.kernel_builds.background = False
    names = [n for n in args.cases.split(",") if n]
    cases = [c for c in CASES if not names or c.name in names]
    passes = [p for p in args.passes.split(",") if p]
    if args.jobs_table:
        print("\n".join(jobs_table(cases, torch, F, tgrad, cg)))
        return 0
    print(QUIET_NOTE)
    print(blas_note())
    cols = "".join(f"{f'{t} thr ms':>10}" for t in counts)
    sim = "".join(f"{f'jobs@{c}':>8}" for c in SIMULATED_CORES)
    peer_col = "" if args.no_torch else f"{'torch':>7}"
    print(f"{'case':<12}{'pass':<7}{cols}{'speedup':>9}{peer_col}{sim}  algorithm")
    speedups, torch_speedups = [], []
    for case in cases:
        for pass_, (fn, torch_fn, *_rest) in make_calls(case, torch, F, tgrad, cg).items():
            if passes and pass_ not in passes:
                continue
            fn()
            med = medians(fn, counts, args, threadpool_limits)
            speedup = med[counts[0]] / med[counts[-1]]
            speedups.append((case.name, pass_, speedup, med[counts[-1]]))
            if not args.no_torch:
                torch_fn()
                peer = medians(torch_fn, counts, args, lambda t: torch_threads(torch, t))
                torch_speedups.append(peer[counts[0]] / peer[counts[-1]])
            with _plan.recording() as chosen:
                fn()
            sims = "".join(f"{n:>8}" for n in job_counts(fn))
            print(
                f"{case.name:<12}{pass_:<7}"
                + "".join(f"{med[t] * 1e3:10.2f}" for t in counts)
                + f"{speedup:9.2f}"
                + ("" if args.no_torch else f"{torch_speedups[-1]:7.2f}")
                + f"{sims}  {'+'.join(sorted(set(chosen)))}",
                flush=True,
            )
    if speedups:
        geo = math.exp(sum(math.log(s) for _, _, s, _ in speedups) / len(speedups))
        worst = min(speedups, key=lambda r: r[2])
        slow = [r for r in speedups if r[2] < 1.3 and r[3] >= 1e-3]
        print(f"\ngeometric-mean speedup {counts[0]} -> {counts[-1]} threads: {geo:.2f}")
        if torch_speedups:
            peer_geo = math.exp(sum(math.log(s) for s in torch_speedups) / len(torch_speedups))
            print(f"PyTorch's own, same cells and run: {peer_geo:.2f}")
        print(f"lowest: {worst[0]} {worst[1]} {worst[2]:.2f}")
        print(
            "cells of 1 ms or more below 1.3x: "
            + (", ".join(f"{n} {p} {s:.2f}" for n, p, s, _ in slow) or "none")
        )
    if not args.no_dask:
        dask_comparison(counts[-1], args.repeats)
    print(QUIET_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())

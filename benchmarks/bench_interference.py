"""What slows a call when another thread of the same process works: each cell of bench_torch
on one thread, alone and beside a second thread doing one of three things.

    PYTHONPATH=src python benchmarks/bench_interference.py
    PYTHONPATH=src python benchmarks/bench_interference.py --cases transposed1d,strided

Per cell, convgrad's median time (BLAS and convgrad limited to one thread each, so the
call runs on the calling thread) while another thread of the process runs:

- ``compute``: a compiled ``nogil`` loop of arithmetic (a core of its own, no GIL);
- ``stream``: a compiled ``nogil`` sum over 16 MiB (memory traffic, no GIL);
- ``same``: the same call, also single-threaded (its Python holds the GIL at times).

Each column is a ratio to the time alone. ``compute`` and ``stream`` measure what the
hardware shares (cores, caches, memory); ``same`` adds the GIL: every time one thread
needs it while the other holds it, the waiter sleeps and is woken on another core. A
call whose ``same`` ratio exceeds its ``stream`` ratio loses that much of a second core
to the GIL, which is what the pool's jobs of that call lose too.

THE MACHINE MUST BE QUIET: run nothing else alongside.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_torch import CASES, QUIET_NOTE, blas_note, make_calls  # noqa: E402

STREAM_BYTES = 16 * 2**20


def loops():
    """(compute(n), stream(a)): compiled nogil loops for the background thread."""
    import numba

    @numba.njit(nogil=True)
    def compute(n):
        s = 0.0
        for i in range(n):
            s = s * 0.999999 + i
        return s

    @numba.njit(nogil=True)
    def stream(a):
        s = 0.0
        for i in range(a.size):
            s += a[i]
        return s

    return compute, stream


def median_time(fn, seconds: float) -> float:
    """Median seconds of back-to-back calls of fn over ``seconds``."""
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def beside(fn, background, seconds: float) -> float:
    """fn's median time while another thread runs ``background()`` in a loop."""
    from convgrad import _process

    stop = threading.Event()

    def loop():
        with _process.jobs.serial():
            while not stop.is_set():
                background()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        time.sleep(0.05)
        return median_time(fn, seconds)
    finally:
        stop.set()
        thread.join()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="", help="comma-separated case names (default all)")
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F
    import torch.nn.grad as tgrad
    from threadpoolctl import threadpool_limits

    import convgrad as cg
    from convgrad import _process

    _process.kernel_builds.background = False
    names = [n for n in args.cases.split(",") if n]
    cases = [c for c in CASES if not names or c.name in names]
    compute, stream = loops()
    block = np.ones(STREAM_BYTES // 4, dtype=np.float32)
    compute(10), stream(block[:10])
    backgrounds = {"compute": lambda: compute(2_000_000), "stream": lambda: stream(block)}
    print(QUIET_NOTE)
    print(blas_note())
    print(f"{'case':<13}{'pass':<7}{'alone ms':>9}{'compute':>9}{'stream':>9}{'same':>9}")
    ratios = []
    with threadpool_limits(1):
        for case in cases:
            for pass_, (fn, *_rest) in make_calls(case, torch, F, tgrad, cg).items():
                with _process.jobs.serial():
                    fn()
                    alone = median_time(fn, args.seconds)
                row = [beside(fn, bg, args.seconds) / alone for bg in backgrounds.values()]
                row.append(beside(fn, fn, args.seconds) / alone)
                ratios.append(row)
                print(
                    f"{case.name:<13}{pass_:<7}{alone * 1e3:9.2f}"
                    + "".join(f"{r:9.2f}" for r in row),
                    flush=True,
                )
    if ratios:
        geo = [statistics.geometric_mean(col) for col in zip(*ratios)]
        print(f"\ngeometric means: compute {geo[0]:.2f}, stream {geo[1]:.2f}, same {geo[2]:.2f}")
    print(QUIET_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())

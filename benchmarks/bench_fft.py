"""The FFT algorithm against the other candidates and PyTorch, where kernels are large.

    PYTHONPATH=src python benchmarks/bench_fft.py                     # every case
    PYTHONPATH=src python benchmarks/bench_fft.py --cases k31-1d,11x11 --rounds 3

Per case and pass (float32, 2 threads): best-of-``--rounds`` milliseconds of each
algorithm that supports the pass (those the cost model puts over 30x its best are left
out, fft never), interleaved round by round with PyTorch's; the algorithm ``auto``
picks; the cost model's estimate for fft and for the pick; and fft's largest error
against the float64 result, relative to the largest output (the tests' float32 bound
is 2e-5). Each timed call follows ``--warmup`` seconds of the same call untimed.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from bench_torch import QUIET_NOTE, Case, make_calls, sample

CASES = [
    Case("stem", 8, 3, 64, (224, 224), 7, stride=2, padding=3),
    Case("7x7-56", 8, 64, 64, (56, 56), 7, padding=3),
    Case("3x3-56", 8, 64, 64, (56, 56), 3, padding=1),
    Case("11x11", 8, 32, 32, (64, 64), 11, padding=5),
    Case("15x15", 4, 16, 16, (128, 128), 15, padding=7),
    Case("depthwise-7", 8, 96, 96, (56, 56), 7, padding=3, groups=96),
    Case("depthwise-13", 8, 96, 96, (56, 56), 13, padding=6, groups=96),
    Case("depthwise-31", 8, 96, 96, (56, 56), 31, padding=15, groups=96),
    Case("conv1d", 4, 64, 64, (4096,), 9, padding=4),
    Case("k31-1d", 4, 32, 32, (16384,), 31, padding=15),
    Case("k65-1d", 4, 32, 32, (16384,), 65, padding=32),
    Case("depthwise-65-1d", 4, 64, 64, (16384,), 65, padding=32, groups=64),
]


def _steps(case: Case, cg):
    """{pass: (lhs shape, rhs shape, corr)} of the correlations the public calls run."""
    from convgrad import _rules
    from convgrad._spec import conv_spec

    nd = case.nd
    spec = conv_spec(
        (case.n, case.c, *case.spatial),
        (case.k, case.c // case.groups, *(case.kernel,) * nd),
        stride=case.stride,
        padding=case.padding,
        dilation=case.dilation,
        groups=case.groups,
    )
    names = {"forward": "fwd", "input_grad": "dX", "weight_grad": "dW"}
    return {names[s.name]: (s.lhs_shape, s.rhs_shape, s.corr) for s in _rules.steps(spec).values()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="", help="comma-separated case names (default all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=0.05)
    args = parser.parse_args(argv)
    import torch
    import torch.nn.functional as F
    from threadpoolctl import threadpool_limits
    from torch.nn import grad as tgrad

    import convgrad as cg
    from convgrad import _plan

    names = [n for n in args.cases.split(",") if n]
    cases = [c for c in CASES if not names or c.name in names]
    torch.set_num_threads(2)
    print(QUIET_NOTE)
    print(f"float32, 2 threads, best of {args.rounds} rounds; ms")
    with threadpool_limits(2):
        for case in cases:
            steps = _steps(case, cg)
            auto = make_calls(case, torch, F, tgrad, cg)
            for pass_, (lhs, rhs, corr) in steps.items():
                est = _plan.estimates(lhs, rhs, corr, 4)
                best = min(est.values())
                chosen = _plan.choose(lhs, rhs, corr, 4)
                keep = [n for n in est if est[n] <= 30 * best or n == "fft"]
                calls = {n: make_calls(case, torch, F, tgrad, cg, n)[pass_][0] for n in keep}
                calls["torch"] = auto[pass_][1]
                times = {n: float("inf") for n in calls}
                for fn in calls.values():
                    fn()  # first calls (imports, compiled loops) untimed
                for _ in range(args.rounds):
                    for n, fn in calls.items():
                        times[n] = min(times[n], sample(fn, args.warmup))
                error = _fft_error(case, pass_, cg, torch, F, tgrad) if "fft" in est else None
                row = "  ".join(f"{n} {times[n] * 1e3:.2f}" for n in sorted(times, key=times.get))
                fft_est = f"{est['fft'] * 1e3:.2f}" if "fft" in est else "-"
                print(
                    f"{case.name:16s} {pass_:3s} auto={chosen:11s} est fft {fft_est} "
                    f"{chosen} {est[chosen] * 1e3:.2f} | {row}"
                    + ("" if error is None else f" | fft err {error:.1e}")
                )
    return 0


def _fft_error(case, pass_, cg, torch, F, tgrad) -> float:
    """fft's largest float32 error against the float64 result (gemm), over the largest
    output."""
    got = make_calls(case, torch, F, tgrad, cg, "fft")[pass_][0]()
    want = _float64(case, pass_, cg)
    return float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))


def _float64(case, pass_, cg):
    rng = np.random.default_rng(0)  # the same draws as make_calls, in float64
    nd, g = case.nd, case.groups
    opts = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=g)
    x = rng.standard_normal((case.n, case.c, *case.spatial), dtype=np.float32)
    w = rng.standard_normal((case.k, case.c // g, *(case.kernel,) * nd), dtype=np.float32)
    y = cg.conv(x, w, **opts)
    gy = rng.standard_normal(y.shape, dtype=np.float32)
    x, w, gy = (a.astype(np.float64) for a in (x, w, gy))
    run = dict(opts, algorithm="gemm")
    if pass_ == "fwd":
        return cg.conv(x, w, **run)
    if pass_ == "dX":
        return cg.conv_input_grad(gy, w, x.shape, **run)
    return cg.conv_weight_grad(x, gy, w.shape, **run)


if __name__ == "__main__":
    sys.exit(main())

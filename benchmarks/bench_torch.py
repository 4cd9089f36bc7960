"""convgrad vs PyTorch (CPU), pass by pass: forward, grad_input, grad_weight.

    PYTHONPATH=src python benchmarks/bench_torch.py            # every case, 7 repeats
    PYTHONPATH=src python benchmarks/bench_torch.py --quick    # 3 repeats
    PYTHONPATH=src python benchmarks/bench_torch.py --cases origin,stem --candidates

One process, both libraries on 2 threads (BLAS/FFT via threadpoolctl, torch via
set_num_threads), float32 NCHW. Each timed sample follows --warmup seconds of the same
call untimed; convgrad and PyTorch samples are interleaved and the median is reported
("warm"); "cold" is the very first call of each. GFLOP/s counts 2*MACs of the dense
convolution (the same number for all three passes). Peak is tracemalloc's peak of extra
memory during one convgrad call, next to the workspace limit plus the call's output.
Only the public API of convgrad is timed.

THE MACHINE MUST BE QUIET: PyTorch's threads suffer badly when another process holds a
core. Run nothing else alongside; ratios from a busy machine mean little.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np

QUIET_NOTE = (
    "!! Benchmarks need a QUIET machine: run nothing else alongside. PyTorch's threads\n"
    "!! suffer badly when another process holds a core; only ratios from one run count."
)


@dataclass
class Case:
    name: str
    n: int
    c: int
    k: int
    spatial: tuple
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    transposed: bool = False
    gemm_bound: bool = False
    options: dict = field(default_factory=dict)

    @property
    def nd(self):
        return len(self.spatial)


CASES = [
    Case("origin", 1, 5, 10, (100, 100), 5),
    Case("stem", 8, 3, 64, (224, 224), 7, stride=2, padding=3),
    Case("3x3-56", 8, 64, 64, (56, 56), 3, padding=1, gemm_bound=True),
    Case("3x3-14", 8, 256, 256, (14, 14), 3, padding=1, gemm_bound=True),
    Case("1x1", 8, 256, 64, (56, 56), 1, gemm_bound=True),
    Case("strided", 8, 128, 128, (28, 28), 3, stride=2, padding=1, gemm_bound=True),
    Case("depthwise-3", 8, 144, 144, (56, 56), 3, padding=1, groups=144),
    Case("depthwise-7", 8, 96, 96, (56, 56), 7, padding=3, groups=96),
    Case("grouped", 8, 128, 128, (28, 28), 3, padding=1, groups=32),
    Case("dilated", 4, 256, 256, (28, 28), 3, padding=2, dilation=2, gemm_bound=True),
    Case("conv1d", 4, 64, 64, (4096,), 9, padding=4),
    Case("conv3d", 2, 32, 32, (16, 28, 28), 3, padding=1),
    Case("transposed", 8, 64, 32, (28, 28), 4, stride=2, padding=1, transposed=True),
    Case("transposed1d", 8, 64, 32, (1024,), 4, stride=2, padding=1, transposed=True),
    Case("transposed3d", 2, 32, 16, (8, 14, 14), 4, stride=2, padding=1, transposed=True),
    Case("reflect", 8, 64, 64, (56, 56), 3, padding=1, options={"padding_mode": "reflect"}),
]


def gflop(case: Case, out_spatial) -> float:
    """2 * MACs of the dense convolution (for a transposed conv: of its adjoint)."""
    kernel = case.kernel**case.nd
    if case.transposed:  # x (N, C, *S) maps through C x K/g filters at every input pixel
        return (
            2 * case.n * case.c * (case.k // case.groups) * kernel * math.prod(case.spatial) / 1e9
        )
    return 2 * case.n * case.k * (case.c // case.groups) * kernel * math.prod(out_spatial) / 1e9


def make_calls(case: Case, torch, F, tgrad, cg, algorithm="auto"):
    """{pass: (convgrad call, torch call, flops GFLOP, output bytes)} for one case; the
    convgrad calls run with ``algorithm``."""
    rng = np.random.default_rng(0)
    nd, g = case.nd, case.groups
    opts = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=g)
    alg = dict(algorithm=algorithm)
    x = rng.standard_normal((case.n, case.c, *case.spatial), dtype=np.float32)
    if case.transposed:
        w = rng.standard_normal((case.c, case.k // g, *(case.kernel,) * nd), dtype=np.float32)
        y = cg.conv_transpose(x, w, **opts)
    else:
        w = rng.standard_normal((case.k, case.c // g, *(case.kernel,) * nd), dtype=np.float32)
        y = cg.conv(x, w, **opts, **case.options)
    gy = rng.standard_normal(y.shape, dtype=np.float32)
    tx, tw, tgy = (torch.from_numpy(a) for a in (x, w, gy))
    flops = gflop(case, y.shape[2:])
    conv_t = getattr(F, f"conv{nd}d")
    calls = {}
    if case.transposed:
        tconv_t = getattr(F, f"conv_transpose{nd}d")
        calls["fwd"] = (
            lambda: cg.conv_transpose(x, w, **opts, **alg),
            lambda: tconv_t(tx, tw, **opts),
            flops,
            y.nbytes,
        )
        ones = [case.stride] * nd
        tpad = [case.padding] * nd

        def torch_bwd():
            return torch.ops.aten.convolution_backward(
                tgy,
                tx,
                tw,
                None,
                ones,
                tpad,
                [case.dilation] * nd,
                True,
                [0] * nd,
                g,
                [True, True, False],
            )

        calls["dX+dW"] = (
            lambda: cg.conv_transpose_backward(gy, x, w, **opts, **alg),
            torch_bwd,
            2 * flops,
            x.nbytes + w.nbytes,
        )
        return calls
    mode = case.options.get("padding_mode", "zeros")
    if mode != "zeros":  # PyTorch pads explicitly, then convolves; autograd for dX
        return _padding_mode_calls(case, cg, torch, F, tgrad, (x, w, gy, y), opts, alg)
    calls["fwd"] = (
        lambda: cg.conv(x, w, **opts, **alg),
        lambda: conv_t(tx, tw, **opts),
        flops,
        y.nbytes,
    )
    gin, gwt = getattr(tgrad, f"conv{nd}d_input"), getattr(tgrad, f"conv{nd}d_weight")
    calls["dX"] = (
        lambda: cg.conv_input_grad(gy, w, x.shape, **opts, **alg),
        lambda: gin(x.shape, tw, tgy, **opts),
        flops,
        x.nbytes,
    )
    calls["dW"] = (
        lambda: cg.conv_weight_grad(x, gy, w.shape, **opts, **alg),
        lambda: gwt(tx, w.shape, tgy, **opts),
        flops,
        w.nbytes,
    )
    return calls


def _padding_mode_calls(case: Case, cg, torch, F, tgrad, arrays, opts, alg):
    """The three passes of a layer with a padding mode other than zeros: PyTorch as its
    Conv2d runs it (F.pad, then an unpadded convolution; dX through autograd)."""
    x, w, gy, y = arrays
    nd, mode = case.nd, case.options["padding_mode"]
    tx, tw, tgy = (torch.from_numpy(a) for a in (x, w, gy))
    conv_t = getattr(F, f"conv{nd}d")
    pads = [case.padding] * (2 * nd)
    flops = gflop(case, y.shape[2:])
    unpadded = dict(opts, padding=0)
    gwt = getattr(tgrad, f"conv{nd}d_weight")
    xg = tx.clone().requires_grad_(True)

    def torch_dx():
        out = conv_t(F.pad(xg, pads, mode=mode), tw, **unpadded)
        return torch.autograd.grad(out, xg, tgy)[0]

    def torch_dw():
        padded = F.pad(tx, pads, mode=mode)
        return gwt(padded, w.shape, tgy, **unpadded)

    cg_opts = dict(opts, padding_mode=mode)
    return {
        "fwd": (
            lambda: cg.conv(x, w, **cg_opts, **alg),
            lambda: conv_t(F.pad(tx, pads, mode=mode), tw, **unpadded),
            flops,
            y.nbytes,
        ),
        "dX": (
            lambda: cg.conv_input_grad(gy, w, x.shape, **cg_opts, **alg),
            torch_dx,
            flops,
            x.nbytes,
        ),
        "dW": (
            lambda: cg.conv_weight_grad(x, gy, w.shape, **cg_opts, **alg),
            torch_dw,
            flops,
            w.nbytes,
        ),
    }


def sample(fn, warmup: float) -> float:
    """Seconds of one call of fn after ``warmup`` seconds of untimed calls."""
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        fn()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cold(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def blas_note() -> str:
    """NumPy's BLAS as it runs here (library, the kernels it picked for this CPU), with a
    warning where the environment forces a kernel type: OPENBLAS_CORETYPE=Haswell on an
    AVX-512 machine halves sgemm (measured 244 against 435 GFLOP/s on this one)."""
    import os

    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    info = blas[0] if blas else {}
    note = f"BLAS {info.get('internal_api', '?')} {info.get('version', '?')}"
    note += f", kernels {info.get('architecture', '?')}"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if forced:
        note += (
            f"\n!! OPENBLAS_CORETYPE={forced} is set: OpenBLAS runs those kernels, not the"
            " ones it detects for this CPU; unset it to measure what users get"
        )
    return note


def sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = min(cold(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def candidate_times(make_cg, algorithms, warmup, repeats, reference_s):
    """{algorithm: median seconds} of every algorithm the call accepts; one that takes over
    10x ``reference_s`` (auto's time) on its first two calls is reported from the faster
    of them alone (a first call alone can be that slow from page faults: gemm's first 1x1
    dX after fft's took 26 ms, its warm calls 2.0)."""
    times = {}
    for name in algorithms:
        fn = make_cg(name)
        try:
            first = cold(fn)
        except ValueError as exc:
            if "does not support" in str(exc):
                continue
            raise
        if first > 10 * reference_s:
            first = min(first, cold(fn))
        if first > 10 * reference_s:
            times[name] = first
            continue
        times[name] = statistics.median(sample(fn, warmup) for _ in range(repeats))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="3 repeats (the warm-up stays: see --warmup)"
    )
    parser.add_argument("--cases", default="", help="comma-separated case names (default all)")
    parser.add_argument("--passes", default="", help="comma-separated passes, e.g. fwd,dX")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=float, default=None, help="seconds (default 0.15)")
    parser.add_argument("--candidates", action="store_true", help="time every algorithm too")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    # PyTorch needs ~0.15 s of its own calls to recover from the other library's spinning
    # threads (measured: 3x3-56 dW 18.8 ms after 0.05 s, 10.5 ms after 0.15 s or more)
    warmup = args.warmup if args.warmup is not None else 0.15

    import torch
    import torch.nn.functional as F
    import torch.nn.grad as tgrad
    from threadpoolctl import threadpool_limits

    import convgrad as cg
    from convgrad import _plan, _process
    from convgrad._primitive import algorithm_names

    # steady state: every kernel built before its call returns (the "cold" column then
    # holds the build; with background builds a cell's first samples would time the
    # algorithm auto runs meanwhile)
    _process.kernel_builds.background = False

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    names = [n for n in args.cases.split(",") if n]
    cases = [c for c in CASES if not names or c.name in names]
    if names and len(cases) != len(names):
        known = ", ".join(c.name for c in CASES)
        parser.error(f"--cases must be names among: {known}")
    passes = [p for p in args.passes.split(",") if p]

    print(QUIET_NOTE)
    ceiling = sgemm_gflops()
    limit = _plan.get_workspace_limit()
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, {args.threads} threads, "
        f"float32; numpy sgemm 2048^3: {ceiling:.0f} GFLOP/s; repeats {repeats}, "
        f"warm-up {warmup} s; workspace limit {limit / 2**20:.0f} MiB"
    )
    print(blas_note())
    header = (
        f"{'case':<12}{'pass':<6}{'cg ms':>9}{'torch ms':>9}{'ratio':>7}{'cg GF/s':>9}"
        f"{'pt GF/s':>9}{'%sgemm':>7}{'cold cg':>9}{'cold pt':>9}{'peak MB':>9}{'lim+out':>8}"
        f"  algorithm"
    )
    print(header)
    rows, regrets = [], []
    for case in cases:
        calls = make_calls(case, torch, F, tgrad, cg)
        for pass_, (cg_fn, pt_fn, flops, out_bytes) in calls.items():
            if passes and pass_ not in passes:
                continue
            cold_cg, cold_pt = cold(cg_fn), cold(pt_fn)
            cg_t, pt_t = [], []
            for _ in range(repeats):
                cg_t.append(sample(cg_fn, warmup))
                pt_t.append(sample(pt_fn, warmup))
            cg_s, pt_s = statistics.median(cg_t), statistics.median(pt_t)
            peak = peak_bytes(cg_fn)
            with _plan.recording() as chosen:
                cg_fn()
            algos = "+".join(sorted(set(chosen)))
            ratio = cg_s / pt_s
            rows.append((case, pass_, ratio, flops / cg_s, peak, limit + out_bytes))
            print(
                f"{case.name:<12}{pass_:<6}{cg_s * 1e3:9.2f}{pt_s * 1e3:9.2f}{ratio:7.2f}"
                f"{flops / cg_s:9.1f}{flops / pt_s:9.1f}{100 * flops / cg_s / ceiling:6.0f}%"
                f"{cold_cg * 1e3:9.2f}{cold_pt * 1e3:9.2f}{peak / 2**20:9.1f}"
                f"{(limit + out_bytes) / 2**20:8.1f}  {algos}",
                flush=True,
            )
            if args.candidates:
                cands = candidate_times(
                    lambda name, case=case, pass_=pass_: make_calls(
                        case, torch, F, tgrad, cg, algorithm=name
                    )[pass_][0],
                    algorithm_names(),
                    warmup,
                    repeats,
                    cg_s,
                )
                best = min(cands.values())
                # auto's algorithm timed with the candidates (same conditions, not the
                # samples above, minutes earlier), where it is one of them
                auto_s = cands.get(algos, cg_s)
                regrets.append((case.name, pass_, auto_s / best, min(cands, key=cands.get)))
                text = "  ".join(f"{k} {v * 1e3:.2f}" for k, v in sorted(cands.items()))
                print(f"{'':<18}candidates ms: {text}  | auto/best {auto_s / best:.2f}", flush=True)
    if not rows:
        return 0
    ratios = [r[2] for r in rows]
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    worst = max(rows, key=lambda r: r[2])
    print(f"\ngeometric mean convgrad/PyTorch: {geo:.2f}  (target <= 0.85)")
    print(f"slowest cell: {worst[0].name} {worst[1]} at {worst[2]:.2f}x  (target <= 1.5)")
    over = sorted((r for r in rows if r[2] > 1.5), key=lambda r: -r[2])
    if over:
        print("cells over 1.5x: " + ", ".join(f"{r[0].name} {r[1]} {r[2]:.2f}" for r in over))
    if regrets:
        name, pass_, regret, best = max(regrets, key=lambda r: r[2])
        print(
            f"planner regret (auto's time over the best candidate's): worst {regret:.2f} "
            f"({name} {pass_}, best {best})  (target <= 1.15)"
        )
    bound = [r for r in rows if r[0].gemm_bound]
    if bound:
        low = min(bound, key=lambda r: r[3])
        print(
            f"GEMM-bound cells: lowest {100 * low[3] / ceiling:.0f}% of sgemm "
            f"({low[0].name} {low[1]})  (target >= 70%)"
        )
    over = [r for r in rows if r[4] > r[5]]
    print(f"cells over limit+output memory: {len(over)}")
    print(QUIET_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())

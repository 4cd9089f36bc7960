"""Cold start: the first call of each public function, on each algorithm, in a fresh process.

    python benchmarks/bench_cold.py            # every row (about a minute)
    python benchmarks/bench_cold.py --rows conv,direct

Each row runs twice, each time in a new Python process: first with an empty compiled-code
cache (``NUMBA_CACHE_DIR`` a new temporary folder: what a fresh install pays once), then
again with the cache that run filled (what every later process pays). Columns: the
algorithm(s) the first call ran, ``import convgrad``, the first call (empty cache), how
long the background builds it started then ran on (empty cache), the first call (filled
cache), the algorithm(s) and time of the call once every build has ended ("warm"). Rows
that name an algorithm compile it on the calling thread (what naming one costs); the
target is on the others, the public functions with ``algorithm='auto'``. The last rows time the README's main
command (``convgrad``: explain, then the demo) and its nn snippet end to end.

Not a test: timings depend on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SETUP = """
import numpy as np
rng = np.random.default_rng(0)
def a(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)
x, w = a(1, 5, 100, 100), a(10, 5, 5, 5)   # the origin layer
g = a(1, 10, 96, 96)
xd, wd, gd = a(8, 32, 28, 28, dtype=np.float32), a(32, 1, 3, 3, dtype=np.float32), a(8, 32, 28, 28, dtype=np.float32)
xs, ws = a(4, 16, 15, 15, dtype=np.float32), a(16, 16, 3, 3, dtype=np.float32)
gs = a(4, 16, 7, 7, dtype=np.float32)
xt, wt = a(2, 16, 8, 8, dtype=np.float32), a(16, 8, 4, 4, dtype=np.float32)
gt = a(2, 8, 16, 16, dtype=np.float32)
"""

# (row, call): ``cg`` is convgrad; algorithm names force one algorithm
ROWS = [
    ("conv", "cg.conv(x, w)"),
    ("conv_input_grad", "cg.conv_input_grad(g, w, x.shape)"),
    ("conv_weight_grad", "cg.conv_weight_grad(x, g, w.shape)"),
    ("conv_bias_grad", "cg.conv_bias_grad(g)"),
    ("conv_backward", "cg.conv_backward(g, x, w, np.zeros(10))"),
    ("conv_transpose", "cg.conv_transpose(xt, wt, stride=2, padding=1)"),
    ("conv_transpose_backward", "cg.conv_transpose_backward(gt, xt, wt, stride=2, padding=1)"),
    ("depthwise backward f32", "cg.conv_backward(gd, xd, wd, padding=1, groups=32)"),
    ("Conv2d fwd+bwd", "l = cg.Conv2d(5, 10, 5, seed=0); l.backward(np.ones_like(l(x)))"),
    ("gemm", "cg.conv(xs, ws, algorithm='gemm')"),
    ("implicit", "cg.conv(xs, ws, algorithm='implicit')"),
    ("winograd", "cg.conv(xs, ws, padding=1, algorithm='winograd')"),
    ("winograd4", "cg.conv(xs, ws, padding=1, algorithm='winograd4')"),
    ("direct", "cg.conv(xd, wd, padding=1, groups=32, algorithm='direct')"),
    (
        "implicit_dw",
        "cg.conv_weight_grad(xd, gd, wd.shape, padding=1, groups=32, algorithm='implicit_dw')",
    ),
    ("blocked_dw", "cg.conv_weight_grad(xs, gs, ws.shape, stride=2, algorithm='blocked_dw')"),
    ("phase", "cg.conv_input_grad(gs, ws, xs.shape, stride=2, algorithm='phase')"),
]

PROBE = """
import json, time
t0 = time.perf_counter()
import convgrad as cg
from convgrad import _plan, _process
t1 = time.perf_counter()
{setup}
with _plan.recording() as names:
    t2 = time.perf_counter()
    {call}
    t3 = time.perf_counter()
_process.kernel_builds.wait()
built = time.perf_counter() - t3
warm = float("inf")
with _plan.recording() as later:
    for _ in range(3):
        t4 = time.perf_counter()
        {call}
        warm = min(warm, time.perf_counter() - t4)
print(json.dumps(dict(imp=t1 - t0, first=t3 - t2, built=built, warm=warm,
                      algs=sorted(set(names)), later=sorted(set(later)))))
"""

NN_SNIPPET = """
import numpy as np
from convgrad import nn
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, seed=0), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(8 * 4 * 4, 10, seed=1))
opt = nn.Adam(model.parameters(), lr=1e-2)
x, labels = np.random.default_rng(0).random((32, 1, 8, 8), np.float32), np.arange(32) % 10
opt.zero_grad()
loss, grad = nn.softmax_cross_entropy(model(x), labels)
model.backward(grad)
opt.step()
"""


def _env(cache: str) -> dict:
    return dict(os.environ, NUMBA_CACHE_DIR=cache, CONVGRAD_QUIET_COMPILE="1")


def probe(call: str, cache: str) -> dict:
    script = PROBE.format(setup=SETUP, call=call)
    out = subprocess.run(
        [sys.executable, "-c", script], env=_env(cache), capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def wall(command: list[str], cache: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=_env(cache), capture_output=True, check=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="", help="comma-separated row names (default all)")
    args = parser.parse_args(argv)
    chosen = set(filter(None, args.rows.split(",")))
    rows = [r for r in ROWS if not chosen or r[0] in chosen]
    print(
        f"{'row':<24}{'first call ran':<20}{'import s':>9}{'cold s':>8}{'build s':>8}"
        f"{'cached s':>9}  {'warm ran':<20}{'warm ms':>8}"
    )
    worst = 0.0
    for name, call in rows:
        with tempfile.TemporaryDirectory() as cache:
            cold = probe(call, cache)
            cached = probe(call, cache)
        if "algorithm=" not in call:
            worst = max(worst, cold["first"])
        print(
            f"{name:<24}{'+'.join(cold['algs']) or '-':<20}{cold['imp']:>9.2f}"
            f"{cold['first']:>8.2f}{cold['built']:>8.2f}{cached['first']:>9.3f}  "
            f"{'+'.join(cached['later']) or '-':<20}{cached['warm'] * 1e3:>8.2f}",
            flush=True,
        )
    print(f"slowest first call of a public function ('auto'), empty cache: {worst:.2f} s")
    if not chosen:
        for label, command in (
            ("README main command `convgrad`", [sys.executable, "-m", "convgrad"]),
            ("README nn snippet", [sys.executable, "-c", NN_SNIPPET]),
        ):
            with tempfile.TemporaryDirectory() as cache:
                cold, cached = wall(command, cache), wall(command, cache)
            print(f"{label}: {cold:.2f} s cold (empty cache), {cached:.2f} s with the cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``convgrad demo``: the origin layer end to end against the slow reference.

X (5, 100, 100), 10 filters (10, 5, 5, 5) -> O (10, 96, 96); dE/dO random; prints every
shape and the largest difference of O, dE/dF, dE/dX, dE/db from the float64 reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .. import _process, conv, conv_backward, reference


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="convgrad demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((5, 100, 100)).astype(args.dtype)
    w = rng.standard_normal((10, 5, 5, 5)).astype(args.dtype)
    b = rng.standard_normal(10).astype(args.dtype)

    grad_o = rng.standard_normal((10, 96, 96)).astype(args.dtype)

    def step():
        o = conv(x, w, b)
        return (o, *conv_backward(grad_o, x, w, b))

    start = time.perf_counter()
    o, grad_x, grad_w, grad_b = step()
    cold = time.perf_counter() - start  # the process's first call: kernels build meanwhile
    _process.kernel_builds.wait()
    warm = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        step()
        warm = min(warm, time.perf_counter() - start)

    ref_o = reference.conv(x[None], w, b)[0]
    ref_x, ref_w, ref_b = reference.conv_grads(x[None], w, grad_o[None])
    rows = [
        ("X", x.shape, None),
        ("F (filters)", w.shape, None),
        ("b", b.shape, None),
        ("O = X * F + b", o.shape, np.abs(o - ref_o).max()),
        ("dE/dO", grad_o.shape, None),
        ("dE/dF[k,c] = X[c] * dE/dO[k]", grad_w.shape, np.abs(grad_w - ref_w).max()),
        ("dE/dX = full(dE/dO, flip F)", grad_x.shape, np.abs(grad_x - ref_x[0]).max()),
        ("dE/db = sum dE/dO", grad_b.shape, np.abs(grad_b - ref_b).max()),
    ]
    from .wrap import terminal_width, wrap_line

    head = (
        f"origin layer, {args.dtype}: forward + backward in {warm * 1e3:.1f} ms "
        f"(the first call, cold: {cold * 1e3:.0f} ms, while the compiled kernels were "
        "built in the background)"
    )
    print("\n".join(wrap_line(head, terminal_width(), indent=2)))
    for name, shape, err in rows:
        diff = "" if err is None else f"max |diff| vs reference = {err:.2e}"
        print(f"  {name:<30} {'x'.join(map(str, shape)):<12} {diff}")
    worst = max(err for *_, err in rows if err is not None)
    tolerance = 1e-9 if args.dtype == "float64" else 1e-3
    print("OK" if worst < tolerance else "MISMATCH")
    return 0 if worst < tolerance else 1

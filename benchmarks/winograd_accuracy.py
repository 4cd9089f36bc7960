"""float32 error of each Winograd tile size against a float64 reference.

    PYTHONPATH=src python benchmarks/winograd_accuracy.py          # markdown table
    PYTHONPATH=src python benchmarks/winograd_accuracy.py --seeds 5
    PYTHONPATH=src python benchmarks/winograd_accuracy.py --weights   # weight gradients

Forward passes of 3-tap (3x3, 3x3x3) layers with 'same' padding on standard normal
float32 data: the benchmark shapes and larger channel counts. The error is the largest
absolute difference from the float64 result of ``gemm`` (im2col, an independent
algorithm) divided by max(1, its largest magnitude): the measure of the library's
float32 tolerance (2e-5). Each cell is the worst over ``--seeds`` seeds. ``gemm`` in
float32 is the baseline (plain dot products); ``winograd`` and ``winograd4`` run their
registered tiles; the last column runs the next larger tile, which no algorithm uses:
F(6, 3) in 1-D, F(6x6, 3x3) in 2-D, F(4x4x4, 3x3x3) in 3-D. ``--weights``: the same
layers' weight gradients (1-D and 2-D) by ``gemm``, ``blocked_dw`` and ``winograd_dw``
(F(3, 2) per axis), against ``gemm``'s in float64.
"""

from __future__ import annotations

import argparse

import numpy as np

import convgrad as cg
from convgrad._rules import Correlation
from convgrad.algorithms import _winograd

SHAPES = [  # (label, x shape, weight shape)
    ("1-D 64ch L4096", (4, 64, 4096), (64, 64, 3)),
    ("1-D 512ch L256", (4, 512, 256), (512, 512, 3)),
    ("2-D 3x3-56 (64ch)", (8, 64, 56, 56), (64, 64, 3, 3)),
    ("2-D 3x3-14 (256ch)", (8, 256, 14, 14), (256, 256, 3, 3)),
    ("2-D 1024ch 14x14", (2, 1024, 14, 14), (1024, 1024, 3, 3)),
    ("3-D conv3d (32ch)", (2, 32, 16, 28, 28), (32, 32, 3, 3, 3)),
    ("3-D 128ch 8x14x14", (2, 128, 8, 14, 14), (128, 128, 3, 3, 3)),
]
ALGORITHMS = ("gemm", "winograd", "winograd4", "larger")
LARGER = {1: (6,), 2: (6, 6), 3: (4, 4, 4)}  # tiles of the last column


def _larger(x, w):
    """x (N, C, *S) correlated with w (K, C, 3, ...), 'same' padding, by LARGER's tile."""
    dims = x.ndim - 2
    corr = Correlation((1,) * dims, ((1, 1),) * dims, (1,) * dims, (1,) * dims)
    return _winograd.run(LARGER, "larger", x[None], w[None], corr, 2**30)[0]


def error(x, w, algorithm: str) -> float:
    """max |float32 result - float64 reference| / max(1, max |reference|)."""
    expected = cg.conv(x.astype(np.float64), w.astype(np.float64), padding=1, algorithm="gemm")
    if algorithm == "larger":
        got = _larger(x, w)
    else:
        got = cg.conv(x, w, padding=1, algorithm=algorithm, workspace_limit=2**31)
    return float(np.abs(got - expected).max() / max(1.0, np.abs(expected).max()))


WEIGHT_ALGORITHMS = ("gemm", "blocked_dw", "winograd_dw")


def weight_error(x, dy, w_shape, algorithm: str) -> float:
    """The same measure for the weight gradient of x with output gradient dy."""
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    expected = cg.conv_weight_grad(x64, dy64, w_shape, padding=1, algorithm="gemm")
    got = cg.conv_weight_grad(x, dy, w_shape, padding=1, algorithm=algorithm)
    return float(np.abs(got - expected).max() / max(1.0, np.abs(expected).max()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--weights", action="store_true", help="weight gradients instead")
    args = parser.parse_args(argv)
    algorithms = WEIGHT_ALGORITHMS if args.weights else ALGORITHMS
    print("| layer | " + " | ".join(f"`{a}`" for a in algorithms) + " |")
    print("|---|" + "---:|" * len(algorithms))
    for label, x_shape, w_shape in SHAPES:
        if args.weights and len(x_shape) > 4:
            continue  # winograd_dw: 1-D and 2-D
        worst = dict.fromkeys(algorithms, 0.0)
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            x = rng.standard_normal(x_shape, dtype=np.float32)
            w = rng.standard_normal(w_shape, dtype=np.float32)
            for a in algorithms:
                if args.weights:
                    dy = rng.standard_normal((x_shape[0], w_shape[0], *x_shape[2:]), np.float32)
                    worst[a] = max(worst[a], weight_error(x, dy, w_shape, a))
                else:
                    worst[a] = max(worst[a], error(x, w, a))
        print(f"| {label} | " + " | ".join(f"{worst[a]:.1e}" for a in algorithms) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

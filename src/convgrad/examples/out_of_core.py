"""Out of core: forward and dE/dw over a data set on disk, in bounded memory.

    python -m convgrad.examples.out_of_core [--n 512] [--size 64] [--rows 8] [--dir DIR]

Writes a random data set x (N, C, size, size) float32 to ``x.npy``, then with Dask
(threads) streams the forward pass y = conv(x, w) to ``y.npy`` chunk by chunk and computes
dE/dw for E = |y|^2 / 2 (so dE/dy = y, read back from disk). Prints the data size, the peak
of the Python/NumPy heap while computing (``tracemalloc``; pages of the memory-mapped files
are the OS's page cache, not counted), and checks dE/dw against a NumPy loop over chunks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from .. import conv, conv_weight_grad
from .._extras import require, run_command


def _require_dask_array():
    return require("dask.array", extra="dask", package="dask", purpose="the out-of-core example")


class NpyFile:
    """A ``.npy`` file read slice by slice through a memory map opened per read.

    ``dask.array.from_array`` copies an ``np.memmap`` into memory (it calls ``.copy()``);
    this object has no ``copy``, pickles as its path, and reads only the rows asked for.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        header = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = header.shape, header.dtype, header.ndim

    def __getitem__(self, index):
        return np.load(self.path, mmap_mode="r")[index]


def npy_array(path: str | Path, rows: int):
    """A lazy dask array over a ``.npy`` file, ``rows`` items of axis 0 per chunk."""
    da = _require_dask_array()

    source = NpyFile(path)
    return da.from_array(source, chunks=(rows, *source.shape[1:]), asarray=True)


def write_random(path: Path, shape: tuple[int, ...], seed: int = 0, rows: int = 16) -> None:
    """A random float32 data set written to ``path`` a few rows at a time."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, "w+", np.float32, shape)
    for i in range(0, shape[0], rows):
        out[i : i + rows] = rng.standard_normal((min(rows, shape[0] - i), *shape[1:]))
    out.flush()


def forward_and_weight_grad(
    x_path: Path, y_path: Path, weight: np.ndarray, rows: int, workspace_limit: int
) -> tuple[np.ndarray, int]:
    """y = conv(x, w) streamed to ``y_path``; returns (dE/dw for E = |y|^2/2, peak heap bytes).

    Two passes over the disk: the forward pass to y, then dE/dw from x and y.
    (In one ``dask.compute`` of both, dask keeps every y chunk alive until the last one.)
    """
    da = _require_dask_array()

    x = npy_array(x_path, rows)
    n = x.shape[0]
    y_shape = conv(np.zeros((1, *x.shape[1:]), x.dtype), weight).shape[1:]
    y_disk = np.lib.format.open_memmap(y_path, "w+", x.dtype, (n, *y_shape))
    # warm up: a first compute imports modules, which is not the computation's memory
    conv_weight_grad(x[:rows], conv(x[:rows], weight), weight.shape).compute()

    tracemalloc.start()
    try:
        da.store(conv(x, weight, workspace_limit=workspace_limit), y_disk, lock=False)
        y_disk.flush()
        y = npy_array(y_path, rows)
        grad_w = conv_weight_grad(x, y, weight.shape, workspace_limit=workspace_limit).compute()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return grad_w, peak


def numpy_weight_grad(x_path: Path, weight: np.ndarray, rows: int) -> np.ndarray:
    """The same dE/dw by a plain NumPy loop over chunks (float64 accumulation)."""
    x = np.load(x_path, mmap_mode="r")
    total = np.zeros(weight.shape)
    for i in range(0, x.shape[0], rows):
        chunk = np.asarray(x[i : i + rows], dtype=np.float64)
        total += conv_weight_grad(chunk, conv(chunk, weight.astype(np.float64)), weight.shape)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m convgrad.examples.out_of_core", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--n", type=int, default=512, help="images in the data set (512)")
    parser.add_argument("--channels", type=int, default=3, help="input channels (3)")
    parser.add_argument("--size", type=int, default=64, help="image height and width (64)")
    parser.add_argument("--filters", type=int, default=8, help="filters, 3x3 (8)")
    parser.add_argument("--rows", type=int, default=8, help="images per chunk (8)")
    parser.add_argument("--workspace-limit", type=int, default=2**20, help="bytes (1 MiB)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (a temp dir)")
    args = parser.parse_args(argv)

    _require_dask_array()
    import dask

    with tempfile.TemporaryDirectory() as tmp, dask.config.set(scheduler="threads"):
        directory = args.dir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        x_path, y_path = directory / "x.npy", directory / "y.npy"
        shape = (args.n, args.channels, args.size, args.size)
        write_random(x_path, shape)
        weight = np.random.default_rng(1).standard_normal((args.filters, args.channels, 3, 3))
        weight = weight.astype(np.float32)

        start = time.perf_counter()
        grad_w, peak = forward_and_weight_grad(
            x_path, y_path, weight, args.rows, args.workspace_limit
        )
        elapsed = time.perf_counter() - start
        on_disk = x_path.stat().st_size + y_path.stat().st_size
        expected = numpy_weight_grad(x_path, weight, args.rows)

    error = np.abs(grad_w - expected).max() / np.abs(expected).max()
    print(f"data on disk: x {shape} + y: {on_disk / 2**20:.1f} MiB")
    print(f"forward to disk + dE/dw in {elapsed:.2f} s, chunks of {args.rows} images")
    print(f"peak heap while computing: {peak / 2**20:.1f} MiB")
    print(f"dE/dw vs NumPy loop: max relative difference {error:.1e}")
    ok = error < 1e-4
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_command(main, sys.argv[1:]))

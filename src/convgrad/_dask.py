"""Dask arrays for every public function: lazy, chunked along the batch axis.

``functional`` hands a call here when ``x``, ``grad_output``, ``weight`` or ``bias`` is a
``dask.array.Array``. Nothing here knows a convolution rule: every task calls the public
NumPy function of ``functional`` on one batch chunk.

- forward, transposed forward and dE/dx: one task per batch chunk (``blockwise``); the
  output keeps the batch chunks of its input.
- dE/dw and dE/db: one partial sum per batch chunk, in the compute dtype (float32 for
  float16), stacked and tree-reduced (``sum(split_every=SPLIT_EVERY)``), then cast.
- ``conv_backward`` / ``conv_transpose_backward``: one task per chunk runs the NumPy
  backward and yields all three parts, so each chunk of x and grad_output is read once.
- chunks along every axis but the batch are merged first; a NumPy ``x`` or
  ``grad_output`` paired with a dask one is chunked to match it.
- ``weight`` and ``bias`` enter the graph once, as single-chunk arrays that tasks name by
  key, so a cluster ships them to each worker once, never inside every task.
- shapes, dtypes and options are checked at the call, with the NumPy path's errors;
  output chunks, dtype and ``meta`` are given, so dask never runs our code to guess them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _process, _validate
from . import functional as F
from ._extras import require
from ._options import Options
from ._spec import ConvSpec

da = require("dask.array", extra="dask", package="dask", purpose="convolving dask arrays")

SPLIT_EVERY = 8
"""Partial sums combined per node of the dE/dw and dE/db reduction trees."""

__all__ = [
    "conv",
    "conv_input_grad",
    "conv_weight_grad",
    "conv_bias_grad",
    "conv_backward",
    "conv_transpose",
    "conv_transpose_backward",
]


# ------------------------------------------------------------------ validation (eager)


def _float(value: Any, name: str) -> Any:
    """A dask array of float dtype and known shape, or ``_validate.as_float_array(value, name)``."""
    if not isinstance(value, da.Array):
        return _validate.as_float_array(value, name)
    if any(math.isnan(s) for s in value.shape):
        raise ValueError(
            f"{name} must have known chunk sizes, got shape {value.shape}; "
            f"call {name}.compute_chunk_sizes() first"
        )
    _validate.check_float_dtype(value.dtype, name)
    if not value.dtype.isnative:  # '>f8' on a little-endian machine: a native lazy copy
        value = value.astype(_validate.native(value.dtype))
    return value


# ------------------------------------------------------------------------- graph pieces


def _once(array: Any) -> da.Array | None:
    """weight or bias as a single-chunk dask array: one key in the graph."""
    if array is None:
        return None
    if isinstance(array, da.Array):
        return array.rechunk(array.shape)
    return da.from_array(array, chunks=array.shape)


def _batched(arrays: Sequence[Any], spec: ConvSpec) -> list[da.Array]:
    """x / grad_output as batched dask arrays chunked along axis 0 only, all alike.

    The batch chunks are those of the first dask array among them (empty chunks dropped);
    NumPy arrays are chunked to match, or kept whole when none is dask.
    """
    arrays = [a if spec.batched else a[None] for a in arrays]
    lead = next((a for a in arrays if isinstance(a, da.Array)), None)
    batch = tuple(c for c in lead.chunks[0] if c) if lead is not None else arrays[0].shape[0]
    out = []
    for a in arrays:
        chunks = (batch, *a.shape[1:])
        out.append(a.rechunk(chunks) if isinstance(a, da.Array) else da.from_array(a, chunks))
    return out


def _unbatched(a: da.Array, spec: ConvSpec) -> da.Array:
    return a if spec.batched else a[0]


def _ind(prefix: str, ndim: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(ndim))


def _per_chunk(
    task,
    token: str,
    batched: Sequence[da.Array],
    whole: Sequence[da.Array | None],
    rows: tuple[int, ...],
    tail: Sequence[int],
    dtype: Any,
    **kw: Any,
) -> da.Array:
    """One task per batch chunk: ``task(*batched_chunks, *whole, **kw)``.

    ``batched`` share their chunks along axis 0 and have one chunk along the others;
    ``whole`` are None or single-chunk arrays, handed whole to every task by key.
    The result has ``rows`` as its axis-0 chunks and one chunk of ``tail`` after that.
    """
    out = ("n", *_ind("o", len(tail)))
    pairs: list[Any] = []
    for i, a in enumerate(batched):
        pairs += [a, ("n", *_ind(f"b{i}_", a.ndim - 1))]
    for i, a in enumerate(whole):
        pairs += [None, None] if a is None else [a, _ind(f"w{i}_", a.ndim)]
    return da.blockwise(
        task,
        out,
        *pairs,
        new_axes=dict(zip(out[1:], tail)),
        adjust_chunks={"n": tuple(rows)},
        concatenate=True,
        token=token,
        dtype=dtype,
        meta=np.empty((0,) * len(out), dtype=dtype),
        **kw,
    )


def _tree_sum(partials: da.Array, result: Any) -> da.Array:
    """(chunks, *shape) partial sums -> (*shape), by a tree of ``SPLIT_EVERY``-way sums."""
    return partials.sum(axis=0, split_every=SPLIT_EVERY).astype(result, copy=False)


def _ones(a: da.Array) -> tuple[int, ...]:
    return (1,) * a.numblocks[0]


# ----------------------------------------------------------------- tasks (one per chunk)
# Module-level functions, so that a cluster pickles them by reference. Each waits for
# the kernels it needs rather than running another algorithm meanwhile: a task's result
# does not depend on when (or in which worker process) it ran, so a graph gives the same
# bits on threads and on a cluster, and a long-lived worker pays the build once.


def _task(function):
    @functools.wraps(function)
    def waiting_for_builds(*args, **kwargs):
        with _process.kernel_builds.on_this_thread():
            return function(*args, **kwargs)

    return waiting_for_builds


@_task
def _conv_task(x, weight, bias, *, kw):
    return F.conv(x, weight, bias, **kw)


@_task
def _transpose_task(x, weight, bias, *, kw):
    return F.conv_transpose(x, weight, bias, **kw)


@_task
def _input_grad_task(grad_output, weight, *, input_tail, kw):
    return F.conv_input_grad(grad_output, weight, (grad_output.shape[0], *input_tail), **kw)


@_task
def _weight_grad_task(x, grad_output, *, compute, weight_shape, kw):
    """This chunk's dE/dw in the compute dtype (float16 accumulates in float32), (1, *w)."""
    x, grad_output = x.astype(compute, copy=False), grad_output.astype(compute, copy=False)
    return F.conv_weight_grad(x, grad_output, weight_shape, **kw)[None]


def _bias_grad_task(grad_output, *, compute):
    return F.conv_bias_grad(grad_output.astype(compute, copy=False))[None]


@_task
def _backward_task(grad_output, x, weight, bias, *, backward: str, compute, kw):
    """(grad_x, grad_w[None], grad_b[None] or None) of one chunk by ``F.<backward>``, in the
    compute dtype."""
    args = [None if a is None else a.astype(compute, copy=False) for a in (x, weight, bias)]
    grad_x, grad_w, grad_b = getattr(F, backward)(
        grad_output.astype(compute, copy=False), *args, **kw
    )
    return grad_x, grad_w[None], None if grad_b is None else grad_b[None]


def _pick_task(parts, *, index, cast):
    return parts[index].astype(cast, copy=False)


# ------------------------------------------------------------------- shared by the API


def _forward(task, token, x, weight, bias, spec: ConvSpec, tail, result, kw) -> da.Array:
    """y (N, *tail) with x's batch chunks, one ``task(x_chunk, weight, bias)`` per chunk."""
    (xb,) = _batched([x], spec)
    whole = [_once(weight), _once(bias)]
    y = _per_chunk(task, token, [xb], whole, xb.chunks[0], tail, result, kw=kw)
    return _unbatched(y, spec)


def _backward(backward, token, call: _validate.Call, grad_x_tail, kw) -> tuple:
    """(grad_input, grad_weight, grad_bias or None) of a validated backward ``call``, each
    chunk's three from one task running ``F.<backward>``."""
    grad_output, x, weight, bias = call.arrays
    spec, result, compute = call.spec, call.result, call.compute
    gy, xb = _batched([grad_output, x], spec)
    weight, bias = _once(weight), _once(bias)
    # one object per chunk: the tuple of its three gradients (never seen by users)
    parts = _per_chunk(
        _backward_task,
        token,
        [gy, xb],
        [weight, bias],
        _ones(gy),
        (),
        object,
        backward=backward,
        compute=compute,
        kw=kw,
    )

    def pick(index, rows, tail, cast):
        return _per_chunk(
            _pick_task, token + "-pick", [parts], [], rows, tail, cast, index=index, cast=cast
        )

    grad_x = pick(0, gy.chunks[0], grad_x_tail, result)
    grad_w = _tree_sum(pick(1, _ones(gy), weight.shape, compute), result)
    grad_b = None if bias is None else _tree_sum(pick(2, _ones(gy), bias.shape, compute), result)
    return _unbatched(grad_x, spec), grad_w, grad_b


# ------------------------------------------------------------------------- public API
# The public functions of ``functional`` hand their arguments and options record here;
# the same validation (``_validate``) runs on dask arrays. Every task gets the options as
# the keyword arguments of the NumPy function it calls.


def conv(x, weight, bias, options: Options) -> da.Array:
    """Lazy ``functional.conv``: y (N, K, *S_out) with x's batch chunks."""
    call = _validate.forward(x, weight, bias, options, as_array=_float)
    tail = (call.spec.out_channels, *call.spec.out_spatial)
    task, token = _conv_task, "convgrad-conv"
    return _forward(task, token, *call.arrays, call.spec, tail, call.result, options.keywords())


def conv_input_grad(grad_output, weight, input_shape, options: Options) -> da.Array:
    """Lazy ``functional.conv_input_grad``: (N, C, *S) with grad_output's batch chunks."""
    call = _validate.input_grad(grad_output, weight, input_shape, options, as_array=_float)
    grad_output, weight = call.arrays
    (gy,) = _batched([grad_output], call.spec)
    tail = (call.spec.in_channels, *call.spec.in_spatial)
    grad_x = _per_chunk(
        _input_grad_task,
        "convgrad-input-grad",
        [gy],
        [_once(weight)],
        gy.chunks[0],
        tail,
        call.result,
        input_tail=tail,
        kw=options.keywords(),
    )
    return _unbatched(grad_x, call.spec)


def conv_weight_grad(x, grad_output, weight_shape, options: Options) -> da.Array:
    """Lazy ``functional.conv_weight_grad``: a tree sum of per-chunk (K, C/g, *k) partials."""
    call = _validate.weight_grad(x, grad_output, weight_shape, options, as_array=_float)
    xb, gy = _batched(list(call.arrays), call.spec)
    shape = call.spec.weight_shape
    partials = _per_chunk(
        _weight_grad_task,
        "convgrad-weight-grad",
        [xb, gy],
        [],
        _ones(xb),
        shape,
        call.compute,
        compute=call.compute,
        weight_shape=shape,
        kw=options.keywords(),
    )
    return _tree_sum(partials, call.result)


def conv_bias_grad(grad_output, batched=True) -> da.Array:
    """Lazy ``functional.conv_bias_grad``: a tree sum of per-chunk (K,) partials."""
    grad_output, result, compute = _validate.bias_grad(grad_output, batched, _float)
    gy = grad_output if batched else grad_output[None]
    gy = gy.rechunk((tuple(c for c in gy.chunks[0] if c), *gy.shape[1:]))
    shape = (gy.shape[1],)
    token = "convgrad-bias-grad"
    partials = _per_chunk(
        _bias_grad_task, token, [gy], [], _ones(gy), shape, compute, compute=compute
    )
    return _tree_sum(partials, result)


def conv_backward(grad_output, x, weight, bias, options: Options) -> tuple:
    """Lazy ``functional.conv_backward``: (grad_input, grad_weight, grad_bias or None)."""
    call = _validate.backward(grad_output, x, weight, bias, options, as_array=_float)
    tail = (call.spec.in_channels, *call.spec.in_spatial)
    return _backward("conv_backward", "convgrad-backward", call, tail, options.keywords())


def conv_transpose(x, weight, bias, options: Options) -> da.Array:
    """Lazy ``functional.conv_transpose``: (N, K, *S_out) with x's batch chunks."""
    call = _validate.forward(x, weight, bias, options, as_array=_float)
    # the spec is the forward convolution's: the transposed output is its input
    tail = (call.spec.in_channels, *call.spec.in_spatial)
    task, token = _transpose_task, "convgrad-conv-transpose"
    return _forward(task, token, *call.arrays, call.spec, tail, call.result, options.keywords())


def conv_transpose_backward(grad_output, x, weight, bias, options: Options) -> tuple:
    """Lazy ``functional.conv_transpose_backward``: (grad_input, grad_weight, grad_bias)."""
    call = _validate.backward(grad_output, x, weight, bias, options, as_array=_float)
    # the transposed input is the forward convolution's output
    tail = (call.spec.out_channels, *call.spec.out_spatial)
    backward, token = "conv_transpose_backward", "convgrad-transpose-backward"
    return _backward(backward, token, call, tail, options.keywords())

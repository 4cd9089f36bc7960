"""Public convolution functions: forward, every gradient, transposed convolution.

Layouts follow PyTorch: input (N, C, *S) or unbatched (C, *S), weight
(K, C/groups, *k); transposed weight (C, K/groups, *k). Each function gathers its options
in one record (``_options``), validates once (``_validate``, ``_spec``), then runs the
steps of ``_rules`` (one per pass) with the runner (``_runner``) on the primitive.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _rules, _validate
from ._options import Options
from ._runner import run
from ._spec import ConvSpec

IntOrTuple = int | Sequence[int]
Padding = int | str | Sequence[int] | Sequence[Sequence[int]]

__all__ = [
    "conv",
    "conv_input_grad",
    "conv_weight_grad",
    "conv_bias_grad",
    "conv_backward",
    "conv_transpose",
    "conv_transpose_backward",
]


def _bias_grad(grad_y: np.ndarray, compute: np.dtype) -> np.ndarray:
    """grad_y (N, K, *S) -> (K,)."""
    axes = (0, *range(2, grad_y.ndim))
    return grad_y.sum(axis=axes, dtype=compute)


def _add_bias(y: np.ndarray, bias: np.ndarray | None, nd: int) -> np.ndarray:
    if bias is not None:
        y += bias.reshape(-1, *(1,) * nd)
    return y


def _is_dask(*values: Any) -> bool:
    """True if any value is a dask array (checked without importing dask)."""
    return any(type(v).__module__.split(".")[0] == "dask" for v in values)


def _dask():
    from . import _dask as module  # the optional extra; imported only for dask input

    return module


def _size_text(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes} B" if unit == "B" else f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    raise AssertionError  # pragma: no cover


@contextlib.contextmanager
def _naming_outputs(function: str, call, *shapes: tuple[int, ...]):
    """Re-raise a MemoryError as one that names ``function``'s outputs as its caller sees
    them (shapes and dtype, and the bytes they need), not the internal (G, B, O, *S)."""
    try:
        yield
    except MemoryError as exc:
        dtype = np.dtype(call.result)
        need = sum(math.prod(shape) for shape in shapes) * dtype.itemsize
        names = " and ".join(f"{shape} {dtype}" for shape in shapes)
        what = "the output" if len(shapes) == 1 else "the outputs"
        raise MemoryError(
            f"{function}: {what} {names} {'needs' if len(shapes) == 1 else 'need'} "
            f"{_size_text(need)}; out of memory computing "
            f"{'it' if len(shapes) == 1 else 'them'} ({exc})"
        ) from exc


# ------------------------------------------------------------------------- public API


def _batched(array: np.ndarray, spec: ConvSpec) -> np.ndarray:
    return array if spec.batched else array[None]


def _result(array: np.ndarray, spec: ConvSpec | None, dtype: np.dtype) -> np.ndarray:
    """A fresh contiguous result in the result dtype, unbatched again where the input was."""
    array = np.ascontiguousarray(array)
    if spec is not None and not spec.batched:
        array = array[0]
    return array.astype(dtype, copy=False)


def _computed(call, *arrays) -> list:
    """The arrays cast to the call's compute dtype (None stays None)."""
    return [None if a is None else a.astype(call.compute, copy=False) for a in arrays]


def _run(step: _rules.Step, call: _validate.Call, **arrays: np.ndarray) -> np.ndarray:
    """``step``'s result (batched) from the call's arrays by name (x and grad_output as
    given, batched here), run with the call's algorithm and workspace limit."""
    arrays = {name: a if name == "weight" else _batched(a, call.spec) for name, a in arrays.items()}
    return run(step, arrays, call.options.algorithm, call.options.workspace_limit)


def _gradients(call, grad_x, grad_w, grad_y, bias) -> tuple:
    """(grad_input, grad_weight, grad_bias or None) as results of ``call``."""
    grad_b = None if bias is None else _bias_grad(grad_y, call.compute)
    return (
        _result(grad_x, call.spec, call.result),
        _result(grad_w, None, call.result),
        None if grad_b is None else _result(grad_b, None, call.result),
    )


def conv(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> np.ndarray:
    """N-d convolution (cross-correlation, as in PyTorch).

    x (N, C, *S) or (C, *S), weight (K, C/groups, *k), bias (K,) -> y (N, K, *S_out) with
    ``y[n, k, i] = b[k] + sum_{c, j} pad(x)[n, c, i*s + j*d] * w[k, c, j]`` (per group).
    """
    options = Options(stride, padding, dilation, groups, padding_mode, algorithm, workspace_limit)
    if _is_dask(x, weight, bias):
        return _dask().conv(x, weight, bias, options)
    call = _validate.forward(x, weight, bias, options)
    with _naming_outputs("conv", call, call.spec.output_shape):
        x, weight, bias = _computed(call, *call.arrays)
        y = _run(_rules.forward(call.spec), call, x=x, weight=weight)
        y = _add_bias(np.ascontiguousarray(y), bias, call.spec.nd)
        return _result(y, call.spec, call.result)


def conv_input_grad(
    grad_output: Any,
    weight: Any,
    input_shape: Sequence[int],
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> np.ndarray:
    """dE/dx of ``conv``: a full correlation of the stride-dilated grad_output with the
    flipped, in/out-swapped filters. grad_output (N, K, *S_out) -> (N, C, *S) = input_shape."""
    options = Options(stride, padding, dilation, groups, padding_mode, algorithm, workspace_limit)
    if _is_dask(grad_output, weight):
        return _dask().conv_input_grad(grad_output, weight, input_shape, options)
    call = _validate.input_grad(grad_output, weight, input_shape, options)
    with _naming_outputs("conv_input_grad", call, call.spec.input_shape):
        grad_y, weight = _computed(call, *call.arrays)
        grad_x = _run(_rules.input_grad(call.spec), call, grad_output=grad_y, weight=weight)
        return _result(grad_x, call.spec, call.result)


def conv_weight_grad(
    x: Any,
    grad_output: Any,
    weight_shape: Sequence[int],
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> np.ndarray:
    """dE/dw of ``conv``: ``dw[k, c] = sum_n x[n, c] ⋆ grad_output[n, k]`` (each input
    channel correlated with each output-gradient map). Returns weight_shape (K, C/g, *k)."""
    options = Options(stride, padding, dilation, groups, padding_mode, algorithm, workspace_limit)
    if _is_dask(x, grad_output):
        return _dask().conv_weight_grad(x, grad_output, weight_shape, options)
    call = _validate.weight_grad(x, grad_output, weight_shape, options)
    with _naming_outputs("conv_weight_grad", call, call.spec.weight_shape):
        x, grad_y = _computed(call, *call.arrays)
        grad_w = _run(_rules.weight_grad(call.spec), call, x=x, grad_output=grad_y)
        return _result(grad_w, None, call.result)


def conv_bias_grad(grad_output: Any, batched: bool = True) -> np.ndarray:
    """dE/db: grad_output (N, K, *S) (or (K, *S) with batched=False) summed to (K,)."""
    if _is_dask(grad_output):
        return _dask().conv_bias_grad(grad_output, batched)
    grad_output, result, compute = _validate.bias_grad(grad_output, batched)
    grad_y = grad_output if batched else grad_output[None]
    return _bias_grad(grad_y, compute).astype(result, copy=False)


def conv_backward(
    grad_output: Any,
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """All gradients of ``conv``: (grad_input, grad_weight, grad_bias or None)."""
    options = Options(stride, padding, dilation, groups, padding_mode, algorithm, workspace_limit)
    if _is_dask(grad_output, x, weight, bias):
        return _dask().conv_backward(grad_output, x, weight, bias, options)
    call = _validate.backward(grad_output, x, weight, bias, options)
    with _naming_outputs("conv_backward", call, call.spec.input_shape, call.spec.weight_shape):
        return _backward(call, _rules.input_grad(call.spec), _rules.weight_grad(call.spec))


def conv_transpose(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> np.ndarray:
    """Transposed convolution (PyTorch's conv_transposeNd): the input gradient of the
    convolution with the same weight. x (N, C, *S), weight (C, K/g, *k) -> (N, K, *S_out),
    S_out = (S-1)*s - 2p + d*(k-1) + output_padding + 1."""
    options = Options(
        stride, padding, dilation, groups, "zeros", algorithm, workspace_limit, output_padding
    )
    if _is_dask(x, weight, bias):
        return _dask().conv_transpose(x, weight, bias, options)
    call = _validate.forward(x, weight, bias, options)
    with _naming_outputs("conv_transpose", call, call.spec.input_shape):
        x, weight, bias = _computed(call, *call.arrays)
        # the transposed convolution is the input-gradient rule run on x
        y = _run(_rules.input_grad(call.spec, transposed=True), call, x=x, weight=weight)
        y = _add_bias(np.ascontiguousarray(y), bias, call.spec.nd)
        return _result(y, call.spec, call.result)


def conv_transpose_backward(
    grad_output: Any,
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """All gradients of ``conv_transpose``: grad_input is the forward convolution of
    grad_output with the weight; grad_weight correlates grad_output with x."""
    options = Options(
        stride, padding, dilation, groups, "zeros", algorithm, workspace_limit, output_padding
    )
    if _is_dask(grad_output, x, weight, bias):
        return _dask().conv_transpose_backward(grad_output, x, weight, bias, options)
    call = _validate.backward(grad_output, x, weight, bias, options)
    shapes = (call.spec.output_shape, call.arrays[2].shape)  # grad_input: x's shape
    with _naming_outputs("conv_transpose_backward", call, *shapes):
        spec = call.spec
        input_step = _rules.forward(spec, transposed=True)  # the convolution of dE/dO with w
        return _backward(call, input_step, _rules.weight_grad(spec, transposed=True))


def _backward(call: _validate.Call, input_step: _rules.Step, weight_step: _rules.Step) -> tuple:
    """(grad_input, grad_weight, grad_bias or None) of a validated backward call."""
    grad_y, x, weight, bias = _computed(call, *call.arrays)
    grad_x = _run(input_step, call, grad_output=grad_y, weight=weight)
    grad_w = _run(weight_step, call, x=x, grad_output=grad_y)
    return _gradients(call, grad_x, grad_w, _batched(grad_y, call.spec), bias)

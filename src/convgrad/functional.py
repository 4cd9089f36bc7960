"""Public convolution functions: forward, every gradient, transposed convolution.

Layouts follow PyTorch: input (N, C, *S) or unbatched (C, *S), weight
(K, C/groups, *k); transposed weight (C, K/groups, *k). Each function validates
once (``_checks``, ``_spec``), then runs the correlations of ``_rules`` on the primitive.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _rules
from ._checks import (
    check_backward,
    check_bias_grad,
    check_conv,
    check_input_grad,
    check_transpose,
    check_transpose_backward,
    check_weight_grad,
)
from ._padding import pad, pad_adjoint
from ._primitive import correlate
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


# ------------------------------------------------------------ the three passes (batched)


def _groups_first(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, G*C, *S) -> (G, N, C, *S), a view."""
    n, gc = a.shape[:2]
    return a.reshape(n, groups, gc // groups, *a.shape[2:]).swapaxes(0, 1)


def _groups_merged(a: np.ndarray) -> np.ndarray:
    """(G, N, C, *S) -> (N, G*C, *S)."""
    g, n, c = a.shape[:3]
    return a.swapaxes(0, 1).reshape(n, g * c, *a.shape[3:])


def _forward(x: np.ndarray, weight: np.ndarray, spec: ConvSpec, **options) -> np.ndarray:
    """x (N, C, *S), weight (K, C/g, *k) -> y (N, K, *S_out)."""
    g = spec.groups
    if spec.padding_mode != "zeros":
        x = pad(x, spec.pads, spec.padding_mode)
    inner = _rules.zero_padded(spec)
    rhs = weight.reshape(g, spec.out_channels // g, *weight.shape[1:])
    y = _groups_merged(correlate(_groups_first(x, g), rhs, _rules.forward(inner), **options))
    # a transposed convolution's spec may ask for fewer rows than the correlation yields
    return y[(Ellipsis, *(slice(0, n) for n in spec.out_spatial))]


def _input_grad(grad_y: np.ndarray, weight: np.ndarray, spec: ConvSpec, **options) -> np.ndarray:
    """grad_y (N, K, *S_out), weight (K, C/g, *k) -> grad_x (N, C, *S)."""
    g, nd = spec.groups, spec.nd
    inner = _rules.zero_padded(spec)
    rhs = weight.reshape(g, spec.out_channels // g, *weight.shape[1:]).swapaxes(1, 2)
    rhs = np.flip(rhs, axis=tuple(range(3, 3 + nd)))
    grad_x = correlate(_groups_first(grad_y, g), rhs, _rules.input_grad(inner), **options)
    grad_x = _groups_merged(grad_x)
    if spec.padding_mode != "zeros":
        grad_x = pad_adjoint(grad_x, spec.pads, spec.padding_mode)
    return grad_x


def _weight_grad(x: np.ndarray, grad_y: np.ndarray, spec: ConvSpec, **options) -> np.ndarray:
    """x (N, C, *S), grad_y (N, K, *S_out) -> grad_w (K, C/g, *k), summed over N."""
    g = spec.groups
    if spec.padding_mode != "zeros":
        x = pad(x, spec.pads, spec.padding_mode)
    inner = _rules.zero_padded(spec)
    lhs = _groups_first(x, g).swapaxes(1, 2)  # (g, C/g, N, *S)
    rhs = _groups_first(grad_y, g).swapaxes(1, 2)  # (g, K/g, N, *S_out)
    grad_w = correlate(lhs, rhs, _rules.weight_grad(inner), **options)  # (g, C/g, K/g, *k)
    return grad_w.swapaxes(1, 2).reshape(spec.weight_shape)


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
    args = (x, weight, bias, stride, padding, dilation, groups, padding_mode)
    if _is_dask(x, weight, bias):
        return _dask().conv(*args, algorithm=algorithm, workspace_limit=workspace_limit)
    call = check_conv(*args, algorithm, workspace_limit)
    with _naming_outputs("conv", call, call.spec.output_shape):
        x, weight, bias = _computed(call, *call.arrays)
        y = _forward(_batched(x, call.spec), weight, call.spec, **call.options)
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
    args = (grad_output, weight, input_shape, stride, padding, dilation, groups, padding_mode)
    if _is_dask(grad_output, weight):
        return _dask().conv_input_grad(*args, algorithm=algorithm, workspace_limit=workspace_limit)
    call = check_input_grad(*args, algorithm, workspace_limit)
    with _naming_outputs("conv_input_grad", call, call.spec.input_shape):
        grad_y, weight = _computed(call, *call.arrays)
        grad_x = _input_grad(_batched(grad_y, call.spec), weight, call.spec, **call.options)
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
    args = (x, grad_output, weight_shape, stride, padding, dilation, groups, padding_mode)
    if _is_dask(x, grad_output):
        return _dask().conv_weight_grad(*args, algorithm=algorithm, workspace_limit=workspace_limit)
    call = check_weight_grad(*args, algorithm, workspace_limit)
    with _naming_outputs("conv_weight_grad", call, call.spec.weight_shape):
        x, grad_y = (_batched(a, call.spec) for a in _computed(call, *call.arrays))
        return _result(_weight_grad(x, grad_y, call.spec, **call.options), None, call.result)


def conv_bias_grad(grad_output: Any, batched: bool = True) -> np.ndarray:
    """dE/db: grad_output (N, K, *S) (or (K, *S) with batched=False) summed to (K,)."""
    if _is_dask(grad_output):
        return _dask().conv_bias_grad(grad_output, batched)
    grad_output, result, compute = check_bias_grad(grad_output, batched)
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
    args = (grad_output, x, weight, bias, stride, padding, dilation, groups, padding_mode)
    if _is_dask(grad_output, x, weight, bias):
        return _dask().conv_backward(*args, algorithm=algorithm, workspace_limit=workspace_limit)
    call = check_backward(*args, algorithm, workspace_limit)
    with _naming_outputs("conv_backward", call, call.spec.input_shape, call.spec.weight_shape):
        grad_y, x, weight, bias = _computed(call, *call.arrays)
        grad_y, x = _batched(grad_y, call.spec), _batched(x, call.spec)
        grad_x = _input_grad(grad_y, weight, call.spec, **call.options)
        grad_w = _weight_grad(x, grad_y, call.spec, **call.options)
        return _gradients(call, grad_x, grad_w, grad_y, bias)


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
    args = (x, weight, bias, stride, padding, output_padding, groups, dilation)
    if _is_dask(x, weight, bias):
        return _dask().conv_transpose(*args, algorithm=algorithm, workspace_limit=workspace_limit)
    call = check_transpose(*args, algorithm, workspace_limit)
    with _naming_outputs("conv_transpose", call, call.spec.input_shape):
        x, weight, bias = _computed(call, *call.arrays)
        y = _input_grad(_batched(x, call.spec), weight, call.spec, **call.options)
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
    args = (grad_output, x, weight, bias, stride, padding, output_padding, groups, dilation)
    if _is_dask(grad_output, x, weight, bias):
        return _dask().conv_transpose_backward(
            *args, algorithm=algorithm, workspace_limit=workspace_limit
        )
    call = check_transpose_backward(*args, algorithm, workspace_limit)
    shapes = (call.spec.output_shape, call.arrays[2].shape)  # grad_input: x's shape
    with _naming_outputs("conv_transpose_backward", call, *shapes):
        grad_y, x, weight, bias = _computed(call, *call.arrays)
        grad_y, x = _batched(grad_y, call.spec), _batched(x, call.spec)
        grad_x = _forward(grad_y, weight, call.spec, **call.options)
        grad_w = _weight_grad(grad_y, x, call.spec, **call.options)
        return _gradients(call, grad_x, grad_w, grad_y, bias)

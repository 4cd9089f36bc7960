"""Validation at the door, shared by the NumPy (``functional``) and Dask (``_dask``) paths.

``forward``, ``input_grad``, ``weight_grad``, ``backward`` and ``bias_grad`` each validate
the arguments of the public functions of that name (with an :class:`Options` record) in a
fixed order, using only shapes and dtypes (so lazy arrays are never computed), and return
a :class:`Call`. ``as_array`` turns an argument into the array type of the path (NumPy by
default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ._options import Options
from ._primitive import check_algorithm
from ._spec import (
    FLOAT_DTYPES,
    ConvSpec,
    check_bias_shape,
    check_output_shape,
    conv_spec,
    transpose_spec,
)

AsArray = Callable[[Any, str], Any]


def as_float_array(value: Any, name: str) -> np.ndarray:
    """np.asarray(value) if it has a float16/32/64 dtype, else TypeError naming ``name``.
    A non-native byte order (``'>f8'`` on a little-endian machine) is converted to a
    native copy; ``value`` itself is never modified."""
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - anything that cannot become an array
        raise TypeError(
            f"{name} must be an array of float16, float32 or float64, got {type(value).__name__}"
        ) from exc
    check_float_dtype(array.dtype, name)
    return array if array.dtype.isnative else array.astype(native(array.dtype))


def native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in the machine's byte order (``'>f8'`` -> float64 on little-endian)."""
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def check_float_dtype(dtype: np.dtype, name: str) -> None:
    """TypeError naming ``name`` unless ``dtype`` is float16/32/64, in either byte order."""
    if native(dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float16, float32 or float64, got {dtype}")


class Call(NamedTuple):
    """A validated call: its arrays (argument order, None kept), spec, options, dtypes."""

    arrays: tuple
    spec: ConvSpec
    options: Options
    result: np.dtype  # dtype of the results (NumPy promotion of the inputs)
    compute: np.dtype  # dtype computed in: float32 for float16


def dtypes(*arrays: Any) -> tuple[np.dtype, np.dtype]:
    """(result dtype, compute dtype): float16 is computed with float32 accumulation."""
    result = np.result_type(*[a.dtype for a in arrays if a is not None])
    return result, (np.dtype(np.float32) if result == np.float16 else result)


def run_options(algorithm: Any, workspace_limit: Any) -> None:
    """ValueError unless ``algorithm`` is known and ``workspace_limit`` is None or a
    positive int (bytes)."""
    check_algorithm(algorithm)
    if workspace_limit is not None and (
        isinstance(workspace_limit, (bool, np.bool_))
        or not isinstance(workspace_limit, (int, np.integer))
        or workspace_limit < 1
    ):
        raise ValueError(f"workspace_limit must be a positive int (bytes), got {workspace_limit!r}")


def layer_spec(input_shape: Any, weight_shape: Any, options: Options, input_name: str) -> ConvSpec:
    """The spec of the convolution ``options`` describe (for a transposed one: of the
    convolution whose input gradient it is)."""
    o = options
    if o.transposed:
        return transpose_spec(
            input_shape, weight_shape, o.stride, o.padding, o.output_padding, o.groups, o.dilation
        )
    return conv_spec(
        input_shape,
        weight_shape,
        o.stride,
        o.padding,
        o.dilation,
        o.groups,
        o.padding_mode,
        input_name=input_name,
    )


def _bias(bias: Any, spec: ConvSpec, options: Options, as_array: AsArray) -> Any:
    if bias is None:
        return None
    bias = as_array(bias, "bias")
    # a transposed convolution's output has the channels of its spec's input
    check_bias_shape(bias.shape, spec.in_channels if options.transposed else spec.out_channels)
    return bias


def _call(arrays: tuple, spec: ConvSpec, options: Options) -> Call:
    run_options(options.algorithm, options.workspace_limit)
    return Call(arrays, spec, options, *dtypes(*arrays))


def forward(x: Any, weight: Any, bias: Any, options: Options, as_array=as_float_array) -> Call:
    """Arguments of ``conv`` and ``conv_transpose``; arrays (x, weight, bias). A transposed
    convolution's spec is that of the convolution whose input gradient it is."""
    x, weight = as_array(x, "x"), as_array(weight, "weight")
    spec = layer_spec(x.shape, weight.shape, options, "x")
    bias = _bias(bias, spec, options, as_array)
    return _call((x, weight, bias), spec, options)


def input_grad(grad_output, weight, input_shape, options: Options, as_array=as_float_array):
    """Arguments of ``conv_input_grad``; arrays (grad_output, weight)."""
    grad_output, weight = as_array(grad_output, "grad_output"), as_array(weight, "weight")
    spec = layer_spec(input_shape, weight.shape, options, "input_shape")
    check_output_shape(grad_output.shape, spec, "grad_output")
    return _call((grad_output, weight), spec, options)


def weight_grad(x, grad_output, weight_shape, options: Options, as_array=as_float_array):
    """Arguments of ``conv_weight_grad``; arrays (x, grad_output)."""
    x, grad_output = as_array(x, "x"), as_array(grad_output, "grad_output")
    spec = layer_spec(x.shape, weight_shape, options, "x")
    check_output_shape(grad_output.shape, spec, "grad_output")
    return _call((x, grad_output), spec, options)


def backward(grad_output, x, weight, bias, options: Options, as_array=as_float_array) -> Call:
    """Arguments of ``conv_backward`` and ``conv_transpose_backward``; arrays
    (grad_output, x, weight, bias)."""
    grad_output, x = as_array(grad_output, "grad_output"), as_array(x, "x")
    weight = as_array(weight, "weight")
    spec = layer_spec(x.shape, weight.shape, options, "x")
    bias = _bias(bias, spec, options, as_array)
    if not options.transposed:
        check_output_shape(grad_output.shape, spec, "grad_output")
    elif tuple(grad_output.shape) != spec.input_shape:
        raise ValueError(
            f"grad_output must have shape {spec.input_shape} for this transposed convolution, "
            f"got {tuple(grad_output.shape)}"
        )
    return _call((grad_output, x, weight, bias), spec, options)


def bias_grad(grad_output: Any, batched: Any, as_array: AsArray = as_float_array):
    """Arguments of ``conv_bias_grad``: returns (grad_output, result dtype, compute dtype)."""
    grad_output = as_array(grad_output, "grad_output")
    if not isinstance(batched, (bool, np.bool_)):
        raise TypeError(f"batched must be a bool, got {batched!r}")
    lo = 3 if batched else 2
    if not lo <= grad_output.ndim <= lo + 2:
        layout = "(N, K, *spatial)" if batched else "(K, *spatial)"
        raise ValueError(
            f"grad_output must have {lo} to {lo + 2} dims {layout} with batched={batched}, "
            f"got shape {grad_output.shape}"
        )
    return (grad_output, *dtypes(grad_output))

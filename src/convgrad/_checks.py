"""Validation at the door, shared by the NumPy (``functional``) and Dask (``_dask``) paths.

Each ``check_*`` validates one public function's arguments in a fixed order, using only
shapes and dtypes (so lazy arrays are never computed), and returns a :class:`Call`.
``as_array`` turns an argument into the array type of the path (NumPy by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

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
    options: dict
    result: np.dtype  # dtype of the results (NumPy promotion of the inputs)
    compute: np.dtype  # dtype computed in: float32 for float16


def dtypes(*arrays: Any) -> tuple[np.dtype, np.dtype]:
    """(result dtype, compute dtype): float16 is computed with float32 accumulation."""
    result = np.result_type(*[a.dtype for a in arrays if a is not None])
    return result, (np.dtype(np.float32) if result == np.float16 else result)


def check_options(algorithm: Any, workspace_limit: Any) -> dict:
    check_algorithm(algorithm)
    if workspace_limit is not None and (
        isinstance(workspace_limit, (bool, np.bool_))
        or not isinstance(workspace_limit, (int, np.integer))
        or workspace_limit < 1
    ):
        raise ValueError(f"workspace_limit must be a positive int (bytes), got {workspace_limit!r}")
    return {"algorithm": algorithm, "workspace_limit": workspace_limit}


def _bias(bias: Any, channels: int, as_array: AsArray) -> Any:
    if bias is None:
        return None
    bias = as_array(bias, "bias")
    check_bias_shape(bias.shape, channels)
    return bias


def _call(arrays: tuple, spec: ConvSpec, algorithm: Any, workspace_limit: Any) -> Call:
    return Call(arrays, spec, check_options(algorithm, workspace_limit), *dtypes(*arrays))


def check_conv(
    x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, workspace_limit,
    as_array: AsArray = as_float_array,
) -> Call:  # fmt: skip
    """Arguments of ``conv``; arrays (x, weight, bias)."""
    x, weight = as_array(x, "x"), as_array(weight, "weight")
    spec = conv_spec(
        x.shape, weight.shape, stride, padding, dilation, groups, padding_mode, input_name="x"
    )
    bias = _bias(bias, spec.out_channels, as_array)
    return _call((x, weight, bias), spec, algorithm, workspace_limit)


def check_input_grad(
    grad_output, weight, input_shape, stride, padding, dilation, groups, padding_mode,
    algorithm, workspace_limit, as_array: AsArray = as_float_array,
) -> Call:  # fmt: skip
    """Arguments of ``conv_input_grad``; arrays (grad_output, weight)."""
    grad_output, weight = as_array(grad_output, "grad_output"), as_array(weight, "weight")
    spec = conv_spec(
        input_shape, weight.shape, stride, padding, dilation, groups, padding_mode,
        input_name="input_shape",
    )  # fmt: skip
    check_output_shape(grad_output.shape, spec, "grad_output")
    return _call((grad_output, weight), spec, algorithm, workspace_limit)


def check_weight_grad(
    x, grad_output, weight_shape, stride, padding, dilation, groups, padding_mode,
    algorithm, workspace_limit, as_array: AsArray = as_float_array,
) -> Call:  # fmt: skip
    """Arguments of ``conv_weight_grad``; arrays (x, grad_output)."""
    x, grad_output = as_array(x, "x"), as_array(grad_output, "grad_output")
    spec = conv_spec(
        x.shape, weight_shape, stride, padding, dilation, groups, padding_mode, input_name="x"
    )
    check_output_shape(grad_output.shape, spec, "grad_output")
    return _call((x, grad_output), spec, algorithm, workspace_limit)


def check_backward(
    grad_output, x, weight, bias, stride, padding, dilation, groups, padding_mode,
    algorithm, workspace_limit, as_array: AsArray = as_float_array,
) -> Call:  # fmt: skip
    """Arguments of ``conv_backward``; arrays (grad_output, x, weight, bias)."""
    grad_output, x = as_array(grad_output, "grad_output"), as_array(x, "x")
    weight = as_array(weight, "weight")
    spec = conv_spec(
        x.shape, weight.shape, stride, padding, dilation, groups, padding_mode, input_name="x"
    )
    bias = _bias(bias, spec.out_channels, as_array)
    check_output_shape(grad_output.shape, spec, "grad_output")
    return _call((grad_output, x, weight, bias), spec, algorithm, workspace_limit)


def check_transpose(
    x, weight, bias, stride, padding, output_padding, groups, dilation, algorithm,
    workspace_limit, as_array: AsArray = as_float_array,
) -> Call:  # fmt: skip
    """Arguments of ``conv_transpose``; arrays (x, weight, bias). The spec is that of the
    forward convolution whose input gradient the transposed convolution is."""
    x, weight = as_array(x, "x"), as_array(weight, "weight")
    spec = transpose_spec(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    bias = _bias(bias, spec.in_channels, as_array)
    return _call((x, weight, bias), spec, algorithm, workspace_limit)


def check_transpose_backward(
    grad_output, x, weight, bias, stride, padding, output_padding, groups, dilation,
    algorithm, workspace_limit, as_array: AsArray = as_float_array,
) -> Call:  # fmt: skip
    """Arguments of ``conv_transpose_backward``; arrays (grad_output, x, weight, bias)."""
    grad_output, x = as_array(grad_output, "grad_output"), as_array(x, "x")
    weight = as_array(weight, "weight")
    spec = transpose_spec(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    bias = _bias(bias, spec.in_channels, as_array)
    if tuple(grad_output.shape) != spec.input_shape:
        raise ValueError(
            f"grad_output must have shape {spec.input_shape} for this transposed convolution, "
            f"got {tuple(grad_output.shape)}"
        )
    return _call((grad_output, x, weight, bias), spec, algorithm, workspace_limit)


def check_bias_grad(grad_output: Any, batched: Any, as_array: AsArray = as_float_array):
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

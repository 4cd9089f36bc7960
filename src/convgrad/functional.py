"""Public convolution functions: forward, every gradient, transposed convolution.

Layouts follow PyTorch: input (N, C, *S) or unbatched (C, *S), weight
(K, C/groups, *k); transposed weight (C, K/groups, *k). Each function validates
once (``_spec``), then runs the correlations of ``_rules`` on the primitive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _rules
from ._padding import pad, pad_adjoint
from ._primitive import check_algorithm, correlate
from ._spec import (
    FLOAT_DTYPES,
    ConvSpec,
    check_bias_shape,
    check_output_shape,
    conv_spec,
    transpose_spec,
)

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


# --------------------------------------------------------------------------- arrays


def as_float_array(value: Any, name: str) -> np.ndarray:
    """np.asarray(value) if it has a float16/32/64 dtype, else TypeError naming ``name``."""
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - anything that cannot become an array
        raise TypeError(
            f"{name} must be an array of float16, float32 or float64, got {type(value).__name__}"
        ) from exc
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float16, float32 or float64, got {array.dtype}")
    return array


def _dtypes(*arrays: np.ndarray | None) -> tuple[np.dtype, np.dtype]:
    """(result dtype, compute dtype): float16 is computed with float32 accumulation."""
    result = np.result_type(*[a.dtype for a in arrays if a is not None])
    return result, (np.dtype(np.float32) if result == np.float16 else result)


def _batched(array: np.ndarray, spec: ConvSpec) -> np.ndarray:
    return array if spec.batched else array[None]


def _unbatched(array: np.ndarray, spec: ConvSpec) -> np.ndarray:
    return array if spec.batched else array[0]


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


def _options(algorithm: str, workspace_limit: int | None) -> dict:
    check_algorithm(algorithm)
    if workspace_limit is not None and (
        not isinstance(workspace_limit, (int, np.integer)) or workspace_limit < 1
    ):
        raise ValueError(f"workspace_limit must be a positive int (bytes), got {workspace_limit!r}")
    return {"algorithm": algorithm, "workspace_limit": workspace_limit}


def _check_bias(bias: Any, channels: int) -> np.ndarray | None:
    if bias is None:
        return None
    bias = as_float_array(bias, "bias")
    check_bias_shape(bias.shape, channels)
    return bias


def _is_dask(*values: Any) -> bool:
    """True if any value is a dask array (checked without importing dask)."""
    return any(type(v).__module__.split(".")[0] == "dask" for v in values)


def _dask():
    from . import _dask as module  # the optional extra; imported only for dask input

    return module


# ------------------------------------------------------------------------- public API


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
    if _is_dask(x, weight, bias):
        return _dask().conv(
            x,
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
            padding_mode,
            algorithm=algorithm,
            workspace_limit=workspace_limit,
        )
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight")
    spec = conv_spec(
        x.shape, weight.shape, stride, padding, dilation, groups, padding_mode, input_name="x"
    )
    bias = _check_bias(bias, spec.out_channels)
    opts = _options(algorithm, workspace_limit)
    result, compute = _dtypes(x, weight, bias)
    y = _forward(
        _batched(x, spec).astype(compute, copy=False),
        weight.astype(compute, copy=False),
        spec,
        **opts,
    )
    y = _add_bias(np.ascontiguousarray(y), bias, spec.nd)
    return _unbatched(y, spec).astype(result, copy=False)


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
    if _is_dask(grad_output, weight):
        return _dask().conv_input_grad(
            grad_output,
            weight,
            input_shape,
            stride,
            padding,
            dilation,
            groups,
            padding_mode,
            algorithm=algorithm,
            workspace_limit=workspace_limit,
        )
    grad_output = as_float_array(grad_output, "grad_output")
    weight = as_float_array(weight, "weight")
    spec = conv_spec(
        input_shape,
        weight.shape,
        stride,
        padding,
        dilation,
        groups,
        padding_mode,
        input_name="input_shape",
    )
    check_output_shape(grad_output.shape, spec, "grad_output")
    opts = _options(algorithm, workspace_limit)
    result, compute = _dtypes(grad_output, weight)
    gy = _batched(grad_output, spec).astype(compute, copy=False)
    grad_x = _input_grad(gy, weight.astype(compute, copy=False), spec, **opts)
    return _unbatched(np.ascontiguousarray(grad_x), spec).astype(result, copy=False)


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
    if _is_dask(x, grad_output):
        return _dask().conv_weight_grad(
            x,
            grad_output,
            weight_shape,
            stride,
            padding,
            dilation,
            groups,
            padding_mode,
            algorithm=algorithm,
            workspace_limit=workspace_limit,
        )
    x = as_float_array(x, "x")
    grad_output = as_float_array(grad_output, "grad_output")
    spec = conv_spec(
        x.shape, weight_shape, stride, padding, dilation, groups, padding_mode, input_name="x"
    )
    check_output_shape(grad_output.shape, spec, "grad_output")
    opts = _options(algorithm, workspace_limit)
    result, compute = _dtypes(x, grad_output)
    grad_w = _weight_grad(
        _batched(x, spec).astype(compute, copy=False),
        _batched(grad_output, spec).astype(compute, copy=False),
        spec,
        **opts,
    )
    return np.ascontiguousarray(grad_w).astype(result, copy=False)


def conv_bias_grad(grad_output: Any, batched: bool = True) -> np.ndarray:
    """dE/db: grad_output (N, K, *S) (or (K, *S) with batched=False) summed to (K,)."""
    if _is_dask(grad_output):
        return _dask().conv_bias_grad(grad_output, batched)
    grad_output = as_float_array(grad_output, "grad_output")
    if not isinstance(batched, (bool, np.bool_)):
        raise TypeError(f"batched must be a bool, got {batched!r}")
    lo = 3 if batched else 2
    if not lo <= grad_output.ndim <= lo + 2:
        layout = "(N, K, *spatial)" if batched else "(K, *spatial)"
        raise ValueError(
            f"grad_output must have {lo} to {lo + 2} dims {layout} with batched={batched}, "
            f"got shape {grad_output.shape}"
        )
    result, compute = _dtypes(grad_output)
    gy = grad_output if batched else grad_output[None]
    return _bias_grad(gy, compute).astype(result, copy=False)


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
    if _is_dask(grad_output, x, weight, bias):
        return _dask().conv_backward(
            grad_output,
            x,
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
            padding_mode,
            algorithm=algorithm,
            workspace_limit=workspace_limit,
        )
    grad_output = as_float_array(grad_output, "grad_output")
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight")
    spec = conv_spec(
        x.shape, weight.shape, stride, padding, dilation, groups, padding_mode, input_name="x"
    )
    bias = _check_bias(bias, spec.out_channels)
    check_output_shape(grad_output.shape, spec, "grad_output")
    opts = _options(algorithm, workspace_limit)
    result, compute = _dtypes(grad_output, x, weight, bias)
    gy = _batched(grad_output, spec).astype(compute, copy=False)
    xb = _batched(x, spec).astype(compute, copy=False)
    grad_x = _input_grad(gy, weight.astype(compute, copy=False), spec, **opts)
    grad_w = _weight_grad(xb, gy, spec, **opts)
    grad_b = None if bias is None else _bias_grad(gy, compute).astype(result, copy=False)
    return (
        _unbatched(np.ascontiguousarray(grad_x), spec).astype(result, copy=False),
        np.ascontiguousarray(grad_w).astype(result, copy=False),
        grad_b,
    )


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
    if _is_dask(x, weight, bias):
        return _dask().conv_transpose(
            x,
            weight,
            bias,
            stride,
            padding,
            output_padding,
            groups,
            dilation,
            algorithm=algorithm,
            workspace_limit=workspace_limit,
        )
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight")
    spec = transpose_spec(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    bias = _check_bias(bias, spec.in_channels)
    opts = _options(algorithm, workspace_limit)
    result, compute = _dtypes(x, weight, bias)
    y = _input_grad(
        _batched(x, spec).astype(compute, copy=False),
        weight.astype(compute, copy=False),
        spec,
        **opts,
    )
    y = _add_bias(np.ascontiguousarray(y), bias, spec.nd)
    return _unbatched(y, spec).astype(result, copy=False)


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
    if _is_dask(grad_output, x, weight, bias):
        return _dask().conv_transpose_backward(
            grad_output,
            x,
            weight,
            bias,
            stride,
            padding,
            output_padding,
            groups,
            dilation,
            algorithm=algorithm,
            workspace_limit=workspace_limit,
        )
    grad_output = as_float_array(grad_output, "grad_output")
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight")
    spec = transpose_spec(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    bias = _check_bias(bias, spec.in_channels)
    if tuple(grad_output.shape) != spec.input_shape:
        raise ValueError(
            f"grad_output must have shape {spec.input_shape} for this transposed convolution, "
            f"got {tuple(grad_output.shape)}"
        )
    opts = _options(algorithm, workspace_limit)
    result, compute = _dtypes(grad_output, x, weight, bias)
    gy = _batched(grad_output, spec).astype(compute, copy=False)
    xb = _batched(x, spec).astype(compute, copy=False)
    grad_x = _forward(gy, weight.astype(compute, copy=False), spec, **opts)
    grad_w = _weight_grad(gy, xb, spec, **opts)
    grad_b = None if bias is None else _bias_grad(gy, compute).astype(result, copy=False)
    return (
        _unbatched(np.ascontiguousarray(grad_x), spec).astype(result, copy=False),
        np.ascontiguousarray(grad_w).astype(result, copy=False),
        grad_b,
    )

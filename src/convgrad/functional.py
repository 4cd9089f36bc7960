"""Public convolution functions: forward, every gradient, transposed convolution.

Layouts follow PyTorch: input (N, C, *S) or unbatched (C, *S), weight
(K, C/groups, *k); transposed weight (C, K/groups, *k). Each function gathers its options
in one record (``_options``), validates once (``_validate``, ``_spec``), then runs the
steps of ``_rules`` (one per pass) with the runner (``_runner``) on the primitive.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _plan, _process, _rules, _validate
from ._options import Options
from ._runner import run
from ._spec import ConvSpec

IntOrTuple = int | Sequence[int]
"""An int for every spatial dim, or one int per spatial dim."""
Padding = int | str | Sequence[int] | Sequence[Sequence[int]]
"""An int, one int per spatial dim, one (low, high) pair per dim, or a padding string."""
FloatArray = NDArray[np.floating[Any]]
"""What the functions return: a NumPy array of float16, float32 or float64."""

__all__ = [
    "conv",
    "conv_input_grad",
    "conv_weight_grad",
    "conv_bias_grad",
    "conv_backward",
    "conv_transpose",
    "conv_transpose_backward",
]

_F = TypeVar("_F", bound=Callable[..., Any])


def _bias_grad(grad_y: NDArray[Any], compute: np.dtype[Any]) -> NDArray[Any]:
    """grad_y (N, K, *S) -> (K,)."""
    axes = (0, *range(2, grad_y.ndim))
    return grad_y.sum(axis=axes, dtype=compute)  # type: ignore[no-any-return]


def _add_bias(y: NDArray[Any], bias: NDArray[Any] | None, nd: int) -> NDArray[Any]:
    if bias is not None:
        y += bias.reshape(-1, *(1,) * nd)
    return y


def _is_dask(*values: Any) -> bool:
    """True if any value is a dask array (checked without importing dask)."""
    return any(type(v).__module__.split(".")[0] == "dask" for v in values)


def _dask() -> Any:
    from . import _dask as module  # the optional extra; imported only for dask input

    return module


def _size_text(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes} B" if unit == "B" else f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    raise AssertionError  # pragma: no cover


@contextlib.contextmanager
def _naming_outputs(function: str, call: Any, *shapes: tuple[int, ...]) -> Iterator[None]:
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


def _batched(array: NDArray[Any], spec: ConvSpec) -> NDArray[Any]:
    return array if spec.batched else array[None]


def _result(array: Any, spec: ConvSpec | None, dtype: Any) -> FloatArray:
    """A fresh contiguous result in the result dtype, unbatched again where the input was."""
    array = np.ascontiguousarray(array)
    if spec is not None and not spec.batched:
        array = array[0]
    return array.astype(dtype, copy=False)  # type: ignore[no-any-return]


def _computed(call: Any, *arrays: Any) -> list[Any]:
    """The arrays cast to the call's compute dtype (None stays None)."""
    return [None if a is None else a.astype(call.compute, copy=False) for a in arrays]


def _run(
    step: _rules.Step, call: _validate.Call, limit: int | None = None, **arrays: NDArray[Any]
) -> NDArray[Any]:
    """``step``'s result (batched) from the call's arrays by name (x and grad_output as
    given, batched here), run with the call's algorithm and workspace limit (or ``limit``)."""
    arrays = {name: a if name == "weight" else _batched(a, call.spec) for name, a in arrays.items()}
    return run(step, arrays, call.options.algorithm, limit or call.options.workspace_limit)


def _gradients(
    call: Any, grad_x: Any, grad_w: Any, grad_y: Any, bias: Any
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """(grad_input, grad_weight, grad_bias or None) as results of ``call``."""
    grad_b = None if bias is None else _bias_grad(grad_y, call.compute)
    return (
        _result(grad_x, call.spec, call.result),
        _result(grad_w, None, call.result),
        None if grad_b is None else _result(grad_b, None, call.result),
    )


_DOC_PARTS = {
    "{options}": """stride : int or sequence of int, default 1
        Step of the filter over the input: one int for every spatial dim, or one per dim.
    padding : int, sequence, or {'valid', 'same', 'full'}, default 0
        Zeros (or ``padding_mode`` values) added around the input: one int for every
        side of every spatial dim; one int per spatial dim (both sides); one
        ``(low, high)`` pair per spatial dim (asymmetric); ``'valid'`` (none);
        ``'same'`` (output ``ceil(in / stride)``, the odd pixel at the high end, as
        TensorFlow and JAX do); ``'full'`` (``dilation * (k - 1)`` on both sides, the
        output of ``scipy.signal.correlate(mode='full')``).
    dilation : int or sequence of int, default 1
        Spacing between the filter taps, one int or one per spatial dim.
    groups : int, default 1
        Channels split into ``groups`` independent convolutions; ``C`` and ``K`` must
        both be divisible by it (``groups == C`` is a depthwise convolution).
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
        What the padding holds, as in PyTorch.""",
    "{run}": """algorithm : str, default 'auto'
        Keyword only. ``'auto'`` (the planner's cost model picks), ``'autotune'``
        (time the candidates once per shape and cache the fastest), or one algorithm by
        name: ``'gemm'``, ``'implicit'``, ``'implicit_dw'``, ``'blocked_dw'``,
        ``'phase'``, ``'direct'``, ``'winograd'``, ``'winograd4'``, ``'winograd_dw'``,
        ``'fft'`` (``'auto'`` is used for a pass the named one does not support).
    workspace_limit : int or None, default None
        Keyword only. Bytes of scratch memory one pass may use (large passes are chunked
        to fit); None takes the limit in force (:func:`get_workspace_limit`).""",
    "{transpose_options}": """stride : int or sequence of int, default 1
        Stride of the convolution this is the transpose of (upsampling factor).
    padding : int or sequence of int, default 0
        PyTorch's meaning: ``dilation * (k - 1) - padding`` zeros around the input, so
        the output shrinks by ``2 * padding`` per dim.
    output_padding : int or sequence of int, default 0
        Extra size added at the high end of every spatial dim of the output (picks one of
        the input sizes a strided convolution maps to the same output); must be smaller
        than ``stride`` or ``dilation``.
    groups : int, default 1
        ``C`` and ``K`` must both be divisible by it.
    dilation : int or sequence of int, default 1
        Spacing between the filter taps.""",
    "{raises}": """Raises
    ------
    ValueError
        Wrong ranks or shapes, channels not divisible by ``groups``, non-positive stride
        or dilation, negative padding, an empty output, an unknown padding string,
        padding mode or algorithm; the message names the argument and what it expects.
    TypeError
        An integer, boolean, complex or object dtype, or an argument of the wrong type.
    MemoryError
        The result does not fit in memory (the message gives its shape and size).""",
}


def _doc(function: _F) -> _F:
    """Fill the shared parameter descriptions into ``function``'s docstring."""
    doc = function.__doc__
    if doc is None:  # python -OO strips docstrings
        return function
    for key, text in _DOC_PARTS.items():
        doc = doc.replace(key, text)
    function.__doc__ = doc
    return function


@_doc
def conv(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> FloatArray:
    """N-d convolution (a cross-correlation, as in PyTorch): the forward pass of a layer.

    ``y[n, k, i] = bias[k] + sum_{c, j} pad(x)[n, c, i*stride + j*dilation] * weight[k, c, j]``
    (within each group), for 1, 2 or 3 spatial dims (``weight.ndim - 2``).

    Parameters
    ----------
    x : array_like, shape ``(N, C, *S)`` or ``(C, *S)``
        Input, batched or not; float16, float32 or float64 (float16 is computed with
        float32 accumulation). A dask array gives a lazy dask result (``dask`` extra).
    weight : array_like, shape ``(K, C // groups, *k)``
        Filters, one per output channel.
    bias : array_like, shape (K,), optional
        Added to every output position of its channel.
    {options}
    {run}

    Returns
    -------
    y : numpy.ndarray, shape ``(N, K, *S_out)`` or ``(K, *S_out)``
        Batched as ``x`` is; ``S_out = (S + pad_low + pad_high - dilation*(k-1) - 1) //
        stride + 1`` per dim. The dtype is ``x``'s and ``weight``'s promoted as NumPy does.

    {raises}

    See Also
    --------
    conv_backward : All three gradients of this function.
    conv_transpose : The transposed convolution.

    Examples
    --------
    The layer of the origin question: 5 input channels of 100x100, 10 filters of 5x5x5.

    >>> import numpy as np
    >>> import convgrad
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((5, 100, 100))
    >>> w = rng.standard_normal((10, 5, 5, 5))
    >>> convgrad.conv(x, w).shape
    (10, 96, 96)
    >>> convgrad.conv(x, w, padding="same", stride=2).shape
    (10, 50, 50)
    >>> y = convgrad.conv(x[None], w, np.ones(10), padding=(1, 2))
    >>> y.shape
    (1, 10, 98, 100)
    >>> from convgrad import reference
    >>> bool(np.allclose(y, reference.conv(x[None], w, np.ones(10), padding=(1, 2))))
    True
    """
    options = Options(stride, padding, dilation, groups, padding_mode, algorithm, workspace_limit)
    if _is_dask(x, weight, bias):
        return _dask().conv(x, weight, bias, options)  # type: ignore[no-any-return]
    call = _validate.forward(x, weight, bias, options)
    with _naming_outputs("conv", call, call.spec.output_shape):
        xc, wc, bc = _computed(call, *call.arrays)
        y = _run(_rules.forward(call.spec), call, x=xc, weight=wc)
        y = _add_bias(np.ascontiguousarray(y), bc, call.spec.nd)
        return _result(y, call.spec, call.result)


@_doc
def conv_input_grad(
    grad_output: ArrayLike,
    weight: ArrayLike,
    input_shape: Sequence[int],
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> FloatArray:
    """dE/dx of :func:`conv`: the full correlation of dE/dy with the flipped filters.

    ``grad_input[n, c] = sum_k dilate(grad_output[n, k]) ⋆_full flip(weight[k, c])``: the
    output gradient, spread out by the stride, is correlated in "full" mode with each
    filter flipped along every spatial axis, with the roles of the channel axes swapped
    (then the padding is cut off again, or folded back for a non-zero ``padding_mode``).

    Parameters
    ----------
    grad_output : array_like, shape ``(N, K, *S_out)`` or ``(K, *S_out)``
        dE/dy, the gradient of the loss with respect to the output of :func:`conv`.
    weight : array_like, shape ``(K, C // groups, *k)``
        The filters of the forward call.
    input_shape : sequence of int
        Shape of the forward input, ``(N, C, *S)`` or ``(C, *S)`` (batched as
        ``grad_output`` is); needed because a strided convolution maps several input
        sizes to one output size.
    {options}
    {run}

    Returns
    -------
    grad_input : numpy.ndarray, shape ``input_shape``
        dE/dx.

    {raises}

    See Also
    --------
    conv_backward : All three gradients in one call.

    Examples
    --------
    >>> import numpy as np
    >>> import convgrad
    >>> from convgrad import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 3, 9, 9))
    >>> w = rng.standard_normal((4, 3, 3, 3))
    >>> g = rng.standard_normal((2, 4, 4, 4))  # dE/dy of conv(x, w, stride=2)
    >>> gx = convgrad.conv_input_grad(g, w, x.shape, stride=2)
    >>> gx.shape
    (2, 3, 9, 9)
    >>> bool(np.allclose(gx, reference.conv_grads(x, w, g, stride=2)[0]))
    True
    """
    options = Options(stride, padding, dilation, groups, padding_mode, algorithm, workspace_limit)
    if _is_dask(grad_output, weight):
        return _dask().conv_input_grad(grad_output, weight, input_shape, options)  # type: ignore[no-any-return]
    call = _validate.input_grad(grad_output, weight, input_shape, options)
    with _naming_outputs("conv_input_grad", call, call.spec.input_shape):
        grad_y, wc = _computed(call, *call.arrays)
        grad_x = _run(_rules.input_grad(call.spec), call, grad_output=grad_y, weight=wc)
        return _result(grad_x, call.spec, call.result)


@_doc
def conv_weight_grad(
    x: ArrayLike,
    grad_output: ArrayLike,
    weight_shape: Sequence[int],
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> FloatArray:
    """dE/dw of :func:`conv`: each input channel correlated with each output-gradient map.

    ``grad_weight[k, c] = sum_n pad(x)[n, c] ⋆_valid dilate(grad_output[n, k])`` (within
    each group): one valid correlation per (k, c) pair, summed over the batch, whatever
    the number of input and output channels.

    Parameters
    ----------
    x : array_like, shape ``(N, C, *S)`` or ``(C, *S)``
        The forward input.
    grad_output : array_like, shape ``(N, K, *S_out)`` or ``(K, *S_out)``
        dE/dy, batched as ``x`` is.
    weight_shape : sequence of int
        Shape of the filters, ``(K, C // groups, *k)``.
    {options}
    {run}

    Returns
    -------
    grad_weight : numpy.ndarray, shape ``weight_shape``
        dE/dw, summed over the batch.

    {raises}

    See Also
    --------
    conv_backward : All three gradients in one call.

    Examples
    --------
    The origin question: dE/dF[k, c] is the valid correlation of X[c] with dE/dO[k].

    >>> import numpy as np
    >>> import convgrad
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((5, 100, 100))
    >>> g = rng.standard_normal((10, 96, 96))
    >>> gw = convgrad.conv_weight_grad(x, g, (10, 5, 5, 5))
    >>> gw.shape
    (10, 5, 5, 5)
    >>> pair = convgrad.conv(x[2][None, None], g[3][None, None])  # X[2] ⋆ dE/dO[3]
    >>> bool(np.allclose(gw[3, 2], pair[0, 0]))
    True
    """
    options = Options(stride, padding, dilation, groups, padding_mode, algorithm, workspace_limit)
    if _is_dask(x, grad_output):
        return _dask().conv_weight_grad(x, grad_output, weight_shape, options)  # type: ignore[no-any-return]
    call = _validate.weight_grad(x, grad_output, weight_shape, options)
    with _naming_outputs("conv_weight_grad", call, call.spec.weight_shape):
        xc, grad_y = _computed(call, *call.arrays)
        grad_w = _run(_rules.weight_grad(call.spec), call, x=xc, grad_output=grad_y)
        return _result(grad_w, None, call.result)


def conv_bias_grad(grad_output: ArrayLike, batched: bool = True) -> FloatArray:
    """dE/db of :func:`conv`: ``grad_output`` summed over every axis but the channel axis.

    Parameters
    ----------
    grad_output : array_like, shape ``(N, K, *S)`` or ``(K, *S)``
        dE/dy.
    batched : bool, default True
        Whether ``grad_output`` has a batch axis (False for ``(K, *S)``).

    Returns
    -------
    grad_bias : numpy.ndarray, shape (K,)
        dE/db.

    Raises
    ------
    ValueError
        ``grad_output`` has too few dimensions.
    TypeError
        An integer, boolean, complex or object dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import convgrad
    >>> g = np.ones((2, 3, 4, 4))
    >>> convgrad.conv_bias_grad(g)
    array([32., 32., 32.])
    >>> convgrad.conv_bias_grad(g[0], batched=False)
    array([16., 16., 16.])
    """
    if _is_dask(grad_output):
        return _dask().conv_bias_grad(grad_output, batched)  # type: ignore[no-any-return]
    grad, result, compute = _validate.bias_grad(grad_output, batched)
    grad_y = grad if batched else grad[None]
    return _bias_grad(grad_y, compute).astype(result, copy=False)


@_doc
def conv_backward(
    grad_output: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """All gradients of :func:`conv` in one call, validated once.

    Parameters
    ----------
    grad_output : array_like, shape ``(N, K, *S_out)`` or ``(K, *S_out)``
        dE/dy, the gradient of the loss with respect to ``conv(x, weight, bias, ...)``.
    x : array_like, shape ``(N, C, *S)`` or ``(C, *S)``
        The forward input.
    weight : array_like, shape ``(K, C // groups, *k)``
        The forward filters.
    bias : array_like, shape (K,), optional
        The forward bias; only its shape is used (to decide whether dE/db is computed).
    {options}
    {run}

    Returns
    -------
    grad_input : numpy.ndarray, shape of ``x``
        dE/dx, as :func:`conv_input_grad` computes it.
    grad_weight : numpy.ndarray, shape of ``weight``
        dE/dw, as :func:`conv_weight_grad` computes it.
    grad_bias : numpy.ndarray of shape (K,), or None
        dE/db; None when ``bias`` is None.

    {raises}

    Examples
    --------
    >>> import numpy as np
    >>> import convgrad
    >>> from convgrad import reference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 4, 8, 8))
    >>> w = rng.standard_normal((6, 2, 3, 3))  # groups=2: 2 input channels per filter
    >>> b = np.zeros(6)
    >>> y = convgrad.conv(x, w, b, padding=1, groups=2)
    >>> g = rng.standard_normal(y.shape)
    >>> gx, gw, gb = convgrad.conv_backward(g, x, w, b, padding=1, groups=2)
    >>> gx.shape, gw.shape, gb.shape
    ((2, 4, 8, 8), (6, 2, 3, 3), (6,))
    >>> want = reference.conv_grads(x, w, g, padding=1, groups=2)
    >>> all(np.allclose(got, ref) for got, ref in zip((gx, gw, gb), want))
    True
    >>> convgrad.conv_backward(g, x, w, padding=1, groups=2)[2] is None
    True
    """
    options = Options(stride, padding, dilation, groups, padding_mode, algorithm, workspace_limit)
    if _is_dask(grad_output, x, weight, bias):
        return _dask().conv_backward(grad_output, x, weight, bias, options)  # type: ignore[no-any-return]
    call = _validate.backward(grad_output, x, weight, bias, options)
    with _naming_outputs("conv_backward", call, call.spec.input_shape, call.spec.weight_shape):
        return _backward(call, _rules.input_grad(call.spec), _rules.weight_grad(call.spec))


@_doc
def conv_transpose(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> FloatArray:
    """Transposed convolution (PyTorch's ``conv_transposeNd``).

    It is the input gradient of the convolution with the same weight and options:
    ``conv_transpose(x, w, stride=s) == conv_input_grad(x, w, shape, stride=s)`` for the
    matching input shape. Used to upsample (decoders, segmentation).

    Parameters
    ----------
    x : array_like, shape ``(N, C, *S)`` or ``(C, *S)``
        Input; float16, float32 or float64, or a dask array.
    weight : array_like, shape ``(C, K // groups, *k)``
        Filters in PyTorch's transposed layout (input channels first).
    bias : array_like, shape (K,), optional
        Added to every output position of its channel.
    {transpose_options}
    {run}

    Returns
    -------
    y : numpy.ndarray, shape ``(N, K, *S_out)`` or ``(K, *S_out)``
        ``S_out = (S - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.

    {raises}

    See Also
    --------
    conv_transpose_backward : Its gradients.

    Examples
    --------
    >>> import numpy as np
    >>> import convgrad
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((1, 4, 5, 5))
    >>> w = rng.standard_normal((4, 2, 3, 3))
    >>> y = convgrad.conv_transpose(x, w, stride=2, padding=1, output_padding=1)
    >>> y.shape
    (1, 2, 10, 10)
    >>> gx = convgrad.conv_input_grad(x, w, (1, 2, 10, 10), stride=2, padding=1)
    >>> bool(np.allclose(y, gx))
    True
    """
    options = Options(
        stride, padding, dilation, groups, "zeros", algorithm, workspace_limit, output_padding
    )
    if _is_dask(x, weight, bias):
        return _dask().conv_transpose(x, weight, bias, options)  # type: ignore[no-any-return]
    call = _validate.forward(x, weight, bias, options)
    with _naming_outputs("conv_transpose", call, call.spec.input_shape):
        xc, wc, bc = _computed(call, *call.arrays)
        # the transposed convolution is the input-gradient rule run on x
        y = _run(_rules.input_grad(call.spec, transposed=True), call, x=xc, weight=wc)
        y = _add_bias(np.ascontiguousarray(y), bc, call.spec.nd)
        return _result(y, call.spec, call.result)


@_doc
def conv_transpose_backward(
    grad_output: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    algorithm: str = "auto",
    workspace_limit: int | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """All gradients of :func:`conv_transpose`.

    ``grad_input`` is the forward convolution of ``grad_output`` with the weight (the
    transpose of a transpose); ``grad_weight`` correlates ``grad_output`` with ``x``.

    Parameters
    ----------
    grad_output : array_like, shape ``(N, K, *S_out)`` or ``(K, *S_out)``
        dE/dy of ``conv_transpose(x, weight, bias, ...)``.
    x : array_like, shape ``(N, C, *S)`` or ``(C, *S)``
        The forward input.
    weight : array_like, shape ``(C, K // groups, *k)``
        The forward filters.
    bias : array_like, shape (K,), optional
        The forward bias; only its shape is used.
    {transpose_options}
    {run}

    Returns
    -------
    grad_input : numpy.ndarray, shape of ``x``
        dE/dx.
    grad_weight : numpy.ndarray, shape of ``weight``
        dE/dw.
    grad_bias : numpy.ndarray of shape (K,), or None
        dE/db; None when ``bias`` is None.

    {raises}

    Examples
    --------
    >>> import numpy as np
    >>> import convgrad
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((1, 4, 5, 5))
    >>> w = rng.standard_normal((4, 2, 3, 3))
    >>> g = rng.standard_normal((1, 2, 11, 11))  # dE/dy of conv_transpose(x, w, stride=2)
    >>> gx, gw, gb = convgrad.conv_transpose_backward(g, x, w, stride=2)
    >>> gx.shape, gw.shape, gb
    ((1, 4, 5, 5), (4, 2, 3, 3), None)
    >>> bool(np.allclose(gx, convgrad.conv(g, w, stride=2)))
    True
    """
    options = Options(
        stride, padding, dilation, groups, "zeros", algorithm, workspace_limit, output_padding
    )
    if _is_dask(grad_output, x, weight, bias):
        return _dask().conv_transpose_backward(grad_output, x, weight, bias, options)  # type: ignore[no-any-return]
    call = _validate.backward(grad_output, x, weight, bias, options)
    shapes = (call.spec.output_shape, call.arrays[2].shape)  # grad_input: x's shape
    with _naming_outputs("conv_transpose_backward", call, *shapes):
        spec = call.spec
        input_step = _rules.forward(spec, transposed=True)  # the convolution of dE/dO with w
        return _backward(call, input_step, _rules.weight_grad(spec, transposed=True))


def _backward(
    call: _validate.Call, input_step: _rules.Step, weight_step: _rules.Step
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """(grad_input, grad_weight, grad_bias or None) of a validated backward call."""
    grad_y, x, weight, bias = _computed(call, *call.arrays)

    def input_grad(limit: int | None = None) -> NDArray[Any]:
        return _run(input_step, call, limit, grad_output=grad_y, weight=weight)

    def weight_grad(limit: int | None = None) -> NDArray[Any]:
        return _run(weight_step, call, limit, x=x, grad_output=grad_y)

    limit = call.options.workspace_limit or _plan.get_workspace_limit()
    steps = [
        (s.lhs_shape, s.rhs_shape, s.corr, call.options.algorithm)
        for s in (input_step, weight_step)
    ]
    shares = _plan.side_by_side(steps, call.compute.itemsize, limit=limit)
    if shares is None:
        grad_x, grad_w = input_grad(), weight_grad()
    else:  # each on its share of the threads, and half the workspace limit
        half = max(1, limit // 2)
        passes = [functools.partial(input_grad, half), functools.partial(weight_grad, half)]
        grad_x, grad_w = _process.jobs.side_by_side(passes, shares)
    return _gradients(call, grad_x, grad_w, _batched(grad_y, call.spec), bias)

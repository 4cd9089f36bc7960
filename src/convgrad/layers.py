"""Convolution layers built like their PyTorch namesakes, on the functional API.

    layer = Conv2d(5, 10, kernel_size=5, seed=0)
    y = layer(x)                    # x (N, 5, H, W) or (5, H, W); keeps x for backward
    grad_x = layer.backward(grad_y) # adds dE/dw, dE/db to layer.weight_grad, layer.bias_grad

Weights are ``(out, in/groups, *k)`` for ``ConvNd`` and ``(in, out/groups, *k)`` for
``ConvTransposeNd``; both are initialised as PyTorch does (``kaiming_uniform_(a=sqrt(5))``):
weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with ``fan_in = weight.shape[1] *
prod(kernel)``. Gradients accumulate across ``backward`` calls until ``zero_grad()``. A layer keeps the
input of its last forward (not a copy; it is never written) until the next forward, so
``backward`` may be called more than once; ``backward`` raises RuntimeError if that input
was modified in place since forward (checked by a CRC-32 fingerprint taken in forward).
Dask arrays pass straight through to ``convgrad.functional`` (outputs and gradients are
then lazy dask arrays).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import functional as F
from ._module import (
    Module,
    check_unchanged,
    keep_for_backward,
    make_rng,
)
from ._spec import check_padding_mode, float_dtype, int_tuple, padding_pairs, positive_int
from .functional import FloatArray, Padding

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
]


def _shape(a: Any) -> tuple[int, ...]:
    """Shape of an array-like without converting it (dask arrays stay lazy)."""
    return tuple(a.shape) if hasattr(a, "shape") else np.shape(a)


def _uniform(
    rng: np.random.Generator, bound: float, shape: tuple[int, ...], dtype: np.dtype[Any]
) -> FloatArray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class _ConvBase(Module):
    """What convolution and transposed convolution layers share: parameters, init, state."""

    _nd: int = 0
    _param_names = ("weight", "bias")
    # set by the subclasses' constructors
    padding: Any
    padding_mode: str

    def _setup(
        self,
        in_channels: Any,
        out_channels: Any,
        kernel_size: Any,
        stride: Any,
        dilation: Any,
        groups: Any,
        bias: Any,
        dtype: Any,
        rng: Any,
        seed: Any,
        transposed: bool,
    ) -> None:
        nd = self._nd
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.groups = positive_int(groups, "groups")
        if self.in_channels % self.groups:
            raise ValueError(
                f"in_channels ({self.in_channels}) must be divisible by groups ({self.groups})"
            )
        if self.out_channels % self.groups:
            raise ValueError(
                f"out_channels ({self.out_channels}) must be divisible by groups ({self.groups})"
            )
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        self.kernel_size = int_tuple(kernel_size, nd, "kernel_size", 1)
        self.stride = int_tuple(stride, nd, "stride", 1)
        self.dilation = int_tuple(dilation, nd, "dilation", 1)
        self.dtype = float_dtype(dtype)
        generator = make_rng(rng, seed)
        # weight (out, in/g, *k); transposed (in, out/g, *k). PyTorch's fan_in is shape[1]*prod(k)
        if transposed:
            shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        else:
            shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        fan_in = shape[1] * math.prod(shape[2:])
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = _uniform(generator, bound, shape, self.dtype)
        self.bias = _uniform(generator, bound, (self.out_channels,), self.dtype) if bias else None
        self._init_grads()
        self._saved: tuple[Any, ...] | None = None

    # ----------------------------------------------------------------- backward

    def _saved_for_backward(self, grad_y: Any) -> tuple[Any, ...]:
        if self._saved is None:
            name = type(self).__name__
            raise RuntimeError(
                f"{name}.backward called before forward: call the layer on an input first "
                f"(forward keeps the input that backward needs)"
            )
        x, kept, out_shape, *rest = self._saved
        shape = _shape(grad_y)
        if shape != tuple(out_shape):
            raise ValueError(
                f"grad_y must have the shape of the last forward output {tuple(out_shape)}, "
                f"got {tuple(shape)}"
            )
        check_unchanged(self, x, kept)
        return (x, *rest)

    def _store_grads(self, grad_w: Any, grad_b: Any) -> None:
        self._accumulate("weight", grad_w)
        if self.bias is not None:
            self._accumulate("bias", grad_b)

    def _check_channels(self, x: Any) -> None:
        """ValueError naming the input's shape and the channels this layer expects, as
        PyTorch words it; other shape errors are left to the functional API."""
        shape = _shape(x)
        nd = self._nd
        if len(shape) in (nd + 1, nd + 2) and shape[-nd - 1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} with in_channels={self.in_channels} expected input "
                f"{list(shape)} to have {self.in_channels} channels (axis {len(shape) - nd - 1}), "
                f"but got {shape[-nd - 1]} channels instead"
            )

    def extra_repr(self) -> str:
        """PyTorch's layout: channels, kernel_size and stride, then the options that differ
        from their defaults."""
        nd = self._nd
        parts = [
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        ]
        padding = self.padding
        if isinstance(padding, list):
            padding = tuple(tuple(p) if isinstance(p, list) else p for p in padding)
        if padding != (0,) * nd:
            parts.append(f"padding={padding!r}")
        if self.dilation != (1,) * nd:
            parts.append(f"dilation={self.dilation}")
        output_padding = getattr(self, "output_padding", (0,) * nd)
        if output_padding != (0,) * nd:
            parts.append(f"output_padding={output_padding}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.bias is None:
            parts.append("bias=False")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode!r}")
        return ", ".join(parts)


class _ConvNd(_ConvBase):
    """N-d convolution layer: y = conv(x, weight, bias, ...) (see ``convgrad.conv``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: Padding = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        dtype: DTypeLike = np.float32,
        rng: np.random.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        self._setup(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            dilation,
            groups,
            bias,
            dtype,
            rng,
            seed,
            transposed=False,
        )
        nd = self._nd
        # validate the padding's form now (its fit to an input is checked at forward)
        padding_pairs(padding, nd, (2**30,) * nd, self.kernel_size, self.stride, self.dilation)
        self.padding = (padding,) * nd if isinstance(padding, (int, np.integer)) else padding
        self.padding_mode = check_padding_mode(padding_mode)

    def _options(self) -> tuple[Any, ...]:
        return (self.stride, self.padding, self.dilation, self.groups, self.padding_mode)

    def __call__(self, x: ArrayLike) -> FloatArray:
        return self.forward(x)

    def forward(self, x: ArrayLike) -> FloatArray:
        """The output ``conv(x, weight, bias, ...)``; keeps ``x`` for :meth:`backward`.

        Parameters
        ----------
        x : array_like, shape ``(N, in_channels, *S)`` or ``(in_channels, *S)``
            The input (a dask array gives a lazy result).

        Returns
        -------
        numpy.ndarray, shape ``(N, out_channels, *S_out)`` or ``(out_channels, *S_out)``
            The output.
        """
        self._check_channels(x)
        y = F.conv(x, self.weight, self.bias, *self._options())
        self._saved = (*keep_for_backward(x), y.shape)
        return y

    def backward(self, grad_y: ArrayLike) -> FloatArray:
        """dE/dx of the last forward; adds dE/dw to ``weight_grad`` and dE/db to ``bias_grad``.

        Parameters
        ----------
        grad_y : array_like, shape of the last output
            dE/dy.

        Returns
        -------
        numpy.ndarray, shape of the last input
            dE/dx.

        Raises
        ------
        RuntimeError
            Called before forward, or the input of the last forward was modified in
            place since.
        ValueError
            ``grad_y`` does not have the shape of the last output.
        """
        (x,) = self._saved_for_backward(grad_y)
        grad_x, grad_w, grad_b = F.conv_backward(
            grad_y, x, self.weight, self.bias, *self._options()
        )
        self._store_grads(grad_w, grad_b)
        return grad_x


class _ConvTransposeNd(_ConvBase):
    """N-d transposed convolution layer (see ``convgrad.conv_transpose``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] = 0,
        output_padding: int | tuple[int, ...] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | tuple[int, ...] = 1,
        padding_mode: str = "zeros",
        *,
        dtype: DTypeLike = np.float32,
        rng: np.random.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        self._setup(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            dilation,
            groups,
            bias,
            dtype,
            rng,
            seed,
            transposed=True,
        )
        nd = self._nd
        if isinstance(padding, str):
            raise ValueError(
                f"padding of a transposed convolution must be an int or {nd} ints, got {padding!r}"
            )
        self.padding = int_tuple(padding, nd, "padding", 0)
        self.output_padding = self._check_output_padding(output_padding)
        if padding_mode != "zeros":
            raise ValueError(
                f"padding_mode must be 'zeros' for {type(self).__name__} (as in PyTorch), "
                f"got {padding_mode!r}"
            )
        self.padding_mode = padding_mode

    def _check_output_padding(self, output_padding: Any) -> tuple[int, ...]:
        out_pad = int_tuple(output_padding, self._nd, "output_padding", 0)
        for op, s, d in zip(out_pad, self.stride, self.dilation):
            if op >= s and op >= d:
                raise ValueError(
                    f"output_padding must be smaller than stride or dilation, got "
                    f"{out_pad} with stride {self.stride} and dilation {self.dilation}"
                )
        return out_pad

    def _output_padding_for(self, x_shape: tuple[int, ...], output_size: Any) -> tuple[int, ...]:
        """PyTorch's ``output_size``: the output_padding that gives this spatial size."""
        nd = self._nd
        size = tuple(int(v) for v in output_size)[-nd:]
        if len(size) != nd:
            raise ValueError(f"output_size must give {nd} spatial sizes, got {output_size!r}")
        in_spatial = tuple(x_shape)[-nd:]
        out_pad = []
        for want, n, k, s, d, p in zip(
            size, in_spatial, self.kernel_size, self.stride, self.dilation, self.padding
        ):
            smallest = (n - 1) * s - 2 * p + d * (k - 1) + 1
            out_pad.append(want - smallest)
            if not 0 <= want - smallest < max(s, d):
                raise ValueError(
                    f"output_size {tuple(size)} is not reachable from input {tuple(in_spatial)}: "
                    f"each size must be in [{smallest}, {smallest + max(s, d) - 1}] "
                    f"for this layer"
                )
        return tuple(out_pad)

    def _options(self, output_padding: tuple[int, ...]) -> tuple[Any, ...]:
        return (self.stride, self.padding, output_padding, self.groups, self.dilation)

    def forward(self, x: ArrayLike, output_size: Sequence[int] | None = None) -> FloatArray:
        """The output ``conv_transpose(x, weight, bias, ...)``; keeps ``x`` for :meth:`backward`.

        Parameters
        ----------
        x : array_like, shape ``(N, in_channels, *S)`` or ``(in_channels, *S)``
            The input (a dask array gives a lazy result).
        output_size : sequence of int, optional
            The spatial size wanted (trailing entries of a full shape are used): picks
            ``output_padding`` for this call as PyTorch does.

        Returns
        -------
        numpy.ndarray, shape ``(N, out_channels, *S_out)`` or ``(out_channels, *S_out)``
            ``S_out = (S - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.

        Raises
        ------
        ValueError
            The input does not have ``in_channels`` channels, or ``output_size`` is not
            reachable.
        """
        self._check_channels(x)
        if output_size is None:
            out_pad = self.output_padding
        else:
            out_pad = self._output_padding_for(_shape(x), output_size)
        y = F.conv_transpose(x, self.weight, self.bias, *self._options(out_pad))
        self._saved = (*keep_for_backward(x), y.shape, out_pad)
        return y

    def __call__(self, x: ArrayLike, output_size: Sequence[int] | None = None) -> FloatArray:
        return self.forward(x, output_size)

    def backward(self, grad_y: ArrayLike) -> FloatArray:
        """dE/dx of the last forward; adds dE/dw to ``weight_grad`` and dE/db to ``bias_grad``.

        Parameters
        ----------
        grad_y : array_like, shape of the last output
            dE/dy.

        Returns
        -------
        numpy.ndarray, shape of the last input
            dE/dx.

        Raises
        ------
        RuntimeError
            Called before forward, or the input of the last forward was modified in
            place since.
        ValueError
            ``grad_y`` does not have the shape of the last output.
        """
        x, out_pad = self._saved_for_backward(grad_y)
        grad_x, grad_w, grad_b = F.conv_transpose_backward(
            grad_y, x, self.weight, self.bias, *self._options(out_pad)
        )
        self._store_grads(grad_w, grad_b)
        return grad_x


class Conv1d(_ConvNd):
    """1-d convolution layer: x (N, C_in, L) -> (N, C_out, L_out)."""

    _nd = 1


class Conv2d(_ConvNd):
    """2-d convolution layer: x (N, C_in, H, W) -> (N, C_out, H_out, W_out)."""

    _nd = 2


class Conv3d(_ConvNd):
    """3-d convolution layer: x (N, C_in, D, H, W) -> (N, C_out, D_out, H_out, W_out)."""

    _nd = 3


class ConvTranspose1d(_ConvTransposeNd):
    """1-d transposed convolution layer: x (N, C_in, L) -> (N, C_out, L_out)."""

    _nd = 1


class ConvTranspose2d(_ConvTransposeNd):
    """2-d transposed convolution layer: x (N, C_in, H, W) -> (N, C_out, H_out, W_out)."""

    _nd = 2


class ConvTranspose3d(_ConvTransposeNd):
    """3-d transposed convolution layer: x (N, C_in, D, H, W) -> (N, C_out, D_out, ...)."""

    _nd = 3


# ----------------------------------------------------------------- the layers' docs

_COMMON_PARAMETERS = """
    Parameters
    ----------
    in_channels : int
        Channels of the input (C_in).
    out_channels : int
        Channels of the output (C_out).
    kernel_size : int or tuple of int
        Filter size, one int for every spatial dim or one per dim."""

_CONV_OPTIONS = """
    stride : int or tuple of int, default 1
        Step of the filter over the input.
    padding : int, tuple, or {'valid', 'same', 'full'}, default 0
        As for :func:`convgrad.conv`: an int, one int per dim, one ``(low, high)`` pair
        per dim, or a string.
    dilation : int or tuple of int, default 1
        Spacing between the filter taps.
    groups : int, default 1
        Independent channel groups; ``in_channels`` and ``out_channels`` must be
        divisible by it.
    bias : bool, default True
        Whether the layer has a learnable bias.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
        What the padding holds."""

_TRANSPOSE_OPTIONS = """
    stride : int or tuple of int, default 1
        Upsampling factor (the stride of the convolution this is the transpose of).
    padding : int or tuple of int, default 0
        ``dilation * (k - 1) - padding`` zeros around the input, as in PyTorch.
    output_padding : int or tuple of int, default 0
        Added to the high end of every output dim; smaller than stride or dilation.
    groups : int, default 1
        Independent channel groups; both channel counts must be divisible by it.
    bias : bool, default True
        Whether the layer has a learnable bias.
    dilation : int or tuple of int, default 1
        Spacing between the filter taps.
    padding_mode : {'zeros'}, default 'zeros'
        Only zeros, as in PyTorch."""

_INIT_OPTIONS = """
    dtype : float16, float32 or float64, default float32
        Keyword only. The parameters' dtype.
    rng : numpy.random.Generator, optional
        Keyword only. Draws the initial parameters.
    seed : int, optional
        Keyword only. Seeds a new generator instead (give ``rng`` or ``seed``, not both).

    Attributes
    ----------
    weight : numpy.ndarray
        {weight_shape}, initialised as PyTorch does: uniform in
        ``±1/sqrt(weight.shape[1] * prod(kernel_size))``.
    bias : numpy.ndarray or None
        (out_channels,), initialised like the weight.
    weight_grad, bias_grad : numpy.ndarray or None
        dE/dw and dE/db, added to by every :meth:`backward` until ``zero_grad()``.

    Raises
    ------
    ValueError
        A non-positive channel count or kernel size, channels not divisible by
        ``groups``, a bad padding{transpose_raise}.
    TypeError
        A dtype that is not float16, float32 or float64, or ``bias`` not a bool.

    See Also
    --------
    {function} : The function it computes.
    convgrad.nn : Companions to build and train a network with.

    Notes
    -----
    ``forward`` keeps its input (a reference, not a copy) for ``backward``, which raises
    RuntimeError if that array was changed in place since. Dask input passes through
    (outputs and gradients are then lazy dask arrays).
"""

_EXAMPLES = {
    "Conv1d": """
    >>> import numpy as np
    >>> import convgrad
    >>> layer = convgrad.Conv1d(4, 8, kernel_size=3, padding=1, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((2, 4, 16))
    >>> y = layer(x)
    >>> y.shape
    (2, 8, 16)
    >>> bool(np.allclose(y, convgrad.conv(x, layer.weight, layer.bias, padding=1)))
    True
    >>> layer.backward(np.ones_like(y)).shape, layer.weight_grad.shape
    ((2, 4, 16), (8, 4, 3))
""",
    "Conv2d": """
    The layer of the origin question: 10 filters of 5x5x5 over a 5x100x100 input.

    >>> import numpy as np
    >>> import convgrad
    >>> layer = convgrad.Conv2d(5, 10, kernel_size=5, seed=0)
    >>> layer
    Conv2d(5, 10, kernel_size=(5, 5), stride=(1, 1))
    >>> x = np.random.default_rng(0).standard_normal((5, 100, 100))
    >>> y = layer(x)
    >>> y.shape
    (10, 96, 96)
    >>> g = np.ones_like(y)  # dE/dy from the next layer
    >>> grad_x = layer.backward(g)
    >>> grad_x.shape, layer.weight_grad.shape, layer.bias_grad.shape
    ((5, 100, 100), (10, 5, 5, 5), (10,))
    >>> bool(np.allclose(layer.weight_grad, convgrad.conv_weight_grad(x, g, (10, 5, 5, 5))))
    True
""",
    "Conv3d": """
    >>> import numpy as np
    >>> import convgrad
    >>> layer = convgrad.Conv3d(2, 4, kernel_size=3, stride=2, bias=False, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((1, 2, 6, 6, 6))
    >>> y = layer(x)
    >>> y.shape
    (1, 4, 2, 2, 2)
    >>> layer.backward(np.ones_like(y)).shape, layer.bias_grad
    ((1, 2, 6, 6, 6), None)
""",
    "ConvTranspose1d": """
    >>> import numpy as np
    >>> import convgrad
    >>> layer = convgrad.ConvTranspose1d(4, 2, kernel_size=3, stride=2, seed=0)
    >>> layer.weight.shape
    (4, 2, 3)
    >>> x = np.random.default_rng(0).standard_normal((2, 4, 8))
    >>> y = layer(x)
    >>> y.shape
    (2, 2, 17)
    >>> bool(np.allclose(y, convgrad.conv_transpose(x, layer.weight, layer.bias, stride=2)))
    True
""",
    "ConvTranspose2d": """
    Upsampling by 2 (``output_padding`` picks the even size):

    >>> import numpy as np
    >>> import convgrad
    >>> layer = convgrad.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((1, 8, 5, 5))
    >>> y = layer(x)
    >>> y.shape
    (1, 4, 10, 10)
    >>> layer(x, output_size=(9, 9)).shape  # PyTorch's output_size picks output_padding
    (1, 4, 9, 9)
    >>> layer.backward(np.ones((1, 4, 9, 9))).shape
    (1, 8, 5, 5)
""",
    "ConvTranspose3d": """
    >>> import numpy as np
    >>> import convgrad
    >>> layer = convgrad.ConvTranspose3d(2, 1, kernel_size=2, stride=2, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 3, 3))  # unbatched
    >>> y = layer(x)
    >>> y.shape
    (1, 6, 6, 6)
    >>> layer.backward(np.ones_like(y)).shape
    (2, 3, 3, 3)
""",
}


def _document(cls: type[_ConvBase]) -> None:
    """Give a layer class its numpydoc docstring (parameters, attributes, example)."""
    if cls.__doc__ is None:  # python -OO strips docstrings
        return
    transposed = issubclass(cls, _ConvTransposeNd)
    weight_shape = (
        "``(in_channels, out_channels // groups, *kernel_size)``"
        if transposed
        else "``(out_channels, in_channels // groups, *kernel_size)``"
    )
    init = _INIT_OPTIONS.replace("{weight_shape}", weight_shape)
    init = init.replace(
        "{transpose_raise}",
        ", an output_padding not smaller than stride or dilation, or a padding_mode other than 'zeros'"
        if transposed
        else "",
    )
    init = init.replace("{function}", "convgrad.conv_transpose" if transposed else "convgrad.conv")
    options = _TRANSPOSE_OPTIONS if transposed else _CONV_OPTIONS
    cls.__doc__ = (
        cls.__doc__
        + "\n"
        + _COMMON_PARAMETERS
        + options
        + init
        + "\n    Examples\n    --------"
        + _EXAMPLES[cls.__name__]
    )


for _cls in (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d):
    _document(_cls)

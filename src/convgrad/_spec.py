"""ConvSpec: every option of a convolution, normalised and validated once.

All public functions turn their arguments into a :class:`ConvSpec` at the door;
inner code trusts it. Output sizes, 'same' padding and the checks of
``../shared/API.md`` live here and nowhere else.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

Pairs = tuple[tuple[int, int], ...]

# Largest stride, dilation, padding, output padding or derived extent (padded size,
# dilated kernel) per dim: far past any array, yet
# sums of a few such values stay inside int64, where shapes and indices are computed.
MAX_SIZE = 2**60
# Largest number of output elements: their bytes (8 each at most) must fit in an int64.
MAX_ELEMENTS = 2**59


@dataclass(frozen=True)
class ConvSpec:
    """A forward convolution x (N, C, *S) ⋆ w (K, C/g, *k) -> y (N, K, *S_out).

    ``pads`` are the (low, high) zeros-or-mode padding per spatial dim; the
    output size per dim is ``(S + lo + hi - d*(k-1) - 1) // s + 1``.
    """

    batched: bool
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: Pairs
    padding_mode: str
    out_spatial: tuple[int, ...]

    @property
    def nd(self) -> int:
        return len(self.kernel)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape(self.in_channels, self.in_spatial)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._shape(self.out_channels, self.out_spatial)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    @property
    def effective_kernel(self) -> tuple[int, ...]:
        """Dilated kernel extent d*(k-1)+1 per dim."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    def _shape(self, channels: int, spatial: tuple[int, ...]) -> tuple[int, ...]:
        lead = (self.batch, channels) if self.batched else (channels,)
        return (*lead, *spatial)


def output_size(size: int, kernel: int, stride: int, dilation: int, lo: int, hi: int) -> int:
    """Forward output length of one spatial dim (may be <= 0 for an empty output)."""
    return (size + lo + hi - dilation * (kernel - 1) - 1) // stride + 1


def transpose_output_size(
    size: int, kernel: int, stride: int, dilation: int, padding: int, output_padding: int
) -> int:
    """Transposed-convolution output length of one spatial dim (PyTorch's formula)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


# ----------------------------------------------------------------------------- options


def _is_int(value: Any) -> bool:
    if type(value) is int:  # the common case, without the slower ABC check
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def float_dtype(dtype: Any) -> np.dtype:
    """np.dtype(dtype) if it is float16, float32 or float64, else TypeError.

    None means float32, PyTorch's default (``np.dtype(None)`` would be float64). A
    non-native byte order (``'>f4'``) gives the native dtype (float32)."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        result = np.dtype(dtype)
    except TypeError:
        result = None
    if result is not None and not result.isnative:
        result = result.newbyteorder("=")
    # not ``result in FLOAT_DTYPES``: a dtype compares equal to None (np.dtype(None) is float64)
    if result is None or not any(result == d for d in FLOAT_DTYPES):
        raise TypeError(f"dtype must be float16, float32 or float64, got {dtype!r}")
    return result


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int if it is a positive int (not a bool), else TypeError/ValueError."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def int_tuple(
    value: Any, nd: int, name: str, minimum: int, maximum: int = MAX_SIZE
) -> tuple[int, ...]:
    """An int or a sequence of ``nd`` ints, each in [minimum, maximum], as a tuple."""
    if _is_int(value):
        items = (int(value),) * nd
    elif isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
        if len(value) != nd:
            raise ValueError(
                f"{name} must be an int or a sequence of {nd} ints (one per spatial dim), "
                f"got {value!r}"
            )
        items = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{name} must be an int or a sequence of {nd} ints, got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{name} must be >= {minimum} in every dim, got {value!r}")
    _check_at_most(items, name, value, maximum)
    return items


def _check_at_most(items, name: str, value: Any, maximum: int = MAX_SIZE) -> None:
    if any(v > maximum for v in items):
        raise ValueError(
            f"{name} must be at most {maximum} (2**{maximum.bit_length() - 1}) in every dim, "
            f"got {value!r}"
        )


def padding_pairs(
    padding: Any,
    nd: int,
    in_spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> Pairs:
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            pairs = []
            for size, k, s, d in zip(in_spatial, kernel, stride, dilation):
                out = -(-size // s)
                total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs)
        if padding == "full":  # every overlap of x and the dilated kernel: d*(k-1) per side
            return tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel, dilation))
        raise ValueError(
            f"padding must be 'valid', 'same', 'full', an int or per-dim values, got {padding!r}"
        )
    if _is_int(padding):
        p = int(padding)
        if p < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        _check_at_most((p,), "padding", padding)
        return ((p, p),) * nd
    if isinstance(padding, (tuple, list)):
        if len(padding) != nd:
            raise ValueError(f"padding must have one entry per spatial dim ({nd}), got {padding!r}")
        pairs = []
        for item in padding:
            if _is_int(item):
                pair = (int(item), int(item))
            elif (
                isinstance(item, (tuple, list)) and len(item) == 2 and all(_is_int(v) for v in item)
            ):
                pair = (int(item[0]), int(item[1]))
            else:
                raise TypeError(
                    f"padding entries must be ints or (low, high) pairs of ints, got {padding!r}"
                )
            if min(pair) < 0:
                raise ValueError(f"padding must be >= 0, got {padding!r}")
            _check_at_most(pair, "padding", padding)
            pairs.append(pair)
        return tuple(pairs)
    raise TypeError(
        "padding must be an int, a sequence of ints or (low, high) pairs, 'valid', 'same' or "
        f"'full', got {padding!r}"
    )


def check_padding_mode(padding_mode: Any) -> str:
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return padding_mode


def _check_groups(groups: Any) -> int:
    if not _is_int(groups):
        raise TypeError(f"groups must be a positive int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    return int(groups)


# ------------------------------------------------------------------------------ shapes


def shape_tuple(shape: Any, name: str) -> tuple[int, ...]:
    try:
        items = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {shape!r}") from None
    if not all(_is_int(v) for v in items):
        raise TypeError(f"{name} must be a sequence of ints, got {shape!r}")
    if any(v < 1 for v in items):
        raise ValueError(f"{name} must have positive sizes, got {shape!r}")
    return tuple(int(v) for v in items)


def weight_nd(weight_shape: tuple[int, ...], name: str = "weight") -> int:
    if not 3 <= len(weight_shape) <= 5:
        raise ValueError(
            f"{name} must have 3, 4 or 5 dims (out, in/groups, *kernel) for 1-, 2- or 3-D "
            f"convolution, got shape {weight_shape}"
        )
    return len(weight_shape) - 2


def _split_input(input_shape: tuple[int, ...], nd: int, name: str) -> tuple[bool, int, int, tuple]:
    if len(input_shape) == nd + 2:
        return True, input_shape[0], input_shape[1], input_shape[2:]
    if len(input_shape) == nd + 1:
        return False, 1, input_shape[0], input_shape[1:]
    raise ValueError(
        f"{name} must have {nd + 2} dims (N, C, *spatial) or {nd + 1} dims (C, *spatial) for a "
        f"{nd}-D convolution (weight has {nd + 2} dims), got shape {input_shape}"
    )


def conv_spec(
    input_shape: Any,
    weight_shape: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: Any = 1,
    padding_mode: Any = "zeros",
    *,
    input_name: str = "input",
) -> ConvSpec:
    """Validate a forward convolution and return its :class:`ConvSpec`."""
    weight_shape = shape_tuple(weight_shape, "weight.shape")
    shape_name = input_name if input_name.endswith("_shape") else f"{input_name}.shape"
    input_shape = shape_tuple(input_shape, shape_name)
    nd = weight_nd(weight_shape)
    batched, n, c, in_spatial = _split_input(input_shape, nd, input_name)
    groups = _check_groups(groups)
    k_out, c_per_group, kernel = weight_shape[0], weight_shape[1], weight_shape[2:]
    if c % groups:
        raise ValueError(f"{input_name} channels ({c}) must be divisible by groups ({groups})")
    if k_out % groups:
        raise ValueError(f"weight out channels ({k_out}) must be divisible by groups ({groups})")
    if c_per_group * groups != c:
        named = input_name if input_name.endswith("_shape") else f"{input_name} of shape"
        raise ValueError(
            f"expected {named} {input_shape} to have {c_per_group * groups} "
            f"channels (weight.shape[1] * groups = {c_per_group} * {groups}), but got {c} "
            "channels instead"
        )
    stride = int_tuple(stride, nd, "stride", 1)
    dilation = int_tuple(dilation, nd, "dilation", 1)
    padding_mode = check_padding_mode(padding_mode)
    pads = padding_pairs(padding, nd, in_spatial, kernel, stride, dilation)
    _check_mode_pads(padding_mode, pads, in_spatial, input_name)
    out_spatial = tuple(
        output_size(size, k, s, d, lo, hi)
        for size, k, s, d, (lo, hi) in zip(in_spatial, kernel, stride, dilation, pads)
    )
    _check_extents(kernel, dilation, in_spatial, pads, input_name)
    if min(out_spatial) < 1:
        raise ValueError(
            f"output would be empty: {input_name} spatial size {in_spatial} with padding "
            f"{pads} is smaller than the dilated kernel "
            f"{tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))}"
        )
    _check_output_elements((n, k_out, *out_spatial))
    return ConvSpec(
        batched,
        n,
        c,
        k_out,
        groups,
        in_spatial,
        kernel,
        stride,
        dilation,
        pads,
        padding_mode,
        out_spatial,
    )


def _check_extents(kernel, dilation, in_spatial, pads, name: str) -> None:
    """The dilated kernel and the padded input stay within MAX_SIZE in every dim."""
    if any(d * (k - 1) + 1 > MAX_SIZE for k, d in zip(kernel, dilation)):
        raise ValueError(
            f"dilation * (kernel size - 1) + 1 must be at most {MAX_SIZE} (2**60) in every "
            f"dim, got dilation {dilation} with kernel {kernel}"
        )
    if any(size + lo + hi > MAX_SIZE for size, (lo, hi) in zip(in_spatial, pads)):
        raise ValueError(
            f"padding plus {name} spatial size must be at most {MAX_SIZE} (2**60) in every "
            f"dim, got padding {pads} for spatial size {in_spatial}"
        )


def _check_output_elements(shape: tuple[int, ...]) -> None:
    if math.prod(shape) > MAX_ELEMENTS:
        raise ValueError(
            f"output would have shape {shape}, {math.prod(shape)} elements: more than any "
            f"array can hold (at most {MAX_ELEMENTS} = 2**59); check stride, padding and "
            f"dilation"
        )


def _check_mode_pads(mode: str, pads: Pairs, in_spatial: tuple[int, ...], name: str) -> None:
    for size, (lo, hi) in zip(in_spatial, pads):
        if mode == "reflect" and max(lo, hi) >= size:
            raise ValueError(
                f"padding_mode='reflect' needs padding < {name} size in every dim, got padding "
                f"{pads} for spatial size {in_spatial}"
            )
        if mode == "circular" and max(lo, hi) > size:
            raise ValueError(
                f"padding_mode='circular' needs padding <= {name} size in every dim, got "
                f"padding {pads} for spatial size {in_spatial}"
            )


def transpose_spec(
    input_shape: Any,
    weight_shape: Any,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: Any = 1,
    dilation: Any = 1,
) -> ConvSpec:
    """Validate a transposed convolution x (N, C, *S) with weight (C, K/g, *k).

    Returns the spec of the *forward* convolution whose input gradient it is:
    that convolution maps the transposed output (N, K, *S_out) to (N, C, *S).
    """
    weight_shape = shape_tuple(weight_shape, "weight.shape")
    input_shape = shape_tuple(input_shape, "input.shape")
    nd = weight_nd(weight_shape)
    batched, n, c, in_spatial = _split_input(input_shape, nd, "input")
    groups = _check_groups(groups)
    if weight_shape[0] != c:
        raise ValueError(
            f"expected input of shape {input_shape} to have {weight_shape[0]} channels "
            "(weight.shape[0]: a transposed convolution's weight is (in, out/groups, *kernel)), "
            f"but got {c} channels instead"
        )
    if c % groups:
        raise ValueError(f"input channels ({c}) must be divisible by groups ({groups})")
    k_out = weight_shape[1] * groups
    kernel = weight_shape[2:]
    stride = int_tuple(stride, nd, "stride", 1)
    dilation = int_tuple(dilation, nd, "dilation", 1)
    if isinstance(padding, str):
        raise ValueError(
            f"padding of a transposed convolution must be an int or one int per spatial dim, "
            f"got {padding!r}"
        )
    pad = int_tuple(padding, nd, "padding", 0)
    out_pad = int_tuple(output_padding, nd, "output_padding", 0)
    for op, s, d in zip(out_pad, stride, dilation):
        if op >= s and op >= d:
            raise ValueError(
                f"output_padding must be smaller than stride or dilation, got output_padding "
                f"{output_padding!r} with stride {stride} and dilation {dilation}"
            )
    out_spatial = tuple(
        transpose_output_size(size, k, s, d, p, op)
        for size, k, s, d, p, op in zip(in_spatial, kernel, stride, dilation, pad, out_pad)
    )
    if min(out_spatial) < 1:
        raise ValueError(
            f"output would be empty: transposed convolution of spatial size {in_spatial} gives "
            f"{out_spatial} with padding {pad}"
        )
    full = tuple(n + 2 * p for n, p in zip(out_spatial, pad))  # before the padding is cropped
    if max(full) > MAX_SIZE:
        raise ValueError(
            f"output spatial size before the padding is cropped, (size - 1) * stride + "
            f"dilation * (kernel size - 1) + output_padding + 1, must be at most {MAX_SIZE} "
            f"(2**60) in every dim, got {full} with stride {stride} and dilation {dilation}"
        )
    _check_output_elements((n, k_out, *out_spatial))
    # The forward convolution whose input gradient this is maps (N, K, *S_out) to (N, C, *S).
    # With output_padding >= stride (allowed when it is < dilation) that forward convolution
    # would produce extra rows; the transposed output simply gets no contribution there.
    return ConvSpec(
        batched,
        n,
        k_out,
        c,
        groups,
        out_spatial,
        kernel,
        stride,
        dilation,
        tuple((p, p) for p in pad),
        "zeros",
        in_spatial,
    )


def check_output_shape(grad_output_shape: tuple[int, ...], spec: ConvSpec, name: str) -> None:
    if tuple(grad_output_shape) != spec.output_shape:
        raise ValueError(
            f"{name} must have shape {spec.output_shape} for this convolution, got "
            f"{tuple(grad_output_shape)}"
        )


def check_bias_shape(bias_shape: tuple[int, ...], channels: int) -> None:
    if tuple(bias_shape) != (channels,):
        raise ValueError(f"bias must have shape ({channels},), got {tuple(bias_shape)}")


def workspace_elements(spec: ConvSpec) -> int:
    """Elements of a full im2col matrix for the forward pass (C/g*prod(k) x N*prod(out))."""
    return spec.in_channels * math.prod(spec.kernel) * spec.batch * math.prod(spec.out_spatial)

"""The small base shared by layers and the ``nn`` companions: parameters, gradients, state.

A module holds its parameters as plain NumPy arrays in attributes (``weight``, ``bias``)
and their gradients next to them (``weight_grad``, ``bias_grad``). ``forward`` keeps what
``backward`` needs; ``backward(grad_y)`` returns the gradient of the input and *adds* the
parameter gradients to ``*_grad`` (they accumulate across calls until ``zero_grad``).
A module that keeps the caller's input array (not a copy) for ``backward`` also keeps its
:func:`fingerprint`, and ``backward`` refuses an input changed in place since
(:func:`check_unchanged`). Nothing here imports more than NumPy and ``zlib``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


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


def make_rng(rng: Any, seed: Any) -> np.random.Generator:
    """The generator for initialisation: ``rng`` if given, else ``default_rng(seed)``."""
    if rng is not None and seed is not None:
        raise ValueError("give either rng or seed, not both")
    if rng is None:
        return np.random.default_rng(seed)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def positive_int(value: Any, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


# ------------------------------------------------------------- inputs kept for backward

_CHUNK_ELEMENTS = 2**17  # a strided array is read through a buffer of this many elements


def fingerprint(array: np.ndarray) -> tuple | None:
    """A cheap fingerprint of ``array``: its shape, strides, dtype and the CRC-32 of its
    elements in memory order.

    It changes when any element's bytes change, and when elements trade places
    (``x[:] = x[::-1]``), up to a 2**-32 chance of a collision. The array is read once
    (CRC-32 runs at memory-copy speed), a contiguous one (in any axis order) without a copy,
    a strided one through a bounded buffer. None for object arrays, which hold references.
    """
    if array.dtype.hasobject:
        return None
    crc = 0
    if array.flags.c_contiguous:
        crc = zlib.crc32(array)
    elif array.size:
        chunks = np.nditer(
            array,
            flags=["external_loop", "buffered", "zerosize_ok"],
            op_flags=[["readonly", "contig"]],
            order="K",
            buffersize=_CHUNK_ELEMENTS,
        )
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
    return (array.shape, array.strides, array.dtype.str, crc)


def _is_dask(value: Any) -> bool:
    return type(value).__module__.partition(".")[0] == "dask"


def keep_for_backward(x: Any) -> tuple[Any, tuple | None]:
    """(what ``backward`` reads, its fingerprint) for a forward input ``x`` that has
    already been accepted: ``np.asarray(x)`` (the caller's array itself, not a copy) and
    its :func:`fingerprint`; a dask array as it is, without one (dask arrays are immutable
    and stay lazy)."""
    if _is_dask(x):
        return x, None
    x = np.asarray(x)
    return x, fingerprint(x)


def check_unchanged(module: Any, x: Any, kept: tuple | None) -> None:
    """RuntimeError if ``x``, kept by ``module``'s forward with fingerprint ``kept``, has
    been modified in place since (its gradients would silently be wrong)."""
    if kept is not None and fingerprint(x) != kept:
        name = type(module).__name__
        raise RuntimeError(
            f"{name}.backward: the input saved by forward was modified in place after "
            f"forward, so the gradients would be wrong. {name} keeps a reference to the "
            f"array given to forward, not a copy: call forward again on the changed input "
            f"before backward, or pass forward a copy (layer(x.copy())) to change x freely"
        )


class Parameter:
    """A handle on one parameter of a module: ``value`` and ``grad`` read and replace the
    module's attributes (``name`` and ``name + '_grad'``), so optimizers never write into
    an array in place."""

    __slots__ = ("module", "name")

    def __init__(self, module: Module, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def value(self) -> np.ndarray:
        return getattr(self.module, self.name)

    @value.setter
    def value(self, array: np.ndarray) -> None:
        setattr(self.module, self.name, array)

    @property
    def grad(self) -> np.ndarray:
        return getattr(self.module, self.name + "_grad")

    @grad.setter
    def grad(self, array: np.ndarray) -> None:
        setattr(self.module, self.name + "_grad", array)

    def __repr__(self) -> str:
        return f"Parameter({type(self.module).__name__}.{self.name}, shape={self.value.shape})"


class Module:
    """Base class: ``__call__`` = ``forward``; parameters named in ``_param_names``."""

    _param_names: tuple[str, ...] = ()

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def forward(self, x: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_y: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ parameters

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(name, handle) for each parameter that is not None, e.g. ``('weight', ...)``."""
        for name in self._param_names:
            if getattr(self, name, None) is not None:
                yield name, Parameter(self, name)

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        """Reset every parameter gradient to zeros."""
        for p in self.parameters():
            p.grad = np.zeros_like(p.value)

    def _init_grads(self) -> None:
        for name in self._param_names:
            value = getattr(self, name, None)
            setattr(self, name + "_grad", None if value is None else np.zeros_like(value))

    def _accumulate(self, name: str, grad: Any) -> None:
        current = getattr(self, name + "_grad")
        dtype = getattr(self, name).dtype
        setattr(self, name + "_grad", (current + grad).astype(dtype, copy=False))

    # ----------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, keyed by name (``'0.weight'`` inside a Sequential)."""
        return {name: np.array(p.value, copy=True) for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace every parameter by ``state[name]`` (cast to the parameter's dtype).

        All entries are checked first: a missing or unexpected key, a wrong shape or a
        non-float array raises ValueError naming the key, and the module is left unchanged.
        """
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        if missing:
            raise ValueError(f"parameters missing from the state: {missing}")
        unexpected = [k for k in state if k not in params]
        if unexpected:
            raise ValueError(f"unexpected parameters in the state (not in the model): {unexpected}")
        new = {}
        for key, p in params.items():
            array = np.asarray(state[key])
            if array.dtype.newbyteorder("=") not in FLOAT_DTYPES:  # either byte order
                raise ValueError(
                    f"parameter {key!r} must be a float array, got dtype {array.dtype}"
                )
            if array.shape != p.value.shape:
                raise ValueError(
                    f"parameter {key!r} must have shape {p.value.shape}, got {array.shape}"
                )
            new[key] = np.array(array, dtype=p.value.dtype, copy=True)
        for key, p in params.items():
            p.value = new[key]

"""The small base shared by layers and the ``nn`` companions: parameters, gradients, state.

A module holds its parameters as plain NumPy arrays in attributes (``weight``, ``bias``)
and their gradients next to them (``weight_grad``, ``bias_grad``). ``forward`` keeps what
``backward`` needs; ``backward(grad_y)`` returns the gradient of the input and *adds* the
parameter gradients to ``*_grad`` (they accumulate across calls until ``zero_grad``).
A module that keeps the caller's input array (not a copy) for ``backward`` also keeps its
:func:`fingerprint`, and ``backward`` refuses an input changed in place since
(:func:`check_unchanged`). Nothing here imports more than NumPy and ``zlib``.

As in PyTorch, a module has a ``training`` flag set by ``train()``/``eval()`` (for the
module and all its children), iterators ``children()``, ``named_children()``,
``modules()`` and ``named_modules()``, parameters named by their path
(``'0.weight'``), ``load_state_dict(state, strict=True)`` and a repr listing its options
and children.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from ._spec import FLOAT_DTYPES


def make_rng(rng: Any, seed: Any) -> np.random.Generator:
    """The generator for initialisation: ``rng`` if given, else ``default_rng(seed)``."""
    if rng is not None and seed is not None:
        raise ValueError("give either rng or seed, not both")
    if rng is None:
        return np.random.default_rng(seed)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


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
    """A handle on one parameter of a module, as ``module.parameters()`` gives them.

    ``value`` and ``grad`` read and replace the module's attributes ``name`` and
    ``name + '_grad'``, so optimizers never write into an array in place.

    Parameters
    ----------
    module : Module
        The module holding the parameter.
    name : str
        The attribute name (``'weight'``).

    Examples
    --------
    >>> from convgrad import nn
    >>> fc = nn.Linear(2, 1, seed=0)
    >>> p = fc.parameters()[0]
    >>> p
    Parameter(Linear.weight, shape=(1, 2))
    >>> p.value is fc.weight, p.grad is fc.weight_grad
    (True, True)
    """

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


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns, as in PyTorch.

    Attributes
    ----------
    missing_keys : list of str
        The model's parameters the state did not hold.
    unexpected_keys : list of str
        The state's keys the model does not have.

    Examples
    --------
    >>> from convgrad import nn
    >>> fc = nn.Linear(2, 1, seed=0)
    >>> fc.load_state_dict({"weight": fc.weight}, strict=False)
    IncompatibleKeys(missing_keys=['bias'], unexpected_keys=[])
    >>> fc.load_state_dict(fc.state_dict())
    <All keys matched successfully>
    """

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (
            f"IncompatibleKeys(missing_keys={self.missing_keys!r}, "
            f"unexpected_keys={self.unexpected_keys!r})"
        )


def _indent(text: str, spaces: int) -> str:
    """Every line of ``text`` but the first indented by ``spaces`` (PyTorch's nesting)."""
    first, *rest = text.split("\n")
    return "\n".join([first, *(" " * spaces + line for line in rest)])


class Module:
    """Base class of the layers and ``nn`` modules: ``torch.nn.Module`` without autograd.

    A subclass defines ``forward(x)`` and ``backward(grad_y)`` (which returns dE/dx and
    adds its parameter gradients to ``*_grad`` attributes); calling the module runs
    ``forward``. Its parameters are the attributes named in ``_param_names``; its
    children are the public attributes holding modules (a ``Sequential``: its items).

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import nn
    >>> class Block(nn.Module):
    ...     def __init__(self):
    ...         self.conv = nn.Conv2d(2, 2, 3, padding=1, seed=0)
    ...         self.act = nn.ReLU()
    ...     def forward(self, x):
    ...         return self.act(self.conv(x))
    ...     def backward(self, grad_y):
    ...         return self.conv.backward(self.act.backward(grad_y))
    >>> block = Block()
    >>> [name for name, _ in block.named_parameters()]
    ['conv.weight', 'conv.bias']
    >>> block(np.ones((1, 2, 4, 4), np.float32)).shape
    (1, 2, 4, 4)
    >>> block.eval().training, block.conv.training
    (False, False)
    """

    _param_names: tuple[str, ...] = ()
    training: bool = True  # a class default: subclasses need not call __init__

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def forward(self, x: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_y: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # -------------------------------------------------------------------- modules

    def named_children(self) -> Iterator[tuple[str, Any]]:
        """(name, module) for each direct child: the public attributes holding a Module."""
        for name, value in vars(self).items():
            if isinstance(value, Module) and not name.startswith("_"):
                yield name, value

    def children(self) -> Iterator[Any]:
        """Each direct child module."""
        for _, module in self.named_children():
            yield module

    def named_modules(self, memo: set | None = None, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """(path, module) for this module (path ``''``) and every module below it, depth
        first (``'0'``, ``'1.conv'``); a module reached twice is listed once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, Module):
                yield from child.named_modules(memo, path)
            elif id(child) not in memo:
                memo.add(id(child))
                yield path, child

    def modules(self) -> Iterator[Any]:
        """This module and every module below it, each once."""
        for _, module in self.named_modules():
            yield module

    def train(self, mode: bool = True) -> Module:
        """Set ``training`` to ``mode`` here and in every child; returns the module."""
        if not isinstance(mode, (bool, np.bool_)):
            raise ValueError(f"mode must be True or False, got {mode!r}")
        self.training = bool(mode)
        for child in self.children():
            if hasattr(child, "train"):
                child.train(mode)
        return self

    def eval(self) -> Module:
        """``train(False)``; returns the module."""
        return self.train(False)

    # ------------------------------------------------------------------ parameters

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(name, handle) for each parameter that is not None, e.g. ``('weight', ...)``, then
        those of the children, prefixed by the child's name (``'0.weight'``)."""
        for name in self._param_names:
            if getattr(self, name, None) is not None:
                yield name, Parameter(self, name)
        for child_name, child in self.named_children():
            if isinstance(child, Module):
                for name, p in child.named_parameters():
                    yield f"{child_name}.{name}", p

    def parameters(self) -> list[Parameter]:
        """A handle per parameter (what optimizers take), in ``named_parameters`` order."""
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

    # ----------------------------------------------------------------------- repr

    def extra_repr(self) -> str:
        """The options shown between the parentheses of the repr ('' for none)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        children = [f"({name}): {_indent(repr(m), 2)}" for name, m in self.named_children()]
        if not children and len(lines) <= 1:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(lines + children)
        return f"{type(self).__name__}(\n  {body}\n)"

    # ----------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, keyed by name (``'0.weight'`` inside a Sequential)."""
        return {name: np.array(p.value, copy=True) for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Replace parameters by ``state[name]`` (cast to the parameter's dtype).

        ``strict=True``: the keys must match the model's parameters exactly; otherwise a
        ValueError lists the missing and the unexpected keys. ``strict=False`` loads the
        keys both have. Returns ``(missing_keys, unexpected_keys)``. A wrong shape or a
        non-float array raises ValueError naming the key. All entries are checked first:
        on an error the module is left unchanged.
        """
        if not isinstance(strict, (bool, np.bool_)):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            found = []
            if missing:
                found.append(f"parameters missing from the state: {missing}")
            if unexpected:
                found.append(f"unexpected parameters in the state (not in the model): {unexpected}")
            raise ValueError(
                f"cannot load the state into {type(self).__name__}: {'; '.join(found)} "
                "(load_state_dict(state, strict=False) loads the parameters both have)"
            )
        new = {}
        for key, p in params.items():
            if key not in state:
                continue
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
        for key, value in new.items():
            params[key].value = value
        return IncompatibleKeys(missing, unexpected)

"""The few companions needed to train a CNN with convgrad's layers, in plain NumPy.

    model = Sequential(Conv2d(1, 8, 3, padding=1, seed=0), ReLU(), MaxPool2d(2),
                       Flatten(), Linear(8 * 4 * 4, 10, seed=1))
    loss_fn, opt = CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2)
    loss = loss_fn(model(x), labels)
    opt.zero_grad(); model.backward(loss_fn.backward()); opt.step()
    save(model, "model.npz"); load(model, "model.npz")

Every module's ``backward(grad_y)`` returns the input gradient and adds its parameter
gradients to ``*_grad``; optimizers replace parameter arrays (never write into them).
The convolution layers and ``Linear`` keep the input of their last forward (not a copy):
their ``backward`` raises RuntimeError if it was modified in place since forward.
Files are ``.npz`` archives read with ``allow_pickle=False``.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._module import (
    IncompatibleKeys,
    Module,
    Parameter,
    check_unchanged,
    fingerprint,
    make_rng,
)
from ._spec import float_dtype, int_tuple, positive_int
from .layers import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d

__all__ = [
    "Module",
    "IncompatibleKeys",
    "Parameter",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "ReLU",
    "MaxPool2d",
    "Flatten",
    "Linear",
    "CrossEntropyLoss",
    "softmax_cross_entropy",
    "Sequential",
    "SGD",
    "Adam",
    "save",
    "load",
]


def _needs_forward(module: Module, saved: Any) -> None:
    if saved is None:
        raise RuntimeError(
            f"{type(module).__name__}.backward called before forward: call it on an input first"
        )


def _check_grad_shape(grad_y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    grad_y = np.asarray(grad_y)
    if grad_y.shape != tuple(shape):
        raise ValueError(
            f"grad_y must have the shape of the last forward output {tuple(shape)}, "
            f"got {grad_y.shape}"
        )
    return grad_y


# ------------------------------------------------------------------------ layers


class ReLU(Module):
    """Rectified linear unit: ``y = max(x, 0)`` elementwise.

    dE/dx = dE/dy where x > 0 or is NaN, else 0. As in PyTorch, NaN stays NaN (forward)
    and passes its gradient on (backward); -0.0 stays -0.0.

    Raises
    ------
    RuntimeError
        ``backward`` before ``forward``.
    ValueError
        ``backward`` given a gradient of another shape than the last output.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import nn
    >>> relu = nn.ReLU()
    >>> relu(np.array([-1.0, 0.5, 2.0]))
    array([0. , 0.5, 2. ])
    >>> relu.backward(np.ones(3))
    array([0., 1., 1.])
    """

    def __init__(self) -> None:
        self._mask: np.ndarray | None = None

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        # comparisons with NaN are False: NaN is neither zeroed nor blocked
        self._mask = ~(x <= 0)
        return np.where(x < 0, 0, x).astype(x.dtype, copy=False)

    def backward(self, grad_y: Any) -> np.ndarray:
        _needs_forward(self, self._mask)
        grad_y = _check_grad_shape(grad_y, self._mask.shape)
        return np.where(self._mask, grad_y, 0).astype(grad_y.dtype, copy=False)


class MaxPool2d(Module):
    """2-d max pooling: x (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out).

    ``H_out = (H + 2*padding - kernel_size) // stride + 1``. As in PyTorch: a window
    holding NaN gives NaN, and its gradient goes to its last NaN; otherwise the gradient
    goes to the first maximum of the window (never to padding, even when the maximum is
    -inf); overlapping windows add up.

    Parameters
    ----------
    kernel_size : int or (int, int)
        Window size.
    stride : int or (int, int), optional
        Step between windows; default ``kernel_size``.
    padding : int or (int, int), default 0
        -inf padding on both sides, at most half the kernel size.

    Raises
    ------
    ValueError
        A non-positive size or stride, padding over half the kernel, an input that is
        not 3-d or 4-d or smaller than the window.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import nn
    >>> pool = nn.MaxPool2d(2)
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> pool(x)
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    >>> pool.backward(np.ones((1, 1, 2, 2)))[0, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]])
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        self.kernel_size = int_tuple(kernel_size, 2, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else int_tuple(stride, 2, "stride", 1)
        self.padding = int_tuple(padding, 2, "padding", 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(
                f"padding must be at most half the kernel size, got padding {self.padding} "
                f"with kernel_size {self.kernel_size}"
            )
        self._saved: tuple | None = None

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim not in (3, 4):
            raise ValueError(f"x must have shape (N, C, H, W) or (C, H, W), got {x.shape}")
        batched = x.ndim == 4
        xb = x if batched else x[None]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        n, c, h, w = xb.shape
        if (h + 2 * ph - kh) < 0 or (w + 2 * pw - kw) < 0:
            raise ValueError(
                f"x spatial size {(h, w)} with padding {self.padding} is smaller than "
                f"kernel_size {self.kernel_size}"
            )
        if ph or pw:
            fill = -np.inf if xb.dtype.kind == "f" else np.iinfo(xb.dtype).min
            xb = np.pad(xb, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
        flat = self._windows(xb)  # (N, C, Ho, Wo, kh*kw)
        ho, wo = flat.shape[2:4]
        arg = self._argmax(flat, h, w)
        y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        # flat index of each maximum in the padded (N, C, Hp, Wp) input
        hp, wp = xb.shape[2:]
        rows = np.arange(ho)[:, None] * sh + arg // kw
        cols = np.arange(wo)[None, :] * sw + arg % kw
        base = (np.arange(n * c) * (hp * wp)).reshape(n, c, 1, 1)
        self._saved = (base + rows * wp + cols, (n, c, hp, wp), x.shape, y.shape, batched)
        return y if batched else y[0]

    def _windows(self, array: np.ndarray) -> np.ndarray:
        """(N, C, Hp, Wp) -> every pooling window, flattened: (N, C, Ho, Wo, kh*kw)."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        windows = np.lib.stride_tricks.sliding_window_view(array, (kh, kw), axis=(2, 3))
        windows = windows[:, :, ::sh, ::sw]
        return windows.reshape(*windows.shape[:4], kh * kw)

    def _argmax(self, flat: np.ndarray, h: int, w: int) -> np.ndarray:
        """Index in its window of each output, chosen as PyTorch does: the last NaN of a
        window holding NaN, else the first maximum that is not padding."""
        (ph, pw), size = self.padding, flat.shape[-1]
        top = flat.max(axis=-1, keepdims=True)  # NaN where the window holds NaN
        if ph or pw:  # the padding fill (-inf) must lose ties with an input's -inf
            inside = np.zeros((1, 1, h + 2 * ph, w + 2 * pw), dtype=bool)
            inside[..., ph : ph + h, pw : pw + w] = True
            arg = ((flat == top) & self._windows(inside)[0, 0]).argmax(axis=-1)
        else:
            arg = flat.argmax(axis=-1)  # the first maximum
        if flat.dtype.kind == "f":
            has_nan = np.isnan(top[..., 0])
            if has_nan.any():
                last_nan = size - 1 - np.isnan(flat[has_nan])[:, ::-1].argmax(axis=-1)
                arg[has_nan] = last_nan
        return arg

    def backward(self, grad_y: Any) -> np.ndarray:
        _needs_forward(self, self._saved)
        index, padded_shape, x_shape, y_shape, batched = self._saved
        grad_y = _check_grad_shape(grad_y, y_shape if batched else y_shape[1:])
        grad = np.bincount(index.ravel(), weights=grad_y.ravel(), minlength=math.prod(padded_shape))
        grad = grad.reshape(padded_shape)
        ph, pw = self.padding
        grad = grad[:, :, ph : padded_shape[2] - ph, pw : padded_shape[3] - pw]
        grad = grad.astype(grad_y.dtype, copy=False)
        return np.ascontiguousarray(grad if batched else grad[0]).reshape(x_shape)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Flatten(Module):
    """Merge the dims from ``start_dim`` on: (N, d1, d2, ...) -> (N, d1*d2*...).

    Parameters
    ----------
    start_dim : int, default 1
        The first dim merged.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import nn
    >>> flat = nn.Flatten()
    >>> flat(np.zeros((2, 8, 4, 4))).shape
    (2, 128)
    >>> flat.backward(np.zeros((2, 128))).shape
    (2, 8, 4, 4)
    """

    def __init__(self, start_dim: int = 1) -> None:
        self.start_dim = start_dim
        self._shape: tuple | None = None

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        self._shape = x.shape
        return x.reshape(*x.shape[: self.start_dim], -1)

    def backward(self, grad_y: Any) -> np.ndarray:
        _needs_forward(self, self._shape)
        out_shape = (*self._shape[: self.start_dim], math.prod(self._shape[self.start_dim :]))
        return _check_grad_shape(grad_y, out_shape).reshape(self._shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}"


class Linear(Module):
    """Fully connected layer: ``y = x @ weight.T + bias``, x (..., in) -> (..., out).

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the last axis of the input and of the output.
    bias : bool, default True
        Whether the layer has a bias.
    dtype : float16, float32 or float64, default float32
        Keyword only. The parameters' dtype.
    rng : numpy.random.Generator, optional
        Keyword only. Draws the initial parameters.
    seed : int, optional
        Keyword only. Seeds a new generator instead.

    Attributes
    ----------
    weight : numpy.ndarray, shape (out_features, in_features)
        Initialised uniform in ``±1/sqrt(in_features)``, as in PyTorch.
    bias : numpy.ndarray of shape (out_features,), or None
        Initialised like the weight.
    weight_grad, bias_grad : numpy.ndarray or None
        Gradients, added to by ``backward`` until ``zero_grad()``.

    Raises
    ------
    ValueError
        A non-positive size; an input whose last axis is not ``in_features``.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import nn
    >>> fc = nn.Linear(3, 2, seed=0)
    >>> x = np.ones((4, 3), np.float32)
    >>> y = fc(x)
    >>> y.shape
    (4, 2)
    >>> bool(np.allclose(y, x @ fc.weight.T + fc.bias))
    True
    >>> fc.backward(np.ones((4, 2), np.float32)).shape, fc.weight_grad.shape
    ((4, 3), (2, 3))
    """

    _param_names = ("weight", "bias")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: Any = np.float32,
        rng: np.random.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.dtype = float_dtype(dtype)
        generator = make_rng(rng, seed)
        bound = 1.0 / math.sqrt(self.in_features)
        shape = (self.out_features, self.in_features)
        self.weight = generator.uniform(-bound, bound, shape).astype(self.dtype)
        self.bias = (
            generator.uniform(-bound, bound, self.out_features).astype(self.dtype) if bias else None
        )
        self._init_grads()
        self._x: np.ndarray | None = None  # the caller's array, not a copy
        self._x_kept: tuple | None = None

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., {self.in_features}), got {x.shape}")
        y = x @ self.weight.T
        if self.bias is not None:
            y = y + self.bias
        self._x, self._x_kept = x, fingerprint(x)
        return y

    def backward(self, grad_y: Any) -> np.ndarray:
        _needs_forward(self, self._x)
        x = self._x
        check_unchanged(self, x, self._x_kept)
        grad_y = _check_grad_shape(grad_y, (*x.shape[:-1], self.out_features))
        g2 = grad_y.reshape(-1, self.out_features)
        self._accumulate("weight", g2.T @ x.reshape(-1, self.in_features))
        if self.bias is not None:
            self._accumulate("bias", g2.sum(axis=0))
        return grad_y @ self.weight

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


# -------------------------------------------------------------------------- loss


def _labels(labels: Any, logits: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}), got values outside")
    return labels


def softmax_cross_entropy(logits: Any, labels: Any) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    As in PyTorch, a row holding NaN or +inf makes the loss and that row's gradient NaN,
    and a label whose logit is -inf makes the loss +inf (without warnings).

    Parameters
    ----------
    logits : array_like, shape (N, classes)
        Unnormalised scores.
    labels : array_like of int, shape (N,)
        Class indices in ``[0, classes)``.

    Returns
    -------
    loss : float
        The mean over the batch.
    grad : numpy.ndarray, shape (N, classes)
        dloss/dlogits = (softmax(logits) - onehot(labels)) / N, in the logits' dtype.

    Raises
    ------
    ValueError
        Logits not 2-d, labels of the wrong shape or out of range.
    TypeError
        Labels that are not integers.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import nn
    >>> loss, grad = nn.softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(loss, 6) == round(float(np.log(4)), 6)
    True
    >>> grad[0]
    array([-0.375,  0.125,  0.125,  0.125])
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, classes), got {logits.shape}")
    labels = _labels(labels, logits)
    n = logits.shape[0]
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, as in PyTorch
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_p = shifted - log_z
        loss = float(-log_p[np.arange(n), labels].mean())
        grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return loss, (grad / n).astype(logits.dtype, copy=False)


class CrossEntropyLoss:
    """Mean softmax cross-entropy as a callable: ``loss = fn(logits, labels)``.

    ``fn.backward()`` returns dloss/dlogits of the last call (see
    :func:`softmax_cross_entropy`, which computes both).

    Raises
    ------
    RuntimeError
        ``backward()`` before any loss was computed.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import nn
    >>> loss_fn = nn.CrossEntropyLoss()
    >>> loss = loss_fn(np.array([[2.0, 0.0]]), np.array([0]))
    >>> round(loss, 4)
    0.1269
    >>> loss_fn.backward().shape
    (1, 2)
    """

    def __init__(self) -> None:
        self._grad: np.ndarray | None = None

    def __call__(self, logits: Any, labels: Any) -> float:
        loss, self._grad = softmax_cross_entropy(logits, labels)
        return loss

    def backward(self) -> np.ndarray:
        if self._grad is None:
            raise RuntimeError("CrossEntropyLoss.backward called before computing a loss")
        return self._grad

    def __repr__(self) -> str:
        return "CrossEntropyLoss()"


# --------------------------------------------------------------------- container


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse.

    Parameters are named ``'<index>.<name>'`` (``'0.weight'``), as in PyTorch's
    ``state_dict``. ``model[i]`` is a module, ``model[1:3]`` a Sequential of the same
    modules (not copies).

    Parameters
    ----------
    *modules : Module
        Anything with ``forward`` and ``backward``.

    Raises
    ------
    TypeError
        An item without ``forward`` and ``backward``.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, seed=0), nn.ReLU(), nn.Flatten())
    >>> model(np.ones((2, 1, 5, 5), np.float32)).shape
    (2, 100)
    >>> model.backward(np.ones((2, 100), np.float32)).shape
    (2, 1, 5, 5)
    >>> list(model.state_dict())
    ['0.weight', '0.bias']
    >>> model[:2]
    Sequential(
      (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
      (1): ReLU()
    )
    """

    def __init__(self, *modules: Module) -> None:
        for i, m in enumerate(modules):
            if not hasattr(m, "forward") or not hasattr(m, "backward"):
                raise TypeError(f"module {i} must have forward and backward, got {m!r}")
        self._items = list(modules)

    def forward(self, x: Any) -> Any:
        for m in self._items:
            x = m(x)
        return x

    def backward(self, grad_y: Any) -> Any:
        for m in reversed(self._items):
            grad_y = m.backward(grad_y)
        return grad_y

    def named_children(self) -> Iterator[tuple[str, Any]]:
        for i, m in enumerate(self._items):
            yield str(i), m

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Sequential(*self._items[index])
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)


# -------------------------------------------------------------------- optimizers


def _param_list(params: Any) -> list[Parameter]:
    if isinstance(params, Module):
        params = params.parameters()
    params = list(params)
    if not all(isinstance(p, Parameter) for p in params):
        raise TypeError("params must be a Module or Parameters from module.parameters()")
    if not params:
        raise ValueError("params is empty: the optimizer has nothing to update")
    return params


def _non_negative(value: Any, name: str) -> float:
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not value >= 0
    ):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_, int, np.integer)) or value not in (0, 1):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class _Optimizer:
    """What SGD and Adam share. ``state[i]`` holds parameter i's running buffers (named as
    in PyTorch); ``state_dict()`` / ``load_state_dict()`` save and restore them with the
    hyper-parameters, in PyTorch's layout."""

    _state_keys: tuple[str, ...] = ()  # what a stepped parameter's state holds

    def __init__(self, params: Any) -> None:
        self.params = _param_list(params)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def _checked(self, **hyper: Any) -> dict[str, Any]:  # pragma: no cover - abstract
        """The hyper-parameters, validated (an error names the bad one)."""
        raise NotImplementedError

    def _hyper(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Reset the gradients of every parameter to zeros."""
        for p in self.params:
            p.grad = np.zeros_like(p.value)

    def step(self) -> None:
        """Update every parameter from its gradient (new arrays; old ones are untouched)."""
        for p, state in zip(self.params, self.state):
            value = p.value
            p.value = (value - self._update(np.asarray(p.grad), value, state)).astype(
                value.dtype, copy=False
            )

    def _update(self, grad: np.ndarray, value: np.ndarray, state: dict) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover

    # ------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """A copy of the optimizer's state, laid out as PyTorch's: ``{'state': {i:
        {'step': ..., 'exp_avg': ...}}, 'param_groups': [{'lr': ..., 'params': [0, 1,
        ...]}]}`` (i: the parameter's index; parameters not yet stepped have no entry)."""
        state = {
            i: {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v for k, v in s.items()}
            for i, s in enumerate(self.state)
            if s
        }
        group = {**self._hyper(), "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (of an optimizer of the same kind over
        parameters of the same shapes): hyper-parameters, step counts and buffers, copied.
        Everything is checked first: a ValueError names what does not fit, and the
        optimizer is then left unchanged."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(
                f"state_dict must be a dict with keys 'state' and 'param_groups' (from "
                f"{name}.state_dict()), got {type(state_dict).__name__}"
            )
        groups = state_dict["param_groups"]
        if not isinstance(groups, (list, tuple)) or len(groups) != 1:
            raise ValueError("state_dict['param_groups'] must be a list of one group")
        group = dict(groups[0])
        indices = group.pop("params", None)
        if indices is None or list(indices) != list(range(len(self.params))):
            raise ValueError(
                f"state_dict['param_groups'][0]['params'] must be {list(range(len(self.params)))}"
                f" (one index per parameter of this {name}), got {indices!r}"
            )
        if set(group) != set(self._hyper()):
            raise ValueError(
                f"the parameter group must hold {name}'s hyper-parameters "
                f"{sorted(self._hyper())}, got {sorted(group)}"
            )
        hyper = self._checked(**group)
        states: list[dict[str, Any]] = [{} for _ in self.params]
        entries = state_dict["state"]
        if not isinstance(entries, dict):
            raise ValueError("state_dict['state'] must be a dict {parameter index: state}")
        for i, entry in entries.items():
            if not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.params):
                raise ValueError(
                    f"state_dict['state'] keys must be parameter indices 0..{len(self.params) - 1},"
                    f" got {i!r}"
                )
            states[int(i)] = self._checked_entry(int(i), entry)
        vars(self).update(hyper)
        self.state = states

    def _checked_entry(self, i: int, entry: Any) -> dict[str, Any]:
        if not isinstance(entry, dict) or set(entry) != set(self._state_keys):
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(
                f"state of parameter {i} must be a dict with keys {list(self._state_keys)}, "
                f"got {keys}"
            )
        out: dict[str, Any] = {}
        shape = self.params[i].value.shape
        for key, value in entry.items():
            if key == "step":
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                    raise ValueError(f"state of parameter {i}: step must be an int, got {value!r}")
                if value < 0:
                    raise ValueError(f"state of parameter {i}: step must be >= 0, got {value!r}")
                out[key] = int(value)
                continue
            array = np.asarray(value)
            if array.dtype.kind != "f" or array.shape != shape:
                raise ValueError(
                    f"state of parameter {i}: {key!r} must be a float array of shape {shape}, "
                    f"got {array.dtype} {array.shape}"
                )
            out[key] = np.array(array, copy=True)
        return out

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{type(self).__name__}({options})"


class SGD(_Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD`` (dampening 0).

    ``g = grad + weight_decay*p; buf = momentum*buf + g;
    p -= lr * (g + momentum*buf if nesterov else buf)``.

    Parameters
    ----------
    params : Module or iterable of Parameter
        What to update (``model`` or ``model.parameters()``).
    lr : float, default 0.01
        Learning rate, >= 0.
    momentum : float, default 0
        Momentum factor, >= 0.
    weight_decay : float, default 0
        L2 penalty, >= 0.
    nesterov : bool, default False
        Nesterov momentum (needs momentum > 0).

    Raises
    ------
    ValueError
        A negative hyper-parameter, no parameters, nesterov without momentum.
    TypeError
        ``params`` that are not parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import nn
    >>> fc = nn.Linear(2, 1, bias=False, dtype=np.float64, seed=0)
    >>> fc.weight[...] = 1.0
    >>> opt = nn.SGD(fc.parameters(), lr=0.5)
    >>> opt
    SGD(lr=0.5, momentum=0.0, weight_decay=0.0, nesterov=False)
    >>> opt.zero_grad()
    >>> y = fc(np.ones((1, 2)))
    >>> grad_x = fc.backward(np.ones((1, 1)))
    >>> opt.step()
    >>> fc.weight
    array([[0.5, 0.5]])
    """

    _state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params)
        hyper = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        vars(self).update(self._checked(**hyper))

    def _checked(self, lr, momentum, weight_decay, nesterov) -> dict[str, Any]:
        out = dict(
            lr=_non_negative(lr, "lr"),
            momentum=_non_negative(momentum, "momentum"),
            weight_decay=_non_negative(weight_decay, "weight_decay"),
            nesterov=_flag(nesterov, "nesterov"),
        )
        if out["nesterov"] and out["momentum"] == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        return out

    def _hyper(self) -> dict[str, Any]:
        return dict(
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
        )

    def _update(self, grad: np.ndarray, value: np.ndarray, state: dict) -> np.ndarray:
        if self.weight_decay:
            grad = grad + self.weight_decay * value
        if self.momentum:
            buf = state.get("momentum_buffer")
            buf = grad.copy() if buf is None else self.momentum * buf + grad
            state["momentum_buffer"] = buf
            grad = grad + self.momentum * buf if self.nesterov else buf
        return self.lr * grad


class Adam(_Optimizer):
    """Adam, as ``torch.optim.Adam``.

    ``exp_avg`` and ``exp_avg_sq`` are running moments of the gradient;
    ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with the bias-corrected moments.

    Parameters
    ----------
    params : Module or iterable of Parameter
        What to update.
    lr : float, default 0.001
        Learning rate, >= 0.
    betas : (float, float), default (0.9, 0.999)
        Decay of the two moments, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, >= 0.
    weight_decay : float, default 0
        L2 penalty, >= 0.

    Raises
    ------
    ValueError
        A hyper-parameter out of range, or no parameters.
    TypeError
        ``params`` that are not parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import nn
    >>> fc = nn.Linear(2, 1, seed=0)
    >>> opt = nn.Adam(fc.parameters(), lr=0.1)
    >>> opt.zero_grad()
    >>> y = fc(np.ones((1, 2), np.float32))
    >>> _ = fc.backward(np.ones((1, 1), np.float32))
    >>> before = fc.weight
    >>> opt.step()
    >>> bool(np.allclose(fc.weight, before - 0.1))  # the first Adam step is lr * sign(grad)
    True
    >>> sorted(opt.state_dict()["state"][0])
    ['exp_avg', 'exp_avg_sq', 'step']
    """

    _state_keys = ("step", "exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        hyper = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        vars(self).update(self._checked(**hyper))

    def _checked(self, lr, betas, eps, weight_decay) -> dict[str, Any]:
        try:
            b1, b2 = betas
            ok = 0 <= b1 < 1 and 0 <= b2 < 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        return dict(
            lr=_non_negative(lr, "lr"),
            betas=(float(b1), float(b2)),
            eps=_non_negative(eps, "eps"),
            weight_decay=_non_negative(weight_decay, "weight_decay"),
        )

    def _hyper(self) -> dict[str, Any]:
        return dict(lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)

    def _update(self, grad: np.ndarray, value: np.ndarray, state: dict) -> np.ndarray:
        b1, b2 = self.betas
        if self.weight_decay:
            grad = grad + self.weight_decay * value
        t = state.get("step", 0) + 1
        m = b1 * state.get("exp_avg", 0.0) + (1 - b1) * grad
        v = b2 * state.get("exp_avg_sq", 0.0) + (1 - b2) * grad * grad
        state.update(step=t, exp_avg=m, exp_avg_sq=v)
        denom = np.sqrt(v) / math.sqrt(1 - b2**t) + self.eps
        return (self.lr / (1 - b1**t)) * m / denom


# -------------------------------------------------------------------- save / load


def save(model: Module, path: str | os.PathLike) -> str:
    """Write every parameter of ``model`` to an uncompressed ``.npz`` archive (no pickle).

    Parameters
    ----------
    model : Module
        Its ``state_dict()`` is written; keys are the parameter names (``'0.weight'``).
    path : str or os.PathLike
        The file; as with ``np.savez``, ``.npz`` is appended to a path without it.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        A path without a file name ('' or ending in a separator), rather than writing a
        hidden '.npz'.
    TypeError
        A path that is not a str or os.PathLike.

    Examples
    --------
    >>> import os, tempfile
    >>> from convgrad import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3, seed=0), nn.Flatten(), nn.Linear(8, 2, seed=1))
    >>> folder = tempfile.mkdtemp()
    >>> path = nn.save(model, os.path.join(folder, "model"))
    >>> os.path.basename(path)
    'model.npz'
    >>> copy = nn.Sequential(nn.Conv2d(1, 2, 3, seed=5), nn.Flatten(), nn.Linear(8, 2, seed=6))
    >>> nn.load(copy, path)
    <All keys matched successfully>
    >>> bool((copy[0].weight == model[0].weight).all())
    True
    """
    try:
        name = os.fspath(path)
    except TypeError:
        name = None
    if not isinstance(name, str):
        raise TypeError(f"path must be a str or os.PathLike naming a file, got {path!r}")
    path = name
    if not os.path.basename(path):
        raise ValueError(f"path must name a file (e.g. 'model.npz'), got {path!r}")
    if not path.endswith(".npz"):
        path += ".npz"
    np.savez(path, **model.state_dict())
    return path


# what reading a damaged file raises, besides ValueError: an empty or truncated file, a
# broken zip directory, a bad CRC, a damaged deflate stream
_UNREADABLE = (ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def load(model: Module, path: str | os.PathLike, strict: bool = True) -> IncompatibleKeys:
    """Load parameters saved by :func:`save` into ``model``, with ``allow_pickle=False``.

    Parameters
    ----------
    model : Module
        Receives the parameters (new arrays, cast to its parameters' dtypes).
    path : str or os.PathLike
        An ``.npz`` archive written by :func:`save`.
    strict : bool, default True
        Require the archive's keys to match the model's parameters exactly; False loads
        the keys both have.

    Returns
    -------
    IncompatibleKeys
        ``(missing_keys, unexpected_keys)``.

    Raises
    ------
    ValueError
        A file that is not an ``.npz`` archive (empty, truncated, corrupt or of another
        kind), naming the file; a pickled (object) array, a wrong shape, or (with
        ``strict=True``) a missing or unexpected key, naming the key. The model is then
        left unchanged.
    FileNotFoundError
        No such file.

    Examples
    --------
    >>> import os, tempfile
    >>> from convgrad import nn
    >>> path = nn.save(nn.Linear(3, 2, seed=0), os.path.join(tempfile.mkdtemp(), "fc.npz"))
    >>> nn.load(nn.Linear(3, 2, bias=False), path, strict=False)
    IncompatibleKeys(missing_keys=[], unexpected_keys=['bias'])
    """
    name = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except _UNREADABLE as exc:
        raise ValueError(
            f"{name!r} is not a parameter archive (empty, truncated or corrupt?): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{name!r} must be an .npz archive of named arrays")
    state = {}
    with archive:
        for key in archive.files:
            try:
                state[key] = archive[key]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise ValueError(
                        f"parameter {key!r} in {name!r} cannot be read (corrupt archive?): {exc}"
                    ) from exc
                raise ValueError(
                    f"parameter {key!r} in {name!r} is a pickled object array; "
                    f"refusing to load it (allow_pickle=False)"
                ) from exc
            except _UNREADABLE as exc:
                raise ValueError(
                    f"parameter {key!r} in {name!r} cannot be read (truncated or corrupt "
                    f"archive?): {type(exc).__name__}: {exc}"
                ) from exc
    return model.load_state_dict(state, strict=strict)

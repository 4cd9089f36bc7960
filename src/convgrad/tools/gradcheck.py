"""``gradcheck``: any backward against central finite differences (``convgrad.gradcheck``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when an analytic gradient disagrees with the numbers."""


@dataclass
class GradcheckResult:
    """What :func:`gradcheck` returns; prints as one line saying what was checked.

    Attributes
    ----------
    ok : bool
        Every checked element agreed.
    max_error : list of float
        Per array, the largest ``|analytic - numeric|`` (nan where not checked).
    worst : tuple or None
        ``(array index, element index, analytic, numeric)`` of the worst element.
    checked : int
        How many elements were compared.
    failed : int
        How many of them were beyond the tolerance.
    """

    ok: bool
    max_error: list[float]
    worst: tuple[int, tuple[int, ...], float, float] | None
    checked: int
    failed: int = 0

    def __str__(self) -> str:
        if self.worst is None:
            return "gradcheck: nothing checked"
        i, idx, a, n = self.worst
        counts = (
            f"all {self.checked} elements checked agree"
            if self.ok
            else f"{self.failed} of {self.checked} elements checked disagree"
        )
        return (
            f"gradcheck {'OK' if self.ok else 'FAILED'}: {counts}; worst: array {i} at "
            f"{idx}: analytic {a:.6g}, numeric {n:.6g} (|diff| {abs(a - n):.2g})"
        )


def gradcheck(
    fn: Callable[..., Any],
    *arrays: ArrayLike,
    backward: Callable[..., Any] | None = None,
    grad_output: ArrayLike | None = None,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    max_elements: int = 2000,
    seed: int = 0,
    raise_exception: bool = True,
) -> GradcheckResult:
    """Check ``backward`` against central finite differences of ``fn``, for any function.

    Each checked element must satisfy ``|analytic - numeric| <= atol + rtol*|numeric|``
    with ``numeric = (E(a + eps) - E(a - eps)) / (2 eps)`` and ``E = <grad_output,
    fn(*arrays)>``, all in float64.

    Parameters
    ----------
    fn : callable
        ``fn(*arrays) -> y``, an array of any shape.
    *arrays : array_like
        The inputs, copied to float64.
    backward : callable, optional
        ``backward(grad_output, *arrays) -> grads``, one gradient per array (None to skip
        one), where ``grads[i] = d<grad_output, y>/d arrays[i]``; default ``fn.backward``.
    grad_output : array_like, optional
        The weights of ``E``; default a random array of y's shape.
    eps : float, default 1e-6
        Finite-difference step, > 0.
    atol, rtol : float, default 1e-5 and 1e-3
        Tolerances.
    max_elements : int, default 2000
        At most this many elements per array are tried (a random sample).
    seed : int, default 0
        Seeds ``grad_output`` and the sample.
    raise_exception : bool, default True
        Raise on a failure rather than return the result.

    Returns
    -------
    GradcheckResult
        ``ok``, ``max_error`` per array, the ``worst`` element, and how many elements
        were ``checked`` and how many ``failed``.

    Raises
    ------
    GradcheckError
        A gradient disagrees (with ``raise_exception=True``) or has the wrong shape; the
        message names the worst element. An AssertionError.
    TypeError
        ``backward`` not callable (and ``fn`` has no ``backward``).
    ValueError
        ``eps <= 0``, ``grad_output`` of the wrong shape, or the wrong number of
        gradients.

    Examples
    --------
    >>> import numpy as np
    >>> import convgrad
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    >>> result = convgrad.gradcheck(
    ...     lambda x, w: convgrad.conv(x, w, stride=2),
    ...     x, w,
    ...     backward=lambda g, x, w: convgrad.conv_backward(g, x, w, stride=2)[:2],
    ... )
    >>> result.ok, result.checked, result.failed
    (True, 104, 0)
    >>> wrong = convgrad.gradcheck(
    ...     lambda x: x**2, np.ones(3), backward=lambda g, x: g * x, raise_exception=False
    ... )
    >>> print(wrong)  # doctest: +ELLIPSIS
    gradcheck FAILED: 3 of 3 elements checked disagree; worst: ...
    """
    if backward is None:
        backward = getattr(fn, "backward", None)
    if not callable(backward):
        raise TypeError("backward must be a callable backward(grad_output, *arrays) -> grads")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    xs = [np.array(a, dtype=np.float64) for a in arrays]
    rng = np.random.default_rng(seed)
    y_raw = np.asarray(fn(*xs))
    y = y_raw.astype(np.float64)
    g = rng.standard_normal(y.shape) if grad_output is None else np.asarray(grad_output, float)
    if g.shape != y.shape:
        raise ValueError(f"grad_output must have shape {y.shape}, got {g.shape}")
    grads = backward(g, *xs)
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if len(grads) != len(xs):
        raise ValueError(f"backward must return {len(xs)} gradients, got {len(grads)}")

    def energy(values) -> float:
        return float(np.sum(g * np.asarray(fn(*values), dtype=np.float64)))

    max_error, worst, worst_ratio, checked, failed = [], None, -1.0, 0, 0
    for i, (x, grad) in enumerate(zip(xs, grads)):
        if grad is None:
            max_error.append(math.nan)
            continue
        grad = np.asarray(grad, dtype=np.float64)
        if grad.shape != x.shape:
            raise GradcheckError(f"gradient {i} has shape {grad.shape}, expected {x.shape}")
        flat = np.arange(x.size)
        if x.size > max_elements:
            flat = np.sort(rng.choice(x.size, max_elements, replace=False))
        biggest = 0.0
        for j in flat:
            idx = np.unravel_index(j, x.shape)
            keep = x[idx]
            x[idx] = keep + eps
            plus = energy(xs)
            x[idx] = keep - eps
            minus = energy(xs)
            x[idx] = keep
            numeric = (plus - minus) / (2 * eps)
            analytic = float(grad[idx])
            diff = abs(analytic - numeric)
            ratio = diff / (atol + rtol * abs(numeric))
            if math.isnan(ratio):  # a NaN gradient (or energy) is the worst there is
                ratio = diff = math.inf
            biggest = max(biggest, diff)
            checked += 1
            failed += ratio > 1.0
            if ratio > worst_ratio:
                worst_ratio = ratio
                worst = (i, tuple(int(v) for v in idx), analytic, numeric)
        max_error.append(biggest)
    result = GradcheckResult(failed == 0, max_error, worst, checked, failed)
    if not result.ok and raise_exception:
        message = str(result)
        if y_raw.dtype.kind == "f" and y_raw.dtype.itemsize < 8:
            message += (
                f"; fn returns {y_raw.dtype}: finite differences with eps={eps:g} drown in its "
                "rounding, compute fn in float64 (or raise eps to ~1e-3 and rtol to ~1e-2)"
            )
        raise GradcheckError(message)
    return result

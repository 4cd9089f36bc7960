"""Why a graded backward is wrong: its result against the classic wrong results.

For a failing case, each classic mistake (filters not flipped in dX, the stride ignored,
an off-by-one padding, the batch averaged, every group reading the first group's
channels, ...) is recomputed from convgrad's own functions; a wrong gradient that equals
one of them (and the right result does not) is explained by that mistake. A result of
the wrong shape is matched against the classic wrong shapes (H and W swapped, K and C
swapped, the rows the stride never reads dropped). :func:`diagnose` returns the causes
found, each with the gradients it explains and its advice with the case's numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

_INDEX = {"dx": 0, "dw": 1, "db": 2}
_PRETTY = {"dx": "dX", "dw": "dW", "db": "db"}

# cause -> advice; {names}: the gradients it explains ("dX and dW"), {verb}: equals/equal
ADVICE: dict[str, str] = {
    "unflipped": "{names} {verb} the result with unflipped filters: rotate F by 180° "
    "(flip every spatial dim) before the full convolution of dE/dO with it",
    "kernel_transposed": "{names} {verb} the result with the filter's rows and columns "
    "exchanged: kernel rows R slide over H, columns S over W (check for an H/W or R/S swap)",
    "stride_ignored": "{names} {verb} the result with the stride ignored: dE/dO must be "
    "spread out by the stride ({s_minus_1} zeros between its samples) before it is "
    "correlated; output position i reads X at i·stride + j·dilation",
    "padding_shift": "{names} {verb} the right result shifted by one pixel: an off-by-one "
    "in the padding (pad dE/dO by d·(k−1)−p for the full convolution, or crop p={p} from "
    "each side of the padded gradient)",
    "batch_one": "{names} {verb} one sample's gradient: sum over the batch",
    "batch_mean": "{names} {verb} the batch mean: the gradient is the sum over the batch, "
    "not the mean",
    "groups_first": "{names} {verb} the result with every group reading the first group's "
    "channels: with groups={g}, filter k pairs only with the C/groups input channels of "
    "its own group (channel (k // (K/groups))·(C/groups) + c)",
    "hw_swapped": "{names} {has} H and W swapped ({shapes}): rows are H (axis 2), columns "
    "W (axis 3)",
    "kc_swapped": "{names} {has} its first two axes swapped ({shapes}): the filter gradient "
    "has F's shape (K, C/groups, R, S)",
    "remainder_dropped": "{names} {misses} the last rows or columns that the stride never "
    "reads ({shapes}): dE/dX has X's full shape, with zeros where no window reaches",
}
CAUSES: tuple[str, ...] = tuple(ADVICE)


def _as_float(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(np.float64)
    return None


def _shifted_equal(got: np.ndarray, want: np.ndarray, close: Callable) -> bool:
    """got is want moved by one pixel along H and/or W (compared where both are defined)."""
    h, w = want.shape[-2:]
    for dh, dw in ((1, 1), (-1, -1), (1, 0), (0, 1), (-1, 0), (0, -1), (1, -1), (-1, 1)):
        if h <= abs(dh) or w <= abs(dw):
            continue
        g = got[..., max(dh, 0) : h + min(dh, 0), max(dw, 0) : w + min(dw, 0)]
        r = want[..., max(-dh, 0) : h + min(-dh, 0), max(-dw, 0) : w + min(-dw, 0)]
        if np.max(np.abs(r), initial=0.0) > 0 and close(g, r):
            return True
    return False


def _value_causes(got, want, x, w, gy, case, bad, close) -> dict[str, list[str]]:
    """Causes of wrong values (results of the right shape), in the order of CAUSES."""
    from .._spec import conv_spec
    from ..functional import conv_input_grad, conv_weight_grad

    opts = (case.stride, case.padding, case.dilation, case.groups)
    spec = conv_spec(x.shape, w.shape, *opts)
    found: dict[str, list[str]] = {}
    results = {g: _as_float(got[_INDEX[g]]) for g in bad}
    results = {
        g: v for g, v in results.items() if v is not None and v.shape == want[_INDEX[g]].shape
    }

    def matches(cause: str, grad: str, make: Callable[[], np.ndarray | None]) -> None:
        if grad not in results or grad in sum(found.values(), []):
            return
        candidate = make()
        right = want[_INDEX[grad]]
        if candidate is None or candidate.shape != right.shape or close(candidate, right):
            return  # not a mistake here (e.g. the stride ignored at stride 1)
        if close(results[grad], candidate):
            found.setdefault(cause, []).append(grad)

    n, c = x.shape[:2]
    g = spec.groups
    cg = c // g
    matches("unflipped", "dx", lambda: conv_input_grad(gy, np.flip(w, (2, 3)), x.shape, *opts))
    if w.shape[2] == w.shape[3]:
        swapped = np.ascontiguousarray(w.swapaxes(2, 3))
        matches("kernel_transposed", "dx", lambda: conv_input_grad(gy, swapped, x.shape, *opts))
        matches("kernel_transposed", "dw", lambda: want[1].swapaxes(2, 3))
    if any(s > 1 for s in spec.stride):
        xp = np.pad(x, ((0, 0), (0, 0), *spec.pads))
        used = tuple(
            o + d * (k - 1) for o, k, d in zip(spec.out_spatial, spec.kernel, spec.dilation)
        )
        region = (slice(None), slice(None), *(slice(0, u) for u in used))
        plain = (1, 0, spec.dilation, g)

        def dx_stride_1():
            dxp = np.zeros(xp.shape)
            dxp[region] = conv_input_grad(gy, w, (n, c, *used), *plain)
            (lo_h, _), (lo_w, _) = spec.pads
            return dxp[..., lo_h : lo_h + x.shape[2], lo_w : lo_w + x.shape[3]]

        matches("stride_ignored", "dx", dx_stride_1)
        matches("stride_ignored", "dw", lambda: conv_weight_grad(xp[region], gy, w.shape, *plain))
    for grad in ("dx", "dw"):
        if grad in results and grad not in sum(found.values(), []):
            right = want[_INDEX[grad]]
            if _shifted_equal(results[grad], right, close):
                found.setdefault("padding_shift", []).append(grad)
    if n > 1:
        per = [conv_weight_grad(x[i : i + 1], gy[i : i + 1], w.shape, *opts) for i in range(n)]
        for i in range(n):
            matches("batch_one", "dw", lambda i=i: per[i])
        matches("batch_mean", "dw", lambda: want[1] / n)
        matches("batch_mean", "db", lambda: want[2] / n)
    if g > 1:

        def dx_first_group():
            out = np.zeros(want[0].shape)
            for i in range(g):
                out[:, :cg] += want[0][:, i * cg : (i + 1) * cg]
            return out

        first = np.concatenate([x[:, :cg]] * g, axis=1)
        matches("groups_first", "dx", dx_first_group)
        matches("groups_first", "dw", lambda: conv_weight_grad(first, gy, w.shape, *opts))
    return found


def _shape_causes(got, want, case, shapes_bad) -> dict[str, tuple[list[str], str]]:
    """Causes of results of the wrong shape: cause -> (gradients, 'got vs expected')."""
    from .._spec import conv_spec

    found: dict[str, tuple[list[str], str]] = {}
    for grad in shapes_bad:
        shape = tuple(np.shape(got[_INDEX[grad]]))
        right = tuple(want[_INDEX[grad]].shape)
        text = f"{_PRETTY[grad]} {shape} instead of {right}"
        cause = None
        if len(shape) == 4 and shape[:2] == right[:2] and shape[2:] == right[2:][::-1]:
            cause = "hw_swapped"
        elif grad == "dw" and len(shape) == 4 and shape == (right[1], right[0], *right[2:]):
            cause = "kc_swapped"
        elif grad == "dx" and len(shape) == 4 and shape[:2] == right[:2]:
            weight = (case.k, case.c // case.groups, *case.rs)
            options = (case.stride, case.padding, case.dilation, case.groups)
            spec = conv_spec(right, weight, *options)
            rems = [
                size + lo + hi - ((out - 1) * s + ke)
                for size, (lo, hi), out, s, ke in zip(
                    spec.in_spatial, spec.pads, spec.out_spatial, spec.stride, spec.effective_kernel
                )
            ]
            short = [r - m for r, m in zip(right[2:], shape[2:])]
            if shape[2:] != right[2:] and all(0 <= d <= r for d, r in zip(short, rems)):
                cause = "remainder_dropped"
        if cause:
            grads, texts = found.get(cause, ([], ""))
            found[cause] = ([*grads, grad], f"{texts}, {text}" if texts else text)
    return found


def _names(grads: list[str]) -> str:
    pretty = [_PRETTY[g] for g in grads]
    return " and ".join([", ".join(pretty[:-1]), pretty[-1]] if len(pretty) > 1 else pretty)


def diagnose(
    got: tuple,
    want: tuple,
    x: np.ndarray,
    w: np.ndarray,
    gy: np.ndarray,
    case: Any,
    bad: tuple[str, ...],
    shapes_bad: tuple[str, ...],
    close: Callable[[np.ndarray, np.ndarray], bool],
) -> dict[str, tuple[tuple[str, ...], str]]:
    """cause -> (the gradients it explains, its advice with this case's numbers), in the
    order of :data:`CAUSES`. ``bad``: gradients of the right shape with wrong values;
    ``shapes_bad``: gradients of the wrong shape; ``close(a, b)``: the grading tolerance."""
    values = _value_causes(got, want, x, w, gy, case, bad, close) if bad else {}
    shapes = _shape_causes(got, want, case, shapes_bad) if shapes_bad else {}
    stride = case.stride if isinstance(case.stride, int) else max(case.stride)
    numbers = dict(s_minus_1=f"{stride}−1", p=case.padding, g=case.groups)
    out = {}
    for cause in CAUSES:
        if cause in values:
            grads = values[cause]
            many = len(grads) > 1
            words = dict(verb="equal" if many else "equals", shapes="")
        elif cause in shapes:
            grads, text = shapes[cause]
            many = len(grads) > 1
            words = dict(verb="", shapes=text)
        else:
            continue
        words |= dict(has="have" if many else "has", misses="miss" if many else "misses")
        advice = ADVICE[cause].format(names=_names(grads), **words, **numbers)
        out[cause] = (tuple(grads), advice)
    return out

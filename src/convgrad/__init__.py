"""convgrad: convolution layers forward and backward in NumPy, exactly and fast.

Every gradient of a convolution is itself a convolution with the roles of the
axes swapped; convgrad computes them all on one correlation primitive.
"""

from typing import Any as _Any

from ._plan import get_workspace_limit, set_workspace_limit
from .functional import (
    conv,
    conv_backward,
    conv_bias_grad,
    conv_input_grad,
    conv_transpose,
    conv_transpose_backward,
    conv_weight_grad,
)
from .layers import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .tools.check import check
from .tools.explain import explain
from .tools.gradcheck import gradcheck

__version__ = "0.1.0"

# submodules reached as attributes (``convgrad.nn.Conv2d``), imported on first use so that
# ``import convgrad`` stays light
_LAZY_SUBMODULES = ("nn", "reference", "layers", "functional")


def __getattr__(name: str) -> _Any:
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "check",
    "explain",
    "gradcheck",
    "conv",
    "conv_backward",
    "conv_bias_grad",
    "conv_input_grad",
    "conv_transpose",
    "conv_transpose_backward",
    "conv_weight_grad",
    "get_workspace_limit",
    "set_workspace_limit",
]

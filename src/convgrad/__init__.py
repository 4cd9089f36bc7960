"""convgrad: convolution layers forward and backward in NumPy, exactly and fast.

Every gradient of a convolution is itself a convolution with the roles of the
axes swapped; convgrad computes them all on one correlation primitive.
"""

from ._plan import get_workspace_limit, set_workspace_limit
from .check import check, gradcheck
from .explain import explain
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

__version__ = "0.1.0"

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

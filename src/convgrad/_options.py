"""The options of one call as one record, built once by the public function that took them.

Validation (``_validate``, ``_spec``), the Dask path (``_dask``) and the runner read the
record instead of re-listing eight arguments. Values are kept as given; ``_spec`` checks
and normalises them.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Options(NamedTuple):
    """stride, padding, dilation, groups, padding_mode, algorithm, workspace_limit and
    output_padding (a transposed convolution's; None for a convolution), as given."""

    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: Any = 1
    padding_mode: Any = "zeros"
    algorithm: Any = "auto"
    workspace_limit: Any = None
    output_padding: Any = None

    @property
    def transposed(self) -> bool:
        return self.output_padding is not None

    def keywords(self) -> dict[str, Any]:
        """The options as keyword arguments of the public function they came from."""
        options = self._asdict()
        del options["output_padding" if not self.transposed else "padding_mode"]
        return options

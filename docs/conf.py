"""Sphinx configuration of convgrad's reference site.

Build (offline; warnings are errors)::

    python -m sphinx -W -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys

# the package from this checkout, whatever is installed
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))

import convgrad  # noqa: E402

project = "convgrad"
author = "convgrad developers"
copyright = "convgrad developers, MIT license"
version = release = convgrad.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "explain.template.md", "**/.pytest_cache"]

# offline: no intersphinx, no remote images
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

autodoc_typehints = "none"  # numpydoc's Parameters sections give the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
# links from the guides to files of the repository (sources, scripts) are not pages here
suppress_warnings = ["myst.xref_missing"]

html_theme = "pydata_sphinx_theme"
html_title = f"convgrad {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []
# the gradient explorer pages, served as they are next to the site's pages
html_extra_path = ["explorer-origin.html", "explorer-stride.html"]

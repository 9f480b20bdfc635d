"""Sphinx configuration of bpnet's site: API reference (numpydoc, autosummary),
user guide and an executed example gallery (sphinx-gallery).

Build: ``.ci/docs.sh`` (warnings are errors). The API pages document the
*installed* bpnet (``import bpnet``), so build from an environment where it
is installed (``pip install ".[docs]"``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import bpnet

project = "bpnet"
author = "the bpnet developers"
copyright = "2026, the bpnet developers"
version = release = bpnet.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",  # docs/distributed.md stays Markdown (GitHub renders it too)
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "examples/README.rst", "sg_execution_times.rst"]
suppress_warnings = ["myst.header"]  # distributed.md's headings start at level 1, then 2

# -- API reference -------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False  # the class template lists the members
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- example gallery -----------------------------------------------------------------
os.environ.setdefault("MPLBACKEND", "Agg")
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # every example is executed
    "ignore_pattern": r"__init__\.py",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("bpnet",),
    "reference_url": {"bpnet": None},
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "capture_repr": ("_repr_html_", "__repr__"),
    "image_scrapers": ("matplotlib",),
    "plot_gallery": "True",
}

# -- HTML ----------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"bpnet {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": []}
html_show_sourcelink = False

# -- math: MathJax from Debian's libjs-mathjax when installed (the site then works
# offline, and .ci/docs.sh's browser check sees rendered formulas); else Sphinx's
# default, MathJax 3 from a CDN
DEBIAN_MATHJAX = Path("/usr/share/javascript/mathjax")
if (DEBIAN_MATHJAX / "MathJax.js").is_file():
    mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"  # relative to _static


def _copy_mathjax(app, exception):  # type: ignore[no-untyped-def]
    """Copy Debian's MathJax 2 into the built site's ``_static/mathjax``."""
    if exception is None and app.builder.format == "html" and "mathjax_path" in globals():
        shutil.copytree(DEBIAN_MATHJAX, Path(app.outdir) / "_static" / "mathjax",
                        ignore=shutil.ignore_patterns("unpacked", "test"), dirs_exist_ok=True)


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("build-finished", _copy_mathjax)

"""The package's identity: version and PyPI distribution name.

The import name is ``bpnet`` and so is the command, but the name on PyPI is
``bpnet-mlp``: ``bpnet`` there is an unrelated genomics project. Every
install hint goes through :func:`install_hint`, so none of them points at it.
"""

from __future__ import annotations

__all__ = ["DISTRIBUTION", "__version__", "install_hint"]

# The one place the version is written: pyproject.toml reads it from here at
# build time (the distribution's metadata), and model files, ONNX exports and
# `bpnet --version` read it from here at run time.
__version__ = "0.1.0"
DISTRIBUTION = "bpnet-mlp"


def install_hint(extra: str | None = None) -> str:
    """The pip command that installs this package (with an optional extra)."""
    spec = DISTRIBUTION if extra is None else f"{DISTRIBUTION}[{extra}]"
    return f"pip install '{spec}'"

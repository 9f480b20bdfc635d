"""Warnings that point into the user's code.

A warning raised deep inside a fit (a ``ConvergenceWarning`` from the
estimators' fit loop, idle Dask workers) should be attributed to the line
that called bpnet, not to a line of bpnet: :func:`warn` finds that line by
walking up the stack past bpnet's own frames (and scikit-learn's, through
which a ``Pipeline``, ``cross_validate`` or a grid search calls bpnet), as
Python 3.12's ``skip_file_prefixes`` does, so decorators and helper layers
never shift the reported location.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType

__all__ = ["user_stacklevel", "warn"]

_BPNET = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _library_dirs() -> tuple[str, ...]:
    """bpnet's package directory and, once imported, scikit-learn's."""
    dirs = [_BPNET]
    sklearn = sys.modules.get("sklearn")
    sk_file = getattr(sklearn, "__file__", None)
    if sk_file:
        dirs.append(os.path.dirname(os.path.abspath(sk_file)) + os.sep)
    return tuple(dirs)


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` call made by this function's
    caller that points it at the first frame outside bpnet and scikit-learn (the user's code);
    if every frame is inside them (a thread started by a library), the first
    frame outside bpnet; else the caller's caller."""
    frame: FrameType | None = sys._getframe(1)  # the caller of warnings.warn
    libraries = _library_dirs()
    level, first_outside_bpnet = 1, 0
    while frame is not None:
        name = os.path.abspath(frame.f_code.co_filename)
        if not name.startswith(libraries):
            return level
        if not first_outside_bpnet and not name.startswith(_BPNET):
            first_outside_bpnet = level
        frame, level = frame.f_back, level + 1
    return first_outside_bpnet or 2


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn(message, category)`` attributed to the user's code."""
    warnings.warn(message, category, stacklevel=user_stacklevel())

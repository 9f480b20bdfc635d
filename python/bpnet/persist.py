"""Model files: :func:`save` and :func:`load` for networks, estimators and Pipelines.

The file format lives in :mod:`bpnet._modelfile` (see its docstring); each
class writes and reads its own record (``_record`` / ``_from_record``). This
module is the top floor that joins them: :func:`save` takes any savable
object (a scikit-learn Pipeline of scalers is split into its scalers'
arrays and the final estimator), and :func:`load` picks the class by the
file's ``kind``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._modelfile import (
    DEFAULT_MAX_BYTES,
    FORMAT_VERSION,
    ModelFileError,
    Record,
    RecordError,
    model_errors,
    read,
    write,
)
from ._pipeline import attach_pipeline, split_pipeline
from .network import Network

__all__ = ["DEFAULT_MAX_BYTES", "FORMAT_VERSION", "ModelFileError", "load", "read_metadata",
           "save"]


def save(obj: Any, path: str | os.PathLike[str]) -> str:
    """Write a :class:`bpnet.Network` or a fitted estimator to ``path``.

    Parameters
    ----------
    obj : Network, BPNetClassifier, BPNetRegressor or Pipeline
        What to save; an estimator must be fitted. A scikit-learn Pipeline
        of fitted ``StandardScaler`` / ``MinMaxScaler`` steps ending in a
        bpnet estimator is stored with the scalers' arrays (``load`` returns
        the Pipeline).
    path : str or path-like
        Destination (``.npz`` recommended; the name is used as given). The
        file is replaced atomically: a reader sees the old file or the new
        one, never a partial write. A symlink owned by you or by root is
        followed (its target is replaced); another user's link is refused
        (see :func:`bpnet._modelfile.resolve_destination`). The replaced
        file's permission bits are kept.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        If the object would not load back (e.g. ``set_params`` changed the
        activation after the fit, or theta is not finite); nothing is written.
    OSError
        If the destination is not a regular file (a FIFO, device, socket or
        directory) or is read-only, or (PermissionError) is reached through
        a symlink owned by another user; it is left untouched.
    """
    est, preprocessing, scaler_arrays = split_pipeline(obj)
    if not (isinstance(est, Network) or type(est).__name__ in _ESTIMATORS):
        raise TypeError(
            "obj must be a bpnet.Network, BPNetClassifier or BPNetRegressor; "
            f"got {type(est).__name__}"
        )
    body, arrays = est._record()
    if preprocessing is not None:
        body["preprocessing"] = preprocessing
    arrays.update(scaler_arrays)
    return write(path, (body, arrays), _from_record)


def load(path: str | os.PathLike[str], *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> Any:
    """Load a model file written by :func:`save`.

    Parameters
    ----------
    path : str or path-like
    max_bytes : int or None, default DEFAULT_MAX_BYTES (256 MiB)
        The most the file's arrays may declare, uncompressed; checked against
        the archive's directory before anything is decompressed, so a small
        hostile file describing a huge network costs nothing. Raise it (or
        pass None, no bound) to load a larger model you trust.

    Returns
    -------
    Network, BPNetClassifier, BPNetRegressor or sklearn Pipeline
        The saved object; predictions are bitwise equal to the original's.

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, corrupted, tampered with, of a
        newer format version, describes an inconsistent network, or declares
        more than ``max_bytes`` (the message gives the size and the limit).
    ValueError
        If ``max_bytes`` is not an int >= 0 or None.
    """
    path = os.fspath(path)
    body, arrays = read(path, max_bytes=max_bytes)
    with model_errors(path):
        return _from_record(body, arrays)


def read_metadata(
    path: str | os.PathLike[str], *, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> dict[str, Any]:
    """The verified metadata body of a model file (for ``bpnet info``);
    ``max_bytes`` as in :func:`load`.

    Raises
    ------
    ModelFileError
        If the file is missing, damaged, not a bpnet model or larger than
        ``max_bytes``.
    """
    body, _ = read(path, max_bytes=max_bytes)
    return body


_ESTIMATORS = ("BPNetClassifier", "BPNetRegressor")


def _from_record(body: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """The object a record describes, by its ``kind``: a Network, or an
    estimator, wrapped in its Pipeline of scalers when the file has one."""
    if body["kind"] == "Network":
        return Network._from_record(body, arrays)
    from . import estimators  # scikit-learn: imported only for an estimator's file

    est = getattr(estimators, body["kind"])._from_record(body, arrays)
    return _with_pipeline(est, (body, arrays))


def _with_pipeline(est: Any, record: Record) -> Any:
    """The saved Pipeline (scalers + ``est``) if the record has one, else ``est``."""
    body, arrays = record
    try:
        return attach_pipeline(est, body.get("preprocessing"), arrays)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise RecordError(f"invalid preprocessing description: {err}") from None

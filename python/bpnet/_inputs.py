"""Input preparation: each user input is converted and checked here, once.

:class:`bpnet.Network`, the Dask shards (``bpnet.distributed``), the
estimators and the CLI hand their X, y and sample weights to these functions;
the functional API (:mod:`bpnet.functional`) converts nothing and only
checks. The rules, stated once:

- X: real numbers, 2-D (m, s_0), m >= 1; converted to the working dtype in C
  order (a SciPy sparse X to CSR of that dtype, with one index dtype) and
  checked finite. A value that overflows the dtype is reported as non-finite.
- y: m rows. A 1-D vector holds class indices; whole-number floats (as read
  from a CSV file) become int64 (:func:`class_indices`). A matrix (m, K) is
  converted to the working dtype. An identity output takes a 1-D y as one
  target column.
- sample_weight: (m,), finite, >= 0, with a positive sum, in the working dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import functional as F

__all__ = ["check_X_form", "class_indices", "prepare_X", "prepare_weight", "prepare_y"]


def class_indices(y: np.ndarray) -> np.ndarray:
    """A 1-D float vector of whole numbers as int64 class indices; any other ``y``
    unchanged (the core's check names what is wrong with it)."""
    if y.ndim == 1 and y.dtype.kind == "f" and np.isfinite(y).all() and np.all(y == np.round(y)):
        return y.astype(np.int64)
    return y


def check_X_form(X: Any, n_inputs: int) -> None:
    """dtype kind and shape of a dense or sparse X, before any conversion."""
    if X.dtype.kind not in "fiub":
        raise ValueError(f"X must hold real numbers; got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (m, n_features); got shape {X.shape}")
    if X.shape[1] != n_inputs:
        raise ValueError(
            f"X has shape {X.shape} but the network has {n_inputs} inputs; "
            f"expected (m, {n_inputs})"
        )
    if X.shape[0] == 0:
        raise ValueError("X has no rows (m = 0)")


def _non_finite(dtype: np.dtype, row: int, column: int, source: str) -> ValueError:
    if source:  # a block of a larger array: the row is the array's
        return ValueError(f"X contains a non-finite value at row {row}, column {column} of "
                          f"{source} (as {dtype.name})")
    return ValueError(
        f"X contains a non-finite value (as {dtype.name}) at row {row}, column {column}"
    )


def prepare_X(
    X: Any, n_inputs: int, dtype: np.dtype, row0: int = 0, source: str = "",
    check_finite: bool = True,
) -> Any:
    """X (m, n_inputs) as the core takes it: C-contiguous of ``dtype``, or CSR.

    A dense X is copied only if its dtype or layout differs; a sparse X of
    another format, dtype or index width is converted here, once, never per
    core call. For a block of a larger array (a shard), ``row0`` is its first
    row and ``source`` names the array in an error. ``check_finite=False``
    skips the finiteness scan, for an X that was checked already.
    """
    if F.is_sparse(X):
        return _prepare_sparse_X(X, n_inputs, dtype, row0, source, check_finite)
    X = np.asarray(X)
    check_X_form(X, n_inputs)
    with np.errstate(over="ignore"):  # an overflow to inf is reported below
        X = np.require(X, dtype=dtype, requirements=["C", "A"])
    if check_finite and not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise _non_finite(dtype, row0 + int(bad[0]), int(bad[1]), source)
    return X


def _prepare_sparse_X(
    X: Any, n_inputs: int, dtype: np.dtype, row0: int, source: str, check_finite: bool
) -> Any:
    """A SciPy sparse X as CSR of ``dtype``; the core runs the first layer on its nonzeros."""
    check_X_form(X, n_inputs)
    X = X.tocsr()
    with np.errstate(over="ignore"):  # an overflow to inf is reported below
        X = X.astype(dtype, copy=False)
    if X.indices.dtype != X.indptr.dtype:
        X.indptr = X.indptr.astype(X.indices.dtype)
    if check_finite and not np.isfinite(X.data).all():
        k = int(np.argmax(~np.isfinite(X.data)))
        row = int(np.searchsorted(X.indptr, k, side="right") - 1)
        raise _non_finite(dtype, row0 + row, int(X.indices[k]), source)
    return X


def prepare_y(y: Any, m: int, output: str, dtype: np.dtype) -> np.ndarray:
    """Targets for ``m`` rows: int64 class indices (m,) or a matrix (m, K) of ``dtype``."""
    y = np.asarray(y)
    if y.shape[:1] != (m,):
        raise ValueError(f"y has shape {y.shape}; expected {m} rows to match X")
    if output == "identity" and y.ndim == 1:
        y = y.reshape(m, 1)
    if y.ndim == 1:
        return F.check_targets(class_indices(y), dtype, True)
    if y.dtype.kind not in "fiub":
        raise ValueError(f"y must hold numbers; got dtype {y.dtype}")
    with np.errstate(over="ignore"):  # an overflow to inf is reported as non-finite
        y = np.require(y, dtype=dtype, requirements=["C", "A"])
    return F.check_targets(y, dtype, True)


def prepare_weight(
    sample_weight: Any, m: int, dtype: np.dtype, positive_sum: bool = True
) -> np.ndarray | None:
    """Sample weights (m,) of ``dtype``: finite, >= 0, with a positive sum unless
    ``positive_sum`` is False (a shard of the data may weigh nothing). None: none."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "fiub":
        raise ValueError(f"sample_weight must hold real numbers; got dtype {w.dtype}")
    with np.errstate(over="ignore"):  # an overflow to inf is reported below
        w = np.require(w, dtype=dtype, requirements=["C", "A"])
    if w.shape != (m,):
        raise ValueError(f"sample_weight has shape {w.shape}; expected ({m},)")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and >= 0")
    if positive_sum and not w.sum() > 0:
        raise ValueError("sample_weight must have a positive sum")
    return w

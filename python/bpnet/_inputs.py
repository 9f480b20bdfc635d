"""Input preparation: each user input is converted and checked here, once.

:class:`bpnet.Network`, the Dask shards (``bpnet.distributed``), the
estimators and the CLI hand their X, y and sample weights to these functions;
the functional API (:mod:`bpnet.functional`) converts nothing and only
checks. The rules, stated once:

- X: real numbers, 2-D (m, s_0), m >= 1; converted to the working dtype in C
  order (a SciPy sparse X to CSR of that dtype, with one index dtype) and
  checked finite. A value that overflows the dtype is reported as non-finite.
- y: m rows. A 1-D vector holds class indices; whole-number floats (as read
  from a CSV file) become int64 when int64 holds every one exactly
  (:func:`class_indices`; 1e20 stays a float and is reported as such). A
  matrix (m, K) is converted to the working dtype. An identity output takes a
  1-D y as one target column.
- sample_weight: (m,), finite, >= 0, with a positive sum, in the working dtype.
- pandas: a frame or series of nullable dtypes (``Int64``, ``Float64``,
  ``boolean``) is converted once to the NumPy dtype it holds
  (:func:`from_pandas`); a missing value (``pd.NA``) is a ValueError naming
  its row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import functional as F

__all__ = ["check_X_form", "class_indices", "from_pandas", "prepare_X", "prepare_weight",
           "prepare_y"]

_INT64_END = 2.0**63  # int64 holds every whole float in [-2**63, 2**63) exactly


def class_indices(y: np.ndarray) -> np.ndarray:
    """A 1-D float vector of whole numbers as int64 class indices when int64
    holds every one exactly; any other ``y`` unchanged (the caller's check names
    what is wrong with it: a label of 1e20 stays 1e20, never a wrapped int)."""
    if (y.ndim == 1 and y.dtype.kind == "f" and np.isfinite(y).all()
            and np.all(y == np.round(y)) and np.all((y >= -_INT64_END) & (y < _INT64_END))):
        return y.astype(np.int64)
    return y


def from_pandas(a: Any, name: str) -> Any:
    """A pandas frame or series whose columns are all numeric or boolean, some of
    them nullable (``Int64``, ``Float64``, ``boolean``), as the NumPy array of the
    dtype they hold, converted here once; ``a`` unchanged otherwise (a plain NumPy
    dtype converts without help). A missing value is a ValueError naming its row."""
    dtypes = getattr(a, "dtypes", None)
    if dtypes is None or not type(a).__module__.startswith("pandas") or not hasattr(a, "isna"):
        return a
    dtypes = [dtypes] if isinstance(dtypes, np.dtype) or not hasattr(dtypes, "__iter__") \
        else list(dtypes)
    numpy_dtypes = [getattr(dt, "numpy_dtype", dt) for dt in dtypes]
    if all(isinstance(dt, np.dtype) for dt in dtypes) or not all(
        isinstance(dt, np.dtype) and dt.kind in "fiub" for dt in numpy_dtypes
    ):
        return a
    missing = np.asarray(a.isna())
    if missing.any():
        row = int(np.argwhere(missing)[0][0])
        raise ValueError(f"{name} contains a missing value (pd.NA) at row {row}")
    return a.to_numpy(dtype=np.result_type(*numpy_dtypes))


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
    X = np.asarray(from_pandas(X, "X"))
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
    y = np.asarray(from_pandas(y, "y"))
    if y.shape[:1] != (m,):
        raise ValueError(f"y has shape {y.shape}; expected {m} rows to match X")
    if output in ("identity", "poisson") and y.ndim == 1:  # regression outputs
        y = y.reshape(m, 1)
    if y.ndim == 1:
        y = y.astype(np.int64) if y.dtype.kind == "b" else class_indices(y)  # bool: 0/1
        if y.dtype.kind == "f":  # a label that is not a whole number int64 holds
            i = int(np.argmax(~(np.isfinite(y) & (y == np.round(y)) & (np.abs(y) < _INT64_END))))
            raise ValueError(f"y[{i}] = {float(y[i])!r} is not a class index: y as a 1-D "
                             "vector holds integer class indices 0..K-1")
        return F.check_targets(y, dtype, True)
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
    w = np.asarray(from_pandas(sample_weight, "sample_weight"))
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

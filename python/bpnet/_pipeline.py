"""Model files for scikit-learn Pipelines: feature scalers, then a bpnet estimator.

``bpnet.save(make_pipeline(StandardScaler(), BPNetClassifier()), path)``
stores the scaler's fitted arrays next to the network (``bpnet train``'s
``--scale`` does this), and :func:`bpnet.load` returns the Pipeline again, so
a loaded model takes raw features. The arrays are stored exactly: the loaded
scaler transforms bitwise like the saved one, and a scaler fitted on a
DataFrame keeps its ``feature_names_in_``, so the loaded Pipeline refuses
renamed or reordered columns as the saved one does. Supported steps:
:class:`~sklearn.preprocessing.StandardScaler` and
:class:`~sklearn.preprocessing.MinMaxScaler`, any number, before the final
bpnet estimator.

scikit-learn is imported only when a pipeline is saved or loaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["attach_pipeline", "scaler_for", "split_pipeline"]

# class name -> (constructor parameters, fitted array attributes that may be None)
_SCALERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "StandardScaler": (("with_mean", "with_std", "copy"), ("mean_", "var_", "scale_")),
    "MinMaxScaler": (
        ("feature_range", "copy", "clip"),
        ("min_", "scale_", "data_min_", "data_max_", "data_range_"),
    ),
}
SCALE_METHODS = {"standard": "StandardScaler", "minmax": "MinMaxScaler"}


def scaler_for(method: str) -> Any:
    """A new scaler for ``--scale METHOD`` (``"standard"`` or ``"minmax"``)."""
    if method not in SCALE_METHODS:
        raise ValueError(f"scale must be one of {(*SCALE_METHODS, 'none')}; got {method!r}")
    from sklearn import preprocessing

    return getattr(preprocessing, SCALE_METHODS[method])()


def _is_pipeline(obj: object) -> bool:
    cls = type(obj)
    return cls.__name__ == "Pipeline" and cls.__module__.startswith("sklearn.")


def split_pipeline(obj: Any) -> tuple[Any, list[dict[str, Any]] | None, dict[str, np.ndarray]]:
    """``(final estimator, steps metadata, arrays)`` of a Pipeline; ``(obj, None, {})``
    for anything else."""
    if not _is_pipeline(obj):
        return obj, None, {}
    steps = list(obj.steps)
    if not steps:
        raise ValueError("obj is an empty Pipeline")
    *pre, (final_name, final) = steps
    if type(final).__name__ not in ("BPNetClassifier", "BPNetRegressor"):
        raise TypeError(
            "a saved Pipeline must end with a BPNetClassifier or BPNetRegressor; "
            f"got {type(final).__name__} as its last step {final_name!r}"
        )
    meta: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for i, (name, step) in enumerate(pre):
        kind = type(step).__name__
        if kind not in _SCALERS or not type(step).__module__.startswith("sklearn."):
            raise TypeError(
                f"Pipeline step {name!r} is a {kind}; model files store "
                f"{' and '.join(_SCALERS)} steps before the bpnet estimator"
            )
        if not hasattr(step, "n_features_in_"):
            raise ValueError(f"Pipeline step {name!r} ({kind}) is not fitted")
        params, attrs = _SCALERS[kind]
        p = step.get_params(deep=False)
        entry: dict[str, Any] = {
            "name": str(name),
            "class": kind,
            "params": {k: list(p[k]) if isinstance(p[k], tuple) else p[k] for k in params},
            "n_features_in": int(step.n_features_in_),
            "arrays": [],
        }
        for attr in (*attrs, "n_samples_seen_"):
            value = getattr(step, attr, None)
            if value is None:
                continue
            key = f"preprocessing_{i}_{attr.rstrip('_')}"
            arrays[key] = np.ascontiguousarray(np.asarray(value))
            entry["arrays"].append(attr)
        names = getattr(step, "feature_names_in_", None)
        if names is not None:  # fitted on a DataFrame: scikit-learn checks the columns
            arrays[f"preprocessing_{i}_feature_names_in"] = _names_array(names, name)
            entry["feature_names"] = True
        meta.append(entry)
    meta.append({"name": str(final_name), "class": type(final).__name__})
    return final, meta, arrays


def _names_array(names: Any, step: str) -> np.ndarray:
    """Feature names as a unicode array (no pickle in a model file)."""
    values = np.asarray(names, dtype=object).tolist()
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"Pipeline step {step!r}: feature_names_in_ must hold strings")
    return np.asarray(values, dtype=str)


def _names_from_record(arrays: dict[str, np.ndarray], i: int, n: int) -> np.ndarray:
    names = arrays[f"preprocessing_{i}_feature_names_in"]
    if names.dtype.kind != "U" or names.shape != (n,):
        raise ValueError(f"preprocessing step {i}: feature_names_in is {names.dtype} "
                         f"{names.shape}; expected {n} strings")
    return names.astype(object)  # as scikit-learn keeps them


def attach_pipeline(est: Any, meta: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Rebuild the Pipeline described by ``meta`` around the loaded ``est``
    (``est`` itself when ``meta`` is None). ValueError on a bad description."""
    if meta is None:
        return est
    if not isinstance(meta, list) or len(meta) < 2:
        raise ValueError(f"preprocessing must list the pipeline's steps; got {meta!r}")
    from sklearn import preprocessing
    from sklearn.pipeline import Pipeline

    *pre, last = meta
    if not isinstance(last, dict) or last.get("class") != type(est).__name__:
        raise ValueError(f"the pipeline's last step {last!r} is not the saved {type(est).__name__}")
    steps = []
    n_in = None
    for i, entry in enumerate(pre):
        kind = entry.get("class") if isinstance(entry, dict) else None
        if kind not in _SCALERS:
            raise ValueError(
                f"preprocessing step {i} is {entry!r}; expected one of {list(_SCALERS)}"
            )
        params = dict(entry["params"])
        if "feature_range" in params:
            params["feature_range"] = tuple(params["feature_range"])
        step = getattr(preprocessing, kind)(**params)
        n = int(entry["n_features_in"])
        if n_in is not None and n != n_in:
            raise ValueError(
                f"preprocessing step {i} takes {n} features; step {i - 1} gives {n_in}"
            )
        n_in = n
        step.n_features_in_ = n
        for attr in entry["arrays"]:
            if attr not in (*_SCALERS[kind][1], "n_samples_seen_"):
                raise ValueError(f"preprocessing step {i}: unknown array {attr!r}")
            a = arrays[f"preprocessing_{i}_{attr.rstrip('_')}"]
            if attr != "n_samples_seen_" and (a.dtype.kind != "f" or a.shape != (n,)):
                raise ValueError(
                    f"preprocessing step {i}: {attr} is {a.dtype} {a.shape}; expected float ({n},)"
                )
            if attr != "n_samples_seen_" and not np.isfinite(a).all():
                raise ValueError(f"preprocessing step {i}: {attr} holds non-finite values")
            setattr(step, attr, a.item() if a.ndim == 0 else a.copy())
        for attr in _SCALERS[kind][1]:
            if not hasattr(step, attr):
                setattr(step, attr, None)
        if entry.get("feature_names", False) is True:
            step.feature_names_in_ = _names_from_record(arrays, i, n)
        steps.append((str(entry["name"]), step))
    if n_in is not None and n_in != est.n_features_in_:
        raise ValueError(
            f"the scalers give {n_in} features; the estimator takes {est.n_features_in_}"
        )
    steps.append((str(last.get("name", "estimator")), est))
    return Pipeline(steps)

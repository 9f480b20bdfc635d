"""Field codecs for records (see :mod:`bpnet._modelfile`): JSON scalars,
estimator parameters, label arrays, the RNG state, and the checks a field
read back from a record must pass.

Each class writes and reads its own record with these (``Network._record``,
the estimators' ``_record``); nothing here knows a bpnet class. A field that
fails a check raises ``ValueError`` (or ``KeyError``/``TypeError`` for a
missing or mistyped one); the class reports it as a
:class:`bpnet._modelfile.RecordError` of its section.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "bool_field",
    "check_classes",
    "decode_params",
    "encode_params",
    "finite_or_none",
    "int_field",
    "json_scalar",
    "label_array",
    "number_field",
    "rng_from_state",
    "rng_state",
]

def finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def json_scalar(x: Any) -> Any:
    """A JSON scalar from a Python or NumPy scalar."""
    if isinstance(x, np.generic):
        x = x.item()
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return finite_or_none(x)
    raise TypeError(type(x).__name__)


def encode_params(params: dict[str, Any]) -> dict[str, Any]:
    """Estimator parameters as JSON: a client, a RandomState or any other live
    object is stored as None (the default); a class_weight dict as its pairs."""
    encoded: dict[str, Any] = {}
    for name, value in params.items():
        if name == "client":
            encoded[name] = None  # a live cluster connection is not part of a model
        elif name == "dtype":
            encoded[name] = None if value is None else np.dtype(value).name
        elif name == "random_state":
            encoded[name] = value if value is None or isinstance(value, int) else None
        elif name == "class_weight" and isinstance(value, dict):
            encoded[name] = {"pairs": [[json_scalar(k), json_scalar(v)] for k, v in value.items()]}
        elif isinstance(value, (tuple, list)):
            encoded[name] = [json_scalar(v) for v in value]
        else:
            try:
                encoded[name] = json_scalar(value)
            except TypeError:
                raise ValueError(
                    f"parameter {name}={value!r} cannot be stored in a model file "
                    "(expected a number, string, bool, None or a sequence of them)"
                ) from None
    return encoded


def decode_params(params: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments :func:`encode_params` stored (tuples and dicts back)."""
    decoded = dict(params)
    if isinstance(decoded.get("hidden_layer_sizes"), list):
        decoded["hidden_layer_sizes"] = tuple(decoded["hidden_layer_sizes"])
    cw = decoded.get("class_weight")
    if isinstance(cw, dict):
        decoded["class_weight"] = {k: v for k, v in cw["pairs"]}
    return decoded


def label_array(a: np.ndarray) -> np.ndarray:
    """Labels as an array that needs no pickle (object strings become unicode)."""
    a = np.asarray(a)
    if a.dtype.kind == "O":
        if all(isinstance(v, str) for v in a.tolist()):
            return a.astype(str)
        raise ValueError("classes_ of mixed or object types cannot be stored in a model file")
    return a


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's bit-generator state as JSON (integers stay exact:
    Python's JSON has arbitrary-precision ints; arrays become lists)."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, np.ndarray):
            return [int(v) for v in x.tolist()]
        if isinstance(x, (np.integer, int)) and not isinstance(x, bool):
            return int(x)
        if isinstance(x, (str, bool)) or x is None:
            return x
        raise ValueError(f"the RNG state holds a {type(x).__name__}; cannot store it")

    state = rng.bit_generator.state
    if state.get("bit_generator") not in _BIT_GENERATORS:
        raise ValueError(
            f"the network's RNG uses bit generator {state.get('bit_generator')!r}; model files "
            f"store one of {_BIT_GENERATORS}"
        )
    meta: dict[str, Any] = plain(state)
    return meta


def rng_from_state(meta: Any) -> np.random.Generator | None:
    """The generator saved by :func:`rng_state` (None: files without one)."""
    if meta is None:
        return None
    if not isinstance(meta, dict) or meta.get("bit_generator") not in _BIT_GENERATORS:
        raise ValueError(f"rng must name a bit generator in {_BIT_GENERATORS}; got {meta!r}")
    bit_gen = getattr(np.random, meta["bit_generator"])()
    word = np.uint32 if meta["bit_generator"] == "MT19937" else np.uint64

    def arrays(x: Any) -> Any:  # the lists were arrays of the generator's word type
        if isinstance(x, dict):
            return {k: arrays(v) for k, v in x.items()}
        return np.asarray(x, dtype=word) if isinstance(x, list) else x

    try:
        bit_gen.state = arrays(meta)
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise ValueError(f"rng state is invalid: {err}") from None
    return np.random.Generator(bit_gen)


def int_field(meta: dict[str, Any], key: str, minimum: int) -> int:
    v = meta[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"{key} must be an int >= {minimum}; got {v!r}")
    return v


def bool_field(meta: dict[str, Any], key: str) -> bool:
    v = meta[key]
    if not isinstance(v, bool):
        raise ValueError(f"{key} must be true or false; got {v!r}")
    return v


def number_field(meta: dict[str, Any], key: str) -> float | None:
    v = meta[key]
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
        raise ValueError(f"{key} must be a finite number or null; got {v!r}")
    return float(v)


def check_classes(classes: np.ndarray, multilabel: bool) -> np.ndarray:
    if classes.ndim != 1 or classes.dtype.kind not in "biufU":
        raise ValueError(f"classes is {classes.dtype} {classes.shape}; expected a 1-D array "
                         "of numbers or strings")
    if classes.dtype.kind == "f" and not np.isfinite(classes).all():
        raise ValueError("classes holds non-finite values")
    if multilabel and not np.array_equal(classes, np.arange(len(classes))):
        raise ValueError(f"multi-label classes must be 0..K-1; got {classes.tolist()}")
    if len(classes) > 1 and not bool(np.all(classes[1:] > classes[:-1])):
        raise ValueError(f"classes must be sorted and unique; got {classes.tolist()}")
    return np.array(classes)  # a writable array of its own

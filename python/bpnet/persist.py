"""Model files: :func:`save` and :func:`load` for networks and estimators.

Format (version 1): an uncompressed NumPy ``.npz`` archive, read with
``allow_pickle=False``, holding

- ``metadata``: a uint8 array with UTF-8 JSON ``{"body": {...}, "sha256": ...}``
  where ``sha256`` is the digest of the body serialized canonically
  (``sort_keys=True``, separators ``","`` and ``":"``). The body holds the
  format name and version, the kind of object, the network (layer sizes,
  activation, output, lambda, dtype, P), the estimator parameters and fitted
  attributes (classes, feature counts), a training summary, and for every
  other array its dtype, shape and SHA-256.
- ``theta``: the flat parameters (P,) in the network's dtype, plus optional
  arrays (``classes``, ``loss_curve``, ...), each listed in the metadata.

Writes are atomic: a temporary file in the destination directory, flushed and
fsynced, then ``os.replace``. Loading checks the archive, the metadata digest,
every array's dtype, shape and digest, and the consistency of the network;
any failure raises :class:`ModelFileError` naming the file and the problem.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from typing import Any

import numpy as np

from . import functional as F
from ._about import DISTRIBUTION, __version__
from .network import Network
from .optimize import FitResult

__all__ = ["FORMAT_VERSION", "ModelFileError", "load", "read_metadata", "save"]

FORMAT_NAME = "bpnet-model"
FORMAT_VERSION = 1
_ESTIMATORS = ("BPNetClassifier", "BPNetRegressor")
_KINDS = ("Network", *_ESTIMATORS)
_DTYPES = {"float64": np.float64, "float32": np.float32}


class ModelFileError(ValueError):
    """A model file is missing, truncated, corrupted, tampered with or not a bpnet model."""


# -- helpers -----------------------------------------------------------------
def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _scalar(x: Any) -> Any:
    """A JSON scalar from a Python or NumPy scalar."""
    if isinstance(x, np.generic):
        x = x.item()
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return _finite_or_none(x)
    raise TypeError(type(x).__name__)


def _encode_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name == "client":
            out[name] = None  # a live cluster connection is not part of a model
        elif name == "dtype":
            out[name] = None if value is None else np.dtype(value).name
        elif name == "random_state":
            out[name] = value if value is None or isinstance(value, int) else None
        elif name == "class_weight" and isinstance(value, dict):
            out[name] = {"pairs": [[_scalar(k), _scalar(v)] for k, v in value.items()]}
        elif isinstance(value, (tuple, list)):
            out[name] = [_scalar(v) for v in value]
        else:
            try:
                out[name] = _scalar(value)
            except TypeError:
                raise ValueError(
                    f"parameter {name}={value!r} cannot be stored in a model file "
                    "(expected a number, string, bool, None or a sequence of them)"
                ) from None
    return out


def _decode_params(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    if isinstance(out.get("hidden_layer_sizes"), list):
        out["hidden_layer_sizes"] = tuple(out["hidden_layer_sizes"])
    cw = out.get("class_weight")
    if isinstance(cw, dict):
        out["class_weight"] = {k: v for k, v in cw["pairs"]}
    return out


def _label_array(a: np.ndarray) -> np.ndarray:
    """Labels as an array that needs no pickle (object strings become unicode)."""
    a = np.asarray(a)
    if a.dtype.kind == "O":
        if all(isinstance(v, str) for v in a.tolist()):
            return a.astype(str)
        raise ValueError("classes_ of mixed or object types cannot be stored in a model file")
    return a


def _network_meta(net: Network) -> dict[str, Any]:
    return {
        "layer_sizes": [int(s) for s in net.layer_sizes],
        "activation": net.activation,
        "output": net.output,
        "lam": float(net.lam),
        "dtype": net.dtype.name,
        "n_params": int(net.n_params),
        "rng": _rng_state_meta(net.rng),
    }


# -- the shuffling RNG: its exact state, so a loaded model resumes bitwise ----
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _rng_state_meta(rng: np.random.Generator) -> dict[str, Any]:
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


def _rng_from_meta(meta: Any) -> np.random.Generator | None:
    """The generator saved by :func:`_rng_state_meta` (None: files without one)."""
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


def _training_meta(net: Network) -> dict[str, Any] | None:
    res = net.result
    if res is None:
        return None
    return {
        "n_iter": int(res.n_iter),
        "n_evals": int(res.n_evals),
        "stop_reason": str(res.stop_reason),
        "final_loss": _finite_or_none(res.loss_history[-1]) if res.loss_history else None,
    }


# -- save ----------------------------------------------------------------------
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
        one, never a partial write.

    Returns
    -------
    str
        The path written.
    """
    from ._pipeline import split_pipeline  # scalers + an estimator: stored in one file

    obj, preprocessing, arrays = split_pipeline(obj)
    kind = type(obj).__name__
    body: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    body["bpnet_version"] = __version__
    body["distribution"] = DISTRIBUTION  # the PyPI name: pip install bpnet-mlp
    if isinstance(obj, Network):
        net = obj
        body["estimator"] = None
        arrays["loss_history"] = np.asarray(net.loss_history, dtype=np.float64)
    elif kind in _ESTIMATORS and hasattr(obj, "get_params"):
        fitted = getattr(obj, "network_", None)
        if fitted is None:
            raise ValueError(f"obj is an unfitted {kind}; fit it before saving")
        net = fitted
        est: dict[str, Any] = {
            "params": _encode_params(obj.get_params(deep=False)),
            "n_features_in": int(obj.n_features_in_),
            "n_outputs": int(obj.n_outputs_),
            "n_iter": int(obj.n_iter_),
            "loss": _finite_or_none(getattr(obj, "loss_", None)),
            "best_loss": _finite_or_none(getattr(obj, "best_loss_", None)),
            "best_validation_score": _finite_or_none(obj.best_validation_score_),
            "stop_reason": str(getattr(obj, "stop_reason_", "")),
            "best_iteration": getattr(obj, "best_iteration_", None),
            "optimizer_step": int(obj._optimizer_state.get("step", 0)),
            "optimizer_lr": _finite_or_none(obj._optimizer_state.get("lr")),
            "optimizer_t": int(obj._optimizer_state.get("t", 0)),
            "t": int(getattr(obj, "t_", 0)),
        }
        if kind == "BPNetClassifier":
            est["multilabel"] = bool(obj._multilabel)
            arrays["classes"] = _label_array(obj.classes_)
        else:
            est["y_1d"] = bool(obj._y_1d)
        if hasattr(obj, "feature_names_in_"):
            arrays["feature_names_in"] = _label_array(obj.feature_names_in_)
        for name in ("loss_curve", "validation_scores", "validation_loss_curve"):
            arrays[name] = np.asarray(getattr(obj, name + "_"), dtype=np.float64)
        if obj._optimizer_state:
            arrays["optimizer_m1"] = obj._optimizer_state["m1"]
            arrays["optimizer_v"] = obj._optimizer_state["v"]
        body["estimator"] = est
    else:
        raise TypeError(
            f"obj must be a bpnet.Network, BPNetClassifier or BPNetRegressor; got {kind}"
        )
    body["network"] = _network_meta(net)
    body["training"] = _training_meta(net)
    if preprocessing is not None:
        body["preprocessing"] = preprocessing
    arrays["theta"] = np.ascontiguousarray(net.theta)
    body["arrays"] = {
        name: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _digest(a)}
        for name, a in arrays.items()
    }
    meta = json.dumps({"body": body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()})
    arrays["metadata"] = np.frombuffer(meta.encode(), dtype=np.uint8)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                   dir=directory)
    except OSError as err:  # name the destination, not the temporary file
        raise type(err)(err.errno, err.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # NumPy's stub types **kwds badly
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# -- load ----------------------------------------------------------------------
def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a model file: (metadata body, arrays)."""
    path = os.fspath(path)

    def fail(msg: str) -> ModelFileError:
        return ModelFileError(f"{path}: {msg}")

    if not os.path.exists(path):
        raise fail("no such file")
    if os.path.isdir(path):
        raise fail("is a directory, not a model file")
    not_model = _not_an_archive(path)
    if not_model:
        raise fail(not_model)
    try:
        with open(path, "rb") as fh:  # we own the handle: closed even if np.load fails
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise fail("not a bpnet model file (a bare .npy array, not an .npz archive)")
            with npz:
                arrays = {name: npz[name] for name in npz.files}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            KeyError, NotImplementedError, RuntimeError, zlib.error, MemoryError) as err:
        # NotImplementedError: a damaged compression-method field; RuntimeError: a
        # damaged flag bit that makes the entry look encrypted; zlib.error: damaged
        # deflate data; MemoryError: a damaged .npy header claiming a huge shape
        raise fail(
            f"not a readable bpnet model file (truncated or corrupted?): {_explain(err)}"
        ) from None
    if "metadata" not in arrays:
        raise fail("not a bpnet model file: it has no 'metadata' entry")
    raw = arrays.pop("metadata")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise fail(f"metadata must be a 1-D uint8 array; got {raw.dtype} {raw.shape}")
    try:
        outer = json.loads(raw.tobytes().decode("utf-8"))
        body, digest = outer["body"], outer["sha256"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise fail(f"metadata is not valid bpnet JSON: {err}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT_NAME:
        raise fail(f"format is {body.get('format') if isinstance(body, dict) else None!r}; "
                   f"expected {FORMAT_NAME!r}")
    version = body.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail(f"format_version must be an int >= 1; got {version!r}")
    if version > FORMAT_VERSION:
        raise fail(
            f"format_version {version} was written by a newer bpnet; this bpnet reads "
            f"format_version <= {FORMAT_VERSION}"
        )
    try:
        actual = hashlib.sha256(_canonical(body)).hexdigest()
    except ValueError as err:
        raise fail(f"metadata holds a value JSON cannot represent: {err}") from None
    if actual != digest:
        raise fail("metadata checksum mismatch: the metadata was modified or corrupted")
    listed = body.get("arrays")
    if not isinstance(listed, dict) or set(listed) != set(arrays):
        raise fail(
            f"arrays {sorted(arrays)} do not match the metadata's list "
            f"{sorted(listed) if isinstance(listed, dict) else listed!r}"
        )
    for name, a in arrays.items():
        spec = listed[name]
        if a.dtype.str != spec.get("dtype") or list(a.shape) != spec.get("shape"):
            raise fail(
                f"array {name!r} is {a.dtype.str} {list(a.shape)}; the metadata says "
                f"{spec.get('dtype')} {spec.get('shape')}"
            )
        if _digest(a) != spec.get("sha256"):
            raise fail(f"array {name!r} checksum mismatch: the data was modified or corrupted")
    if body.get("kind") not in _KINDS:
        raise fail(f"kind must be one of {_KINDS}; got {body.get('kind')!r}")
    return body, arrays


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip entry, an empty zip


def _not_an_archive(path: str) -> str:
    """Why ``path`` cannot be a model file judging by its first bytes ("" if it
    may be one). Checked before NumPy sees it: NumPy calls any non-zip,
    non-.npy file "pickled data" and suggests ``allow_pickle``, which is
    wrong for a CSV or a text file and never the remedy for a model file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return ""  # reported by the reader below, with the OS's reason
    if head.startswith(_ZIP_MAGIC):
        return ""
    if head.startswith(b"\x93NUMPY"):
        return "not a bpnet model file (a bare .npy array, not an .npz archive)"
    if not head:
        return "not a readable bpnet model file (truncated or corrupted?): the file is empty"
    kind = "a pickle" if head[:1] == b"\x80" else "not a zip (.npz) archive"
    return f"not a readable bpnet model file: it is {kind} (it starts with {head[:8]!r})"


def _explain(err: BaseException) -> str:
    """NumPy's message, without advice that does not apply to model files."""
    msg = str(err)
    if "allow_pickle" in msg or "pickled" in msg:
        return "an entry holds Python objects, which bpnet model files never contain"
    return msg


def _build_network(path: str, body: dict[str, Any], arrays: dict[str, Any]) -> Network:
    meta = body.get("network")
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: metadata has no 'network' section")
    try:
        sizes = F.check_layer_sizes(meta["layer_sizes"])
        dtype_name = meta["dtype"]
        if dtype_name not in _DTYPES:
            raise ValueError(f"dtype must be one of {tuple(_DTYPES)}; got {dtype_name!r}")
        if meta["n_params"] != F.n_params(sizes):
            raise ValueError(
                f"n_params is {meta['n_params']}; layer_sizes {list(sizes)} give "
                f"{F.n_params(sizes)}"
            )
        theta = arrays.get("theta")
        if theta is None:
            raise ValueError("the file has no 'theta' array")
        if theta.dtype != np.dtype(_DTYPES[dtype_name]) or theta.shape != (F.n_params(sizes),):
            raise ValueError(
                f"theta is {theta.dtype} {theta.shape}; expected {dtype_name} "
                f"({F.n_params(sizes)},)"
            )
        # a fresh buffer of numpy's own dtype instance, C-contiguous and writable
        fresh = np.empty(theta.shape, dtype=_DTYPES[dtype_name])
        fresh[...] = theta
        net = Network(
            sizes, activation=meta["activation"], output=meta["output"], lam=meta["lam"],
            dtype=_DTYPES[dtype_name], theta=fresh, rng=_rng_from_meta(meta.get("rng")),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: invalid network description: {err}") from None
    training = body.get("training")
    if isinstance(training, dict):
        history = arrays.get("loss_history", arrays.get("loss_curve"))
        history = [] if history is None else history.tolist()
        net.loss_history = list(history)
        net.result = FitResult(
            theta=net.theta.copy(), loss_history=list(history),
            n_iter=int(training.get("n_iter", 0)), n_evals=int(training.get("n_evals", 0)),
            stop_reason=str(training.get("stop_reason", "")),
        )
    return net


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified metadata body of a model file (for ``bpnet info``).

    Raises
    ------
    ModelFileError
        If the file is missing, damaged or not a bpnet model.
    """
    body, _ = _read(path)
    return body


def load(path: str | os.PathLike[str]) -> Any:
    """Load a model file written by :func:`save`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Network, BPNetClassifier, BPNetRegressor or sklearn Pipeline
        The saved object; predictions are bitwise equal to the original's.

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, corrupted, tampered with, of a
        newer format version, or describes an inconsistent network.
    """
    path = os.fspath(path)
    body, arrays = _read(path)
    net = _build_network(path, body, arrays)
    if body["kind"] == "Network":
        return net
    from . import estimators

    est_meta = body.get("estimator")
    try:
        if not isinstance(est_meta, dict):
            raise ValueError("metadata has no 'estimator' section")
        cls = getattr(estimators, body["kind"])
        est = cls(**_decode_params(est_meta["params"]))
        est._validate_params()
        n_in, n_out = int(est_meta["n_features_in"]), int(est_meta["n_outputs"])
        if net.layer_sizes[0] != n_in or net.layer_sizes[-1] != n_out:
            raise ValueError(
                f"layer_sizes {list(net.layer_sizes)} do not match n_features_in={n_in} "
                f"and n_outputs={n_out}"
            )
        if net.activation != est.activation:
            raise ValueError(
                f"network activation {net.activation!r} differs from the estimator's "
                f"{est.activation!r}"
            )
        est.network_ = net
        est.n_features_in_ = n_in
        est.n_outputs_ = n_out
        if "feature_names_in" in arrays:
            est.feature_names_in_ = arrays["feature_names_in"].astype(object)
        if cls.__name__ == "BPNetClassifier":
            est._multilabel = bool(est_meta["multilabel"])
            est._output = "sigmoid" if est._multilabel else "softmax"
            est.classes_ = arrays["classes"]
            if len(est.classes_) != n_out:
                raise ValueError(f"{len(est.classes_)} classes for {n_out} outputs")
        else:
            est._y_1d = bool(est_meta["y_1d"])
        if net.output != est._output:
            raise ValueError(f"output {net.output!r}; expected {est._output!r}")
        est.n_iter_ = int(est_meta["n_iter"])
        est.loss_ = est_meta["loss"]
        est.best_loss_ = np.inf if est_meta["best_loss"] is None else est_meta["best_loss"]
        est.best_validation_score_ = est_meta["best_validation_score"]
        est.stop_reason_ = str(est_meta["stop_reason"])
        best_it = est_meta.get("best_iteration")  # absent in older files
        if best_it is not None and not (isinstance(best_it, int) and 1 <= best_it <= est.n_iter_):
            raise ValueError(f"best_iteration must be an int in 1..n_iter; got {best_it!r}")
        est.best_iteration_ = best_it
        est.t_ = int(est_meta.get("t", 0))
        for name in ("loss_curve", "validation_scores", "validation_loss_curve"):
            setattr(est, name + "_", arrays[name].tolist())
        est._optimizer_state = {}
        if "optimizer_m1" in arrays:
            m1 = np.empty(net.theta.shape, dtype=net.dtype)
            v = np.empty(net.theta.shape, dtype=net.dtype)
            m1[...], v[...] = arrays["optimizer_m1"], arrays["optimizer_v"]
            for name, a in (("optimizer_m1", m1), ("optimizer_v", v)):
                if not np.isfinite(a).all():
                    raise ValueError(f"{name} holds non-finite values")
            est._optimizer_state = {"m1": m1, "v": v, "step": int(est_meta["optimizer_step"])}
            lr = est_meta.get("optimizer_lr")  # absent in older files: the initial rate
            if lr is not None:
                if not (isinstance(lr, (int, float)) and lr > 0):
                    raise ValueError(f"optimizer_lr must be a number > 0; got {lr!r}")
                est._optimizer_state["lr"] = float(lr)
            est._optimizer_state["t"] = int(est_meta.get("optimizer_t", 0))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{path}: invalid estimator description: {err}") from None
    return _load_pipeline(path, est, body, arrays)


def _load_pipeline(path: str, est: Any, body: dict[str, Any], arrays: dict[str, Any]) -> Any:
    """The saved Pipeline (scalers + ``est``) if the file has one, else ``est``."""
    from ._pipeline import attach_pipeline

    try:
        return attach_pipeline(est, body.get("preprocessing"), arrays)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{path}: invalid preprocessing description: {err}") from None

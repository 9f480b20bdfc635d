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

Saving validates the whole record through load's checks first, writes a
temporary file in the destination directory (flushed and fsynced), reads it
back through load's checks, and only then renames it over the destination.
Only regular files (or new names) are replaced; symlinks are followed; the
replaced file's permission bits are kept; temporaries left by a killed
writer are removed by the next save to the same name.

Loading opens regular files only, checks the zip directory and every .npy
header against the metadata before reading any data (memory stays bounded by
the described model's size), then the metadata digest, every array's dtype,
shape and digest, and the consistency of the network; any failure raises
:class:`ModelFileError` naming the file and the problem. The digests detect
damage, not tampering: they are not signatures.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import secrets
import socket
import stat
import struct
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
    if a.flags.c_contiguous and a.size:
        try:
            return hashlib.sha256(memoryview(a).cast("B")).hexdigest()  # type: ignore[arg-type]
        except (TypeError, ValueError):  # a dtype without a buffer format
            pass
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
        one, never a partial write. A symlink is followed (its target is
        replaced); the replaced file's permission bits are kept.

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
        directory) or is read-only; it is left untouched.
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
    # 1. the whole record passes load's checks before anything is written
    try:
        _from_record("<record>", body, arrays)
    except ModelFileError as err:
        raise ValueError(
            f"{kind} cannot be saved: the model file would not load back "
            f"({str(err).removeprefix('<record>: ')}); nothing was written"
        ) from None
    meta = json.dumps({"body": body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()})
    arrays["metadata"] = np.frombuffer(meta.encode(), dtype=np.uint8)

    # 2. the destination: a regular file or a new name; a symlink is followed
    path = os.fspath(path)
    target = os.path.realpath(path)
    mode = _destination_mode(path, target)
    directory = os.path.dirname(target)
    _remove_stale_temporaries(directory, os.path.basename(target))

    # 3. write a temporary file beside it, read it back through load's
    # checks, and only then replace the destination
    tmp = os.path.join(directory, _temp_name(os.path.basename(target)))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o600)
    except OSError as err:  # name the destination, not the temporary file
        raise type(err)(err.errno, err.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # NumPy's stub types **kwds badly
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        try:
            _from_record(tmp, *_read(tmp))
        except ModelFileError as err:
            raise OSError(
                f"{path}: the written model file did not verify ({err}); the destination "
                "was left unchanged"
            ) from None
        os.replace(tmp, target)
        _fsync_directory(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


_TEMP_SUFFIX = ".bpnet-tmp"


def _temp_name(base: str) -> str:
    """``.<base>.<host>-<pid>.<random>.bpnet-tmp``: the writer is known by name."""
    return f".{base}.{_host()}-{os.getpid()}.{secrets.token_hex(6)}{_TEMP_SUFFIX}"


def _host() -> str:
    return "".join(c for c in socket.gethostname() if c.isalnum() or c == "-")[:32] or "host"


def _remove_stale_temporaries(directory: str, base: str) -> None:
    """Delete temporary files of earlier saves to ``base`` whose writer (a process
    on this host) no longer runs: a save killed with ``kill -9`` leaves its
    temporary file behind, and the next save to that name removes it.

    (O_TMPFILE + linkat would leave no name at all, but linking the file in
    through /proc/self/fd failed with EXDEV on the machines tested; cleaning
    up by name works everywhere.)
    """
    prefix = f".{base}.{_host()}-"
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_TEMP_SUFFIX)):
            continue
        pid_text = name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's), or cannot tell: keep its file
    return True


def _destination_mode(path: str, target: str) -> int:
    """The permission bits for the new file: the existing file's, or 0666 & ~umask.

    Refuses a destination that is not a regular file (a FIFO, a device such
    as /dev/null, a directory, a socket) and a read-only one.
    """
    try:
        st = os.stat(target)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory; give a file name", path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(
            errno.EINVAL,
            f"is a {_file_kind(st.st_mode)}, not a regular file; refusing to replace it "
            "with a model file",
            path,
        )
    if not st.st_mode & 0o222 or not os.access(target, os.W_OK):
        raise PermissionError(
            errno.EACCES, "is read-only; refusing to replace it (make it writable first)", path
        )
    return stat.S_IMODE(st.st_mode)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (a crash right after save keeps the new file)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- load ----------------------------------------------------------------------
# Bounds checked in the zip directory before anything is decompressed.
_MAX_MEMBERS = 32  # a model file has at most 10 entries
_MAX_METADATA_BYTES = 16 << 20  # the JSON of a model is a few kB
_NPY_HEADER_MAX = 1 << 16  # the .npy header is at most 64 kB (version 2 allows more: refused)


def _fail(path: str, msg: str) -> ModelFileError:
    return ModelFileError(f"{path}: {msg}")


def _open_regular(path: str) -> Any:
    """Open ``path`` for reading only if it is a regular file (never block on a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a model file") from None
    except OSError as err:
        raise _fail(path, f"cannot be opened: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _fail(path, "is a directory, not a model file")
        if not stat.S_ISREG(st.st_mode):
            raise _fail(path, f"is a {_file_kind(st.st_mode)}, not a regular file; "
                        "model files are read from regular files only")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symbolic link")):
        if test(mode):
            return name
    return "special file"


def _npy_header(f: Any, name: str, path: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read a member's .npy header (shape, fortran_order, dtype); never its data."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:  # bad CRC, deflate data
        raise _fail(path, f"not a readable bpnet model file (truncated or corrupted?): "
                    f"entry {name!r}: {err}") from None
    except (ValueError, SyntaxError, TypeError, KeyError, RecursionError, MemoryError) as err:
        raise _fail(path, f"entry {name!r} is not a valid .npy array: {err}") from None
    if dtype.hasobject:
        raise _fail(path, f"entry {name!r} holds Python objects ({dtype}); model files never do")
    return tuple(int(n) for n in shape), bool(fortran), dtype


def _npy_data(f: Any, name: str, path: str, shape: tuple[int, ...], fortran: bool,
              dtype: np.dtype,
              limit: int) -> np.ndarray:
    """Read exactly the data the header promised (at most ``limit`` bytes), no more."""
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    if nbytes > limit:
        raise _fail(path, f"entry {name!r} claims {nbytes} bytes of data; its zip entry holds "
                    f"at most {limit}")
    buf = bytearray(nbytes)
    try:
        got = f.readinto(buf) if nbytes else 0
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, RuntimeError, ValueError) as err:
        raise _fail(path, f"not a readable bpnet model file (truncated or corrupted?): "
                    f"entry {name!r}: {err}") from None
    if got != nbytes:
        raise _fail(path, f"entry {name!r} is truncated: {got} of {nbytes} bytes")
    a = np.frombuffer(buf, dtype=dtype)
    return a.reshape(shape, order="F" if fortran else "C")


def _parse_metadata(raw: np.ndarray, path: str) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _fail(path, f"metadata must be a 1-D uint8 array; got {raw.dtype} {raw.shape}")
    try:
        outer = json.loads(raw.tobytes().decode("utf-8"))
        body, digest = outer["body"], outer["sha256"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise _fail(path, f"metadata is not valid bpnet JSON: {err}") from None
    except RecursionError:
        raise _fail(path, "metadata is not valid bpnet JSON: nested too deeply") from None
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        raise _fail(path, f"metadata is not valid bpnet JSON: {err}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT_NAME:
        raise _fail(path, f"format is {body.get('format') if isinstance(body, dict) else None!r}; "
                    f"expected {FORMAT_NAME!r}")
    version = body.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(path, f"format_version must be an int >= 1; got {version!r}")
    if version > FORMAT_VERSION:
        raise _fail(
            path,
            f"format_version {version} was written by a newer bpnet; this bpnet reads "
            f"format_version <= {FORMAT_VERSION}",
        )
    try:
        actual = hashlib.sha256(_canonical(body)).hexdigest()
    except (ValueError, TypeError, RecursionError) as err:
        raise _fail(path, f"metadata holds a value JSON cannot represent: {err}") from None
    if actual != digest:
        raise _fail(path, "metadata checksum mismatch: the metadata was modified or corrupted")
    return body


def _array_spec(listed: dict[str, Any], name: str, path: str) -> tuple[str, list[int], str]:
    spec = listed.get(name)
    if not isinstance(spec, dict):
        raise _fail(path, f"the metadata's entry for array {name!r} is not an object: {spec!r}")
    dtype, shape, digest = spec.get("dtype"), spec.get("shape"), spec.get("sha256")
    if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool)
                                            and n >= 0 for n in shape)):
        raise _fail(path, f"the metadata gives array {name!r} the shape {shape!r}; expected a "
                    "list of ints >= 0")
    if not isinstance(dtype, str) or not isinstance(digest, str):
        raise _fail(path, f"the metadata's entry for array {name!r} lacks a dtype or sha256")
    return dtype, shape, digest


def _size_budget(body: dict[str, Any]) -> int:
    """Bytes the arrays of a model of this network may take: theta and the two
    optimizer moments (3 P float64 at most), plus 64 MiB for labels, feature
    names and curves. Checked against the zip directory before reading."""
    slack = 64 << 20
    meta = body.get("network")
    try:
        P = F.n_params(meta["layer_sizes"])  # type: ignore[index]
    except Exception:  # an invalid description is reported later, by the network checks
        return slack
    return slack + 3 * 8 * P + 10 * _NPY_HEADER_MAX


def _read_file(fh: Any, path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Verify and read an open model file: (metadata body, arrays).

    The zip directory and every .npy header are checked against the metadata
    before any array data is read, so a damaged or hostile file costs at
    most about its own size in memory and time (a member may not decompress
    to more than the metadata says it holds).
    """
    try:
        size = os.fstat(fh.fileno()).st_size
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            KeyError, NotImplementedError, RuntimeError, zlib.error, MemoryError,
            struct.error, IndexError) as err:
        fh.seek(0)
        if fh.read(6) == b"\x93NUMPY":
            raise _fail(path, "not a bpnet model file (a bare .npy array, not an .npz "
                        "archive)") from None
        not_model = _not_an_archive(path)  # a CSV, a pickle, an empty file: say which
        if not_model:
            raise _fail(path, not_model) from None
        raise _fail(path, f"not a readable bpnet model file (truncated or corrupted?): "
                    f"{err}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise _fail(path, f"the archive has {len(infos)} entries; a model file has at "
                        f"most {_MAX_MEMBERS}")
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                raise _fail(path, f"entry {name!r} is not a .npy array; model files hold "
                            "only .npy entries")
            if name[:-4] in members:
                raise _fail(path, f"entry {name!r} appears twice in the archive")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _fail(path, f"entry {name!r} uses zip compression method "
                            f"{info.compress_type}; expected stored or deflated")
            if info.compress_size > size or info.header_offset > size:
                raise _fail(path, f"not a readable bpnet model file (truncated or corrupted?): "
                            f"entry {name!r} extends past the end of the file")
            if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
                raise _fail(path, f"not a readable bpnet model file (truncated or corrupted?): "
                            f"stored entry {name!r} declares {info.file_size} bytes but "
                            f"holds {info.compress_size}")
            members[name[:-4]] = info
        if "metadata" not in members:
            raise _fail(path, "not a bpnet model file: it has no 'metadata' entry")

        def open_member(name: str) -> Any:
            try:
                return zf.open(members[name])
            except (zipfile.BadZipFile, OSError, ValueError, KeyError, NotImplementedError,
                    RuntimeError, zlib.error, EOFError, struct.error) as err:
                # NotImplementedError: a damaged compression-method field; RuntimeError: a
                # damaged flag bit that makes the entry look encrypted
                raise _fail(path, f"not a readable bpnet model file (truncated or corrupted?): "
                            f"{err}") from None

        def read_member(name: str, check: Any = None) -> np.ndarray:
            info = members[name]
            with open_member(name) as f:
                shape, fortran, dtype = _npy_header(f, name, path)
                if check is not None:
                    check(shape, dtype)
                a = _npy_data(f, name, path, shape, fortran, dtype,
                              max(0, info.file_size - f.tell()))
                try:
                    if f.read(1):
                        raise _fail(path, f"entry {name!r} has data after its array")
                except (zipfile.BadZipFile, OSError, zlib.error, EOFError) as err:
                    raise _fail(path, f"not a readable bpnet model file (truncated or "
                                f"corrupted?): {err}") from None
            return a

        meta_info = members["metadata"]
        if meta_info.file_size > _MAX_METADATA_BYTES:
            raise _fail(path, f"the metadata entry declares {meta_info.file_size} bytes; "
                        f"bpnet metadata is at most {_MAX_METADATA_BYTES}")
        body = _parse_metadata(read_member("metadata"), path)
        listed = body.get("arrays")
        names = set(members) - {"metadata"}
        if not isinstance(listed, dict) or set(listed) != names:
            raise _fail(
                path,
                f"arrays {sorted(names)} do not match the metadata's list "
                f"{sorted(listed) if isinstance(listed, dict) else listed!r}",
            )
        budget = _size_budget(body)
        declared = sum(members[n].file_size for n in names)
        if declared > budget:
            raise _fail(path, f"the archive's arrays declare {declared} bytes; a model of this "
                        f"network holds at most {budget}")
        arrays: dict[str, np.ndarray] = {}
        for name in sorted(names):
            want_dtype, want_shape, want_digest = _array_spec(listed, name, path)
            info = members[name]
            try:
                itemsize = np.dtype(want_dtype).itemsize
            except (TypeError, ValueError):
                raise _fail(path, f"the metadata gives array {name!r} the dtype "
                            f"{want_dtype!r}, which is not a NumPy dtype") from None
            count = 1
            for n in want_shape:
                count *= n
            if info.file_size > count * itemsize + _NPY_HEADER_MAX:
                raise _fail(path, f"entry {name!r} declares {info.file_size} bytes; the "
                            f"metadata's {want_dtype} {want_shape} needs {count * itemsize} "
                            "plus a header")

            def check(shape: Any, dtype: Any, name: str = name, want_dtype: Any = want_dtype,
                      want_shape: Any = want_shape) -> None:
                if dtype.str != want_dtype or list(shape) != want_shape:
                    raise _fail(
                        path,
                        f"array {name!r} is {dtype.str} {list(shape)}; the metadata says "
                        f"{want_dtype} {want_shape}",
                    )

            a = read_member(name, check)
            if _digest(a) != want_digest:
                raise _fail(path, f"array {name!r} checksum mismatch: the data was modified "
                            "or corrupted")
            arrays[name] = a
    if body.get("kind") not in _KINDS:
        raise _fail(path, f"kind must be one of {_KINDS}; got {body.get('kind')!r}")
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


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a model file: (metadata body, arrays)."""
    path = os.fspath(path)
    with _open_regular(path) as fh:
        try:
            return _read_file(fh, path)
        except ModelFileError:
            raise
        except RecursionError:
            raise _fail(path, "malformed model file: structure nested too deeply") from None
        except Exception as err:  # any other malformation: never a bare error type
            raise _fail(path, f"malformed model file ({type(err).__name__}: {err})") from None


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
    return _from_record(path, body, arrays)


def _from_record(path: str, body: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """The object a verified record describes, after its semantic checks."""
    try:
        return _construct(path, body, arrays)
    except ModelFileError:
        raise
    except RecursionError:
        raise ModelFileError(f"{path}: malformed model file: nested too deeply") from None
    except Exception as err:  # wrong JSON types anywhere: never a bare error type
        raise ModelFileError(
            f"{path}: malformed model file ({type(err).__name__}: {err})"
        ) from None


def _check_training(path: str, body: dict[str, Any]) -> None:
    training = body.get("training")
    if training is None:
        return
    if not isinstance(training, dict):
        raise ModelFileError(f"{path}: the 'training' section must be an object or null")
    for key in ("n_iter", "n_evals"):
        v = training.get(key, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ModelFileError(f"{path}: training.{key} must be an int >= 0; got {v!r}")
    if not isinstance(training.get("stop_reason", ""), str):
        raise ModelFileError(f"{path}: training.stop_reason must be a string")


def _construct(path: str, body: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    _check_training(path, body)
    net = _build_network(path, body, arrays)
    if body["kind"] == "Network":
        return net
    from . import estimators

    est_meta = body.get("estimator")
    try:
        if not isinstance(est_meta, dict) or not isinstance(est_meta.get("params"), dict):
            raise ValueError(f"the 'estimator' section must be an object with 'params'; "
                             f"got {type(est_meta).__name__}")
        cls = getattr(estimators, body["kind"])
        est = cls(**_decode_params(est_meta["params"]))
        est._validate_params()
        n_in, n_out = _count(est_meta, "n_features_in", 1), _count(est_meta, "n_outputs", 1)
        if net.layer_sizes[0] != n_in or net.layer_sizes[-1] != n_out:
            raise ValueError(
                f"layer_sizes {list(net.layer_sizes)} do not match n_features_in={n_in} "
                f"and n_outputs={n_out}"
            )
        if tuple(net.layer_sizes[1:-1]) != est._hidden_sizes():
            raise ValueError(
                f"hidden_layer_sizes={list(est._hidden_sizes())} differs from the network's "
                f"hidden layers {list(net.layer_sizes[1:-1])}"
            )
        if net.activation != est.activation:
            raise ValueError(
                f"network activation {net.activation!r} differs from the estimator's "
                f"{est.activation!r}"
            )
        if est._work_dtype() != net.dtype:
            raise ValueError(
                f"dtype={est.dtype!r} differs from the network's dtype {net.dtype.name}"
            )
        est.network_ = net
        est.n_features_in_ = n_in
        est.n_outputs_ = n_out
        if "feature_names_in" in arrays:
            names = arrays["feature_names_in"]
            if names.dtype.kind != "U" or names.shape != (n_in,):
                raise ValueError(
                    f"feature_names_in is {names.dtype} {names.shape}; expected {n_in} strings"
                )
            est.feature_names_in_ = names.astype(object)
        if cls.__name__ == "BPNetClassifier":
            est._multilabel = _flag(est_meta, "multilabel")
            est._output = "sigmoid" if est._multilabel else "softmax"
            est.classes_ = _check_classes(arrays["classes"], est._multilabel)
            if len(est.classes_) != n_out:
                raise ValueError(f"{len(est.classes_)} classes for {n_out} outputs")
        else:
            est._y_1d = _flag(est_meta, "y_1d")
            if est._y_1d and n_out != 1:
                raise ValueError(f"y_1d is true but there are {n_out} outputs")
        if net.output != est._output:
            raise ValueError(f"output {net.output!r}; expected {est._output!r}")
        est.n_iter_ = _count(est_meta, "n_iter", 0)
        est.loss_ = _number_or_none(est_meta, "loss")
        best_loss = _number_or_none(est_meta, "best_loss")
        est.best_loss_ = np.inf if best_loss is None else best_loss
        est.best_validation_score_ = _number_or_none(est_meta, "best_validation_score")
        if not isinstance(est_meta["stop_reason"], str):
            raise ValueError(f"stop_reason must be a string; got {est_meta['stop_reason']!r}")
        est.stop_reason_ = est_meta["stop_reason"]
        best_it = est_meta.get("best_iteration")  # absent in older files
        if best_it is not None:
            best_it = _count(est_meta, "best_iteration", 1)
            if best_it > est.n_iter_:
                raise ValueError(f"best_iteration {best_it} exceeds n_iter {est.n_iter_}")
        est.best_iteration_ = best_it
        est.t_ = _count(est_meta, "t", 0) if "t" in est_meta else 0
        for name in ("loss_curve", "validation_scores", "validation_loss_curve"):
            a = arrays[name]
            if a.dtype != np.float64 or a.ndim != 1:
                raise ValueError(f"{name} is {a.dtype} {a.shape}; expected a float64 vector")
            setattr(est, name + "_", a.tolist())
        if len(est.validation_scores_) != len(est.validation_loss_curve_):
            raise ValueError(
                f"{len(est.validation_scores_)} validation scores but "
                f"{len(est.validation_loss_curve_)} validation losses"
            )
        est._optimizer_state = {}
        step = _count(est_meta, "optimizer_step", 0)
        if ("optimizer_m1" in arrays) != ("optimizer_v" in arrays):
            raise ValueError("optimizer_m1 and optimizer_v must be stored together")
        if "optimizer_m1" in arrays:
            if step < 1:
                raise ValueError(f"optimizer_step is {step} with stored moments; expected >= 1")
            state: dict[str, Any] = {"step": step}
            for name in ("optimizer_m1", "optimizer_v"):
                a = arrays[name]
                if a.shape != net.theta.shape or a.dtype != net.dtype:
                    raise ValueError(
                        f"{name} is {a.dtype} {a.shape}; expected {net.dtype} {net.theta.shape}"
                    )
                if not np.isfinite(a).all():
                    raise ValueError(f"{name} holds non-finite values")
                fresh = np.empty(net.theta.shape, dtype=net.dtype)
                fresh[...] = a
                state[name[len("optimizer_"):]] = fresh
            est._optimizer_state = state
            lr = est_meta.get("optimizer_lr")  # absent in older files: the initial rate
            if lr is not None:
                lr = _number_or_none(est_meta, "optimizer_lr")
                if not (lr is not None and lr > 0):
                    raise ValueError(f"optimizer_lr must be a number > 0; got {lr!r}")
                est._optimizer_state["lr"] = lr
            if "optimizer_t" in est_meta:
                est._optimizer_state["t"] = _count(est_meta, "optimizer_t", 0)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
        raise ModelFileError(f"{path}: invalid estimator description: {err}") from None
    return _load_pipeline(path, est, body, arrays)


def _load_pipeline(path: str, est: Any, body: dict[str, Any], arrays: dict[str, Any]) -> Any:
    """The saved Pipeline (scalers + ``est``) if the file has one, else ``est``."""
    from ._pipeline import attach_pipeline

    try:
        return attach_pipeline(est, body.get("preprocessing"), arrays)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{path}: invalid preprocessing description: {err}") from None


def _count(meta: dict[str, Any], key: str, minimum: int) -> int:
    v = meta[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"{key} must be an int >= {minimum}; got {v!r}")
    return v


def _flag(meta: dict[str, Any], key: str) -> bool:
    v = meta[key]
    if not isinstance(v, bool):
        raise ValueError(f"{key} must be true or false; got {v!r}")
    return v


def _number_or_none(meta: dict[str, Any], key: str) -> float | None:
    v = meta[key]
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
        raise ValueError(f"{key} must be a finite number or null; got {v!r}")
    return float(v)


def _check_classes(classes: np.ndarray, multilabel: bool) -> np.ndarray:
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

"""The model-file format: an archive with a signed-by-digest JSON body and arrays.

This module knows the file, not the objects in it: it imports no bpnet
class. Each class writes its own *record* — a JSON-able body and a dict of
arrays (``Network._record``, the estimators' ``_record``) — and rebuilds
itself from one (``_from_record``); :func:`write` and :func:`read` move a
record to and from disk, and the load dispatcher (:mod:`bpnet.persist`)
picks the class by the record's ``kind``.

Format (version 1): an uncompressed NumPy ``.npz`` archive, read with
``allow_pickle=False``, holding

- ``metadata``: a uint8 array with UTF-8 JSON ``{"body": {...}, "sha256": ...}``
  where ``sha256`` is the digest of the body serialized canonically
  (:func:`canonical_json`: ``sort_keys=True``, separators ``","`` and ``":"``).
  The metadata is exactly ``json.dumps`` of that document (Python's
  defaults); a reader refuses any other spelling (extra spaces, escapes,
  number forms) and any key given twice in one object, so the digest
  covers every byte parsed and two JSON readers cannot see different models.
  The body holds the format name and version, the kind of object, the record
  (network: layer sizes, activation, output, lambda, dtype, P, RNG state;
  estimator parameters and fitted attributes; a training summary), and for
  every array its dtype, shape and SHA-256.
- ``theta``: the flat parameters (P,) in the network's dtype, plus optional
  arrays (``classes``, ``loss_curve``, ...), each listed in the metadata.

Writing validates the whole record through the caller's ``verify`` (load's
checks) first, writes a temporary file in the destination directory (flushed
and fsynced), reads it back through the same checks, and only then renames
it over the destination. Only regular files (or new names) are replaced;
a symlink is followed only when it is owned by the caller or by root (see
:func:`resolve_destination`); the replaced file's permission bits are kept;
temporaries left by a killed writer are removed by the next write to the
same name.

Reading opens regular files only, refuses an archive whose entries declare
more than ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`, 256 MiB) before
decompressing anything, checks the zip directory and every .npy header
against the metadata before reading any data (memory stays bounded by
``max_bytes``, not by the file's size: a small file of zeros may describe a
valid but huge network), then the metadata digest and every array's
dtype, shape and digest; any failure raises :class:`ModelFileError` naming
the file and the problem. The digests detect damage, not tampering: they are
not signatures.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import functional as F
from ._about import DISTRIBUTION, __version__

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "KINDS",
    "ModelFileError",
    "Record",
    "RecordError",
    "canonical_json",
    "check_max_bytes",
    "destination_mode",
    "fsync_directory",
    "model_errors",
    "read",
    "resolve_destination",
    "write",
]

FORMAT_NAME = "bpnet-model"
FORMAT_VERSION = 1
KINDS = ("Network", "BPNetClassifier", "BPNetRegressor")  # what a model file may hold

# What a load accepts by default: the uncompressed size of all of a file's
# entries. 256 MiB hold 33 million float64 parameters (8 million with the
# optimizer state of an Adam fit), far above the networks a CPU MLP trainer
# fits, while a load stays well under 1 GB of memory; a larger model is loaded
# with load(path, max_bytes=...). It bounds what a hostile or mistaken file
# costs: a 0.7 MB file of compressed zeros can describe a valid [1000, 100000,
# 1] network of 800 MB.
DEFAULT_MAX_BYTES = 1 << 28

# A record: the JSON-able body of one object (its "kind" and sections) and its arrays.
Record = tuple[dict[str, Any], dict[str, np.ndarray]]


class ModelFileError(ValueError):
    """A model file is missing, truncated, corrupted, tampered with or not a bpnet model."""


class RecordError(ValueError):
    """A record describes an invalid object (raised by a class's ``_from_record``
    with a message that names the section and field at fault); a model file
    reports it after the file's name."""


@contextlib.contextmanager
def model_errors(path: str) -> Iterator[None]:
    """Turn any failure of rebuilding an object from a record into a
    :class:`ModelFileError` that names ``path``: a bad file never raises a bare
    error type."""
    try:
        yield
    except ModelFileError:
        raise
    except RecordError as err:
        raise ModelFileError(f"{path}: {err}") from None
    except RecursionError:
        raise ModelFileError(f"{path}: malformed model file: nested too deeply") from None
    except Exception as err:  # wrong JSON types anywhere
        raise ModelFileError(
            f"{path}: malformed model file ({type(err).__name__}: {err})"
        ) from None


# -- encoding ----------------------------------------------------------------
def canonical_json(body: dict[str, Any]) -> bytes:
    """The bytes the metadata digest is taken over."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _digest(a: np.ndarray) -> str:
    if a.flags.c_contiguous and a.size:
        try:
            return hashlib.sha256(memoryview(a).cast("B")).hexdigest()  # type: ignore[arg-type]
        except (TypeError, ValueError):  # a dtype without a buffer format
            pass
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# -- write ---------------------------------------------------------------------
def write(
    path: str | os.PathLike[str],
    record: Record,
    verify: Callable[[dict[str, Any], dict[str, np.ndarray]], object],
) -> str:
    """Write ``record`` to ``path`` atomically; ``verify(body, arrays)`` rebuilds
    the object (load's checks) before anything is written and again from the
    written file before it replaces the destination.

    Raises
    ------
    ValueError
        If the record would not load back; nothing is written.
    OSError
        If the destination is not a regular file (a FIFO, device, socket or
        directory) or is read-only; it is left untouched.
    """
    content, arrays = record
    kind = str(content.get("kind"))
    body: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bpnet_version": __version__,
        "distribution": DISTRIBUTION,  # the PyPI name: pip install bpnet-mlp
        **content,
    }
    arrays = dict(arrays)
    body["arrays"] = {
        name: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _digest(a)}
        for name, a in arrays.items()
    }
    # 1. the whole record passes load's checks before anything is written
    try:
        with model_errors("<record>"):
            verify(body, arrays)
    except ModelFileError as err:
        raise ValueError(
            f"{kind} cannot be saved: the model file would not load back "
            f"({str(err).removeprefix('<record>: ')}); nothing was written"
        ) from None
    meta = json.dumps({"body": body, "sha256": hashlib.sha256(canonical_json(body)).hexdigest()})
    arrays["metadata"] = np.frombuffer(meta.encode(), dtype=np.uint8)

    # 2. the destination: a regular file or a new name; a trusted symlink is followed
    path = os.fspath(path)
    target = resolve_destination(path)
    mode = destination_mode(path, target)
    directory = os.path.dirname(target)
    _remove_stale_temporaries(directory, os.path.basename(target))
    # 3. a temporary file beside it, read back through load's checks, then the rename
    _write_verified(path, target, arrays, mode, verify)
    return path


def _write_verified(
    path: str, target: str, arrays: dict[str, np.ndarray], mode: int,
    verify: Callable[[dict[str, Any], dict[str, np.ndarray]], object],
) -> None:
    directory = os.path.dirname(target)
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
            with model_errors(tmp):
                verify(*read(tmp, max_bytes=None))  # what was just written, any size
        except ModelFileError as err:
            raise OSError(
                f"{path}: the written model file did not verify ({err}); the destination "
                "was left unchanged"
            ) from None
        os.replace(tmp, target)
        fsync_directory(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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


_MAX_SYMLINKS = 40  # as the kernel's ELOOP limit


def resolve_destination(path: str | os.PathLike[str]) -> str:
    """The file a save to ``path`` replaces: ``path`` with every symbolic link
    on the way resolved, each one checked first.

    A save writes a temporary file and renames it over the destination, so
    bpnet resolves links itself, and the kernel's ``protected_symlinks``
    (which stops a process from following a link another user planted in a
    sticky world-writable directory such as /tmp) cannot help. bpnet's rule
    is therefore its own, and stricter: a link (the file name or any
    directory on the path) is followed only when it is owned by the caller
    (the effective uid) or by root. Any other link is refused with a
    PermissionError naming it and its owner: following it would let that
    user choose which of the caller's files the save replaces.

    Raises
    ------
    PermissionError
        For a link owned by another user.
    OSError
        ELOOP for more than 40 links on the way.
    """
    raw = os.fspath(path)
    pending = os.path.join(os.getcwd(), raw).split(os.sep)[::-1]  # components, next last
    resolved, hops, me = os.sep, 0, os.geteuid()
    while pending:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            resolved = os.path.dirname(resolved)
            continue
        candidate = os.path.join(resolved, name)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            st = None  # a new name (or a missing directory, reported by the write)
        if st is None or not stat.S_ISLNK(st.st_mode):
            resolved = candidate
            continue
        hops += 1
        if hops > _MAX_SYMLINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", raw)
        if st.st_uid not in (me, 0):
            raise PermissionError(
                errno.EPERM,
                f"{candidate} is a symbolic link owned by uid {st.st_uid}, not by you "
                f"(uid {me}) or root; refusing to follow it (a save follows only your own "
                "links: write to the file it points to by its real name)",
                raw,
            )
        link = os.readlink(candidate)
        if os.path.isabs(link):
            resolved = os.sep
        pending.extend(link.split(os.sep)[::-1])
    return resolved


def destination_mode(path: str, target: str) -> int:
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


def fsync_directory(directory: str) -> None:
    """Make a rename into ``directory`` durable (a crash right after a save or
    an atomic write keeps the new file), where the platform allows opening a
    directory."""
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


# -- read ----------------------------------------------------------------------
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
    data = raw.tobytes()
    try:
        outer = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys)
        body, digest = outer["body"], outer["sha256"]
    except _DuplicateKeyError as err:
        raise _fail(path, f"metadata is not valid bpnet JSON: {err}") from None
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
        actual = hashlib.sha256(canonical_json(body)).hexdigest()
    except (ValueError, TypeError, RecursionError) as err:
        raise _fail(path, f"metadata holds a value JSON cannot represent: {err}") from None
    if actual != digest:
        raise _fail(path, "metadata checksum mismatch: the metadata was modified or corrupted")
    if json.dumps(outer).encode() != data:  # the digest covers every byte parsed
        raise _fail(path, "metadata is not in the encoding bpnet writes (extra spaces, "
                    "escapes or number spellings): the metadata was modified")
    return body


class _DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's dict; a key given twice is an error (readers that keep
    the first and readers that keep the last would see different models)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


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
    """Bytes the arrays of a model of this network may take: theta, the last
    fit's parameters and two optimizer moments (4 P float64 at most), plus 64
    MiB for labels, feature names and curves. Checked against the zip
    directory before reading."""
    slack = 64 << 20
    meta = body.get("network")
    try:
        P = F.n_params(meta["layer_sizes"])  # type: ignore[index]
    except Exception:  # an invalid description is reported later, by the network checks
        return slack
    return slack + 4 * 8 * P + 10 * _NPY_HEADER_MAX


def _read_file(
    fh: Any, path: str, max_bytes: int | None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Verify and read an open model file: (metadata body, arrays).

    The entries' declared sizes are checked against ``max_bytes`` before
    anything is decompressed, and the zip directory and every .npy header
    against the metadata before any array data is read (a member may not
    decompress to more than the directory and the metadata say it holds),
    so a damaged or hostile file costs at most about ``max_bytes`` in memory.
    """
    size = os.fstat(fh.fileno()).st_size
    with _open_zip(fh, path) as zf:
        members = _check_directory(zf, path, size)
        _check_max_bytes(members, path, max_bytes)
        meta_info = members["metadata"]
        if meta_info.file_size > _MAX_METADATA_BYTES:
            raise _fail(path, f"the metadata entry declares {meta_info.file_size} bytes; "
                        f"bpnet metadata is at most {_MAX_METADATA_BYTES}")
        body = _parse_metadata(_read_member(zf, meta_info, path), path)
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
        arrays = {
            name: _read_listed_array(zf, members[name], listed, path) for name in sorted(names)
        }
    if body.get("kind") not in KINDS:
        raise _fail(path, f"kind must be one of {KINDS}; got {body.get('kind')!r}")
    return body, arrays


def _check_max_bytes(members: dict[str, zipfile.ZipInfo], path: str,
                     max_bytes: int | None) -> None:
    """ModelFileError if the entries declare more than ``max_bytes`` uncompressed
    (each is later read only up to its declared size)."""
    if max_bytes is None:
        return
    declared = sum(info.file_size for info in members.values())
    if declared > max_bytes:
        raise _fail(
            path, f"the model's arrays declare {declared} bytes ({declared / 2**20:.1f} MiB); "
            f"loading accepts at most max_bytes={max_bytes} ({max_bytes / 2**20:.0f} MiB). "
            "If you trust this file, load it with a larger limit: "
            f"bpnet.load(path, max_bytes={1 << max(declared - 1, 1).bit_length()})"
        )


def _open_zip(fh: Any, path: str) -> zipfile.ZipFile:
    """The archive in ``fh``; a file that is not one says what it is instead."""
    try:
        return zipfile.ZipFile(fh)
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


def _check_directory(zf: zipfile.ZipFile, path: str, size: int) -> dict[str, zipfile.ZipInfo]:
    """The archive's entries by array name, after checking the zip directory
    against the file: only .npy entries, each once, stored or deflated, inside
    the file, and a metadata entry."""
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
    return members


def _open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> Any:
    try:
        return zf.open(info)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, NotImplementedError,
            RuntimeError, zlib.error, EOFError, struct.error) as err:
        # NotImplementedError: a damaged compression-method field; RuntimeError: a
        # damaged flag bit that makes the entry look encrypted
        raise _fail(path, f"not a readable bpnet model file (truncated or corrupted?): "
                    f"{err}") from None


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str,
    check: Callable[[tuple[int, ...], np.dtype], None] | None = None,
) -> np.ndarray:
    """One entry's array; ``check(shape, dtype)`` sees its header before any data is read."""
    name = info.filename[:-4]
    with _open_member(zf, info, path) as f:
        shape, fortran, dtype = _npy_header(f, name, path)
        if check is not None:
            check(shape, dtype)
        a = _npy_data(f, name, path, shape, fortran, dtype, max(0, info.file_size - f.tell()))
        try:
            if f.read(1):
                raise _fail(path, f"entry {name!r} has data after its array")
        except (zipfile.BadZipFile, OSError, zlib.error, EOFError) as err:
            raise _fail(path, f"not a readable bpnet model file (truncated or "
                        f"corrupted?): {err}") from None
    return a


def _read_listed_array(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, listed: dict[str, Any], path: str
) -> np.ndarray:
    """An array entry, checked against its metadata entry: size, header, then digest."""
    name = info.filename[:-4]
    want_dtype, want_shape, want_digest = _array_spec(listed, name, path)
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

    def check(shape: tuple[int, ...], dtype: np.dtype) -> None:
        if dtype.str != want_dtype or list(shape) != want_shape:
            raise _fail(
                path,
                f"array {name!r} is {dtype.str} {list(shape)}; the metadata says "
                f"{want_dtype} {want_shape}",
            )

    a = _read_member(zf, info, path, check)
    if _digest(a) != want_digest:
        raise _fail(path, f"array {name!r} checksum mismatch: the data was modified "
                    "or corrupted")
    return a


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


def read(
    path: str | os.PathLike[str], *, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a model file: (metadata body, arrays).

    ``max_bytes`` bounds the uncompressed size of all entries, checked
    before anything is decompressed (None: no bound, for a file this
    process just wrote).
    """
    path = os.fspath(path)
    max_bytes = check_max_bytes(max_bytes)
    with _open_regular(path) as fh:
        try:
            return _read_file(fh, path, max_bytes)
        except ModelFileError:
            raise
        except RecursionError:
            raise _fail(path, "malformed model file: structure nested too deeply") from None
        except Exception as err:  # any other malformation: never a bare error type
            raise _fail(path, f"malformed model file ({type(err).__name__}: {err})") from None




def check_max_bytes(max_bytes: object) -> int | None:
    """``max_bytes`` as given, after checking it is an int >= 0 or None."""
    if max_bytes is None:
        return None
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) \
            or max_bytes < 0:
        raise ValueError(f"max_bytes must be an int >= 0 or None; got {max_bytes!r}")
    return int(max_bytes)

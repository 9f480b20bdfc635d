"""``bpnet`` output files: each checked before any work by creating it (an
error names the flag the user typed), never one of the inputs (the same path,
a symlink to it or a hard link of it), and a CSV written atomically."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from typing import TextIO

from .._modelfile import fsync_directory
from .data import UserError


def describe(err: OSError) -> str:
    """An OSError as ``strerror`` with its cause spelled out ("no space left")."""
    text = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        text += " (the disk is full)"
    elif err.errno == errno.EDQUOT:
        text += " (the disk quota is exhausted)"
    return text


def same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file: the same resolved path, or
    (both existing) the same device and inode, through symlinks and hard links."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except OSError:  # one does not exist (yet): not the same file
        return False


def check_not_input(path: str, flag: str, inputs: Sequence[tuple[str | None, str]]) -> None:
    """UserError if output ``path`` is one of ``inputs`` ((path or None, what it is))."""
    for source, what in inputs:
        if source is not None and same_file(path, source):
            same = "" if os.path.abspath(path) == os.path.abspath(source) else f" {source}"
            raise UserError(f"{flag} {path}: is the {what}{same}; writing it would destroy an "
                            "input (choose another output path)")


def destination(path: str, flag: str) -> str:
    """The file a write to ``path`` replaces, by the rule of model files
    (:func:`bpnet._modelfile.resolve_destination`): a symlink is followed only
    when it is the caller's or root's; another user's link is a UserError."""
    from .._modelfile import resolve_destination

    try:
        return resolve_destination(path)
    except OSError as err:
        raise UserError(f"{flag} {path}: {describe(err)}") from None


def _probe(directory: str, flag: str, path: str) -> None:
    """Create and remove a file in ``directory``: the real test of writability."""
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".bpnet-probe-")
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot create a file in {directory}: "
                        f"{describe(err)}") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str, flag: str, streams: bool = False) -> None:
    """The file ``path`` can be written: its directory exists and a file can be
    created in it; an existing ``path`` is not a directory. With ``streams``,
    an existing FIFO or device (``/dev/stdout``) is accepted as it is."""
    target = destination(path, flag)
    directory = os.path.dirname(target)
    if os.path.isdir(target):
        raise UserError(f"{flag} {path}: is a directory; give a file name")
    if streams and os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
        return
    if os.path.exists(target) and (not os.stat(target).st_mode & 0o222
                                   or not os.access(target, os.W_OK)):
        raise UserError(f"{flag} {path}: is read-only; refusing to replace it (make it "
                        "writable first)")
    if not os.path.isdir(directory):
        raise UserError(f"{flag} {path}: the directory {directory} does not exist")
    _probe(directory, flag, path)


def prepare_output_dir(path: str, flag: str) -> None:
    """Create directory ``path`` (and its parents) now and check a file can be
    created in it, so that a bad location fails before any work."""
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{flag} {path}: exists and is not a directory") from None
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot create the directory: {describe(err)}") from None
    _probe(path, flag, path)


def _new_file_mode(target: str) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_text_atomically(path: str, flag: str, fill: Callable[[TextIO], None]) -> None:
    """Write ``path`` (UTF-8) with ``fill(file)``, atomically: the text goes to a
    temporary file in the same directory, is flushed to disk (fsync) and renamed
    over ``path``, so a failure (a full disk, an interruption) leaves the old
    file or none, never a truncated one. A symlink is followed as by a model
    file's save (:func:`destination`: its target is replaced, the link stays).
    An existing FIFO or device (``/dev/stdout``) is written directly.

    Raises
    ------
    UserError
        Naming ``flag``, ``path`` and the cause (e.g. the disk is full).
    """
    target = destination(path, flag)
    try:
        if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
            with open(target, "w", newline="", encoding="utf-8") as stream:
                fill(stream)
            return
        mode = _new_file_mode(target)
        directory = os.path.dirname(target)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.",
                                   suffix=".tmp")
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot write: {describe(err)}") from None
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            kept = "the old file is unchanged" if os.path.exists(target) else "no file written"
            raise UserError(f"{flag} {path}: cannot write: {describe(exc)}; {kept}") from None
        raise
    fsync_directory(os.path.dirname(target))


__all__ = ["check_not_input", "check_output_file", "describe", "destination",
           "prepare_output_dir", "same_file", "write_text_atomically"]

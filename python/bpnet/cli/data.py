"""``bpnet`` command-line data: CSV sniffing (delimiter, header, label column)
and loading CSV, .npz and .mat files into ``(X, y)``; X is converted by
:mod:`bpnet._inputs`, as every other input of bpnet."""

from __future__ import annotations

import argparse
import codecs
import csv
import os
import re
import sys
from typing import Any, NamedTuple

import numpy as np

from .._inputs import class_indices, prepare_X

DIGITS_SPLIT_SEED = 0  # the built-in data set's train/test split never changes
_DELIMITER_NAMES = {"comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|", "space": " "}
_SNIFF_DELIMITERS = (",", "\t", ";", "|")


MISSING_LABELS = ("", "?")  # label cells read as "no label" (and any spelling of NaN)
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, with or without a byte order mark


class UserError(Exception):
    """A problem with the user's input: reported in one line, exit code 1."""


# C0 and C1 control characters, and the Unicode line separators and
# bidirectional overrides that can disguise or reorder what a terminal shows
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e"
                     "\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def shown(value: object) -> str:
    """``str(value)`` safe to print: control characters (ESC, newline, ...) and
    Unicode line separators / direction overrides appear as escapes (``\\x1b``,
    ``\\n``, ``\\u202e``), so text from a file can neither drive the terminal
    nor forge a report line. Every file-derived string the CLI prints goes
    through here."""
    return _UNSAFE.sub(_escape, str(value))


def parse_encoding(spec: str) -> str:
    """``--encoding``: a text encoding Python knows (utf-8, latin-1, cp1252, ...)."""
    try:
        name = codecs.lookup(spec).name
    except LookupError:
        raise argparse.ArgumentTypeError(
            f"expected a text encoding such as utf-8, latin-1 or cp1252; got {spec!r}"
        ) from None
    return "utf-8-sig" if name == "utf-8" else name  # a BOM is never data


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _column_index(spec: str, header: list[str] | None, n_cols: int, path: str) -> int:
    if header is not None and spec in header:
        return header.index(spec)
    try:
        idx = int(spec)
    except ValueError:
        names = ", ".join(header) if header else "(no header row: pass --header if it has one)"
        raise UserError(f"{path}: no column named {spec!r}; columns: {names}") from None
    if not -n_cols <= idx < n_cols:
        raise UserError(
            f"{path}: --label-column {idx} is out of range for {n_cols} columns "
            f"(expected {-n_cols}..{n_cols - 1})"
        )
    return idx % n_cols


def _delimiter_name(d: str) -> str:
    return next((k for k, v in _DELIMITER_NAMES.items() if v == d), repr(d))


def parse_delimiter(spec: str) -> str:
    """``--delimiter``: one character, ``\\t``, or a name (comma, tab, semicolon, pipe, space)."""
    d = _DELIMITER_NAMES.get(spec.lower(), "\t" if spec == "\\t" else spec)
    if len(d) != 1 or d in "\"\r\n" or d.isalnum() or d in ".-+":
        raise argparse.ArgumentTypeError(
            f"expected one separator character or one of {', '.join(_DELIMITER_NAMES)}; "
            f"got {spec!r}"
        )
    return d


def _sniff_delimiter(path: str, lines: list[str]) -> str:
    """The separator that splits the first lines into the same number (> 1) of
    fields; a comma if none does (a one-column file). Tab for ``.tsv``."""
    if path.lower().endswith(".tsv"):
        return "\t"
    sample = [ln for ln in lines[:50] if ln.strip()]
    best, best_score = ",", (0.0, 1)
    for d in _SNIFF_DELIMITERS:
        try:
            rows = list(csv.reader(sample, delimiter=d))
        except csv.Error:  # not parseable this way (reported when read for real)
            continue
        counts = {len(r) for r in rows}
        if len(counts) != 1 or (n := counts.pop()) < 2:
            continue
        # ties (e.g. "1,5;2,5" splits both ways) go to the split with more numbers
        numeric = sum(_is_number(c) for r in rows for c in r) / (n * len(rows))
        if (numeric, n) > best_score:
            best, best_score = d, (numeric, n)
    return best


def _detect_header(rows: list[list[str]]) -> bool:
    """Whether the first row is a header, conservatively: no cell of it is a
    number, and some column is numeric in every other row (so the first row
    differs from the data), or it is the only row. A first row that holds a
    number is always data."""
    first, rest = rows[0], rows[1:]
    if any(_is_number(c) for c in first):
        return False
    if not rest:  # a lone row of names: a header with no data (reported as such)
        return True
    n = len(first)
    return any(
        all(len(r) == n and _is_number(r[j]) for r in rest) for j in range(n)
    )


def _decode(path: str, encoding: str) -> str:
    """The file's text; a UserError naming the undecodable byte and ``--encoding``."""
    try:
        with open(path, newline="", encoding=encoding) as f:
            return f.read()
    except UnicodeDecodeError as err:
        byte = err.object[err.start:err.start + 1].hex()
        raise UserError(
            f"{path}: not a text CSV file in {_encoding_name(encoding)}: byte 0x{byte} at "
            f"offset {err.start} cannot be decoded ({err.reason}); if the file is Latin-1 or "
            "another encoding, pass --encoding latin-1 (or its name)"
        ) from None


def _encoding_name(encoding: str) -> str:
    return "UTF-8" if encoding == "utf-8-sig" else encoding


def _read_rows(path: str, delimiter: str | None, encoding: str
               ) -> tuple[list[list[str]], list[int], str]:
    """The non-blank rows of a delimited text file, the line number of each,
    and the separator (``delimiter``, or detected)."""
    lines = _decode(path, encoding).splitlines()
    chosen = delimiter if delimiter is not None else _sniff_delimiter(path, lines)
    reader = csv.reader(lines, delimiter=chosen, skipinitialspace=chosen == " ")
    rows, numbers = [], []
    try:
        for r in reader:
            if r and any(c.strip() for c in r):
                rows.append(r)
                numbers.append(reader.line_num)
    except csv.Error as err:  # e.g. a field longer than csv.field_size_limit()
        raise UserError(f"{path}: line {reader.line_num}: not a readable CSV file: {err}") from None
    if not rows:
        raise UserError(f"{path}: the file is empty")
    return rows, numbers, chosen


def _lines(numbers: list[int], limit: int = 8) -> str:
    shown_ = ", ".join(map(str, numbers[:limit]))
    return shown_ + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


class _Csv(NamedTuple):
    X: np.ndarray
    y: np.ndarray | None
    names: list[str] | None  # the feature columns' names (a header row), else None
    notes: list[str]  # what was detected or dropped, to print once the data is read


def _read_csv(
    path: str, label_column: str | None, header: bool | None = None,
    delimiter: str | None = None, *, encoding: str = DEFAULT_ENCODING,
    drop_missing: bool | None = False,
) -> _Csv:
    """Read a delimited text file. ``header``: True / False, or None to detect
    it; ``delimiter``: None to detect. ``drop_missing``: rows whose label is
    empty or ``?`` are an error (False), dropped (True) or kept (None: the
    labels are not used)."""
    rows, numbers, chosen = _read_rows(path, delimiter, encoding)
    detected = header is None
    if detected:
        header = _detect_header(rows)
    names = [c.strip() for c in rows[0]] if header else None
    if header:
        rows, numbers = rows[1:], numbers[1:]
    notes = []
    if detected or delimiter is None:  # say what was chosen, and how to override it
        if not detected:
            how = "header row (--header)" if header else "no header row (--no-header)"
        elif names is not None:
            how = f"first row read as a header ({', '.join(names)}); --no-header reads it as data"
        else:
            how = "no header row detected (every row is data); --header reads the first as names"
        notes.append(f"{path}: {_delimiter_name(chosen)}-separated; {how}")
    if not rows:
        raise UserError(f"{path}: the file has a header but no data rows")
    n_cols = len(names or rows[0])
    for r, line in zip(rows, numbers):
        if len(r) != n_cols:
            raise UserError(f"{path}: line {line} has {len(r)} fields; expected {n_cols}")
    cells = np.array(rows, dtype=str)
    y = None
    if label_column is not None:
        j = _column_index(label_column, names, n_cols, path)
        y = np.char.strip(cells[:, j])
        cells = np.delete(cells, j, axis=1)
        label = repr(names[j]) if names else f"#{j}"
        names = names[:j] + names[j + 1:] if names else None
        if drop_missing is not None:
            cells, y, dropped = _missing_labels(path, cells, y, numbers, label, drop_missing)
            if dropped:
                notes.append(dropped)
        if all(_is_number(v) for v in y):
            y = class_indices(y.astype(np.float64))
    if cells.shape[1] == 0:
        hint = (
            f" (every row is one field when split on {_delimiter_name(chosen)}: "
            "choose the separator with --delimiter)" if n_cols == 1 else ""
        )
        raise UserError(f"{path}: no feature columns left besides the label column{hint}")
    return _Csv(_floats(path, cells, names), y, names, notes)


def _missing_labels(path: str, cells: np.ndarray, y: np.ndarray, numbers: list[int],
                    label: str, drop: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """Rows whose label cell is empty or ``?``: an error naming their lines, or
    (``drop``) left out, with a note saying how many."""
    missing = np.array([v in MISSING_LABELS or (_is_number(v) and float(v) != float(v))
                        for v in y.tolist()], dtype=bool)
    if not missing.any():
        return cells, y, ""
    lines = [n for n, m in zip(numbers, missing) if m]
    if not drop:
        raise UserError(
            f"{path}: the label column {label} is empty, '?' or NaN in {len(lines)} row(s), "
            f"line {_lines(lines)}; fill them in, or pass --drop-missing to leave those "
            "rows out"
        )
    if missing.all():
        raise UserError(f"{path}: every label of column {label} is empty, '?' or NaN")
    return (cells[~missing], y[~missing],
            f"{path}: dropped {len(lines)} row(s) with an empty, '?' or NaN label "
            f"(--drop-missing), line {_lines(lines)}")


def _floats(path: str, cells: np.ndarray, names: list[str] | None) -> np.ndarray:
    """The feature cells as float64, or a UserError naming the column and row
    of the first cell that is not a number."""
    X = np.empty(cells.shape, dtype=np.float64)
    for c in range(cells.shape[1]):
        try:
            X[:, c] = cells[:, c].astype(np.float64)
        except ValueError:
            bad = next(i for i, v in enumerate(cells[:, c]) if not _is_number(v))
            name = names[c] if names else f"#{c}"
            raise UserError(
                f"{path}: feature column {name!r} holds a non-number {str(cells[bad, c])!r} "
                f"(data row {bad + 1}); choose the label column with --label-column, the "
                "separator with --delimiter, a header row with --header"
            ) from None
    return X


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``X`` and (if stored) ``y`` of an .npz archive."""
    try:
        # we own the handle: numpy leaves its own open when the archive is damaged
        with open(path, "rb") as fh:
            f = np.load(fh, allow_pickle=False)
            if not isinstance(f, np.lib.npyio.NpzFile):
                raise UserError(f"{path}: a bare .npy array, not an .npz archive with X, y")
            with f:
                keys = set(f.files)
                if "X" not in keys:
                    raise UserError(f"{path}: no array 'X' (found: {sorted(keys)})")
                X = f["X"]
                y = f["y"] if "y" in keys else None
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"{path}: not a readable .npz file: {err}") from None
    return X, y


class Table(NamedTuple):
    """A data file as read by :func:`load_table`."""

    X: np.ndarray  # float64, C order, finite
    y: np.ndarray | None
    order: str  # "F" for MATLAB files (images stored column-major), else "C"
    names: list[str] | None  # the feature columns' names from a CSV header row, else None


def load_table(
    path: str, label_column: str | None = "-1", ten_is_zero: bool = False,
    need_labels: bool = True, *, header: bool | None = None, delimiter: str | None = None,
    encoding: str = DEFAULT_ENCODING, drop_missing: bool = False, note_to_stdout: bool = True,
) -> Table:
    """Read a CSV, .npz or .mat file.

    ``header``, ``delimiter`` and ``encoding`` apply to text files (None:
    detect, see :func:`_read_csv`), as does ``drop_missing`` (rows without a
    label: an error, or dropped); what was detected is printed to stdout (the
    report), or to stderr with ``note_to_stdout=False`` (when stdout carries data).
    """
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, not a data file")
    _require_regular(path, "data file")
    ext = os.path.splitext(path)[1].lower()
    order, notes, names = "C", [], None
    if ext == ".npz":
        X, y = _read_npz(path)
    elif ext == ".mat":
        X, y = _read_mat(path)
        order = "F"
    elif ext in (".csv", ".txt", ".tsv"):
        X, y, names, notes = _read_csv(
            path, label_column if need_labels or label_column else None, header=header,
            delimiter=delimiter, encoding=encoding, drop_missing=drop_missing if need_labels
            else None)
    else:
        raise UserError(f"{path}: unknown data format {ext!r}; expected .csv, .npz or .mat")
    X = _checked_X(path, X, names)
    if y is not None:
        y = _checked_y(path, y, X.shape[0], ten_is_zero)
        if need_labels and y.dtype.kind == "f" and np.isnan(y).any():  # .npz / .mat labels
            X, y, dropped = _nan_labels(path, X, y, drop_missing)
            notes.append(dropped)
    elif need_labels:
        raise UserError(f"{path}: no labels found (y / --label-column)")
    for note in notes:  # what detection chose and how to override it: part of the report
        print(shown(note), file=sys.stdout if note_to_stdout else sys.stderr)
    return Table(X, y, order, names)


def load_data(
    path: str, label_column: str | None = "-1", ten_is_zero: bool = False,
    need_labels: bool = True, **options: Any,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(X, y, image_order)`` of :func:`load_table`."""
    t = load_table(path, label_column, ten_is_zero, need_labels, **options)
    return t.X, t.y, t.order


def _read_mat(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:
        raise UserError(f"{path}: not a readable MATLAB file: {err}") from None
    if "X" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise UserError(f"{path}: no variable 'X' (found: {found})")
    return mat["X"], mat.get("y")


def _checked_X(path: str, X: Any, names: list[str] | None) -> np.ndarray:
    """X as float64 in C order, every value finite and every column small
    enough that its mean and variance (feature scaling) exist in float64."""
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype.kind not in "fiub":
        raise UserError(f"{path}: X must be a 2-D numeric array; got {X.dtype} {X.shape}")
    try:  # float64, C order: as bpnet prepares every X (the scan below names a missing cell)
        X = prepare_X(X, X.shape[1], np.dtype(np.float64), check_finite=False)
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None
    if not np.isfinite(X).all():
        r, c = np.argwhere(~np.isfinite(X))[0]
        raise UserError(f"{path}: X has a missing or non-finite value at row {r}, column {c}")
    with np.errstate(over="ignore", invalid="ignore"):
        squares = np.einsum("ij,ij->j", X, X)
    if not np.isfinite(squares).all():
        c = int(np.argmin(np.isfinite(squares)))
        name = repr(names[c]) if names else f"#{c}"
        raise UserError(
            f"{path}: feature column {name} holds values up to {np.abs(X[:, c]).max():.3g} in "
            "magnitude: too large to compute with in float64 (their squares overflow; "
            "feature scaling and training need them); rescale the column"
        )
    return X


def _nan_labels(path: str, X: np.ndarray, y: np.ndarray, drop: bool
                ) -> tuple[np.ndarray, np.ndarray, str]:
    """Rows of an array file whose label is NaN: an error naming them, or
    (``drop``) left out, with a note saying how many."""
    missing = np.isnan(y)
    rows = np.flatnonzero(missing).tolist()
    if not drop or missing.all():
        raise UserError(f"{path}: y is NaN (a missing label) in {len(rows)} row(s), row "
                        f"{_lines(rows)} (0-based); "
                        + ("every label is missing" if missing.all()
                           else "pass --drop-missing to leave those rows out"))
    keep = ~missing
    y = y[keep]
    return (np.ascontiguousarray(X[keep]), class_indices(y),
            f"{path}: dropped {len(rows)} row(s) with a NaN label (--drop-missing), row "
            f"{_lines(rows)} (0-based)")


def _checked_y(path: str, y: Any, m: int, ten_is_zero: bool) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()
    if y.ndim != 1 or y.shape[0] != m:
        raise UserError(f"{path}: y has shape {y.shape}; expected ({m},) to match X's {m} rows")
    y = class_indices(y)
    if ten_is_zero:
        if y.dtype.kind not in "iu" or y.min() < 1 or y.max() > 10:
            raise UserError(f"{path}: --ten-is-zero expects labels 1..10")
        y = np.where(y == 10, 0, y)
    return y


def _require_regular(path: str, what: str) -> None:
    """Refuse a FIFO, device or socket: reading one would block or never end."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise UserError(f"{path}: cannot read the {what}: {err.strerror}") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{path}: not a regular file (a FIFO, device or socket); the {what} "
                        "must be a regular file")


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return tuple(
        train_test_split(X / 16.0, y, test_size=0.2, random_state=DIGITS_SPLIT_SEED, stratify=y)
    )

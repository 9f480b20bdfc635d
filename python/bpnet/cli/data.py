"""``bpnet`` command-line data: CSV sniffing (delimiter, header, label column)
and loading CSV, .npz and .mat files into ``(X, y)``; X is converted by
:mod:`bpnet._inputs`, as every other input of bpnet."""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

from .._inputs import class_indices, prepare_X

DIGITS_SPLIT_SEED = 0  # the built-in data set's train/test split never changes
_DELIMITER_NAMES = {"comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|", "space": " "}
_SNIFF_DELIMITERS = (",", "\t", ";", "|")


class UserError(Exception):
    """A problem with the user's input: reported in one line, exit code 1."""


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


def _read_csv(
    path: str, label_column: str | None, header: bool | None = None,
    delimiter: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Read a delimited text file: ``(X, y, note)``. ``header``: True / False,
    or None to detect it; ``delimiter``: None to detect. ``note`` says what
    was detected (empty if nothing was)."""
    try:
        with open(path, newline="") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text CSV file") from None
    lines = text.splitlines()
    chosen = delimiter if delimiter is not None else _sniff_delimiter(path, lines)
    reader = csv.reader(lines, delimiter=chosen, skipinitialspace=chosen == " ")
    try:
        rows = [r for r in reader if r and any(c.strip() for c in r)]
    except csv.Error as err:  # e.g. a field longer than csv.field_size_limit()
        raise UserError(f"{path}: line {reader.line_num}: not a readable CSV file: {err}") from None
    if not rows:
        raise UserError(f"{path}: the file is empty")
    note = ""  # what was detected: printed once the data is read (an error is one line)
    detected = header is None
    if detected:
        header = _detect_header(rows)
    if header:
        names, rows = [c.strip() for c in rows[0]], rows[1:]
    else:
        names = None
    if detected or delimiter is None:  # say what was chosen, and how to override it
        if not detected:
            how = "header row (--header)" if header else "no header row (--no-header)"
        elif header:
            how = f"first row read as a header ({', '.join(names)}); --no-header reads it as data"
        else:
            how = "no header row detected (every row is data); --header reads the first as names"
        note = f"{path}: {_delimiter_name(chosen)}-separated; {how}"
    header = names
    if not rows:
        raise UserError(f"{path}: the file has a header but no data rows")
    n_cols = len(header or rows[0])
    for i, r in enumerate(rows):
        if len(r) != n_cols:
            line = i + 1 + (header is not None)
            raise UserError(f"{path}: line {line} has {len(r)} fields; expected {n_cols}")
    cells = np.array(rows, dtype=str)
    y = None
    if label_column is not None:
        j = _column_index(label_column, header, n_cols, path)
        y = np.char.strip(cells[:, j])
        cells = np.delete(cells, j, axis=1)
        if all(_is_number(v) for v in y):
            y = class_indices(y.astype(np.float64))
        names = header[:j] + header[j + 1 :] if header else None
    else:
        names = header
    if cells.shape[1] == 0:
        hint = (
            f" (every row is one field when split on {_delimiter_name(chosen)}: "
            "choose the separator with --delimiter)" if n_cols == 1 else ""
        )
        raise UserError(f"{path}: no feature columns left besides the label column{hint}")
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
    return X, y, note


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


def load_data(
    path: str, label_column: str | None = "-1", ten_is_zero: bool = False,
    need_labels: bool = True, *, header: bool | None = None, delimiter: str | None = None,
    note_to_stdout: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Read ``(X, y, image_order)`` from a CSV, .npz or .mat file.

    ``image_order`` is "F" for MATLAB files (images stored column-major), else "C".
    ``header`` and ``delimiter`` apply to text files (None: detect, see
    :func:`_read_csv`); what was detected is printed to stdout (the report),
    or to stderr with ``note_to_stdout=False`` (when stdout carries data).
    """
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, not a data file")
    _require_regular(path, "data file")
    ext = os.path.splitext(path)[1].lower()
    order = "C"
    note = ""
    if ext == ".npz":
        X, y = _read_npz(path)
    elif ext == ".mat":
        import scipy.io

        try:
            mat = scipy.io.loadmat(path)
        except Exception as err:
            raise UserError(f"{path}: not a readable MATLAB file: {err}") from None
        if "X" not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise UserError(f"{path}: no variable 'X' (found: {found})")
        X, y = mat["X"], mat.get("y")
        order = "F"
    elif ext in (".csv", ".txt", ".tsv"):
        X, y, note = _read_csv(path, label_column if need_labels or label_column else None,
                               header=header, delimiter=delimiter)
    else:
        raise UserError(f"{path}: unknown data format {ext!r}; expected .csv, .npz or .mat")
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
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2 and 1 in y.shape:
            y = y.ravel()
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise UserError(
                f"{path}: y has shape {y.shape}; expected ({X.shape[0]},) to match X {X.shape}"
            )
        y = class_indices(y)
        if ten_is_zero:
            if y.dtype.kind not in "iu" or y.min() < 1 or y.max() > 10:
                raise UserError(f"{path}: --ten-is-zero expects labels 1..10")
            y = np.where(y == 10, 0, y)
    elif need_labels:
        raise UserError(f"{path}: no labels found (y / --label-column)")
    if note:  # what detection chose and the option that overrides it: part of the report
        print(note, file=sys.stdout if note_to_stdout else sys.stderr)
    return X, y, order


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

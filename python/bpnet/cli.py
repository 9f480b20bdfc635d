"""The ``bpnet`` command line: train, evaluate, predict, gradcheck, info.

Exit codes: 0 success, 1 a problem with the data, a model file or a failed
gradient check (one line on stderr, no traceback), 2 bad command-line usage,
130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import functional as F
from ._about import DISTRIBUTION, __version__, install_hint
from ._inputs import class_indices
from ._pipeline import SCALE_METHODS
from .optimize import FULL_BATCH_SOLVERS, MINIBATCH_SOLVERS, SOLVERS

__all__ = ["main"]

DEFAULT_MODEL = "bpnet-model.npz"
DIGITS_SPLIT_SEED = 0  # the built-in data set's train/test split never changes

EPILOG = """\
examples:
  bpnet train                                  # 8x8 digits, 64-25-10 net, prints test accuracy
  bpnet train data.csv --label-column label --hidden 50,20 --solver adam --plot plots/
  bpnet train ex4data1.mat --ten-is-zero --hidden 25 --lambda 1 --solver cg
  bpnet evaluate bpnet-model.npz data.csv --label-column label
  bpnet predict bpnet-model.npz new.csv -o predictions.csv
  bpnet gradcheck --layers 3,5,3 --lambda 3
  bpnet info bpnet-model.npz

data files: CSV (header optional; label column by name or index, default the
last), .npz with arrays X and y, or MATLAB .mat with X and y."""


class UserError(Exception):
    """A problem with the user's input: reported in one line, exit code 1."""


# -- data ---------------------------------------------------------------------
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


_DELIMITER_NAMES = {"comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|", "space": " "}
_SNIFF_DELIMITERS = (",", "\t", ";", "|")


def _delimiter_name(d: str) -> str:
    return next((k for k, v in _DELIMITER_NAMES.items() if v == d), repr(d))


def _parse_delimiter(spec: str) -> str:
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
    X = X.astype(np.float64)
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


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return tuple(
        train_test_split(X / 16.0, y, test_size=0.2, random_state=DIGITS_SPLIT_SEED, stratify=y)
    )


def _sizes(spec: str) -> tuple[int, ...]:
    spec = spec.strip()
    if spec in ("", "none", "0"):
        return ()
    try:
        sizes = tuple(int(s) for s in spec.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints like 25 or 50,20; got {spec!r}"
        ) from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be >= 1; got {spec!r}")
    return sizes


def _fraction(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {s!r}") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {s}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {s!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; got {s}")
    return v


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1; got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1; got {v}")
    return v


def _seed(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int in [0, 2**32 - 1]; got {s!r}") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"expected an int in [0, 2**32 - 1]; got {v}")
    return v


def _threads(s: str) -> int:
    v = _positive_int(s)
    if v > F.MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected an int in [1, {F.MAX_THREADS}]; got {v}")
    return v


# -- reports -------------------------------------------------------------------
def _confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray) -> str:
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=labels)
    names = [str(c) for c in labels]
    w = max(max(len(n) for n in names), len(str(cm.max())), 3)
    lines = ["confusion matrix (rows: true label, columns: predicted):"]
    lines.append(" " * (w + 2) + " ".join(n.rjust(w) for n in names))
    for n, row in zip(names, cm):
        lines.append(n.rjust(w) + "  " + " ".join(str(v).rjust(w) for v in row))
    return "\n".join(lines)


MIN_IMAGE_SIDE = 8  # the smallest common image inputs: scikit-learn's 8x8 digits


def _weight_image_shape(n_in: int, request: bool | None) -> tuple[int, int] | None:
    """The (height, width) to draw each hidden unit's input weights as, or None.

    Automatic (``request`` None): only image-like inputs, a square pixel
    count of side >= MIN_IMAGE_SIDE (64, 400, 784 inputs; not 4 or 16 tabular
    features). ``--plot-weights`` forces it (a square if the count is one,
    else a 1 x n strip); ``--no-plot-weights`` turns it off."""
    side = math.isqrt(n_in)
    square = side * side == n_in
    if request is None:
        return (side, side) if square and side >= MIN_IMAGE_SIDE else None
    if not request:
        return None
    return (side, side) if square else (1, n_in)


def _loss_plot_marks(est) -> list[tuple[int, str]]:
    """The iterations the loss plot marks: the one whose parameters were kept
    (early stopping) and where training stopped."""
    marks = []
    n = len(est.loss_curve_)
    best = getattr(est, "best_iteration_", None)
    if best is not None:
        marks.append((int(best), f"best validation, iteration {best} (parameters kept)"))
    if est.stop_reason_ == "early_stopping" and n and n != best:
        marks.append((n, f"early stop, iteration {n}"))
    return marks


def _plot(est, X_train: np.ndarray, outdir: str, order: str,
          weights: bool | None = None) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(f"--plot needs matplotlib: {install_hint('plot')}") from None
    os.makedirs(outdir, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    it = np.arange(1, len(est.loss_curve_) + 1)
    ax.plot(it, est.loss_curve_, label="training loss")
    if est.validation_loss_curve_:
        ax.plot(it, est.validation_loss_curve_, label="validation loss")
    styles = iter(("--", ":"))
    for at, label in _loss_plot_marks(est):
        ax.axvline(at, color="gray", linestyle=next(styles), linewidth=1, label=label)
    ax.set_xlabel("iteration" if est.solver in FULL_BATCH_SOLVERS else "epoch")
    ax.set_ylabel("cost J (with L2 penalty)")
    ax.set_yscale("log")
    ax.set_title(f"bpnet {'-'.join(map(str, est.network_.layer_sizes))}, {est.solver}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(outdir, "loss.png")
    fig.savefig(path)
    plt.close(fig)
    written.append(path)

    n_in = est.network_.layer_sizes[0]
    shape = _weight_image_shape(n_in, weights)
    if len(est.network_.layer_sizes) > 2 and shape is not None:
        W = est.network_.thetas[0][:, 1:]  # (s_1, n_in): one image per hidden unit
        k = W.shape[0]
        cols = math.ceil(math.sqrt(k))
        rows = math.ceil(k / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), dpi=100)
        for i, ax in enumerate(np.atleast_1d(axes).ravel()):
            ax.axis("off")
            if i < k:
                img = W[i].reshape(shape, order=order)
                lim = np.abs(img).max() or 1.0
                ax.imshow(img, cmap="gray", vmin=-lim, vmax=lim)
        fig.suptitle("first hidden layer weights (Theta1 without bias)", fontsize=9)
        fig.tight_layout()
        path = os.path.join(outdir, "hidden_weights.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    elif len(est.network_.layer_sizes) == 2:
        print("(no weight images: the network has no hidden layer)")
    elif weights is None:
        print(f"(no weight images: {n_in} inputs do not look like an image of at least "
              f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels; --plot-weights draws them)")
    return written


# -- checks before any work -------------------------------------------------------
def _check_output_file(path: str, flag: str) -> None:
    """The model file can be written: fail now, not after hours of training."""
    from ._modelfile import destination_mode

    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise UserError(f"{flag} {path}: the directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: the directory {directory} is not writable")
    try:
        destination_mode(path, target)
    except OSError as err:
        raise UserError(f"{flag} {path}: {err.strerror}") from None


def _check_output_dir(path: str, flag: str) -> None:
    """A directory that exists and is writable, or can be created."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise UserError(f"{flag} {path}: {probe} exists and is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {probe} is not writable")


def _check_train_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit 2): flags the chosen settings would ignore."""
    full_batch = args.solver in FULL_BATCH_SOLVERS
    for flag, value in (("--learning-rate", args.learning_rate),
                        ("--batch-size", args.batch_size)):
        if full_batch and value is not None:
            parser.error(f"{flag} applies to the mini-batch solvers "
                         f"({', '.join(MINIBATCH_SOLVERS)}); "
                         f"--solver {args.solver} would ignore it")
    if args.patience is not None and args.validation_split == 0:
        parser.error("--patience applies to early stopping; --validation-split 0 disables it")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_network_fits(sizes: list[int], dtype: str, solver: str) -> None:
    """Refuse a network whose parameters alone cannot fit in this machine's memory."""
    P = sum(sizes[l + 1] * (sizes[l] + 1) for l in range(len(sizes) - 1))
    # theta, gradient and the optimizer's vectors (L-BFGS keeps 10 pairs in float64)
    copies = 24 if solver == "lbfgs" else 8
    need = P * copies * 8
    have = _physical_memory()
    if have is not None and need > have:
        raise UserError(
            f"--hidden {','.join(map(str, sizes[1:-1]))}: a {'-'.join(map(str, sizes))} "
            f"network has {P:,} parameters; training it with {solver} needs about "
            f"{need / 2**30:,.1f} GiB, this machine has {have / 2**30:,.1f} GiB"
        )


# -- commands ------------------------------------------------------------------
def _check_train_outputs(args: argparse.Namespace) -> None:
    """Everything that could fail after training is checked before it."""
    _check_output_file(args.output, "-o/--output")
    if args.plot:
        _check_output_dir(args.plot, "--plot")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError(f"--plot needs matplotlib: {install_hint('plot')}") from None


def _train_test_data(args: argparse.Namespace) -> tuple[
    np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None, str, str
]:
    """``(X_train, X_test, y_train, y_test, source, image_order)`` of ``bpnet train``:
    the digits' fixed split, or DATA split by --test-split (stratified if it can be;
    no test rows with --test-split 0)."""
    from sklearn.model_selection import train_test_split

    if args.data is None:
        X_train, X_test, y_train, y_test = _digits()
        return X_train, X_test, y_train, y_test, "scikit-learn 8x8 digits (X/16)", "C"
    X, y, order = load_data(args.data, args.label_column, args.ten_is_zero,
                            header=args.header, delimiter=args.delimiter)
    if args.test_split == 0:
        return X, None, y, None, args.data, order
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=args.test_split, random_state=args.seed, stratify=y
        )
    except ValueError:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=args.test_split, random_state=args.seed
        )
    return X_train, X_test, y_train, y_test, args.data, order


def _classifier(args: argparse.Namespace):
    """The BPNetClassifier ``bpnet train`` fits; bad settings fail here, before any
    report or progress bar."""
    from .estimators import BPNetClassifier

    est = BPNetClassifier(
        hidden_layer_sizes=args.hidden, activation=args.activation, alpha=args.lam,
        solver=args.solver, max_iter=args.iterations,
        batch_size="auto" if args.batch_size is None else args.batch_size,
        learning_rate_init=1e-3 if args.learning_rate is None else args.learning_rate,
        tol=args.tol, early_stopping=args.validation_split > 0,
        validation_fraction=args.validation_split or 0.1,
        n_iter_no_change=20 if args.patience is None else args.patience,
        random_state=args.seed, n_threads=args.threads, dtype=args.dtype,
    )
    est._validate_params()
    return est


def _layer_sizes(args: argparse.Namespace, X_train: np.ndarray, y_train: np.ndarray,
                 source: str) -> tuple[list[int], np.ndarray]:
    """The network's layer sizes and the training classes, refusing fewer than 2
    classes or a network too large for this machine."""
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise UserError(
            f"{source}: training needs at least 2 classes; the training labels hold "
            f"{len(classes)}: {classes.tolist()}"
        )
    sizes = [X_train.shape[1], *args.hidden, len(classes)]
    _check_network_fits(sizes, args.dtype, args.solver)
    return sizes, classes


def _fit_with_progress(est, X_fit: np.ndarray, y_train: np.ndarray,
                       args: argparse.Namespace) -> float:
    """Fit ``est`` with a progress bar on stderr (none with --quiet); the seconds taken."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from tqdm.auto import tqdm

    bar = tqdm(total=args.iterations, desc="training", unit="it", disable=args.quiet,
               file=sys.stderr, dynamic_ncols=True)

    def progress(iteration: int, loss: float, score: float | None) -> None:
        bar.update(iteration - bar.n)
        post = {"loss": f"{loss:.4f}"}
        if score is not None:
            post["val_acc"] = f"{score:.3f}"
        bar.set_postfix(post, refresh=False)

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X_fit, y_train, callback=progress)
    finally:
        bar.close()
    return time.perf_counter() - t0


def cmd_train(args: argparse.Namespace) -> int:
    _check_train_outputs(args)
    X_train, X_test, y_train, y_test, source, order = _train_test_data(args)
    est = _classifier(args)
    sizes, classes = _layer_sizes(args, X_train, y_train, source)
    scaler = None
    X_fit = X_train
    if args.scale != "none":  # fitted on the training rows only; stored in the model file
        from ._pipeline import scaler_for

        scaler = scaler_for(args.scale).fit(X_train)
        X_fit = scaler.transform(X_train)
    print(
        f"data: {source}: {X_train.shape[0]} training"
        + (f" / {X_test.shape[0]} test" if X_test is not None else "")
        + f" samples, {X_train.shape[1]} features, {len(classes)} classes"
    )
    print(
        f"network: {'-'.join(map(str, sizes))}, {args.activation} hidden units, softmax output, "
        f"lambda={args.lam:g}, solver={args.solver}, dtype={args.dtype}"
        + (f", validation split {args.validation_split:g}" if args.validation_split else "")
        + f", feature scaling {args.scale}"
    )
    elapsed = _fit_with_progress(est, X_fit, y_train, args)
    model = est
    if scaler is not None:
        from sklearn.pipeline import Pipeline

        model = Pipeline([("scaler", scaler), ("classifier", est)])
    print(
        f"stopped after {est.n_iter_} iterations ({_reason(est)}) in {elapsed:.2f} s; "
        f"final loss {est.loss_:.5f}"
    )
    print(f"train accuracy:      {model.score(X_train, y_train):.4f}")
    if est.best_validation_score_ is not None:
        print(f"validation accuracy: {est.best_validation_score_:.4f} (best, parameters kept)")
    if X_test is not None:
        pred = model.predict(X_test)
        print(f"test accuracy:       {np.mean(pred == y_test):.4f}")
        print(_confusion(y_test, pred, est.classes_))
    from .persist import save

    path = save(model, args.output)
    print(f"model saved to {path}")
    if args.plot:
        for p in _plot(est, X_train, args.plot, order, args.plot_weights):
            print(f"plot written: {p}")
    return 0


def _reason(est) -> str:
    r = est.stop_reason_
    if r == "early_stopping":
        return (
            f"early stopping: neither validation accuracy nor validation loss improved for "
            f"{est.n_iter_no_change} iterations"
        )
    return r or "done"


def _final(model):
    """The bpnet estimator or Network of a loaded model (the last Pipeline step)."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _load_model(path: str):
    from .persist import load

    return load(path)


def _check_features(X: np.ndarray, n_in: int, path: str) -> None:
    if X.shape[1] != n_in:
        raise UserError(
            f"{path}: has {X.shape[1]} feature columns; the model expects {n_in} "
            "(check --label-column)"
        )


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    if args.data is None:
        _, X, _, y = _digits()
        path = "digits test split"
    else:
        X, y, _ = load_data(args.data, args.label_column, args.ten_is_zero,
                            header=args.header, delimiter=args.delimiter)
        path = args.data
    kind = type(_final(model)).__name__
    n_in = model.layer_sizes[0] if kind == "Network" else model.n_features_in_
    _check_features(X, n_in, path)
    if kind == "BPNetRegressor" or (kind == "Network" and model.output == "identity"):
        pred = model.predict(X).reshape(len(y), -1)
        yy = y.reshape(len(y), -1).astype(np.float64)
        mse = float(np.mean((pred - yy) ** 2))
        ss = float(np.sum((yy - yy.mean(axis=0)) ** 2))
        print(f"{path}: {len(y)} samples")
        print(f"mean squared error: {mse:.6g}")
        print(f"R^2:                {1 - mse * yy.size / ss if ss > 0 else float('nan'):.4f}")
        return 0
    if kind == "Network":
        if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= model.layer_sizes[-1]:
            raise UserError(
                f"{path}: a bare Network needs labels 0..{model.layer_sizes[-1] - 1}"
            )
        labels = np.arange(model.layer_sizes[-1])
    else:
        labels = _final(model).classes_
        unknown = np.setdiff1d(np.unique(y.astype(labels.dtype, copy=False)), labels)
        if unknown.size:
            print(f"note: labels not seen in training: {unknown.tolist()}")
    pred = model.predict(X)
    print(f"{path}: {len(y)} samples")
    print(f"accuracy: {np.mean(pred == y):.4f}")
    print(_confusion(y, pred, labels))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.output:  # a FIFO or device is fine for a CSV stream; a missing directory is not
        target = os.path.realpath(args.output)
        if os.path.isdir(target):
            raise UserError(f"-o/--output {args.output}: is a directory")
        if not os.path.isdir(os.path.dirname(target)):
            raise UserError(f"-o/--output {args.output}: the directory "
                            f"{os.path.dirname(target)} does not exist")
    model = _load_model(args.model)
    X, _, _ = load_data(args.data, args.label_column, need_labels=False, header=args.header,
                        delimiter=args.delimiter, note_to_stdout=False)
    kind = type(_final(model)).__name__
    n_in = model.layer_sizes[0] if kind == "Network" else model.n_features_in_
    _check_features(X, n_in, args.data)
    pred = np.asarray(model.predict(X))
    header = ["prediction"] if pred.ndim == 1 else [f"prediction_{k}" for k in range(pred.shape[1])]
    cols = [pred.reshape(len(X), -1)]
    if args.proba:
        if kind == "BPNetRegressor" or getattr(model, "output", "") == "identity":
            raise UserError("--proba applies to classifiers only")
        proba = model.predict_proba(X)
        labels = getattr(_final(model), "classes_", np.arange(proba.shape[1]))
        header += [f"p_{c}" for c in labels]
        cols.append(proba)
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        w = csv.writer(out)
        w.writerow(header)
        for i in range(len(X)):
            w.writerow([v for c in cols for v in (c[i].tolist())])
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"{len(X)} predictions written to {args.output}", file=sys.stderr)
    return 0


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from .gradcheck import check_gradients

    sizes, activation, output, lam = args.layers, args.activation, args.output, args.lam
    if args.model:
        model = _final(_load_model(args.model))
        net = model if type(model).__name__ == "Network" else model.network_
        sizes, activation, output = net.layer_sizes, net.activation, net.output
        lam = net.lam if args.lam is None else lam
        print(f"model {args.model}: checking its shape with debug weights (float64)")
    lam = 0.0 if lam is None else lam
    t0 = time.perf_counter()
    report = check_gradients(sizes, lam, m=args.examples, activation=activation, output=output,
                             sample=args.sample)
    print(report)
    # the tolerance applies to every figure printed, as printed (2 significant
    # digits): a row showing 1.00e-09 does not pass "< 1e-09"
    figures = [(label, float(f"{v:.2e}")) for label, v in report.figures()]
    failed = [(label, v) for label, v in figures if not v < args.tol]
    elapsed = time.perf_counter() - t0
    if not failed:
        print(f"OK: all {len(figures)} relative differences above are < {args.tol:g} "
              f"({elapsed:.2f} s)")
        return 0
    print(f"FAILED: {len(failed)} of {len(figures)} relative differences above are not < "
          f"{args.tol:g}: " + ", ".join(f"{label} {v:.2e}" for label, v in failed)
          + f" ({elapsed:.2f} s)")
    return 1


def cmd_info(args: argparse.Namespace) -> int:
    from .persist import read_metadata

    body = read_metadata(args.model)
    if args.json:
        print(json.dumps(body, indent=2, sort_keys=True))
        return 0
    net = body["network"]
    print(f"{args.model}: {body['kind']} (bpnet model format {body['format_version']}, "
          f"written by bpnet {body.get('bpnet_version', '?')} "
          f"({body.get('distribution', DISTRIBUTION)}) at {body.get('created', '?')})")
    print(f"  layers:     {'-'.join(map(str, net['layer_sizes']))} ({net['n_params']} parameters)")
    print(f"  units:      {net['activation']} hidden, {net['output']} output")
    print(f"  lambda:     {net['lam']:g}")
    print(f"  dtype:      {net['dtype']}")
    est = body.get("estimator")
    if est:
        print(f"  features:   {est['n_features_in']}")
        params = est["params"]
        print(f"  solver:     {params.get('solver')} (max_iter={params.get('max_iter')}, "
              f"early_stopping={params.get('early_stopping')})")
        if est.get("best_validation_score") is not None:
            print(f"  best validation score: {est['best_validation_score']:.4f}")
    pre = body.get("preprocessing")
    if pre:
        scalers = ", ".join(step["class"] for step in pre[:-1])
        print(f"  scaling:    {scalers} (applied to the features by evaluate and predict)")
    if "classes" in body["arrays"]:
        from ._modelfile import read

        classes = read(args.model)[1]["classes"]
        print(f"  classes:    {', '.join(map(str, classes.tolist()))}")
    tr = body.get("training")
    if tr:
        loss = tr.get("final_loss")
        tail = f", final loss {loss:.6g}" if loss is not None else ""
        print(f"  training:   {tr['n_iter']} iterations, {tr['n_evals']} evaluations, "
              f"stop: {tr['stop_reason']}{tail}")
    return 0


# -- parser --------------------------------------------------------------------
_FMT = argparse.RawDescriptionHelpFormatter


def _add_csv_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--header", action=argparse.BooleanOptionalAction, default=None,
        help="CSV: the first row holds column names (--header) or is data (--no-header); "
        "default: detected conservatively (a first row holding any number is data) and "
        "reported on stderr",
    )
    sp.add_argument(
        "--delimiter", type=_parse_delimiter, default=None, metavar="SEP",
        help="CSV field separator: a character or comma, tab, semicolon, pipe, space "
        "(default: detected from the first lines; tab for .tsv)",
    )


def _add_data_options(sp: argparse.ArgumentParser, label_default: str | None = "-1") -> None:
    sp.add_argument(
        "--label-column", metavar="COL", default=label_default,
        help="CSV label column: a header name or an index (negative counts from the end)"
        + (f"; default {label_default}" if label_default else "; default: none"),
    )
    _add_csv_options(sp)
    sp.add_argument("--ten-is-zero", action="store_true",
                    help="labels are 1..10 with 10 meaning digit 0 "
                    "(the classic course .mat files)")


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train", help="train a classifier and save it", formatter_class=_FMT,
        description="Train a classifier on DATA (default: scikit-learn's 8x8 digits with a "
        "fixed train/test split), print a report and save the model.",
    )
    t.add_argument("data", nargs="?", metavar="DATA", help=".csv, .npz (X, y) or .mat (X, y)")
    _add_data_options(t)
    g = t.add_argument_group("network")
    g.add_argument("--hidden", type=_sizes, default=(25,), metavar="SIZES",
                   help="hidden layer sizes, comma-separated "
                   "(default 25; 'none' for no hidden layer)")
    g.add_argument("--activation", choices=F.ACTIVATIONS, default="sigmoid",
                   help="hidden activation (default sigmoid)")
    g.add_argument("--lambda", dest="lam", type=float, default=1.0, metavar="LAMBDA",
                   help="L2 regularization strength (default 1.0)")
    g.add_argument("--dtype", choices=F.DTYPES, default="float64",
                   help="working precision (default float64)")
    g.add_argument("--scale", choices=(*SCALE_METHODS, "none"), default="standard",
                   help="feature scaling fitted on the training rows and stored in the model "
                   "file (evaluate and predict apply it): standard (zero mean, unit variance; "
                   "the default), minmax ([0, 1]) or none")
    _add_training_options(t.add_argument_group("training"))
    g = t.add_argument_group("output")
    g.add_argument("-o", "--output", default=DEFAULT_MODEL, metavar="MODEL",
                   help=f"model file to write (default {DEFAULT_MODEL})")
    g.add_argument("--plot", metavar="DIR",
                   help="write loss.png (marking the kept / early-stopping iteration) and, "
                   "for image inputs, hidden_weights.png to DIR (needs matplotlib)")
    g.add_argument("--plot-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="with --plot: draw hidden_weights.png (one image per first-layer "
                   "unit) or not; default: only for square images of at least "
                   f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)


def _add_training_options(g: argparse._ArgumentGroup) -> None:
    mini = ", ".join(MINIBATCH_SOLVERS)
    g.add_argument("--solver", choices=SOLVERS, default="lbfgs",
                   help="optimizer (default lbfgs)")
    g.add_argument("--iterations", type=_positive_int, default=200, metavar="N",
                   help=f"iterations (full batch) or epochs ({mini}); default 200")
    g.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                   help=f"mini-batch size ({mini} only); default min(200, samples)")
    g.add_argument("--learning-rate", type=float, default=None, metavar="LR",
                   help=f"step size ({mini} only); default 0.001")
    g.add_argument("--tol", type=float, default=1e-5,
                   help="convergence tolerance (default 1e-5)")
    g.add_argument("--validation-split", type=_fraction, default=0.1, metavar="F",
                   help="share of the training data used for validation accuracy and early "
                   "stopping (default 0.1; 0 disables)")
    g.add_argument("--patience", type=_positive_int, default=None, metavar="N",
                   help="early stopping: iterations in which neither validation accuracy nor "
                   "validation loss improved (default 20)")
    g.add_argument("--test-split", type=_fraction, default=0.2, metavar="F",
                   help="share of DATA held out for the test accuracy (default 0.2)")
    g.add_argument("--threads", type=_threads, default=None, metavar="N",
                   help="threads of the C++ core (default: all)")
    g.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")


def _add_apply_parsers(sub: argparse._SubParsersAction) -> None:
    """The commands that apply a model to data: evaluate, predict."""
    e = sub.add_parser("evaluate", help="accuracy and confusion matrix of a model on data",
                       description="Evaluate MODEL on DATA (default: the digits test split).")
    e.add_argument("model", metavar="MODEL")
    e.add_argument("data", nargs="?", metavar="DATA")
    _add_data_options(e)
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="write predictions as CSV",
                        description="Predict DATA with MODEL; CSV to stdout or --output.")
    pr.add_argument("model", metavar="MODEL")
    pr.add_argument("data", metavar="DATA")
    pr.add_argument("--label-column", metavar="COL", default=None,
                    help="a CSV column to drop before predicting (name or index)")
    _add_csv_options(pr)
    pr.add_argument("-o", "--output", metavar="CSV", help="write here instead of stdout")
    pr.add_argument("--proba", action="store_true", help="add class probability columns")
    pr.set_defaults(func=cmd_predict)


def _add_gradcheck_parser(sub: argparse._SubParsersAction) -> None:
    gc = sub.add_parser("gradcheck", help="compare backprop with central differences",
                        description="Run the gradient check (debug weights, float64) and "
                        "print the per-layer report; exit 1 if it fails.")
    gc.add_argument("--layers", type=_sizes, default=(3, 5, 3), metavar="SIZES",
                    help="layer sizes incl. inputs and outputs (default 3,5,3)")
    gc.add_argument("--model", metavar="MODEL", help="check the shape and units of this model")
    gc.add_argument("--lambda", dest="lam", type=float, default=None, metavar="LAMBDA",
                    help="regularization (default 0, or the model's)")
    gc.add_argument("--activation", choices=F.ACTIVATIONS, default="sigmoid")
    gc.add_argument("--output", choices=F.OUTPUTS, default="sigmoid")
    gc.add_argument("--examples", type=_positive_int, default=5, metavar="M",
                    help="examples in the check problem (default 5)")
    gc.add_argument("--sample", type=_positive_int, default=None, metavar="N",
                    help="check N randomly chosen parameters (fixed seed; at least one bias "
                    "and one weight per layer); default all, refused with the estimated "
                    "time when that would exceed 60 s")
    gc.add_argument("--tol", type=_positive_float, default=1e-7,
                    help="pass if every relative difference printed (per layer and for the "
                    "whole network; overall, bias and weights) is below this, as printed "
                    "(default 1e-7: an exact gradient of a layer with tiny entries shows "
                    "~5e-9 from the central differences' rounding)")
    gc.set_defaults(func=cmd_gradcheck)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bpnet",
        description="Train and use backpropagation neural networks (C++/Eigen core).",
        epilog=EPILOG, formatter_class=_FMT,
    )
    p.add_argument("--version", action="version",
                   version=f"bpnet {__version__} (distribution {DISTRIBUTION})")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(sub)
    _add_apply_parsers(sub)
    _add_gradcheck_parser(sub)
    i = sub.add_parser("info", help="describe a model file",
                       description="Verify MODEL and print its metadata.")
    i.add_argument("model", metavar="MODEL")
    i.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    i.set_defaults(func=cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bpnet`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "gradcheck" and len(args.layers) < 2:
        parser.error("--layers needs at least 2 sizes (inputs and outputs)")
    if getattr(args, "command", None) == "train":
        _check_train_flags(parser, args)
    from .persist import ModelFileError

    def fail(msg: str) -> int:
        # one line on stderr, whatever the message holds
        print(f"bpnet {args.command}: error: {' '.join(str(msg).split())}", file=sys.stderr)
        return 1

    try:
        return args.func(args)
    except (UserError, ModelFileError) as err:
        return fail(str(err))
    except FloatingPointError as err:  # divergence: the fit kept its last good parameters
        return fail(f"training diverged: {err}")
    except ValueError as err:  # invalid settings or data reported by bpnet itself
        return fail(str(err))
    except BrokenPipeError:  # `bpnet predict ... | head`: the reader left
        try:
            sys.stdout = open(os.devnull, "w")  # no flush error at exit
        except OSError:
            pass
        return 1
    except OSError as err:
        return fail(str(err))
    except ImportError as err:
        return fail(f"{err} ({install_hint('cli')})")
    except MemoryError as err:
        return fail(f"out of memory{': ' + str(err) if str(err) else ''} "
                    "(a smaller network, --examples or data set?)")
    except RecursionError:
        return fail("input nested too deeply")
    except KeyboardInterrupt:
        print("bpnet: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # never a traceback: name the failure in one line
        return fail(f"unexpected {type(err).__name__}: {err}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

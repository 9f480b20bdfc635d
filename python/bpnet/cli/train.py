"""``bpnet train``: checks before any work, the data split, the classifier or
regressor, the fit with a progress bar, the report and the saved model."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .. import _params
from .._about import install_hint
from .data import Table, UserError, digits, load_table, shown
from .files import (
    check_not_input,
    check_output_file,
    describe,
    destination,
    prepare_output_dir,
)
from .plots import PLOT_FILES, confusion, plot

# the estimator's parameter names as the flags of `bpnet train` that set them
# (those named as their flags, solver, activation, dtype, are choices argparse checks)
PARAM_FLAGS = {
    "alpha": "--lambda", "max_iter": "--iterations", "learning_rate_init": "--learning-rate",
    "batch_size": "--batch-size", "tol": "--tol", "validation_fraction": "--validation-split",
    "n_iter_no_change": "--patience", "random_state": "--seed", "n_threads": "--threads",
    "hidden_layer_sizes": "--hidden",
}
_PARAM = re.compile(r"\b(" + "|".join(PARAM_FLAGS) + r")\b")


def as_flags(message: str) -> str:
    """An estimator's error message with its parameter names replaced by the
    flags the user typed ("alpha must be ..." -> "--lambda must be ...")."""
    return _PARAM.sub(lambda m: PARAM_FLAGS[m.group()], message)


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


def _check_train_outputs(args: argparse.Namespace) -> None:
    """Everything that could fail after training is checked before it: each
    output is created (the plot directory) or probed (the model file's
    directory), and none is an input or another output."""
    from .._modelfile import destination_mode

    inputs = [(args.data, "training data file")]
    check_output_file(args.output, "-o/--output")
    try:  # the model file's own rules: a regular, writable file (or none yet)
        destination_mode(args.output, destination(args.output, "-o/--output"))
    except OSError as err:
        raise UserError(f"-o/--output {args.output}: {err.strerror}") from None
    check_not_input(args.output, "-o/--output", inputs)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError(f"--plot needs matplotlib: {install_hint('plot')}") from None
        prepare_output_dir(args.plot, "--plot")
        for name in PLOT_FILES:
            check_not_input(os.path.join(args.plot, name), "--plot",
                            [*inputs, (args.output, "model file (-o/--output)")])


def _train_test_data(args: argparse.Namespace) -> tuple[
    np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None, str, Table
]:
    """``(X_train, X_test, y_train, y_test, source, table)`` of ``bpnet train``:
    the digits' fixed split, or DATA split by --test-split (stratified if it can be;
    no test rows with --test-split 0)."""
    from sklearn.model_selection import train_test_split

    if args.data is None:
        X_train, X_test, y_train, y_test = digits()
        table = Table(X_train, y_train, "C", None)
        return X_train, X_test, y_train, y_test, "scikit-learn 8x8 digits (X/16)", table
    table = load_table(args.data, args.label_column, args.ten_is_zero, header=args.header,
                       delimiter=args.delimiter, encoding=args.encoding,
                       drop_missing=args.drop_missing)
    X, y = table.X, table.y
    assert y is not None  # need_labels
    if args.test_split == 0:
        return X, None, y, None, args.data, table
    stratify = y if _task(args, y) == "classification" else None
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=args.test_split, random_state=args.seed, stratify=stratify
        )
    except ValueError:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=args.test_split, random_state=args.seed
        )
    return X_train, X_test, y_train, y_test, args.data, table


def _task(args: argparse.Namespace, y: np.ndarray) -> str:
    """"classification" or "regression": --task, or (auto) regression for a
    numeric target holding a non-integer value."""
    if args.task == "regression":
        if y.dtype.kind not in "fiub":
            raise UserError(f"--task regression needs a numeric target; the labels are "
                            f"strings such as {shown(y[0])!r}")
        return "regression"
    fractional = y.dtype.kind == "f" and not bool(np.all(y == np.round(y)))
    if args.task == "classification":
        if fractional:
            bad = y[y != np.round(y)][0]
            raise UserError(f"--task classification: the target holds non-integer numbers "
                            f"(such as {bad:g}); classes are whole numbers or strings "
                            "(--task regression fits a numeric target)")
        return "classification"
    return "regression" if fractional else "classification"


def _estimator(args: argparse.Namespace, task: str) -> Any:
    """The BPNetClassifier or BPNetRegressor ``bpnet train`` fits; bad settings
    fail here, before any report or progress bar, naming the flags."""
    from ..estimators import BPNetClassifier, BPNetRegressor, check_params

    cls = BPNetRegressor if task == "regression" else BPNetClassifier
    est = cls(
        hidden_layer_sizes=args.hidden, activation=args.activation, alpha=args.lam,
        solver=args.solver, max_iter=args.iterations,
        batch_size="auto" if args.batch_size is None else args.batch_size,
        learning_rate_init=1e-3 if args.learning_rate is None else args.learning_rate,
        tol=args.tol, early_stopping=args.validation_split > 0,
        validation_fraction=args.validation_split or 0.1,
        n_iter_no_change=20 if args.patience is None else args.patience,
        random_state=args.seed, n_threads=args.threads, dtype=args.dtype,
    )
    try:
        check_params(est)
    except ValueError as err:
        raise UserError(as_flags(str(err))) from None
    return est


def _layer_sizes(args: argparse.Namespace, X_train: np.ndarray, y_train: np.ndarray,
                 source: str, task: str) -> tuple[list[int], np.ndarray | None]:
    """The network's layer sizes and the training classes (None for a
    regression), refusing fewer than 2 classes or a network too large for
    this machine."""
    classes = None
    if task == "classification":
        classes = np.unique(y_train)
        if len(classes) < 2:
            raise UserError(
                f"{source}: training needs at least 2 classes; the training labels hold "
                f"{len(classes)}: {', '.join(shown(c) for c in classes)}"
            )
    sizes = [X_train.shape[1], *args.hidden, 1 if classes is None else len(classes)]
    _check_network_fits(sizes, args.dtype, args.solver)
    return sizes, classes


def _fit_with_progress(est: Any, X_fit: np.ndarray, y_train: np.ndarray,
                       args: argparse.Namespace) -> float:
    """Fit ``est`` with a progress bar on stderr (none with --quiet); the seconds
    taken. Each drawn line shows the figures of the iteration it counts, and
    the last one is drawn once."""
    from sklearn.exceptions import ConvergenceWarning
    from tqdm.auto import tqdm

    bar = tqdm(total=args.iterations, desc="training", unit="it", disable=args.quiet,
               file=sys.stderr, dynamic_ncols=True)
    score_name = "val_r2" if _is_regressor(est) else "val_acc"
    # the (n, postfix) of the last line drawn: tqdm draws 0/N when it starts
    drawn: list[Any] = [(bar.n, getattr(bar, "postfix", None))]

    def progress(iteration: int, loss: float, score: float | None) -> None:
        post = {"loss": f"{loss:.4f}"}
        if score is not None:
            post[score_name] = f"{score:.3f}"
        bar.set_postfix(post, refresh=False)  # first the figures, then the count
        if bar.update(iteration - bar.n):
            drawn[0] = (bar.n, bar.postfix)

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X_fit, y_train, callback=progress)
    finally:
        _close(bar, drawn[0])
    return time.perf_counter() - t0


def _close(bar: Any, drawn: Any) -> None:
    """Finish the bar with its final figures on screen exactly once: tqdm's
    close() would draw the last line again when it is already shown."""
    if bar.disable:
        return
    if drawn != (bar.n, bar.postfix):
        bar.refresh()
    bar.fp.write("\n")
    bar.fp.flush()
    bar.disable = True  # close() draws nothing more ...
    type(bar)._decr_instances(bar)  # ... and this is the rest of its work


def _network_line(args: argparse.Namespace, sizes: list[int], task: str) -> str:
    hidden = (f"{args.activation} hidden units" if len(sizes) > 2
              else "no hidden layer")
    output = "identity output" if task == "regression" else "softmax output"
    return (
        f"network: {'-'.join(map(str, sizes))}, {hidden}, {output}, "
        f"lambda={args.lam:g}, solver={args.solver}, dtype={args.dtype}"
        + (f", validation split {args.validation_split:g}" if args.validation_split else "")
        + f", feature scaling {args.scale}"
    )


def _report_scores(model: Any, est: Any, X_train: np.ndarray, y_train: np.ndarray,
                   X_test: np.ndarray | None, y_test: np.ndarray | None) -> None:
    """Train / validation / test accuracy and the confusion matrix, or for a
    regressor R^2 and the mean absolute error."""
    if _is_regressor(est):
        print(f"train R^2:           {model.score(X_train, y_train):.4f}")
        if est.best_validation_score_ is not None:
            print(f"validation R^2:      {est.best_validation_score_:.4f} "
                  "(best, parameters kept)")
        if X_test is not None and y_test is not None:
            pred = model.predict(X_test)
            print(f"test R^2:            {r2(y_test, pred):.4f}")
            print(f"test MAE:            {float(np.mean(np.abs(pred - y_test))):.6g}")
        return
    print(f"train accuracy:      {model.score(X_train, y_train):.4f}")
    if est.best_validation_score_ is not None:
        print(f"validation accuracy: {est.best_validation_score_:.4f} (best, parameters kept)")
    if X_test is not None:
        pred = model.predict(X_test)
        print(f"test accuracy:       {np.mean(pred == y_test):.4f}")
        print(confusion(y_test, pred, est.classes_))


def _is_regressor(est: Any) -> bool:
    return type(est).__name__ == "BPNetRegressor"


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """The coefficient of determination (NaN for a constant target)."""
    yy = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    pp = np.asarray(pred, dtype=np.float64).reshape(len(y), -1)
    ss = float(np.sum((yy - yy.mean(axis=0)) ** 2))
    return 1.0 - float(np.sum((pp - yy) ** 2)) / ss if ss > 0 else float("nan")


def _check_names(names: list[str] | None, source: str) -> None:
    """The training file's column names can be stored: each names one column."""
    dup = sorted({n for n in names if names.count(n) > 1}) if names else []
    if dup:
        raise UserError(f"{source}: the header names the feature column(s) "
                        f"{', '.join(map(repr, dup))} more than once; give every column "
                        "its own name (or --no-header)")


@_params.once_per_fit  # the settings are checked before the report, and not again by the fit
def cmd_train(args: argparse.Namespace) -> int:
    _check_train_outputs(args)
    X_train, X_test, y_train, y_test, source, table = _train_test_data(args)
    task = _task(args, y_train)
    est = _estimator(args, task)
    sizes, classes = _layer_sizes(args, X_train, y_train, source, task)
    _check_names(table.names, source)
    scaler = None
    X_fit = X_train
    if args.scale != "none":  # fitted on the training rows only; stored in the model file
        from .._pipeline import scaler_for

        scaler = scaler_for(args.scale).fit(X_train)
        X_fit = scaler.transform(X_train)
    what = f"{len(classes)} classes" if classes is not None else "a numeric target (regression)"
    print(
        f"data: {shown(source)}: {X_train.shape[0]} training"
        + (f" / {X_test.shape[0]} test" if X_test is not None else "")
        + f" samples, {X_train.shape[1]} features, {what}"
    )
    print(_network_line(args, sizes, task))
    elapsed = _fit_with_progress(est, X_fit, y_train, args)
    model = est
    if scaler is not None:
        from sklearn.pipeline import Pipeline

        model = Pipeline([("scaler", scaler), ("regressor" if task == "regression"
                                                else "classifier", est)])
    print(
        f"stopped after {est.n_iter_} iterations ({_reason(est)}) in {elapsed:.2f} s; "
        f"final loss {est.loss_:.5f}"
    )
    with ignoring_unnamed_X():
        _report_scores(model, est, X_train, y_train, X_test, y_test)
    if table.names is not None:  # stored in the model file: evaluate and predict match by name
        est.feature_names_in_ = np.asarray(table.names, dtype=object)
    from ..persist import save

    try:
        path = save(model, args.output)
    except OSError as err:
        raise UserError(f"-o/--output {args.output}: cannot write the model file: "
                        f"{describe(err)}") from None
    print(f"model saved to {shown(path)}")
    if args.plot:
        for p in plot(est, X_train, args.plot, table.order, args.plot_weights):
            print(f"plot written: {shown(p)}")
    return 0


@contextmanager
def ignoring_unnamed_X() -> Iterator[None]:
    """scikit-learn's "X does not have valid feature names" warning off: the
    CLI passes arrays whose columns it has already matched to the model's names."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        yield


def _reason(est: Any) -> str:
    r = est.stop_reason_
    if r == "early_stopping":
        return (
            f"early stopping: neither validation accuracy nor validation loss improved for "
            f"{est.n_iter_no_change} iterations"
        )
    return shown(r) if r else "done"

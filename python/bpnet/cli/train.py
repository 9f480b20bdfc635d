"""``bpnet train``: checks before any work, the data split, the classifier, the
fit with a progress bar, the report and the saved model."""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .. import _params
from .._about import install_hint
from .data import UserError, digits, load_data
from .plots import confusion, plot


def _check_output_file(path: str, flag: str) -> None:
    """The model file can be written: fail now, not after hours of training."""
    from .._modelfile import destination_mode

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
        X_train, X_test, y_train, y_test = digits()
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
    from ..estimators import BPNetClassifier, check_params

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
    check_params(est)
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


@_params.once_per_fit  # the settings are checked before the report, and not again by the fit
def cmd_train(args: argparse.Namespace) -> int:
    _check_train_outputs(args)
    X_train, X_test, y_train, y_test, source, order = _train_test_data(args)
    est = _classifier(args)
    sizes, classes = _layer_sizes(args, X_train, y_train, source)
    scaler = None
    X_fit = X_train
    if args.scale != "none":  # fitted on the training rows only; stored in the model file
        from .._pipeline import scaler_for

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
        print(confusion(y_test, pred, est.classes_))
    from ..persist import save

    path = save(model, args.output)
    print(f"model saved to {path}")
    if args.plot:
        for p in plot(est, X_train, args.plot, order, args.plot_weights):
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

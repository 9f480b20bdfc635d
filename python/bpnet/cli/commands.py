"""``bpnet evaluate``, ``predict``, ``gradcheck`` and ``info``: the commands that
apply or describe a saved model."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from .._about import DISTRIBUTION
from .data import Table, UserError, digits, load_table, shown
from .files import check_not_input, check_output_file, write_text_atomically
from .plots import confusion
from .train import ignoring_unnamed_X, r2


def _final(model: Any) -> Any:
    """The bpnet estimator or Network of a loaded model (the last Pipeline step)."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _load_model(path: str) -> Any:
    from ..persist import load

    return load(path)


def _names(items: Sequence[object], limit: int = 12) -> str:
    text = ", ".join(repr(shown(n)) for n in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _features(model: Any, table: Table, path: str) -> np.ndarray:
    """X with its columns in the order the model was trained on.

    A model trained on a file with a header stores the column names: a file
    with a header is matched by name (any order; a missing, extra or
    duplicate column is an error naming it), a file without one must have
    the same number of columns (taken in the training order). Other models
    match by position."""
    final = _final(model)
    n_in = model.layer_sizes[0] if type(final).__name__ == "Network" else model.n_features_in_
    expected = getattr(final, "feature_names_in_", None)
    X, names = table.X, table.names
    if expected is not None and names is not None:
        expected = [str(n) for n in expected]
        problems = []
        missing = [n for n in expected if n not in names]
        if missing:
            problems.append(f"missing {_names(missing)}")
        extra = [n for n in names if n not in expected]
        if extra:
            problems.append(f"extra {_names(extra)} (--label-column names a column to leave "
                            "out)")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            problems.append(f"more than once {_names(dup)}")
        if problems:
            count = (f"has {len(names)} feature columns; the model expects {n_in}: "
                     if len(names) != n_in else "")
            raise UserError(f"{path}: {count}the header's feature columns do not match the "
                            f"model's ({_names(expected)}): {'; '.join(problems)}")
        return np.ascontiguousarray(X[:, [names.index(n) for n in expected]])
    if X.shape[1] != n_in:
        known = f": {_names(expected)}" if expected is not None else ""
        raise UserError(
            f"{path}: has {X.shape[1]} feature columns; the model expects {n_in}{known} "
            "(check --label-column" + (", or give the file a header row)" if known else ")")
        )
    return X


def _is_regression(model: Any) -> bool:
    final = _final(model)
    kind = type(final).__name__
    regression_output = kind == "Network" and final.output in ("identity", "poisson")
    return kind == "BPNetRegressor" or regression_output


def _check_label_kind(y: np.ndarray, labels: np.ndarray, path: str) -> None:
    """Labels and the model's classes are both strings or both numbers."""
    y_text, m_text = y.dtype.kind in "USO", labels.dtype.kind in "USO"
    if y_text != m_text:
        def kind(text: bool) -> str:
            return "strings" if text else "numbers"

        raise UserError(
            f"{path}: the labels are {kind(y_text)} (such as {shown(y[0])!r}) but the model's "
            f"classes are {kind(m_text)} ({_names(list(labels), 5)}); check --label-column "
            "and that the model was trained on this kind of data"
        )


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    if args.data is None:
        _, X, _, y = digits()
        path = "digits test split"
    else:
        table = load_table(args.data, args.label_column, args.ten_is_zero, header=args.header,
                           delimiter=args.delimiter, encoding=args.encoding,
                           drop_missing=args.drop_missing)
        path, y = args.data, table.y
        X = _features(model, table, path)
    assert y is not None
    with ignoring_unnamed_X():
        if _is_regression(model):
            return _evaluate_regression(model, X, y, path)
        return _evaluate_classification(model, X, y, path)


def _evaluate_regression(model: Any, X: np.ndarray, y: np.ndarray, path: str) -> int:
    if y.dtype.kind not in "fiub":
        raise UserError(f"{path}: the model is a regressor; the targets are strings "
                        f"(such as {shown(y[0])!r}), not numbers")
    pred = np.asarray(model.predict(X), dtype=np.float64).reshape(len(y), -1)
    yy = y.reshape(len(y), -1).astype(np.float64)
    print(f"{shown(path)}: {len(y)} samples")
    print(f"mean squared error:  {float(np.mean((pred - yy) ** 2)):.6g}")
    print(f"mean absolute error: {float(np.mean(np.abs(pred - yy))):.6g}")
    print(f"R^2:                 {r2(yy, pred):.4f}")
    return 0


def _evaluate_classification(model: Any, X: np.ndarray, y: np.ndarray, path: str) -> int:
    final = _final(model)
    if type(final).__name__ == "Network":
        if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= model.layer_sizes[-1]:
            raise UserError(
                f"{path}: a bare Network needs labels 0..{model.layer_sizes[-1] - 1}"
            )
        labels = np.arange(model.layer_sizes[-1])
    else:
        labels = final.classes_
        _check_label_kind(y, labels, path)
        unknown = np.setdiff1d(np.unique(y.astype(labels.dtype, copy=False)), labels)
        if unknown.size:
            print(f"note: labels not seen in training: {', '.join(map(shown, unknown))}")
    pred = model.predict(X)
    print(f"{shown(path)}: {len(y)} samples")
    print(f"accuracy: {np.mean(pred == y):.4f}")
    print(confusion(y, pred, labels))
    return 0


def _csv_cell(v: object) -> object:
    return shown(v) if isinstance(v, str) else v


def cmd_predict(args: argparse.Namespace) -> int:
    if args.output:  # a FIFO or device is fine for a CSV stream; a missing directory is not
        check_output_file(args.output, "-o/--output", streams=True)
        check_not_input(args.output, "-o/--output",
                        [(args.model, "model file (MODEL)"), (args.data, "data file (DATA)")])
    model = _load_model(args.model)
    table = load_table(args.data, args.label_column, need_labels=False, header=args.header,
                       delimiter=args.delimiter, encoding=args.encoding, note_to_stdout=False)
    X = _features(model, table, args.data)
    with ignoring_unnamed_X():
        pred = np.asarray(model.predict(X))
        header = (["prediction"] if pred.ndim == 1
                  else [f"prediction_{k}" for k in range(pred.shape[1])])
        cols = [pred.reshape(len(X), -1)]
        if args.proba:
            if _is_regression(model):
                raise UserError("--proba applies to classifiers only")
            proba = model.predict_proba(X)
            labels = getattr(_final(model), "classes_", np.arange(proba.shape[1]))
            header += [f"p_{shown(c)}" for c in labels]
            cols.append(proba)

    def fill(out: TextIO) -> None:
        w = csv.writer(out)
        w.writerow(header)
        for i in range(len(X)):
            w.writerow([_csv_cell(v) for c in cols for v in c[i].tolist()])

    if args.output:
        write_text_atomically(args.output, "-o/--output", fill)
        print(f"{len(X)} predictions written to {shown(args.output)}", file=sys.stderr)
    else:
        fill(sys.stdout)
    return 0


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from ..gradcheck import check_gradients

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
    """Print a model file's metadata; every string from the file goes through
    :func:`~bpnet.cli.data.shown` (``--json`` escapes as JSON does)."""
    from ..persist import read_metadata

    body = read_metadata(args.model)
    if args.json:
        print(json.dumps(body, indent=2, sort_keys=True))
        return 0
    net = body["network"]
    s = shown
    print(f"{s(args.model)}: {s(body['kind'])} (bpnet model format {s(body['format_version'])}, "
          f"written by bpnet {s(body.get('bpnet_version', '?'))} "
          f"({s(body.get('distribution', DISTRIBUTION))}) at {s(body.get('created', '?'))})")
    sizes = net["layer_sizes"]
    print(f"  layers:     {'-'.join(map(s, sizes))} ({s(net['n_params'])} parameters)")
    hidden = f"{s(net['activation'])} hidden" if len(sizes) > 2 else "no hidden layer"
    print(f"  units:      {hidden}, {s(net['output'])} output")
    print(f"  lambda:     {net['lam']:g}")
    print(f"  dtype:      {s(net['dtype'])}")
    _info_estimator(body.get("estimator"))
    pre = body.get("preprocessing")
    if pre:
        scalers = ", ".join(s(step["class"]) for step in pre[:-1])
        print(f"  scaling:    {scalers} (applied to the features by evaluate and predict)")
    arrays = body["arrays"]
    if "classes" in arrays or "feature_names_in" in arrays:
        from .._modelfile import read

        stored = read(args.model)[1]
        if "feature_names_in" in stored:
            print(f"  columns:    {', '.join(map(s, stored['feature_names_in'].tolist()))}")
        if "classes" in stored:
            print(f"  classes:    {', '.join(map(s, stored['classes'].tolist()))}")
    tr = body.get("training")
    if tr:
        loss = tr.get("final_loss")
        tail = f", final loss {loss:.6g}" if loss is not None else ""
        print(f"  training:   {s(tr['n_iter'])} iterations, {s(tr['n_evals'])} evaluations, "
              f"stop: {s(tr['stop_reason'])}{tail}")
    return 0


def _info_estimator(est: dict[str, Any] | None) -> None:
    if not est:
        return
    s = shown
    print(f"  features:   {s(est['n_features_in'])}")
    params = est["params"]
    print(f"  solver:     {s(params.get('solver'))} (max_iter={s(params.get('max_iter'))}, "
          f"early_stopping={s(params.get('early_stopping'))})")
    if est.get("best_validation_score") is not None:
        print(f"  best validation score: {est['best_validation_score']:.4f}")

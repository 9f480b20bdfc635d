"""``bpnet evaluate``, ``predict``, ``gradcheck`` and ``info``: the commands that
apply or describe a saved model."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import numpy as np

from .._about import DISTRIBUTION
from .data import UserError, digits, load_data
from .plots import confusion


def _final(model):
    """The bpnet estimator or Network of a loaded model (the last Pipeline step)."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _load_model(path: str):
    from ..persist import load

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
        _, X, _, y = digits()
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
    print(confusion(y, pred, labels))
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
    from ..persist import read_metadata

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
        from .._modelfile import read

        classes = read(args.model)[1]["classes"]
        print(f"  classes:    {', '.join(map(str, classes.tolist()))}")
    tr = body.get("training")
    if tr:
        loss = tr.get("final_loss")
        tail = f", final loss {loss:.6g}" if loss is not None else ""
        print(f"  training:   {tr['n_iter']} iterations, {tr['n_evals']} evaluations, "
              f"stop: {tr['stop_reason']}{tail}")
    return 0

"""The CLI's data handling: header detection that never drops a row,
--header / --no-header, --delimiter, feature scaling stored in the model
file, and early stopping that does not stop a fit that is still improving."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

from sklearn.datasets import load_iris, load_wine

import bpnet
from bpnet.cli import main


def run(capsys, *args):
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def _write(path, rows, sep=","):
    path.write_text("".join(sep.join(str(c) for c in r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def iris_rows():
    d = load_iris()
    return [[*(f"{v:g}" for v in x), d.target_names[t]] for x, t in zip(d.data, d.target)]


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory, iris_rows):
    d = tmp_path_factory.mktemp("iris")
    path = _write(d / "iris.csv", iris_rows)
    model = d / "iris.npz"
    rc = main(["train", str(path), "-o", str(model), "-q", "--iterations", "60"])
    assert rc == 0
    return model


# -- header detection -----------------------------------------------------------
def test_headerless_csv_with_string_labels_keeps_every_row(tmp_path, capsys, iris_rows,
                                                           iris_model):
    """The bug: a first row holding a string label was taken for a header (149 of 150)."""
    path = _write(tmp_path / "iris.csv", iris_rows)
    rc, out, err = run(capsys, "evaluate", iris_model, path)
    assert rc == 0, err
    assert f"{path}: 150 samples" in out
    assert "no header row detected" in out and "--header" in out


def test_header_row_is_detected_and_reported(tmp_path, capsys, iris_rows, iris_model):
    path = _write(tmp_path / "iris_h.csv", [["sl", "sw", "pl", "pw", "species"], *iris_rows])
    rc, out, err = run(capsys, "evaluate", iris_model, path, "--label-column", "species")
    assert rc == 0, err
    assert "150 samples" in out
    assert "first row read as a header (sl, sw, pl, pw, species)" in out
    assert "--no-header" in out


@pytest.mark.parametrize(
    ("first", "is_header"),
    [
        (["a", "b", "label"], True),
        (["1.5", "b", "label"], False),  # a number: always data
        (["x", "2", "cat"], False),
        (["nan", "b", "label"], False),  # parses as a number
    ],
)
def test_header_detection_is_conservative(first, is_header):
    from bpnet.cli.data import _detect_header

    rows = [first, ["0.1", "0.2", "cat"], ["0.3", "0.4", "dog"]]
    assert _detect_header(rows) is is_header


def test_all_text_rows_are_never_taken_for_a_header():
    from bpnet.cli.data import _detect_header

    # no column is numeric below the first row: nothing shows the first row differs
    assert _detect_header([["a", "b"], ["c", "d"], ["e", "f"]]) is False


def test_header_and_no_header_force_the_choice(tmp_path, capsys, iris_rows, iris_model):
    # --header on a headerless file: the first data row becomes names (149 rows, as asked)
    path = _write(tmp_path / "iris.csv", iris_rows)
    rc, out, err = run(capsys, "evaluate", iris_model, path, "--header")
    assert rc == 0, err
    assert "149 samples" in out and "header row (--header)" in out
    # --no-header on a file with names: the names row is data, and says so loudly
    named = _write(tmp_path / "named.csv", [["sl", "sw", "pl", "pw", "species"], *iris_rows])
    rc, _, err = run(capsys, "evaluate", iris_model, named, "--no-header")
    assert rc == 1
    assert "holds a non-number 'sl' (data row 1)" in err


# -- delimiters -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sep", "name", "suffix", "option"),
    [
        ("\t", "tab", ".csv", None),
        ("\t", "tab", ".tsv", None),
        (";", "semicolon", ".csv", None),
        ("|", "pipe", ".txt", None),
        (";", "semicolon", ".csv", ";"),
        ("\t", "tab", ".csv", "tab"),
        ("\t", "tab", ".csv", "\\t"),
    ],
)
def test_delimiters_detected_or_given(tmp_path, capsys, iris_rows, iris_model, sep, name,
                                      suffix, option):
    path = _write(tmp_path / f"iris{suffix}", iris_rows, sep=sep)
    extra = [] if option is None else ["--delimiter", option]
    rc, out, err = run(capsys, "evaluate", iris_model, path, *extra)
    assert rc == 0, err
    assert "150 samples" in out
    if option is None:
        assert f"{name}-separated" in out


def test_wrong_delimiter_names_the_option(tmp_path, capsys, iris_rows, iris_model):
    path = _write(tmp_path / "iris.csv", iris_rows, sep=";")
    rc, _, err = run(capsys, "evaluate", iris_model, path, "--delimiter", ",")
    assert rc == 1 and "--delimiter" in err


@pytest.mark.parametrize("bad", ["ab", "", "1", "\""])
def test_bad_delimiter_is_a_usage_error(tmp_path, capsys, bad):
    rc, _, err = run(capsys, "train", tmp_path / "x.csv", "--delimiter", bad)
    assert rc == 2 and "--delimiter" in err


def test_predict_takes_the_csv_options(tmp_path, capsys, iris_rows, iris_model):
    rows = [r[:4] for r in iris_rows]
    path = _write(tmp_path / "new.csv", rows, sep=";")
    rc, out, err = run(capsys, "predict", iris_model, path, "--no-header", "--delimiter", ";")
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "prediction" and len(lines) == 151


# -- feature scaling ----------------------------------------------------------------
@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory):
    X, y = load_wine(return_X_y=True)
    d = tmp_path_factory.mktemp("wine")
    return _write(d / "wine.csv", [[*(f"{v:.17g}" for v in x), t] for x, t in zip(X, y)])


def _accuracy(out, what="test"):
    return float(out.split(f"{what} accuracy:")[1].split()[0])


def test_cli_standardizes_by_default_wine(tmp_path, capsys, wine_csv):
    """The issue's case: 0.39 test accuracy unscaled; scikit-learn's wine with a scaler ~0.99."""
    model = tmp_path / "wine.npz"
    rc, out, err = run(capsys, "train", wine_csv, "-o", model, "-q")
    assert rc == 0, err
    assert "feature scaling standard" in out
    assert _accuracy(out) >= 0.95
    loaded = bpnet.load(model)
    assert type(loaded).__name__ == "Pipeline"
    assert type(loaded.steps[0][1]).__name__ == "StandardScaler"
    # evaluate and predict apply the stored scaler to raw features
    rc, out, err = run(capsys, "evaluate", model, wine_csv)
    assert rc == 0 and _accuracy(out.replace("accuracy:", "test accuracy:", 1)) >= 0.95
    rc, out, _ = run(capsys, "info", model)
    assert "scaling:    StandardScaler" in out


@pytest.mark.parametrize(("scale", "cls"), [("minmax", "MinMaxScaler"), ("none", None)])
def test_cli_scale_choices(tmp_path, capsys, wine_csv, scale, cls):
    model = tmp_path / f"wine-{scale}.npz"
    rc, out, err = run(capsys, "train", wine_csv, "-o", model, "-q", "--scale", scale)
    assert rc == 0, err
    loaded = bpnet.load(model)
    if cls is None:
        assert type(loaded).__name__ == "BPNetClassifier"
    else:
        assert type(loaded.steps[0][1]).__name__ == cls
        assert _accuracy(out) >= 0.9
    X, y = load_wine(return_X_y=True)
    rc, out, err = run(capsys, "evaluate", model, wine_csv)
    assert rc == 0 and f"accuracy: {np.mean(loaded.predict(X) == y):.4f}" in out


def test_early_stopping_does_not_stop_while_the_validation_loss_improves():
    """Validation accuracy plateaus at its maximum early on the scaled wine data;
    the fit goes on as long as the validation loss still falls."""
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = bpnet.BPNetClassifier(25, alpha=1.0, early_stopping=True, n_iter_no_change=5,
                                max_iter=500, tol=1e-5, random_state=0).fit(X, y)
    scores, vloss = clf.validation_scores_, clf.validation_loss_curve_
    first_best = int(np.argmax(scores))
    assert clf.n_iter_ > first_best + 1 + 5  # the old rule stopped right there
    assert clf.stop_reason_ in ("early_stopping", "converged")
    if clf.stop_reason_ == "early_stopping":  # stopped only once neither improved
        k = clf.n_iter_no_change
        assert min(vloss[-k:]) > min(vloss[:-k]) - clf.tol
        assert max(scores[-k:]) < max(scores[:-k]) + clf.tol
    # the kept parameters: best score, and the lowest validation loss among those
    best = [i for i, s in enumerate(scores) if s == max(scores)]
    kept = min(best, key=lambda i: vloss[i])
    assert clf.best_iteration_ == kept + 1


def test_stop_reasons_early_stopping_and_callback_differ():
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    kw = dict(alpha=1.0, early_stopping=True, n_iter_no_change=2, max_iter=500, random_state=0,
              solver="sgd", learning_rate_init=0.5)
    early = bpnet.BPNetClassifier(10, **kw).fit(X, y)
    assert early.stop_reason_ == "early_stopping"
    assert early.network_.result.stop_reason == "early_stopping"
    user = bpnet.BPNetClassifier(10, **kw).fit(X, y, callback=lambda i, loss, s: i >= 2)
    assert user.stop_reason_ == "callback" and user.n_iter_ == 2


def test_predict_reports_detection_on_stderr_keeping_stdout_csv(tmp_path, capsys, iris_rows,
                                                                iris_model):
    path = _write(tmp_path / "new.csv", [r[:4] for r in iris_rows])
    rc, out, err = run(capsys, "predict", iris_model, path)
    assert rc == 0, err
    assert out.splitlines()[0] == "prediction" and len(out.splitlines()) == 151
    assert "no header row detected" in err

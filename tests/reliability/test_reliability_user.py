"""Bad input to the user layer: the scikit-learn estimators, model loading and
the command line. Every case gives a Python exception of a stated type whose
message names the argument and the value (or, for the command line, a non-zero
exit with one line on stderr and no traceback), never a crash or a silently
wrong model. tests/reliability/test_reliability_inputs.py covers the functional API and the
core; tests/files/test_persist.py and tests/cli/test_cli.py the common cases."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from loadaware import generous

pytest.importorskip("sklearn")

import bpnet
from bpnet.cli import main
from bpnet.persist import ModelFileError

C, R = bpnet.BPNetClassifier, bpnet.BPNetRegressor
RNG = np.random.default_rng(5)
X = RNG.standard_normal((30, 3))
Y = np.arange(30) % 2
YR = X[:, 0] * 2.0


def nan_at(a, value=np.nan, index=(1, 2)):
    b = np.array(a, dtype=np.float64)
    b[index if b.ndim == 2 else index[0]] = value
    return b


def quiet_fit(est, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the tiny max_iter
        return est.fit(*args, **kw)


@pytest.fixture(scope="module")
def fitted():
    return quiet_fit(C(3, max_iter=3, random_state=0), X, Y), quiet_fit(
        R(3, max_iter=3, random_state=0), X, YR
    )


# --- hyperparameters: each named in the error with its value --------------------------
BAD_PARAMS = [
    ("hidden_layer_sizes", 0),
    ("hidden_layer_sizes", (3, -1)),
    ("hidden_layer_sizes", "3"),
    ("hidden_layer_sizes", (2.5,)),
    ("hidden_layer_sizes", True),
    ("activation", "gelu"),
    ("solver", "newton"),
    ("alpha", -1.0),
    ("alpha", np.nan),
    ("alpha", "1"),
    ("batch_size", 0),
    ("batch_size", "big"),
    ("batch_size", 2.0),
    ("learning_rate_init", 0.0),
    ("learning_rate_init", np.inf),
    ("momentum", 1.0),
    ("beta_1", -0.1),
    ("beta_2", 1.0),
    ("epsilon", 0.0),
    ("max_iter", 0),
    ("max_iter", 2.5),
    ("max_iter", True),
    ("tol", -1.0),
    ("tol", np.inf),
    ("validation_fraction", 1.0),
    ("validation_fraction", 0.0),
    ("n_iter_no_change", 0),
    ("n_threads", 0),
    ("n_threads", -3),
    ("n_threads", 2.0),
    ("dtype", "float16"),
    ("dtype", "int"),
    ("dtype", np.complex128),
    ("shuffle", "yes"),
    ("early_stopping", 1),
    ("warm_start", None),
    ("nesterovs_momentum", "no"),
]


@pytest.mark.parametrize("cls", [C, R], ids=["classifier", "regressor"])
@pytest.mark.parametrize(("name", "value"), BAD_PARAMS, ids=[f"{n}={v!r}" for n, v in BAD_PARAMS])
def test_bad_hyperparameter_is_named_with_its_value(cls, name, value):
    est = cls(**{name: value})
    with pytest.raises(ValueError, match=rf"^{name} .*got") as info:
        est.fit(X, Y if cls is C else YR)
    shown = repr(value) if not isinstance(value, type) else value.__name__
    assert shown.strip("'") in str(info.value)
    assert not hasattr(est, "network_")  # nothing half-fitted


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("weird", r"class_weight must be None, 'balanced' or a dict; got 'weird'"),
        ([1, 2], r"class_weight .*got \[1, 2\]"),
        ({0: -1.0, 1: 1.0}, r"class_weight\[0\] must be a finite number >= 0; got -1.0"),
        ({0: np.nan, 1: 1.0}, r"class_weight\[0\] .*got nan"),
        ({0: "heavy", 1: 1.0}, r"class_weight\[0\] .*got 'heavy'"),
        ({5: 1.0}, r"class_weight"),  # scikit-learn: labels missing from class_weight
    ],
)
def test_bad_class_weight(value, pattern):
    with pytest.raises(ValueError, match=pattern):
        C(3, class_weight=value, max_iter=2).fit(X, Y)


def test_bad_random_state_is_reported():
    with pytest.raises(ValueError, match=r"random_state must be None, an int .*Generator; got 'x'"):
        C(3, random_state="x", max_iter=2).fit(X, Y)
    with pytest.raises(ValueError, match=r"[Ss]eed"):
        C(3, random_state=-1, max_iter=2).fit(X, Y)


# --- data: non-finite values, shapes, empty, classes -----------------------------------
W = np.ones(len(X))
DATA_CASES = [
    # (id, estimator, X, y, sample_weight, message)
    ("X nan", C, nan_at(X), Y, None, r"Input X contains NaN"),
    ("X inf", R, nan_at(X, np.inf), YR, None, r"Input X contains infinity"),
    ("X -inf", C, nan_at(X, -np.inf), Y, None, r"Input X contains infinity"),
    ("X beyond float32", C(dtype="float32"), X * 1e39, Y, None, r"X contains infinity.*float32"),
    ("y nan regressor", R, X, nan_at(YR), None, r"Input y contains NaN"),
    ("y inf regressor", R, X, nan_at(YR, np.inf), None, r"Input y contains infinity"),
    ("y nan classifier", C, X, nan_at(Y), None, r"Input y contains NaN"),
    ("y nan multilabel", C, X, nan_at(np.eye(2)[Y], index=(3, 1)), None, r"y contains NaN"),
    ("w nan", C, X, Y, nan_at(W), r"sample_weight contains NaN"),
    ("w inf", R, X, YR, nan_at(W, np.inf), r"sample_weight contains infinity"),
    ("w beyond float32", R(dtype="float32"), X, YR, W * 1e39, r"sample_weight contains inf"),
    ("w negative", C, X, Y, -W, r"[Nn]egative values .*sample_weight"),
    ("w all zero", C, X, Y, 0 * W, r"[Ss]ample weights must contain at least one non-zero"),
    ("w length", C, X, Y, W[:5], r"sample_weight\.shape == \(5,\), expected \(30,\)"),
    ("w 2-D", R, X, YR, W[:, None], r"[Ss]ample weights must be 1D"),
    ("w strings", C, X, Y, np.array(["a"] * 30), r"could not convert string to float"),
    ("y length", C, X, Y[:5], None, r"inconsistent numbers of samples: \[30, 5\]"),
    ("X 1-D", C, X[:, 0], Y, None, r"Expected 2D array, got 1D array"),
    ("X 3-D", R, X[None], YR, None, r"dim 3"),
    ("X None", C, None, Y, None, r"Expected 2D array"),
    ("X strings", C, np.array([["a"] * 3] * 30), Y, None, r"could not convert string"),
    ("X complex", R, X + 1j, YR, None, r"Complex data not supported"),
    ("X ragged", C, [[1.0, 2.0], [3.0]], [0, 1], None, r"inhomogeneous"),
    ("X empty", C, X[:0], Y[:0], None, r"0 sample\(s\) \(shape=\(0, 3\)\)"),
    ("X no features", R, X[:, :0], YR, None, r"0 feature\(s\) \(shape=\(30, 0\)\)"),
    ("y None", C, X, None, None, r"requires y to be passed"),
    ("y 3-D regressor", R, X, np.ones((30, 1, 1)), None, r"dim 3"),
    ("y strings regressor", R, X, np.array(["a"] * 30), None, r"could not convert string"),
    ("single class", C, X, np.zeros(30), None, r"at least 2 classes in y.*got 1 class: \[0\.0\]"),
    ("continuous labels", C, X, YR, None, r"Unknown label type: continuous"),
    ("mixed labels", C, X, np.array([1, "a"] * 15, dtype=object), None,
     r"y mixes label types \(a number at index 0, a string at index 1\)"),
]


@pytest.mark.parametrize(
    ("est", "Xd", "yd", "w", "pattern"), [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES]
)
def test_bad_training_data(est, Xd, yd, w, pattern):
    est = est(3, max_iter=2) if isinstance(est, type) else est.set_params(max_iter=2)
    with pytest.raises(ValueError, match=pattern):
        est.fit(Xd, yd, sample_weight=w)


def test_predict_before_fit():
    from sklearn.exceptions import NotFittedError

    for est, calls in (
        (C(), (lambda e: e.predict(X), lambda e: e.predict_proba(X), lambda e: e.score(X, Y))),
        (R(), (lambda e: e.predict(X), lambda e: e.score(X, YR))),
    ):
        for call in calls:
            with pytest.raises(NotFittedError, match=rf"This {type(est).__name__} .*not fitted"):
                call(est)


@pytest.mark.parametrize(
    ("which", "Xp", "pattern"),
    [
        (0, X[:, :2], r"X has 2 features, but BPNetClassifier is expecting 3"),
        (1, np.ones((4, 5)), r"X has 5 features, but BPNetRegressor is expecting 3"),
        (0, nan_at(X), r"Input X contains NaN"),
        (1, nan_at(X, np.inf), r"Input X contains infinity"),
        (0, X * 1e300, None),  # finite: a saturated, finite prediction
        (0, X[:0], r"0 sample\(s\)"),
        (1, X[0], r"Expected 2D array, got 1D"),
        (0, X[None], r"dim 3"),
    ],
)
def test_bad_prediction_input(fitted, which, Xp, pattern):
    est = fitted[which]
    if pattern is None:
        p = est.predict_proba(Xp)
        assert np.isfinite(p).all()
        return
    with pytest.raises(ValueError, match=pattern):
        est.predict(Xp)


def test_predict_on_float32_model_with_values_beyond_float32(fitted):
    est = quiet_fit(C(3, dtype="float32", max_iter=2, random_state=0), X, Y)
    with pytest.raises(ValueError, match=r"X contains infinity.*float32"):
        est.predict(X * 1e39)


def test_warm_start_and_partial_fit_misuse():
    est = quiet_fit(C(3, warm_start=True, max_iter=2, random_state=0), X, Y)
    with pytest.raises(ValueError, match=r"X has 2 features, but BPNetClassifier is expecting 3"):
        est.fit(X[:, :2], Y)
    with pytest.raises(ValueError, match=r"classes must be passed on the first call"):
        C(3, solver="adam").partial_fit(X, Y)
    with pytest.raises(AttributeError, match=r"partial_fit"):
        C(3).partial_fit(X, Y, classes=[0, 1])
    pf = C(3, solver="adam", random_state=0).partial_fit(X, Y, classes=[0, 1])
    theta = pf.network_.theta.copy()
    with pytest.raises(ValueError, match=r"classes=\[0, 1, 2\] differs from .*\[0, 1\]"):
        pf.partial_fit(X, Y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"y contains labels not in classes_ \[0, 1\]: \[5, 6\]"):
        pf.partial_fit(X, Y + 5)
    np.testing.assert_array_equal(pf.network_.theta, theta)  # the failed calls changed nothing
    with pytest.raises(ValueError, match=r"at least 2 classes"):
        C(3, solver="adam").partial_fit(X, Y, classes=[0])
    reg = R(3, solver="sgd", random_state=0).partial_fit(X, YR)
    with pytest.raises(ValueError, match=r"y has 2 targets; expected 1"):
        reg.partial_fit(X, np.c_[YR, YR])


def test_absurd_hidden_layer_is_a_memory_or_value_error():
    for h in ((10**7, 10**7), (2**40,)):
        with pytest.raises((MemoryError, ValueError), match=r"allocate|layer_sizes|memory"):
            C(h, max_iter=1).fit(X, Y)


def test_divergence_is_reported_with_the_iteration():
    with pytest.raises(FloatingPointError, match=r"non-finite (loss|cost).* at iteration 1"):
        R(3, max_iter=2, random_state=0).fit(X, YR * 1e300)


# --- model loading ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_bytes(fitted, tmp_path_factory):
    path = fitted[0].save(tmp_path_factory.mktemp("user") / "m.npz")
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (None, r"no such file"),
        (b"", r"not a readable bpnet model file \(truncated or corrupted\?\)"),
        (b"hello, world\n", r"not a readable bpnet model file"),
        (b"PK\x03\x04" + b"\x00" * 40, r"not a readable bpnet model file"),
        ("half", r"not a readable bpnet model file"),
        ("npy", r"a bare \.npy array"),
        ("csv", r"not a readable bpnet model file"),
        ("plain npz", r"no 'metadata' entry"),
    ],
)
def test_load_bad_files(tmp_path, model_bytes, content, pattern):
    path = tmp_path / "model.npz"
    if content == "half":
        path.write_bytes(model_bytes[: len(model_bytes) // 2])
    elif content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.arange(4.0))
    elif content == "csv":
        path.write_text("a,b\n1,2\n")
    elif content == "plain npz":
        with open(path, "wb") as f:
            np.savez(f, X=X)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=pattern) as info:
        bpnet.load(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


def test_load_directory_and_wrong_argument_types(tmp_path):
    with pytest.raises(ModelFileError, match=r"is a directory, not a model file"):
        bpnet.load(tmp_path)
    for bad in (None, 3):
        with pytest.raises(TypeError, match=r"str, bytes or os\.PathLike"):
            bpnet.load(bad)


def test_save_to_a_missing_directory_names_the_destination(fitted, tmp_path):
    dest = tmp_path / "no" / "such" / "m.npz"
    with pytest.raises(FileNotFoundError, match=r"No such file or directory") as info:
        fitted[0].save(dest)
    assert str(dest) in str(info.value) and ".tmp" not in str(info.value)


# --- the command line: exit 1 (data/model problems) or 2 (usage), one line, no traceback
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, model_bytes):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(1)
    Xc = rng.standard_normal((40, 4))
    yc = (Xc[:, 0] > 0).astype(int)
    with open(d / "ok.csv", "w") as f:
        f.write("a,b,c,d,label\n")
        for r, lab in zip(Xc, yc):
            f.write(",".join(map(str, r)) + f",{lab}\n")
    (d / "empty.csv").write_text("")
    (d / "header.csv").write_text("a,b,label\n")
    (d / "ragged.csv").write_text("a,b,label\n1,2,0\n3,0\n")
    (d / "nan.csv").write_text("a,b,label\n1,nan,0\n3,4,1\n")
    (d / "inf.csv").write_text("a,b,label\n1,2,0\n3,-inf,1\n")
    (d / "one.csv").write_text("a,b,label\n" + "".join(f"{i},{i + 1},0\n" for i in range(10)))
    (d / "binary.csv").write_bytes(b"\xff\xfe\x00\x01" * 10)
    (d / "label_only.csv").write_text("label\n0\n1\n")
    np.savez(d / "noX.npz", A=Xc)
    np.savez(d / "x1d.npz", X=Xc[:, 0], y=yc)
    np.savez(d / "ylen.npz", X=Xc, y=yc[:5])
    np.savez(d / "xstr.npz", X=np.array([["a"] * 4] * 40), y=yc)
    np.savez(d / "xnan.npz", X=np.where(Xc > 1, np.nan, Xc), y=yc)
    np.savez(d / "y2d.npz", X=Xc, y=np.ones((40, 2)))
    (d / "bad.mat").write_bytes(b"MATLAB garbage" * 5)
    (d / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    with open(d / "npy.npz", "wb") as f:
        np.save(f, Xc)
    (d / "trunc_data.npz").write_bytes((d / "xnan.npz").read_bytes()[:300])
    (d / "model.npz").write_bytes(model_bytes)  # 3 features
    (d / "empty.npz").write_bytes(b"")
    (d / "trunc.npz").write_bytes(model_bytes[: len(model_bytes) // 2])
    return d


CLI_ERRORS = [
    (["train", "empty.csv"], 1, "empty.csv: the file is empty"),
    (["train", "header.csv"], 1, "header.csv: the file has a header but no data rows"),
    (["train", "ragged.csv"], 1, "ragged.csv: line 3 has 2 fields; expected 3"),
    (["train", "nan.csv"], 1, "nan.csv: X has a missing or non-finite value at row 0, column 1"),
    (["train", "inf.csv"], 1, "inf.csv: X has a missing or non-finite value at row 1, column 1"),
    (["train", "one.csv"], 1, "one.csv: training needs at least 2 classes"),
    (["train", "binary.csv"], 1, "binary.csv: not a text CSV file"),
    (["train", "label_only.csv"], 1, "no feature columns left besides the label column"),
    (["train", "noX.npz"], 1, "noX.npz: no array 'X' (found: ['A'])"),
    (["train", "x1d.npz"], 1, "x1d.npz: X must be a 2-D numeric array; got float64 (40,)"),
    (["train", "ylen.npz"], 1, "ylen.npz: y has shape (5,); expected (40,)"),
    (["train", "y2d.npz"], 1, "y2d.npz: y has shape (40, 2)"),
    (["train", "xstr.npz"], 1, "xstr.npz: X must be a 2-D numeric array; got <U1"),
    (["train", "xnan.npz"], 1, "xnan.npz: X has a missing or non-finite value"),
    (["train", "bad.mat"], 1, "bad.mat: not a readable MATLAB file"),
    (["train", "bad.npz"], 1, "bad.npz: not a readable .npz file"),
    (["train", "npy.npz"], 1, "npy.npz: a bare .npy array, not an .npz archive"),
    (["train", "trunc_data.npz"], 1, "trunc_data.npz: not a readable .npz file"),
    (["train", "."], 1, ".: is a directory, not a data file"),
    (["train", "ok.csv", "--ten-is-zero"], 1, "--ten-is-zero expects labels 1..10"),
    # issue 20 item 9: named by the flag typed, not the estimator's parameter (alpha, ...)
    (["train", "ok.csv", "--lambda", "-1"], 2, "--lambda: expected a finite number >= 0; got -1.0"),
    (["train", "ok.csv", "--lambda", "nan"], 2, "--lambda: expected a finite number >= 0; got nan"),
    (["train", "ok.csv", "--solver", "adam", "--learning-rate", "0"], 2,
     "--learning-rate: expected a finite number > 0; got 0.0"),
    (["train", "ok.csv", "--tol", "-1"], 2, "--tol: expected a finite number >= 0; got -1.0"),
    (["train", "ok.csv", "-q", "--iterations", "2", "-o", "nodir/m.npz"], 1,
     "-o/--output nodir/m.npz: the directory"),
    (["train", "ok.csv", "--iterations", "0"], 2, "--iterations: expected an int >= 1; got 0"),
    (["train", "ok.csv", "--threads", "0"], 2, "--threads: expected an int >= 1; got 0"),
    (["train", "ok.csv", "--validation-split", "1.5"], 2, "--validation-split: expected"),
    (["train", "ok.csv", "--test-split", "x"], 2, "--test-split: expected a number"),
    (["train", "ok.csv", "--hidden", "0,3"], 2, "layer sizes must be >= 1; got '0,3'"),
    (["train", "ok.csv", "--solver", "newton"], 2, "invalid choice: 'newton'"),
    (["evaluate", "missing.npz", "ok.csv"], 1, "missing.npz: no such file"),
    (["evaluate", "empty.npz", "ok.csv"], 1, "empty.npz: not a readable bpnet model file"),
    (["evaluate", "trunc.npz", "ok.csv"], 1, "trunc.npz: not a readable bpnet model file"),
    (["evaluate", ".", "ok.csv"], 1, ".: is a directory, not a model file"),
    (["evaluate", "model.npz", "ok.csv"], 1, "ok.csv: has 4 feature columns; the model expects 3"),
    (["evaluate", "model.npz", "header.csv"], 1, "header.csv: the file has a header but no"),
    (["evaluate", "model.npz", "x1d.npz"], 1, "x1d.npz: X must be a 2-D numeric array"),
    (["predict", "model.npz", "nan.csv"], 1, "nan.csv: X has a missing or non-finite value"),
    (["predict", "model.npz", "noX.npz"], 1, "noX.npz: no array 'X'"),
    (["predict", "ok.csv", "ok.csv"], 1, "ok.csv: not a readable bpnet model file"),
    (["info", "empty.npz"], 1, "empty.npz: not a readable bpnet model file"),
    (["info", "trunc.npz"], 1, "trunc.npz: not a readable bpnet model file"),
    (["info", "missing.npz"], 1, "missing.npz: no such file"),
    (["gradcheck", "--model", "trunc.npz"], 1, "trunc.npz: not a readable bpnet model file"),
    (["gradcheck", "--layers", "3"], 2, "--layers needs at least 2 sizes"),
    (["gradcheck", "--layers", "3,x"], 2, "expected comma-separated ints"),
    (["gradcheck", "--examples", "0"], 2, "--examples: expected an int >= 1; got 0"),
    (["bogus"], 2, "invalid choice: 'bogus'"),
    ([], 2, "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize(
    ("args", "code", "message"), CLI_ERRORS, ids=[" ".join(a[0]) or "(none)" for a in CLI_ERRORS]
)
def test_cli_user_errors_in_process(cli_files, args, code, message, capsys, monkeypatch):
    monkeypatch.chdir(cli_files)
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse usage errors exit through SystemExit(2)
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert message in lines[-1], err
    if code == 1:  # a data or model problem: exactly one line
        assert len(lines) == 1 and lines[0].startswith(f"bpnet {args[0]}: error: "), err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "trunc.npz", "ok.csv"], "trunc.npz: not a readable bpnet model file"),
        (["train", "one.csv", "--quiet"], "one.csv: training needs at least 2 classes"),
    ],
)
def test_cli_user_errors_real_process(cli_files, args, message):
    out = subprocess.run(
        [sys.executable, "-m", "bpnet", *args],
        capture_output=True,
        text=True,
        cwd=cli_files,
        timeout=generous(120),
    )
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bpnet {args[0]}: error: "), out.stderr
    assert message in lines[0]

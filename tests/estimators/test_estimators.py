"""The scikit-learn estimators: the check suite, early stopping, partial_fit,
warm_start, class_weight, dtype, pipelines and grid search."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import bpnet  # noqa: E402
from bpnet import BPNetClassifier, BPNetRegressor  # noqa: E402

# -- scikit-learn's own estimator checks ---------------------------------------

ESTIMATORS = [
    BPNetClassifier(),
    BPNetRegressor(),
    BPNetClassifier(solver="adam"),  # exercises the partial_fit checks
    BPNetRegressor(solver="sgd", learning_rate_init=0.01),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- behaviour ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return X[:1200], y[:1200], X[1200:], y[1200:]


def test_import_bpnet_does_not_import_sklearn():
    code = "import sys, bpnet; assert 'sklearn' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert bpnet.BPNetClassifier is BPNetClassifier


@pytest.mark.parametrize("solver", ["lbfgs", "cg", "adam", "sgd"])
def test_early_stopping_every_solver_keeps_best(digits, solver):
    X, y, Xt, yt = digits
    clf = BPNetClassifier(
        25, alpha=1.0, solver=solver, early_stopping=True, n_iter_no_change=5,
        max_iter=300, random_state=0, learning_rate_init=0.01 if solver == "adam" else 0.1,
    ).fit(X, y)
    n = clf.n_iter_
    assert len(clf.loss_curve_) == len(clf.validation_scores_) == n
    assert len(clf.validation_loss_curve_) == n
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert n < 300 and clf.stop_reason_ == "early_stopping"
    # the kept parameters are the best ones: recompute their validation score
    best_at = int(np.argmax(clf.validation_scores_))
    assert n - 1 - best_at >= 5
    assert clf.score(Xt, yt) > 0.8


def test_early_stopping_restores_best_theta():
    """The final model scores best_validation_score_ on the held-out split, not
    the (worse) score of the last epoch."""
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16
    clf = BPNetClassifier(10, solver="sgd", learning_rate_init=0.5, early_stopping=True,
                          n_iter_no_change=3, max_iter=100, random_state=1)
    scores = []
    clf.fit(X, y, callback=lambda i, loss, s: scores.append(s))
    assert scores == clf.validation_scores_
    # replay the estimator's RandomState stream: one seed draw, then the split
    rs = np.random.RandomState(1)
    rs.randint(np.iinfo(np.int32).max)
    _, Xv, _, yv = train_test_split(X, y, test_size=0.1, random_state=rs, stratify=y)
    assert clf.score(Xv, yv) == clf.best_validation_score_ == max(scores)


def test_loss_curve_and_verbose(digits, capsys):
    X, y, _, _ = digits
    clf = BPNetClassifier(10, max_iter=5, verbose=True, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter=5"):
        clf.fit(X, y)
    assert len(clf.loss_curve_) == clf.n_iter_ == 5
    assert np.all(np.diff(clf.loss_curve_) < 0)
    assert "Iteration 5, loss = " in capsys.readouterr().out


def test_callback_stops(digits):
    X, y, _, _ = digits
    seen = []
    clf = BPNetClassifier(10, random_state=0)
    clf.fit(X, y, callback=lambda i, loss, s: seen.append((i, loss, s)) or i >= 3)
    assert [s[0] for s in seen] == [1, 2, 3] and seen[0][2] is None
    assert clf.stop_reason_ == "callback"


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_keeps_optimizer_state(digits, solver):
    """n partial_fit calls without shuffling == one fit of n epochs (same state flow)."""
    X, y, _, _ = digits
    kw = dict(hidden_layer_sizes=10, activation="sigmoid", solver=solver, shuffle=False,
              random_state=0, learning_rate_init=0.01, tol=0.0, max_iter=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = BPNetClassifier(**kw).fit(X, y)
    b = BPNetClassifier(**kw)
    for _ in range(4):
        b.partial_fit(X, y, classes=np.arange(10))
    np.testing.assert_array_equal(a.network_.theta, b.network_.theta)
    assert a.loss_curve_ == b.loss_curve_ and b.n_iter_ == 4
    assert b._optimizer_state["step"] == 4 * 6


def test_partial_fit_errors(digits):
    X, y, _, _ = digits
    assert not hasattr(BPNetClassifier(solver="lbfgs"), "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit") as info:
        BPNetClassifier(solver="lbfgs").partial_fit(X, y)
    assert "solver='lbfgs'" in str(info.value.__cause__)
    with pytest.raises(ValueError, match="classes must be passed"):
        BPNetClassifier(solver="adam").partial_fit(X, y)
    clf = BPNetClassifier(solver="adam").partial_fit(X[:10], y[:10], classes=np.arange(10))
    with pytest.raises(ValueError, match="differs"):
        clf.partial_fit(X, y, classes=np.arange(5))


def test_warm_start_continues(digits):
    X, y, _, _ = digits
    clf = BPNetClassifier(10, max_iter=5, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        theta5 = clf.network_.theta.copy()
        loss5 = clf.loss_
        clf.fit(X, y)
    assert clf.n_iter_ == 10 and len(clf.loss_curve_) == 10
    assert clf.loss_ < loss5 and not np.array_equal(theta5, clf.network_.theta)
    cold = clone(clf).set_params(warm_start=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cold.fit(X, y)
    assert cold.n_iter_ == 5


def test_class_weight_equals_sample_weight(digits):
    X, y, _, _ = digits
    cw = {k: 1.0 + k for k in range(10)}
    a = BPNetClassifier(10, class_weight=cw, random_state=0, max_iter=30, tol=1e-12)
    b = BPNetClassifier(10, random_state=0, max_iter=30, tol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a.fit(X, y)
        b.fit(X, y, sample_weight=1.0 + y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-6, atol=1e-9)
    c = BPNetClassifier(10, class_weight="balanced", random_state=0).fit(X[:300], y[:300])
    assert c.score(X, y) > 0.7


def test_dtype_float32(digits):
    X, y, Xt, yt = digits
    # tol is L-BFGS's gradient tolerance (scikit-learn's meaning): 211 iterations here,
    # as MLPClassifier's 204 on the same data, so max_iter=200 would warn
    clf = BPNetClassifier(25, alpha=1.0, dtype="float32", random_state=0, max_iter=400).fit(X, y)
    assert clf.network_.theta.dtype == np.float32
    assert clf.predict_proba(Xt).dtype == np.float32
    assert clf.score(Xt, yt) > 0.85


def test_string_labels_binary_and_multilabel():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    y = np.where(X[:, 0] > 0, "yes", "no")
    clf = BPNetClassifier(5, random_state=0).fit(X, y)
    assert list(clf.classes_) == ["no", "yes"] and clf.predict_proba(X).shape == (120, 2)
    assert clf.score(X, y) > 0.9
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0], axis=1).astype(int)
    ml = BPNetClassifier(5, random_state=0).fit(X, Y)
    assert ml.predict(X).shape == (120, 2) and ml.network_.output == "sigmoid"
    assert ml.score(X, Y) > 0.8


def test_regressor_multioutput_and_score():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (200, 2))
    Y = np.stack([X[:, 0] ** 2, X[:, 0] * X[:, 1]], axis=1)
    reg = BPNetRegressor(20, activation="tanh", random_state=0, max_iter=500, tol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y)
    assert reg.predict(X).shape == (200, 2) and reg.network_.output == "identity"
    assert reg.score(X, Y) > 0.9
    one = BPNetRegressor(5, random_state=0).fit(X, Y[:, 0])
    assert one.predict(X).shape == (200,)


def test_pipeline_and_grid_search(digits):
    X, y, _, _ = digits
    pipe = make_pipeline(StandardScaler(), BPNetClassifier(10, random_state=0, max_iter=50))
    grid = GridSearchCV(pipe, {"bpnetclassifier__alpha": [0.1, 3.0]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X[:400], y[:400])
    assert grid.best_params_["bpnetclassifier__alpha"] in (0.1, 3.0)
    assert grid.score(X[400:], y[400:]) > 0.8


@pytest.mark.parametrize(
    ("param", "value", "match"),
    [
        ("hidden_layer_sizes", (5, 0), "hidden_layer_sizes must hold ints >= 1"),
        ("activation", "softplus", "activation must be one of"),
        ("solver", "newton", "solver must be one of"),
        ("alpha", -1.0, r"alpha must be a finite number >= 0; got -1.0"),
        ("batch_size", 0, "batch_size must be 'auto' or an int >= 1; got 0"),
        ("learning_rate_init", 0.0, "learning_rate_init must be"),
        ("momentum", 1.0, r"momentum must be in \[0, 1\); got 1.0"),
        ("max_iter", 0, "max_iter must be an int >= 1; got 0"),
        ("validation_fraction", 1.0, "validation_fraction must be in"),
        ("n_iter_no_change", 0, "n_iter_no_change must be"),
        ("dtype", "float16", "dtype must be 'float64' or 'float32'; got 'float16'"),
        ("n_threads", 0, "n_threads"),
        ("class_weight", "auto", "class_weight must be"),
    ],
)
def test_parameter_errors_name_the_value(param, value, match):
    X = np.random.default_rng(0).standard_normal((20, 2))
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match=match):
        BPNetClassifier(**{param: value}).fit(X, y)


# tol is the gradient tolerance (scikit-learn's meaning): this fit may reach max_iter,
# which is not what the test checks
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_client_is_passed_to_network_fit(monkeypatch):
    seen = {}
    real = bpnet.Network.fit

    def fake_fit(self, *a, **kw):
        seen.update(kw)
        kw.pop("client", None)
        return real(self, *a, **kw)

    monkeypatch.setattr(bpnet.Network, "fit", fake_fit)
    X = np.random.default_rng(0).standard_normal((30, 2))
    BPNetClassifier(3, client="CLIENT").fit(X, np.arange(30) % 2)
    assert seen["client"] == "CLIENT"
    seen.clear()
    BPNetClassifier(3).fit(X, np.arange(30) % 2)
    assert "client" not in seen  # not passed at all when None


# -- the finiteness check of X --------------------------------------------------------


@pytest.mark.parametrize("Est", [BPNetClassifier, BPNetRegressor])
@pytest.mark.parametrize("layout", ["dense", "fortran", "csr", "float32"])
@pytest.mark.parametrize("where", [0, -1])  # -1: in the last of the scan's 16 Ki chunks
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["fit", "predict"])
def test_a_non_finite_X_gets_scikit_learns_own_error(monkeypatch, Est, layout, where, bad,
                                                     method):
    """The estimators scan X for NaN and inf with the core's threaded scan, once per
    fit or predict, and a non-finite X gets exactly the error scikit-learn's
    check_array gives (the message names the estimator, X and the dtype)."""
    from scipy import sparse
    from sklearn.utils.validation import check_array

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 64))  # 19,200 values: two chunks of the scan
    y = (X[:, 0] > 0).astype(int) if Est is BPNetClassifier else X[:, 0].copy()
    est = Est(hidden_layer_sizes=3, max_iter=2, n_threads=2,
              dtype="float32" if layout == "float32" else None)
    bad_X = X.copy()
    bad_X.flat[where] = bad

    def arrange(A):
        if layout == "fortran":
            return np.asfortranarray(A)
        if layout == "csr":
            return sparse.csr_matrix(A)
        return A

    if method == "predict":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(arrange(X), y)
    calls = []
    scan = bpnet._runtime.all_finite
    monkeypatch.setattr(bpnet._runtime, "all_finite",
                        lambda x, n: calls.append((x.dtype, x.size, n)) or scan(x, n))
    dtype = np.float32 if layout == "float32" else np.float64
    with pytest.raises(ValueError) as expected:
        check_array(arrange(bad_X), accept_sparse="csr", dtype=dtype, estimator=est,
                    input_name="X")
    with pytest.raises(ValueError) as got:
        if method == "fit":
            est.fit(arrange(bad_X), y)
        else:
            est.predict(arrange(bad_X))
    assert str(got.value) == str(expected.value)
    assert calls == [(np.dtype(dtype), X.size, 2)]  # the one scan, of all of X
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        getattr(est, method)(*((arrange(X), y) if method == "fit" else (arrange(X),)))
    assert calls == [(np.dtype(dtype), X.size, 2)]


def test_assume_finite_skips_the_scan_of_X(monkeypatch):
    """scikit-learn's assume_finite setting skips bpnet's scan as it skips its own."""
    calls = []
    monkeypatch.setattr(bpnet._runtime, "all_finite", lambda x, n: calls.append(n) or True)
    X = np.random.default_rng(0).normal(size=(40, 3))
    est = BPNetRegressor(hidden_layer_sizes=2, max_iter=2)
    with warnings.catch_warnings(), sklearn.config_context(assume_finite=True):
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, X[:, 0]).predict(X)
    assert calls == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, X[:, 0]).predict(X)
    assert calls == [None, -1]  # fit: the estimator's n_threads; predict: the network's

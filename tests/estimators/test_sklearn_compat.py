"""A drop-in for MLPClassifier / MLPRegressor: scikit-learn's fitted attributes
(views of theta), learning_rate / power_t / max_fun, float32 kept as float32,
and to_sklearn() / from_sklearn() predicting the same to 1e-12."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler

import bpnet
from bpnet import BPNetClassifier, BPNetRegressor
from bpnet.optimize import minimize_minibatch


def _std(X):
    return StandardScaler().fit_transform(X)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return _std(X), y


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return _std(X), y


def _quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


# -- fitted attributes ------------------------------------------------------------
def test_coefs_and_intercepts_are_views_in_sklearn_layout(iris):
    X, y = iris
    clf = BPNetClassifier((6, 5), max_iter=300, random_state=0).fit(X, y)
    sk = _quiet_fit(MLPClassifier((6, 5), max_iter=5, random_state=0), X, y)
    assert [W.shape for W in clf.coefs_] == [W.shape for W in sk.coefs_]
    assert [b.shape for b in clf.intercepts_] == [b.shape for b in sk.intercepts_]
    theta = clf.network_.theta
    for l, (W, b, T) in enumerate(zip(clf.coefs_, clf.intercepts_, clf.network_.thetas)):
        assert np.shares_memory(W, theta) and np.shares_memory(b, theta), l
        np.testing.assert_array_equal(W, T[:, 1:].T, err_msg=f"coefs_[{l}]")
        np.testing.assert_array_equal(b, T[:, 0], err_msg=f"intercepts_[{l}]")
    before = clf.predict_proba(X)
    clf.intercepts_[-1][0] += 5.0  # writes go through to the network
    assert not np.array_equal(before, clf.predict_proba(X))
    assert (clf.n_layers_, clf.n_outputs_, clf.out_activation_) == (4, 3, "softmax")
    assert sk.n_layers_ == clf.n_layers_


def test_fitted_attributes_per_kind(iris):
    X, y = iris
    Y = np.column_stack([y == 0, y == 1]).astype(int)
    multi = BPNetClassifier(4, max_iter=300, random_state=0).fit(X, Y)
    assert multi.out_activation_ == "logistic" and multi.n_outputs_ == 2
    reg = BPNetRegressor(4, max_iter=300, random_state=0).fit(X, X[:, 0])
    assert reg.out_activation_ == "identity" and reg.n_layers_ == 3


def test_unfitted_has_no_fitted_attributes():
    clf = BPNetClassifier()
    for name in ("coefs_", "intercepts_", "n_layers_", "out_activation_"):
        assert not hasattr(clf, name), name


def test_t_counts_samples_seen_and_best_loss(iris):
    X, y = iris
    clf = BPNetClassifier(4, solver="adam", max_iter=7, tol=0, random_state=0)
    _quiet_fit(clf, X, y)
    assert clf.t_ == 7 * len(X)
    clf.partial_fit(X[:50], y[:50])
    assert clf.t_ == 7 * len(X) + 50
    assert clf.best_loss_ == min(clf.loss_curve_)
    full = BPNetClassifier(4, max_iter=400, random_state=0).fit(X, y)
    assert full.t_ == full.n_iter_ * len(X)


def test_new_attributes_survive_a_model_file(tmp_path, iris):
    X, y = iris
    clf = BPNetClassifier(4, solver="sgd", learning_rate="invscaling", random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    clf.partial_fit(X, y)
    back = bpnet.load(clf.save(tmp_path / "m.npz"))
    assert back.t_ == clf.t_ == 2 * len(X)
    assert back._optimizer_state["lr"] == clf._optimizer_state["lr"]
    clf.partial_fit(X, y)
    back.partial_fit(X, y)
    assert back.predict_proba(X).tobytes() == clf.predict_proba(X).tobytes()


# -- learning_rate, power_t, max_fun --------------------------------------------------
def _quadratic(theta, rows, grad):
    grad[...] = theta - 1.0
    return float(0.5 * np.sum((theta - 1.0) ** 2))


def test_invscaling_schedule_follows_scikit_learn():
    state = {}
    m = 20
    minimize_minibatch(_quadratic, np.zeros(3), m, solver="sgd", max_iter=4, batch_size=5,
                       learning_rate=0.1, tol=0, lr_schedule="invscaling", power_t=0.25,
                       state=state, rng=0)
    assert state["t"] == 4 * m
    assert state["lr"] == 0.1 / (4 * m + 1) ** 0.25


def test_adaptive_divides_by_five_on_each_stall_then_stops():
    state = {}
    lrs = []
    res = minimize_minibatch(
        _quadratic, np.ones(3), 10, solver="sgd", max_iter=200, batch_size=10,
        learning_rate=0.1, tol=1.0, n_iter_no_change=2, lr_schedule="adaptive", state=state,
        callback=lambda info: lrs.append(state["lr"]) and False, rng=0,
    )
    # the loss never improves by tol=1: every 2 epochs lr /= 5 while lr / 5 > 1e-6
    # scikit-learn's rule: divide while lr > 1e-6, so the last rate is 2.56e-7
    expected = [0.1 / 5**k for k in range(9)]
    assert sorted(set(lrs), reverse=True) == pytest.approx(expected)
    assert res.stop_reason == "converged" and state["lr"] == pytest.approx(expected[-1])


def test_adaptive_with_early_stopping_lowers_the_rate(cancer):
    X, y = cancer
    clf = BPNetClassifier(5, solver="sgd", learning_rate="adaptive", learning_rate_init=0.5,
                          early_stopping=True, n_iter_no_change=2, max_iter=300,
                          random_state=0).fit(X, y)
    # each stall of the validation score divided the rate by 5 instead of stopping
    assert clf.stop_reason_ == "early_stopping"
    assert clf._optimizer_state["lr"] < 0.5 / 5 and clf.n_iter_ > 2 * 2


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_schedules_change_sgd_but_not_adam(iris, schedule):
    X, y = iris
    kw = dict(max_iter=5, tol=0, random_state=0, learning_rate_init=0.1, power_t=0.7)
    fits = {}
    for solver in ("sgd", "adam"):
        for lr in ("constant", schedule):
            est = BPNetClassifier(4, solver=solver, learning_rate=lr, **kw)
            fits[solver, lr] = _quiet_fit(est, X, y).network_.theta
    assert np.array_equal(fits["adam", "constant"], fits["adam", schedule])
    if schedule == "invscaling":
        assert not np.array_equal(fits["sgd", "constant"], fits["sgd", schedule])


def test_max_fun_caps_lbfgs_evaluations(iris):
    X, y = iris
    clf = BPNetClassifier(10, max_iter=1000, max_fun=8, tol=1e-12, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_fun=8"):
        clf.fit(X, y)
    assert clf.stop_reason_ == "max_fun"
    assert clf.network_.result.n_evals <= 8 + 20  # SciPy checks the count between line searches
    free = BPNetClassifier(10, max_iter=1000, tol=1e-12, random_state=0)
    _quiet_fit(free, X, y)
    assert free.network_.result.n_evals > clf.network_.result.n_evals


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("learning_rate", "cyclic", "learning_rate must be one of"),
     ("power_t", -1.0, "power_t must be a finite number >= 0; got -1.0"),
     ("max_fun", 0, "max_fun must be an int >= 1; got 0")],
)
def test_new_parameters_are_validated(iris, name, value, message):
    X, y = iris
    with pytest.raises(ValueError, match=message):
        BPNetClassifier(3, **{name: value}).fit(X, y)


# -- dtype follows the data ------------------------------------------------------------
@pytest.mark.parametrize(
    ("x_dtype", "param", "expected"),
    [(np.float32, None, np.float32), (np.float64, None, np.float64), (np.int64, None, np.float64),
     (np.float32, "float64", np.float64), (np.float64, "float32", np.float32)],
)
def test_fit_keeps_float32_unless_dtype_says_otherwise(iris, x_dtype, param, expected):
    # about dtypes only: how many L-BFGS iterations a float32 fit takes to meet
    # tol differs between the ISA builds (142 to 300+ on this data)
    X, y = iris
    Xd = (X * 10).astype(x_dtype)
    clf = _quiet_fit(BPNetClassifier(4, max_iter=300, random_state=0, dtype=param), Xd, y)
    assert clf.network_.dtype == expected and clf.coefs_[0].dtype == expected
    assert clf.predict_proba(Xd).dtype == expected
    sk = _quiet_fit(MLPClassifier(4, max_iter=5, random_state=0), Xd, y)
    if param is None:  # as scikit-learn does
        assert clf.coefs_[0].dtype == sk.coefs_[0].dtype


def test_partial_fit_keeps_the_first_fits_precision(iris):
    X, y = iris
    clf = BPNetClassifier(4, solver="adam", random_state=0)
    clf.partial_fit(X.astype(np.float32), y, classes=[0, 1, 2])
    clf.partial_fit(X, y)  # float64 data: converted to the network's float32
    assert clf.network_.dtype == np.float32


# -- to_sklearn / from_sklearn -----------------------------------------------------------
def _assert_same(a, b, X, proba=True):
    if proba:
        np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("data", ["iris", "cancer"])
def test_to_sklearn_classifier(iris, cancer, activation, data):
    X, y = iris if data == "iris" else cancer
    clf = BPNetClassifier((6, 4), activation=activation, alpha=0.5, max_iter=400,
                          random_state=0)
    _quiet_fit(clf, X, y)
    mlp = clf.to_sklearn()
    assert isinstance(mlp, MLPClassifier)
    assert mlp.activation == {"sigmoid": "logistic"}.get(activation, activation)
    assert mlp.alpha == 0.5 and mlp.hidden_layer_sizes == (6, 4)
    assert mlp.out_activation_ == ("logistic" if data == "cancer" else "softmax")
    _assert_same(clf, mlp, X)
    assert bpnet.to_sklearn(clf).get_params() == mlp.get_params()
    # it is a fitted MLPClassifier: scikit-learn's own methods work on it
    assert mlp.score(X, y) == clf.score(X, y)
    assert mlp.predict_proba(X[:3]).shape == (3, len(clf.classes_))


def test_to_sklearn_string_labels_multilabel_and_regressor(iris):
    X, y = iris
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = BPNetClassifier(4, max_iter=400, random_state=0).fit(X, labels)
    _assert_same(clf, clf.to_sklearn(), X)
    Y = np.column_stack([y == 0, y == 1, y == 2, X[:, 0] > 0]).astype(int)
    multi = _quiet_fit(BPNetClassifier(4, max_iter=300, random_state=0), X, Y)
    _assert_same(multi, multi.to_sklearn(), X)
    Xd, yd = load_diabetes(return_X_y=True)
    for target in (yd / 100, np.column_stack([yd / 100, Xd[:, 0]])):
        reg = _quiet_fit(BPNetRegressor(5, activation="tanh", max_iter=300, random_state=0),
                         Xd, target)
        mlp = reg.to_sklearn()
        assert isinstance(mlp, MLPRegressor) and mlp.out_activation_ == "identity"
        np.testing.assert_allclose(reg.predict(Xd), mlp.predict(Xd), rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", ["logistic", "tanh", "relu"])
@pytest.mark.parametrize("solver", ["lbfgs", "adam", "sgd"])
@pytest.mark.parametrize("data", ["iris", "cancer"])
def test_from_sklearn_classifier(iris, cancer, activation, solver, data):
    X, y = iris if data == "iris" else cancer
    mlp = _quiet_fit(MLPClassifier((5, 3), activation=activation, solver=solver,
                                   max_iter=60, random_state=0), X, y)
    est = bpnet.from_sklearn(mlp)
    assert isinstance(est, BPNetClassifier) and est.solver == solver
    assert est.activation == {"logistic": "sigmoid"}.get(activation, activation)
    _assert_same(mlp, est, X)
    # and back again
    _assert_same(mlp, est.to_sklearn(), X)
    # a converted estimator trains on
    est.set_params(warm_start=True, max_iter=5)
    _quiet_fit(est, X, y)


def test_from_sklearn_multilabel_regressor_and_float32(iris):
    X, y = iris
    Y = np.column_stack([y == 0, y == 2]).astype(int)
    mlp = _quiet_fit(MLPClassifier(4, max_iter=50, random_state=0), X, Y)
    est = bpnet.from_sklearn(mlp)
    assert est.out_activation_ == "logistic"
    _assert_same(mlp, est, X)
    Xd, yd = load_diabetes(return_X_y=True)
    reg_mlp = _quiet_fit(MLPRegressor(hidden_layer_sizes=6, max_iter=50, random_state=0), Xd,
                         yd / 100)
    reg = bpnet.from_sklearn(reg_mlp)
    np.testing.assert_allclose(reg.predict(Xd), reg_mlp.predict(Xd), rtol=0, atol=1e-12)
    assert reg.predict(Xd).shape == reg_mlp.predict(Xd).shape
    X32 = X.astype(np.float32)
    mlp32 = _quiet_fit(MLPClassifier(4, max_iter=50, random_state=0), X32, y)
    est32 = bpnet.from_sklearn(mlp32)
    assert est32.network_.dtype == np.float32
    np.testing.assert_allclose(est32.predict_proba(X32), mlp32.predict_proba(X32), atol=1e-6)


def test_conversion_errors(iris):
    X, y = iris
    mlp = _quiet_fit(MLPClassifier(3, activation="identity", max_iter=20, random_state=0), X, y)
    mlp.activation = "softplus"  # a unit bpnet has not (scikit-learn's four it has)
    with pytest.raises(ValueError, match=r"mlp\.activation is 'softplus'"):
        bpnet.from_sklearn(mlp)
    with pytest.raises(TypeError, match="mlp must be an MLPClassifier or MLPRegressor"):
        bpnet.from_sklearn(BPNetClassifier())
    with pytest.raises(TypeError, match="est must be a BPNetClassifier or BPNetRegressor"):
        bpnet.to_sklearn(mlp)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        BPNetClassifier().to_sklearn()
    with pytest.raises(NotFittedError):
        bpnet.from_sklearn(MLPClassifier())


# -- issue 19: what bpnet cannot represent is refused; the fit state round-trips ---------
def test_from_sklearn_converts_a_poisson_regressor_and_refuses_other_outputs():
    """issue 20: loss="poisson" (an 'exp' output) converts to bpnet's poisson output;
    an output bpnet has no unit for is still refused."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    mlp = _quiet_fit(MLPRegressor(hidden_layer_sizes=(4,), loss="poisson", max_iter=50,
                                  random_state=0), X, np.exp(0.3 * X[:, 0]))
    assert mlp.out_activation_ == "exp"
    est = bpnet.from_sklearn(mlp)
    assert est.loss == "poisson" and est.network_.output == "poisson"
    np.testing.assert_allclose(est.predict(X), mlp.predict(X), rtol=1e-12)
    mlp.out_activation_ = "logistic"  # not an output scikit-learn's regressor makes
    with pytest.raises(ValueError, match=r"MLPRegressor with an 'logistic' output; bpnet's "
                                         r"regressor has \('identity', 'exp'\) outputs"):
        bpnet.from_sklearn(mlp)


_FIT_STATE = ("n_iter_", "t_", "loss_", "loss_curve_", "validation_scores_",
              "best_validation_score_")


def test_early_stopped_mlp_converts_saves_and_loads(cancer, tmp_path):
    X, y = cancer
    mlp = _quiet_fit(MLPClassifier((5,), early_stopping=True, max_iter=200, random_state=0),
                     X, y)
    assert mlp.best_loss_ is None and len(mlp.validation_scores_) == mlp.n_iter_
    est = bpnet.from_sklearn(mlp)
    for name in _FIT_STATE:
        assert getattr(est, name) == getattr(mlp, name), name
    assert est.best_loss_ == min(mlp.loss_curve_)
    assert len(est.validation_loss_curve_) == len(mlp.validation_scores_)
    assert np.isnan(est.validation_loss_curve_).all()  # scikit-learn keeps none
    assert est.validation_scores_[est.best_iteration_ - 1] == mlp.best_validation_score_
    loaded = bpnet.load(est.save(tmp_path / "es.npz"))
    _assert_same(mlp, loaded, X)
    for name in (*_FIT_STATE, "best_iteration_"):
        assert getattr(loaded, name) == getattr(est, name), name
    # and back to scikit-learn: the state it had
    back = loaded.to_sklearn()
    for name in _FIT_STATE:
        assert getattr(back, name) == getattr(mlp, name), name
    assert back.best_loss_ is None


@pytest.mark.parametrize("early_stopping", [True, False])
def test_to_sklearn_then_warm_start_fit(cancer, early_stopping):
    X, y = cancer
    est = _quiet_fit(BPNetClassifier(5, solver="adam", early_stopping=early_stopping,
                                     max_iter=30, random_state=0), X, y)
    mlp = est.to_sklearn()
    for name in _FIT_STATE:
        assert getattr(mlp, name) == (getattr(est, name) if early_stopping or "valid" not in name
                                      else None), name
    mlp.set_params(warm_start=True, max_iter=3)
    _quiet_fit(mlp, X, y)  # no AttributeError: _best_coefs
    # scikit-learn counts n_iter_ per fit call and extends the curves
    assert mlp.n_iter_ == 3 and mlp.loss_curve_[:est.n_iter_] == est.loss_curve_
    assert len(mlp.loss_curve_) == est.n_iter_ + 3
    assert mlp.score(X, y) >= est.score(X, y) - 0.05  # trained on from the same weights

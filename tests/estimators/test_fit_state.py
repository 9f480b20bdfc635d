"""The estimators' state during and after a fit (issues 19 and 20):

- prediction from other threads while the same estimator is refitted on
  another label set reads one whole fitted state (never raises, never mixes);
- every way a fit can end abnormally (an exception from the callback,
  ``SystemExit`` from a SIGTERM handler, Ctrl-C, divergence, a lost worker)
  leaves the parameters of the last recorded iteration, with curves,
  counters and ``best_*`` describing exactly them, for every solver, with and
  without early stopping; ended before any iteration, the estimator is left
  as it was;
- callbacks see the model: ``callback(info)`` gets the estimator, whose
  fitted attributes and methods describe the current parameters (the old
  three-argument callbacks too); saving the best model during a fit;
- ``fit(X_val=, y_val=, sample_weight_val=)``: early stopping scored on the
  caller's validation data, the same way as on its own split;
- a diverging fit warns; every warning points at the caller's line.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import tempfile
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import bpnet
from bpnet import BPNetClassifier, BPNetRegressor, FitInfo, Network
from bpnet.optimize import StepFailed


def _blobs(m: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three separable-ish classes in 4 features."""
    rng = np.random.default_rng(seed)
    y = np.arange(m) % 3
    X = rng.standard_normal((m, 4)) + 1.5 * np.eye(4)[y]
    return X, y


X, Y = _blobs()
X_VAL, Y_VAL = _blobs(60, seed=1)
quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# -- issue 19.1: refit while predicting ----------------------------------------------------
def _hammer_predictions(clf, X_pred, refits, check) -> tuple[list[BaseException], int]:
    """Three threads predict with ``clf`` while this one runs ``refits()``; every
    (labels, probabilities) pair goes through ``check``. The exceptions raised in
    the predicting threads, and the number of checked predictions."""
    stop = threading.Event()
    errors: list[BaseException] = []
    count = [0]

    def hammer() -> None:
        while not stop.is_set():
            try:
                check(clf.predict(X_pred), clf.predict_proba(X_pred))
                count[0] += 1
            except BaseException as err:
                errors.append(err)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: any window between two reads shows
    for t in threads:
        t.start()
    try:
        refits()
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(interval)
    return errors, count[0]


@quiet
def test_predict_during_refits_on_other_label_sets_sees_one_fitted_model():
    """Threads predict while the same classifier is refitted, alternately on labels
    {0, 1, 2} (3 outputs) and {"a", "b"} (2 outputs): no prediction raises, and each
    one is exactly (labels and probabilities, bitwise) that of one of the two fitted
    models; never a mix of one fit's classes and the other's network, never the
    half-trained network of a fit in progress."""
    y_two = np.where(Y == 0, "a", "b")
    kw = dict(solver="adam", max_iter=8, tol=0.0, random_state=0)
    models = [BPNetClassifier(6, **kw).fit(X, target) for target in (Y, y_two)]
    expected = [(m.predict(X), m.predict_proba(X)) for m in models]
    clf = BPNetClassifier(6, **kw).fit(X, Y)

    def check(labels, proba):
        # predict and predict_proba are two calls: each matches one of the models
        assert any(np.array_equal(labels, e[0]) for e in expected), labels
        assert any(np.array_equal(proba, e[1]) for e in expected), proba.shape

    def refits():
        for i in range(30):
            clf.fit(X, y_two if i % 2 == 0 else Y)

    errors, count = _hammer_predictions(clf, X, refits, check)
    assert not errors, f"{len(errors)} of {len(errors) + count} predictions failed: {errors[0]!r}"
    assert count > 0


@quiet
def test_predict_during_refits_with_callbacks_sees_whole_states():
    """With a callback the estimator shows every iteration of the refit; each
    prediction still comes from one whole state: labels of one fit, probabilities
    of that fit's width, no exception."""
    y_two = np.where(Y == 0, "a", "b")
    clf = BPNetClassifier(6, solver="adam", max_iter=8, tol=0.0, random_state=0).fit(X, Y)

    def check(labels, proba):
        assert set(labels.tolist()) <= {0, 1, 2} or set(labels.tolist()) <= {"a", "b"}
        assert proba.shape in ((len(X), 3), (len(X), 2))
        assert np.allclose(proba.sum(axis=1), 1)

    def refits():
        for i in range(20):
            clf.fit(X, y_two if i % 2 == 0 else Y, callback=lambda it, loss, score: None)

    errors, count = _hammer_predictions(clf, X, refits, check)
    assert not errors, f"{len(errors)} of {len(errors) + count} predictions failed: {errors[0]!r}"
    assert count > 0


@quiet
def test_a_prediction_reads_one_snapshot():
    """predict reads the fitted state once: the classes it returns belong to the
    network that ran, even if the estimator is refitted between the two reads."""
    clf = BPNetClassifier(4, max_iter=5, random_state=0).fit(X, Y)
    other = BPNetClassifier(4, max_iter=5, random_state=0).fit(X, np.where(Y == 0, "a", "b"))
    fitted = clf._view()
    clf.__dict__["_fitted"] = other.__dict__["_fitted"]  # a refit published meanwhile
    assert set(fitted.predict(X).tolist()) <= {0, 1, 2}
    assert fitted.predict_proba(X).shape == (len(X), 3)
    assert set(clf.predict(X).tolist()) <= {"a", "b"}


@quiet
def test_a_failed_refit_leaves_the_published_model():
    """Errors before the first iteration (bad input, bad callback, a core error on the
    first evaluation) leave the previous model: its predictions and classes."""
    clf = BPNetClassifier(4, max_iter=5, random_state=0).fit(X, Y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(np.full_like(X, np.nan), np.where(Y == 0, "a", "b"))
    with pytest.raises(ValueError, match="callback must take one argument"):
        clf.fit(X, np.where(Y == 0, "a", "b"), callback=lambda a, b: None)
    assert np.array_equal(clf.predict_proba(X), before) and clf.classes_.tolist() == [0, 1, 2]
    fresh = BPNetClassifier(4, max_iter=5, random_state=0)
    with pytest.raises(ValueError, match="callback must take"):
        fresh.fit(X, Y, callback=lambda a, b: None)
    assert not hasattr(fresh, "network_") and not hasattr(fresh, "classes_")


# -- issue 19.2: every abnormal end leaves the same consistent state -----------------------
class _Boom(ValueError):
    pass


SOLVERS = {
    "lbfgs": dict(solver="lbfgs", max_iter=40),
    "adam": dict(solver="adam", max_iter=40, batch_size=30, learning_rate_init=0.02),
    "sgd": dict(solver="sgd", max_iter=40, batch_size=30, learning_rate_init=0.1),
}
AT = 4  # the callback's iteration at which the callback modes end the fit
CALL = 14  # the core evaluation at which the core modes end it (inside iteration 4 of adam/sgd)


def _raise_in_core(monkeypatch, exc: BaseException) -> None:
    """Make the CALL-th cost/gradient evaluation raise ``exc`` (as a Ctrl-C inside the
    core, an overflow, or a distributed objective that lost its workers would), at the
    core's own entry point: every fit calls it once per evaluation (a mini-batch fit
    binds it once per fit, see bpnet._runtime.batch_cost_grad)."""
    core = bpnet._native.core
    real = core.cost_grad
    calls = {"n": 0}

    def cost_grad(*args):
        calls["n"] += 1
        if calls["n"] == CALL:
            raise exc
        return real(*args)

    monkeypatch.setattr(core, "cost_grad", cost_grad)


@pytest.fixture
def sigterm_exits():
    """A SIGTERM handler that calls sys.exit, as services install."""
    old = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))
    yield
    signal.signal(signal.SIGTERM, old)


MODES = ["callback-error", "callback-sigterm-exit", "core-ctrl-c", "divergence", "lost-worker"]
EXPECTED = {"callback-error": _Boom, "callback-sigterm-exit": SystemExit,
            "core-ctrl-c": KeyboardInterrupt, "divergence": FloatingPointError,
            "lost-worker": StepFailed}


@pytest.mark.parametrize("early", [False, True], ids=["plain", "early_stopping"])
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("mode", MODES)
def test_every_abnormal_end_keeps_the_last_recorded_iteration(
    mode, solver, early, monkeypatch, sigterm_exits
):
    kw = dict(SOLVERS[solver], early_stopping=early, n_iter_no_change=100)
    clf = BPNetClassifier(5, random_state=0, **kw)
    thetas: dict[int, np.ndarray] = {}

    def callback(info: FitInfo) -> None:
        est = info.estimator
        assert est is clf and est.n_iter_ == info.iteration == len(est.loss_curve_)
        thetas[info.iteration] = est.network_.theta.copy()  # the current parameters
        if info.iteration == AT and mode == "callback-error":
            raise _Boom("the user's callback failed")
        if info.iteration == AT and mode == "callback-sigterm-exit":
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises SystemExit

    if mode == "core-ctrl-c":
        _raise_in_core(monkeypatch, KeyboardInterrupt())
    elif mode == "divergence":  # the core reports pre-activations overflowing the dtype
        _raise_in_core(monkeypatch, OverflowError("pre-activations overflow float64"))
    elif mode == "lost-worker":
        _raise_in_core(monkeypatch, StepFailed("2 of 2 workers lost"))
    val = dict(X_val=X_VAL, y_val=Y_VAL) if early else {}
    with pytest.raises(EXPECTED[mode]) as caught:
        clf.fit(X, Y, callback=callback, **val)
    err = caught.value

    n = clf.n_iter_
    assert n >= 1 and max(thetas) == n  # the last recorded iteration
    if mode.startswith("callback"):
        assert n == AT
    assert clf.stop_reason_ == type(err).__name__
    assert len(clf.loss_curve_) == n and clf.loss_ == clf.loss_curve_[-1]
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.t_ == n * len(X)
    kept = clf.network_.theta
    if early:
        assert len(clf.validation_scores_) == len(clf.validation_loss_curve_) == n
        assert clf.best_validation_score_ == max(clf.validation_scores_)
        assert clf.best_iteration_ <= n
        assert np.array_equal(kept, thetas[clf.best_iteration_])
        # the kept parameters are those the best validation score was measured on
        assert clf.score(X_VAL, Y_VAL) == clf.best_validation_score_
    else:
        assert np.array_equal(kept, thetas[n])
    assert np.array_equal(err.partial_result.theta, kept)
    assert clf.network_.result.n_iter == n and len(clf.network_.loss_history) == n
    assert clf._optimizer_state == {}
    # the state is whole: it predicts, saves and loads
    assert clf.predict(X).shape == (len(X),)
    assert clf.__dict__["_fitted"].network is clf.network_


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_an_interrupted_fit_keeps_the_parameters_of_a_fit_that_stopped_there(
    solver, monkeypatch
):
    """Without a callback: Ctrl-C inside the core keeps exactly the parameters of a
    fit run to the last recorded iteration (bitwise), and the curves of that fit."""
    kw = SOLVERS[solver]
    clf = BPNetClassifier(5, random_state=0, **kw)
    _raise_in_core(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, Y)
    monkeypatch.undo()
    n = clf.n_iter_
    assert n >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = BPNetClassifier(5, random_state=0, **dict(kw, max_iter=n)).fit(X, Y)
    assert np.array_equal(clf.network_.theta, ref.network_.theta)
    assert clf.loss_curve_ == ref.loss_curve_ and clf.t_ == ref.t_


@quiet
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("how", ["error", "sys.exit"])
def test_a_callback_exception_keeps_the_trained_parameters(how, solver):
    """An exception from a (three-argument) callback at iteration 4 keeps the
    parameters of iteration 4, as a fit with max_iter=4 ends with, not the
    initial ones (while n_iter_ and loss_curve_ said 4 iterations ran)."""
    kw = SOLVERS[solver]

    def callback(iteration, loss, score):
        if iteration == AT:
            raise _Boom("failed") if how == "error" else SystemExit(3)

    clf = BPNetClassifier(5, random_state=0, **kw)
    with pytest.raises(_Boom if how == "error" else SystemExit):
        clf.fit(X, Y, callback=callback)
    ref = BPNetClassifier(5, random_state=0, **dict(kw, max_iter=AT)).fit(X, Y)
    assert clf.n_iter_ == AT and clf.loss_curve_ == ref.loss_curve_
    assert np.array_equal(clf.network_.theta, ref.network_.theta)
    assert np.array_equal(clf.predict_proba(X), ref.predict_proba(X))


@quiet
def test_an_end_within_the_first_iteration_keeps_the_initial_parameters(monkeypatch):
    """Training started but no iteration finished: the estimator holds this fit's
    initial parameters (a new fit: its new classes and random weights; a warm start:
    the previous weights), n_iter_ and the curves count no iteration of this fit."""
    monkeypatch.setattr(sys.modules[__name__], "CALL", 1)
    fresh = BPNetClassifier(5, random_state=0, solver="adam", batch_size=30)
    _raise_in_core(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt) as caught:
        fresh.fit(X, Y)
    assert fresh.n_iter_ == 0 and fresh.loss_curve_ == [] and fresh.t_ == 0
    assert fresh.stop_reason_ == "KeyboardInterrupt" and fresh.loss_ is None
    assert caught.value.partial_result.n_iter == 0
    assert np.array_equal(caught.value.partial_result.theta, fresh.network_.theta)
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        init = BPNetClassifier(5, random_state=0, solver="adam", max_iter=1).fit(X, Y)
    assert init.n_iter_ == 1 and not np.array_equal(init.network_.theta, fresh.network_.theta)

    fitted = BPNetClassifier(5, random_state=0, max_iter=5).fit(X, Y)
    theta, curve = fitted.network_.theta.copy(), list(fitted.loss_curve_)
    monkeypatch.setattr(sys.modules[__name__], "CALL", 1)
    _raise_in_core(monkeypatch, FloatingPointError("diverged at once"))
    with pytest.raises(FloatingPointError):
        fitted.set_params(warm_start=True).fit(X, Y)
    assert np.array_equal(fitted.network_.theta, theta) and fitted.loss_curve_ == curve
    assert fitted.n_iter_ == len(curve) and fitted.stop_reason_ == "FloatingPointError"
    _raise_in_core(monkeypatch, FloatingPointError("diverged at once"))
    with pytest.raises(FloatingPointError):
        fitted.set_params(warm_start=False).fit(X, np.where(Y == 0, "a", "b"))
    assert fitted.classes_.tolist() == ["a", "b"] and fitted.n_iter_ == 0
    assert fitted.predict_proba(X).shape == (len(X), 2)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_network_keeps_the_last_good_parameters_when_its_callback_raises(solver):
    """Network.fit: any exception from the callback leaves theta, loss_history and
    result at the last complete iteration and carries them in partial_result."""
    opts = {k: v for k, v in SOLVERS[solver].items() if k not in ("solver",)}
    if solver != "lbfgs":
        opts = {"max_iter": 40, "batch_size": 30,
                "learning_rate": opts["learning_rate_init"]}
    net = Network([4, 5, 3], activation="tanh", output="softmax", rng=0)
    theta0 = net.theta.copy()
    seen = {}

    def callback(info):
        seen[info.iteration] = info.theta.copy()
        if info.iteration == 3:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError) as caught:
        net.fit(X, Y, solver=solver, callback=callback, **opts)
    assert not np.array_equal(net.theta, theta0)
    assert np.array_equal(net.theta, seen[3])
    assert np.array_equal(caught.value.partial_result.theta, seen[3])
    assert len(net.loss_history) == 3 and net.result.stop_reason == "RuntimeError"


# -- issue 20.4: callbacks see the model -----------------------------------------------------
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@quiet
def test_inside_a_callback_the_estimator_describes_the_current_parameters(solver):
    kw = SOLVERS[solver]
    clf = BPNetClassifier(5, random_state=0, **dict(kw, max_iter=6, tol=0.0))
    at3 = {}

    def callback(info: FitInfo) -> None:
        est = info.estimator
        assert info.loss == est.loss_ == est.loss_curve_[-1]
        if info.iteration == 3:
            at3["proba"] = est.predict_proba(X)
            at3["score"] = est.score(X, Y)
            at3["coefs"] = [c.copy() for c in est.coefs_]
            at3["intercepts"] = [b.copy() for b in est.intercepts_]

    clf.fit(X, Y, callback=callback)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = BPNetClassifier(5, random_state=0, **dict(kw, max_iter=3, tol=0.0)).fit(X, Y)
    # the estimator inside the callback at iteration 3 is a fit stopped at iteration 3
    assert np.array_equal(at3["proba"], ref.predict_proba(X))
    assert at3["score"] == ref.score(X, Y)
    assert all(np.array_equal(a, b) for a, b in zip(at3["coefs"], ref.coefs_))
    assert all(np.array_equal(a, b) for a, b in zip(at3["intercepts"], ref.intercepts_))
    assert not np.array_equal(clf.predict_proba(X), at3["proba"])  # it trained on


@quiet
def test_three_argument_callbacks_still_work_and_see_the_model():
    clf = BPNetRegressor(4, activation="tanh", random_state=0, max_iter=5)
    seen = []
    y = X[:, 0] - X[:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y, callback=lambda it, loss, score: seen.append(
            (it, loss, score, clf.n_iter_, clf.predict(X[:2]))))
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5] == [s[3] for s in seen]
    assert all(s[2] is None for s in seen)
    assert not np.array_equal(seen[0][4], seen[-1][4])
    assert np.array_equal(seen[-1][4], clf.predict(X[:2]))


@quiet
def test_callback_signatures():
    """One argument: a FitInfo; three: the values; a method and a callable object too;
    anything else is refused before the fit."""

    class Logger:
        def __init__(self):
            self.infos = []

        def __call__(self, info):
            self.infos.append(info)

        def on_iteration(self, info):
            self.infos.append(info)
            return info.iteration >= 2  # stop

    log = Logger()
    clf = BPNetClassifier(3, random_state=0, max_iter=10).fit(X, Y, callback=log)
    assert all(isinstance(i, FitInfo) for i in log.infos) and len(log.infos) == clf.n_iter_
    clf.fit(X, Y, callback=log.on_iteration)
    assert clf.n_iter_ == 2 and clf.stop_reason_ == "callback"
    clf.fit(X, Y, callback=lambda *values: len(values) != 3)  # *args: the three values
    assert clf.n_iter_ > 1
    with pytest.raises(ValueError, match=r"callback must take one argument .* or three"):
        clf.fit(X, Y, callback=lambda a, b, c, d: None)


def test_example_save_the_best_model_during_a_fit(tmp_path):
    """Example: checkpoint the best model while training (as Keras's ModelCheckpoint
    with save_best_only). With early stopping, ``best_iteration_`` is the current
    iteration exactly when this iteration improved the validation score, and the
    estimator inside the callback describes the current parameters, so ``save``
    writes the best model so far."""
    path = tmp_path / "best.npz"
    saved = []

    def save_best(info: bpnet.FitInfo) -> None:
        est = info.estimator
        if est.best_iteration_ == info.iteration:  # this iteration is the best so far
            est.save(path)
            saved.append(info.iteration)

    clf = BPNetClassifier(8, solver="adam", learning_rate_init=0.05, early_stopping=True,
                          n_iter_no_change=5, max_iter=100, random_state=0)
    clf.fit(X, Y, X_val=X_VAL, y_val=Y_VAL, callback=save_best)

    best = bpnet.load(path)
    assert saved[-1] == clf.best_iteration_ < clf.n_iter_
    assert best.score(X_VAL, Y_VAL) == clf.best_validation_score_
    # the fit kept the best parameters too: the checkpoint predicts as the estimator
    assert np.array_equal(best.predict_proba(X), clf.predict_proba(X))


def test_the_gallery_example_checkpoints_the_best_estimator(monkeypatch, tmp_path):
    """docs/examples/plot_estimator_checkpoint.py (the site's gallery runs it too):
    the file saved last is the best model, which the estimator also kept."""
    pytest.importorskip("matplotlib")

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the example's best.npz
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "docs", "examples", "plot_estimator_checkpoint.py")
    ns = runpy.run_path(path)
    import matplotlib.pyplot as plt

    plt.close("all")
    clf, restored, saved = ns["clf"], ns["restored"], ns["saved"]
    assert saved[-1] == (clf.best_iteration_, clf.best_validation_score_)
    assert clf.best_iteration_ < clf.n_iter_ and clf.stop_reason_ == "early_stopping"
    assert restored.score(ns["X_val"], ns["y_val"]) == clf.best_validation_score_


# -- issue 20.5: validation data --------------------------------------------------------------
@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_validation_data_is_scored_as_the_split_is(solver):
    w_val = np.linspace(0.5, 2.0, len(X_VAL))
    clf = BPNetClassifier(5, random_state=0, early_stopping=True, n_iter_no_change=4,
                          **dict(SOLVERS[solver], max_iter=30))
    scores = []

    def check(info: FitInfo) -> None:
        est = info.estimator
        expect = accuracy_score(Y_VAL, est.predict(X_VAL), sample_weight=w_val)
        scores.append((info.validation_score, expect))

    clf.fit(X, Y, X_val=X_VAL, y_val=Y_VAL, sample_weight_val=w_val, callback=check)
    assert [s for s, _ in scores] == [e for _, e in scores] == clf.validation_scores_
    # the validation loss: the same one-pass cost as the split's, its L2 penalty scaled
    # so that lam_val / m_val == lam / m
    net = clf.network_
    lam = clf.alpha * w_val.sum() / len(X)
    J, _ = bpnet.forward_cost(net.theta, net.layer_sizes, X_VAL, Y_VAL.astype(np.int64),
                              lam=lam, activation=net.activation, output=net.output,
                              sample_weight=w_val)
    assert J == clf.validation_loss_curve_[clf.best_iteration_ - 1]
    assert clf.t_ == clf.n_iter_ * len(X)  # every training row trained: no split taken
    assert clf.score(X_VAL, Y_VAL, sample_weight=w_val) == clf.best_validation_score_


@quiet
def test_regressor_validation_data_scores_r2():
    y, y_val = X[:, 0] - 2 * X[:, 1], X_VAL[:, 0] - 2 * X_VAL[:, 1]
    reg = BPNetRegressor(6, activation="tanh", early_stopping=True, max_iter=60,
                         random_state=0)
    reg.fit(X, y, X_val=X_VAL, y_val=y_val)
    assert reg.best_validation_score_ == r2_score(y_val, reg.predict(X_VAL))
    assert reg.best_validation_score_ == max(reg.validation_scores_) > 0.9


def test_validation_data_errors_name_the_arguments():
    es = BPNetClassifier(3, early_stopping=True, max_iter=5, random_state=0)
    with pytest.raises(ValueError, match=r"early_stopping=False.*set early_stopping=True"):
        BPNetClassifier(3).fit(X, Y, X_val=X_VAL, y_val=Y_VAL)
    with pytest.raises(ValueError, match="X_val and y_val must be passed together; got only"
                                         " X_val"):
        es.fit(X, Y, X_val=X_VAL)
    with pytest.raises(ValueError, match=r"validation data \(X_val.*labels not in classes_"):
        es.fit(X, Y, X_val=X_VAL, y_val=Y_VAL + 5)
    with pytest.raises(ValueError, match=r"validation data \(X_val.*3 features.*expecting 4"):
        es.fit(X, Y, X_val=X_VAL[:, :3], y_val=Y_VAL)
    with pytest.raises(ValueError, match=r"validation data \(X_val.*NaN"):
        es.fit(X, Y, X_val=np.full_like(X_VAL, np.nan), y_val=Y_VAL)
    with pytest.raises(ValueError, match=r"the validation data .*at least one non-zero"):
        es.fit(X, Y, X_val=X_VAL, y_val=Y_VAL, sample_weight_val=np.zeros(len(X_VAL)))
    assert not hasattr(es, "network_")


# -- issue 20.13: divergence warns; issue 20.3: warnings point at the caller's line ------------
def test_a_diverging_fit_warns_at_the_callers_line():
    clf = BPNetClassifier(5, solver="adam", learning_rate_init=1e6, max_iter=20,
                          random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"training loss rose from .* the fit "
                                                r"diverged; lower the learning rate") as rec:
        clf.fit(X, Y)
    assert rec[0].filename == __file__
    assert clf.loss_curve_[-1] > 10 * clf.network_.result.initial_loss


def test_a_warm_start_from_a_tiny_loss_does_not_warn_of_divergence():
    """Continuing a fit that reached a tiny loss with a fresh optimizer and a larger
    step may raise the loss a hundredfold and still end below 1: not reported (the
    warning needs the loss to rise tenfold and by more than 1)."""
    clf = BPNetClassifier(8, solver="adam", learning_rate_init=0.05, max_iter=300, tol=0.0,
                          alpha=0.0, random_state=0, warm_start=True)
    Xs = X + 3 * np.eye(4)[Y]  # well separated: the loss goes near 0
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        clf.fit(Xs, Y)
        clf.set_params(learning_rate_init=2.0, max_iter=3).fit(Xs, Y)
    start = clf.network_.result.initial_loss
    assert start < 0.01 and 10 * start < clf.loss_ < start + 1
    assert not [w for w in rec if "diverged" in str(w.message)]


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_a_converging_fit_does_not_warn_of_divergence(solver):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        BPNetClassifier(5, random_state=0, **dict(SOLVERS[solver], max_iter=300)).fit(X, Y)
    assert not [w for w in rec if "diverged" in str(w.message)]


def _fit_plain():
    return BPNetClassifier(3, max_iter=2, random_state=0).fit(X, Y)


def _fit_pipeline():
    return make_pipeline(StandardScaler(), BPNetClassifier(3, max_iter=2, random_state=0)).fit(X, Y)


def _fit_adam_regressor():
    return BPNetRegressor(3, solver="adam", max_iter=2, random_state=0).fit(X, X[:, 0])


def _fit_column_y():
    return BPNetClassifier(3, max_iter=2, random_state=0).fit(X, Y[:, None])


def test_warnings_point_at_the_callers_line():
    """Each warning is attributed to the line in this file that called fit, also
    through a Pipeline (bpnet's and scikit-learn's frames are skipped)."""
    fits = [_fit_plain, _fit_pipeline, _fit_adam_regressor]
    with pytest.warns(ConvergenceWarning, match="reached max_iter=2") as rec:
        for fit in fits:
            fit()
    lines = [(__file__, fit.__code__.co_firstlineno + 1) for fit in fits]
    assert [(w.filename, w.lineno) for w in rec] == lines
    with pytest.warns(DataConversionWarning, match="column-vector y") as rec:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            _fit_column_y()
    assert [(w.filename, w.lineno) for w in rec] == [
        (__file__, _fit_column_y.__code__.co_firstlineno + 1)]


# --- the monitor's copies of a full-batch iterate --------------------------------------
def _spy_monitor(monkeypatch):
    """Every (recorded parameters, their values then, the iterate) the monitor kept."""
    from bpnet import _fitloop

    kept = []
    real = _fitloop.Monitor.__call__

    def spy(self, info):
        stop = real(self, info)
        kept.append((self.done.theta, self.done.theta.copy(), info.theta.copy()))
        return stop

    monkeypatch.setattr(_fitloop.Monitor, "__call__", spy)
    return kept


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_full_batch_iterates_are_copied_into_two_alternating_buffers(monkeypatch, dtype):
    """SciPy's iterate changes after each iteration, so the monitor copies it; a
    fresh 128 MiB copy costs its page faults on a wide net, so the copy of the
    iteration before last (nobody else holds it) takes the next one: two buffers
    for the whole fit, each holding its iteration's parameters while recorded."""
    kept = _spy_monitor(monkeypatch)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 4))
    y = (X[:, 0] > 0).astype(int)
    est = BPNetClassifier((5,), solver="lbfgs", max_iter=8, tol=1e-300, random_state=0,
                          dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert len(kept) == 8
    assert len({id(theta) for theta, _, _ in kept}) == 2
    for theta, then, iterate in kept:
        assert theta.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(then, iterate.astype(dtype))
    # the last two iterations' copies are intact at the end
    for theta, then, _ in kept[-2:]:
        np.testing.assert_array_equal(theta, then)


def test_full_batch_copies_keep_early_stoppings_best_and_the_callbacks(monkeypatch):
    """The best parameters of early stopping, and parameters a user's callback saw
    (published onto the estimator), are never reused for a later copy."""
    kept = _spy_monitor(monkeypatch)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5))
    y = (X[:, 0] + 0.8 * rng.standard_normal(300) > 0).astype(int)
    est = BPNetClassifier((20,), solver="lbfgs", early_stopping=True, n_iter_no_change=3,
                          max_iter=60, tol=1e-4, random_state=0).fit(X, y)
    assert est.stop_reason_ == "early_stopping" and est.best_iteration_ < est.n_iter_ - 2
    _, best_then, _ = kept[est.best_iteration_ - 1]
    np.testing.assert_array_equal(est.network_.theta, best_then)
    kept.clear()
    coefs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        BPNetClassifier((20,), solver="lbfgs", max_iter=6, tol=1e-300, random_state=0).fit(
            X, y, callback=lambda info: coefs.append(
                (info.estimator.coefs_[0], info.estimator.coefs_[0].copy())))
    assert len({id(theta) for theta, _, _ in kept}) == 6
    for seen, then in coefs:  # what the callback saw is as it saw it
        np.testing.assert_array_equal(seen, then)

"""The estimators' fit loop: the validation split, the per-iteration monitor
(curves, counters, early stopping, the best parameters) and the options an
estimator hands to :meth:`bpnet.Network.fit`.

The estimator owns its parameters and fitted attributes; this module runs one
fit over them. It imports scikit-learn (``train_test_split``) and is imported
only by :mod:`bpnet.estimators`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from . import functional as F
from ._params import MINIBATCH_SOLVERS
from .network import Network
from .optimize import STOPS, IterationInfo

__all__ = ["FitCallback", "Monitor", "ValidationSplit", "run", "solver_options",
           "split_validation", "warn_unconverged"]

# callback(iteration, loss, validation_score) -> True to stop
FitCallback = Callable[[int, float, "float | None"], "bool | None"]
# score(y_true, outputs, sample_weight) -> the estimator's validation score
Scorer = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], float]


@dataclass
class ValidationSplit:
    """The validation rows of an early-stopping fit, prepared once."""

    y: np.ndarray  # encoded targets, as the score takes them
    w: np.ndarray | None  # (m_val,) sample weights
    cost: Callable[[np.ndarray], tuple[float, np.ndarray]]  # theta -> (J, a^(L)): one core pass
    score: Scorer


def split_validation(
    est: Any, net: Network, X: Any, y_enc: np.ndarray, w: np.ndarray | None,
    rs: np.random.RandomState, score: Scorer,
) -> tuple[Any, np.ndarray, np.ndarray | None, ValidationSplit]:
    """Hold out ``est.validation_fraction`` of the rows (stratified when it can
    be); the validation rows are prepared once for ``net``'s one-pass score."""
    stratify = y_enc if y_enc.ndim == 1 else None
    parts = [X, y_enc] + ([w] if w is not None else [])
    fraction = est.validation_fraction
    try:
        split = train_test_split(*parts, test_size=fraction, random_state=rs, stratify=stratify)
    except ValueError:  # a class too small to stratify
        split = train_test_split(*parts, test_size=fraction, random_state=rs)
    X, X_val, y_enc, y_val = split[:4]
    w_val = None
    if w is not None:
        w, w_val = split[4], split[5]
    if not F.is_sparse(X):
        X, X_val = np.ascontiguousarray(X), np.ascontiguousarray(X_val)
    if X.shape[0] < 1 or X_val.shape[0] < 2:  # scikit-learn's MLP refuses the same
        raise ValueError(
            f"The validation set is too small: {X_val.shape[0]} of {X.shape[0] + X_val.shape[0]} "
            f"samples (validation_fraction={fraction}) for early_stopping, which needs 2 "
            "validation and 1 training sample. Increase 'validation_fraction' or the size of "
            "your dataset."
        )
    # the validation loss carries the training loss's L2 penalty, so the
    # two curves are comparable: lam_val / m_val == lam / m
    m_train = X.shape[0] if w is None else float(w.sum())
    m_val = X_val.shape[0] if w_val is None else float(w_val.sum())
    if not (m_train > 0 and m_val > 0):
        raise ValueError(
            f"early_stopping: the sample weights of the "
            f"{'validation' if m_train > 0 else 'training'} split sum to 0 "
            f"(validation_fraction={fraction}); nothing to score or train on"
        )
    # checked finite by the estimator's validation: no scan here or per iteration
    cost = net.split_scorer(X_val, y_val, w_val, lam=net.lam * m_val / m_train,
                            check_finite=False)
    return X, y_enc, w, ValidationSplit(y_val, w_val, cost, score)


def solver_options(
    est: Any, n_train: int, no_loss_stop: bool, state: dict[str, Any]
) -> dict[str, Any]:
    """``Network.fit``'s options for ``est.solver``: tol and the mini-batch settings."""
    options: dict[str, Any] = {}
    if est.solver in MINIBATCH_SOLVERS:
        options = dict(
            batch_size=min(200, n_train) if est.batch_size == "auto" else int(est.batch_size),
            learning_rate=float(est.learning_rate_init),
            momentum=float(est.momentum),
            nesterov=bool(est.nesterovs_momentum),
            beta_1=float(est.beta_1),
            beta_2=float(est.beta_2),
            epsilon=float(est.epsilon),
            n_iter_no_change=int(est.n_iter_no_change),
            shuffle=bool(est.shuffle),
            state=state,
            lr_schedule=est.learning_rate if est.solver == "sgd" else "constant",
            power_t=float(est.power_t),
        )
        # early stopping (or one partial_fit epoch) replaces the training-loss criterion
        options["tol"] = 0.0 if no_loss_stop else float(est.tol)
    else:
        options["tol"] = max(float(est.tol), np.finfo(np.float64).eps)
        if est.solver == "lbfgs":
            options["max_fun"] = int(est.max_fun)
    if est.client is not None:
        options["client"] = est.client
    return options


def run(net: Network, monitor: Monitor, X: Any, y: np.ndarray, w: np.ndarray | None,
        solver: str, max_iter: int, options: dict[str, Any]) -> str:
    """Train ``net`` with ``monitor`` as its callback; the stop reason. On a stop
    (Ctrl-C, divergence, lost workers) the best parameters seen are kept, as a
    finished early-stopping fit keeps them, and the exception is re-raised."""
    try:
        net.fit(X, y, solver=solver, max_iter=max_iter, sample_weight=w, callback=monitor,
                check_finite=False, **options)
    except STOPS as err:
        monitor.keep_best(net)
        monitor.est.stop_reason_ = type(err).__name__
        partial = getattr(err, "partial_result", None)
        if partial is not None:
            partial.theta = net.theta
        raise
    monitor.keep_best(net)
    reason = net.result.stop_reason if net.result is not None else ""
    if monitor.why is not None and net.result is not None:
        # the network saw one callback; the estimator knows whose stop it was
        reason = net.result.stop_reason = monitor.why
    return reason


def warn_unconverged(est: Any) -> None:
    """ConvergenceWarning when the last fit stopped at max_iter or max_fun."""
    limits = {"max_fun": ("the lbfgs solver", est.max_fun, "max_fun"),
              "max_iter": (f"the {est.solver} solver", est.max_iter, "max_iter")}
    if est.stop_reason_ in limits:
        what, value, name = limits[est.stop_reason_]
        warnings.warn(
            f"{type(est).__name__}: {what} reached {name}={value} "
            f"{'evaluations ' if name == 'max_fun' else ''}before converging; "
            f"raise {name} or tol",
            ConvergenceWarning,
            stacklevel=5,
        )


class Monitor:
    """The callback an estimator hands to :meth:`Network.fit`: after each
    iteration it records the curves and counters and, with a validation split,
    runs early stopping. It keeps the best parameters (best validation score;
    ties to the lower validation loss), counts the iterations since the last
    improvement, and remembers who asked to stop (``why``: "early_stopping" or
    the user's "callback"). Everything is computed first and recorded last, so
    an interrupt or a divergence inside the validation pass leaves the curves,
    ``n_iter_`` and the best parameters consistent."""

    def __init__(
        self, est: Any, split: ValidationSplit | None, callback: FitCallback | None,
        n_train: int, dtype: np.dtype, state: dict[str, Any],
    ) -> None:
        self.est, self.split, self.callback, self.n_train = est, split, callback, n_train
        self.dtype, self.state = dtype, state  # theta's dtype; the optimizer's state
        self.n_iter0 = est.n_iter_
        self.best: tuple[float, np.ndarray, int] | None = None  # (score, theta, iteration)
        self.stall = 0
        self.vloss = np.inf  # the lowest validation loss so far
        self.kept_vloss = np.inf  # the validation loss of the kept parameters
        self.why: str | None = None
        self.adaptive = est.solver == "sgd" and est.learning_rate == "adaptive"
        if split is not None:
            est.validation_scores_, est.validation_loss_curve_ = [], []
            est.best_validation_score_, est.best_iteration_ = -np.inf, None

    def __call__(self, info: IterationInfo) -> bool:
        est = self.est
        loss, score, vloss = float(info.loss), None, None
        if self.split is not None:
            score, vloss = self._validate(info.theta, self.n_iter0 + info.iteration)
        est.loss_curve_.append(loss)
        est.loss_ = loss
        est.best_loss_ = min(est.best_loss_, loss)
        est.n_iter_ = self.n_iter0 + info.iteration
        est.t_ += self.n_train  # samples seen: one pass over the training rows
        stop = False
        if score is not None and vloss is not None:
            stop = self._early_stopping(info.theta, score, vloss)
        if est.verbose:
            msg = f"Iteration {est.n_iter_}, loss = {loss:.8f}"
            if score is not None:
                msg += f", validation score = {score:.6f}"
            print(msg)
        if self.callback is not None and self.callback(est.n_iter_, loss, score):
            self.why = "callback"
            return True
        if stop:
            self.why = "early_stopping"
        return stop

    def _early_stopping(self, theta: np.ndarray, score: float, vloss: float) -> bool:
        """Record one validation result; whether to stop (after n_iter_no_change
        iterations in which neither the score rose by tol nor the loss fell by tol)."""
        est = self.est
        est.validation_scores_.append(score)
        est.validation_loss_curve_.append(vloss)
        best_score = est.best_validation_score_
        assert best_score is not None  # -inf from the start of an early-stopping fit
        # still improving: the score rose by tol, or the validation loss fell by tol
        # (an accuracy plateau is not the end of learning)
        improved = score >= best_score + est.tol or vloss <= self.vloss - est.tol
        self.stall = 0 if improved else self.stall + 1
        self.vloss = min(self.vloss, vloss)
        if score > best_score or (score == best_score and vloss < self.kept_vloss):
            # one assignment: the kept parameters, their score and iteration agree
            self.best = (score, np.array(theta, dtype=self.dtype, copy=True), est.n_iter_)
            self.kept_vloss = vloss
            est.best_validation_score_, est.best_iteration_ = score, est.n_iter_
        stop = bool(self.stall >= est.n_iter_no_change)
        lr = float(self.state.get("lr", est.learning_rate_init))
        if stop and self.adaptive and lr > 1e-6:
            # scikit-learn's adaptive rate: a stall divides the step by 5
            self.state["lr"] = lr / 5
            self.stall, stop = 0, False
        return stop

    def _validate(self, theta: np.ndarray, iteration: int) -> tuple[float, float]:
        """Validation score and loss at ``theta``; divergence is a FloatingPointError."""
        split = self.split
        assert split is not None
        try:  # one core pass over the split prepared once (Network.split_scorer)
            vloss, outputs = split.cost(theta)
            score = float(split.score(split.y, outputs, split.w))
        except (OverflowError, ValueError) as err:
            # the same report as a diverging training step (the validation data
            # itself was checked before the fit, so this is the parameters)
            if isinstance(err, ValueError) and np.isfinite(theta).all():
                raise
            raise FloatingPointError(
                f"non-finite validation loss at iteration {iteration}: {err}; "
                "lower the learning rate or scale the inputs"
            ) from err
        if not np.isfinite(vloss) or not np.isfinite(score):
            raise FloatingPointError(
                f"non-finite validation loss at iteration {iteration} (J = {vloss}); "
                "lower the learning rate or scale the inputs"
            )
        return score, float(vloss)

    def keep_best(self, net: Network) -> None:
        """With early stopping, set the network to the best parameters seen."""
        if self.split is not None and self.best is not None:
            score, theta, iteration = self.best
            net.theta = theta
            self.est.best_validation_score_, self.est.best_iteration_ = score, iteration

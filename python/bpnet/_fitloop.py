"""The estimators' fit loop: the fitted state published as one object, the
validation data (a split of the training data or the caller's), the
per-iteration monitor (curves, counters, early stopping, the best parameters,
the user's callback) and the options an estimator hands to
:meth:`bpnet.Network.fit`.

A fit builds its new state on a private draft of the estimator
(:func:`draft_of`) and publishes it onto the estimator at once
(:func:`publish`): at each user callback (so that the callback sees the
current parameters) and when the fit ends. Prediction reads one snapshot
(:class:`Fitted`) per call, so it never mixes two fits' states. It imports
scikit-learn (``train_test_split``, ``ConvergenceWarning``) and is imported
only by :mod:`bpnet.estimators`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, NamedTuple, TypeVar, overload

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from . import _warn
from . import functional as F
from ._params import MINIBATCH_SOLVERS
from .network import Network
from .optimize import FitResult, IterationInfo

__all__ = ["FitCallback", "FitInfo", "Fitted", "FittedField", "Monitor", "ValidationSplit",
           "draft_of", "given_validation", "publish", "run", "solver_options",
           "split_validation", "takes_info", "warn_diverged", "warn_unconverged"]

# callback(info: FitInfo) or the older callback(iteration, loss, validation_score);
# a true return value stops the fit
FitCallback = Callable[..., "bool | None"]
# score(y_true, outputs, sample_weight) -> the estimator's validation score
Scorer = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], float]
_T = TypeVar("_T")


# -- the published fitted state -------------------------------------------------------
@dataclass(frozen=True)
class Fitted:
    """Everything ``predict`` reads, as one immutable snapshot: the network,
    the input checks' ``n_features_in_`` / ``feature_names_in_`` and the target
    encoding. An estimator holds one (``_fitted``); a fit replaces it with one
    assignment, and ``predict`` reads it once per call. None: not set."""

    network: Network | None = None
    n_features_in: int | None = None
    feature_names_in: np.ndarray | None = None
    classes: np.ndarray | None = None  # classifier: the labels
    multilabel: bool | None = None  # classifier: indicator targets, sigmoid outputs
    y_1d: bool | None = None  # regressor: y was a vector


class FittedField(Generic[_T]):
    """A fitted attribute kept in the estimator's snapshot (:class:`Fitted`):
    ``network_`` reads ``_fitted.network``. Unset, reading it raises
    AttributeError (``hasattr`` says "not fitted", as scikit-learn expects);
    setting it replaces the snapshot by a copy with that field changed."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.attr = self.field = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr, self.field = name, name.strip("_")

    @overload
    def __get__(self, est: None, owner: type) -> FittedField[_T]: ...
    @overload
    def __get__(self, est: object, owner: type) -> _T: ...
    def __get__(self, est: object, owner: type) -> Any:
        if est is None:
            return self
        snapshot = est.__dict__.get("_fitted")
        value = None if snapshot is None else getattr(snapshot, self.field)
        if value is None:
            raise AttributeError(f"{type(est).__name__!r} object has no attribute {self.attr!r}")
        return value

    def __set__(self, est: object, value: _T | None) -> None:
        snapshot = est.__dict__.get("_fitted") or Fitted()
        est.__dict__["_fitted"] = replace(snapshot, **{self.field: value})

    def __delete__(self, est: object) -> None:
        self.__set__(est, None)


def draft_of(est: Any) -> Any:
    """A private copy of ``est`` for a fit to build its state on: the same
    attributes, its own curves and optimizer state (the estimator itself is
    changed only by :func:`publish`)."""
    draft = object.__new__(type(est))
    draft.__dict__.update(est.__dict__)
    for name in ("loss_curve_", "validation_scores_", "validation_loss_curve_"):
        if name in draft.__dict__:
            draft.__dict__[name] = list(draft.__dict__[name])
    if "_optimizer_state" in draft.__dict__:
        draft.__dict__["_optimizer_state"] = dict(draft.__dict__["_optimizer_state"])
    return draft


_PARAM_NAMES: dict[type, frozenset[str]] = {}


def _param_names(est: Any) -> frozenset[str]:
    """The constructor parameters of ``est``'s class (read once per class)."""
    names = _PARAM_NAMES.get(type(est))
    if names is None:
        names = _PARAM_NAMES[type(est)] = frozenset(est.get_params(deep=False))
    return names


def publish(est: Any, draft: Any, theta: np.ndarray | None = None) -> Any:
    """Make ``draft``'s fitted state ``est``'s, in one update of its attributes
    (its parameters are left as they are); with ``theta``, the network shown is
    a copy holding ``theta`` (the current parameters of a running fit).
    Returns ``est``."""
    params = _param_names(est)
    state = {k: v for k, v in draft.__dict__.items() if k not in params}
    if theta is not None:
        snapshot: Fitted = state["_fitted"]
        net = snapshot.network
        assert net is not None  # a fit publishes after it built its network
        shown = Network(net.layer_sizes, activation=net.activation, output=net.output,
                        lam=net.lam, dtype=net.dtype, theta=theta, rng=net.rng,
                        n_threads=net.n_threads)
        state["_fitted"] = replace(snapshot, network=shown)
    est.__dict__.update(state)  # one dict update: prediction sees the old or the new
    return est


@dataclass(frozen=True)
class FitInfo:
    """What an estimator's fit callback receives after each iteration (epoch).

    Attributes
    ----------
    estimator : BPNetClassifier or BPNetRegressor
        The estimator being fitted. During the callback its fitted attributes
        (``coefs_``, ``intercepts_``, ``network_``, ``n_iter_``,
        ``loss_curve_``, ``best_validation_score_``, ...) and its methods
        (``predict``, ``predict_proba``, ``score``, ``save``) describe the
        current parameters: a copy, so writing into ``coefs_`` does not
        change the fit.
    iteration : int
        ``estimator.n_iter_``: iterations (epochs) since the network was
        initialized.
    loss : float
        The training loss of this iteration.
    validation_score : float or None
        The validation score (accuracy, R^2) with early stopping, else None.
    validation_loss : float or None
        The validation loss with early stopping, else None.
    """

    estimator: Any
    iteration: int
    loss: float
    validation_score: float | None
    validation_loss: float | None


def takes_info(callback: Callable[..., Any]) -> bool:
    """Whether ``callback`` takes one :class:`FitInfo` (``callback(info)``) rather
    than the three values ``callback(iteration, loss, validation_score)``: a
    callable that accepts three positional arguments gets the three values."""
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):  # no signature to read (some builtins): the 3 values
        return False
    for args, info in (((0, 0.0, None), False), ((None,), True)):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return info
    raise ValueError(
        f"callback must take one argument (a bpnet FitInfo) or three (iteration, loss, "
        f"validation_score); got {getattr(callback, '__name__', callback)!r} with "
        f"signature {signature}"
    )


# -- the validation data --------------------------------------------------------------
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
    return X, y_enc, w, given_validation(net, X, w, X_val, y_val, w_val, score,
                                         f"split (validation_fraction={fraction})")


def given_validation(
    net: Network, X: Any, w: np.ndarray | None, X_val: Any, y_val: np.ndarray,
    w_val: np.ndarray | None, score: Scorer, what: str = "data (X_val, y_val)",
) -> ValidationSplit:
    """The validation rows ``X_val``, ``y_val`` (encoded), ``w_val`` of a fit on
    ``X`` with weights ``w``, prepared once for ``net``'s one-pass score: a split
    of the training data or the caller's own, scored the same way."""
    # the validation loss carries the training loss's L2 penalty, so the
    # two curves are comparable: lam_val / m_val == lam / m
    m_train = X.shape[0] if w is None else float(w.sum())
    m_val = X_val.shape[0] if w_val is None else float(w_val.sum())
    if not (m_train > 0 and m_val > 0):
        name, detail = what.split(" ", 1)  # "split (validation_fraction=...)"
        part = f"validation {name}" if m_train > 0 else "training " + (
            "split" if name == "split" else "data")
        raise ValueError(
            f"early_stopping: the sample weights of the {part} sum to 0 "
            f"{detail if name == 'split' or m_train > 0 else ''}".rstrip()
            + "; nothing to score or train on"
        )
    # checked finite by the estimator's validation: no scan here or per iteration
    cost = net.split_scorer(X_val, y_val, w_val, lam=net.lam * m_val / m_train,
                            check_finite=False)
    return ValidationSplit(y_val, w_val, cost, score)


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
    # the fit's draft network holds a buffer of its own (Network's constructor copies
    # the parameters it is given): the loops work in it instead of a copy
    options["overwrite_theta0"] = True
    if est.client is not None:
        options["client"] = est.client
    return options


def run(net: Network, monitor: Monitor, X: Any, y: np.ndarray, w: np.ndarray | None,
        solver: str, max_iter: int, options: dict[str, Any]) -> str:
    """Train ``net`` with ``monitor`` as its callback and publish the result onto
    the estimator; the stop reason.

    Any other end once training started (an exception from the user's
    callback, ``SystemExit``, Ctrl-C, divergence, lost workers) publishes the
    state after the last recorded iteration, or at the initial parameters
    (:meth:`Monitor.settle`), and re-raises, with ``partial_result`` holding
    the published parameters; an error before the optimizer loop started
    publishes nothing."""
    try:
        net.fit(X, y, solver=solver, max_iter=max_iter, sample_weight=w, callback=monitor,
                check_finite=False, **options)
    except BaseException as err:
        if monitor.settle(net, err):
            monitor.publish()
        raise
    monitor.keep_best(net)
    reason = net.result.stop_reason if net.result is not None else ""
    if monitor.why is not None and net.result is not None:
        # the network saw one callback; the estimator knows whose stop it was
        reason = net.result.stop_reason = monitor.why
    monitor.est.stop_reason_ = reason
    monitor.publish()
    return reason


def warn_unconverged(est: Any) -> None:
    """ConvergenceWarning when the last fit stopped at max_iter or max_fun."""
    limits = {"max_fun": ("the lbfgs solver", est.max_fun, "max_fun"),
              "max_iter": (f"the {est.solver} solver", est.max_iter, "max_iter")}
    if est.stop_reason_ in limits:
        what, value, name = limits[est.stop_reason_]
        _warn.warn(
            f"{type(est).__name__}: {what} reached {name}={value} "
            f"{'evaluations ' if name == 'max_fun' else ''}before converging; "
            f"raise {name} or tol",
            ConvergenceWarning,
        )


# a fit whose kept parameters' training loss ends above this many times the loss at
# its initial parameters, and at least DIVERGENCE_MARGIN above it, has diverged
# (warned); the margin spares a warm start from a tiny loss the noise of an epoch
DIVERGENCE_FACTOR = 10.0
DIVERGENCE_MARGIN = 1.0


def warn_diverged(est: Any, result: FitResult | None, kept_loss: float | None) -> None:
    """ConvergenceWarning when the fit ended far above where it started: the
    training loss of the kept parameters exceeds ``DIVERGENCE_FACTOR`` times
    the loss at the initial parameters, and that loss plus
    ``DIVERGENCE_MARGIN`` (scikit-learn's solvers warn or stop on a diverging
    loss; a finite one would otherwise pass unnoticed)."""
    start = None if result is None else result.initial_loss
    if start is None or kept_loss is None:
        return
    if not (kept_loss > DIVERGENCE_FACTOR * start and kept_loss > start + DIVERGENCE_MARGIN):
        return
    _warn.warn(
        f"{type(est).__name__}: the training loss rose from {start:.4g} (at the initial "
        f"parameters) to {kept_loss:.4g} with the {est.solver} solver: the fit diverged; "
        "lower the learning rate (learning_rate_init) or scale the inputs",
        ConvergenceWarning,
    )


def _writable(theta: np.ndarray) -> np.ndarray:
    """``theta`` for a network to keep: a recorded snapshot (read-only, see
    ``optimize._snapshot``) is copied, so that the network's parameters (and the
    estimator's ``coefs_``) can be written like any fitted array."""
    return theta if theta.flags.writeable else theta.copy()


class _Recorded(NamedTuple):
    """The last iteration the monitor recorded completely (one assignment)."""

    n_iter: int
    theta: np.ndarray  # its parameters (a copy)
    best: tuple[float, np.ndarray, int] | None  # early stopping's best so far


class Monitor:
    """The callback an estimator hands to :meth:`Network.fit`: after each
    iteration it records the curves and counters on the fit's draft and, with
    validation data, runs early stopping. It keeps the best parameters (best
    validation score; ties to the lower validation loss), counts the
    iterations since the last improvement, calls the user's callback with the
    estimator showing the current parameters (:func:`publish`), and remembers
    who asked to stop (``why``: "early_stopping" or the user's "callback").

    Every iteration ends with one assignment of what it recorded (``done``):
    whatever interrupts the fit, at whatever line, :meth:`settle` restores the
    draft to exactly that iteration, with its parameters."""

    def __init__(
        self, est: Any, split: ValidationSplit | None, callback: FitCallback | None,
        n_train: int, dtype: np.dtype, state: dict[str, Any], public: Any = None,
    ) -> None:
        self.est, self.split, self.callback, self.n_train = est, split, callback, n_train
        self.dtype, self.state = dtype, state  # theta's dtype; the optimizer's state
        self.public = public  # the estimator the draft ``est`` is published onto
        self.takes_info = callback is not None and takes_info(callback)
        self.n_iter0, self.t0, self.best_loss0 = est.n_iter_, est.t_, est.best_loss_
        self.len0 = len(est.loss_curve_)
        self.best: tuple[float, np.ndarray, int] | None = None  # (score, theta, iteration)
        self.done: _Recorded | None = None
        self.stall = 0
        self.vloss = np.inf  # the lowest validation loss so far
        self.kept_vloss = np.inf  # the validation loss of the kept parameters
        self.why: str | None = None
        self.spare: np.ndarray | None = None  # a buffer for the next copy (see _copy)
        self.adaptive = est.solver == "sgd" and est.learning_rate == "adaptive"
        if split is not None:
            est.validation_scores_, est.validation_loss_curve_ = [], []
            est.best_validation_score_, est.best_iteration_ = -np.inf, None

    def __call__(self, info: IterationInfo) -> bool:
        est = self.est
        n = self.n_iter0 + info.iteration
        loss, score, vloss = float(info.loss), None, None
        if self.split is not None:
            score, vloss = self._validate(info.theta, n)
        theta = info.theta
        if theta.flags.writeable or theta.dtype != self.dtype:
            # SciPy's iterate (full batch) changes after the call: a copy. A read-only
            # theta is the mini-batch loop's snapshot, never written again (kept as is)
            theta = self._copy(theta)
        est.loss_curve_.append(loss)
        est.loss_ = loss
        est.best_loss_ = min(est.best_loss_, loss)
        est.n_iter_ = n
        est.t_ += self.n_train  # samples seen: one pass over the training rows
        stop = False
        if score is not None and vloss is not None:
            stop = self._early_stopping(theta, score, vloss)
        previous, self.done = self.done, _Recorded(n, theta, self.best)  # recorded
        self._recycle(previous)
        if est.verbose:
            msg = f"Iteration {n}, loss = {loss:.8f}"
            if score is not None:
                msg += f", validation score = {score:.6f}"
            print(msg)
        if self.callback is not None and self._call_user(theta, n, loss, score, vloss):
            self.why = "callback"
            return True
        if stop:
            self.why = "early_stopping"
        return stop

    def _copy(self, theta: np.ndarray) -> np.ndarray:
        """``theta`` copied (as the fit's dtype) into the spare buffer if there is one,
        else into a fresh array. A fresh 128 MiB array costs its page faults (about
        150 ms on a VM, bench_sparse_text.py): a full-batch fit copies every iteration."""
        spare, self.spare = self.spare, None
        if spare is None or spare.shape != theta.shape:
            return np.array(theta, dtype=self.dtype, copy=True)
        spare[...] = theta
        return spare

    def _recycle(self, previous: _Recorded | None) -> None:
        """Keep the parameters of the iteration recorded before the last as the spare
        buffer of the next copy, if nothing else can hold them: a copy of this
        monitor's, never published to the user's callback, not early stopping's best."""
        if previous is None or self.callback is not None:
            return
        theta = previous.theta
        best = None if self.best is None else self.best[1]
        if theta.flags.writeable and theta is not best:  # writable: a copy of ours
            self.spare = theta

    def _call_user(self, theta: np.ndarray, n: int, loss: float, score: float | None,
                   vloss: float | None) -> bool:
        """The user's callback, with the estimator showing the current parameters."""
        assert self.callback is not None
        if self.public is not None:
            publish(self.public, self.est, theta)
        if self.takes_info:
            return bool(self.callback(FitInfo(self.public, n, loss, score, vloss)))
        return bool(self.callback(n, loss, score))

    def publish(self) -> None:
        """Publish the draft (as it is) onto the estimator."""
        if self.public is not None:
            publish(self.public, self.est)

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
            self.best = (score, theta, est.n_iter_)
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
            net.theta = _writable(theta)
            self.est.best_validation_score_, self.est.best_iteration_ = score, iteration

    def kept_loss(self) -> float | None:
        """The training loss of the parameters the fit kept (the best ones with
        early stopping, else the last); None before any iteration."""
        curve = self.est.loss_curve_
        if len(curve) <= self.len0:
            return None
        if self.split is not None and self.best is not None:
            return float(curve[self.len0 + self.best[2] - self.n_iter0 - 1])
        return float(curve[-1])

    def settle(self, net: Network, err: BaseException) -> bool:
        """After a fit ended by ``err`` once training had started (the optimizer
        loop hung its ``partial_result`` on it, or an iteration was recorded):
        the draft and ``net`` as they were after the last recorded iteration, or
        at the initial parameters if none was (its parameters, or with early
        stopping the best ones as a finished fit keeps them; the curves,
        counters and best_* up to it; ``stop_reason_`` the exception's name; no
        optimizer state, as its moments describe a step past those
        parameters), and ``err.partial_result`` holding the same parameters.
        False, and nothing changed, if training had not started."""
        done = self.done
        partial = getattr(err, "partial_result", None)
        if not isinstance(partial, FitResult):
            partial = None
        if done is None and partial is None:
            return False
        est = self.est
        k, theta = (0, net.theta) if done is None else (done.n_iter - self.n_iter0, done.theta)
        del est.loss_curve_[self.len0 + k:]
        est.n_iter_, est.t_ = self.n_iter0 + k, self.t0 + k * self.n_train
        est.loss_ = est.loss_curve_[-1] if est.loss_curve_ else None
        est.best_loss_ = min([self.best_loss0, *est.loss_curve_[self.len0:]])
        if self.split is not None:
            del est.validation_scores_[k:], est.validation_loss_curve_[k:]
            est.best_validation_score_, est.best_iteration_ = None, None
            if done is not None and done.best is not None:
                est.best_validation_score_, theta, est.best_iteration_ = done.best
        name = type(err).__name__
        est.stop_reason_ = name
        est._optimizer_state = {}
        theta = _writable(theta)
        net.theta, net.loss_history = theta, list(est.loss_curve_[self.len0:])
        net.result = FitResult(theta=theta, loss_history=list(net.loss_history), n_iter=k,
                               n_evals=0 if partial is None else partial.n_evals,
                               stop_reason=name)
        if partial is not None:
            partial.theta, partial.loss_history, partial.n_iter = (
                theta, list(net.loss_history), k)
        return True

"""Conversion between bpnet's estimators and scikit-learn's MLPs.

:func:`to_sklearn` turns a fitted :class:`~bpnet.BPNetClassifier` /
:class:`~bpnet.BPNetRegressor` into a fitted ``MLPClassifier`` /
``MLPRegressor``; :func:`mlp_parts` goes the other way as far as the parts
of an estimator (its parameters, its :class:`~bpnet.Network` and its fitted
attributes), which :func:`bpnet.from_sklearn` (in ``bpnet.estimators``)
assembles. Both directions predict the same probabilities (classifiers) or
outputs (regressors), to 1e-12 in float64: the weights are the same numbers
in the other layout.

This module stands below ``bpnet.estimators``: it knows a bpnet estimator by
what it offers (a scikit-learn classifier or regressor with a ``to_sklearn``
method and, once fitted, a ``network_``), not by its class.

- bpnet's ``Theta^(l)`` (s_{l+1}, s_l + 1), bias in column 0, is
  scikit-learn's ``intercepts_[l]`` (s_{l+1},) and ``coefs_[l]`` (s_l, s_{l+1}).
- Hidden units: ``sigmoid`` is scikit-learn's ``logistic``; ``tanh``,
  ``relu`` and ``identity`` are the same.
- Output: a single-label bpnet classifier uses a softmax over K >= 2 units;
  scikit-learn uses one logistic unit for two classes. Since
  ``softmax(z0, z1)[1] = sigmoid(z1 - z0)``, the binary output layer becomes
  the difference of the two rows, and back (rows 0 and z).
- Solver ``cg`` has no scikit-learn counterpart: the MLP is given ``lbfgs``
  (it matters only if it is trained further).
- A regressor's output: ``identity`` (``loss="squared_error"``) both sides;
  scikit-learn's ``exp`` (``loss="poisson"``) is bpnet's ``poisson`` output.
  The regressor's ``loss`` travels with it.
- The fit state travels both ways as far as both sides keep it: ``n_iter_``,
  ``t_``, ``loss_``, ``loss_curve_``, ``best_loss_``, ``validation_scores_``
  and ``best_validation_score_``. scikit-learn keeps no validation losses:
  an early-stopped MLP becomes an estimator whose ``validation_loss_curve_``
  holds NaN (unknown) per validation score and whose ``best_iteration_`` is
  the first iteration with the best score (the one scikit-learn kept). Its
  ``best_loss_`` (None after early stopping) becomes the lowest training
  loss, bpnet's meaning. The other way, the MLP gets the private state a
  warm-start ``fit`` reads (``_best_coefs``, ``_best_intercepts``,
  ``_no_improvement_count``), so it can be trained further.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .network import Network

__all__ = ["MLPParts", "mlp_parts", "to_sklearn"]

_TO_SK_ACT = {"sigmoid": "logistic", "tanh": "tanh", "relu": "relu", "identity": "identity"}
_FROM_SK_ACT = {v: k for k, v in _TO_SK_ACT.items()}
# bpnet's output unit -> scikit-learn's out_activation_ (a binary softmax is changed below)
_TO_SK_OUT = {"softmax": "softmax", "sigmoid": "logistic", "identity": "identity",
              "poisson": "exp"}
_REGRESSOR_OUT = {"identity": ("identity", "squared_error"), "exp": ("poisson", "poisson")}
# constructor parameters both sides share, by name
_SHARED = (
    "hidden_layer_sizes", "alpha", "batch_size", "learning_rate", "learning_rate_init",
    "power_t", "max_iter", "shuffle", "tol", "verbose", "warm_start", "momentum",
    "nesterovs_momentum", "early_stopping", "validation_fraction", "beta_1", "beta_2",
    "epsilon", "n_iter_no_change", "max_fun",
)


def _random_state(value: Any) -> Any:
    return value if value is None or isinstance(value, (int, np.integer)) else None


def _is_bpnet_estimator(est: Any) -> bool:
    """Whether ``est`` is a bpnet estimator: a scikit-learn classifier or
    regressor that converts itself (``to_sklearn``); scikit-learn's MLPs do not."""
    from sklearn.base import is_classifier, is_regressor

    return (is_classifier(est) or is_regressor(est)) and callable(
        getattr(type(est), "to_sklearn", None)
    )


def to_sklearn(est: Any) -> Any:
    """A fitted scikit-learn MLP equal to the fitted bpnet estimator ``est``.

    Parameters
    ----------
    est : BPNetClassifier or BPNetRegressor
        Fitted.

    Returns
    -------
    sklearn.neural_network.MLPClassifier or MLPRegressor
        Fitted: ``predict_proba`` / ``predict`` give the same results (to
        1e-12 in float64); training curves and counters are copied.
    """
    from sklearn.base import is_classifier
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.utils.validation import check_is_fitted

    if not _is_bpnet_estimator(est):
        raise TypeError(
            f"est must be a BPNetClassifier or BPNetRegressor; got {type(est).__name__}"
        )
    check_is_fitted(est, "network_")
    net = est.network_
    params = {k: v for k, v in est.get_params(deep=False).items() if k in _SHARED}
    params["hidden_layer_sizes"] = tuple(net.layer_sizes[1:-1])
    params["activation"] = _TO_SK_ACT[net.activation]
    params["solver"] = "lbfgs" if est.solver == "cg" else est.solver
    params["random_state"] = _random_state(est.random_state)
    is_clf = is_classifier(est)
    if not is_clf:
        params["loss"] = "poisson" if net.output == "poisson" else "squared_error"
    mlp = (MLPClassifier if is_clf else MLPRegressor)(**params)

    thetas = [np.array(T, dtype=net.dtype) for T in net.thetas]  # copies: independent
    coefs = [np.ascontiguousarray(T[:, 1:].T) for T in thetas]  # (s_l, s_{l+1})
    intercepts = [np.ascontiguousarray(T[:, 0]) for T in thetas]  # (s_{l+1},)
    # a classifier's output unit: softmax (single-label) or sigmoid (multi-label)
    out = _TO_SK_OUT[net.output]
    if out == "softmax" and len(est.classes_) == 2:  # softmax(z0, z1)[1] == sigmoid(z1 - z0)
        coefs[-1] = coefs[-1][:, 1:2] - coefs[-1][:, 0:1]
        intercepts[-1] = intercepts[-1][1:2] - intercepts[-1][0:1]
        out = "logistic"
    mlp.coefs_, mlp.intercepts_ = coefs, intercepts
    mlp.n_layers_ = len(net.layer_sizes)
    mlp.n_outputs_ = coefs[-1].shape[1]
    mlp.out_activation_ = out
    if is_clf:
        _set_classes(mlp, est.classes_, multilabel=net.output == "sigmoid")
    _copy_fitted_to_mlp(est, mlp)
    return mlp


def _set_classes(mlp: Any, classes: np.ndarray, *, multilabel: bool) -> None:
    """An MLPClassifier's ``classes_`` and the label binarizer it decodes with."""
    from sklearn.preprocessing import LabelBinarizer

    lb = LabelBinarizer()
    if multilabel:
        lb.fit(np.eye(len(classes), dtype=int))
    else:
        lb.fit(classes)
    mlp._label_binarizer = lb
    mlp.classes_ = lb.classes_


def _copy_fitted_to_mlp(est: Any, mlp: Any) -> None:
    """The input description, counters and training curves of ``est`` onto ``mlp``."""
    mlp.n_features_in_ = est.n_features_in_
    if hasattr(est, "feature_names_in_"):
        mlp.feature_names_in_ = est.feature_names_in_
    mlp.n_iter_ = int(est.n_iter_)
    mlp.t_ = int(getattr(est, "t_", 0))
    mlp.loss_ = float(est.loss_) if est.loss_ is not None else None
    mlp.loss_curve_ = list(est.loss_curve_)
    mlp.best_loss_ = None if est.early_stopping else float(est.best_loss_)
    mlp.validation_scores_ = list(est.validation_scores_) if est.early_stopping else None
    mlp.best_validation_score_ = est.best_validation_score_ if est.early_stopping else None
    # what scikit-learn's fit reads when it resumes (warm_start, partial_fit):
    # its _initialize sets these, and a resumed fit does not call it
    mlp._no_improvement_count = 0
    mlp._best_coefs = [c.copy() for c in mlp.coefs_]
    mlp._best_intercepts = [b.copy() for b in mlp.intercepts_]


@dataclass
class MLPParts:
    """A fitted scikit-learn MLP as the parts of the equal bpnet estimator.

    Attributes
    ----------
    classifier : bool
        An ``MLPClassifier`` (a :class:`~bpnet.BPNetClassifier`) or not (a
        :class:`~bpnet.BPNetRegressor`).
    params : dict
        The estimator's constructor parameters.
    network : Network
        Its ``network_``: the MLP's weights in bpnet's layout.
    fitted : dict
        Its public fitted attributes (``n_features_in_``, ``classes_``,
        ``n_iter_``, ``loss_curve_``, ...), by name.
    multilabel : bool
        A classifier trained on multi-label targets (sigmoid outputs).
    y_1d : bool
        A regressor trained on a 1-d target (one output).
    """

    classifier: bool
    params: dict[str, Any]
    network: Network = field(repr=False)
    fitted: dict[str, Any] = field(repr=False)
    multilabel: bool
    y_1d: bool


def mlp_parts(mlp: Any, *, n_threads: int | None = None) -> MLPParts:
    """The parts of the bpnet estimator equal to a fitted scikit-learn MLP.

    Parameters
    ----------
    mlp : sklearn.neural_network.MLPClassifier or MLPRegressor
        Fitted, with ``logistic``, ``tanh``, ``relu`` or ``identity`` hidden units.
    n_threads : int, optional
        ``n_threads`` of the estimator and its network.

    Returns
    -------
    MLPParts
        What :func:`bpnet.from_sklearn` assembles. The working dtype is the
        MLP's weights' dtype.
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(mlp, (MLPClassifier, MLPRegressor)):
        raise TypeError(f"mlp must be an MLPClassifier or MLPRegressor; got {type(mlp).__name__}")
    check_is_fitted(mlp, "coefs_")
    is_clf = isinstance(mlp, MLPClassifier)
    if not is_clf and mlp.out_activation_ not in _REGRESSOR_OUT:
        raise ValueError(
            f"mlp is an MLPRegressor with an {mlp.out_activation_!r} output; bpnet's "
            f"regressor has {tuple(_REGRESSOR_OUT)} outputs (loss='squared_error' or 'poisson')"
        )
    if mlp.activation not in _FROM_SK_ACT:
        raise ValueError(
            f"mlp.activation is {mlp.activation!r}; bpnet's hidden units are "
            f"{tuple(_FROM_SK_ACT)} (scikit-learn's names)"
        )
    params = {k: v for k, v in mlp.get_params(deep=False).items() if k in _SHARED}
    params.update(activation=_FROM_SK_ACT[mlp.activation], solver=mlp.solver,
                  random_state=_random_state(mlp.random_state), n_threads=n_threads)
    if not is_clf:
        params["loss"] = _REGRESSOR_OUT[mlp.out_activation_][1]
    dtype = np.dtype(np.dtype(mlp.coefs_[0].dtype).name)
    if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"mlp's weights are {dtype}; expected float64 or float32")
    params["dtype"] = dtype.name
    multilabel = is_clf and mlp._label_binarizer.y_type_ == "multilabel-indicator"
    net = _network(mlp, params, dtype, multilabel=multilabel, n_threads=n_threads)
    fitted = _fitted_from_mlp(mlp)
    fitted["n_outputs_"] = net.layer_sizes[-1]
    if is_clf:
        fitted["classes_"] = (np.arange(net.layer_sizes[-1]) if multilabel
                              else np.asarray(mlp.classes_))
    return MLPParts(classifier=is_clf, params=params, network=net, fitted=fitted,
                    multilabel=multilabel, y_1d=not is_clf and mlp.n_outputs_ == 1)


def _network(
    mlp: Any, params: dict[str, Any], dtype: np.dtype, *, multilabel: bool,
    n_threads: int | None,
) -> Network:
    """The MLP's weights as a :class:`~bpnet.Network`: ``Theta^(l) = [b | W^T]``
    (s_{l+1}, s_l + 1); a binary classifier's one logistic unit becomes the
    logits (0, z) under a softmax."""
    from sklearn.neural_network import MLPClassifier

    is_clf = isinstance(mlp, MLPClassifier)
    coefs = [np.asarray(W, dtype=np.float64) for W in mlp.coefs_]  # (s_l, s_{l+1})
    intercepts = [np.asarray(b, dtype=np.float64) for b in mlp.intercepts_]  # (s_{l+1},)
    if is_clf and not multilabel:
        if mlp.out_activation_ == "logistic":  # two classes: logits (0, z) under a softmax
            coefs[-1] = np.hstack([np.zeros_like(coefs[-1]), coefs[-1]])
            intercepts[-1] = np.concatenate([np.zeros(1), intercepts[-1]])
        output = "softmax"
    else:
        output = "sigmoid" if is_clf else _REGRESSOR_OUT[mlp.out_activation_][0]
    sizes = [coefs[0].shape[0], *(W.shape[1] for W in coefs)]
    theta = np.concatenate(
        [np.hstack([b[:, None], W.T]).ravel() for W, b in zip(coefs, intercepts)]
    ).astype(dtype)
    seed = 0 if not isinstance(mlp.random_state, (int, np.integer)) else int(mlp.random_state)
    return Network(sizes, activation=params["activation"], output=output,
                   lam=float(mlp.alpha), dtype=dtype, theta=theta, rng=seed,
                   n_threads=n_threads)


def _fitted_from_mlp(mlp: Any) -> dict[str, Any]:
    """The MLP's input description, counters and training curves as the
    estimator's fitted attributes, by name (see the module documentation for
    what scikit-learn does not keep)."""
    fitted: dict[str, Any] = {"n_features_in_": int(mlp.n_features_in_)}
    if hasattr(mlp, "feature_names_in_"):
        fitted["feature_names_in_"] = mlp.feature_names_in_
    curve = [float(v) for v in getattr(mlp, "loss_curve_", None) or []]
    best = getattr(mlp, "best_loss_", None)
    scores = [float(v) for v in getattr(mlp, "validation_scores_", None) or []]
    best_score = getattr(mlp, "best_validation_score_", None)
    fitted.update(
        n_iter_=int(mlp.n_iter_),
        t_=int(getattr(mlp, "t_", 0) or 0),
        loss_=float(mlp.loss_),
        loss_curve_=curve,
        best_loss_=float(best) if best is not None else min(curve, default=np.inf),
        validation_scores_=scores,
        validation_loss_curve_=[float("nan")] * len(scores),  # scikit-learn keeps none
        best_validation_score_=None if best_score is None else float(best_score),
        best_iteration_=(int(mlp.n_iter_) - len(scores) + int(np.argmax(scores)) + 1
                         if scores else None),
        stop_reason_="from_sklearn",
    )
    return fitted

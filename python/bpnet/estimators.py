"""scikit-learn estimators: :class:`BPNetClassifier` and :class:`BPNetRegressor`.

They follow scikit-learn's conventions (the constructor stores parameters
only, fitted attributes end in ``_``, ``fit`` / ``predict`` / ``score``,
``partial_fit`` for the mini-batch solvers, ``warm_start``, ``clone``,
Pipelines and grid searches) and train a :class:`bpnet.Network` underneath.

scikit-learn is an optional dependency: this module is the only one that
imports it, and ``import bpnet`` loads it lazily on first use of
``bpnet.BPNetClassifier`` / ``bpnet.BPNetRegressor``.
"""

from __future__ import annotations

import copy
import inspect
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from scipy.sparse import issparse

from ._about import install_hint

try:
    from sklearn import get_config
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import DataConversionWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.utils import check_random_state, compute_sample_weight
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import (
        _check_sample_weight,
        assert_all_finite,
        check_array,
        check_is_fitted,
        column_or_1d,
    )
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"bpnet's scikit-learn estimators need scikit-learn: {install_hint('sklearn')}"
    ) from err

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(estimator: Any, *args: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(*args, **kwargs)


from . import _fitloop, _modelfile, _runtime, _warn
from . import _params as P
from . import _records as R
from . import functional as F
from ._fitloop import FitCallback, FitInfo, FittedField
from ._guard import fit_guarded
from ._modelfile import Record, RecordError
from .network import Network
from .optimize import MINIBATCH_SOLVERS, STATE_ARRAYS

# scikit-learn's keyword that turns off its finiteness check of X (1.6 renamed it)
_NO_FINITE_CHECK = {
    "ensure_all_finite" if "ensure_all_finite" in inspect.signature(check_array).parameters
    else "force_all_finite": False
}


def _validated(estimator: Any, n_threads: int | None, X: Any, *args: Any, **kwargs: Any) -> Any:
    """scikit-learn's ``validate_data(estimator, X, *args, **kwargs)`` (conversion, shape
    and y checks, feature bookkeeping) with its scan of X for NaN and inf replaced by the
    core's threaded one on ``n_threads`` (``scan_finite``: case D's 7.84 M float32 values
    in 0.7 ms on two threads against 3 ms for NumPy's sum); a non-finite X gets
    scikit-learn's own error.
    scikit-learn's ``assume_finite`` setting skips the scan, as it skips its own."""
    out = _validate_data(estimator, X, *args, **kwargs, **_NO_FINITE_CHECK)
    Xv = out[0] if isinstance(out, tuple) else out  # float64 or float32 (the callers' dtype)
    if not get_config()["assume_finite"] and not _runtime.all_finite(
        Xv.data if issparse(Xv) else Xv, n_threads
    ):
        assert_all_finite(Xv, estimator_name=type(estimator).__name__, input_name="X")
    return out


__all__ = ["BPNetClassifier", "BPNetRegressor", "FitInfo"]

# the attributes kept in the snapshot predict reads (bpnet._fitloop.Fitted)
_Est = TypeVar("_Est", bound="_FitPredictBPNet")
_SNAPSHOT_NAMES = ("network_", "n_features_in_", "feature_names_in_", "classes_",
                   "_multilabel", "_y_1d")

_SKLEARN_OUT = {"softmax": "softmax", "sigmoid": "logistic", "identity": "identity",
                "poisson": "exp"}

# The estimator's parameters and the rule of bpnet._params each follows, checked
# in this order (activation, solver, n_threads and dtype: the rules of their names).
_PARAMS: tuple[tuple[str, str], ...] = (
    ("activation", "activation"),
    ("solver", "solver"),
    ("alpha", "non_negative"),
    ("batch_size", "batch_size"),
    ("learning_rate", "lr_schedule"),
    ("power_t", "non_negative"),
    ("max_fun", "count"),
    ("learning_rate_init", "positive"),
    ("momentum", "fraction"),
    ("beta_1", "fraction"),
    ("beta_2", "fraction"),
    ("epsilon", "positive"),
    ("max_iter", "count"),
    ("tol", "non_negative"),
    ("validation_fraction", "open_fraction"),
    ("n_iter_no_change", "count"),
    ("n_threads", "n_threads"),
    ("random_state", "random_state"),
    ("nesterovs_momentum", "flag"),
    ("shuffle", "flag"),
    ("early_stopping", "flag"),
    ("warm_start", "flag"),
)


def check_params(est: Any) -> None:
    """Check an estimator's parameters against their rules (bpnet._params), as
    ``fit`` does first: for a caller that wants bad settings reported before
    any other work (the ``bpnet train`` command)."""
    est._validate_params()


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _random_state(random_state: Any) -> np.random.RandomState:
    """The fit's source of seeds, as scikit-learn's ``check_random_state`` gives
    it; a NumPy ``Generator`` becomes a RandomState over the generator's own bit
    generator, so a fit draws from (and advances) the user's stream, as it does
    from a RandomState instance: ``default_rng(0)`` gives the same fit each time."""
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(random_state.bit_generator)
    rs: np.random.RandomState = check_random_state(random_state)
    return rs


class _BaseBPNet(BaseEstimator):  # type: ignore[misc]  # scikit-learn has no type hints
    """Parameters, validation and the training loop shared by both estimators."""

    _output: str  # the network's output unit, set per subclass / per fit
    # what predict reads: one snapshot (``_fitted``), replaced at once by a fit
    network_ = FittedField[Network]("The trained network.")
    n_features_in_ = FittedField[int]("Number of input features.")
    feature_names_in_ = FittedField[np.ndarray](
        "Feature names, when X had string column names.")
    # the other fitted attributes (set by fit; declared for type checkers)
    n_outputs_: int
    n_iter_: int
    t_: int
    loss_: float | None  # None only for a model file saved before any iteration
    best_loss_: float
    loss_curve_: list[float]
    validation_scores_: list[float]
    validation_loss_curve_: list[float]
    best_validation_score_: float | None
    best_iteration_: int | None
    stop_reason_: str
    _optimizer_state: dict[str, Any]

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "sigmoid",
        *,
        solver: str = "lbfgs",
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        max_fun: int = 15000,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        shuffle: bool = True,
        max_iter: int = 200,
        tol: float = 1e-4,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        random_state: int | np.random.RandomState | np.random.Generator | None = None,
        n_threads: int | None = None,
        dtype: str | type | None = None,
        verbose: bool = False,
        warm_start: bool = False,
        client: object = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_fun = max_fun
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.shuffle = shuffle
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.n_threads = n_threads
        self.dtype = dtype
        self.verbose = verbose
        self.warm_start = warm_start
        self.client = client

    # -- parameter validation ------------------------------------------------
    def _hidden_sizes(self) -> tuple[int, ...]:
        h: Any = self.hidden_layer_sizes
        if _is_int(h):
            h = (h,)
        if isinstance(h, (str, bytes)) or not hasattr(h, "__iter__"):
            raise ValueError(
                f"hidden_layer_sizes must be an int or a sequence of ints >= 1; got {h!r}"
            )
        h = tuple(h)
        for s in h:
            if not _is_int(s) or s < 1:
                raise ValueError(
                    f"hidden_layer_sizes must hold ints >= 1; got {self.hidden_layer_sizes!r}"
                )
        return tuple(int(s) for s in h)

    def _work_dtype(self, X: object = None) -> np.dtype:
        """The working dtype: ``dtype`` if set; else (None, the default) float32
        for float32 ``X`` and float64 otherwise, as scikit-learn's MLP does."""
        if self.dtype is None:
            if getattr(X, "dtype", None) == np.float32:
                return np.dtype(np.float32)
            return np.dtype(np.float64)
        return P.check_dtype(self.dtype)

    def _validate_params(self) -> None:
        """Every parameter against its rule (bpnet._params), once per fit."""
        self._hidden_sizes()
        self._work_dtype()
        for name, rule in _PARAMS:
            P.check(name, getattr(self, name), rule)

    def _check_solver(self) -> bool:
        if self.solver not in MINIBATCH_SOLVERS:
            raise AttributeError(
                f"partial_fit is only available for the mini-batch solvers {MINIBATCH_SOLVERS}; "
                f"got solver={self.solver!r}"
            )
        return True

    # -- hooks for the subclasses -------------------------------------------
    def _encode_targets(
        self, y: np.ndarray, first: bool, classes: ArrayLike | None = None
    ) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _validation_score(
        self, y_true: np.ndarray, output: np.ndarray, w: np.ndarray | None
    ) -> float:  # pragma: no cover
        raise NotImplementedError

    def _targets_record(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """The target encoding's fields of the record (its arrays go into ``arrays``)."""
        raise NotImplementedError  # pragma: no cover

    def _targets_from_record(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore the target encoding from a record (after ``_adopt_network``)."""
        raise NotImplementedError  # pragma: no cover

    # -- the training loop: prepare, initialize, split, run (bpnet._fitloop) --
    @fit_guarded
    @P.once_per_fit
    def _fit(
        self,
        X: Any,  # array-likes, validated (and narrowed to arrays) below
        y: Any,
        sample_weight: Any = None,
        *,
        incremental: bool = False,
        classes: Any = None,
        callback: FitCallback | None = None,
        validation: tuple[Any, Any, Any] | None = None,
    ) -> None:
        """One fit, built on a private draft of this estimator and published
        onto it at once (at each callback, and when the fit ends in any way
        once training started): a concurrent ``predict`` sees one whole state."""
        self._validate_params()
        if validation is not None and not self.early_stopping:
            raise ValueError(
                "X_val and y_val are passed to fit while early_stopping=False; the "
                "validation data is used by early stopping: set early_stopping=True"
            )
        draft = _fitloop.draft_of(self)
        net, monitor, data, options = draft._setup(
            X, y, sample_weight, incremental, classes, callback, validation, self
        )
        X, y_enc, w = data
        _fitloop.run(net, monitor, X, y_enc, w, self.solver,
                     1 if incremental else int(self.max_iter), options)
        if not incremental:
            if not self.early_stopping:
                _fitloop.warn_unconverged(self)
            _fitloop.warn_diverged(self, net.result, monitor.kept_loss())

    def _setup(
        self, X: Any, y: Any, sample_weight: Any, incremental: bool, classes: Any,
        callback: FitCallback | None, validation: tuple[Any, Any, Any] | None, public: Any,
    ) -> tuple[Network, _fitloop.Monitor, tuple[Any, np.ndarray, np.ndarray | None],
               dict[str, Any]]:
        """On the fit's draft: prepare the data, initialize the network, set the
        validation data apart; the network, the monitor, the training data and
        the solver's options."""
        first = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        X, y_enc, w = self._prepare(X, y, sample_weight, first, classes)
        rs = _random_state(self.random_state)
        net = self._init_network(X.shape[1], first, rs)
        if not incremental:
            self._optimizer_state = {}  # a new fit starts a new optimizer
        early = self.early_stopping and not incremental
        split = None
        if validation is not None:
            X_val, y_val, w_val = self._prepare_validation(*validation)
            split = _fitloop.given_validation(net, X, w, X_val, y_val, w_val,
                                              self._validation_score)
        elif early:
            X, y_enc, w, split = _fitloop.split_validation(
                self, net, X, y_enc, w, rs, self._validation_score
            )
        monitor = _fitloop.Monitor(self, split, callback, X.shape[0], self._fit_dtype,
                                   self._optimizer_state, public)
        options = _fitloop.solver_options(self, X.shape[0], early or incremental,
                                          self._optimizer_state)
        return net, monitor, (X, y_enc, w), options

    def _prepare_validation(
        self, X_val: Any, y_val: Any, sample_weight_val: Any
    ) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """The caller's validation data, checked and encoded as the training data
        is (after it: the same features, classes and dtype)."""
        try:
            return self._prepare(X_val, y_val, sample_weight_val, False, None)
        except ValueError as err:
            raise ValueError(f"the validation data (X_val, y_val, sample_weight_val): {err}") \
                from err

    def _prepare(
        self, X: Any, y: Any, sample_weight: Any, first: bool, classes: Any
    ) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """X (validated by scikit-learn: converted once, checked finite), the
        encoded targets and the sample weights times the class weights."""
        accept: Any
        if self.dtype is not None:
            accept = self._work_dtype()
        elif first:  # float32 stays float32, anything else becomes float64
            accept = (np.float64, np.float32)
        else:  # continuing: the network's precision
            accept = self.network_.dtype
        # labels held as objects: a missing or mixed one is named before
        # scikit-learn's checks (pd.NA makes them raise TypeError)
        if y is not None:  # None: scikit-learn's message ("requires y to be passed")
            _check_label_kinds(np.asarray(y), "y", mixed=not isinstance(self, RegressorMixin))
        # a float64 value beyond float32's range becomes inf in the conversion:
        # reported by the finiteness check, not as a NumPy overflow warning
        with np.errstate(over="ignore", invalid="ignore"):
            X, y = _validated(
                self, self.n_threads, X, y, reset=first, dtype=accept, order="C", multi_output=True,
                y_numeric=isinstance(self, RegressorMixin), accept_sparse="csr",
            )
        dtype = self._fit_dtype = np.dtype(X.dtype.name)
        if y.ndim == 2 and y.shape[1] == 1:
            # scikit-learn's warning, pointing into the caller's code
            _warn.warn(
                "A column-vector y was passed when a 1d array was expected. Please change "
                "the shape of y to (n_samples, ), for example using ravel().",
                DataConversionWarning,
            )
            y = column_or_1d(y)
        y_enc = self._encode_targets(y, first, classes)
        w = None
        if sample_weight is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                w = _check_sample_weight(sample_weight, X, dtype=dtype, ensure_non_negative=True)
        class_weight = getattr(self, "class_weight", None)
        if class_weight is not None:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # see below
                cw = _class_weights(class_weight, y, w).astype(dtype)
                w = cw if w is None else w * cw
                total = np.sum(w, dtype=dtype)
            if not (np.isfinite(cw).all() and np.isfinite(w).all() and np.isfinite(total)):
                raise ValueError(
                    f"class_weight={class_weight!r} times the sample weights overflows {dtype} "
                    f"(a weight or their sum is not finite as {dtype}); scale class_weight down"
                )
        w = None if w is None else np.ascontiguousarray(w, dtype=dtype)
        P.check_penalty("alpha", self.alpha, X.shape[0] if w is None else float(w.sum()), dtype)
        return X, y_enc, w

    def _init_network(self, n_features: int, first: bool, rs: np.random.RandomState) -> Network:
        """A new network: with fresh weights (and fresh fitted attributes) unless
        continuing one of the same shape, else with the previous one's weights."""
        sizes = (n_features, *self._hidden_sizes(), self.n_outputs_)
        dtype = self._fit_dtype
        if first or tuple(self.network_.layer_sizes) != sizes:
            seed = int(rs.randint(np.iinfo(np.int32).max))
            self.network_ = Network(
                sizes, activation=self.activation, output=self._output,
                lam=float(self.alpha), dtype=dtype, rng=seed, n_threads=self.n_threads,
            )
            self.n_iter_ = 0
            self.loss_curve_ = []
            self.validation_scores_ = []
            self.validation_loss_curve_ = []
            self.best_loss_ = np.inf
            self.best_validation_score_ = None
            self.best_iteration_ = None
            self.t_ = 0
            self._optimizer_state = {}
            return self.network_
        old = self.network_
        # a new Network through its constructor (its checks run): the parameters
        # that may change between warm starts (a regressor's loss, and with it the
        # output unit, among them), the old weights and random stream
        self.network_ = Network(
            sizes, activation=self.activation, output=self._output, lam=float(self.alpha),
            dtype=dtype, theta=old.theta, rng=old.rng, n_threads=self.n_threads,
        )
        return self.network_


class _FitPredictBPNet(_BaseBPNet):
    """The public ``fit`` and what every prediction starts from: one fitted
    snapshot, read once (``_view``)."""

    def fit(
        self: _Est, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None, *,
        callback: FitCallback | None = None, X_val: ArrayLike | None = None,
        y_val: ArrayLike | None = None, sample_weight_val: ArrayLike | None = None,
    ) -> _Est:
        """Train on ``X`` (n_samples, n_features) and ``y``: labels (n_samples,) or
        0/1 indicators (n_samples, K) for the classifier, targets (n_samples,) or
        (n_samples, n_targets) for the regressor.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
        y : array-like (n_samples,) or (n_samples, K)
        sample_weight : array-like (n_samples,), optional
        callback : callable, optional
            ``callback(info)`` after every iteration/epoch, with a
            :class:`bpnet.FitInfo` (the estimator, showing the current
            parameters; iteration, loss, validation score and loss), or
            ``callback(iteration, loss, validation_score)`` if it takes three
            arguments; return True to stop.
        X_val, y_val : array-like, optional
            Validation data for early stopping (``early_stopping=True``),
            used instead of a ``validation_fraction`` split of X and scored
            the same way (``class_weight`` applies to it too).
        sample_weight_val : array-like (n_val,), optional

        Returns
        -------
        self
            If training ends by an exception (from the callback, Ctrl-C,
            ``SystemExit``, divergence, lost Dask workers), the estimator
            holds the parameters of the last iteration it recorded (the
            initial ones if none; with early stopping the best ones), its
            curves, counters and ``best_*`` describe them, ``stop_reason_``
            names the exception, which is re-raised with them in
            ``partial_result``. An error before training starts (invalid
            input, parameters or callback) leaves the estimator as it was.
        """
        validation = None
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise ValueError(
                    f"X_val and y_val must be passed together; got only "
                    f"{'X_val' if y_val is None else 'y_val'}"
                )
            validation = (X_val, y_val, sample_weight_val)
        self._fit(X, y, sample_weight, callback=callback, validation=validation)
        return self

    # -- prediction: one snapshot per call ---------------------------------
    def _view(self: _Est) -> _Est:
        """What one prediction reads: a bare instance of this class holding only
        the current snapshot (read once), so a refit published meanwhile (other
        classes, another network) cannot mix into it."""
        check_is_fitted(self, "network_")
        view = object.__new__(type(self))
        view.__dict__["_fitted"] = self.__dict__["_fitted"]
        return view

    def _forward(self, X: Any) -> np.ndarray:
        """The network's outputs for X, checked against the snapshot (call it on
        a :meth:`_view`)."""
        with np.errstate(over="ignore", invalid="ignore"):  # see _prepare
            X = _validated(self, self.network_.n_threads, X, reset=False,
                           dtype=self.network_.dtype, order="C", accept_sparse="csr")
        return self.network_.predict_proba(X)


class _StoredBPNet(_FitPredictBPNet):
    """A fitted estimator's two faces: scikit-learn's MLP attributes (views of
    ``network_.theta``) and the record that model files and pickles carry."""

    # -- scikit-learn's fitted MLP attributes: views of network_.theta -------
    def _fitted_network(self) -> Network:
        net: Network | None = getattr(self, "network_", None)
        if net is None:
            raise AttributeError(f"this {type(self).__name__} is not fitted yet")
        return net

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weights in scikit-learn's layout: ``coefs_[l]`` (s_l, s_{l+1}) is
        ``Theta^(l)[:, 1:].T``, a view of ``network_.theta`` (writes go through).
        Assigning a list of arrays of these shapes sets the weights (as in
        scikit-learn); a wrong count, shape or a non-finite value is a ValueError."""
        return [T[:, 1:].T for T in self._fitted_network().thetas]

    @coefs_.setter
    def coefs_(self, value: Sequence[ArrayLike]) -> None:
        self._set_layers("coefs_", value)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Biases in scikit-learn's layout: ``intercepts_[l]`` (s_{l+1},) is
        ``Theta^(l)[:, 0]``, a view of ``network_.theta``; assignable as
        :attr:`coefs_` is."""
        return [T[:, 0] for T in self._fitted_network().thetas]

    @intercepts_.setter
    def intercepts_(self, value: Sequence[ArrayLike]) -> None:
        self._set_layers("intercepts_", value)

    def _set_layers(self, name: str, value: Sequence[ArrayLike]) -> None:
        """Set ``coefs_`` or ``intercepts_``: every array is checked, then the
        network takes a new theta (one assignment: a concurrent predict sees
        the old parameters or the new ones)."""
        net = self._fitted_network()
        if isinstance(value, (str, bytes, np.ndarray)) or not hasattr(value, "__len__"):
            raise ValueError(f"{name} must be a list of arrays, one per layer; "
                             f"got {type(value).__name__}")
        theta = net.theta.copy()
        views = F.roll(theta, net.layer_sizes)
        if len(value) != len(views):
            raise ValueError(f"{name} must hold {len(views)} arrays (one per layer); "
                             f"got {len(value)}")
        for l, (a, T) in enumerate(zip(value, views)):
            a = np.asarray(a)
            shape = (T.shape[0],) if name == "intercepts_" else (T.shape[1] - 1, T.shape[0])
            if a.shape != shape or a.dtype.kind not in "fiub":
                raise ValueError(f"{name}[{l}] must be a real array of shape {shape}; got "
                                 f"{a.dtype} {a.shape}")
            with np.errstate(over="ignore"):  # reported just below
                if name == "intercepts_":
                    T[:, 0] = a
                else:
                    T[:, 1:] = a.T
            if not np.isfinite(T).all():
                raise ValueError(f"{name}[{l}] holds non-finite values (as {net.dtype.name})")
        net.theta = theta

    @property
    def n_layers_(self) -> int:
        """Layers including input and output (scikit-learn's count)."""
        return len(self._fitted_network().layer_sizes)

    @property
    def out_activation_(self) -> str:
        """The output unit in scikit-learn's names: ``softmax``, ``logistic``
        (sigmoid outputs), ``identity`` or ``exp`` (poisson outputs)."""
        return _SKLEARN_OUT[self._fitted_network().output]

    def to_sklearn(self) -> Any:
        """This fitted estimator as a fitted scikit-learn ``MLPClassifier`` /
        ``MLPRegressor`` predicting the same outputs (probabilities to 1e-12
        in float64): see :func:`bpnet.to_sklearn`."""
        from ._sklearn_convert import to_sklearn

        return to_sklearn(self)

    # -- the record: model files (bpnet._modelfile) and pickles -------------
    def _record(self) -> Record:
        """The fitted estimator as a record: its network's record with the
        ``kind`` set to the class, an ``estimator`` section (parameters and
        fitted attributes) and the arrays ``loss_curve``, ``validation_scores``,
        ``validation_loss_curve``, the targets' arrays and the optimizer's."""
        net = getattr(self, "network_", None)
        if not isinstance(net, Network):
            raise ValueError(f"obj is an unfitted {type(self).__name__}; fit it before saving")
        body, arrays = net._record()
        state = self._optimizer_state
        body["kind"] = type(self).__name__
        body["estimator"] = {
            "params": R.encode_params(self.get_params(deep=False)),
            "n_features_in": int(self.n_features_in_),
            "n_outputs": int(self.n_outputs_),
            "n_iter": int(self.n_iter_),
            "loss": R.finite_or_none(getattr(self, "loss_", None)),
            "best_loss": R.finite_or_none(getattr(self, "best_loss_", None)),
            "best_validation_score": R.finite_or_none(self.best_validation_score_),
            "stop_reason": str(getattr(self, "stop_reason_", "")),
            "best_iteration": getattr(self, "best_iteration_", None),
            "optimizer_step": int(state.get("step", 0)),
            "optimizer_lr": R.finite_or_none(state.get("lr")),
            "optimizer_t": int(state.get("t", 0)),
            "t": int(getattr(self, "t_", 0)),
            **self._targets_record(arrays),
        }
        if hasattr(self, "feature_names_in_"):
            arrays["feature_names_in"] = R.label_array(self.feature_names_in_)
        for name in ("loss_curve", "validation_scores", "validation_loss_curve"):
            arrays[name] = np.asarray(getattr(self, name + "_"), dtype=np.float64)
        for key in sorted({k for keys in STATE_ARRAYS.values() for k in keys} & set(state)):
            arrays["optimizer_" + key] = state[key]
        return body, arrays

    @classmethod
    def _from_record(cls, body: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        """The fitted estimator a record describes, after checking every field.

        Raises
        ------
        RecordError
            Naming the section and the field at fault.
        """
        net = Network._from_record(body, arrays)
        meta = body.get("estimator")
        try:
            if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict):
                raise ValueError(f"the 'estimator' section must be an object with 'params'; "
                                 f"got {type(meta).__name__}")
            est = cls(**R.decode_params(meta["params"]))
            est._validate_params()
            est._adopt_network(net, meta)
            est._targets_from_record(meta, arrays)
            if net.output != est._output:
                raise ValueError(f"output {net.output!r}; expected {est._output!r}")
            est._fitted_from_record(meta, arrays)
            est._optimizer_state = _optimizer_from_record(meta, arrays, net)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise RecordError(f"invalid estimator description: {err}") from None
        return est

    def _adopt_network(self, net: Network, meta: dict[str, Any]) -> None:
        """Take a loaded network after checking it matches these parameters."""
        n_in, n_out = R.int_field(meta, "n_features_in", 1), R.int_field(meta, "n_outputs", 1)
        if net.layer_sizes[0] != n_in or net.layer_sizes[-1] != n_out:
            raise ValueError(
                f"layer_sizes {list(net.layer_sizes)} do not match n_features_in={n_in} "
                f"and n_outputs={n_out}"
            )
        if tuple(net.layer_sizes[1:-1]) != self._hidden_sizes():
            raise ValueError(
                f"hidden_layer_sizes={list(self._hidden_sizes())} differs from the network's "
                f"hidden layers {list(net.layer_sizes[1:-1])}"
            )
        if net.activation != P.check_activation(self.activation):
            raise ValueError(
                f"network activation {net.activation!r} differs from the estimator's "
                f"{self.activation!r}"
            )
        if self._work_dtype() != net.dtype:
            raise ValueError(
                f"dtype={self.dtype!r} differs from the network's dtype {net.dtype.name}"
            )
        self.network_, self.n_features_in_, self.n_outputs_ = net, n_in, n_out

    def _fitted_from_record(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """The fitted attributes: feature names, counters, losses and curves."""
        if "feature_names_in" in arrays:
            names = arrays["feature_names_in"]
            if names.dtype.kind != "U" or names.shape != (self.n_features_in_,):
                raise ValueError(f"feature_names_in is {names.dtype} {names.shape}; expected "
                                 f"{self.n_features_in_} strings")
            self.feature_names_in_ = names.astype(object)
        self.n_iter_ = R.int_field(meta, "n_iter", 0)
        self.loss_ = R.number_field(meta, "loss")
        best_loss = R.number_field(meta, "best_loss")
        self.best_loss_ = np.inf if best_loss is None else best_loss
        self.best_validation_score_ = R.number_field(meta, "best_validation_score")
        if not isinstance(meta["stop_reason"], str):
            raise ValueError(f"stop_reason must be a string; got {meta['stop_reason']!r}")
        self.stop_reason_ = meta["stop_reason"]
        best_it = meta["best_iteration"]  # None without early stopping
        if best_it is not None:
            best_it = R.int_field(meta, "best_iteration", 1)
            if best_it > self.n_iter_:
                raise ValueError(f"best_iteration {best_it} exceeds n_iter {self.n_iter_}")
        self.best_iteration_ = best_it
        self.t_ = R.int_field(meta, "t", 0)
        for name in ("loss_curve", "validation_scores", "validation_loss_curve"):
            a = arrays[name]
            if a.dtype != np.float64 or a.ndim != 1:
                raise ValueError(f"{name} is {a.dtype} {a.shape}; expected a float64 vector")
            setattr(self, name + "_", a.tolist())
        if len(self.validation_scores_) != len(self.validation_loss_curve_):
            raise ValueError(
                f"{len(self.validation_scores_)} validation scores but "
                f"{len(self.validation_loss_curve_)} validation losses"
            )

    def __getstate__(self) -> dict[str, Any]:
        # the snapshot travels with its network as the network's record (as in a
        # model file); a Dask client is a live connection, not part of the model:
        # a pickle carries client=None, as a model file does (copies and clones
        # share it instead)
        state: dict[str, Any] = super().__getstate__()
        if state.get("client") is not None:
            state = dict(state, client=None)
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """A deep copy that shares this estimator's Dask client (a connection to a
        cluster is not copied); everything else is copied as by pickling."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        new.client = self.client
        return new

    def __sklearn_clone__(self) -> Any:
        """``sklearn.base.clone``: the same parameters, unfitted, sharing the Dask client."""
        from sklearn.base import clone

        client, self_params = self.client, self.get_params(deep=False)
        self_params["client"] = None
        new = type(self)(**{k: clone(v, safe=False) for k, v in self_params.items()})
        new.client = client
        for attr in ("_metadata_request", "_sklearn_output_config"):  # as sklearn's clone
            if attr in self.__dict__:
                setattr(new, attr, copy.deepcopy(self.__dict__[attr]))
        return new

    def __setstate__(self, state: dict[str, Any]) -> None:
        # the snapshot pickles as it is (its network as its record); a pickle made
        # before it existed holds the network (as its record) and the rest apart
        state = dict(state)
        legacy = {name: state.pop(name) for name in _SNAPSHOT_NAMES if name in state}
        net = legacy.get("network_")
        if isinstance(net, dict):
            rebuilt = Network.__new__(Network)
            rebuilt.__setstate__(net)
            legacy["network_"] = rebuilt
        super().__setstate__(state)
        for name, value in legacy.items():
            setattr(self, name, value)

    def save(self, path: str | os.PathLike[str]) -> str:
        """Save the fitted estimator to a model file (see :func:`bpnet.save`).

        Parameters
        ----------
        path : str or path-like
            Destination; written atomically.

        Returns
        -------
        str
            The path written.
        """
        return _modelfile.write(path, self._record(), type(self)._from_record)




def _optimizer_from_record(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], net: Network
) -> dict[str, Any]:
    """The optimizer state stored with a fitted estimator ({} if none), each
    array checked against the network's theta."""
    stored = {k[len("optimizer_"):]: a for k, a in arrays.items() if k.startswith("optimizer_")}
    step = R.int_field(meta, "optimizer_step", 0)
    if not stored:
        return {}
    if set(stored) not in [set(keys) for keys in STATE_ARRAYS.values()]:
        raise ValueError(
            f"the optimizer arrays {sorted('optimizer_' + k for k in stored)} are not one "
            f"solver's state; expected one of {[list(v) for v in STATE_ARRAYS.values()]}"
        )
    if step < 1:
        raise ValueError(f"optimizer_step is {step} with stored moments; expected >= 1")
    state: dict[str, Any] = {"step": step}
    for key, a in sorted(stored.items()):
        if a.shape != net.theta.shape or a.dtype != net.dtype:
            raise ValueError(f"optimizer_{key} is {a.dtype} {a.shape}; expected {net.dtype} "
                             f"{net.theta.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"optimizer_{key} holds non-finite values")
        state[key] = np.empty(net.theta.shape, dtype=net.dtype)
        state[key][...] = a
    lr = meta["optimizer_lr"]  # None: the initial rate
    if lr is not None:
        lr = R.number_field(meta, "optimizer_lr")
        if not (lr is not None and lr > 0):
            raise ValueError(f"optimizer_lr must be a number > 0; got {lr!r}")
        state["lr"] = lr
    state["t"] = R.int_field(meta, "optimizer_t", 0)
    return state


class BPNetClassifier(ClassifierMixin, _StoredBPNet):  # type: ignore[misc]
    """A backpropagation network classifier with scikit-learn's interface.

    Defaults differ from ``MLPClassifier``'s on purpose: ``activation="sigmoid"``
    and ``solver="lbfgs"`` (scikit-learn: ``"relu"`` and ``"adam"``), the
    classic backpropagation network, which L-BFGS trains fast on small and
    medium data; pass ``activation="relu", solver="adam"`` for scikit-learn's.
    scikit-learn's names are accepted: ``"logistic"`` is ``"sigmoid"``.

    Softmax output with categorical cross-entropy for single-label targets
    (binary or multiclass); sigmoid outputs with binary cross-entropy for
    multi-label indicator targets. The C++ core computes cost and gradient.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units per hidden layer; ``()`` for no hidden layer.
    activation : {"sigmoid", "tanh", "relu", "identity", "logistic"}, default="sigmoid"
        Hidden-layer activation; ``"logistic"`` is scikit-learn's name for
        ``"sigmoid"`` (kept as given by ``get_params``; the network stores
        ``"sigmoid"``).
    solver : {"lbfgs", "cg", "adam", "sgd"}, default="lbfgs"
        Full batch with SciPy (L-BFGS-B, CG) or mini-batch Adam / SGD.
    alpha : float, default=1e-4
        L2 strength ``lambda`` on the non-bias weights: the cost adds
        ``alpha / (2 m) * sum(W**2)``.
    batch_size : int or "auto", default="auto"
        Mini-batch size (``min(200, n_samples)`` for "auto"); mini-batch
        solvers only.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        SGD's step-size schedule, as scikit-learn's: ``invscaling`` divides
        ``learning_rate_init`` by ``(t_ + 1) ** power_t`` after each epoch;
        ``adaptive`` divides the rate by 5 whenever training would stop for a
        stall (while the rate is above 1e-6). Adam ignores it.
    learning_rate_init : float, default=1e-3
        Step size of Adam and SGD.
    power_t : float, default=0.5
        Exponent of the ``invscaling`` schedule.
    max_fun : int, default=15000
        Most cost/gradient evaluations of the ``lbfgs`` solver.
    momentum : float, default=0.9
        SGD momentum, in [0, 1).
    nesterovs_momentum : bool, default=True
        Nesterov momentum for SGD.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's moment decay rates and denominator guard.
    shuffle : bool, default=True
        Reshuffle the samples every epoch (mini-batch solvers). With one batch
        per epoch (``batch_size`` at least the number of samples) there is
        nothing to shuffle: the samples keep their order.
    max_iter : int, default=200
        Iterations (full batch) or epochs (mini-batch).
    tol : float, default=1e-4
        Full batch: SciPy's ``tol``. Mini-batch: minimum improvement of the
        epoch loss over ``n_iter_no_change`` epochs. With early stopping:
        minimum improvement of the validation score.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified), score it
        after every iteration or epoch — for every solver, also the full-batch
        ones — stop after ``n_iter_no_change`` iterations in which neither the
        validation score rose by ``tol`` nor the validation loss fell by
        ``tol``, and keep the best parameters (best score; on equal scores,
        the lower validation loss).
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    n_iter_no_change : int, default=10
        Patience of the stopping criteria.
    random_state : int, RandomState or Generator instance, or None, default=None
        Seeds the initial weights, the shuffling and the validation split. A
        RandomState or a ``numpy.random.Generator`` is drawn from (and
        advanced) by each fit; a new ``np.random.default_rng(0)`` gives the
        same fit as another.
    n_threads : int or None, default=None
        Threads of the C++ core (None: all, within OpenMP's limit).
    dtype : {"float64", "float32"} or None, default=None
        Working precision; X is converted once. None: float32 data trains in
        float32, any other data in float64 (as scikit-learn's MLP).
    verbose : bool, default=False
        Print the loss (and validation score) every iteration.
    warm_start : bool, default=False
        Continue from the previous fit's parameters instead of a new
        initialization (a new optimizer state is started).
    client : object, default=None
        Passed as ``client=`` to :meth:`bpnet.Network.fit` (distributed
        training) when not None; a pickle drops it, deepcopy and clone share it.
    class_weight : dict {label: weight}, "balanced" or None, default=None
        Weights per class, multiplied into ``sample_weight``. "balanced"
        gives class ``c`` the weight ``W / (K * W_c)``, with ``W_c`` the
        sample weights of its rows summed (their count without
        ``sample_weight``), as scikit-learn's ``compute_class_weight``;
        ``partial_fit`` refuses it (the counts of one batch are not the
        data's), as scikit-learn's incremental classifiers do.

    Attributes
    ----------
    classes_ : ndarray (K,) or list of ndarray
        Class labels (for multi-label targets: ``arange(K)``).
    network_ : bpnet.Network
        The trained network.
    n_features_in_ : int
        Number of input features.
    feature_names_in_ : ndarray of str
        Feature names, when X had string column names.
    n_outputs_ : int
        Output units ``K``.
    coefs_, intercepts_ : list of ndarray
        Weights (s_l, s_{l+1}) and biases (s_{l+1},) per layer in
        scikit-learn's layout: views of ``network_.theta``.
    n_layers_ : int
        Layers, input and output included.
    out_activation_ : str
        ``"softmax"``, ``"logistic"`` (multi-label), ``"identity"`` or ``"exp"``
        (a regressor's ``loss="poisson"``).
    t_ : int
        Training samples seen by the solver (one pass per iteration/epoch).
    n_iter_ : int
        Iterations/epochs run since the network was initialized.
    loss_ : float
        Last training loss.
    best_loss_ : float
        Lowest training loss seen.
    loss_curve_ : list of float
        Training loss (with the L2 penalty) per iteration/epoch.
    validation_scores_ : list of float
        Validation accuracy per iteration/epoch (early stopping only).
    validation_loss_curve_ : list of float
        Validation loss per iteration/epoch (early stopping only); it carries
        the same L2 penalty as the training loss, so the curves compare.
    best_validation_score_ : float or None
        Best validation accuracy (early stopping only).
    best_iteration_ : int or None
        The iteration whose parameters were kept (early stopping only).
    stop_reason_ : str
        Why the last fit stopped: ``"converged"``, ``"max_iter"``,
        ``"early_stopping"`` (no validation improvement for
        ``n_iter_no_change`` iterations), ``"callback"`` (the ``fit``
        callback returned True), or SciPy's message.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from bpnet import BPNetClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = BPNetClassifier(hidden_layer_sizes=25, alpha=1.0, random_state=0)
    >>> clf.fit(X / 16, y).score(X / 16, y) > 0.9
    True
    """

    _output = "softmax"  # "sigmoid" after a fit on multi-label targets
    classes_ = FittedField[np.ndarray]("Class labels (multi-label targets: ``arange(K)``).")
    _multilabel = FittedField[bool]("Whether the targets are 0/1 indicators.")

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "sigmoid",
        *,
        solver: str = "lbfgs",
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        max_fun: int = 15000,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        shuffle: bool = True,
        max_iter: int = 200,
        tol: float = 1e-4,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        random_state: int | np.random.RandomState | np.random.Generator | None = None,
        n_threads: int | None = None,
        dtype: str | type | None = None,
        verbose: bool = False,
        warm_start: bool = False,
        client: object = None,
        class_weight: Mapping[Any, float] | str | None = None,
    ) -> None:
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_fun=max_fun, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, shuffle=shuffle, max_iter=max_iter, tol=tol,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, random_state=random_state,
            n_threads=n_threads, dtype=dtype, verbose=verbose, warm_start=warm_start,
            client=client,
        )
        self.class_weight = class_weight

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_class_weight(self.class_weight)

    def _encode_targets(
        self, y: np.ndarray, first: bool, classes: ArrayLike | None = None
    ) -> np.ndarray:
        return _encode_labels(self, y, first, classes)

    def _targets_record(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        arrays["classes"] = R.label_array(self.classes_)
        return {"multilabel": bool(self._multilabel)}

    def _targets_from_record(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._multilabel = R.bool_field(meta, "multilabel")
        self._output = "sigmoid" if self._multilabel else "softmax"
        self.classes_ = R.check_classes(arrays["classes"], self._multilabel)
        if len(self.classes_) != self.n_outputs_:
            raise ValueError(f"{len(self.classes_)} classes for {self.n_outputs_} outputs")

    def _validation_score(
        self, y_true: np.ndarray, output: np.ndarray, w: np.ndarray | None
    ) -> float:
        if self._multilabel:
            return float(accuracy_score(y_true, (output > 0.5).astype(int), sample_weight=w))
        return float(accuracy_score(y_true, np.argmax(output, axis=1), sample_weight=w))

    @available_if(_BaseBPNet._check_solver)  # type: ignore[untyped-decorator]
    def partial_fit(
        self, X: ArrayLike, y: ArrayLike, classes: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> BPNetClassifier:
        """One epoch of the mini-batch solver, keeping the optimizer state.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
        y : array-like (n_samples,)
        classes : array-like (K,), optional
            All labels; required on the first call.
        sample_weight : array-like (n_samples,), optional

        Returns
        -------
        self
        """
        if not hasattr(self, "classes_") and classes is None:
            y_arr = np.asarray(y)
            if not (y_arr.ndim == 2 and _is_multilabel(y_arr)):
                raise ValueError("classes must be passed on the first call to partial_fit")
        if hasattr(self, "classes_") and classes is not None:
            if not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(
                    f"classes={np.asarray(classes).tolist()!r} differs from the classes of the "
                    "first call "
                    f"{self.classes_.tolist()}"
                )
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError(_NO_BALANCED_PARTIAL_FIT)
        self._fit(X, y, sample_weight, incremental=True, classes=classes)
        return self

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities (n_samples, K), in the order of ``classes_``."""
        return self._view()._forward(X)

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            log_p: np.ndarray = np.log(self.predict_proba(X))
            return log_p

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels (n_samples,), or (n_samples, K) 0/1 for multi-label."""
        fitted = self._view()  # one snapshot: the classes of the network that ran
        proba = fitted._forward(X)
        if fitted._multilabel:
            return (proba > 0.5).astype(np.int64)
        labels: np.ndarray = fitted.classes_[np.argmax(proba, axis=1)]
        return labels

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.sparse = True
        return tags


_NO_BALANCED_PARTIAL_FIT = (
    "class_weight='balanced' is not supported for partial_fit: one batch's class counts are "
    "not the data's. Compute the weights once with sklearn.utils.class_weight."
    "compute_class_weight('balanced', classes=classes, y=y) over (a large enough sample of) "
    "all the labels and pass them as the class_weight dict"
)


def _check_class_weight(cw: Any) -> None:
    """class_weight: None, "balanced" or a mapping of labels to finite weights >= 0."""
    if not (cw is None or (isinstance(cw, str) and cw == "balanced") or isinstance(cw, Mapping)):
        raise ValueError(f"class_weight must be None, 'balanced' or a dict; got {cw!r}")
    if isinstance(cw, Mapping):
        for label, weight in cw.items():
            if not P.RULES["non_negative"].accepts(weight):
                raise ValueError(
                    f"class_weight[{label!r}] must be a finite number >= 0; got {weight!r}"
                )


def _is_multilabel(y: np.ndarray) -> bool:
    with np.errstate(invalid="ignore"):  # see BPNetClassifier._encode_targets
        return bool(type_of_target(y) == "multilabel-indicator")


def _check_label_kinds(y: np.ndarray, name: str, mixed: bool = True) -> None:
    """Labels held as Python objects are none missing (``None``, ``pd.NA``, NaN)
    and (``mixed``: checked) all strings or all numbers: ValueError naming the
    first bad one otherwise."""
    if y.dtype.kind != "O":
        return
    kinds: dict[str, int] = {}
    for i, v in enumerate(y.ravel().tolist()):
        if v is None or type(v).__name__ == "NAType" or (isinstance(v, float) and v != v):
            raise ValueError(f"{name} has a missing label {v!r} at index {i}; every sample "
                             "needs a label")
        kind = ("a string" if isinstance(v, str) else "a number"
                if isinstance(v, numbers.Number) else f"a {type(v).__name__}")
        kinds.setdefault(kind, i)
    if mixed and len(kinds) > 1:
        found = ", ".join(f"{k} at index {i}" for k, i in kinds.items())
        raise ValueError(f"{name} mixes label types ({found}); labels must be all strings "
                         "or all numbers")


def _class_weights(
    class_weight: Mapping[Any, float] | str, y: np.ndarray, w: np.ndarray | None
) -> np.ndarray:
    """The weight (n_samples,) of each row's class. "balanced" counts the sample
    weights as scikit-learn's ``compute_class_weight`` does (``W / (K * W_c)``);
    a multi-label y takes the product over its columns, as
    ``compute_sample_weight`` does."""
    cw = dict(class_weight) if isinstance(class_weight, Mapping) else class_weight
    if y.ndim != 1 and cw != "balanced":
        cw_rows: np.ndarray = compute_sample_weight(cw, y)  # its multi-output rules
        return cw_rows
    rows = np.ones(y.shape[0])
    for column in y.reshape(y.shape[0], -1).T:
        labels = np.unique(column)
        per_class = compute_class_weight(cw, classes=labels, y=column, sample_weight=w)
        rows = rows * per_class[np.searchsorted(labels, column)]
    return rows


def _encode_labels(
    est: BPNetClassifier, y: np.ndarray, first: bool, classes: ArrayLike | None
) -> np.ndarray:
    """The classifier's target encoding: labels as int64 indices into ``classes_``
    (softmax output) or a 0/1 indicator matrix (multi-label: sigmoid outputs);
    on the first fit it sets ``classes_``, the output unit and ``n_outputs_``."""
    if classes is not None:
        _check_label_kinds(np.asarray(classes), "classes")
    # scikit-learn's type_of_target casts float labels to int64 to test them: a
    # label beyond int64 (1e20) is named below, not announced by a cast warning
    with np.errstate(invalid="ignore"):
        return _label_indices(est, y, first, classes)


def _label_indices(
    est: BPNetClassifier, y: np.ndarray, first: bool, classes: ArrayLike | None
) -> np.ndarray:
    """:func:`_encode_labels` after the checks of its arguments."""
    # 1-D integer or bool labels are scikit-learn's "binary" or "multiclass"
    # targets whatever their values: its type_of_target and
    # check_classification_targets (about 0.5 ms on 1,347 labels, 2% of case E's
    # fit in bench/) would only confirm it
    plain = y.ndim == 1 and y.dtype.kind in "iub"
    multilabel = not plain and type_of_target(y) == "multilabel-indicator"
    if y.ndim == 1 and y.dtype.kind == "f" and np.all(y == np.round(y)):
        big = np.abs(y) >= 2.0**63  # scikit-learn casts labels to int64 to test them
        if big.any():
            i = int(np.argmax(big))
            raise ValueError(
                f"y[{i}] = {float(y[i])!r} is a whole-number label beyond int64's range, "
                "which scikit-learn's classifiers and metrics take for a continuous target; "
                "give such labels as strings"
            )
    if not multilabel and not plain:
        check_classification_targets(y)
    if first:
        if multilabel:
            est.classes_ = np.arange(y.shape[1])
            est._output = "sigmoid"
        else:
            if y.ndim != 1:
                raise ValueError(
                    "y must be a 1-D vector of labels or a 0/1 multi-label indicator "
                    f"matrix; got shape {y.shape} of type {type_of_target(y)!r}"
                )
            labels = np.unique(y) if classes is None else np.unique(np.asarray(classes))
            if labels.size < 2:
                raise ValueError(
                    f"{type(est).__name__} needs at least 2 classes in y to train; "
                    f"got 1 class: {labels.tolist()}"
                )
            est.classes_ = labels
            est._output = "softmax"
        est._multilabel = multilabel
        est.n_outputs_ = len(est.classes_)
    if multilabel != est._multilabel:
        raise ValueError(
            "y changed between multi-label and single-label targets since the first fit"
        )
    if multilabel:
        if y.shape[1] != est.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} labels; expected {est.n_outputs_}")
        return np.ascontiguousarray(y, dtype=est._fit_dtype)
    idx = np.searchsorted(est.classes_, y)
    idx = np.clip(idx, 0, len(est.classes_) - 1)
    unseen = est.classes_[idx] != y
    if unseen.any():
        raise ValueError(
            f"y contains labels not in classes_ {est.classes_.tolist()}: "
            f"{np.unique(y[unseen]).tolist()}"
        )
    return idx.astype(np.int64)


class BPNetRegressor(RegressorMixin, _StoredBPNet):  # type: ignore[misc]
    """A backpropagation network regressor with scikit-learn's interface.

    Defaults differ from ``MLPRegressor``'s on purpose: ``activation="sigmoid"``
    and ``solver="lbfgs"`` (scikit-learn: ``"relu"`` and ``"adam"``); pass
    ``activation="relu", solver="adam"`` for scikit-learn's.

    One or more targets, and the loss of ``MLPRegressor(loss=...)``:

    - ``loss="squared_error"`` (default): identity outputs ``h = z`` and the
      half squared error ``J = 1/(2m) sum_i ||h_i - y_i||^2 + alpha/(2m) sum W^2``.
    - ``loss="poisson"``: exp outputs ``h = e^z`` (``predict`` gives ``e^z``)
      and the half Poisson deviance
      ``J = 1/m sum_i sum_k [y log(y / h) - y + h] + alpha/(2m) sum W^2``
      (``y log y = 0`` at ``y = 0``), for counts or rates ``y >= 0``.

    ``J`` (``loss_``, ``loss_curve_``) averages over the samples and sums over
    the targets. For ``loss="poisson"`` that is scikit-learn's own loss
    (``loss_curve_`` values compare one to one); for ``"squared_error"``
    scikit-learn also averages over the targets, so with ``n_outputs_ > 1``
    bpnet's values are ``n_outputs_`` times larger (the same with one target).

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        The loss and its output unit, as above. Poisson targets must be
        ``>= 0``. The score is R^2 for either loss, as scikit-learn's.
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, \
learning_rate_init, power_t, max_fun, momentum, nesterovs_momentum, beta_1, beta_2, \
epsilon, shuffle, max_iter, tol, \
early_stopping, validation_fraction, n_iter_no_change, random_state, n_threads, \
dtype, verbose, warm_start, client
        As for :class:`BPNetClassifier`; the validation score is R^2.

    Attributes
    ----------
    network_ : bpnet.Network
    n_features_in_, n_outputs_, coefs_, intercepts_, n_layers_, out_activation_, t_, \
n_iter_, loss_, best_loss_, loss_curve_, validation_scores_, validation_loss_curve_, \
best_validation_score_, best_iteration_, stop_reason_
        As for :class:`BPNetClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from bpnet import BPNetRegressor
    >>> X = np.linspace(-1, 1, 200)[:, None]
    >>> reg = BPNetRegressor(hidden_layer_sizes=10, activation="tanh", random_state=0)
    >>> reg.fit(X, X.ravel() ** 2).score(X, X.ravel() ** 2) > 0.9
    True
    """

    _output = "identity"  # the output unit of ``loss`` (set by _validate_params)
    _y_1d = FittedField[bool]("Whether y was a vector (predict returns one).")

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "sigmoid",
        *,
        loss: str = "squared_error",
        solver: str = "lbfgs",
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        max_fun: int = 15000,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        shuffle: bool = True,
        max_iter: int = 200,
        tol: float = 1e-4,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        random_state: int | np.random.RandomState | np.random.Generator | None = None,
        n_threads: int | None = None,
        dtype: str | type | None = None,
        verbose: bool = False,
        warm_start: bool = False,
        client: object = None,
    ) -> None:
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_fun=max_fun, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, shuffle=shuffle, max_iter=max_iter, tol=tol,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, random_state=random_state,
            n_threads=n_threads, dtype=dtype, verbose=verbose, warm_start=warm_start,
            client=client,
        )
        self.loss = loss

    def _validate_params(self) -> None:
        super()._validate_params()
        self._output = P.REGRESSION_LOSSES[P.check("loss", self.loss)]

    def _encode_targets(
        self, y: np.ndarray, first: bool, classes: ArrayLike | None = None
    ) -> np.ndarray:
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D; got shape {y.shape}")
        if self._output == "poisson" and y.size and not np.all(y >= 0):
            bad = np.count_nonzero(~(y >= 0))
            raise ValueError(f"y must be >= 0 for loss='poisson' (a count or rate); got "
                             f"{bad} negative values, min {float(np.min(y))!r}")
        if first:
            self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
            self._y_1d = y.ndim == 1
        n_out = 1 if y.ndim == 1 else y.shape[1]
        if n_out != self.n_outputs_:
            raise ValueError(f"y has {n_out} targets; expected {self.n_outputs_}")
        return np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=self._fit_dtype)

    def _targets_record(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"y_1d": bool(self._y_1d)}

    def _targets_from_record(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._y_1d = R.bool_field(meta, "y_1d")
        if self._y_1d and self.n_outputs_ != 1:
            raise ValueError(f"y_1d is true but there are {self.n_outputs_} outputs")

    def _validation_score(
        self, y_true: np.ndarray, output: np.ndarray, w: np.ndarray | None
    ) -> float:
        return float(r2_score(y_true, output, sample_weight=w))

    @available_if(_BaseBPNet._check_solver)  # type: ignore[untyped-decorator]
    def partial_fit(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> BPNetRegressor:
        """One epoch of the mini-batch solver, keeping the optimizer state.

        Returns
        -------
        self
        """
        self._fit(X, y, sample_weight, incremental=True)
        return self

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted targets (n_samples,) or (n_samples, n_targets)."""
        fitted = self._view()
        outputs = fitted._forward(X)
        return outputs.ravel() if fitted._y_1d else outputs

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.sparse = True
        return tags


def from_sklearn(mlp: Any, *, n_threads: int | None = None) -> BPNetClassifier | BPNetRegressor:
    """The bpnet estimator equal to a fitted scikit-learn MLP.

    Parameters
    ----------
    mlp : sklearn.neural_network.MLPClassifier or MLPRegressor
        Fitted, with ``logistic``, ``tanh``, ``relu`` or ``identity`` hidden units.
    n_threads : int, optional
        ``n_threads`` of the returned estimator.

    Returns
    -------
    BPNetClassifier or BPNetRegressor
        Fitted: ``predict_proba`` / ``predict`` equal the MLP's (to 1e-12 in
        float64). The working dtype is the MLP's weights' dtype. It can be
        trained further (``partial_fit``, ``warm_start``) with a new
        optimizer state.
    """
    from ._sklearn_convert import mlp_parts

    parts = mlp_parts(mlp, n_threads=n_threads)  # the weights in bpnet's layout
    est: BPNetClassifier | BPNetRegressor
    if parts.classifier:
        est = BPNetClassifier(**parts.params)
        est._multilabel = parts.multilabel
        est._output = parts.network.output
    else:
        est = BPNetRegressor(**parts.params)
        est._y_1d = parts.y_1d
        est._output = parts.network.output
    est.network_ = parts.network
    for name, value in parts.fitted.items():
        setattr(est, name, value)
    est._optimizer_state = {}
    return est

"""A small network object: layer sizes, activations, lambda, dtype and theta,
with fit / predict / predict_proba / cost_grad."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _modelfile, _runtime
from . import _params as P
from . import _records as R
from . import functional as F
from ._guard import fit_guarded
from ._inputs import prepare_weight, prepare_X, prepare_y
from ._modelfile import Record, RecordError
from ._params import FULL_BATCH_SOLVERS
from .initialization import as_generator, random_theta
from .optimize import (
    CoreObjective,
    FitResult,
    FullBatchFun,
    IterationInfo,
    minimize_full_batch,
    minimize_minibatch,
)

__all__ = ["Network"]


def _fresh_theta(theta: np.ndarray, dtype: np.dtype, n_params: int, name: str) -> np.ndarray:
    """A stored parameter vector as a fresh buffer of NumPy's own dtype instance
    (C-contiguous, writable: the core takes it without a copy)."""
    if theta.dtype != dtype or theta.shape != (n_params,):
        raise ValueError(
            f"{name} is {theta.dtype} {theta.shape}; expected {dtype.name} ({n_params},)"
        )
    fresh = np.empty(theta.shape, dtype=dtype)
    fresh[...] = theta
    if not np.isfinite(fresh).all():
        raise ValueError(f"{name} contains non-finite values (as {dtype.name})")
    return fresh


def _given_theta(theta: Any, dtype: np.dtype, n_params: int) -> np.ndarray:
    """Initial parameters passed to the constructor, as a fresh C-contiguous
    buffer of ``dtype``, checked finite."""
    theta = np.asarray(theta)
    if theta.dtype.kind not in "fiu":
        raise ValueError(f"theta must hold real numbers; got dtype {theta.dtype}")
    if theta.shape != (n_params,):
        raise ValueError(f"theta has shape {theta.shape}; expected ({n_params},)")
    with np.errstate(over="ignore"):  # reported below as non-finite
        fresh: np.ndarray = np.array(theta, dtype=dtype, order="C")
    if not np.isfinite(fresh).all():
        raise ValueError(f"theta contains non-finite values (as {dtype.name})")
    return fresh


def _check_training(training: Any) -> None:
    """The ``training`` section of a record: an object of counts and a reason."""
    if not isinstance(training, dict):
        raise RecordError("the 'training' section must be an object or null")
    for key in ("n_iter", "n_evals"):
        v = training.get(key, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise RecordError(f"training.{key} must be an int >= 0; got {v!r}")
    if not isinstance(training.get("stop_reason", ""), str):
        raise RecordError("training.stop_reason must be a string")
    build = training.get("build")
    if build is not None and build not in _runtime.ISAS:
        raise RecordError(f"training.build must be one of {_runtime.ISAS} or absent; got {build!r}")


def _network_args(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The constructor arguments a record's ``network`` section describes."""
    sizes = F.check_layer_sizes(meta["layer_sizes"])
    dtype = meta["dtype"]
    if dtype not in F.DTYPES:  # a record field: the dtype's name, as written
        raise ValueError(f"dtype must be one of {F.DTYPES}; got {dtype!r}")
    if meta["n_params"] != F.n_params(sizes):
        raise ValueError(
            f"n_params is {meta['n_params']}; layer_sizes {list(sizes)} give "
            f"{F.n_params(sizes)}"
        )
    theta = arrays.get("theta")
    if theta is None:
        raise ValueError("the file has no 'theta' array")
    return dict(
        layer_sizes=sizes, activation=meta["activation"], output=meta["output"],
        lam=meta["lam"], dtype=dtype,
        theta=_fresh_theta(theta, np.dtype(dtype), F.n_params(sizes), "theta"),
        rng=R.rng_from_state(meta.get("rng")), n_threads=meta.get("n_threads"),
    )


def _training_from_record(net: Network, training: Any, arrays: dict[str, np.ndarray]) -> None:
    """The last fit's loss history and result, from a record's ``training`` section."""
    _check_training(training)
    history = arrays.get("loss_history", arrays.get("loss_curve"))  # estimators: the curve
    net.loss_history = [] if history is None else history.tolist()
    theta = arrays.get("result_theta")
    if theta is not None:
        theta = _fresh_theta(theta, net.dtype, net.n_params, "result_theta")
    net.result = FitResult(
        theta=net.theta.copy() if theta is None else theta,
        loss_history=list(net.loss_history), n_iter=int(training.get("n_iter", 0)),
        n_evals=int(training.get("n_evals", 0)),
        stop_reason=str(training.get("stop_reason", "")), build=training.get("build"),
    )


def overflow_cause(
    dtype: np.dtype, output: str, y: np.ndarray, w: np.ndarray | None, weight_name: str = ""
) -> str:
    """Name the input that overflows ``dtype`` in the cost, if one does ("" if none).

    The core sees only a non-finite value; here the inputs are known. Targets
    of an identity output enter the loss squared and the gradient times the
    sample weights; sample weights enter every sum.
    """
    big = float(np.finfo(dtype).max)
    wname = weight_name or "sample_weight"
    if w is not None:
        w_max, w_sum = float(np.max(w)), float(np.sum(w, dtype=np.float64))
        if not np.isfinite(np.sum(w, dtype=dtype)) or w_sum > big:
            return f"{wname} sums to {w_sum:.3g}, beyond {dtype} (max {big:.3g}): scale it down"
    else:
        w_max = 1.0
    if y.ndim == 2 and y.size:
        y_max = float(np.max(np.abs(y)))
        if output == "identity" and (y_max * y_max > big or y_max * w_max > big / 4):
            what = "y" if y_max * y_max > big or w is None else f"y times {wname}"
            return (f"{what} overflows {dtype} in the squared error (max |y| = {y_max:.3g}): "
                    "scale the targets")
    if w is not None and w_max > big / 4:
        return f"{wname} holds {w_max:.3g}, too close to the {dtype} limit {big:.3g}"
    return ""


class Network:
    """A fully connected backpropagation network.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``s_0 .. s_{L-1}``: inputs, hidden layers, outputs (L >= 2).
    activation : {"sigmoid", "tanh", "relu", "identity", "logistic"}
        Hidden-layer activation; ``"logistic"`` (scikit-learn's name) is
        stored as ``"sigmoid"``.
    output : {"sigmoid", "softmax", "identity", "poisson"}
        Output unit and loss (binary cross-entropy, categorical cross-entropy,
        half squared error, half Poisson deviance with ``h = e^z``).
    lam : float
        L2 strength on the non-bias weights.
    dtype : {numpy.float64, numpy.float32}
        Working precision. ``fit`` and ``predict`` convert X to it once.
    theta : ndarray (P,), optional
        Initial parameters; default random (:func:`bpnet.random_theta`).
    rng : Generator or int, optional
        Source of the initial weights and of mini-batch shuffling.
    n_threads : int, optional
        Threads for the core (default: all, within OpenMP's limit).

    Attributes
    ----------
    theta : ndarray (P,)
        Current parameters.
    loss_history : list of float
        Loss per iteration/epoch of the last ``fit``.
    result : FitResult or None
        Summary of the last ``fit``.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        activation: str = "sigmoid",
        output: str = "sigmoid",
        lam: float = 0.0,
        dtype: np.dtype | type | str = np.float64,
        theta: np.ndarray | None = None,
        rng: np.random.Generator | int | None = None,
        n_threads: int | None = None,
    ) -> None:
        self.layer_sizes = F.check_layer_sizes(layer_sizes)
        self.activation = P.check_activation(activation)
        self.output = P.check("output", output)
        self.lam = P.check_lam(lam)
        self.dtype = P.check_dtype(dtype)
        self.n_threads = P.check_threads(n_threads)
        self.rng = as_generator(rng)
        self.n_params = F.n_params(self.layer_sizes)
        if theta is None:
            self.theta = random_theta(self.layer_sizes, self.rng, dtype=self.dtype)
        else:
            self.theta = _given_theta(theta, self.dtype, self.n_params)
        self.loss_history: list[float] = []
        self.result: FitResult | None = None

    # -- the record: model files (bpnet._modelfile) and pickles share it ------
    def _record(self) -> Record:
        """This network as a record: the body's ``kind``, ``network`` and
        ``training`` sections, and the arrays ``theta`` (P,), ``loss_history``
        and, when the last fit's result holds other parameters than ``theta``
        (early stopping kept the best), ``result_theta`` (P,)."""
        body: dict[str, Any] = {
            "kind": "Network",
            "network": {
                "layer_sizes": [int(s) for s in self.layer_sizes],
                "activation": self.activation,
                "output": self.output,
                "lam": float(self.lam),
                "dtype": self.dtype.name,
                "n_params": int(self.n_params),
                "n_threads": None if self.n_threads == -1 else int(self.n_threads),
                "rng": R.rng_state(self.rng),
            },
            "training": None,
            "estimator": None,
        }
        arrays = {
            "theta": np.ascontiguousarray(self.theta),
            "loss_history": np.asarray(self.loss_history, dtype=np.float64),
        }
        res = self.result
        if res is not None:
            body["training"] = {
                "n_iter": int(res.n_iter),
                "n_evals": int(res.n_evals),
                "stop_reason": str(res.stop_reason),
                "final_loss": R.finite_or_none(res.loss_history[-1]) if res.loss_history else None,
                "build": res.build,  # the core build whose arithmetic gave these bits
            }
            if res.theta is not self.theta and not np.array_equal(res.theta, self.theta):
                arrays["result_theta"] = np.ascontiguousarray(res.theta, dtype=self.dtype)
        return body, arrays

    @classmethod
    def _from_record(cls, body: dict[str, Any], arrays: dict[str, np.ndarray]) -> Network:
        """The network a record describes, after checking every field of it.

        Raises
        ------
        RecordError
            Naming the section and the field at fault.
        """
        meta = body.get("network")
        if not isinstance(meta, dict):
            raise RecordError("metadata has no 'network' section")
        try:
            net = cls(**_network_args(meta, arrays))
        except (KeyError, TypeError, ValueError) as err:
            raise RecordError(f"invalid network description: {err}") from None
        training = body.get("training")
        if training is not None:
            _training_from_record(net, training, arrays)
        return net

    # pickling and copying go through the record: the core's workspace is the
    # calling thread's own, never part of the object
    def __getstate__(self) -> dict[str, Any]:
        """The network's record (see :meth:`_record`)."""
        body, arrays = self._record()
        return {"record": body, "arrays": arrays}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled or copied network from its record.

        ``theta`` is rebuilt as a fresh C-contiguous buffer of NumPy's own
        dtype instance, so the core takes it without a copy and predictions
        are bitwise equal to the original's. Works for :mod:`pickle`,
        :func:`copy.deepcopy`, :func:`copy.copy`, joblib and multiprocessing.
        """
        self.__dict__.update(self._from_record(state["record"], state["arrays"]).__dict__)

    def __repr__(self) -> str:
        return (
            f"Network(layer_sizes={list(self.layer_sizes)}, activation={self.activation!r}, "
            f"output={self.output!r}, lam={self.lam:g}, dtype={self.dtype.name}, "
            f"P={self.n_params})"
        )

    @property
    def thetas(self) -> list[np.ndarray]:
        """Views ``Theta^(l)`` (s_{l+1}, s_l + 1) of :attr:`theta`."""
        return F.roll(self.theta, self.layer_sizes)

    # -- data preparation: one visible conversion, validated once (bpnet._inputs)
    def _prepare(
        self, X: Any, y: Any, sample_weight: Any, check_finite: bool = True
    ) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """X (m, s_0), y and sample weights in this network's dtype and layout."""
        X = prepare_X(X, self.layer_sizes[0], self.dtype, check_finite=check_finite)
        m = X.shape[0]
        return X, prepare_y(y, m, self.output, self.dtype), prepare_weight(
            sample_weight, m, self.dtype
        )

    # -- core calls on prepared data (no per-call conversion) ----------------
    def _cost_grad(
        self,
        theta: np.ndarray,
        X: np.ndarray,
        y: np.ndarray,
        w: np.ndarray | None,
        rows: np.ndarray | None = None,
        out: np.ndarray | None = None,
        lam: float | None = None,
    ) -> tuple[float, np.ndarray]:
        return _runtime.cost_grad(
            theta, self.layer_sizes, F.as_core_X(X), y, self.lam if lam is None else lam,
            self.activation, self.output, w, out, rows, self.n_threads,
        )

    def cost_grad(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
                  *, check_finite: bool = False) -> tuple[float, np.ndarray]:
        """Regularized cost and gradient (P,) at the current ``theta``;
        ``check_finite`` as for :func:`bpnet.cost_grad` (off: the core reports NaN/inf)."""
        X, y, w = self._prepare(X, y, sample_weight, check_finite)
        J, grad = self._cost_grad(self.theta, X, y, w)
        return float(J), grad

    def forward_cost(
        self, X: Any, y: Any, sample_weight: Any = None, *, check_finite: bool = False
    ) -> tuple[float, np.ndarray]:
        """Regularized cost ``J`` and output activations ``a^(L)`` (m, K) at the
        current ``theta``, in one forward pass of the core (no backward pass):
        the loss and the outputs a score needs. See :func:`bpnet.forward_cost`."""
        return self.split_scorer(X, y, sample_weight, check_finite=check_finite)(self.theta)

    def split_scorer(
        self, X: Any, y: Any, sample_weight: Any = None, *, lam: float | None = None,
        check_finite: bool = True,
    ) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
        """``score(theta) -> (J, a^(L))`` over a held-out split: X, y and the
        sample weights (as for :meth:`fit`) are converted and checked here, once
        (``check_finite=False`` skips the NaN scan); each call is one forward
        pass of the core (:meth:`forward_cost` at any ``theta``), as early
        stopping scores its validation split every iteration. ``lam``: the
        split's L2 strength (default: this network's)."""
        Xp, yp, w = self._prepare(X, y, sample_weight, check_finite)
        Xc = F.as_core_X(Xp)
        lam_split = self.lam if lam is None else P.check_lam(lam)

        def score(theta: np.ndarray) -> tuple[float, np.ndarray]:
            return _runtime.forward_cost(
                theta, self.layer_sizes, Xc, yp, lam_split, self.activation, self.output, w,
                None, self.n_threads,
            )

        return score

    @fit_guarded
    @P.once_per_fit
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        solver: str = "lbfgs",
        max_iter: int = 400,
        tol: float | None = None,
        sample_weight: np.ndarray | None = None,
        callback: Callable[[IterationInfo], bool | None] | None = None,
        client: object | None = None,
        check_finite: bool = True,
        **solver_options: Any,
    ) -> Network:
        """Train from the current ``theta``.

        Parameters
        ----------
        X : array-like (m, s_0)
            Converted once to ``dtype`` (C order) and checked for NaN/inf.
        y : array-like (m,) int or (m, K)
            Class indices ``0..K-1`` or a target matrix.
        solver : {"lbfgs", "cg", "adam", "sgd"}
            Full batch with SciPy (L-BFGS-B, CG) or mini-batch.
        max_iter : int
            Iterations (full batch) or epochs (mini-batch).
        tol : float, optional
            Full batch: SciPy's ``tol`` (default 1e-6); mini-batch: minimum
            epoch-loss improvement (default 1e-4, 0 disables).
        sample_weight : array-like (m,), optional
        callback : callable, optional
            ``callback(IterationInfo)`` after each iteration/epoch; return
            True to stop.
        client : distributed.Client, optional
            Train on a Dask cluster (full batch only; X and y may be dask
            arrays): the cost and gradient come from a
            :class:`bpnet.distributed.DistributedObjective`, whose options (``max_retries``,
            ``timeout``, ``scheduler_timeout``) pass through ``solver_options``.
            ``None`` (default): in this process.
        check_finite : bool
            Scan X for NaN/inf (default). False skips the O(m n) scan for an
            X already checked (the estimators' scikit-learn validation does
            it); the core still rejects non-finite pre-activations.
        **solver_options
            Mini-batch options of :func:`bpnet.optimize.minimize_minibatch`
            (``batch_size``, ``learning_rate``, ``momentum``, ``nesterov``,
            ``beta_1``, ``beta_2``, ``epsilon``, ``n_iter_no_change``,
            ``shuffle``, ``lr_schedule``, ``power_t``); for ``"lbfgs"``,
            ``max_fun`` (the most cost/gradient evaluations).

        Returns
        -------
        self
            ``theta``, ``loss_history`` and ``result`` are updated; if the
            fit ends by an exception (Ctrl-C, ``SystemExit``, divergence, lost
            workers, the callback's), they describe the last good parameters,
            which the re-raised exception carries in ``partial_result``.
        """
        P.check("solver", solver)
        loop = {"max_iter": max_iter, "tol": tol, "callback": callback}
        _Training(self, solver, loop, solver_options).run(X, y, sample_weight, client,
                                                           check_finite)
        return self


    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Output activations ``a^(L)`` (m, K)."""
        X = prepare_X(X, self.layer_sizes[0], self.dtype)
        # the calling thread's own workspace: any number of threads may predict at once
        return _runtime.forward(self.theta, self.layer_sizes, F.as_core_X(X), self.activation,
                                self.output, None, self.n_threads)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices (m,) int64 (``argmax`` of the output); for an identity
        or poisson output (regression), the outputs (m, K) themselves."""
        if self.output in ("identity", "poisson"):
            return self.predict_proba(X)
        X = prepare_X(X, self.layer_sizes[0], self.dtype)
        return _runtime.predict(self.theta, self.layer_sizes, F.as_core_X(X), self.activation,
                                self.n_threads)

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write this network to a model file (see :func:`bpnet.save`); returns the path."""
        return _modelfile.write(path, self._record(), self._from_record)


class _Training:
    """One :meth:`Network.fit`: the same loop for every solver, local or on a Dask
    cluster, over inputs prepared once; the network keeps the result, or on any
    other end (Ctrl-C, divergence, lost workers, an exception from the
    callback) the last good parameters."""

    def __init__(
        self, net: Network, solver: str, loop: dict[str, Any], options: dict[str, Any]
    ) -> None:
        self.net, self.solver, self.loop, self.options = net, solver, loop, options

    def run(self, X: Any, y: Any, sample_weight: Any, client: object | None,
            check_finite: bool) -> None:
        if client is not None:
            self.distributed(X, y, sample_weight, client, check_finite)
            return
        net = self.net
        X, y, w = net._prepare(X, y, sample_weight, check_finite)
        if self.solver in FULL_BATCH_SOLVERS:

            def cost_grad(theta: np.ndarray, out: np.ndarray | None) -> tuple[float, np.ndarray]:
                # out=None: a fresh gradient (SciPy may keep the previous one)
                return net._cost_grad(theta, X, y, w, out=out)

            self.keep(lambda: self.full_batch(CoreObjective(cost_grad)), y, w)
        else:
            self.keep(lambda: self.minibatch(X, y, w), y, w)

    def distributed(self, X: Any, y: Any, sample_weight: Any, client: object,
                    check_finite: bool) -> None:
        """Full batch on a Dask cluster: the same loop, a distributed objective."""
        net, options = self.net, self.options
        if F.is_sparse(X):
            raise ValueError(
                "a sparse X is not supported with client= (distributed training); "
                "pass a dense array or a dask array"
            )
        if self.solver not in FULL_BATCH_SOLVERS:
            raise ValueError(
                f"solver={self.solver!r} is not distributed: with client= use 'lbfgs' or 'cg' "
                "(full batch; see docs/distributed.md for why)"
            )
        from .distributed import DistributedObjective, is_dask_array  # Dask: only here

        if not is_dask_array(X):  # a dask X is converted and checked on the workers
            X, y, sample_weight = net._prepare(X, y, sample_weight, check_finite)
        elif not (is_dask_array(y) or isinstance(y, np.ndarray)):
            raise ValueError(f"y must be a dask or NumPy array; got {type(y).__name__}")
        with DistributedObjective(
            client, net.layer_sizes, X, y, sample_weight, lam=net.lam,
            activation=net.activation, output=net.output, dtype=net.dtype,
            max_retries=options.pop("max_retries", 3), timeout=options.pop("timeout", "auto"),
            scheduler_timeout=options.pop("scheduler_timeout", 10.0),
        ) as objective, _runtime.using_build(objective.build):  # the fit's one build
            self.keep(lambda: self.full_batch(objective), y, sample_weight)

    def full_batch(self, fun: FullBatchFun | CoreObjective) -> FitResult:
        loop, options = self.loop, self.options
        max_fun = options.pop("max_fun", None)
        overwrite = bool(options.pop("overwrite_theta0", False))
        if options:
            raise ValueError(f"options {sorted(options)} apply to the mini-batch solvers only")
        return minimize_full_batch(
            fun, self.net.theta, method=self.solver, max_iter=loop["max_iter"],
            tol=1e-6 if loop["tol"] is None else loop["tol"], callback=loop["callback"],
            max_fun=max_fun, overwrite_theta0=overwrite,
        )

    def minibatch(self, X: Any, y: np.ndarray, w: np.ndarray | None) -> FitResult:
        net, loop, options = self.net, self.loop, self.options
        m = X.shape[0]
        total_weight = m if w is None else float(w.sum())
        options.setdefault("rng", net.rng)
        options.setdefault("n_threads", net.n_threads)
        # the core call of every batch, bound once for the fit (bpnet._runtime)
        cost_grad = _runtime.batch_cost_grad(net.layer_sizes, F.as_core_X(X), y, net.activation,
                                             net.output, w, net.n_threads)
        lam = net.lam

        # Each batch estimates the full-batch J: its penalty stays lam/(2m) with m
        # of the whole training set, so lam means the same for every solver
        # (scikit-learn instead divides by the batch size).
        def batch_fun(theta: np.ndarray, rows: np.ndarray, grad: np.ndarray) -> float | None:
            return cost_grad(theta, lam * rows.size / total_weight, grad, rows)

        def weighted_batch_fun(theta: np.ndarray, rows: np.ndarray,
                               grad: np.ndarray) -> float | None:
            batch_weight = float(w[rows].sum())  # type: ignore[index]
            if batch_weight == 0:
                return None  # all weights zero: the optimizer skips this batch
            return cost_grad(theta, lam * batch_weight / total_weight, grad, rows)

        return minimize_minibatch(
            batch_fun if w is None else weighted_batch_fun, net.theta, m, solver=self.solver,
            max_iter=loop["max_iter"],
            tol=1e-4 if loop["tol"] is None else loop["tol"], callback=loop["callback"],
            **options,
        )

    def keep(self, run: Callable[[], FitResult], y: Any, w: np.ndarray | None) -> None:
        """Run an optimizer loop and keep its result; on any other end (Ctrl-C,
        ``SystemExit``, divergence, lost workers, an exception from the callback)
        keep the last good parameters and re-raise, naming the input that
        overflows when one does."""
        net = self.net
        try:
            res = run()
        except BaseException as err:
            partial = getattr(err, "partial_result", None)
            if partial is not None:
                net.theta, net.loss_history, net.result = (
                    partial.theta, partial.loss_history, partial
                )
            cause = ""
            if isinstance(err, FloatingPointError) and isinstance(y, np.ndarray):
                cause = overflow_cause(net.dtype, net.output, y, w)
            if cause:
                # the core sees only theta and X; here the inputs are known
                what = str(err).replace(": theta or X is too large", "")
                new = FloatingPointError(f"{what}: {cause}")
                new.partial_result = partial  # type: ignore[attr-defined]
                raise new from err
            raise
        net.theta, net.loss_history, net.result = res.theta, res.loss_history, res

"""Optimizer loops (in Python): SciPy's CG and L-BFGS-B on the full batch,
mini-batch Adam and SGD (momentum, Nesterov), each step's update one fused
pass of the core.

Every loop records the loss history and calls ``callback(info)`` after each
iteration (full batch) or epoch (mini-batch); a callback that returns True
stops the fit. A non-finite loss or gradient stops it with a
``FloatingPointError`` that names the iteration. An objective that cannot
evaluate a step (a distributed one that lost its workers) raises
:class:`StepFailed`. Every exception that ends a loop (those,
``KeyboardInterrupt``, ``SystemExit``, or any exception raised by the
callback) is re-raised carrying ``partial_result``: a :class:`FitResult`
holding the last good parameters (those after the last complete iteration).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize

from . import _blas, _lbfgsb, _runtime
from . import _params as P
from ._params import FULL_BATCH_SOLVERS, LR_SCHEDULES, MINIBATCH_SOLVERS, SOLVERS
from .initialization import as_generator

__all__ = [
    "FULL_BATCH_SOLVERS",
    "LR_SCHEDULES",
    "MINIBATCH_SOLVERS",
    "SOLVERS",
    "STATE_ARRAYS",
    "CoreObjective",
    "FitResult",
    "IterationInfo",
    "StepFailed",
    "minimize_full_batch",
    "minimize_minibatch",
]

# fun(theta) -> (J, grad) over the full batch
FullBatchFun = Callable[[np.ndarray], "tuple[float, np.ndarray]"]
# fun(theta, rows, grad_out) -> J over the examples `rows`, gradient into grad_out;
# None for a batch that carries no weight (all its sample weights are 0): skipped
BatchFun = Callable[[np.ndarray, np.ndarray, np.ndarray], "float | None"]



class StepFailed(RuntimeError):
    """The objective could not evaluate a step (not a numerical failure).

    Like a divergence or Ctrl-C, it stops the loop with ``partial_result``
    set to the last good parameters.

    Attributes
    ----------
    partial_result : FitResult or None
        Set by the optimizer loop that was stopped.
    """

    partial_result: FitResult | None = None


# the stops the loops themselves raise or expect (divergence, Ctrl-C, a failed step);
# any exception ends a loop the same way: re-raised with ``err.partial_result``
STOPS: tuple[type[BaseException], ...] = (FloatingPointError, KeyboardInterrupt, StepFailed)


def _attach(err: BaseException, result: FitResult) -> None:
    """Hang the last good parameters on the exception that ends a loop."""
    try:
        err.partial_result = result  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # an exception type without a __dict__
        pass
_SCIPY_METHODS = {"lbfgs": "L-BFGS-B", "cg": "CG"}  # FULL_BATCH_SOLVERS -> scipy.optimize.minimize


@dataclass
class IterationInfo:
    """What a callback sees after each iteration (full batch) or epoch (mini-batch).

    ``Network.fit(..., callback=f)`` and the optimizer loops call ``f(info)``
    with one of these; ``f`` returning True stops the fit (stop reason
    ``"callback"``).

    Attributes
    ----------
    iteration : int
        1 for the first iteration (epoch), counting up.
    loss : float
        The training loss: after the iteration (full batch), or the epoch's
        mean batch loss (mini-batch), regularization included.
    theta : ndarray (P,)
        The current parameters. Read-only use: it is SciPy's iterate or the
        optimizer's working array, so copy it (``info.theta.copy()``) to keep
        it, and never write to it.

    Examples
    --------
    >>> import numpy as np, bpnet
    >>> X = np.random.default_rng(0).random((20, 2)); y = (X[:, 0] > 0.5).astype(int)
    >>> seen = []
    >>> net = bpnet.Network([2, 3, 2], output="softmax", rng=0)
    >>> _ = net.fit(X, y, max_iter=5, callback=lambda info: seen.append(info.iteration))
    >>> seen
    [1, 2, 3, 4, 5]
    """

    iteration: int
    loss: float
    theta: np.ndarray  # the current parameters (a read-only view: copy to keep)


@dataclass
class FitResult:
    """Outcome of an optimizer loop.

    Attributes
    ----------
    theta : ndarray (P,)
        Final parameters.
    loss_history : list of float
        Training loss after each iteration (full batch) or the mean batch
        loss of each epoch (mini-batch).
    n_iter : int
        Iterations (full batch) or epochs (mini-batch) run.
    n_evals : int
        Cost/gradient evaluations.
    stop_reason : str
        ``"converged"``, ``"max_iter"``, ``"callback"`` or SciPy's message
        (after an exception: its class name).
    initial_loss : float or None
        The loss at the initial parameters: the first evaluation (full batch)
        or the first batch's (mini-batch; an estimate of the full loss); None
        if no evaluation finished.
    build : str or None
        The ISA build of the core the loop ran on (``"baseline"``, ``"avx2"``
        or ``"avx512"``; the calling thread's, see
        :func:`bpnet._runtime.active_build`): the bits of ``theta`` are those
        of that build. None for a result read from a file that predates the
        field.
    """

    theta: np.ndarray
    loss_history: list[float] = field(default_factory=list)
    n_iter: int = 0
    n_evals: int = 0
    stop_reason: str = ""
    build: str | None = field(default_factory=_runtime.active_build)
    initial_loss: float | None = None


# the optimizer state's arrays per mini-batch solver (``state`` of
# :func:`minimize_minibatch` holds them next to "step", "lr" and "t")
STATE_ARRAYS: dict[str, tuple[str, ...]] = {"adam": ("moment1", "moment2"), "sgd": ("velocity",)}
_SCHEDULE_KEYS = ("lr", "t")  # the learning-rate schedule's entries of ``state``


# -- argument checks: rows of (name, value, rule id) of the one rule table (bpnet._params)
def _check(rows: list[tuple[str, Any, str]]) -> None:
    """Raise ValueError for the first (name, value, rule) row whose value breaks its rule."""
    for name, value, rule in rows:
        P.check(name, value, rule)


def _check_finite(J: float, grad: np.ndarray, iteration: int) -> None:
    if not np.isfinite(J) or not np.isfinite(grad).all():
        what = "loss" if not np.isfinite(J) else "gradient"
        raise FloatingPointError(
            f"non-finite {what} at iteration {iteration} (J = {J}); "
            "lower the learning rate or scale the inputs"
        )


# -- full batch ---------------------------------------------------------------------
def _full_batch_options(
    method: str, max_iter: int, tol: float, max_fun: int | None
) -> dict[str, Any]:
    """SciPy's ``options`` for ``method``, after checking the arguments.

    ``tol`` has scikit-learn's meaning (``MLPClassifier._fit_lbfgs``): it is the
    gradient tolerance ``gtol`` only (L-BFGS-B: the largest projected gradient
    entry; CG: the gradient's largest entry). The relative loss-change
    tolerance of L-BFGS-B stays SciPy's default ``ftol`` (1e7 times the float64
    machine epsilon, 2.2e-9), as in scikit-learn. SciPy's own ``tol`` argument
    would also set ``ftol = tol``: relative to the loss's scale, a stop after a
    few iterations on a loss of order 1e3 (a raw regression target).
    """
    _check([("method", method, "full_batch_solver"), ("max_iter", max_iter, "count")])
    options: dict[str, Any] = {"maxiter": int(max_iter)}
    if max_fun is not None:
        if method != "lbfgs":
            raise ValueError(f"max_fun applies to method='lbfgs' only; got method={method!r}")
        P.check("max_fun", max_fun, "count")
        options["maxfun"] = int(max_fun)
    P.check("tol", tol, "positive")
    options["gtol"] = float(tol)  # not SciPy's ``tol``: that sets ftol too (see above)
    return options


def _stop_reason(res: Any, result: FitResult, max_iter: int, max_fun: int | None) -> str:
    """Why SciPy (or :func:`bpnet._lbfgsb.minimize`) stopped, in FitResult's words."""
    if res.success:
        return "converged"
    if result.n_iter >= max_iter:
        return "max_iter"
    if max_fun is not None and result.n_evals >= max_fun:
        return "max_fun"
    return str(res.message)


@dataclass(frozen=True)
class CoreObjective:
    """A full-batch objective that writes its gradient where it is told and checks
    as the core does: ``cost_grad(theta, out)`` returns ``(J, grad)`` with ``grad``
    written into ``out`` ((P,) of theta's dtype; None: a fresh array), raises
    ``ValueError`` for a non-finite ``theta`` and ``OverflowError`` for a non-finite
    cost or gradient. :func:`minimize_full_batch` then skips its own O(P) scans of
    theta and the gradient, and L-BFGS-B reads the gradient where the core wrote it.
    Called as ``fun(theta)``, it returns a fresh gradient (any ``FullBatchFun``)."""

    cost_grad: Callable[[np.ndarray, np.ndarray | None], tuple[float, np.ndarray]]

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        return self.cost_grad(theta, None)


class _Evaluation:
    """The cost and gradient at SciPy's float64 ``x`` for :func:`minimize_full_batch`:
    rounded to theta's dtype, a non-finite theta, cost or gradient raised as a
    ``FloatingPointError`` naming the iteration, the evaluations counted."""

    def __init__(self, fun: FullBatchFun | CoreObjective, dtype: np.dtype, n: int,
                 result: FitResult) -> None:
        self.fun, self.dtype, self.result = fun, dtype, result
        self.core = isinstance(fun, CoreObjective)
        # theta in float32, and the core's float32 gradient before it is widened
        self.work = None if dtype == np.float64 else np.empty(n, dtype)
        self.grad32 = None if self.work is None or not self.core else np.empty(n, dtype)

    def theta(self, x: np.ndarray) -> np.ndarray:
        if self.work is None:  # float64: the core reads SciPy's x in place (never writes it)
            return x
        with np.errstate(over="ignore", invalid="ignore"):  # float64 -> float32 may overflow
            self.work[...] = x
        return self.work

    def diverged(self) -> FloatingPointError:
        # L-BFGS-B's line search can step to inf after a huge gradient
        return FloatingPointError(
            f"non-finite parameters (as {self.dtype}) at iteration {self.result.n_iter + 1}: "
            "the optimizer diverged; scale the inputs or raise lambda"
        )

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """(J, gradient as float64): written into ``out`` (float64) when given, else
        the objective's own array (fresh: SciPy may keep the previous one)."""
        theta, result = self.theta(x), self.result
        if not self.core and not np.isfinite(theta).all():
            raise self.diverged()  # a Python objective may not check theta
        core_out = None if out is None else (out if self.grad32 is None else self.grad32)
        try:
            if isinstance(self.fun, CoreObjective):
                J, grad = self.fun.cost_grad(theta, core_out)
            else:
                J, grad = self.fun(theta)
        except OverflowError as err:  # the core: pre-activations overflow the dtype
            raise FloatingPointError(f"{err} at iteration {result.n_iter + 1}") from err
        except ValueError:  # the core rejects a non-finite theta: the same error as above
            if self.core and not np.isfinite(theta).all():
                raise self.diverged() from None
            raise
        result.n_evals += 1
        if not self.core:  # the core raised above for a non-finite cost or gradient
            _check_finite(J, grad, result.n_iter + 1)
        if result.initial_loss is None:  # SciPy evaluates theta0 first
            result.initial_loss = float(J)
        if out is not None and grad is not out:
            np.copyto(out, grad)  # float32 -> float64 is exact
            grad = out
        return J, grad.astype(np.float64, copy=False)


def minimize_full_batch(
    fun: FullBatchFun | CoreObjective,
    theta0: np.ndarray,
    *,
    method: str = "lbfgs",
    max_iter: int = 400,
    tol: float = 1e-6,
    callback: Callable[[IterationInfo], bool | None] | None = None,
    max_fun: int | None = None,
    overwrite_theta0: bool = False,
) -> FitResult:
    """Minimize ``fun`` with SciPy (``jac=True``): ``"lbfgs"`` (L-BFGS-B) or ``"cg"``.

    SciPy iterates in float64; a float32 ``theta0`` is rounded once per
    evaluation and the result is returned in float32. ``max_fun`` (L-BFGS-B
    only) caps the cost/gradient evaluations (stop reason ``"max_fun"``).
    ``tol`` is the gradient tolerance (SciPy's ``gtol``), as scikit-learn's
    MLP passes it; L-BFGS-B's relative loss-change tolerance ``ftol`` is
    SciPy's default 2.2e-9 (1e7 machine epsilons), not ``tol``. ``overwrite_theta0``
    (float64; as SciPy's ``overwrite_a``): ``theta0``'s buffer keeps the last good
    iterate instead of a copy (one parameter vector less). L-BFGS-B runs SciPy's
    ``setulb`` in :func:`bpnet._lbfgsb.minimize` (SciPy's iterates, without its
    wrappers' copies; ``fun`` a :class:`CoreObjective`: the gradient written in place)
    where this SciPy has that ``setulb``, else in ``scipy.optimize.minimize``.
    """
    options = _full_batch_options(method, max_iter, tol, max_fun)
    dtype = theta0.dtype
    # SciPy iterates on a copy of x0: theta0 may hold the result and last good iterate
    result = FitResult(theta=theta0)
    own = overwrite_theta0 and dtype == np.float64
    last_good = theta0 if own else theta0.astype(np.float64)
    evaluate = _Evaluation(fun, dtype, theta0.size, result)

    def on_iteration(x: np.ndarray, loss: float) -> bool:
        result.n_iter += 1
        last_good[...] = x
        result.loss_history.append(float(loss))
        if callback is not None:
            view = x.astype(dtype, copy=False)
            if callback(IterationInfo(result.n_iter, float(loss), view)):
                result.stop_reason = "callback"
                return True
        return False

    def scipy_callback(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        if on_iteration(intermediate_result.x, intermediate_result.fun):
            raise StopIteration

    raised_stop: list[bool] = []

    def halts(x: np.ndarray, loss: float) -> bool:
        try:
            return on_iteration(x, loss)
        except StopIteration:  # a halt in SciPy's loop too, which then says so
            raised_stop.append(True)
            return True

    try:
        with _blas.single_threaded(theta0.size):  # SciPy's vector work: see bpnet._blas
            if method == "lbfgs" and _lbfgsb.available():
                res: Any = _lbfgsb.minimize(
                    lambda x, g: evaluate(x, g)[0], theta0.astype(np.float64, copy=False),
                    maxiter=options["maxiter"], maxfun=options.get("maxfun", _lbfgsb.MAXFUN),
                    gtol=options["gtol"], callback=halts,
                )
                if raised_stop:  # as scipy.optimize.minimize reports it
                    res.success, res.message = False, "`callback` raised `StopIteration`."
            else:
                res = scipy.optimize.minimize(  # SciPy copies x0: no copy of our own
                    evaluate, theta0.astype(np.float64, copy=False), jac=True,
                    method=_SCIPY_METHODS[method], callback=scipy_callback, options=options,
                )
    except BaseException as err:  # any end but a normal one: keep the last good parameters
        result.theta = last_good.astype(dtype)
        result.stop_reason = type(err).__name__
        _attach(err, result)
        raise
    result.theta = np.asarray(res.x, dtype=dtype)
    result.stop_reason = result.stop_reason or _stop_reason(res, result, int(max_iter), max_fun)
    return result


# -- mini-batch ---------------------------------------------------------------------
@dataclass(frozen=True)
class _MinibatchOptions:
    """The checked settings of :func:`minimize_minibatch` (as passed, but ``lr`` and the
    update's constants: Python floats)."""

    solver: str
    max_iter: int
    batch_size: int  # at most m
    learning_rate: float
    lr: float  # learning_rate as a float: Adam's rate, SGD's first one
    beta_1: float
    beta_2: float
    epsilon: float
    momentum: float
    nesterov: bool
    tol: float
    n_iter_no_change: int
    shuffle: bool
    n_threads: int | None
    lr_schedule: str
    power_t: float


def _minibatch_options(m: int, **kw: Any) -> _MinibatchOptions:
    """The keyword arguments of :func:`minimize_minibatch` after checking them, in
    its order (the first value that breaks its rule is reported)."""
    _check([
        ("lr_schedule", kw["lr_schedule"], "lr_schedule"),
        ("power_t", kw["power_t"], "non_negative"),
        ("solver", kw["solver"], "minibatch_solver"),
        ("max_iter", kw["max_iter"], "count"),
        ("batch_size", kw["batch_size"], "count"),
        ("learning_rate", kw["learning_rate"], "positive"),
        ("beta_1", kw["beta_1"], "fraction"),
        ("beta_2", kw["beta_2"], "fraction"),
        ("momentum", kw["momentum"], "fraction"),
        ("epsilon", kw["epsilon"], "positive"),
        ("tol", kw["tol"], "non_negative"),
        ("n_iter_no_change", kw["n_iter_no_change"], "count"),
        ("n_threads", kw["n_threads"], "n_threads"),
    ])
    kw.update(max_iter=int(kw["max_iter"]), batch_size=min(int(kw["batch_size"]), m))
    # the update's constants as Python floats: a NumPy scalar (a value from a grid) gives
    # the fit of the same Python float (the kernels round them to theta's dtype)
    kw.update({k: float(kw[k]) for k in ("beta_1", "beta_2", "epsilon", "momentum")})
    return _MinibatchOptions(lr=float(kw["learning_rate"]), **kw)


@dataclass
class _Loop:
    """The mutable state of one :func:`minimize_minibatch` call."""

    theta: np.ndarray  # (P,) updated in place
    arrays: dict[str, np.ndarray]  # STATE_ARRAYS[solver]: moment1, moment2 or velocity
    step: int  # steps taken, over all calls that shared ``state`` (Adam's t)
    last_good: np.ndarray = field(init=False)  # theta after the last complete epoch
    grad: np.ndarray = field(init=False)  # the batch gradient, written by ``fun``
    best: float = np.inf  # the lowest epoch loss so far
    stall: int = 0  # epochs in a row that did not improve on ``best`` by tol

    def __post_init__(self) -> None:
        self.last_good = self.theta.copy()
        self.grad = np.empty_like(self.theta)


def _snapshot(theta: np.ndarray) -> np.ndarray:
    """A read-only copy of ``theta``: the parameters after an epoch, as a callback
    receives them (``IterationInfo.theta``). The loop never writes it again, so a
    callback may keep it without a copy of its own (the estimators' fit loop does:
    one parameter vector fewer for a wide network)."""
    snap = theta.copy()
    snap.flags.writeable = False
    return snap


def _resume(state: dict[str, Any] | None, solver: str, theta: np.ndarray,
            overwrite: bool = False) -> _Loop:
    """The loop state from theta0 (trained in its own buffer when ``overwrite``, else
    in a copy) and the arrays and step count ``state`` holds (zeros and 0 if it holds
    none); a state of the other solver is a ValueError."""
    arrays = {key: np.zeros_like(theta) for key in STATE_ARRAYS[solver]}
    held = sorted(set(state or ()) - set(_SCHEDULE_KEYS))
    working = theta if overwrite else theta.copy()
    if state is None or not held:
        return _Loop(working, arrays, 0)
    expected = sorted([*arrays, "step"])
    if held != expected:
        raise ValueError(f"state holds {held}; solver={solver!r} resumes from {expected} "
                         "(a state of another solver cannot be resumed)")
    for key, a in arrays.items():
        if state[key].shape != theta.shape:
            raise ValueError(
                f"state holds {key} of shape {state[key].shape}; expected {theta.shape}"
            )
        a[...] = state[key]
    return _Loop(working, arrays, int(state["step"]))


# One step's update, bound once per loop: ``step(lr)`` updates theta in place at the
# rate ``lr`` after ``fun`` wrote the batch gradient and ``loop.step`` was counted; it
# returns whether theta stayed finite.
Step = Callable[[float], bool]


def _adam_step(loop: _Loop, opts: _MinibatchOptions) -> Step:
    """Adam's update (the formulas of :func:`minimize_minibatch`, t = ``loop.step``): one
    fused pass of the core (NumPy took nine) on the capped thread count (1 in a forked
    child)."""
    update = _runtime.adam_stepper(opts.n_threads)
    theta, m1, m2, grad = loop.theta, loop.arrays["moment1"], loop.arrays["moment2"], loop.grad
    b1, b2, eps = opts.beta_1, opts.beta_2, opts.epsilon

    def step(lr: float) -> bool:
        t = loop.step
        # the bias-corrected step size lr sqrt(1 - b2^t) / (1 - b1^t)
        return update(theta, m1, m2, grad, b1, b2, lr * math.sqrt(1 - b2**t) / (1 - b1**t), eps)

    return step


def _sgd_step(loop: _Loop, opts: _MinibatchOptions) -> Step:
    """SGD's update with momentum (``v = mu v - lr g``; ``theta += mu v - lr g`` or
    ``theta += v``): one fused pass of the core (NumPy took five), with NumPy's
    roundings."""
    update = _runtime.sgd_stepper(opts.n_threads)
    theta, velocity, grad = loop.theta, loop.arrays["velocity"], loop.grad
    mu, nesterov = opts.momentum, bool(opts.nesterov)
    return lambda lr: update(theta, velocity, grad, lr, mu, nesterov)


def _epoch(fun: BatchFun, loop: _Loop, order: np.ndarray, opts: _MinibatchOptions, step: Step,
           lr: float, epoch: int, result: FitResult) -> float:
    """One pass over the examples in ``order``, one ``step`` at rate ``lr`` per batch; the
    epoch loss (the batch losses' mean weighted by batch rows, skipped batches left out;
    0 if all were)."""
    total, n_used, size = 0.0, 0, opts.batch_size
    theta, grad = loop.theta, loop.grad
    for start in range(0, order.size, size):
        rows = order[start : start + size]
        try:
            J = fun(theta, rows, grad)
        except OverflowError as err:  # the core: pre-activations overflow the dtype
            raise FloatingPointError(f"{err} at epoch {epoch}") from err
        result.n_evals += 1
        if J is None:  # a batch without weight: nothing to learn from
            continue
        n_used += rows.size
        # the core raises (OverflowError, above) on a non-finite loss or gradient; a
        # Python ``fun`` may return one
        if not math.isfinite(J):
            _check_finite(J, grad, epoch)
        if result.initial_loss is None:  # the first batch, at theta0
            result.initial_loss = float(J)
        total += J * rows.size
        loop.step += 1
        if not step(lr):  # the core's update never warns: an overflow shows here
            raise FloatingPointError(
                f"non-finite parameters at epoch {epoch} (step {loop.step}); "
                "lower the learning rate or scale the inputs"
            )
    return total / n_used if n_used else 0.0


def _stalled(loop: _Loop, opts: _MinibatchOptions, loss: float, lr: float,
             sched: dict[str, Any]) -> bool:
    """Whether to stop after an epoch of loss ``loss``: ``n_iter_no_change`` epochs in a
    row have not improved on the best loss by ``tol`` (``tol=0``: never). With SGD's
    "adaptive" schedule such a stall sets ``lr /= 5`` instead (scikit-learn's rule),
    while ``lr > 1e-6``."""
    if not opts.tol > 0:
        return False
    loop.stall = loop.stall + 1 if loss > loop.best - opts.tol else 0
    loop.best = min(loop.best, loss)
    if loop.stall < opts.n_iter_no_change:
        return False
    if opts.solver == "sgd" and opts.lr_schedule == "adaptive" and lr > 1e-6:
        sched["lr"] = lr / 5
        loop.stall = 0
        return False
    return True


def _epochs(fun: BatchFun, loop: _Loop, m: int, opts: _MinibatchOptions,
            gen: np.random.Generator, callback: Callable[[IterationInfo], bool | None] | None,
            sched: dict[str, Any], result: FitResult) -> None:
    """Up to ``max_iter`` epochs over ``m`` examples; sets the result's loss history,
    n_iter and stop reason, and ``sched``'s samples seen ``t`` and rate ``lr``."""
    order = np.arange(m, dtype=np.int64)
    step = _adam_step(loop, opts) if opts.solver == "adam" else _sgd_step(loop, opts)
    # one batch per epoch: its order would change only the sum's rounding, and the rows
    # in order are read in place (a shuffled full batch is gathered: full-batch Adam on
    # [4, 32, 16, 4], m = 10,000 took 1.2x (float64) to 1.4x (float32) as long per epoch)
    shuffle = opts.shuffle and opts.batch_size < m
    for epoch in range(1, opts.max_iter + 1):
        lr = float(sched["lr"]) if opts.solver == "sgd" else opts.lr
        if shuffle:
            gen.shuffle(order)
        loss = _epoch(fun, loop, order, opts, step, lr, epoch, result)
        # after a step theta is finite (checked in _epoch); non-finite here only if no step
        # ran since: a non-finite theta0 with every batch skipped, or a callback wrote into it
        if not np.isfinite(loop.theta).all():
            raise FloatingPointError(f"non-finite parameters after epoch {epoch}")
        if callback is None:
            loop.last_good[...] = loop.theta
        else:  # a fresh snapshot the callback may keep (see _snapshot)
            loop.last_good = _snapshot(loop.theta)
        sched["t"] = int(sched["t"]) + m
        if opts.solver == "sgd" and opts.lr_schedule == "invscaling":
            sched["lr"] = opts.learning_rate / (sched["t"] + 1) ** opts.power_t
        result.loss_history.append(loss)
        result.n_iter = epoch
        if callback is not None and callback(IterationInfo(epoch, loss, loop.last_good)):
            result.stop_reason = "callback"
            return
        if _stalled(loop, opts, loss, lr, sched):
            result.stop_reason = "converged"
            return
    result.stop_reason = "max_iter"


def minimize_minibatch(
    fun: BatchFun,
    theta0: np.ndarray,
    m: int,
    *,
    solver: str = "adam",
    max_iter: int = 200,
    batch_size: int = 200,
    learning_rate: float = 1e-3,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-8,
    momentum: float = 0.9,
    nesterov: bool = True,
    tol: float = 1e-4,
    n_iter_no_change: int = 10,
    shuffle: bool = True,
    rng: np.random.Generator | int | None = None,
    callback: Callable[[IterationInfo], bool | None] | None = None,
    state: dict[str, Any] | None = None,
    n_threads: int | None = None,
    lr_schedule: str = "constant",
    power_t: float = 0.5,
    overwrite_theta0: bool = False,
) -> FitResult:
    """Mini-batch ``"adam"`` or ``"sgd"`` for ``max_iter`` epochs over ``m`` examples.

    Each step passes a slice of one permutation of ``0..m-1`` shuffled by ``rng`` (in
    order if not ``shuffle`` or ``batch_size >= m``) to ``fun``; X is never copied.
    Updates are in place, one fused pass of the core per step. Training stops early
    when the epoch loss has not improved by ``tol`` for ``n_iter_no_change`` epochs
    (``tol=0``: never).

    Adam: ``m1 = b1 m1 + (1-b1) g``; ``m2 = b2 m2 + (1-b2) g^2``;
    ``theta -= lr sqrt(1-b2^t)/(1-b1^t) m1 / (sqrt(m2) + eps)``.
    SGD: ``v = mu v - lr g``; ``theta += mu v - lr g`` (Nesterov) or ``theta += v``.

    ``state`` (optional dict) carries the optimizer state across calls, for
    incremental training (``partial_fit``): Adam's ``moment1`` (m1) and ``moment2``
    (m2) or SGD's ``velocity`` (v), and ``step`` (t); held from an earlier call of
    the same solver, they are the starting point (another solver's: ValueError).
    On return (also after an error) it holds the current ones, plus ``lr`` (SGD's
    current rate) and ``t`` (samples seen). A callback may lower ``state["lr"]``;
    it applies from the next epoch.

    A batch for which ``fun`` returns None (all its sample weights are zero) is
    skipped (no step, not in the epoch loss). ``n_threads``: the fused updates'
    threads. ``overwrite_theta0`` (as SciPy's ``overwrite_a``): train in ``theta0``'s
    buffer, not a copy (one parameter vector less; the estimators' drafts own theirs).

    ``lr_schedule`` (SGD only, as scikit-learn's ``learning_rate``):
    ``"constant"``; ``"invscaling"``: after each epoch ``lr = learning_rate /
    (t + 1) ** power_t`` with ``t`` the samples seen; ``"adaptive"``: when the
    epoch loss has not improved by ``tol`` for ``n_iter_no_change`` epochs,
    ``lr /= 5`` instead of stopping, while ``lr > 1e-6`` (then it stops).
    """
    opts = _minibatch_options(
        m, solver=solver, max_iter=max_iter, batch_size=batch_size, learning_rate=learning_rate,
        beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, momentum=momentum, nesterov=nesterov,
        tol=tol, n_iter_no_change=n_iter_no_change, shuffle=shuffle, n_threads=n_threads,
        lr_schedule=lr_schedule, power_t=power_t,
    )
    gen = as_generator(rng)
    loop = _resume(state, solver, theta0, overwrite=bool(overwrite_theta0))
    result = FitResult(theta=loop.theta)
    sched = state if state is not None else {}
    sched.setdefault("lr", opts.lr)
    sched.setdefault("t", 0)
    try:
        _epochs(fun, loop, m, opts, gen, callback, sched, result)
    except BaseException as err:  # any end but a normal one: keep the last good parameters
        good = loop.last_good  # a writable copy of a callback's snapshot (see _snapshot)
        result.theta = good if good.flags.writeable else good.copy()
        result.stop_reason = type(err).__name__
        _attach(err, result)
        raise
    finally:
        if state is not None:  # lr and t are kept in it as they change
            state.update(loop.arrays, step=loop.step)
    return result

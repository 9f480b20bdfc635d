"""Optimizer loops (in Python): SciPy's CG and L-BFGS-B on the full batch,
mini-batch Adam and SGD (momentum, Nesterov) with in-place NumPy updates.

Every loop records the loss history and calls ``callback(info)`` after each
iteration (full batch) or epoch (mini-batch); a callback that returns True
stops the fit. A non-finite loss or gradient stops it with a
``FloatingPointError`` that names the iteration. On that error or a
``KeyboardInterrupt`` the exception carries ``partial_result``: a
:class:`FitResult` holding the last good parameters. An objective that cannot
evaluate a step (a distributed one that lost its workers) raises
:class:`StepFailed`, handled the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize

from . import _blas
from . import functional as F
from ._native import core
from .initialization import as_generator

__all__ = [
    "FULL_BATCH_SOLVERS",
    "LR_SCHEDULES",
    "MINIBATCH_SOLVERS",
    "SOLVERS",
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

FULL_BATCH_SOLVERS = ("lbfgs", "cg")
MINIBATCH_SOLVERS = ("adam", "sgd")
SOLVERS = FULL_BATCH_SOLVERS + MINIBATCH_SOLVERS
LR_SCHEDULES = ("constant", "invscaling", "adaptive")  # SGD's step-size schedules


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


# what stops a loop with the last good parameters kept (``err.partial_result``)
STOPS: tuple[type[BaseException], ...] = (FloatingPointError, KeyboardInterrupt, StepFailed)


@dataclass
class IterationInfo:
    """What a callback sees after each iteration (full batch) or epoch (mini-batch)."""

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
        ``"converged"``, ``"max_iter"``, ``"callback"`` or SciPy's message.
    """

    theta: np.ndarray
    loss_history: list[float] = field(default_factory=list)
    n_iter: int = 0
    n_evals: int = 0
    stop_reason: str = ""


def _adam_step(
    theta: np.ndarray, m1: np.ndarray, v: np.ndarray, grad: np.ndarray, beta_1: float,
    beta_2: float, step_size: float, epsilon: float, n_threads: int | None,
) -> bool:
    """One fused Adam step of the core (see :func:`minimize_minibatch`) on the
    capped thread count (1 in a forked child); whether theta stayed finite."""
    return bool(core.adam_update(
        theta, m1, v, grad, beta_1, beta_2, step_size, epsilon,
        n_threads=F.effective_threads(n_threads),
    ))


def _check_finite(J: float, grad: np.ndarray, iteration: int) -> None:
    if not np.isfinite(J) or not np.isfinite(grad).all():
        what = "loss" if not np.isfinite(J) else "gradient"
        raise FloatingPointError(
            f"non-finite {what} at iteration {iteration} (J = {J}); "
            "lower the learning rate or scale the inputs"
        )


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value)):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0; got {value}")
    return float(value)


def _max_iter(max_iter: int) -> int:
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1; got {max_iter!r}")
    return int(max_iter)


def minimize_full_batch(
    fun: FullBatchFun,
    theta0: np.ndarray,
    *,
    method: str = "lbfgs",
    max_iter: int = 400,
    tol: float = 1e-6,
    callback: Callable[[IterationInfo], bool | None] | None = None,
    max_fun: int | None = None,
) -> FitResult:
    """Minimize ``fun`` with SciPy (``jac=True``): ``"lbfgs"`` (L-BFGS-B) or ``"cg"``.

    SciPy iterates in float64; a float32 ``theta0`` is rounded once per
    evaluation and the result is returned in float32. ``max_fun`` (L-BFGS-B
    only) caps the cost/gradient evaluations (stop reason ``"max_fun"``).
    """
    methods = {"lbfgs": "L-BFGS-B", "cg": "CG"}
    if method not in methods:
        raise ValueError(f"method must be one of {tuple(methods)}; got {method!r}")
    max_iter = _max_iter(max_iter)
    options: dict[str, Any] = {"maxiter": max_iter}
    if max_fun is not None:
        if method != "lbfgs":
            raise ValueError(f"max_fun applies to method='lbfgs' only; got method={method!r}")
        if isinstance(max_fun, bool) or not isinstance(max_fun, (int, np.integer)) or (
            max_fun < 1
        ):
            raise ValueError(f"max_fun must be an int >= 1; got {max_fun!r}")
        options["maxfun"] = int(max_fun)
    tol = _positive("tol", tol)
    dtype = theta0.dtype
    result = FitResult(theta=theta0.copy())
    work = np.empty_like(theta0)  # theta in the working dtype
    last_good = theta0.astype(np.float64)
    state = {"iteration": 0}

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore"):  # float64 -> float32 may overflow
            work[...] = x
        if not np.isfinite(work).all():
            # L-BFGS-B's line search can step to inf after a huge gradient; the core
            # would reject theta with a bare ValueError
            raise FloatingPointError(
                f"non-finite parameters (as {dtype}) at iteration {state['iteration'] + 1}: "
                "the optimizer diverged; scale the inputs or raise lambda"
            )
        try:
            J, grad = fun(work)
        except OverflowError as err:  # the core: pre-activations overflow the dtype
            raise FloatingPointError(f"{err} at iteration {state['iteration'] + 1}") from err
        result.n_evals += 1
        _check_finite(J, grad, state["iteration"] + 1)
        return J, grad.astype(np.float64, copy=False)

    def on_iteration(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        state["iteration"] += 1
        last_good[...] = intermediate_result.x
        result.loss_history.append(float(intermediate_result.fun))
        if callback is not None:
            view = intermediate_result.x.astype(dtype, copy=False)
            if callback(IterationInfo(state["iteration"], float(intermediate_result.fun), view)):
                result.stop_reason = "callback"
                raise StopIteration

    try:
        with _blas.single_threaded(theta0.size):  # SciPy's vector work: see bpnet._blas
            res = scipy.optimize.minimize(
                objective,
                theta0.astype(np.float64),
                jac=True,
                method=methods[method],
                tol=tol,
                callback=on_iteration,
                options=options,
            )
    except STOPS as err:
        result.theta = last_good.astype(dtype)
        result.n_iter = state["iteration"]
        result.stop_reason = type(err).__name__
        err.partial_result = result  # type: ignore[attr-defined]  # last good parameters
        raise
    result.theta = np.asarray(res.x, dtype=dtype)
    result.n_iter = state["iteration"]
    if not result.stop_reason:
        if res.success:
            result.stop_reason = "converged"
        elif state["iteration"] >= max_iter:
            result.stop_reason = "max_iter"
        elif max_fun is not None and result.n_evals >= max_fun:
            result.stop_reason = "max_fun"
        else:
            result.stop_reason = str(res.message)
    return result


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
) -> FitResult:
    """Mini-batch ``"adam"`` or ``"sgd"`` for ``max_iter`` epochs over ``m`` examples.

    Each step passes a slice of one shuffled permutation of ``0..m-1`` (from
    ``rng``) to ``fun``, which reads those rows in place: X is never copied.
    Updates are in place on preallocated NumPy buffers. Training stops early
    when the epoch loss has not improved by ``tol`` for ``n_iter_no_change``
    epochs (``tol=0`` disables this).

    Adam: ``m1 = b1 m1 + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
    ``theta -= lr sqrt(1-b2^t)/(1-b1^t) m1 / (sqrt(v) + eps)``.
    SGD: ``v = mu v - lr g``; ``theta += mu v - lr g`` (Nesterov) or ``theta += v``.

    ``state`` (optional dict) carries the optimizer state across calls, for
    incremental training (``partial_fit``): if it holds ``m1``, ``v`` and
    ``step`` from an earlier call they are the starting moments/velocity and
    step count; on return (also after an error) it holds the current ones,
    plus ``lr`` (the current SGD learning rate) and ``t`` (samples seen).
    A callback may lower ``state["lr"]``; it applies from the next epoch.

    A batch for which ``fun`` returns None (all its sample weights are zero)
    is skipped: no step is taken and it does not count in the epoch loss.
    ``n_threads`` is the thread count of the fused Adam update.

    ``lr_schedule`` (SGD only, as scikit-learn's ``learning_rate``):
    ``"constant"``; ``"invscaling"``: after each epoch ``lr = learning_rate /
    (t + 1) ** power_t`` with ``t`` the samples seen; ``"adaptive"``: when the
    epoch loss has not improved by ``tol`` for ``n_iter_no_change`` epochs,
    ``lr /= 5`` instead of stopping, while ``lr > 1e-6`` (then it stops).
    """
    if lr_schedule not in ("constant", "invscaling", "adaptive"):
        raise ValueError(
            "lr_schedule must be one of ('constant', 'invscaling', 'adaptive'); "
            f"got {lr_schedule!r}"
        )
    if not isinstance(power_t, (int, float, np.integer, np.floating)) or not (
        np.isfinite(power_t) and power_t >= 0
    ):
        raise ValueError(f"power_t must be a finite number >= 0; got {power_t!r}")
    if solver not in ("adam", "sgd"):
        raise ValueError(f"solver must be 'adam' or 'sgd'; got {solver!r}")
    max_iter = _max_iter(max_iter)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    lr = _positive("learning_rate", learning_rate)
    for name, val in (("beta_1", beta_1), ("beta_2", beta_2), ("momentum", momentum)):
        if not isinstance(val, (int, float, np.integer, np.floating)) or not (0 <= val < 1):
            raise ValueError(f"{name} must be in [0, 1); got {val}")
    _positive("epsilon", epsilon)
    if not isinstance(tol, (int, float, np.integer, np.floating)) or not tol >= 0:
        raise ValueError(f"tol must be >= 0; got {tol!r}")
    if (
        isinstance(n_iter_no_change, bool)
        or not isinstance(n_iter_no_change, (int, np.integer))
        or n_iter_no_change < 1
    ):
        raise ValueError(f"n_iter_no_change must be an int >= 1; got {n_iter_no_change!r}")
    gen = as_generator(rng)
    batch_size = min(int(batch_size), m)

    theta = theta0.copy()
    last_good = theta.copy()
    dtype = theta.dtype
    grad = np.empty_like(theta)
    tmp = np.empty_like(theta)
    m1 = np.zeros_like(theta)  # Adam first moment / SGD velocity
    v = np.zeros_like(theta)  # Adam second moment
    order = np.arange(m, dtype=np.int64)
    result = FitResult(theta=theta)
    best, stall, step = np.inf, 0, 0
    if state:  # resume a persistent optimizer state
        if state["m1"].shape != theta.shape or state["v"].shape != theta.shape:
            raise ValueError(
                f"state holds moments of shape {state['m1'].shape}; expected {theta.shape}"
            )
        m1[...], v[...], step = state["m1"], state["v"], int(state["step"])
    sched = state if state is not None else {}
    sched.setdefault("lr", lr)
    sched.setdefault("t", 0)

    try:
        for epoch in range(1, max_iter + 1):
            if solver == "sgd":
                lr = float(sched["lr"])
            if shuffle:
                gen.shuffle(order)
            total, n_used = 0.0, 0
            for start in range(0, m, batch_size):
                rows = order[start : start + batch_size]
                try:
                    J = fun(theta, rows, grad)
                except OverflowError as err:  # the core: pre-activations overflow the dtype
                    raise FloatingPointError(f"{err} at epoch {epoch}") from err
                result.n_evals += 1
                if J is None:  # a batch without weight: nothing to learn from
                    continue
                n_used += rows.size
                # the core raises (OverflowError, above) on a non-finite gradient
                if not np.isfinite(J):
                    _check_finite(J, grad, epoch)
                total += J * rows.size
                step += 1
                # an overflow here makes theta non-finite: reported just below
                with np.errstate(over="ignore", invalid="ignore"):
                    if solver == "adam":
                        # the formulas above in one fused pass of the core (NumPy took nine)
                        step_size = lr * np.sqrt(1 - beta_2**step) / (1 - beta_1**step)
                        finite = _adam_step(
                            theta, m1, v, grad, beta_1, beta_2, step_size, epsilon, n_threads
                        )
                    else:
                        m1 *= dtype.type(momentum)
                        np.multiply(grad, dtype.type(lr), out=tmp)
                        m1 -= tmp
                        if nesterov:
                            theta += momentum * m1 - tmp  # mu v - lr g
                        else:
                            theta += m1
                        finite = np.isfinite(theta).all()
                if not finite:
                    raise FloatingPointError(
                        f"non-finite parameters at epoch {epoch} (step {step}); "
                        "lower the learning rate or scale the inputs"
                    )
            if not np.isfinite(theta).all():
                raise FloatingPointError(f"non-finite parameters after epoch {epoch}")
            last_good[...] = theta
            sched["t"] = int(sched["t"]) + m
            if solver == "sgd" and lr_schedule == "invscaling":
                sched["lr"] = learning_rate / (sched["t"] + 1) ** power_t
            loss = total / n_used if n_used else 0.0
            result.loss_history.append(loss)
            result.n_iter = epoch
            if callback is not None and callback(IterationInfo(epoch, loss, theta)):
                result.stop_reason = "callback"
                break
            if tol > 0:
                if loss > best - tol:
                    stall += 1
                    if stall >= n_iter_no_change:
                        if solver == "sgd" and lr_schedule == "adaptive" and lr > 1e-6:
                            sched["lr"] = lr / 5  # scikit-learn's adaptive rate
                            stall = 0
                        else:
                            result.stop_reason = "converged"
                            break
                else:
                    stall = 0
                best = min(best, loss)
        else:
            result.stop_reason = "max_iter"
    except (FloatingPointError, KeyboardInterrupt) as err:
        result.theta = last_good
        result.stop_reason = type(err).__name__
        err.partial_result = result  # type: ignore[union-attr]  # last good parameters
        raise
    finally:
        if state is not None:
            state.update(m1=m1, v=v, step=step)  # lr and t are kept in it as they change
    return result

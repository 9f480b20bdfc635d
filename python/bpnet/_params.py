"""The parameter rules: one table, used by the estimators, ``Network`` and the
optimizers, the CLI and the distributed objective.

Each rule is a name, a check and what the value must be; :func:`check`
raises ``ValueError("<name> must be <expected>; got <value>")`` naming the
argument and the value received. A rule is referred to by its id (the key of
:data:`RULES`); a parameter whose name is not its rule's id says which rule it
follows (``check("momentum", v, "fraction")``).

Inside a fit (:func:`once_per_fit`), a rule that has passed for a value is not
checked again for that value: the estimator checks its parameters when the
fit starts, and ``Network.fit`` and the optimizer loops below it (which check
the same arguments when called on their own) do not repeat it.
"""

from __future__ import annotations

import contextvars
import functools
import math
import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ._runtime import MAX_THREADS

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_ALIASES",
    "DTYPES",
    "FULL_BATCH_SOLVERS",
    "LR_SCHEDULES",
    "MINIBATCH_SOLVERS",
    "OUTPUTS",
    "REGRESSION_LOSSES",
    "RULES",
    "SOLVERS",
    "UNITS",
    "Rule",
    "check",
    "check_activation",
    "check_dtype",
    "once_per_fit",
]

UNITS = ("sigmoid", "tanh", "relu", "identity")  # the hidden units the core computes
ACTIVATION_ALIASES = {"logistic": "sigmoid"}  # scikit-learn's name for a unit
ACTIVATIONS = UNITS + tuple(ACTIVATION_ALIASES)  # every accepted hidden activation name
OUTPUTS = ("sigmoid", "softmax", "identity", "poisson")  # output units (and their losses)
# a regressor's loss (scikit-learn's MLPRegressor names) -> the output unit computing it
REGRESSION_LOSSES = {"squared_error": "identity", "poisson": "poisson"}
DTYPES = ("float64", "float32")  # working precisions
FULL_BATCH_SOLVERS = ("lbfgs", "cg")
MINIBATCH_SOLVERS = ("adam", "sgd")
SOLVERS = FULL_BATCH_SOLVERS + MINIBATCH_SOLVERS
LR_SCHEDULES = ("constant", "invscaling", "adaptive")  # SGD's step-size schedules


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v: object) -> bool:
    """A real number that is not a bool (finite or not)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _finite(v: object) -> bool:
    return _is_real(v) and math.isfinite(float(v))  # type: ignore[arg-type]


def _threads(v: object) -> bool:
    return v is None or (_is_int(v) and (v == -1 or 1 <= v <= MAX_THREADS))  # type: ignore[operator]


def _random_state(v: object) -> bool:
    return (v is None or isinstance(v, (np.random.RandomState, np.random.Generator))
            or (_is_int(v) and 0 <= v < 2**32))  # type: ignore[operator]


def _timeout(v: object) -> bool:
    return v is None or (isinstance(v, str) and v == "auto") or (_finite(v) and v > 0)  # type: ignore[operator]


@dataclass(frozen=True)
class Rule:
    """One parameter rule: ``accepts(value)`` and what the value must be."""

    accepts: Callable[[Any], bool]
    expected: str


RULES: dict[str, Rule] = {
    "activation": Rule(lambda v: v in ACTIVATIONS, f"one of {ACTIVATIONS}"),
    "output": Rule(lambda v: v in OUTPUTS, f"one of {OUTPUTS}"),
    "solver": Rule(lambda v: v in SOLVERS, f"one of {SOLVERS}"),
    "loss": Rule(lambda v: isinstance(v, str) and v in REGRESSION_LOSSES,
                 f"one of {tuple(REGRESSION_LOSSES)}"),
    "full_batch_solver": Rule(lambda v: v in FULL_BATCH_SOLVERS, f"one of {FULL_BATCH_SOLVERS}"),
    "minibatch_solver": Rule(lambda v: v in MINIBATCH_SOLVERS,
                             " or ".join(map(repr, MINIBATCH_SOLVERS))),
    "lr_schedule": Rule(lambda v: v in LR_SCHEDULES, f"one of {LR_SCHEDULES}"),
    "non_negative": Rule(lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "positive": Rule(lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "fraction": Rule(lambda v: _finite(v) and 0 <= v < 1, "in [0, 1)"),
    "open_fraction": Rule(lambda v: _finite(v) and 0 < v < 1, "in (0, 1)"),
    "count": Rule(lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "retries": Rule(lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "seed": Rule(lambda v: _is_int(v) and 0 <= v < 2**32, "an int in [0, 2**32 - 1]"),
    "random_state": Rule(_random_state, "None, an int seed in [0, 2**32 - 1], a numpy.random."
                                        "RandomState or a numpy.random.Generator"),
    "batch_size": Rule(lambda v: (isinstance(v, str) and v == "auto") or (_is_int(v) and v >= 1),
                       "'auto' or an int >= 1"),
    "n_threads": Rule(_threads, f"None, -1 or an int in [1, {MAX_THREADS}]"),
    "timeout": Rule(_timeout, "'auto', None or a number > 0"),
    "flag": Rule(lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    "dtype": Rule(lambda v: _dtype_or_none(v) is not None, "'float64' or 'float32'"),
}
"""The rules by id. A parameter named like a rule id follows that rule."""

_checked: contextvars.ContextVar[set[tuple[str, type, Any]] | None] = contextvars.ContextVar(
    "bpnet_checked_params", default=None
)


def check(name: str, value: Any, rule: str | None = None) -> Any:
    """``value`` if it follows rule ``rule`` (default: the rule named ``name``).

    Raises
    ------
    ValueError
        ``"<name> must be <expected>; got <value!r>"``.
    """
    rid = name if rule is None else rule
    seen = _checked.get()
    key = None
    if seen is not None:
        try:
            key = (rid, type(value), value)
            if key in seen:
                return value
        except TypeError:  # unhashable: checked every time
            key = None
    r = RULES[rid]
    if not r.accepts(value):
        raise ValueError(f"{name} must be {r.expected}; got {value!r}")
    if seen is not None and key is not None:
        seen.add(key)
    return value


def _dtype_or_none(dtype: object) -> np.dtype | None:
    """float64 or float32 (native order) from any spelling NumPy accepts; None
    for anything else, ``None`` included (``numpy.dtype(None)`` is float64, but a
    missing value must not silently select double precision)."""
    if dtype is None or isinstance(dtype, (bool, np.bool_)):
        return None
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except (TypeError, ValueError):  # 'garbage': TypeError; some malformed specs: ValueError
        return None
    if dt.kind != "f" or dt.itemsize not in (4, 8):
        return None
    return np.dtype(np.float64 if dt.itemsize == 8 else np.float32)


def check_dtype(dtype: object, name: str = "dtype") -> np.dtype:
    """The working dtype, float64 or float32, from any spelling NumPy accepts
    ('float32', 'f4', numpy.float32, ...); ``None`` is rejected."""
    check(name, dtype, "dtype")
    dt = _dtype_or_none(dtype)
    assert dt is not None  # the rule passed
    return dt


def check_activation(activation: Any, name: str = "activation") -> str:
    """The hidden unit ``activation`` names, as the core's name: one of
    :data:`UNITS`; scikit-learn's ``"logistic"`` is ``"sigmoid"``."""
    check(name, activation, "activation")
    canonical: str = ACTIVATION_ALIASES.get(str(activation), str(activation))
    return canonical


def check_penalty(name: str, lam: Any, total_weight: float, dtype: np.dtype) -> float:
    """An L2 strength the solvers can use on ``total_weight`` samples (m, or the
    sum of the sample weights) in ``dtype``: the penalty's gradient
    ``(lam / m) * W`` is squared by the solvers (SciPy's line searches, Adam's
    second moment; SGD's steps grow with it), so ``lam / m`` must stay below
    ``sqrt(max(dtype))`` (1.3e154 in float64, 1.8e19 in float32).

    Raises
    ------
    ValueError
        Naming ``name``, the value and the largest value that fits.
    """
    strength = check_lam(lam, name)
    bound = float(np.sqrt(np.finfo(dtype).max))
    if strength / total_weight >= bound:
        raise ValueError(
            f"{name}={strength!r} is too large for {total_weight:g} samples in "
            f"{np.dtype(dtype).name}: "
            f"the L2 penalty's gradient ({name} / n_samples) * W would overflow when squared; "
            f"{name} must be below {bound * total_weight:.3g}"
        )
    return strength


def check_threads(n_threads: Any) -> int:
    """``n_threads`` checked, as -1 (OpenMP's limit) or an int >= 1."""
    check("n_threads", n_threads)
    return -1 if n_threads is None else int(n_threads)


def check_lam(lam: Any, name: str = "lam") -> float:
    """An L2 strength: a finite number >= 0, as a float."""
    check(name, lam, "non_negative")
    return float(lam)


@contextmanager
def _scope() -> Iterator[None]:
    """A fit's scope: the (rule, value) pairs checked inside it are remembered."""
    if _checked.get() is not None:  # inside a fit already: its checks count
        yield
        return
    token = _checked.set(set())
    try:
        yield
    finally:
        _checked.reset(token)


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def once_per_fit(fn: _Fn) -> _Fn:
    """Run ``fn`` as one fit: each rule is checked once per value inside it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _scope():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

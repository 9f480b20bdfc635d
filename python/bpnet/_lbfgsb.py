"""L-BFGS-B's driver loop around SciPy's compiled ``setulb``, without the copies of
``scipy.optimize.minimize``'s wrappers.

``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` wraps the objective in
``MemoizeJac`` and ``ScalarFunction``: per evaluation they copy ``x`` four times
(fresh arrays), compare it with the last one three times, and the loop copies the
gradient before every ``setulb`` call. On a wide network (16.8M parameters, 128 MiB
per vector: bench/bench_sparse_text.py) that is about as long as the core's cost
and gradient. This loop makes the same ``setulb`` calls with the same arguments in
the same order as SciPy's ``_minimize_lbfgsb`` (SciPy 1.15 and later, whose
``setulb`` is C), so its iterates, evaluations and stop have SciPy's bits
(tests/network/test_lbfgsb.py compares them); per evaluation it copies ``x`` once,
into a buffer of its own (the memo: an ``x`` equal to the last evaluated one is not
evaluated again, as in SciPy), and the objective writes its gradient straight into
the array ``setulb`` reads.

Where SciPy's ``setulb`` has another signature (SciPy before 1.15: Fortran),
:func:`available` is False and the callers use ``scipy.optimize.minimize``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["LbfgsbResult", "available", "minimize"]

# the C setulb of SciPy >= 1.15 (its docstring is the signature)
SIGNATURE = "setulb(m,x,l,u,nbd,f,g,factr,pgtol,wa,iwa,task,lsave,isave,dsave,maxls,ln_task)"
MAXCOR = 10  # SciPy's defaults: the corrections kept, line-search steps, ftol
MAXLS = 20
MAXFUN = 15000  # scipy.optimize.minimize's maxfun for L-BFGS-B
FTOL = 2.2204460492503131e-09
_CHUNK = 1 << 16  # the memo compares x in pieces: it stops at the first that differs

# task[0] of setulb, and SciPy's status words (_lbfgsb_py.status_messages)
FG, NEW_X, CONVERGENCE, STOP = 3, 1, 4, 5
_STATUS = {0: "START", 1: "NEW_X", 2: "RESTART", 3: "FG", 4: "CONVERGENCE", 5: "STOP",
           6: "WARNING", 7: "ERROR", 8: "ABNORMAL"}

# fg(x, g) -> f: the cost at x (float64, read-only), its gradient written into g
Evaluate = Callable[[np.ndarray, np.ndarray], float]
# callback(x, f) -> True to stop, after each iteration (x: the iterate, read-only)
Callback = Callable[[np.ndarray, float], bool]


def _setulb() -> Callable[..., object] | None:
    try:
        from scipy.optimize import _lbfgsb
    except ImportError:  # pragma: no cover - SciPy moved it
        return None
    setulb = getattr(_lbfgsb, "setulb", None)
    if setulb is None or (setulb.__doc__ or "").strip() != SIGNATURE:
        return None
    return setulb  # type: ignore[no-any-return]


def _messages() -> dict[int, str]:
    """SciPy's words for setulb's task[1] codes (as its result's ``message``)."""
    try:
        from scipy.optimize import _lbfgsb_py

        return dict(_lbfgsb_py.task_messages)
    except (ImportError, AttributeError):  # pragma: no cover - SciPy moved them
        return {}


def available() -> bool:
    """Whether this SciPy's ``setulb`` is the one this loop drives."""
    return _setulb() is not None


@dataclass
class LbfgsbResult:
    """The end of :func:`minimize`, as SciPy's ``OptimizeResult`` says it."""

    x: np.ndarray  # the last iterate (setulb's own array)
    fun: float
    nit: int
    nfev: int
    success: bool
    message: str


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """``np.array_equal(a, b)``, a piece at a time (no (P,) temporary; an x that moved
    differs in its first piece). The first values are compared first, as Python
    floats: an x that moved almost always differs there, and this call comes right
    after ``setulb`` and the core, with NumPy's machinery out of the cache
    (``np.array_equal`` took about 17 us per evaluation inside case E's fit, 3 us
    back to back)."""
    if a.size and a.item(0) != b.item(0):  # a NaN differs from everything, as in NumPy
        return False
    for i in range(0, a.size, _CHUNK):
        if not np.array_equal(a[i : i + _CHUNK], b[i : i + _CHUNK]):
            return False
    return True


def minimize(fg: Evaluate, x0: np.ndarray, *, maxiter: int, maxfun: int, gtol: float,
             callback: Callback) -> LbfgsbResult:
    """Unbounded L-BFGS-B from ``x0`` (float64), as
    ``scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", callback=...,
    options={"maxiter": maxiter, "maxfun": maxfun, "gtol": gtol})``.

    ``fg`` is called once per distinct ``x`` (the first at ``x0``); an exception from
    ``fg`` or ``callback`` ends the loop. Requires :func:`available`."""
    setulb = _setulb()
    if setulb is None:
        raise RuntimeError(f"scipy.optimize._lbfgsb.setulb is not {SIGNATURE}")
    m, n = MAXCOR, x0.size
    factr = FTOL / np.finfo(float).eps
    nbd = np.zeros(n, np.int32)  # no bounds: never written, so never resident
    low, up = np.zeros(n, np.float64), np.zeros(n, np.float64)
    x = np.array(x0, dtype=np.float64)  # setulb's iterate
    g = np.zeros(n, np.float64)  # the gradient at the last evaluated x
    seen = np.array(x)  # the last evaluated x (SciPy's memo)
    f = fg(seen, g)  # SciPy evaluates x0 before the loop
    nfev = 1
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m, np.float64)
    iwa = np.zeros(3 * n, np.int32)
    task, ln_task = np.zeros(2, np.int32), np.zeros(2, np.int32)
    lsave, isave, dsave = np.zeros(4, np.int32), np.zeros(44, np.int32), np.zeros(29)
    nit = 0
    f_arg: float | np.ndarray = np.array(0.0)  # SciPy passes array(0.0) until an evaluation
    while True:
        setulb(m, x, low, up, nbd, f_arg, g, factr, gtol, wa, iwa, task, lsave, isave, dsave,
               MAXLS, ln_task)
        if task[0] == FG:
            if not _same(x, seen):
                np.copyto(seen, x)
                f = fg(seen, g)
                nfev += 1
            f_arg = f
        elif task[0] == NEW_X:
            nit += 1
            if callback(x, float(f_arg)):
                task[0], task[1] = STOP, 505
            if nit >= maxiter:
                task[0], task[1] = STOP, 504
            elif nfev > maxfun:
                task[0], task[1] = STOP, 502
        else:
            break
    success = bool(task[0] == CONVERGENCE)
    message = f"{_STATUS.get(int(task[0]), '')}: {_messages().get(int(task[1]), '')}"
    return LbfgsbResult(x=x, fun=float(f_arg), nit=nit, nfev=nfev, success=success,
                        message=message)

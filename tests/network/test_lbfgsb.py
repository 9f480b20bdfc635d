"""bpnet._lbfgsb: L-BFGS-B's loop around SciPy's ``setulb`` has the bits of
``scipy.optimize.minimize`` (iterates, evaluations, stop, errors), the core writes
its gradient into the loop's own buffer, and the fallback where SciPy's ``setulb``
is another one."""

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

import bpnet
from bpnet import _lbfgsb
from bpnet.optimize import CoreObjective, minimize_full_batch

needs_c_setulb = pytest.mark.skipif(
    not _lbfgsb.available(), reason="this SciPy's setulb is not the C one (SciPy < 1.15)"
)


def _outcome(run):
    """What a full-batch fit gives: the result, or the exception and its partial result."""
    try:
        r = run()
    except (FloatingPointError, KeyboardInterrupt) as err:
        p = err.partial_result
        return (type(err).__name__, str(err), p.theta.tobytes(), p.n_iter, p.n_evals,
                p.loss_history)
    return (r.theta.tobytes(), r.theta.dtype, r.loss_history, r.n_iter, r.n_evals,
            r.stop_reason, r.initial_loss)


def _both(monkeypatch, fun, theta0, **kw):
    """The outcome through bpnet._lbfgsb, then through scipy.optimize.minimize."""
    ours = _outcome(lambda: minimize_full_batch(fun, theta0.copy(), **kw))
    with monkeypatch.context() as m:
        m.setattr(_lbfgsb, "available", lambda: False)
        theirs = _outcome(lambda: minimize_full_batch(fun, theta0.copy(), **kw))
    return ours, theirs


def _problem(dtype, sparse, core):
    rng = np.random.default_rng(3)
    if sparse:
        X = sp.random(90, 40, density=0.1, random_state=4, format="csr", dtype=dtype)
        sizes = [40, 6, 3]
    else:
        X = rng.normal(size=(90, 5)).astype(dtype)
        sizes = [5, 6, 3]
    y = rng.integers(0, 3, 90)
    kw = dict(activation="relu", output="softmax")
    theta0 = bpnet.random_theta(sizes, rng=1, dtype=dtype)
    if core:
        return CoreObjective(lambda t, out: bpnet.cost_grad(t, sizes, X, y, 0.2, out=out, **kw)), \
            theta0
    return (lambda t: bpnet.cost_grad(t, sizes, X, y, 0.2, **kw)), theta0


def _stop_at_3(info):
    return info.iteration == 3


def _stop_iteration_at_2(info):
    if info.iteration == 2:
        raise StopIteration  # SciPy's own way to halt


def _interrupt_at_4(info):
    if info.iteration == 4:
        raise KeyboardInterrupt


STOPS = {
    "max_iter": dict(max_iter=12, tol=1e-300),
    "converged": dict(max_iter=500, tol=1e-2),
    "max_fun": dict(max_iter=50, tol=1e-300, max_fun=5),
    "callback": dict(max_iter=50, tol=1e-300, callback=_stop_at_3),
    "interrupted": dict(max_iter=50, tol=1e-300, callback=_interrupt_at_4),
    "stop_iteration": dict(max_iter=50, tol=1e-300, callback=_stop_iteration_at_2),
}


@needs_c_setulb
@pytest.mark.parametrize("stop", list(STOPS))
@pytest.mark.parametrize("core", [True, False], ids=["core", "python"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_the_loop_has_scipys_bits(monkeypatch, dtype, sparse, core, stop):
    fun, theta0 = _problem(dtype, sparse, core)
    ours, theirs = _both(monkeypatch, fun, theta0, **STOPS[stop])
    assert ours == theirs
    if stop in ("max_iter", "converged", "max_fun", "callback"):
        assert ours[5] == stop  # the stop each case means to reach


@needs_c_setulb
def test_an_abnormal_line_search_ends_as_in_scipy(monkeypatch):
    """A gradient that points uphill: the line search fails (SciPy's ABNORMAL)."""

    def wrong(theta):
        return float(theta @ theta), -2 * theta

    ours, theirs = _both(monkeypatch, wrong, np.linspace(-1, 1, 7), max_iter=20)
    assert ours == theirs and ours[5].startswith("ABNORMAL")


@pytest.mark.parametrize("core", [True, False], ids=["core", "python"])
def test_a_diverged_line_search_names_the_non_finite_parameters(monkeypatch, core):
    """The core rejects a non-finite theta with a ValueError; the loop reports the
    same FloatingPointError as for a Python objective (which it scans itself)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4)) * 1e10
    Y = np.eye(2)[(X[:, 0] > 0).astype(int)] * 1e150
    sizes, kw = [4, 5, 2], dict(activation="relu", output="identity")
    if core:
        fun = CoreObjective(lambda t, out: bpnet.cost_grad(t, sizes, X, Y, 0.0, out=out, **kw))
    else:
        fun = lambda t: bpnet.cost_grad(t, sizes, X, Y, 0.0, **kw)  # noqa: E731
    theta0 = bpnet.random_theta(sizes, rng=0)
    ours, theirs = _both(monkeypatch, fun, theta0, max_iter=20)
    assert ours == theirs
    assert ours[0] == "FloatingPointError"
    assert ours[1].startswith("non-finite parameters (as float64) at iteration 1: the optimizer "
                              "diverged")


@needs_c_setulb
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_the_core_writes_every_gradient_into_one_buffer_that_no_result_holds(dtype):
    fun, theta0 = _problem(dtype, sparse=True, core=True)
    outs, infos = [], []

    def cost_grad(theta, out):
        outs.append(out)
        return fun.cost_grad(theta, out)

    res = minimize_full_batch(CoreObjective(cost_grad), theta0, max_iter=8, tol=1e-300,
                              callback=lambda info: infos.append(info.theta.copy()))
    assert len(outs) == res.n_evals > res.n_iter == 8
    assert outs[0] is not None and outs[0].dtype == dtype
    assert all(out is outs[0] for out in outs)  # no fresh gradient per evaluation
    assert not np.shares_memory(res.theta, outs[0])
    # the result is the last iterate the callback saw, unchanged by later evaluations
    np.testing.assert_array_equal(res.theta, infos[-1].astype(dtype))


def _pairs():
    """(a, b) pairs for the memo's comparison: equal, moved in the first value only,
    in the last only, in a later piece only, NaN and signed zeros, empty."""
    a = np.linspace(-1.0, 1.0, 2 * _lbfgsb._CHUNK + 3)
    out = {"equal": (a, a.copy()), "empty": (a[:0], a[:0].copy())}
    for name, i in (("first", 0), ("last", -1), ("second_piece", _lbfgsb._CHUNK + 1)):
        b = a.copy()
        b[i] = np.nextafter(b[i], 2.0)
        out[name] = (a, b)
    nan = a.copy()
    nan[0] = np.nan
    out["nan_both"] = (nan, nan.copy())
    nan_late = a.copy()
    nan_late[-1] = np.nan
    out["nan_late_both"] = (nan_late, nan_late.copy())
    zero = a.copy()
    zero[0] = 0.0
    negzero = zero.copy()
    negzero[0] = -0.0
    out["signed_zero"] = (zero, negzero)
    return out


@pytest.mark.parametrize("case", list(_pairs()))
def test_the_memo_compares_as_numpy_array_equal(case):
    """The memo's quick first-value test never changes its answer: a NaN is unequal
    to itself and -0.0 equals 0.0, anywhere in x, as in ``np.array_equal``."""
    a, b = _pairs()[case]
    assert _lbfgsb._same(a, b) == np.array_equal(a, b) == _lbfgsb._same(b, a)
    assert _lbfgsb._same(a, b) == (case in ("equal", "empty", "signed_zero"))


def test_the_memo_answers_a_moved_x_without_numpy(monkeypatch):
    """An x whose first value moved is told apart by that value alone: no call into
    NumPy's comparison, which costs several times more right after setulb and the
    core (bench/README.md, "The L-BFGS-B memo's comparison, cold")."""
    def refuse(*args, **kwargs):
        raise AssertionError("np.array_equal called")

    a, b = _pairs()["first"]
    monkeypatch.setattr(_lbfgsb.np, "array_equal", refuse)
    assert not _lbfgsb._same(a, b)


@needs_c_setulb
def test_setulb_never_writes_the_gradient(monkeypatch):
    """The loop hands setulb the gradient buffer itself (SciPy a copy): equal only if
    setulb leaves it as it is, which a memo hit relies on."""
    real = _lbfgsb._setulb()
    calls = []

    def checked(*args):
        g = args[6]
        before = g.tobytes()
        real(*args)
        calls.append(g.tobytes() == before)

    monkeypatch.setattr(_lbfgsb, "_setulb", lambda: checked)
    fun, theta0 = _problem(np.float64, sparse=False, core=True)
    minimize_full_batch(fun, theta0, max_iter=15, tol=1e-300)
    assert len(calls) > 15 and all(calls)


def test_another_setulb_falls_back_to_scipy_optimize_minimize(monkeypatch):
    real = scipy.optimize._lbfgsb.setulb

    def setulb(*args):
        return real(*args)

    setulb.__doc__ = "setulb(m,x,l,u,nbd,f,g,factr,pgtol,wa,iwa,task,iprint,csave,lsave,isave," \
                     "dsave,maxls,n=len(x))"  # SciPy < 1.15 (Fortran)
    monkeypatch.setattr(scipy.optimize._lbfgsb, "setulb", setulb)
    assert not _lbfgsb.available()
    with pytest.raises(RuntimeError, match="setulb is not setulb"):
        _lbfgsb.minimize(lambda x, g: 0.0, np.zeros(2), maxiter=1, maxfun=1, gtol=1e-5,
                         callback=lambda x, f: False)
    fun, theta0 = _problem(np.float64, sparse=False, core=True)
    res = minimize_full_batch(fun, theta0, max_iter=5, tol=1e-300)  # through SciPy's loop
    assert res.n_iter == 5 and res.stop_reason == "max_iter"


def test_a_network_fits_through_a_core_objective(monkeypatch):
    """Network.fit hands the optimizer a CoreObjective (the gradient in place)."""
    seen = []
    real = minimize_full_batch

    def spy(fun, theta0, **kw):
        seen.append(fun)
        return real(fun, theta0, **kw)

    monkeypatch.setattr(bpnet.network, "minimize_full_batch", spy)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    bpnet.Network([3, 4, 2], rng=0).fit(X, y, max_iter=3)
    assert len(seen) == 1 and isinstance(seen[0], CoreObjective)

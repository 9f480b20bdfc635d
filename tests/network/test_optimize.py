"""bpnet.optimize: the mini-batch ``state`` dict (keys per solver, resuming)."""

import numpy as np
import pytest

from bpnet.optimize import STATE_ARRAYS, minimize_minibatch


def _quadratic(theta, rows, grad):
    grad[...] = theta - 1.0
    return float(0.5 * np.sum((theta - 1.0) ** 2))


@pytest.mark.parametrize(
    "solver, keys",
    [("adam", {"moment1", "moment2", "step", "lr", "t"}), ("sgd", {"velocity", "step", "lr", "t"})],
)
def test_state_keys_per_solver(solver, keys):
    state = {}
    minimize_minibatch(_quadratic, np.zeros(3), 10, solver=solver, max_iter=2, batch_size=5,
                       tol=0, state=state, rng=0)
    assert set(state) == keys and set(STATE_ARRAYS[solver]) < keys
    assert state["step"] == 2 * 2 and state["t"] == 2 * 10


def test_resuming_continues_the_same_run():
    once, twice = {}, {}
    kw = dict(solver="adam", batch_size=5, tol=0, shuffle=False)
    full = minimize_minibatch(_quadratic, np.zeros(3), 10, max_iter=4, state=once, **kw)
    half = minimize_minibatch(_quadratic, np.zeros(3), 10, max_iter=2, state=twice, **kw)
    rest = minimize_minibatch(_quadratic, half.theta, 10, max_iter=2, state=twice, **kw)
    assert rest.theta.tobytes() == full.theta.tobytes()
    assert twice["moment1"].tobytes() == once["moment1"].tobytes()


@pytest.mark.parametrize("first, then", [("adam", "sgd"), ("sgd", "adam")])
def test_state_of_the_other_solver_is_refused(first, then):
    state = {}
    minimize_minibatch(_quadratic, np.zeros(3), 10, solver=first, max_iter=1, state=state)
    pattern = (rf"state holds .*{STATE_ARRAYS[first][0]}.*"
               rf"solver='{then}' resumes from .*{STATE_ARRAYS[then][0]}")
    with pytest.raises(ValueError, match=pattern):
        minimize_minibatch(_quadratic, np.zeros(3), 10, solver=then, max_iter=1, state=state)


def _linear(P, dtype):
    """fun(theta, rows, grad): a gradient that depends on theta and the batch (rows)."""
    A = np.random.default_rng(7).normal(size=P).astype(dtype)

    def fun(theta, rows, grad):
        np.multiply(theta, A, out=grad)
        grad += dtype(rows.size / 100.0)
        return float(np.sum(theta * theta))

    return fun


def _numpy_sgd_loop(fun, theta, m, max_iter, batch_size, lr, mu, nesterov, rng):
    """minimize_minibatch's SGD as its documented formulas, one NumPy operation at a time
    (the loop before the fused kernel): constant rate, shuffled batches."""
    theta, v, grad = theta.copy(), np.zeros_like(theta), np.empty_like(theta)
    order = np.arange(m, dtype=np.int64)
    for _ in range(max_iter):
        rng.shuffle(order)
        for start in range(0, m, batch_size):
            fun(theta, order[start : start + batch_size], grad)
            v *= theta.dtype.type(mu)
            lr_g = grad * theta.dtype.type(lr)
            v -= lr_g  # v = mu v - lr g
            theta += (mu * v - lr_g) if nesterov else v
    return theta, v


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("P", [3, 70_001])  # 70_001: the update's multi-threaded path
@pytest.mark.parametrize("n_threads", [1, 2])
def test_sgd_loop_equals_the_numpy_formulas_bitwise(dtype, nesterov, P, n_threads):
    fun = _linear(P, dtype)
    theta0 = np.random.default_rng(1).normal(size=P).astype(dtype)
    state = {}
    res = minimize_minibatch(fun, theta0, 50, solver="sgd", max_iter=3, batch_size=16,
                             learning_rate=0.01, momentum=0.8, nesterov=nesterov, tol=0,
                             rng=0, state=state, n_threads=n_threads)
    theta, v = _numpy_sgd_loop(fun, theta0, 50, 3, 16, 0.01, 0.8, nesterov,
                               np.random.default_rng(0))
    assert res.theta.tobytes() == theta.tobytes(), "theta"
    assert state["velocity"].tobytes() == v.tobytes(), "velocity"
    assert state["step"] == 3 * 4


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_numpy_scalar_hyperparameters_give_the_python_float_fit(solver):
    """A value from a NumPy grid (np.float64) or a float32 scalar is the Python float it
    holds: in a float32 fit, NumPy would otherwise promote the update to float64."""
    fun = _linear(1000, np.float32)
    theta0 = np.linspace(-1, 1, 1000, dtype=np.float32)
    kw = dict(solver=solver, max_iter=5, batch_size=2, tol=0, rng=0)
    scalars = dict(momentum=np.float64(0.9), beta_1=np.float32(0.9), beta_2=np.float64(0.999),
                   epsilon=np.float32(1e-8))
    plain = minimize_minibatch(fun, theta0, 20, **{k: float(v) for k, v in scalars.items()}, **kw)
    scalar = minimize_minibatch(fun, theta0, 20, **scalars, **kw)
    assert scalar.theta.dtype == np.float32
    assert scalar.theta.tobytes() == plain.theta.tobytes()


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_the_core_calls_are_bound_once_per_fit(monkeypatch, solver):
    """The thread count, workspace and build of a mini-batch fit are resolved once, not
    per step: as often for 100 batches as for 1."""
    import bpnet
    from bpnet import _runtime

    X = np.random.default_rng(0).normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    counts = []
    for batch_size in (200, 2):  # 1 and 100 steps per epoch
        seen = {"threads": 0, "workspace": 0}

        def count(fn, key, seen=seen):
            def wrapper(*a, **k):
                seen[key] += 1
                return fn(*a, **k)
            return wrapper

        with monkeypatch.context() as mp:
            mp.setattr(_runtime, "effective_threads", count(_runtime.effective_threads,
                                                            "threads"))
            mp.setattr(_runtime, "workspace", count(_runtime.workspace, "workspace"))
            net = bpnet.Network([3, 4, 2], output="softmax", rng=0)
            net.fit(X, y, solver=solver, max_iter=2, batch_size=batch_size, tol=0)
        counts.append(seen)
    # once for the cost and gradient, once for the update
    assert counts[0] == counts[1] == {"threads": 2, "workspace": 1}, counts


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_callback_gets_a_frozen_snapshot_per_epoch(solver):
    """The mini-batch loop hands a callback a read-only snapshot of each epoch's
    parameters and never writes it again, so a callback (the estimators' fit loop)
    may keep it without a copy; the fitted network's parameters stay writable."""
    import bpnet

    X = np.random.default_rng(1).normal(size=(120, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    kept = []

    def callback(info):
        assert not info.theta.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            info.theta[0] = 0.0
        kept.append((info.theta, info.theta.copy()))

    net = bpnet.Network([3, 5, 2], output="softmax", rng=0)
    net.fit(X, y, solver=solver, max_iter=4, batch_size=16, tol=0, callback=callback)
    assert len(kept) == 4
    for snap, copy in kept:  # none was written after its epoch
        np.testing.assert_array_equal(snap, copy)
    assert not np.array_equal(kept[0][1], kept[-1][1])
    np.testing.assert_array_equal(net.theta, kept[-1][1])
    assert net.theta.flags.writeable
    net.theta[0] += 0.0  # writable


def test_an_interrupted_fit_with_a_callback_keeps_a_writable_theta():
    import bpnet

    X = np.random.default_rng(2).normal(size=(80, 3))
    y = (X[:, 0] > 0).astype(int)
    seen = []

    def callback(info):
        seen.append(info.theta.copy())
        if info.iteration == 2:
            raise KeyboardInterrupt

    net = bpnet.Network([3, 4, 2], output="softmax", rng=0)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, solver="adam", max_iter=5, batch_size=8, tol=0, callback=callback)
    np.testing.assert_array_equal(net.theta, seen[-1])
    assert net.theta.flags.writeable


def test_early_stopped_estimator_keeps_writable_best_parameters():
    import bpnet

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] - X[:, 2] > 0).astype(int)
    clf = bpnet.BPNetClassifier((6,), solver="adam", early_stopping=True, max_iter=30,
                                n_iter_no_change=3, random_state=0).fit(X, y)
    assert clf.best_iteration_ is not None
    for a in clf.coefs_ + clf.intercepts_:
        assert a.flags.writeable
    assert clf.network_.theta.flags.writeable


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_overwrite_theta0_trains_in_its_buffer_with_the_same_bits(solver):
    import bpnet

    X = np.random.default_rng(4).normal(size=(90, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    net = bpnet.Network([3, 6, 2], output="softmax", rng=0)

    def fun(theta, rows, grad):
        return bpnet.cost_grad(theta, [3, 6, 2], X[rows], y[rows], 0.1, output="softmax",
                               out=grad)[0]

    kw = dict(solver=solver, max_iter=3, batch_size=16, tol=0, rng=1)
    theta0 = net.theta.copy()
    plain = minimize_minibatch(fun, theta0, 90, **kw)
    np.testing.assert_array_equal(theta0, net.theta)  # the default leaves theta0 alone
    own = net.theta.copy()
    over = minimize_minibatch(fun, own, 90, overwrite_theta0=True, **kw)
    assert np.shares_memory(over.theta, own)
    assert over.theta.tobytes() == plain.theta.tobytes()


def test_a_warm_start_never_writes_the_published_parameters():
    """The estimators train in their draft network's own buffer (overwrite_theta0):
    the parameters a caller holds from the previous fit do not move."""
    import bpnet

    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > X[:, 1]).astype(int)
    clf = bpnet.BPNetClassifier((5,), solver="adam", max_iter=3, tol=0, random_state=0)
    with pytest.warns(Warning):
        clf.fit(X, y)
    held = clf.coefs_ + clf.intercepts_ + [clf.network_.theta]
    before = [a.copy() for a in held]
    proba = clf.predict_proba(X)
    old_net = clf.network_
    with pytest.warns(Warning):
        clf.set_params(warm_start=True).fit(X, y)
        clf.partial_fit(X, y)
    for a, b in zip(held, before):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(clf.network_.theta, old_net.theta)
    np.testing.assert_array_equal(
        bpnet.forward(old_net.theta, old_net.layer_sizes, X, activation=old_net.activation,
                      output=old_net.output), proba)


@pytest.mark.parametrize("method", ["lbfgs", "cg"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_full_batch_overwrite_theta0_keeps_the_last_good_iterate_in_it(method, dtype):
    """With overwrite_theta0, theta0's buffer holds the last good iterate (float64):
    SciPy iterates on its own copy, so the fit's bits are those without it; an
    interrupted fit returns the same last good parameters either way."""
    import bpnet
    from bpnet.optimize import minimize_full_batch

    rng = np.random.default_rng(6)
    sizes = [4, 7, 3]
    X = rng.normal(size=(120, 4)).astype(dtype)
    y = rng.integers(0, 3, 120)

    def fun(theta):
        return bpnet.cost_grad(theta, sizes, X, y, 0.3, output="softmax")

    theta0 = bpnet.random_theta(sizes, rng=2, dtype=dtype)
    plain = minimize_full_batch(fun, theta0.copy(), method=method, max_iter=15, tol=1e-300)
    own = theta0.copy()
    over = minimize_full_batch(fun, own, method=method, max_iter=15, tol=1e-300,
                               overwrite_theta0=True)
    assert over.theta.tobytes() == plain.theta.tobytes()
    assert over.n_evals == plain.n_evals and over.loss_history == plain.loss_history
    if dtype == np.float64:  # the last iteration's parameters, in theta0's buffer
        np.testing.assert_array_equal(own, over.theta)

    def stop_at_5(info):
        if info.iteration == 5:
            raise KeyboardInterrupt

    results = []
    for overwrite in (False, True):
        with pytest.raises(KeyboardInterrupt) as err:
            minimize_full_batch(fun, theta0.copy(), method=method, max_iter=15, tol=1e-300,
                                callback=stop_at_5, overwrite_theta0=overwrite)
        results.append(err.value.partial_result.theta)
    assert results[0].tobytes() == results[1].tobytes()


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_one_batch_per_epoch_is_not_shuffled(solver):
    """With batch_size >= m the one batch of each epoch gets the rows in order whether
    shuffle is set or not, and rng is not drawn from (its order would change only the
    rounding of the batch's sums); with smaller batches each epoch draws a permutation."""
    m, seen = 12, []

    def fun(theta, rows, grad):
        seen.append(rows.copy())
        return _quadratic(theta, rows, grad)

    for batch_size in (m, m + 5):
        gen = np.random.default_rng(3)
        before = gen.bit_generator.state
        seen.clear()
        minimize_minibatch(fun, np.zeros(3), m, solver=solver, max_iter=3,
                           batch_size=batch_size, tol=0, shuffle=True, rng=gen)
        assert gen.bit_generator.state == before, "a full batch drew from rng"
        assert len(seen) == 3
        for rows in seen:
            np.testing.assert_array_equal(rows, np.arange(m))
    gen = np.random.default_rng(3)
    seen.clear()
    minimize_minibatch(fun, np.zeros(3), m, solver=solver, max_iter=2, batch_size=m - 1,
                       tol=0, shuffle=True, rng=gen)
    assert len(seen) == 4
    epoch_1 = np.concatenate(seen[:2])
    assert sorted(epoch_1) == list(range(m)) and not np.array_equal(epoch_1, np.arange(m))


def test_a_full_batch_fit_with_shuffle_equals_one_without():
    """Network.fit with one batch per epoch: shuffle=True and shuffle=False give the
    same bits (the rows in order, read in place by the core)."""
    import bpnet

    rng = np.random.default_rng(0)
    X, y = rng.random((300, 4)), rng.integers(0, 3, 300)
    fits = []
    for shuffle in (True, False):
        net = bpnet.Network([4, 6, 3], activation="tanh", output="softmax", rng=1)
        net.fit(X, y, solver="adam", batch_size=300, max_iter=20, tol=0, shuffle=shuffle, rng=2)
        fits.append(net.theta.tobytes())
    assert fits[0] == fits[1]

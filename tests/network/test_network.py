"""The Network object: what the optimizer loops see of it."""

import numpy as np
import pytest

import bpnet


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.ascontiguousarray(d.data / 16.0), d.target.astype(np.int64)


@pytest.mark.parametrize("weighted", [False, True])
def test_minibatch_costs_average_to_the_full_batch_cost(digits, weighted):
    """Every batch carries lam/(2m) of the whole set, so the size-weighted mean of
    the batch costs (the epoch loss) is the full-batch J at fixed theta."""
    X, y = digits
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(X)) if weighted else None
    net = bpnet.Network([64, 25, 10], lam=2.0, rng=0)
    J, _ = net.cost_grad(X, y, sample_weight=w)
    # the batch costs Network.fit computes, on a fixed split
    total = len(X) if w is None else w.sum()
    acc = 0.0
    for rows in np.array_split(np.arange(len(X), dtype=np.int64), 7):
        bw = rows.size if w is None else w[rows].sum()
        Jb, _ = net._cost_grad(net.theta, X, y, w, rows=rows, lam=net.lam * bw / total)
        acc += bw * Jb
    np.testing.assert_allclose(acc / total, J, rtol=1e-13)


def test_minibatch_fit_uses_the_full_batch_penalty(digits):
    """With one batch holding every row, adam's epoch loss is the full-batch J."""
    X, y = digits
    net = bpnet.Network([64, 25, 10], lam=5.0, rng=0)
    J0, _ = net.cost_grad(X, y)
    probe = bpnet.Network([64, 25, 10], lam=5.0, theta=net.theta)
    probe.fit(X, y, solver="sgd", max_iter=1, batch_size=len(X), learning_rate=1e-12,
              momentum=0.0, tol=0)
    assert probe.loss_history[0] == pytest.approx(J0, rel=1e-12)


def test_repr_and_views():
    net = bpnet.Network([4, 3, 2], lam=0.5, rng=1)
    assert repr(net) == (
        "Network(layer_sizes=[4, 3, 2], activation='sigmoid', output='sigmoid', lam=0.5, "
        "dtype=float64, P=23)"
    )
    t1, t2 = net.thetas
    assert t1.shape == (3, 5) and t2.shape == (2, 4)
    assert np.shares_memory(t1, net.theta)


def test_same_seed_same_network():
    a = bpnet.Network([5, 4, 3], rng=7)
    b = bpnet.Network([5, 4, 3], rng=7)
    c = bpnet.Network([5, 4, 3], rng=8)
    assert np.array_equal(a.theta, b.theta)
    assert not np.array_equal(a.theta, c.theta)


def test_identity_output_predicts_values():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    Y = X @ rng.normal(size=(3, 2))
    net = bpnet.Network([3, 8, 2], activation="tanh", output="identity", rng=0)
    net.fit(X, Y, solver="lbfgs", max_iter=300)
    pred = net.predict(X)
    assert pred.shape == (50, 2)
    assert np.mean((pred - Y) ** 2) < 0.05 * np.mean(Y**2)


def test_fit_check_finite_false_skips_only_the_scan():
    """check_finite=False skips the preparation's scan (for an X the caller
    checked): a clean X trains bitwise as with it; a NaN is then reported by the
    core's own check of the rows it reads, not by the scan."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    a = bpnet.Network([4, 3, 2], output="softmax", rng=1).fit(X, y, max_iter=5)
    b = bpnet.Network([4, 3, 2], output="softmax", rng=1).fit(X, y, max_iter=5,
                                                             check_finite=False)
    assert a.theta.tobytes() == b.theta.tobytes()
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"X contains a non-finite value \(as float64\)"):
        bpnet.Network([4, 3, 2], rng=1).fit(X, y, max_iter=1)
    with pytest.raises(ValueError, match=r"^X contains a non-finite value at row 3, column 1$"):
        bpnet.Network([4, 3, 2], rng=1).fit(X, y, max_iter=1, check_finite=False)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("call", ["cost_grad", "forward_cost"])
def test_per_call_entries_leave_the_nan_scan_to_the_core(call, dtype):
    """Network.cost_grad / forward_cost, called once per optimizer step, skip
    the O(m n) NumPy scan by default (as bpnet.cost_grad): a NaN in X is
    reported by the core with its row and column; check_finite=True scans first.
    Clean inputs give the same bits either way."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 5)).astype(dtype)
    y = rng.integers(0, 3, 40)
    net = bpnet.Network([5, 4, 3], output="softmax", dtype=dtype, rng=2, lam=0.5)
    fn = getattr(net, call)
    J0, a0 = fn(X, y)
    J1, a1 = fn(X, y, check_finite=True)
    assert J0 == J1 and a0.tobytes() == a1.tobytes()
    X[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"^X contains a non-finite value at row 7, column 2$"):
        fn(X, y)
    with pytest.raises(ValueError, match=r"X contains a non-finite value \(as float"):
        fn(X, y, check_finite=True)

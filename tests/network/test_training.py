"""End to end: train [64, 25, 10] on scikit-learn's 8x8 digits (X / 16, fixed
split random_state=0, fixed seeds) with every solver, and check held-out
accuracy, the loss history and the callback."""

from __future__ import annotations

import numpy as np
import oracle
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bpnet

SIZES = (64, 25, 10)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(d.data / 16.0, d.target, random_state=0)
    assert Xtr.shape == (1347, 64) and Xte.shape == (450, 64)
    return Xtr, Xte, ytr, yte


def accuracy(net, X, y):
    return float((net.predict(X) == y).mean())


def assert_loss_history(net, *, monotone):
    h = np.asarray(net.loss_history)
    assert len(h) == net.result.n_iter >= 5
    assert np.all(np.isfinite(h))
    assert h[-1] < 0.25 * h[0], f"loss went {h[0]} -> {h[-1]}"
    if monotone:  # line-search methods decrease J at every iteration
        assert np.all(np.diff(h) <= 1e-12 * h[0]), f"loss increased: {h}"
    else:  # mini-batch: epoch means may wobble, but the second half is lower than the first
        half = len(h) // 2
        assert h[half:].mean() < h[:half].mean()


@pytest.mark.parametrize("solver,max_iter", [("cg", 200), ("lbfgs", 200)])
def test_full_batch_digits(digits, solver, max_iter):
    Xtr, Xte, ytr, yte = digits
    net = bpnet.Network(SIZES, lam=1.0, rng=np.random.default_rng(0))
    theta0 = net.theta.copy()
    net.fit(Xtr, ytr, solver=solver, max_iter=max_iter)
    acc = accuracy(net, Xte, yte)
    assert acc >= 0.95, f"{solver}: held-out accuracy {acc}"
    assert accuracy(net, Xtr, ytr) >= acc
    assert net.result.stop_reason in ("converged", "max_iter")
    assert not np.array_equal(net.theta, theta0)
    assert_loss_history(net, monotone=True)
    # the last recorded loss is J at the final theta (the oracle agrees)
    J, _ = net.cost_grad(Xtr, ytr)
    assert_allclose(net.loss_history[-1], J, rtol=1e-10)
    assert_allclose(oracle.cost(net.theta, SIZES, Xtr, ytr, 1.0), J, rtol=1e-12)


# Bitwise reproducibility is checked with a relu hidden layer: a hidden sigmoid is
# not bit-reproducible on the AVX builds (test_core.py::test_sigmoid_bits_...).
def test_full_batch_is_reproducible(digits):
    Xtr, _, ytr, _ = digits
    kw = dict(lam=1.0, activation="relu", rng=3)
    a = bpnet.Network(SIZES, **kw).fit(Xtr, ytr, solver="cg", max_iter=30)
    b = bpnet.Network(SIZES, **kw).fit(Xtr, ytr, solver="cg", max_iter=30)
    assert_array_equal(a.theta, b.theta)
    assert a.loss_history == b.loss_history


@pytest.mark.parametrize("solver,options", [
    ("adam", dict(learning_rate=1e-2, batch_size=64)),
    ("sgd", dict(learning_rate=0.1, batch_size=64, momentum=0.9, nesterov=True)),
    ("sgd", dict(learning_rate=0.1, batch_size=64, momentum=0.9, nesterov=False)),
], ids=["adam", "sgd-nesterov", "sgd-momentum"])
def test_minibatch_digits(digits, solver, options):
    Xtr, Xte, ytr, yte = digits
    net = bpnet.Network(SIZES, output="softmax", rng=np.random.default_rng(0))
    net.fit(Xtr, ytr, solver=solver, max_iter=60, tol=0, **options)
    assert net.result.n_iter == 60 and net.result.stop_reason == "max_iter"
    acc = accuracy(net, Xte, yte)
    assert acc >= 0.94, f"{solver} {options}: held-out accuracy {acc}"
    assert_loss_history(net, monotone=False)
    # same seed, same shuffles, same weights (relu: see test_full_batch_is_reproducible)
    kw = dict(activation="relu", output="softmax")
    again = bpnet.Network(SIZES, **kw, rng=np.random.default_rng(0))
    again.fit(Xtr, ytr, solver=solver, max_iter=5, tol=0, **options)
    first = bpnet.Network(SIZES, **kw, rng=np.random.default_rng(0))
    first.fit(Xtr, ytr, solver=solver, max_iter=5, tol=0, **options)
    assert_array_equal(again.theta, first.theta)


@pytest.mark.parametrize("solver", ["cg", "lbfgs", "adam", "sgd"])
def test_callback_can_stop_a_fit(digits, solver):
    Xtr, _, ytr, _ = digits
    seen = []

    def callback(info):
        seen.append((info.iteration, info.loss, info.theta.copy()))
        return info.iteration == 4

    net = bpnet.Network(SIZES, lam=1.0, rng=1)
    net.fit(Xtr, ytr, solver=solver, max_iter=100, callback=callback)
    assert net.result.stop_reason == "callback"
    assert net.result.n_iter == 4
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    assert [s[1] for s in seen] == net.loss_history
    assert seen[-1][2].dtype == np.float64 and seen[-1][2].shape == net.theta.shape
    if solver in ("cg", "lbfgs"):
        # the callback saw the iterate whose loss it was given
        J, _ = bpnet.cost_grad(seen[-1][2], SIZES, Xtr, ytr, 1.0)
        assert_allclose(J, seen[-1][1], rtol=1e-12)
    # a callback returning None never stops the fit
    net2 = bpnet.Network(SIZES, lam=1.0, rng=1)
    net2.fit(Xtr, ytr, solver=solver, max_iter=6, tol=0 if solver in ("adam", "sgd") else None,
             callback=lambda info: None)
    assert net2.result.n_iter == 6


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_float32_training(digits, solver):
    Xtr, Xte, ytr, yte = digits
    net = bpnet.Network(SIZES, lam=1.0 if solver == "lbfgs" else 0.0, dtype=np.float32,
                        rng=np.random.default_rng(0),
                        output="sigmoid" if solver == "lbfgs" else "softmax")
    assert net.theta.dtype == np.float32
    options = dict(learning_rate=1e-2, batch_size=64, tol=0) if solver == "adam" else {}
    net.fit(Xtr, ytr, solver=solver, max_iter=150 if solver == "lbfgs" else 40, **options)
    assert net.theta.dtype == np.float32
    acc = accuracy(net, Xte, yte)
    assert acc >= 0.95, f"float32 {solver}: held-out accuracy {acc}"
    assert_loss_history(net, monotone=False)
    # float32 cost at the trained weights agrees with the float64 oracle to ~1e-5
    J32, g32 = net.cost_grad(Xtr, ytr)
    assert g32.dtype == np.float32
    X64 = Xtr.astype(np.float32).astype(np.float64)
    J64 = oracle.cost(net.theta.astype(np.float64), SIZES, X64, ytr, net.lam, output=net.output)
    assert_allclose(J32, J64, rtol=1e-5)

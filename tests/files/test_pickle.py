"""A Network pickles, deep-copies and crosses process boundaries (the core's
workspace is the calling thread's own, never part of the object); predictions
after a round trip are bitwise equal."""

from __future__ import annotations

import concurrent.futures
import copy
import multiprocessing
import pickle

import numpy as np
import pytest
from loadaware import generous

import bpnet


def _data(n_in=6, m=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n_in))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)
    return X, y


def _trained(dtype=np.float64, **kw):
    X, y = _data()
    net = bpnet.Network([6, 5, 3], output="softmax", lam=0.5, dtype=dtype, rng=3, **kw)
    net.fit(X, y, solver="lbfgs", max_iter=15)
    return net, X, y


def _assert_same_network(a, b, X):
    assert a is not b
    assert not np.shares_memory(a.theta, b.theta)
    assert a.theta.dtype == b.theta.dtype and a.theta.flags.c_contiguous
    assert a.theta.tobytes() == b.theta.tobytes()
    assert a.predict_proba(X).tobytes() == b.predict_proba(X).tobytes()
    assert np.array_equal(a.predict(X), b.predict(X))
    J_a, g_a = a.cost_grad(X, a.predict(X))
    J_b, g_b = b.cost_grad(X, a.predict(X))
    assert J_a == J_b and g_a.tobytes() == g_b.tobytes()
    assert a.loss_history == b.loss_history
    assert (a.layer_sizes, a.activation, a.output, a.lam, a.dtype, a.n_threads) == (
        b.layer_sizes, b.activation, b.output, b.lam, b.dtype, b.n_threads)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_round_trip_is_bitwise(dtype, protocol):
    net, X, _ = _trained(dtype)
    back = pickle.loads(pickle.dumps(net, protocol=protocol))
    _assert_same_network(net, back, X)
    assert back.result.n_iter == net.result.n_iter


def test_shallow_copy_has_its_own_theta():
    net, X, _ = _trained()
    dup = copy.copy(net)
    _assert_same_network(net, dup, X)  # theta is never shared


def test_deep_copy_is_independent_and_bitwise_equal():
    net, X, y = _trained(n_threads=1)
    dup = copy.deepcopy(net)
    _assert_same_network(net, dup, X)
    # the copy trains on its own: the original is untouched ...
    before = net.theta.copy()
    dup.fit(X, y, solver="adam", max_iter=3, batch_size=16)
    assert np.array_equal(net.theta, before)
    # ... and, with the same RNG state, exactly as the original would
    net.fit(X, y, solver="adam", max_iter=3, batch_size=16)
    assert net.theta.tobytes() == dup.theta.tobytes()


def test_unfitted_network_pickles():
    net = bpnet.Network([3, 2], rng=0)
    back = pickle.loads(pickle.dumps(net))
    X = np.ones((4, 3))
    assert back.result is None and back.loss_history == []
    assert back.predict_proba(X).tobytes() == net.predict_proba(X).tobytes()


def test_joblib_round_trip(tmp_path):
    joblib = pytest.importorskip("joblib")
    net, X, _ = _trained()
    joblib.dump(net, tmp_path / "net.joblib")
    _assert_same_network(net, joblib.load(tmp_path / "net.joblib"), X)


def _predict_in_child(net, X):
    return net.predict_proba(X)


def test_network_crosses_a_process_boundary():
    net, X, _ = _trained()
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no shared state at all
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        remote = pool.submit(_predict_in_child, net, X).result(timeout=generous(120))
    assert remote.tobytes() == net.predict_proba(X).tobytes()


def test_estimator_holding_a_network_deep_copies():
    pytest.importorskip("sklearn")
    X, y = _data()
    clf = bpnet.BPNetClassifier(5, max_iter=300, random_state=0).fit(X, y)
    dup = copy.deepcopy(clf)
    assert dup.predict_proba(X).tobytes() == clf.predict_proba(X).tobytes()


def test_pickle_keeps_the_last_fits_own_parameters():
    """A result whose theta differs from the network's (early stopping kept the
    best) travels as result_theta."""
    net, _, _ = _trained()
    net.result.theta = net.theta + 1.0
    back = pickle.loads(pickle.dumps(net))
    assert back.result.theta.tobytes() == net.result.theta.tobytes()
    assert back.theta.tobytes() == net.theta.tobytes()

"""The Python doors (issue 17): Network scores a held-out split in one core pass
over inputs prepared once, and the estimator builds a new Network (through its
constructor) rather than editing one behind it."""

from __future__ import annotations

import numpy as np
import pytest

import bpnet
from bpnet import network as bnet


def _data(m=120, n=5, K=3):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((m, n))
    return X, (np.abs(X[:, 0] * 2).astype(np.int64)) % K, rng.random(m)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_network_forward_cost_is_the_functional_one(dtype):
    X, y, w = _data()
    net = bpnet.Network([5, 4, 3], output="softmax", activation="tanh", lam=0.3, dtype=dtype,
                        rng=1)
    J, h = net.forward_cost(X, y, w)
    Xd = np.ascontiguousarray(X, dtype=dtype)
    J_ref, h_ref = bpnet.forward_cost(net.theta, net.layer_sizes, Xd, y, 0.3, activation="tanh",
                                      output="softmax", sample_weight=w.astype(dtype))
    assert J == J_ref and h.tobytes() == h_ref.tobytes()
    assert h.tobytes() == net.predict_proba(X).tobytes()


def test_split_scorer_prepares_once_and_scores_any_theta(monkeypatch):
    X, y, _ = _data()
    net = bpnet.Network([5, 4, 3], output="softmax", rng=1)
    calls = []
    real = bnet.prepare_X
    monkeypatch.setattr(bnet, "prepare_X", lambda *a, **k: calls.append(1) or real(*a, **k))
    score = net.split_scorer(X, y, lam=0.5)
    thetas = [net.theta, net.theta * 0.5, net.theta + 0.1]
    got = [score(t) for t in thetas]
    assert len(calls) == 1  # the split was prepared once, not per call
    for t, (J, h) in zip(thetas, got):
        J_ref, h_ref = bpnet.forward_cost(t, net.layer_sizes, X, y, 0.5, activation="sigmoid",
                                          output="softmax")
        assert J == J_ref and h.tobytes() == h_ref.tobytes()


def test_early_stopping_prepares_the_validation_split_once(monkeypatch):
    pytest.importorskip("sklearn")
    X, y, _ = _data(200)
    calls = []
    real = bnet.prepare_X
    monkeypatch.setattr(bnet, "prepare_X", lambda *a, **k: calls.append(1) or real(*a, **k))
    clf = bpnet.BPNetClassifier(4, solver="adam", max_iter=12, early_stopping=True,
                                n_iter_no_change=50, random_state=0, learning_rate_init=1e-2)
    clf.fit(X, y)  # early stopping: no ConvergenceWarning
    assert len(clf.validation_scores_) == clf.n_iter_ == 12
    assert len(calls) == 2  # the training rows and the validation rows, once each


def test_a_warm_start_builds_a_new_network_through_its_constructor(monkeypatch):
    pytest.importorskip("sklearn")
    X, y, _ = _data()
    clf = bpnet.BPNetClassifier(4, solver="lbfgs", max_iter=5, random_state=0, alpha=1e-4)
    with pytest.warns():
        clf.fit(X, y)
    first, theta = clf.network_, clf.network_.theta.copy()
    built = []
    real_init = bpnet.Network.__init__

    def counting_init(self, *args, **kwargs):
        built.append(kwargs)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(bpnet.Network, "__init__", counting_init)
    clf.set_params(warm_start=True, alpha=0.5, activation="tanh", n_threads=1, max_iter=1)
    with pytest.warns():
        clf.fit(X, y)
    assert clf.network_ is not first and len(built) == 1
    assert built[0]["theta"] is first.theta and built[0]["rng"] is first.rng
    net = clf.network_
    assert (net.lam, net.activation, net.n_threads) == (0.5, "tanh", 1)
    assert first.lam == 1e-4 and first.activation == "sigmoid"  # the old one was not edited
    assert not np.array_equal(net.theta, theta)  # it trained on from the old weights

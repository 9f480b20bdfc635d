"""Full-batch fits run BLAS on one thread (bpnet._blas) and restore it after."""

from __future__ import annotations

import threading

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

import bpnet  # noqa: E402


def blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]


def problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((300, 6))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    return X, y


@pytest.fixture
def two_blas_threads():
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        if not blas_threads() or max(blas_threads()) < 2:
            pytest.skip("the BLAS here runs on one thread anyway")
        yield


@pytest.mark.parametrize("solver", ["lbfgs", "cg"])
def test_blas_is_single_threaded_during_a_full_batch_fit_and_restored(two_blas_threads, solver):
    X, y = problem()
    seen = []

    def cb(info):
        seen.append(max(blas_threads()))

    net = bpnet.Network([6, 5, 2], output="softmax", rng=0)
    net.fit(X, y, solver=solver, max_iter=5, callback=cb)
    assert seen and set(seen) == {1}, seen
    assert max(blas_threads()) == 2


def test_concurrent_fits_restore_blas_when_the_last_one_ends(two_blas_threads):
    X, y = problem()
    ref = bpnet.Network([6, 5, 2], output="softmax", rng=0)
    ref.fit(X, y, max_iter=30)
    nets = [bpnet.Network([6, 5, 2], output="softmax", rng=0) for _ in range(3)]
    threads = [threading.Thread(target=n.fit, args=(X, y), kwargs={"max_iter": 30}) for n in nets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(blas_threads()) == 2
    for n in nets:  # and the concurrent fits give the serial bits
        np.testing.assert_array_equal(n.theta, ref.theta)


def test_large_networks_keep_blas_threads(two_blas_threads, monkeypatch):
    from bpnet import _blas

    monkeypatch.setattr(_blas, "MAX_PARAMS", 40)  # the [6, 5, 2] net has 47
    X, y = problem()
    seen = []
    bpnet.Network([6, 5, 2], output="softmax", rng=0).fit(
        X, y, max_iter=3, callback=lambda info: seen.append(max(blas_threads())))
    assert seen and set(seen) == {2}


def test_keep_leaves_blas_alone(two_blas_threads, monkeypatch):
    monkeypatch.setenv("BPNET_BLAS_THREADS", "keep")
    X, y = problem()
    seen = []
    bpnet.Network([6, 5, 2], output="softmax", rng=0).fit(
        X, y, max_iter=3, callback=lambda info: seen.append(max(blas_threads())))
    assert seen and set(seen) == {2}

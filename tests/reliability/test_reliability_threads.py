"""Determinism, concurrency, Ctrl-C, memory and numerical robustness.

No timed assertions here (timing lives in bench/concurrency.py); these tests
assert correctness only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from loadaware import generous

import bpnet
from bpnet import _native

SIZES = (20, 16, 4)
ISAS = _native.available()
CHILDREN = Path(__file__).resolve().parent / "children"  # the Ctrl-C and memory children


@pytest.fixture
def baseline_core():
    """The active build (the name is historical: these tests once had to pin the
    baseline build, before the core's workspace was 64-byte aligned)."""
    return _native.core


@pytest.mark.parametrize(
    "isa",
    [
        pytest.param(isa) for isa in ISAS
    ],
)
def test_core_bits_do_not_depend_on_workspace_or_thread_count(isa):
    core = _native.load(isa)
    X, y = _data()
    theta = bpnet.random_theta(SIZES, 0)
    workspaces = [core.Workspace() for _ in range(16)]  # alive at once: distinct addresses
    seen = set()
    for ws in workspaces:
        for n_threads in (1, 2, 4):
            J, g = core.cost_grad(
                theta, SIZES, X, y, 0.5, "sigmoid", "sigmoid", None, None, None, n_threads, ws
            )
            h = core.forward(theta, SIZES, X, "tanh", "softmax", None, None, n_threads, ws)
            seen.add((J, g.tobytes(), h.tobytes()))
    assert len(seen) == 1, f"{len(seen)} different results from 16 workspaces x 3 thread counts"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_final_gradient_pass_split_over_threads_gives_the_same_bits(dtype):
    """From 32,768 parameters the core splits the final pass over the gradient
    (merges, 1/m scaling, penalty) over its threads: the same bits as one
    thread, and a non-finite gradient value is still reported."""
    sizes = (300, 120, 10)
    assert bpnet.n_params(sizes) >= 32_768
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2000, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], 2000)
    theta = bpnet.random_theta(sizes, 0).astype(dtype)
    J1, g1 = bpnet.cost_grad(theta, sizes, X, y, lam=0.5, n_threads=1)
    for n_threads in (2, 4):
        J, g = bpnet.cost_grad(theta, sizes, X, y, lam=0.5, n_threads=n_threads)
        assert J == J1 and g.tobytes() == g1.tobytes()
    if dtype == np.float32:  # J (summed in double) stays finite, one gradient value does not
        big = theta.copy()
        big[-1] = np.finfo(dtype).max  # (lam / m) theta = 1.7e39 > float32's max
        with pytest.raises(OverflowError):
            bpnet.cost_grad(big, sizes, X, y, lam=1e4, n_threads=2)


@pytest.mark.parametrize("isa", ISAS)
def test_calls_rejected_after_waking_the_pool_leave_it_working(isa):
    """cost_grad wakes its pool threads before it checks its inputs: a call that
    then fails (a non-finite theta, a label out of range) leaves woken threads polling for
    a job that never comes. The next calls, at once and after the threads have
    gone back to sleep, still run on the pool and give the same bits."""
    core = _native.load(isa)
    X, y = _data(m=4000)
    theta = bpnet.random_theta(SIZES, 0)
    ws = core.Workspace()

    def call():
        return core.cost_grad(theta, SIZES, X, y, 0.5, "sigmoid", "softmax", None, None, None,
                              2, ws)

    J0, g0 = call()
    bad_theta = theta.copy()
    bad_theta[7] = np.nan
    bad_y = y.copy()
    bad_y[3] = SIZES[-1]
    for _ in range(20):
        with pytest.raises(ValueError, match=r"theta contains a non-finite value at index 7"):
            core.cost_grad(bad_theta, SIZES, X, y, 0.5, "sigmoid", "softmax", None, None, None,
                           2, ws)
        with pytest.raises(ValueError, match=r"y\[3\] = 4 is not a class index"):
            core.cost_grad(theta, SIZES, X, bad_y, 0.5, "sigmoid", "softmax", None, None, None,
                           2, ws)
        J, g = call()  # right after: the woken threads may still be polling
        assert J == J0 and g.tobytes() == g0.tobytes()
    threading.Event().wait(0.01)  # longer than the 100 us poll: they sleep again
    J, g = call()
    assert J == J0 and g.tobytes() == g0.tobytes()


def _data(m=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, SIZES[0]))
    y = (np.abs(X[:, :4]).argmax(axis=1)).astype(np.int64)
    return X, y


def _fit(solver, n_threads, dtype=np.float64, seed=3):
    X, y = _data()
    kw = dict(learning_rate=0.01, batch_size=64, tol=0.0) if solver == "adam" else {}
    n = bpnet.Network(SIZES, lam=0.5, rng=seed, dtype=dtype, n_threads=n_threads)
    n.fit(X, y, solver=solver, max_iter=15, **kw)
    return n, n.predict_proba(X), n.predict(X)


# --- determinism ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", ["lbfgs", "cg", "adam"])
def test_same_seed_same_bits_for_any_thread_count(solver, dtype, baseline_core):
    ref, proba_ref, pred_ref = _fit(solver, 1, dtype)
    assert np.isfinite(ref.theta).all() and len(ref.loss_history) > 1
    for n_threads in (1, 2, 4, None):  # None: all cores
        net, proba, pred = _fit(solver, n_threads, dtype)
        np.testing.assert_array_equal(net.theta, ref.theta, err_msg=f"theta, {n_threads} threads")
        np.testing.assert_array_equal(proba, proba_ref, err_msg=f"proba, {n_threads} threads")
        np.testing.assert_array_equal(pred, pred_ref)
        assert net.loss_history == ref.loss_history


def test_different_seeds_differ():
    a, _, _ = _fit("adam", 1, seed=1)
    b, _, _ = _fit("adam", 1, seed=2)
    assert not np.array_equal(a.theta, b.theta)


# --- concurrency ----------------------------------------------------------------------
def test_python_threads_training_separate_models_match_serial(baseline_core):
    """The GIL is released in the core and nothing global is shared: four
    threads each training their own model give the serial results, bit for bit."""
    jobs = [("lbfgs", 0), ("adam", 1), ("cg", 2), ("sgd", 3)]
    X, y = _data()

    def train(solver, seed):
        kw = dict(learning_rate=0.01, batch_size=64, tol=0.0) if solver in ("adam", "sgd") else {}
        n = bpnet.Network(SIZES, rng=seed, n_threads=1)
        return n.fit(X, y, solver=solver, max_iter=10, **kw).theta

    serial = [train(*j) for j in jobs]
    results = [None] * len(jobs)
    errors = []

    def run(i):
        try:
            results[i] = train(*jobs[i])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (solver, _), s, r in zip(jobs, serial, results):
        np.testing.assert_array_equal(r, s, err_msg=solver)


def test_functional_api_from_many_threads_at_once(baseline_core):
    """One workspace per thread: concurrent calls never collide or race."""
    X, y = _data()
    theta = bpnet.random_theta(SIZES, 0)
    J_ref, g_ref = bpnet.cost_grad(theta, SIZES, X, y, 1.0)
    bad = []

    def run():
        for _ in range(20):
            J, g = bpnet.cost_grad(theta, SIZES, X, y, 1.0)
            if J != J_ref or not np.array_equal(g, g_ref):
                bad.append(J)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_a_shared_workspace_is_refused_not_raced():
    """Two threads on the same core Workspace: one gets a clear error, never a data race."""
    from bpnet._native import core

    rng = np.random.default_rng(0)
    sizes = (200, 200, 10)
    X = rng.standard_normal((4000, 200))
    y = rng.integers(0, 10, 4000)
    theta = bpnet.random_theta(sizes, 0)
    ws = core.Workspace()
    errors, done = [], []

    def run():
        try:
            for _ in range(5):
                core.cost_grad(
                    theta, sizes, X, y, 0.0, "sigmoid", "sigmoid", None, None, None, 1, ws
                )
            done.append(1)
        except ValueError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all("workspace is in use" in e for e in errors)
    assert len(errors) + len(done) == 3


# --- Ctrl-C -------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_sigint_during_fit_returns_quickly_with_last_good_parameters(solver):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, str(CHILDREN / "threads_sigint_fit.py"), solver],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", (line, proc.stderr.read())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=generous(30))  # a hang guard (100000 iterations)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["outcome"] == "interrupted"
    assert report["stop_reason"] == "KeyboardInterrupt"
    assert report["finite"] and report["moved"] and report["cost_finite"]
    assert report["n_iter"] >= 3 and report["history"] >= 3
    # control came back within the iteration the signal arrived in (counted in
    # iterations, not seconds: the test must hold with every CPU busy; the
    # wall-clock latency is a benchmark, bench/latency.py)
    assert report["at_signal"] is not None and report["at_signal"] >= 3, report
    assert report["n_iter"] <= report["at_signal"] + 1, report


# --- memory -------------------------------------------------------------------------
@pytest.mark.slow
def test_memory_is_flat_over_long_training():
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, str(CHILDREN / "threads_memory.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    ).stdout
    marks = json.loads(out.strip().splitlines()[-1])
    print("RSS:", {k: f"{v / 2**20:.1f} MiB" for k, v in marks.items()})
    assert marks["2000"] <= marks["100"] * 1.03 + 2**20, marks
    assert marks["cost_grad 2000"] <= marks["cost_grad 100"] * 1.03 + 2**20, marks


# --- numerical robustness -------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("z", [50.0, 500.0, 1e4, -50.0, -500.0, -1e4])
def test_saturated_sigmoid_output_is_finite_and_exact(dtype, z):
    """A 1-1 net: theta = [b, w], x = 1, so z = b + w; J = softplus(z) - y z exactly."""
    theta = np.array([z / 2, z / 2], dtype=dtype)
    X = np.ones((2, 1), dtype=dtype)
    y = np.array([0, 0], dtype=np.int64)  # one output: class 0 means target 1 for unit 0
    J, g = bpnet.cost_grad(theta, (1, 1), X, y)
    softplus = max(-z, 0.0) + np.log1p(np.exp(-abs(z)))  # -log sigmoid(z), y = 1
    h = 1 / (1 + np.exp(-z)) if z >= 0 else np.exp(z) / (1 + np.exp(z))
    assert np.isfinite(J) and np.isfinite(g).all()
    np.testing.assert_allclose(
        J, softplus, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-15 * abs(z)
    )
    np.testing.assert_allclose(g, [h - 1, h - 1], rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("scale", [50.0, 500.0, 1e4])
def test_saturated_hidden_and_output_units_stay_finite(dtype, output, scale):
    rng = np.random.default_rng(0)
    sizes = (5, 8, 3)
    theta = (rng.standard_normal(bpnet.n_params(sizes)) * scale).astype(dtype)
    X = rng.standard_normal((40, 5)).astype(dtype)
    y = rng.integers(0, 3, 40)
    J, g = bpnet.cost_grad(theta, sizes, X, y, 1.0, output=output)
    assert np.isfinite(J) and np.isfinite(g).all()
    h = bpnet.forward(theta, sizes, X, output=output)
    assert np.isfinite(h).all() and (h >= 0).all() and (h <= 1).all()
    # float32 agrees with the same problem in float64 (the hidden layer is saturated
    # at 0/1 in both, the loss is computed stably from the logits)
    if dtype == np.float32:
        J64, _ = bpnet.cost_grad(
            theta.astype(np.float64), sizes, X.astype(np.float64), y, 1.0, output=output
        )
        np.testing.assert_allclose(J, J64, rtol=1e-3)


@pytest.mark.parametrize("solver", ["sgd"])
def test_divergence_stops_with_an_error_naming_the_iteration(solver):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    y = (X[:, 0] > 0).astype(np.int64)
    net = bpnet.Network((5, 8, 2), rng=0, activation="relu", output="identity", dtype=np.float32)
    Y = np.eye(2)[y] * 1e30  # targets far beyond float32's comfort
    kw = {"learning_rate": 1e30} if solver != "lbfgs" else {}
    with pytest.raises(FloatingPointError, match=r"(iteration|epoch) \d+"):
        net.fit(X, Y, solver=solver, max_iter=50, **kw)
    assert np.isfinite(net.theta).all()
    assert net.result is not None and net.result.stop_reason == "FloatingPointError"


def test_overflowing_preactivations_during_fit_keep_the_last_good_theta():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    y = (X[:, 0] > 0).astype(np.int64)
    net = bpnet.Network((5, 8, 2), rng=0, activation="relu", dtype=np.float32)
    for solver in ("sgd", "adam"):
        with pytest.raises(FloatingPointError, match=r"non-finite pre-activation.*epoch \d+"):
            net.fit(X, y, solver=solver, learning_rate=1e30, max_iter=50)
    assert np.isfinite(net.theta).all()
    # finite, though possibly huge: the last epoch's end, before the step that overflowed


def test_saturated_sigmoid_loss_keeps_relative_accuracy():
    J, _ = bpnet.cost_grad(np.array([25.0, 25.0]), (1, 1), np.ones((1, 1)), np.array([0]))
    np.testing.assert_allclose(J, np.log1p(np.exp(-50.0)), rtol=1e-12)

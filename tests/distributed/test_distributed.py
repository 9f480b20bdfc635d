"""Distributed full-batch training on real Dask LocalClusters of worker processes.

What is proved here:
- the distributed cost and gradient equal single-process ``cost_grad`` bitwise,
  and so do CG and L-BFGS-B trajectories for a fixed number of iterations,
  on 1, 2, 3, 8 and 12 single-threaded workers (m = 2000 makes C = 16 leaves);
- every worker holds a shard (up to C workers; beyond, the extra ones idle
  with a warning);
- the leaves are reduced on the workers: the driver gathers one gradient of P
  values per step, whatever the number of workers;
- a killed worker and a stopped (SIGSTOP) worker are survived with the same
  bits, or, with ``max_retries=0``, the fit stops with ``WorkerLostError`` and
  the last good parameters;
- a training set on disk (zarr) larger than one worker's ``memory_limit``
  trains, bitwise equal to one process (slow);
- a killed scheduler and a closed client stop the fit with ``WorkerLostError``
  and the last good parameters (within ``scheduler_timeout``); a shard over a
  worker's memory limit, and unknown dask chunk sizes, are refused naming the
  fix; an estimator with ``client=`` pickles, deep-copies and clones;
- workers whose default core builds differ fit on one build, bitwise equal to
  one process on that build.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from loadaware import generous

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import bpnet  # noqa: E402
from bpnet import _native  # noqa: E402
from bpnet import distributed as bdist  # noqa: E402
from bpnet import functional as F  # noqa: E402
from bpnet.optimize import StepFailed  # noqa: E402

SIZES = (20, 8, 5)
M = 2000  # C = 16 leaves of 125 rows: 8 per worker on 2 workers


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def keep_environment():
    """Dask's Nanny writes its pre-spawn settings (OMP_NUM_THREADS=1 among them)
    into this process's os.environ before it starts a worker; every later child
    of the test run would inherit them. Restored when the module ends."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def baseline_core():
    """The driver's core: the default build (the fixture name predates the
    core's alignment fix, when the baseline build had to be pinned)."""
    return _native.core


@pytest.fixture(scope="module")
def cluster(baseline_core):
    """A real LocalCluster: 2 worker processes, 1 thread each, default core."""
    cl = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=50,  # CRITICAL only: the worker-kill tests log expected errors
    )
    try:
        yield cl
    finally:
        cl.close()


@pytest.fixture
def client(cluster):
    """A client on the module's cluster, with both workers up (a killed one is restarted)."""
    with distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(20240611)
    X = rng.standard_normal((M, SIZES[0]))
    y = rng.integers(0, SIZES[-1], M)
    Y = (rng.random((M, SIZES[-1])) < 0.3).astype(np.float64)
    w = rng.random(M) * 2
    return X, y, Y, w


def theta0(dtype=np.float64) -> np.ndarray:
    return bpnet.random_theta(SIZES, np.random.default_rng(7), dtype=dtype)


def local_cost_grad(theta, X, y, lam, output="sigmoid", w=None, activation="sigmoid"):
    core = _native.core
    return core.cost_grad(
        theta, SIZES, X, y, lam, activation, output, w, None, None, -1, core.Workspace()
    )


# ---------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------
def test_shards_live_on_both_workers(client, data):
    X, y, _, _ = data
    with bdist.DistributedObjective(client, SIZES, X, y, timeout=60) as obj:
        C = obj.n_chunks
        assert C == len(bpnet._native.core.leaf_starts(X.shape[0])) - 1 > 2
        holders = obj.who_has()
        assert [s.chunk_ids for s in obj.shards] == [
            tuple(range(C // 2)), tuple(range(C // 2, C))]
        workers = set(client.scheduler_info()["workers"])
        assert len(workers) == 2
        assert {h for hs in holders.values() for h in hs} == workers, holders
        # each shard on exactly one worker, as recorded
        for s in obj.shards:
            assert holders[s.index] == (s.worker,)
        # the scheduler agrees: every worker holds one settled shard
        has_what = client.has_what()
        keys = {s.future.key for s in obj.shards}
        assert sorted(len(keys & set(v)) for v in has_what.values()) == [1, 1]
        # no copy sent per step: evaluating does not add keys for the data
        obj(theta0())
        assert obj.who_has() == holders
    assert obj.shards[0].future is None  # released on exit


# ---------------------------------------------------------------------------
# Bitwise equality of one evaluation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [0.0, 1.5], ids=["lam0", "lam1.5"])
@pytest.mark.parametrize(
    "case", ["labels", "softmax", "matrix", "weighted", "float32", "tanh"]
)
def test_cost_grad_bitwise(client, data, lam, case):
    X, y, Y, w = data
    dtype = np.float32 if case == "float32" else np.float64
    output = "softmax" if case == "softmax" else "sigmoid"
    activation = "tanh" if case == "tanh" else "sigmoid"
    target = Y if case == "matrix" else y
    weight = w if case == "weighted" else None
    Xc = np.ascontiguousarray(X, dtype=dtype)
    th = theta0(dtype)
    with bdist.DistributedObjective(
        client, SIZES, Xc, target, None if weight is None else weight.astype(dtype), lam=lam,
        activation=activation, output=output, dtype=dtype, timeout=60,
    ) as obj:
        J_d, g_d = obj(th)
    J_s, g_s = local_cost_grad(
        th, Xc, target, lam, output, None if weight is None else weight.astype(dtype), activation
    )
    assert g_d.dtype == dtype
    assert J_d == J_s, f"J: {J_d!r} != {J_s!r}"
    for layer, (a, b) in enumerate(zip(F.roll(g_d, SIZES), F.roll(g_s, SIZES))):
        np.testing.assert_array_equal(a, b, err_msg=f"dTheta[{layer}]")


def test_dask_array_source_bitwise(client, data):
    """Dask arrays with chunks unrelated to bpnet's are re-cut into whole chunks."""
    X, y, _, w = data
    Xd = da.from_array(X, chunks=(333, SIZES[0]))
    yd = da.from_array(y, chunks=411)
    wd = da.from_array(w, chunks=500)
    with bdist.DistributedObjective(client, SIZES, Xd, yd, wd, lam=0.5, timeout=60) as obj:
        assert len({h for hs in obj.who_has().values() for h in hs}) == 2
        J_d, g_d = obj(theta0())
    J_s, g_s = local_cost_grad(theta0(), X, y, 0.5, w=w)
    assert J_d == J_s
    np.testing.assert_array_equal(g_d, g_s, err_msg="grad")


def test_few_rows_one_chunk(client, data):
    """m = 30 gives one leaf: one shard, the other worker idles (with a warning), bitwise."""
    X, y, _, _ = data
    with pytest.warns(UserWarning, match=r"1 of 2 Dask workers hold no data and idle: "
                      r"m = 30 rows make C = 1 leaves") as rec:
        obj = bdist.DistributedObjective(client, SIZES, X[:30], y[:30], lam=1.0, timeout=60)
    assert rec[0].filename == __file__  # the warning points at the caller's line
    with obj:
        assert obj.n_chunks == 1 and len(obj.shards) == 1 and len(obj.idle_workers) == 1
        J_d, g_d = obj(theta0())
    J_s, g_s = local_cost_grad(theta0(), X[:30], y[:30], 1.0)
    assert J_d == J_s
    np.testing.assert_array_equal(g_d, g_s)


# ---------------------------------------------------------------------------
# Bitwise equality of whole trajectories
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["cg", "lbfgs"])
def test_trajectory_bitwise(client, data, solver):
    X, y, _, _ = data
    n = 15
    local = bpnet.Network(SIZES, lam=0.7, theta=theta0(), n_threads=2)
    local.fit(X, y, solver=solver, max_iter=n, tol=1e-12)
    dist = bpnet.Network(SIZES, lam=0.7, theta=theta0())
    seen = []
    dist.fit(X, y, solver=solver, max_iter=n, tol=1e-12, client=client,
             callback=lambda info: seen.append(info.iteration))
    assert dist.result.n_iter == local.result.n_iter == n
    assert seen == list(range(1, n + 1))
    assert dist.result.n_evals == local.result.n_evals
    assert dist.loss_history == local.loss_history  # exact float equality, every iteration
    np.testing.assert_array_equal(dist.theta, local.theta, err_msg="theta")


# ---------------------------------------------------------------------------
# Worker failure
# ---------------------------------------------------------------------------
def kill_worker_during_fit(client, at_iteration: int, log: list):
    """A callback that SIGKILLs the process of the worker holding shard 1 at one iteration."""
    pids = client.run(os.getpid)

    def callback(info):
        log.append(info.theta.copy())
        if info.iteration == at_iteration:
            victim = next((w for w, keys in client.has_what().items() if keys and w in pids), None)
            victim = sorted(pids)[-1] if victim is None else victim
            os.kill(pids[victim], signal.SIGKILL)
            t0, guard = time.monotonic(), generous(30)
            while victim in client.scheduler_info()["workers"] and time.monotonic() - t0 < guard:
                time.sleep(0.02)
            assert victim not in client.scheduler_info()["workers"], "the worker did not die"
        return None

    return callback


@pytest.mark.parametrize("solver", ["lbfgs", "cg"])
def test_worker_killed_mid_fit_recovers_bitwise(client, data, solver):
    X, y, _, _ = data
    local = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(X, y, solver=solver, max_iter=10)
    log: list[np.ndarray] = []
    objs: list[bdist.DistributedObjective] = []
    real = bdist.DistributedObjective

    class Spy(real):  # keeps a handle on the objective to read its counters
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            objs.append(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bdist, "DistributedObjective", Spy)
        dist = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(
            X, y, solver=solver, max_iter=10, client=client, timeout=60,
            callback=kill_worker_during_fit(client, 3, log),
        )
    (obj,) = objs
    assert obj.n_recoveries >= 1 and obj.resent_shards >= 1
    assert dist.loss_history == local.loss_history
    np.testing.assert_array_equal(dist.theta, local.theta, err_msg="theta after recovery")


def test_worker_killed_without_retries_stops_with_last_good(client, data):
    X, y, _, _ = data
    log: list[np.ndarray] = []
    net = bpnet.Network(SIZES, lam=0.7, theta=theta0())
    with pytest.raises(bdist.WorkerLostError, match="losing Dask workers") as info:
        net.fit(X, y, solver="lbfgs", max_iter=10, client=client, max_retries=0, timeout=60,
                callback=kill_worker_during_fit(client, 3, log))
    assert len(log) == 3
    partial = info.value.partial_result
    assert partial.n_iter == 3 and len(partial.loss_history) == 3
    np.testing.assert_array_equal(partial.theta, log[-1], err_msg="partial_result.theta")
    np.testing.assert_array_equal(net.theta, log[-1], err_msg="net.theta")
    assert net.loss_history == partial.loss_history
    # the last good parameters are those of the same fit in one process
    local = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(X, y, solver="lbfgs", max_iter=3)
    np.testing.assert_array_equal(net.theta, local.theta)


def test_missing_or_repeated_leaf_is_refused(client, data):
    X, y, _, _ = data
    with bdist.DistributedObjective(client, SIZES, X, y, timeout=60) as obj:
        th, C = theta0(), obj.n_chunks
        futures = [
            client.submit(bdist._shard_tree_sums, s.future, th, SIZES, "sigmoid", "sigmoid",
                          s.local_starts, s.chunk_ids[0], C, pure=False)
            for s in obj.shards
        ]
        first, second = client.gather(futures)
        assert first[:2] == (0, C // 2) and second[:2] == (C // 2, C)
        assert len(first[3]) == 1  # 8 leaves reduce to one node on their worker
        root = bdist._merge_tree_sums(first, second, C)
        grad, _, weight = obj._check_root(root)  # complete: fine
        assert weight == M
        # the merge works on a copy of its left operand: rerunning it gives the same bits
        np.testing.assert_array_equal(bdist._merge_tree_sums(first, second, C)[3][0][2], grad)
        with pytest.raises(bdist.WorkerLostError, match=re.escape(
                f"cover leaves [0, {C // 2}) and [0, {C // 2}), which are not adjacent")):
            bdist._merge_tree_sums(first, first, C)  # a repeated shard
        with pytest.raises(bdist.WorkerLostError,
                           match=re.escape(f"cover leaves [0, {C // 2}); expected [0, {C})")):
            obj._check_root(first)  # a missing shard
        a0, a1, rows, nodes = root
        with pytest.raises(bdist.WorkerLostError, match=f"computed over {rows - 1} rows"):
            obj._check_root((a0, a1, rows - 1, nodes))
        with pytest.raises(bdist.WorkerLostError, match="expected the root"):
            obj._check_root((0, C, M, [*first[3], *second[3]]))


class FakeFuture:
    def __init__(self, done: bool):
        self._done = done

    def done(self) -> bool:
        return self._done


def test_timed_out_step_blames_the_silent_workers(client, data):
    """Which workers a timed-out step marks unresponsive: the shard tasks that did
    not finish; else, when only a merge is stuck, the workers whose heartbeat
    stopped (a worker stopped right after its own task)."""
    X, y, _, _ = data
    with bdist.DistributedObjective(client, SIZES, X, y, timeout=60) as obj:
        w0, w1 = obj.workers_in_use()
        merge = [(FakeFuture(False), w0)]
        assert obj._late_workers([FakeFuture(True), FakeFuture(False)], merge) == {w1}
        real = client.scheduler_info

        def info(last_seen):
            out = real(n_workers=-1)
            for w, t in last_seen.items():
                out["workers"][w]["last_seen"] = t
            return out

        with pytest.MonkeyPatch.context() as mp:
            done = [FakeFuture(True), FakeFuture(True)]
            mp.setattr(client, "scheduler_info", lambda **k: info({w0: 1000.0, w1: 990.0}))
            assert obj._late_workers(done, merge) == {w1}  # silent for 10 s
            mp.setattr(client, "scheduler_info", lambda **k: info({w0: 1000.0, w1: 999.0}))
            assert obj._late_workers(done, merge) == {w0}  # all alive: the stuck merge's worker


# ---------------------------------------------------------------------------
# The driver receives O(P) per step
# ---------------------------------------------------------------------------
def array_bytes(obj) -> int:
    """Bytes of the NumPy arrays inside a (nested) result."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (list, tuple)):
        return sum(array_bytes(o) for o in obj)
    return 0


def spy_gather(client, mp) -> list[int]:
    """Record the array bytes of everything ``client.gather`` returns."""
    got: list[int] = []
    real = client.gather

    def gather(*a, **k):
        out = real(*a, **k)
        got.append(array_bytes(out))
        return out

    mp.setattr(client, "gather", gather)
    return got


@pytest.mark.parametrize("theta_sent", ["inline", "scattered"])
def test_driver_receives_one_gradient_per_step(client, data, theta_sent):
    X, y, _, _ = data
    P = bpnet.n_params(SIZES)
    J_s, g_s = local_cost_grad(theta0(), X, y, 0.0)
    with pytest.MonkeyPatch.context() as mp:
        if theta_sent == "scattered":  # as for a large theta: one scatter per step
            mp.setattr(bdist, "_INLINE_THETA_BYTES", 0)
        scattered = []
        real_scatter = client.scatter
        mp.setattr(client, "scatter",
                   lambda *a, **k: scattered.append(k.get("broadcast")) or real_scatter(*a, **k))
        got = spy_gather(client, mp)
        with bdist.DistributedObjective(client, SIZES, X, y, timeout=60) as obj:
            assert obj.n_chunks == 16
            n_setup = len(scattered)
            for _ in range(3):
                J_d, g_d = obj(theta0())
                assert J_d == J_s
                np.testing.assert_array_equal(g_d, g_s)
    assert got == [8 * P] * 3, got  # the root only, not C x P = 16 x P
    assert obj.received_bytes == 3 * (8 * P + 16)
    assert scattered[n_setup:] == ([True] * 3 if theta_sent == "scattered" else [])


# ---------------------------------------------------------------------------
# Arguments and optional dependency
# ---------------------------------------------------------------------------
def test_arguments_are_named(client, data):
    X, y, _, _ = data
    net = bpnet.Network(SIZES)
    with pytest.raises(ValueError, match="solver='adam' is not distributed"):
        net.fit(X, y, solver="adam", client=client)
    with pytest.raises(ValueError, match=r"client must be a distributed\.Client"):
        bdist.DistributedObjective(object(), SIZES, X, y)
    with pytest.raises(ValueError, match="max_retries must be an int >= 0"):
        net.fit(X, y, client=client, max_retries=-1)
    with pytest.raises(ValueError, match="y has shape"):
        bdist.DistributedObjective(client, SIZES, da.from_array(X), da.from_array(y[:-1]))
    bad = X.copy()
    bad[1234, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite value at row 1234, column 5"):
        net.fit(da.from_array(bad, chunks=(500, SIZES[0])), y, client=client, max_iter=1)
    with pytest.raises(ValueError, match="X has shape"):
        net.fit(X[:, :3], y, client=client)


def test_client_none_changes_nothing(data):
    X, y, _, _ = data
    a = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(X, y, max_iter=5)
    b = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(X, y, max_iter=5, client=None)
    np.testing.assert_array_equal(a.theta, b.theta)


def test_core_never_imports_dask():
    child = Path(__file__).resolve().parent / "children" / "no_dask_import.py"
    subprocess.run([sys.executable, str(child)], check=True)


def test_core_reproducible_across_workspaces(data):
    """The property the bitwise claims rest on, for the default (fastest) core build.

    Same theta, same X in a different buffer, a fresh workspace: the chunk sums
    must not change (the workspace is 64-byte aligned whatever malloc returns).
    """
    X, y, _, _ = data
    core = _native.core
    th = theta0()
    ref = core.cost_grad(th, SIZES, X, y, 0.5, "sigmoid", "sigmoid", None, None, None, 1,
                         core.Workspace())
    keep = []  # keep earlier workspaces alive so new ones land at other addresses
    for _ in range(8):
        ws = core.Workspace()
        keep.append(ws)
        Xc = np.array(X, copy=True)
        J, g = core.cost_grad(th, SIZES, Xc, y, 0.5, "sigmoid", "sigmoid", None, None, None, 1, ws)
        assert J == ref[0], f"core {core.__name__}: J depends on buffer addresses"
        assert np.array_equal(g, ref[1]), f"core {core.__name__}: grad depends on buffer addresses"


# ---------------------------------------------------------------------------
# Any number of workers: 1, 3, 8, 12 (up to C = 16), bitwise equal
# ---------------------------------------------------------------------------
def local_cluster(n_workers: int, **kw):
    return distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=50, **kw,
    )


def holders_callback(client, obj_box: list, log: list):
    """A callback recording, per iteration, the set of workers that hold a shard."""

    def callback(info):
        (obj,) = obj_box
        keys = {s.future.key for s in obj.shards}
        log.append({w for w, held in client.has_what().items() if keys & set(held)})
        return None

    return callback


def spy_objective(mp, objs: list):
    real = bdist.DistributedObjective

    class Spy(real):  # keeps a handle on the objective to read its counters
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            objs.append(self)

    mp.setattr(bdist, "DistributedObjective", Spy)


@pytest.fixture(scope="module")
def lbfgs15(data):
    """The reference: 15 L-BFGS iterations in one process."""
    X, y, _, _ = data
    return bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(
        X, y, solver="lbfgs", max_iter=15, tol=1e-12)


@pytest.mark.parametrize(
    "n_workers", [1, 3, pytest.param(8, marks=pytest.mark.slow),
                  pytest.param(12, marks=pytest.mark.slow)])
def test_any_number_of_workers_bitwise(data, lbfgs15, n_workers):
    X, y, _, _ = data
    P = bpnet.n_params(SIZES)
    objs: list = []
    holders: list = []
    with local_cluster(n_workers) as cl, distributed.Client(cl) as c, \
            pytest.MonkeyPatch.context() as mp:
        c.wait_for_workers(n_workers, timeout=120)
        workers = set(c.scheduler_info(n_workers=-1)["workers"])
        spy_objective(mp, objs)
        got = spy_gather(c, mp)
        dist = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(
            X, y, solver="lbfgs", max_iter=15, tol=1e-12, client=c, timeout=60,
            callback=holders_callback(c, objs, holders))
    (obj,) = objs
    assert obj.n_chunks == 16 and len(obj.shards) == n_workers and not obj.idle_workers
    # every worker holds a shard (of 16 // n or 16 // n + 1 leaves) at every iteration
    assert sorted(len(s.chunk_ids) for s in obj.shards)[::n_workers - 1 or 1] in (
        [16 // n_workers, -(-16 // n_workers)], [16 // n_workers])
    assert holders == [workers] * 15
    # the driver received one gradient per step, not one per leaf or per worker
    assert got == [8 * P] * obj.n_steps
    assert dist.result.n_iter == 15
    assert dist.loss_history == lbfgs15.loss_history
    np.testing.assert_array_equal(dist.theta, lbfgs15.theta, err_msg="theta")


@pytest.mark.slow
def test_more_workers_than_leaves_idle_with_a_warning(data):
    """m = 150 makes C = 5 leaves of 30 rows: 5 of 7 workers hold one, 2 idle."""
    X, y, _, _ = data
    with local_cluster(7) as cl, distributed.Client(cl) as c:
        c.wait_for_workers(7, timeout=120)
        with pytest.warns(UserWarning, match="2 of 7 Dask workers hold no data and idle"):
            obj = bdist.DistributedObjective(c, SIZES, X[:150], y[:150], lam=0.3, timeout=60)
        with obj:
            assert obj.n_chunks == 5 and len(obj.shards) == 5 and len(obj.idle_workers) == 2
            assert len({h for hs in obj.who_has().values() for h in hs}) == 5
            J_d, g_d = obj(theta0())
    J_s, g_s = local_cost_grad(theta0(), X[:150], y[:150], 0.3)
    assert J_d == J_s
    np.testing.assert_array_equal(g_d, g_s)


@pytest.mark.slow
def test_killed_and_stopped_workers_on_a_tree_survive_bitwise(data, lbfgs15):
    """4 workers (a 2-level merge tree): one SIGKILLed at iteration 3, one SIGSTOPped at 8."""
    X, y, _, _ = data
    objs: list = []
    with local_cluster(4) as cl, distributed.Client(cl) as c, \
            pytest.MonkeyPatch.context() as mp:
        c.wait_for_workers(4, timeout=120)
        pids = c.run(os.getpid)
        stopped: list[int] = []
        spy_objective(mp, objs)

        def callback(info):
            if info.iteration == 3:
                # the worker of shard 1 (the right operand of the first merge)
                victim = objs[0].shards[1].worker
                os.kill(pids[victim], signal.SIGKILL)
                t0 = time.monotonic()
                while victim in c.scheduler_info(n_workers=-1)["workers"] and (
                        time.monotonic() - t0 < generous(30)):
                    time.sleep(0.02)
            if info.iteration == 8:
                # the worker of shard 0, which runs the merges
                victim = objs[0].shards[0].worker
                os.kill(pids[victim], signal.SIGSTOP)
                stopped.append(pids[victim])

        try:
            dist = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(
                X, y, solver="lbfgs", max_iter=15, tol=1e-12, client=c, timeout=10,
                callback=callback)
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
    (obj,) = objs
    assert obj.n_recoveries >= 2 and obj.resent_shards >= 2 and len(obj.unresponsive) == 1
    assert dist.loss_history == lbfgs15.loss_history
    np.testing.assert_array_equal(dist.theta, lbfgs15.theta, err_msg="theta after recovery")


# ---------------------------------------------------------------------------
# Training from an on-disk array larger than any one worker may hold
# ---------------------------------------------------------------------------
@pytest.mark.slow
def test_zarr_on_disk_larger_than_one_workers_memory_limit(tmp_path):
    """A 403 MiB zarr training set, 8 workers of memory_limit 384 MiB each.

    No worker could hold the whole set (Dask pauses a worker at 80 % of its
    limit and kills it at 95 %); each holds its shard of about 1/8, the fit
    needs no recovery (no worker was killed) and its bits are those of one
    process. (At 269 MiB and 256 MiB a worker's own ~150 MiB left about 20 MiB
    of room: a worker was killed now and then while reading its shard.)
    """
    zarr = pytest.importorskip("zarr")
    sizes, m, limit = (32, 8, 4), 3_300_000, 384 * 2**20
    rng = np.random.default_rng(13)
    X = rng.standard_normal((m, sizes[0]), dtype=np.float32)
    y = (X[:, :4] @ rng.standard_normal(4).astype(np.float32) > 0).astype(np.int64)
    y += 2 * (X[:, 4] > 0.5)
    zarr.open_array(str(tmp_path / "X.zarr"), mode="w", shape=X.shape, chunks=(100_000, 32),
                    dtype="f4")[:] = X
    zarr.open_array(str(tmp_path / "y.zarr"), mode="w", shape=y.shape, chunks=(100_000,),
                    dtype="i8")[:] = y
    t0 = bpnet.random_theta(sizes, np.random.default_rng(1), dtype=np.float32)
    local = bpnet.Network(sizes, lam=0.1, theta=t0, dtype=np.float32).fit(
        X, y, solver="lbfgs", max_iter=3, tol=1e-12)
    del X, y

    objs: list = []
    with local_cluster(8, memory_limit=limit) as cl, distributed.Client(cl) as c, \
            pytest.MonkeyPatch.context() as mp:
        c.wait_for_workers(8, timeout=120)
        before = set(c.scheduler_info(n_workers=-1)["workers"])
        Xd = da.from_zarr(str(tmp_path / "X.zarr"))
        yd = da.from_zarr(str(tmp_path / "y.zarr"))
        assert Xd.nbytes > limit, (Xd.nbytes, limit)
        spy_objective(mp, objs)
        shard_bytes: list[int] = []

        def callback(info):
            sizes_by_key = c.nbytes(summary=False)
            shard_bytes.append(max(sizes_by_key[s.future.key] for s in objs[0].shards))

        dist = bpnet.Network(sizes, lam=0.1, theta=t0, dtype=np.float32).fit(
            Xd, yd, solver="lbfgs", max_iter=3, tol=1e-12, client=c, timeout=120,
            callback=callback)
        # on a loaded machine a worker may miss heartbeats and reconnect: wait for all 8,
        # then compare addresses (a worker killed for memory comes back on a new one)
        c.wait_for_workers(8, timeout=120)
        after = set(c.scheduler_info(n_workers=-1)["workers"])
    (obj,) = objs
    assert after == before, "a worker was restarted (memory limit?)"
    assert obj.n_recoveries == 0 and obj.resent_shards == 0
    assert len({s.worker for s in obj.shards}) == 8
    # each worker holds about an eighth of the data (X and y), far below its limit
    assert max(shard_bytes) < 1.2 * (Xd.nbytes + yd.nbytes) / 8 < limit / 4
    assert dist.loss_history == local.loss_history
    np.testing.assert_array_equal(dist.theta, local.theta, err_msg="theta")


# ---------------------------------------------------------------------------
# Issue 19, item 13: the scheduler, the client and the workers' memory
# ---------------------------------------------------------------------------
def record_theta(log: list, at_iteration: int, action):
    """A callback keeping each iteration's theta and running ``action`` at one."""

    def callback(info):
        log.append(info.theta.copy())
        if info.iteration == at_iteration:
            action()
        return None

    return callback


def _scheduler_address(sched_file, sched, timeout=120.0):
    """The address in dask's scheduler file once it is whole.

    The scheduler creates the file before it writes the JSON into it, so a
    file that exists can still be empty or half written: read until it parses.
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if sched.poll() is not None:
            raise RuntimeError(f"the dask scheduler exited with {sched.returncode}")
        try:
            return json.loads(sched_file.read_text())["address"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.1)
    raise TimeoutError(f"no whole scheduler file at {sched_file} after {timeout} s")


@pytest.fixture
def own_scheduler(tmp_path):
    """A scheduler and 2 one-thread workers, each its own process (so the
    scheduler can be SIGKILLed); yields (scheduler process, address)."""
    sched_file = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--port",
                              "0", "--dashboard-address", ":0", "--scheduler-file",
                              str(sched_file)], **quiet)
    procs = [sched]
    try:
        address = _scheduler_address(sched_file, sched)
        procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                    address, "--nthreads", "1", "--no-dashboard"], **quiet)
                  for _ in range(2)]
        yield sched, address
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_killed_scheduler_stops_with_worker_lost_and_the_last_good_theta(own_scheduler, data):
    """Before: RuntimeError('ConnectionPool is closed') after the client's own
    reconnect window, with theta back at the initial weights."""
    sched, address = own_scheduler
    X, y, _, _ = data
    log: list[np.ndarray] = []
    killed: list[float] = []

    def kill():
        os.kill(sched.pid, signal.SIGKILL)
        sched.wait()
        killed.append(time.monotonic())

    # the client itself would retry for 120 s: scheduler_timeout bounds the wait
    with distributed.Client(address, timeout=120) as c:
        c.wait_for_workers(2, timeout=120)
        net = bpnet.Network(SIZES, lam=0.7, theta=theta0())
        with pytest.raises(bdist.WorkerLostError,
                           match="lost the connection to the Dask scheduler") as info:
            net.fit(X, y, solver="lbfgs", max_iter=10, client=c, timeout=60,
                    scheduler_timeout=2, callback=record_theta(log, 3, kill))
        detected = time.monotonic() - killed[0]
    assert isinstance(info.value, StepFailed)
    assert "scheduler_timeout=2 s" in str(info.value)
    assert 2 <= detected < 60, detected  # bounded by scheduler_timeout, not the client's 120 s
    print(f"killed scheduler detected after {detected:.2f} s (scheduler_timeout=2)")
    assert len(log) == 3 and info.value.partial_result.n_iter == 3
    np.testing.assert_array_equal(net.theta, log[-1], err_msg="net.theta: the last good")
    np.testing.assert_array_equal(info.value.partial_result.theta, log[-1])
    local = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(X, y, solver="lbfgs", max_iter=3)
    np.testing.assert_array_equal(net.theta, local.theta)


def test_client_closed_mid_fit_keeps_the_last_good_theta(cluster, data):
    """Before: ClosedClientError, and theta back at the initial weights."""
    X, y, _, _ = data
    log: list[np.ndarray] = []
    c = distributed.Client(cluster)
    try:
        c.wait_for_workers(2, timeout=60)
        net = bpnet.Network(SIZES, lam=0.7, theta=theta0())
        with pytest.raises(bdist.WorkerLostError, match=r"the Dask client is clos(ed|ing) "
                           r"\(client.close\(\) was called during the fit") as info:
            net.fit(X, y, solver="lbfgs", max_iter=10, client=c, timeout=60,
                    callback=record_theta(log, 3, c.close))
    finally:
        c.close()
    assert info.value.partial_result.n_iter == 3
    np.testing.assert_array_equal(net.theta, log[-1], err_msg="net.theta: the last good")
    assert net.loss_history == info.value.partial_result.loss_history
    # a closed client is refused up front, naming it
    with pytest.raises(ValueError, match=r"client is closed \(status 'closed'\)"):
        bpnet.Network(SIZES).fit(X, y, client=c)


def test_shard_over_a_workers_memory_limit_is_refused_naming_it(data):
    """Before: a raw CommClosedError from the scatter (the worker was restarted)."""
    # 336 MiB of float64: two shards of 168 MiB, each over 80 % of a worker's 200 MiB
    # on its own (whatever the worker's own memory is reported as). Zeros: no
    # page is touched until sent.
    m, n = 220_000, 200
    X = np.zeros((m, n))
    y = np.zeros(m, dtype=np.int64)
    y[::2] = 1
    with local_cluster(2, memory_limit="200MiB") as cl, distributed.Client(cl) as c:
        c.wait_for_workers(2, timeout=120)
        net = bpnet.Network((n, 3, 2), rng=0)
        before = net.theta.copy()
        with pytest.raises(ValueError, match=r"memory_limit of 200 MiB .* raise the workers' "
                           r"memory limit \(LocalCluster\(memory_limit=\.\.\.\), `dask worker "
                           r"--memory-limit \.\.\.`\) or add workers") as info:
            net.fit(X, y, max_iter=2, client=c, timeout=60)
        print(f"memory refusal: {info.value}")
        held = [k for keys in c.has_what().values() for k in keys]
        # no shard was sent (the builds query's answer may not be released yet)
        assert all(k.startswith("probe-") for k in held), held
    np.testing.assert_array_equal(net.theta, before)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_with_client_pickles_copies_and_clones(client, data):
    """Before: TypeError: cannot pickle '_asyncio.Task' object, for all three."""
    import copy
    import pickle

    from sklearn.base import clone

    X, y, _, _ = data
    est = bpnet.BPNetClassifier(hidden_layer_sizes=(4,), max_iter=3, client=client,
                                random_state=0, solver="lbfgs").fit(X, y)
    local = bpnet.BPNetClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0,
                                  solver="lbfgs").fit(X, y)
    # a pickle carries client=None (as a model file does); copies and clones share it
    back = pickle.loads(pickle.dumps(est))
    assert back.client is None
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    deep = copy.deepcopy(est)
    assert deep.client is client and deep.network_ is not est.network_
    np.testing.assert_array_equal(deep.network_.theta, est.network_.theta)
    twin = clone(est)
    assert twin.client is client and not hasattr(twin, "network_")
    assert twin.get_params()["hidden_layer_sizes"] == (4,)
    np.testing.assert_array_equal(twin.fit(X, y).network_.theta, local.network_.theta)
    assert est.client is client  # the original keeps its client


def test_unknown_chunk_sizes_say_what_to_do(client, data):
    """A dask array from a dask DataFrame (or a boolean mask) has shape (nan, ...).
    Before: 'y has shape (nan,); expected 2000 rows'."""
    X, y, _, _ = data
    keep = da.from_array(np.ones(M, dtype=bool), chunks=500)
    Xd, yd = da.from_array(X, chunks=(500, SIZES[0])), da.from_array(y, chunks=500)
    net = bpnet.Network(SIZES, rng=0)
    with pytest.raises(ValueError, match=r"y is a dask array with unknown chunk sizes "
                       r"\(shape \(nan,\)\).*call y = y.compute_chunk_sizes\(\) first"):
        net.fit(Xd, yd[keep], client=client, max_iter=1)
    with pytest.raises(ValueError, match=r"X is a dask array with unknown chunk sizes "
                       r"\(shape \(nan, 20\)\).*X.compute_chunk_sizes\(\)"):
        net.fit(Xd[keep], yd, client=client, max_iter=1)
    # as the message says: with the chunk sizes computed, it trains
    net.fit(Xd[keep].compute_chunk_sizes(), yd[keep].compute_chunk_sizes(), client=client,
            max_iter=1, timeout=60)
    assert net.result.n_iter == 1


def test_scheduler_timeout_is_checked(client, data):
    X, y, _, _ = data
    for bad in (0, -1.0, float("nan"), "10", True):
        with pytest.raises(ValueError, match="scheduler_timeout must be a number of seconds > 0"):
            bpnet.Network(SIZES).fit(X, y, client=client, scheduler_timeout=bad)


# ---------------------------------------------------------------------------
# Issue 19, item 16: one ISA build of the core for the whole distributed fit
# ---------------------------------------------------------------------------
def isa_cluster(worker_isas: list[str]):
    """Worker processes (one thread each) started with BPNET_ISA=worker_isas[i]."""
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {f"w{i}": {"cls": Nanny, "options": {"nthreads": 1, "env": {"BPNET_ISA": isa}}}
               for i, isa in enumerate(worker_isas)}
    return SpecCluster(workers=workers, silence_logs=50,
                       scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}})


def test_workers_on_different_builds_fit_on_one_build_bitwise(data, tmp_path):
    """Two workers whose default builds differ (BPNET_ISA=baseline and avx2): the
    driver picks the highest build all can run and every worker computes with
    it; the fit is bitwise the one-process fit on that build. Before, each
    worker used its own default and the bits matched no one-process fit."""
    if "avx2" not in _native.available():
        pytest.skip("this CPU or install has no avx2 build")
    X, y, _, _ = data
    objs: list = []
    with isa_cluster(["baseline", "avx2"]) as cl, distributed.Client(cl) as c, \
            pytest.MonkeyPatch.context() as mp:
        c.wait_for_workers(2, timeout=120)
        defaults = c.run(lambda: __import__("bpnet")._runtime.active_build())
        assert sorted(defaults.values()) == ["avx2", "baseline"], defaults
        spy_objective(mp, objs)
        dist = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(
            X, y, solver="lbfgs", max_iter=10, tol=1e-12, client=c, timeout=60)
        # BPNET_ISA on the driver forces the fit's build, if every worker runs it
        mp.setattr(bdist._runtime, "forced_build", lambda: "baseline")
        forced = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(
            X, y, solver="lbfgs", max_iter=10, tol=1e-12, client=c, timeout=60)
    # the same CPU and install everywhere here: the highest build, unless
    # BPNET_ISA forced the driver's (the suite run under BPNET_ISA=avx2)
    chosen = bpnet._runtime.forced_build() or _native.available()[-1]
    assert [o.build for o in objs] == [chosen, "baseline"]
    for net, build in ((dist, chosen), (forced, "baseline")):
        with bpnet._runtime.using_build(build):
            local = bpnet.Network(SIZES, lam=0.7, theta=theta0()).fit(
                X, y, solver="lbfgs", max_iter=10, tol=1e-12)
        assert net.result.build == local.result.build == build
        assert net.loss_history == local.loss_history
        np.testing.assert_array_equal(net.theta, local.theta, err_msg=f"theta on {build}")
    # the builds really differ in the last bits here: the choice matters
    # (unless BPNET_ISA=baseline on the driver made both fits baseline ones)
    assert (chosen == "baseline") == np.array_equal(dist.theta, forced.theta)
    # the model file records the build the parameters were trained with
    back = bpnet.load(dist.save(tmp_path / "net.bpnet"))
    assert back.result.build == chosen


@pytest.mark.slow
def test_worker_restarted_for_memory_while_placing_names_the_limit(data):
    """If the estimate passes but a worker still dies receiving its shard (its
    memory grew meanwhile; here the check is switched off), the error is a
    WorkerLostError naming the memory limit. Before: a raw CommClosedError."""
    m, n = 220_000, 200
    X, y = np.zeros((m, n)), np.arange(m, dtype=np.int64) % 2
    with local_cluster(2, memory_limit="200MiB") as cl, distributed.Client(cl) as c, \
            pytest.MonkeyPatch.context() as mp:
        c.wait_for_workers(2, timeout=120)
        mp.setattr(bdist._Placement, "check_memory", lambda self, workers: None)
        net = bpnet.Network((n, 3, 2), rng=0)
        before = net.theta.copy()
        with pytest.raises(bdist.WorkerLostError, match=r"lost while the shards were being "
                           r"placed .* the workers' memory_limit is 200 MiB: raise it"):
            net.fit(X, y, max_iter=2, client=c, timeout=30)
    np.testing.assert_array_equal(net.theta, before)


def test_the_memory_note_uses_the_limits_read_before_sending():
    """When workers are restarted for memory the scheduler may know none of them
    by the time the error reaches the client (seen in CI: "Lost all workers"),
    so the hint names the limits read before the shards were sent. Before: the
    hint was read after the loss and came out empty."""

    class LostAll:  # a client whose scheduler has lost every worker
        def scheduler_info(self, n_workers=-1):
            return {"workers": {}}

    X, y = np.zeros((1000, 4)), np.zeros(1000, dtype=np.int64)
    p = bdist._Placement(LostAll(), X, y, None, None,
                         {"dtype": "<f8", "n_inputs": 4, "output": "softmax", "n_params": 10})
    assert p.memory_note(["tcp://a", "tcp://b"]) == ""  # nothing known: no hint
    p.memory_limits = {"tcp://a": 200 * 2**20, "tcp://b": 300 * 2**20}
    assert re.search(r"the workers' memory_limit is 200 MiB: raise it",
                     p.memory_note(["tcp://a", "tcp://b"]))
    p.memory_limits = {"tcp://a": 200 * 2**20, "tcp://b": 0}  # one without a limit: no hint
    assert p.memory_note(["tcp://a", "tcp://b"]) == ""


def test_a_worker_without_a_common_build_is_refused_naming_why(data):
    """A worker where bpnet's core does not load (here a bad BPNET_ISA; in life a
    missing install or build) can run no build: the fit is refused before
    anything is sent, naming the worker and the reason."""
    X, y, _, _ = data
    forced = bpnet._runtime.forced_build()  # BPNET_ISA on the driver: its own message
    head = (rf"BPNET_ISA={forced} on the driver, but not every process can run that build: "
            if forced else r"no build of bpnet's core that the driver and every worker can run: ")
    with isa_cluster(["baseline", "sse9"]) as cl, distributed.Client(cl) as c:
        c.wait_for_workers(2, timeout=120)
        net = bpnet.Network(SIZES, lam=0.7, theta=theta0())
        with pytest.raises(ValueError, match=head + r".*\[\].* \(where bpnet failed to load: "
                           r"tcp://[^ ]+: ISAError: BPNET_ISA='sse9': isa must be one of"):
            net.fit(X, y, max_iter=2, client=c, timeout=60)
    np.testing.assert_array_equal(net.theta, theta0())


def test_a_shard_in_unaligned_buffers_is_summed_as_an_aligned_one():
    """A worker that reads its shard itself (zarr, an on-disk dask array) may get
    X and y in buffers that are not aligned to their dtype (seen in CI with
    zarr); the core refuses such arrays, so the shard step aligns them (one
    copy) and gives the sums of the aligned shard, bit for bit."""
    rng = np.random.default_rng(3)
    sizes = (5, 4, 3)
    X = rng.standard_normal((64, 5))
    y = rng.integers(0, 3, 64).astype(np.int64)
    theta = bpnet.random_theta(sizes, rng=0)

    def unaligned(a):
        raw = np.empty(a.nbytes + 1, dtype=np.uint8)
        view = raw[1:].view(a.dtype).reshape(a.shape)
        view[...] = a
        assert not view.flags.aligned
        return view

    starts = np.array([0, 32, 64], dtype=np.int64)
    args = (theta, sizes, "sigmoid", "softmax", starts, (0, 1))
    want = bdist._shard_partial_sums((X, y, None), *args)
    got = bdist._shard_partial_sums((unaligned(X), unaligned(y), None), *args)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


def test_scheduler_address_waits_for_a_whole_file(tmp_path):
    """CI once read dask's scheduler file while it was still empty
    (JSONDecodeError at setup): the reader waits until the JSON parses."""
    import threading

    class Running:
        returncode = None

        def poll(self):
            return None

    sched_file = tmp_path / "scheduler.json"
    sched_file.write_text("")

    def write_later():
        time.sleep(0.3)
        sched_file.write_text('{"addr')
        time.sleep(0.3)
        sched_file.write_text('{"address": "tcp://127.0.0.1:1"}')

    t = threading.Thread(target=write_later)
    t.start()
    try:
        assert _scheduler_address(sched_file, Running(), timeout=30) == "tcp://127.0.0.1:1"
    finally:
        t.join()
    with pytest.raises(TimeoutError, match="no whole scheduler file"):
        _scheduler_address(tmp_path / "never.json", Running(), timeout=0.3)

    class Exited:
        returncode = 3

        def poll(self):
            return 3

    with pytest.raises(RuntimeError, match="exited with 3"):
        _scheduler_address(tmp_path / "never.json", Exited(), timeout=30)

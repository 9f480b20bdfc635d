"""Distributed full-batch training on a real Dask LocalCluster (2 worker processes).

What is proved here:
- the distributed cost and gradient equal single-process ``cost_grad`` bitwise,
  and so do CG and L-BFGS-B trajectories for a fixed number of iterations;
- the shards really live on both workers;
- killing a worker process during a fit either recovers (the shard is re-sent
  and the trajectory is still bitwise equal) or, with ``max_retries=0``, stops
  with ``WorkerLostError`` and the last good parameters.

ISA: the driver and the workers use the same (default) build of the core;
``test_core_reproducible_across_workspaces`` checks that its bits do not depend
on the addresses of the workspace buffers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import bpnet  # noqa: E402
from bpnet import _native  # noqa: E402
from bpnet import distributed as bdist  # noqa: E402
from bpnet import functional as F  # noqa: E402
from bpnet import network as bnet  # noqa: E402

SIZES = (20, 8, 5)
M = 2000  # 8 chunks of 250 rows: 4 per worker


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------
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
        dashboard_address=None,
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
    core = bnet.core
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
    """m <= 32 gives one chunk: one shard, one worker idle, still bitwise."""
    X, y, _, _ = data
    with bdist.DistributedObjective(client, SIZES, X[:30], y[:30], lam=1.0, timeout=60) as obj:
        assert obj.n_chunks == 1 and len(obj.shards) == 1
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
            t0 = time.monotonic()
            while victim in client.scheduler_info()["workers"] and time.monotonic() - t0 < 30:
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


def test_missing_or_repeated_chunk_is_refused(client, data):
    X, y, _, _ = data
    with bdist.DistributedObjective(client, SIZES, X, y, timeout=60) as obj:
        th = theta0()
        futures = [
            client.submit(bdist._shard_partial_sums, s.future, th, SIZES, "sigmoid", "sigmoid",
                          s.local_starts, s.chunk_ids, pure=False)
            for s in obj.shards
        ]
        results = client.gather(futures)
        obj._assemble(results)  # complete: fine
        first, second = (list(s.chunk_ids) for s in obj.shards)
        with pytest.raises(bdist.WorkerLostError, match=re.escape(f"missing {second}")):
            obj._assemble(results[:1])
        with pytest.raises(bdist.WorkerLostError, match=re.escape(f"repeated {first}")):
            obj._assemble([results[0], *results])
        ids, g, lo, we, rows = results[1]
        with pytest.raises(bdist.WorkerLostError,
                           match=f"chunk {second[0]} was computed over {rows[0] - 1} rows"):
            obj._assemble([results[0], (ids, g, lo, we, rows - 1)])


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
    code = (
        "import sys, numpy as np, bpnet\n"
        "net = bpnet.Network([4, 3, 2], rng=0)\n"
        "X = np.random.default_rng(0).standard_normal((50, 4))\n"
        "net.fit(X, (X[:, 0] > 0).astype(int), max_iter=3)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


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

"""Dask: one worker stopped (SIGSTOP) mid-fit; the fit recovers and equals the local one.

Run by test_reliability_attacks.py::
test_dask_stopped_worker_is_treated_as_lost_and_its_shard_resent."""

import os
import signal
import time

import distributed
import numpy as np
from childlib import report

import bpnet
from bpnet import distributed as bdist

if __name__ == "__main__":
    cl = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=50)
    c = distributed.Client(cl)
    c.wait_for_workers(2, timeout=60)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 10))
    y = rng.integers(0, 3, 2000)
    sizes = [10, 8, 3]
    t0 = bpnet.random_theta(sizes, 0)
    local = bpnet.Network(sizes, lam=0.5, theta=t0).fit(X, y, max_iter=10)
    pids = c.run(os.getpid)
    victim = pids[sorted(pids)[-1]]
    objs = []

    class Spy(bdist.DistributedObjective):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            objs.append(self)

    bdist.DistributedObjective = Spy
    t = {}

    def cb(info):
        if info.iteration == 3:
            os.kill(victim, signal.SIGSTOP)
            t["stop"] = time.time()

    try:
        net = bpnet.Network(sizes, lam=0.5, theta=t0).fit(
            X, y, max_iter=10, client=c, callback=cb)  # default timeout
        after = time.time() - t["stop"]
    finally:
        os.kill(victim, signal.SIGCONT)
    report(same=net.theta.tobytes() == local.theta.tobytes(),
           history=net.loss_history == local.loss_history, after=after,
           resent=objs[0].resent_shards, unresponsive=len(objs[0].unresponsive))
    c.close()
    cl.close()

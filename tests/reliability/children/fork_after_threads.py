"""Fork (a Pool and os.fork) after bpnet ran on 2 threads: the children compute the same.

Run by test_reliability_attacks.py::test_fork_children_run_after_two_threads."""

import multiprocessing as mp
import os

import numpy as np
from childlib import report

import bpnet

rng = np.random.default_rng(0)
X = rng.standard_normal((6000, 40))
y = rng.integers(0, 4, 6000)
sizes = [40, 64, 4]
theta = bpnet.random_theta(sizes, 0)
J0, g0 = bpnet.cost_grad(theta, sizes, X, y, 0.5, n_threads=2)  # the thread pool exists now
p0 = bpnet.predict(theta, sizes, X, n_threads=2)


def work(i):
    J, g = bpnet.cost_grad(theta, sizes, X, y, 0.5)
    p = bpnet.predict(theta, sizes, X)
    net = bpnet.Network(sizes, output="softmax", rng=i).fit(X, y, max_iter=3)
    big = bpnet.Network([40, 900, 4], output="softmax", rng=i)  # P > 32k: adam's threaded size
    big.fit(X[:600], y[:600], solver="adam", max_iter=1, batch_size=300)
    clf = bpnet.BPNetClassifier(8, max_iter=3, random_state=i).fit(X[:800], y[:800])
    clf.predict(X[:50])
    return (J == J0 and g.tobytes() == g0.tobytes() and p.tobytes() == p0.tobytes(),
            bool(np.isfinite(net.theta).all() and np.isfinite(big.theta).all()))


with mp.get_context("fork").Pool(2) as pool:
    pool_results = pool.map(work, range(4))
pid = os.fork()
if pid == 0:
    same, finite = work(9)
    os._exit(0 if same and finite else 3)
_, status = os.waitpid(pid, 0)
report(pool=pool_results, child_status=status)

"""Two workers, one held back (BPNET_TEST_STALL_WORKER, set by the test): the
result is bitwise one thread's, for dense and sparse X, and for the Adam and
SGD updates (their slices handed out like the leaves). Prints the CPUs this
process may use: with two, every n_threads=2 call below ran two workers (an
explicit count is capped only by them, not by OpenMP's limit).

Run by test_reliability_core.py::test_leaves_taken_from_a_slow_worker_give_the_same_bits."""

import os

import numpy as np
import scipy.sparse as sp

import bpnet
from bpnet import _native

core = _native.core
# [784, 64, 10]: 50,890 parameters, so the dense finalize's rows are split too
for sizes, m in (([40, 30, 5], 20000), ([784, 64, 10], 3000)):
    rng = np.random.default_rng(0)
    X = rng.random((m, sizes[0])) * (rng.random((m, sizes[0])) < 0.3)
    y = rng.integers(0, sizes[-1], m)
    theta = bpnet.random_theta(sizes, rng=0)
    for Xk in (X, sp.csr_matrix(X)):
        J1, g1 = bpnet.cost_grad(theta, sizes, Xk, y, lam=1.0, n_threads=1)
        for _ in range(3):
            J2, g2 = bpnet.cost_grad(theta, sizes, Xk, y, lam=1.0, n_threads=2)
            assert J1 == J2 and np.array_equal(g1, g2), (sizes, type(Xk))

# the updates: 100,003 parameters (98 slices of 1024, the last one partial)
for dtype in (np.float64, np.float32):
    rng = np.random.default_rng(1)
    start = [rng.normal(size=100_003).astype(dtype) for _ in range(4)]
    start[2] = np.abs(start[2])  # Adam's second moment
    runs = []
    for n_threads in (1, 2):
        theta, m1, v, g = (a.copy() for a in start)
        for step in (1, 2, 3):
            assert core.adam_update(theta, m1, v, g, 0.9, 0.999, 1e-3 / step, 1e-8, n_threads)
            assert core.sgd_update(theta, m1, g, 0.01, 0.9, step == 2, n_threads)
        runs.append((theta, m1, v))
    for a, b in zip(*runs):
        assert a.tobytes() == b.tobytes(), dtype
print("ok", len(os.sched_getaffinity(0)))

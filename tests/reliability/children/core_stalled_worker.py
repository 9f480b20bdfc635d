"""Two workers, one held back (BPNET_TEST_STALL_WORKER, set by the test): the
result is bitwise one thread's, for dense and sparse X. Prints the thread count.

Run by test_reliability_core.py::test_leaves_taken_from_a_slow_worker_give_the_same_bits."""

import numpy as np
import scipy.sparse as sp

import bpnet
from bpnet import _native

core = _native.core
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
print("ok", core.max_threads())

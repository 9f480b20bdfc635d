"""A wide net on two threads under a small OMP_STACKSIZE (set by the test).

Run by test_reliability_core.py::test_small_omp_stacks_do_not_crash."""

import numpy as np

import bpnet

sizes = [1024, 1024, 10]
rng = np.random.default_rng(0)
X = rng.random((3000, 1024))
y = rng.integers(0, 10, 3000)
theta = bpnet.random_theta(sizes, rng=0)
J, g = bpnet.cost_grad(theta, sizes, X, y, lam=1.0, n_threads=2)
bpnet.predict(theta, sizes, X, n_threads=2)
print("ok", np.isfinite(J))

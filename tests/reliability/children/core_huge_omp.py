"""Under OMP_NUM_THREADS=5000 (set by the test), libgomp never tries to start
5000 threads. Argument: the call ("cost_grad", "predict", "adam_update").

Run by test_reliability_core.py::test_a_huge_omp_num_threads_is_capped."""

import os
import sys

import numpy as np

import bpnet
from bpnet import _native

core = _native.core
fn = sys.argv[1]
sizes = [64, 256, 10]
rng = np.random.default_rng(0)
X = rng.random((20000, 64))
y = rng.integers(0, 10, 20000)
theta = bpnet.random_theta(sizes, rng=0)
assert core.max_threads() <= os.cpu_count(), core.max_threads()
if fn == "cost_grad":
    bpnet.cost_grad(theta, sizes, X, y, lam=1.0)
elif fn == "predict":
    bpnet.predict(theta, sizes, X)
else:
    big = np.ones(200_000)
    core.adam_update(big, np.zeros_like(big), np.zeros_like(big), big, 0.9, 0.999,
                     1e-3, 1e-8)
    core.adam_update(big, np.zeros_like(big), np.zeros_like(big), big, 0.9, 0.999,
                     1e-3, 1e-8, n_threads=1)
print("ok")

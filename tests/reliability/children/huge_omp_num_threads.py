"""OMP_NUM_THREADS=5000 (set by the test): every entry point runs, the thread count is
capped.

Run by test_reliability_attacks.py::test_huge_omp_num_threads_does_not_kill_the_process."""

import os

import numpy as np
from childlib import report

import bpnet
from bpnet import _runtime as R

rng = np.random.default_rng(0)
X = rng.standard_normal((3000, 100))
y = (X[:, 0] > 0).astype(np.int64)
sizes = [100, 400, 2]  # P = 41,202: adam_update's multi-threaded size
net = bpnet.Network(sizes, output="softmax", rng=0)
net.fit(X, y, solver="adam", max_iter=2, batch_size=256)
theta = net.theta
J, _ = bpnet.cost_grad(theta, sizes, X, y, 0.1, output="softmax")
p = bpnet.predict(theta, sizes, X)
h = bpnet.forward(theta, sizes, X, output="softmax")
clf = bpnet.BPNetClassifier(20, max_iter=3, random_state=0).fit(X[:500], y[:500])
clf.predict(X)
report(J=J, n_pred=int(p.size), rows=int(h.shape[0]),
       threads=R.effective_threads(None), cpus=R.usable_cpus(),
       omp=os.environ["OMP_NUM_THREADS"], core_max=int(bpnet._native.core.max_threads()))

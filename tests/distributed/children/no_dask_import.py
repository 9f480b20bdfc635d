"""A fit without a client never imports Dask.

Run by test_distributed.py::test_core_never_imports_dask."""

import sys

import numpy as np

import bpnet

net = bpnet.Network([4, 3, 2], rng=0)
X = np.random.default_rng(0).standard_normal((50, 4))
net.fit(X, (X[:, 0] > 0).astype(int), max_iter=3)
bad = [m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")]
assert not bad, bad

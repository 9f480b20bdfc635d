"""rows set out of range by another thread while the raw core runs, for 3
seconds: a ValueError naming rows[...] or a result, never a crash.

Run by test_reliability_core.py::test_rows_changed_by_another_thread_never_crash."""

import threading
import time

import numpy as np

import bpnet
from bpnet import _native

core = _native.core
sizes = [20, 30, 5]
rng = np.random.default_rng(0)
X = rng.random((5000, 20))
y = rng.integers(0, 5, 5000)
rows = np.arange(4000, dtype=np.int64)
theta = bpnet.random_theta(sizes, rng=0)
ws = core.Workspace()
grad = np.empty_like(theta)
stop = False


def attack():
    k = 0
    while not stop:
        rows[k % rows.size] = 10 ** 12 if k % 2 else -5
        rows[(k - 1) % rows.size] = 3
        k += 1


t = threading.Thread(target=attack, daemon=True)
t.start()
deadline = time.time() + 3
try:
    while time.time() < deadline:
        try:
            core.cost_grad(theta, sizes, X, y, 1.0, "sigmoid", "softmax", None, grad,
                           rows, 2, ws)
        except ValueError as e:
            assert "rows[" in str(e), e
finally:
    stop = True
    t.join()
print("ok")

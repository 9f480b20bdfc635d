"""Labels set out of range (or negative) by another thread while the core runs
without the GIL, for 3 seconds: a ValueError or a result, never an out-of-bounds
read. Argument: the output ("softmax", "identity", "sigmoid").

Run by test_reliability_core.py::test_labels_changed_by_another_thread_never_crash."""

import sys
import threading
import time

import numpy as np

import bpnet

output = sys.argv[1]
sizes = [20, 30, 5]
rng = np.random.default_rng(0)
X = rng.random((20000, 20))
y = rng.integers(0, 5, 20000)
theta = bpnet.random_theta(sizes, rng=0)
stop = False


def attack():
    k = 0
    while not stop:
        y[k % y.size] = (-(10 ** 12) if k % 2 else 10 ** 12)
        y[(k - 1) % y.size] = 1
        k += 1


t = threading.Thread(target=attack, daemon=True)
t.start()
errors = results = 0
deadline = time.time() + 3
try:
    while time.time() < deadline:
        try:
            bpnet.cost_grad(theta, sizes, X, y, lam=1.0, activation="sigmoid",
                            output=output, n_threads=2)
            results += 1
        except ValueError as e:
            assert "class index" in str(e), e
            errors += 1
finally:
    stop = True
    t.join()
print("ok", results, errors)

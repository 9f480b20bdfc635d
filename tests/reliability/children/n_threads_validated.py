"""Bad n_threads to every entry point: each outcome.

Run by test_reliability_attacks.py::test_n_threads_validated_everywhere."""


import numpy as np
from childlib import outcome, report

import bpnet

X = np.zeros((4, 3))
y = np.zeros(4, np.int64)
theta = bpnet.random_theta([3, 2], 0)
bad = [0, -2, 1025, 2.0, "2", True]
calls = {
    "cost_grad": lambda n: bpnet.cost_grad(theta, [3, 2], X, y, n_threads=n),
    "forward": lambda n: bpnet.forward(theta, [3, 2], X, n_threads=n),
    "predict": lambda n: bpnet.predict(theta, [3, 2], X, n_threads=n),
    "Network": lambda n: bpnet.Network([3, 2], n_threads=n),
    "estimator": lambda n: bpnet.BPNetClassifier(n_threads=n).fit(X, [0, 1, 0, 1]),
}
report(**{k: [outcome(f, n) for n in bad] for k, f in calls.items()})

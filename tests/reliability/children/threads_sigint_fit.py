"""A long fit that prints READY at iteration 3 and then waits for the test's
SIGINT; prints the outcome as JSON. Argument: the solver ("lbfgs", "adam").

Run by test_reliability_threads.py::
test_sigint_during_fit_returns_quickly_with_last_good_parameters."""

import json
import signal
import sys

import numpy as np

import bpnet

rng = np.random.default_rng(0)
X = rng.standard_normal((4000, 64))
y = rng.integers(0, 10, 4000)
net = bpnet.Network((64, 64, 10), rng=0)
theta0 = net.theta.copy()
seen = {"iteration": 0, "at_signal": None}


def callback(info):
    seen["iteration"] = info.iteration
    if info.iteration == 3:
        print("READY", flush=True)


def on_sigint(signum, frame):  # Python's default handler, noting the iteration
    seen["at_signal"] = seen["iteration"]
    raise KeyboardInterrupt


signal.signal(signal.SIGINT, on_sigint)
try:
    net.fit(X, y, solver=sys.argv[1], max_iter=100000, tol=1e-300, callback=callback,
            **({"learning_rate": 1e-3, "batch_size": 50} if sys.argv[1] == "adam" else {}))
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "interrupted"
print(json.dumps({
    "outcome": outcome, "at_signal": seen["at_signal"],
    "finite": bool(np.isfinite(net.theta).all()),
    "moved": bool(not np.array_equal(net.theta, theta0)),
    "n_iter": net.result.n_iter if net.result else None,
    "history": len(net.loss_history),
    "stop_reason": net.result.stop_reason if net.result else None,
    "cost_finite": bool(np.isfinite(net.cost_grad(X, y)[0])),
}), flush=True)

"""SIGINT once a tenth of one long cost_grad's CPU time is spent: prints whether
the call was interrupted and the fraction of its work done by then.

Run by test_reliability_core.py::test_ctrl_c_stops_a_long_core_call_inside_the_call."""

import json
import os
import signal
import threading
import time

import numpy as np

import bpnet

signal.signal(signal.SIGINT, signal.default_int_handler)  # also under a background shell
sizes = [784, 1024, 1024, 10]
rng = np.random.default_rng(0)
m, m_small = 40000, 2000
X = rng.random((m, 784))
y = rng.integers(0, 10, m)
theta = bpnet.random_theta(sizes, rng=0)
cpu = time.process_time  # every thread of this process
c0 = cpu()
bpnet.cost_grad(theta, sizes, X[:m_small], y[:m_small], lam=1.0, n_threads=1)
full = (cpu() - c0) * m / m_small  # the CPU time of the whole call
start = cpu()


def interrupt():  # Ctrl-C once a tenth of the call's work is done
    while cpu() - start < 0.1 * full:
        time.sleep(0.002)
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=interrupt, daemon=True).start()
try:
    bpnet.cost_grad(theta, sizes, X, y, lam=1.0, n_threads=1)
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "interrupted"
print(json.dumps({"outcome": outcome, "done": (cpu() - start) / full}))

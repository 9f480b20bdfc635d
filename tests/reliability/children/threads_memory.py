"""2000 Adam iterations and 2000 cost_grad calls: prints the resident set size
after 100 and after 2000 of each, as JSON.

Run by test_reliability_threads.py::test_memory_is_flat_over_long_training."""

import json
import os

import numpy as np

import bpnet


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


rng = np.random.default_rng(0)
X = rng.standard_normal((512, 64))
y = rng.integers(0, 10, 512)
net = bpnet.Network((64, 64, 10), rng=0)
marks = {}


def callback(info):
    if info.iteration in (100, 2000):
        marks[info.iteration] = rss()


net.fit(X, y, solver="adam", max_iter=2000, tol=0.0, batch_size=256, callback=callback)
theta = net.theta
grad = np.empty_like(theta)
for i in range(2000):  # the functional API with a caller-owned buffer
    bpnet.cost_grad(theta, (64, 64, 10), X, y, 1.0, out=grad)
    if i == 99:
        marks["cost_grad 100"] = rss()
marks["cost_grad 2000"] = rss()
print(json.dumps(marks))

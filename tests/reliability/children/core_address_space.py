"""Calls on two threads under address-space limits of 1 to 256 MiB above what
the process holds: a result or MemoryError, never a libgomp exit or an abort.

Run by test_reliability_core.py::test_little_address_space_gives_memory_error_or_a_result."""

import resource

import numpy as np

import bpnet

sizes = [300, 400, 10]
rng = np.random.default_rng(0)
X = rng.random((4000, 300))
y = rng.integers(0, 10, 4000)
theta = bpnet.random_theta(sizes, rng=0)


def vm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize"):
                return int(line.split()[1]) * 1024


base = vm()
outcomes = {}
for extra_mib in (1, 4, 16, 64, 256):
    limit = base + extra_mib * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    try:
        bpnet.cost_grad(theta, sizes, X, y, lam=1.0, n_threads=2)
        outcomes[extra_mib] = "result"
    except MemoryError:
        outcomes[extra_mib] = "MemoryError"
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)
print("ok", outcomes)

"""Run with ``python -S`` against an unpacked wheel (argument: its folder): bpnet
comes from there; prints the Eigen version and one cost_grad as JSON.

Run by test_packaging.py::test_build_from_the_submodule_path."""

import json
import sys

import numpy as np

import bpnet

assert bpnet.__file__.startswith(sys.argv[1]), bpnet.__file__
t = bpnet.debug_theta([3, 5, 3])
X = np.sin(np.arange(15.0)).reshape(5, 3) / 10
J, g = bpnet.cost_grad(t, [3, 5, 3], X, np.arange(5) % 3, lam=1.0)
print(json.dumps({"eigen": bpnet.build_info()["eigen"], "J": J, "g": g.tolist()}))

"""Ctrl-C latency (not a test): wall seconds from SIGINT to control back in
Python, for one long ``cost_grad`` call and for ``Network.fit`` with L-BFGS
and Adam. The tests assert the behaviour (interrupted inside the call, within
the iteration the signal arrived in) in CPU time and iterations, which hold
on a busy machine; this script reports the figures on the machine it runs on
(with its load average, which they depend on).

    python bench/latency.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

CORE = """
import numpy as np, bpnet
sizes = [784, 1024, 1024, 10]
rng = np.random.default_rng(0)
X = rng.random((40000, 784)); y = rng.integers(0, 10, 40000)
theta = bpnet.random_theta(sizes, rng=0)
print("READY", flush=True)
try:
    bpnet.cost_grad(theta, sizes, X, y, lam=1.0)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""

FIT = """
import sys, numpy as np, bpnet
rng = np.random.default_rng(0)
X = rng.standard_normal((4000, 64)); y = rng.integers(0, 10, 4000)
net = bpnet.Network((64, 64, 10), rng=0)
def callback(info):
    if info.iteration == 3:
        print("READY", flush=True)
kw = {"learning_rate": 1e-3, "batch_size": 50} if sys.argv[1] == "adam" else {}
try:
    net.fit(X, y, solver=sys.argv[1], max_iter=100000, tol=1e-300, callback=callback, **kw)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def latency(code: str, *args: str, wait: float) -> float:
    """Seconds from SIGINT (sent ``wait`` s after READY) to the child's report."""
    p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        if p.stdout is None or p.stdout.readline().strip() != "READY":
            raise RuntimeError(f"the child did not start: {p.communicate()[1][-500:]}")
        time.sleep(wait)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        line = p.stdout.readline().strip()
        took = time.monotonic() - sent
        p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
    if line != "interrupted":
        raise RuntimeError(f"expected 'interrupted', got {line!r}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    cases = {"cost_grad [784, 1024, 1024, 10], m = 40000": (CORE, (), 1.0),
             "Network.fit lbfgs": (FIT, ("lbfgs",), 0.3),
             "Network.fit adam": (FIT, ("adam",), 0.3)}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} on {os.cpu_count()} CPUs; seconds from SIGINT to Python")
    out = {}
    for name, (code, extra, wait) in cases.items():
        runs = [latency(code, *extra, wait=wait) for _ in range(args.repeat)]
        out[name] = runs
        print(f"  {name:45s} median {statistics.median(runs):.3f}  max {max(runs):.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_average": load, "seconds": out}, f, indent=1)


if __name__ == "__main__":
    main()

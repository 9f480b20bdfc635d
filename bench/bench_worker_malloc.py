"""What Dask's worker setting MALLOC_TRIM_THRESHOLD_=65536 costs bpnet's worker step.

Runs the exact work of one worker per distributed step ([784, 512, 256, 10],
a shard of 5000 rows = 4 chunks: unpickle theta, ``partial_sums`` into a
fresh (4, P) buffer with the worker's kept Workspace, serialize the sums) in
a fresh single-threaded process under three malloc environments: glibc's
default, Dask's default worker setting, and ``bpnet.distributed.WORKER_ENV``.
No Dask involved, so the scheduler's noise does not hide the effect.

Run: ``python bench/bench_worker_malloc.py [--reps N]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = r"""
import pickle, statistics, sys, time
import numpy as np
import bpnet
from bpnet import distributed as bd

sizes = (784, 512, 256, 10)
m = 5000
rng = np.random.default_rng(0)
X = rng.standard_normal((m, sizes[0]))
y = rng.integers(0, sizes[-1], m)
blob = pickle.dumps(bpnet.random_theta(sizes, rng), protocol=5)
starts = np.array([0, 1250, 2500, 3750, 5000], dtype=np.int64)


def step():
    theta = pickle.loads(blob)  # theta arrives as a fresh buffer each step
    out = bd._shard_partial_sums((X, y, None), theta, sizes, "sigmoid", "sigmoid", starts,
                                 (0, 1, 2, 3))
    pickle.dumps(out[1], protocol=5)  # the chunk sums leave for the driver


times = []
for _ in range(int(sys.argv[1]) + 2):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
print(f"{1e3 * statistics.median(times[2:]):.1f}")
"""


def main() -> None:
    from bpnet.distributed import WORKER_ENV

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base["OMP_NUM_THREADS"] = "1"  # a Dask worker with 1 thread
    envs = {
        "glibc default": {},
        "Dask default (MALLOC_TRIM_THRESHOLD_=65536)": {"MALLOC_TRIM_THRESHOLD_": "65536"},
        "bpnet.distributed.WORKER_ENV": WORKER_ENV,
    }
    print(f"median ms per worker step, {args.reps} steps, "
          f"{args.rounds} rounds (a fresh process each)")
    for label, extra in envs.items():
        got = []
        for _ in range(args.rounds):
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.reps)],
                                 env={**base, **extra}, check=True, capture_output=True, text=True)
            got.append(out.stdout.strip())
        print(f"  {label:<45s} {'  '.join(got)}")


if __name__ == "__main__":
    main()

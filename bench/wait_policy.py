"""Wait policies side by side, next to other libraries' threads (issue 18, item
3): how fast bpnet's second thread wakes, and how politely an idle one yields.

    python bench/wait_policy.py [--fits N] [--calls N] [--rounds N]
                                [--before TREE] [--out FILE]

Each policy runs in fresh processes (the pool reads BPNET_SPIN_US once), in
rotation, the same work in each:

- pool:          bpnet's own pool (the default): a call never waits for a
                 thread that has not woken (the caller runs the worker indices
                 no thread has claimed); an idle thread polls for the next job
                 for about twice the last gap between jobs while that gap is
                 under 300 us, else it sleeps on a condition variable at once.
- pool no spin:  BPNET_SPIN_US=0: every idle thread sleeps at once (the
                 default before the adaptive poll).
- pool spin 200us / pool spin 1ms: BPNET_SPIN_US, a fixed spin after every
                 job before an idle thread sleeps.
- openblas timeout / timeout+no spin: the default pool (or no spin), with
                 OPENBLAS_THREAD_TIMEOUT=4 for
                 OpenBLAS (NumPy's and SciPy's BLAS; read when it loads). After
                 each call on more than one thread OpenBLAS's idle threads
                 busy-wait about 2^28 TSC cycles (its default THREAD_TIMEOUT 28,
                 a tenth of a second here) before they sleep: on two cores
                 bpnet's threads then share them with a spinning thread. 4 is
                 its minimum (2^4 cycles: they sleep at once).
- with --before TREE (a checkout whose python/bpnet holds an older build, such
  as round 2's OpenMP runtime): that build, as it shipped (OMP_WAIT_POLICY=
  passive), and with OMP_WAIT_POLICY=active, through PYTHONPATH=TREE/python.

The work, each timed on its own:
- E alone:        BPNetClassifier.fit on the digits (case E's fit, 25 hidden units),
                  before any other library's work in the process, each fit
                  after the process idled 0.3 s (as a user's fit comes)
- E after sklearn: the same fit right after an MLPClassifier.fit (OpenBLAS's
                  threads and scikit-learn's OpenMP were just busy)
- E after numpy:  the same fit right after a 512x512 NumPy product
- A mixed:        cost_grad on [400, 25, 10], m = 5000, each call right after a
                  512x512 NumPy product (a two-library loop)
- B calls:        cost_grad on [64, 25, 10], m = 1797, back to back (tiny calls:
                  the wake-up is a large share)

The report gives the median of each (ms) and its ratio to the default
pool's in the same run; the CPU and the load are named at the top. Below the
table: the CPU time the process spent while its main thread slept for 0.5 s
right after one 512x512 NumPy product (OpenBLAS's idle threads; median over
the rounds), per policy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

POLICIES = {
    "pool": {},
    "pool no spin": {"BPNET_SPIN_US": "0"},
    "pool spin 200us": {"BPNET_SPIN_US": "200"},
    "pool spin 1ms": {"BPNET_SPIN_US": "1000"},
    "openblas timeout": {"OPENBLAS_THREAD_TIMEOUT": "4"},
    "timeout+no spin": {"OPENBLAS_THREAD_TIMEOUT": "4", "BPNET_SPIN_US": "0"},
}
# the variables a policy sets: none of them is inherited from the caller
POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "BPNET_SPIN_US", "OPENBLAS_THREAD_TIMEOUT")
IDLE_SLEEP = 0.5  # s: the main thread's sleep after one product (OpenBLAS's idle spin)
IDLE_BEFORE_ALONE = 0.3  # s: the process idles this long before each "E alone" fit
BEFORE = {"before passive": {}, "before active": {"OMP_WAIT_POLICY": "active"}}
BASE = "pool"
WORK = ("E alone", "E after sklearn", "E after numpy", "A mixed", "B calls")


def idle_cpu_after_product(M: object, sleep: float = IDLE_SLEEP) -> float:
    """CPU seconds this process spends while its calling thread sleeps
    `sleep` s right after one product ``M @ M`` (other threads' idle spinning)."""
    import resource

    M @ M  # type: ignore[operator]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(sleep)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _worker(fits: int, calls: int) -> dict[str, float]:
    """One process: every piece of work, medians in seconds (and ``idle cpu``,
    see idle_cpu_after_product)."""
    import warnings

    import numpy as np
    import systems as S
    from sklearn.exceptions import ConvergenceWarning

    import bpnet

    warnings.simplefilter("ignore", ConvergenceWarning)
    data = S.e_data()
    M = np.random.default_rng(0).random((512, 512))
    t: dict[str, list[float]] = {w: [] for w in WORK}
    S.e_fit("bpnet", 60, data)  # warm
    for _ in range(fits):  # no other library has run yet: no other pool's threads spin
        time.sleep(IDLE_BEFORE_ALONE)
        t0 = time.perf_counter()
        S.e_fit("bpnet", 60, data)
        t["E alone"].append(time.perf_counter() - t0)
    for _ in range(fits):
        S.e_fit("sklearn", 60, data)
        t0 = time.perf_counter()
        S.e_fit("bpnet", 60, data)
        t["E after sklearn"].append(time.perf_counter() - t0)
        M @ M
        t0 = time.perf_counter()
        S.e_fit("bpnet", 60, data)
        t["E after numpy"].append(time.perf_counter() - t0)
    rng = np.random.default_rng(1)
    for sizes, m, name in (([400, 25, 10], 5000, "A mixed"), ([64, 25, 10], 1797, "B calls")):
        X = rng.random((m, sizes[0]))
        y = rng.integers(0, sizes[-1], m)
        theta = bpnet.Network(sizes, rng=0).theta
        for _ in range(calls):
            if name == "A mixed":
                M @ M
            t0 = time.perf_counter()
            bpnet.cost_grad(theta, sizes, X, y)
            t[name].append(time.perf_counter() - t0)
    out = {w: statistics.median(v) for w, v in t.items()}
    out["idle cpu"] = idle_cpu_after_product(M)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fits", type=int, default=5, help="fits of each E variant per process")
    ap.add_argument("--calls", type=int, default=40, help="cost_grad calls per case per process")
    ap.add_argument("--rounds", type=int, default=2, help="processes per policy (rotated)")
    ap.add_argument("--out", help="also write the report to this file")
    ap.add_argument("--before", help="a checkout with an older build in python/bpnet")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(a.fits, a.calls)))
        return 0
    import machine

    lines = [machine.short_header() + " (at the start)",
             f"{a.rounds} rounds of a fresh process per policy, rotated", ""]
    policies = {p: (env, None) for p, env in POLICIES.items()}
    if a.before:
        policies.update({p: (env, str(Path(a.before) / "python")) for p, env in BEFORE.items()})
    res: dict[str, list[dict[str, float]]] = {p: [] for p in policies}
    names = list(policies)
    for k in range(a.rounds):  # round k starts at the k-th policy (rotation)
        for p in names[k % len(names):] + names[: k % len(names)]:
            env, path = policies[p]
            clean = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
            if path:
                clean["PYTHONPATH"] = path
            r = subprocess.run([sys.executable, __file__, "--worker", "--fits", str(a.fits),
                                "--calls", str(a.calls)], capture_output=True, text=True,
                               env={**clean, **env}, check=True)
            res[p].append(json.loads(r.stdout.strip().splitlines()[-1]))
    med = {p: {w: min(r[w] for r in rs) for w in WORK} for p, rs in res.items()}
    lines.append(f"median ms (best of the rounds' medians); in brackets: {BASE}'s time / this")
    lines.append(f"{'policy':<16}" + "".join(f"{w:>22}" for w in WORK))
    for p in policies:
        cells = "".join(f"{med[p][w] * 1e3:>13.2f} ({med[BASE][w] / med[p][w]:4.2f}x)"
                        for w in WORK)
        lines.append(f"{p:<16}{cells}")
    lines.append("")
    lines.append(f"CPU time spent while the main thread slept {IDLE_SLEEP} s right after one "
                 f"512x512 NumPy product (median of the rounds):")
    for p, rs in res.items():
        cpu = statistics.median(r["idle cpu"] for r in rs)
        lines.append(f"  {p:<16}{cpu * 1e3:8.1f} ms")
    machine.emit(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

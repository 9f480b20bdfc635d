"""Timing, worker processes and report lines shared by bench/run.py and
bench/regimes.py (bench/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RUN = Path(__file__).resolve().parent / "run.py"


def measure(fn, budget, min_calls, max_calls=100_000, warm=True):
    """Per-call seconds of fn() after one warm-up call (unless warm=False: the
    caller made one): at least min_calls calls and until `budget` seconds have
    passed."""
    if warm:
        fn()
    samples = []
    t_end = time.perf_counter() + budget
    while len(samples) < min_calls or (time.perf_counter() < t_end and len(samples) < max_calls):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def summary(samples):
    s = np.asarray(samples, dtype=float)
    med = float(np.median(s))
    return {"median_s": med, "n": len(s),
            "spread": float((np.percentile(s, 90) - np.percentile(s, 10)) / med) if med else 0.0}


def median_of_rounds(rounds):
    """Median over rounds of each round's median; spread of the round medians."""
    meds = [r["median_s"] for r in rounds]
    out = summary(meds)
    if len(rounds) == 1:  # one round: the spread of its calls
        out["spread"] = rounds[0]["spread"]
    out["rounds_s"] = meds
    out["calls"] = int(sum(r["n"] for r in rounds))
    return out



def spawn(spec, env=None):
    """Run one worker in a fresh process; its last stdout line is its JSON result."""
    cmd = [sys.executable, str(RUN), "--worker", json.dumps(spec)]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       env=None if env is None else {**os.environ, **env})
    if r.returncode:
        raise SystemExit(f"worker {spec['kind']} {spec.get('system', '')} failed "
                         f"(exit {r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


class Report:
    """Prints and keeps every line, for the text file."""

    def __init__(self):
        self.lines = []

    def __call__(self, line=""):
        print(line, flush=True)
        self.lines.append(line)


def rounds(n):
    return f"{n} round" + ("" if n == 1 else "s")


def ms(t):
    return f"{t * 1e3:.3f}" if t < 1 else f"{t * 1e3:.1f}"



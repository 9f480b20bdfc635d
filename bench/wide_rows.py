"""A wide network over row counts: where the core's fixed leaves cost.

    python bench/wide_rows.py [--rows 64,256,1000,2000,5000,10000] [--rounds 3]
                              [--dtypes float64,float32] [--out FILE]

One cost + gradient of case C's shape with relu hidden units and a softmax
output, ``[784, 512, 256, 10]`` (lam 1e-4), at each row count m, through
bpnet's public ``bpnet.cost_grad`` and bench/run.py's PyTorch system
(``systems.torch_system``: autograd through the flat theta, the same math;
``torch.set_num_threads`` = bpnet's thread count), on bench/run.py's data
(``systems.make_data``), checked against each other first. Two modes, as bench/run.py:

- alone: each system in its own fresh process per round (the order rotated
  each round), the median of its calls per m; the report takes the median
  of the rounds;
- mixed: both in one process, call by call alternating.

The core splits any call into fixed leaves of ``clamp(ceil(m / 16), 32,
4096)`` rows whose gradients it sums in a fixed tree (bitwise the same for
every thread count); each leaf has a gradient buffer of all P parameters
(4.3 MiB in float64 here) that is zeroed and merged, and its weight-gradient
products have the leaf's rows as their depth. The columns show how that
scales with m against one product per layer (bench/README.md, "Leaves and
the tree").
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import systems as S  # bench/ is on the path (above)

SIZES = [784, 512, 256, 10]
LAM = 1e-4
SYSTEMS = ("bpnet", "torch")


def _problem(m: int, dtype: str) -> dict:
    """bench/run.py's data for m rows in ``dtype`` (systems.make_data, cast)."""
    return S.cast(S.make_data(SIZES, m), dtype)


def _bpnet_step(d):
    """The public ``bpnet.cost_grad``, its gradient written into one buffer."""
    import numpy as np

    import bpnet

    theta, X, y = d["theta"], d["X"], d["y"]
    out = np.empty_like(theta)

    def step():
        return bpnet.cost_grad(theta, SIZES, X, y, LAM, activation="relu", output="softmax",
                               out=out)

    return step


def _torch_step(d):
    """bench/run.py's PyTorch system (systems.torch_system) on bpnet's thread count."""
    import torch

    import bpnet

    torch.set_num_threads(bpnet.build_info()["max_threads"])
    return S.torch_system(d, SIZES, LAM, activation="relu", output="softmax")


def _flat(result):
    """(J, gradient (P,) as float64 NumPy) of either system's step, for the check."""
    J, g = result
    return float(J), S.as_theta_grad("", None, g).copy()


def leaf_rows(m: int) -> tuple[int, int]:
    """The core's leaves for m rows (its ``leaf_starts``): (rows of the largest
    leaf, leaves)."""
    import numpy as np

    from bpnet import _runtime

    starts = _runtime.leaf_starts(m)
    return int(np.diff(starts).max()), len(starts) - 1


STEPS = {"bpnet": _bpnet_step, "torch": _torch_step}


def _calls(m: int) -> int:
    return max(5, 4000 // m)


def _worker(system: str, rows: list[int], dtype: str) -> dict[str, float]:
    """One process, one system: the median seconds of one call per m."""
    res = {}
    for m in rows:
        step = STEPS[system](_problem(m, dtype))
        step()
        step()
        t = []
        for _ in range(_calls(m)):
            t0 = time.perf_counter()
            step()
            t.append(time.perf_counter() - t0)
        res[str(m)] = statistics.median(t)
    return res


def _mixed(rows: list[int], dtype: str) -> dict[str, dict[str, float]]:
    """Both systems in this process, call by call alternating; also checks them."""
    import numpy as np

    res: dict[str, dict[str, float]] = {s: {} for s in SYSTEMS}
    for m in rows:
        prob = _problem(m, dtype)
        steps = {s: STEPS[s](prob) for s in SYSTEMS}
        (Jb, gb), (Jt, gt) = _flat(steps["bpnet"]()), _flat(steps["torch"]())
        # bench/run.py's tolerances: float32 gradients through relu kinks differ by
        # 2.4e-4 relative between ISAs' summation orders (AVX2, m = 1000)
        tol_J, tol_g = S.check_tolerance(dtype)
        rel = np.linalg.norm(gb - gt) / np.linalg.norm(gb)
        if abs(Jb - Jt) > tol_J * abs(Jb) or rel > tol_g:
            raise SystemExit(f"m={m} {dtype}: bpnet and PyTorch disagree (J {Jb} vs {Jt}, "
                             f"gradient relative difference {rel:.1e})")
        t: dict[str, list[float]] = {s: [] for s in SYSTEMS}
        for k in range(_calls(m)):
            for s in SYSTEMS if k % 2 else SYSTEMS[::-1]:
                t0 = time.perf_counter()
                steps[s]()
                t[s].append(time.perf_counter() - t0)
        for s in SYSTEMS:
            res[s][str(m)] = statistics.median(t[s])
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="64,256,1000,2000,5000,10000")
    ap.add_argument("--rounds", type=int, default=3, help="alone: processes per system")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--out", help="also write the report to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    rows = [int(r) for r in a.rows.split(",")]
    dtypes = a.dtypes.split(",")
    if a.worker:
        system, dtype = a.worker.split("/")
        print(json.dumps(_worker(system, rows, dtype)))
        return 0
    import machine
    import torch

    import bpnet

    lines = [machine.short_header() + " (at the start)",
             f"{SIZES} relu, softmax output, lam {LAM}; one public cost + gradient per call; "
             f"bpnet on {bpnet.build_info()['max_threads']} threads ({bpnet.build_info()['isa']} "
             f"build), PyTorch {torch.__version__} on as many",
             f"alone: {a.rounds} rounds of a fresh process per system (rotated), median ms; "
             "mixed: both in one process, alternating", ""]
    for dtype in dtypes:
        mixed = _mixed(rows, dtype)  # first: it checks the two systems agree
        alone: dict[str, list[dict[str, float]]] = {s: [] for s in SYSTEMS}
        for k in range(a.rounds):
            for s in SYSTEMS[k % 2:] + SYSTEMS[:k % 2]:
                r = subprocess.run([sys.executable, __file__, "--worker", f"{s}/{dtype}",
                                    "--rows", a.rows], capture_output=True, text=True,
                                   check=True)
                alone[s].append(json.loads(r.stdout.strip().splitlines()[-1]))
        lines.append(f"{dtype}: m, leaf rows x leaves, alone ms (bpnet, PyTorch, PyTorch / "
                     "bpnet), mixed ms (the same)")
        for m in rows:
            b = statistics.median(r[str(m)] for r in alone["bpnet"])
            t = statistics.median(r[str(m)] for r in alone["torch"])
            mb, mt = mixed["bpnet"][str(m)], mixed["torch"][str(m)]
            leaves = "{} x {}".format(*leaf_rows(m))
            lines.append(f"  m {m:>6}  {leaves:>10}   alone {b * 1e3:9.3f} {t * 1e3:9.3f} "
                         f"{t / b:5.2f}x   mixed {mb * 1e3:9.3f} {mt * 1e3:9.3f} {mt / mb:5.2f}x")
        lines.append("")
    lines.append("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    machine.emit(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

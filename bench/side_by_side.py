"""bpnet's estimators beside scikit-learn's MLPs with the same settings, the way
a user coming from scikit-learn runs them (issue 20's acceptance table).

    python bench/side_by_side.py [--out FILE]

For each dataset (iris, wine, breast cancer, digits: classification; diabetes
with raw and scaled y: regression), each system's whole ``fit`` runs in a
fresh process: StandardScaler on X, lbfgs, hidden_layer_sizes=(20,),
activation="tanh", alpha=1e-4, max_iter=200, tol=1e-4, random_state=0, a 75/25
split (stratified for classification). Reported: the held-out score (accuracy
or R^2), the first fit's wall time in the process (lazy imports, thread pools
and buffers set up included: a user's first fit) and the same fit's time when
repeated in that process, the process's peak memory above what it held before
the first fit (ru_maxrss), and the iterations run. The CPU and the load are
named at the top.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DATASETS = ("iris", "wine", "breast_cancer", "digits", "diabetes", "diabetes_scaled_y")
SYSTEMS = ("bpnet", "sklearn")
SETTINGS = dict(hidden_layer_sizes=(20,), activation="tanh", solver="lbfgs", alpha=1e-4,
                max_iter=200, tol=1e-4, random_state=0)


def _worker(dataset: str, system: str) -> dict:
    import warnings

    from sklearn import datasets
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import StandardScaler

    import bpnet

    warnings.simplefilter("ignore", ConvergenceWarning)
    name = "diabetes" if dataset.startswith("diabetes") else dataset
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    regression = name == "diabetes"
    if dataset == "diabetes_scaled_y":
        y = (y - y.mean()) / y.std()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0,
                                          stratify=None if regression else y)
    scaler = StandardScaler().fit(Xtr)
    Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    cls = {("bpnet", False): bpnet.BPNetClassifier, ("bpnet", True): bpnet.BPNetRegressor,
           ("sklearn", False): MLPClassifier, ("sklearn", True): MLPRegressor}[system, regression]
    model = cls(**SETTINGS)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    model.fit(Xtr, ytr)
    seconds = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    model.fit(Xtr, ytr)  # the same fit again: without the first call's set-up
    warm = time.perf_counter() - t0
    return {"score": float(model.score(Xte, yte)), "seconds": seconds, "warm": warm,
            "peak_mib": max(0, rss1 - rss0) / 1024, "n_iter": int(model.n_iter_),
            "rows": len(X), "features": int(X.shape[1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--rounds", type=int, default=2, help="fresh processes per cell (best time)")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(*a.worker)))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import machine

    lines = [machine.short_header() + " (at the start)",
             f"settings (both systems): {SETTINGS}; StandardScaler on X; 75/25 split; each fit "
             f"in a fresh process, best wall time of {a.rounds} rounds", "",
             f"{'dataset':<18}{'rows x cols':>12}  {'system':<8}{'score':>8}{'first s':>9}"
             f"{'again s':>9}{'peak MiB':>10}{'iters':>7}"]
    for d in DATASETS:
        for s in SYSTEMS:
            runs = []
            for _ in range(a.rounds):
                r = subprocess.run([sys.executable, __file__, "--worker", d, s],
                                   capture_output=True, text=True, check=True)
                runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
            best = min(runs, key=lambda r: r["seconds"])
            lines.append(f"{d:<18}{best['rows']:>7} x {best['features']:<3}  {s:<8}"
                         f"{best['score']:>8.4f}{best['seconds']:>9.3f}"
                         f"{min(r['warm'] for r in runs):>9.4f}{best['peak_mib']:>10.1f}"
                         f"{best['n_iter']:>7}")
    la = os.getloadavg()
    lines.append(f"load average at end {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    machine.emit(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

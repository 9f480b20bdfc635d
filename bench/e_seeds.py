"""Case E's iteration count over random states: how many L-BFGS iterations
``BPNetClassifier`` and ``MLPClassifier`` need to reach case E's held-out
accuracy on the digits, for each of several ``random_state`` values (the
initial weights), with case E's settings and split (``systems.e_fit``).

    python bench/e_seeds.py [--seeds 12] [--step 5] [--out FILE]

Case E times one random state (0) at the first ``max_iter`` of a coarse grid
that reaches the target; this shows how much of its iteration count is that
state's luck. Each fit runs with OpenBLAS on one thread (scikit-learn's
fastest setting on this net); times are not taken: the iteration counts
decide case E's ratio together with the per-iteration cost that
``bench/run.py`` measures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine
import systems as S

SYSTEMS = {"bpnet/blas1": ("BPNetClassifier", 17), "sklearn/blas1": ("MLPClassifier", 15)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=12, help="random states 0 .. seeds-1")
    ap.add_argument("--step", type=int, default=5, help="max_iter grid step")
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    data = S.e_data()
    grid = range(args.step, args.max_iter + 1, args.step)
    lines = [machine.short_header(),
             f"case E's net and data; L-BFGS iterations (grid step {args.step}) to held-out "
             f"accuracy >= {S.E_TARGET}, by random_state; '-' = not within {args.max_iter}",
             f"{'random_state':>12}" + "".join(f"{name:>{w}}" for name, w in SYSTEMS.values())]
    got = {k: [] for k in SYSTEMS}
    for s in range(args.seeds):
        row = {k: S.e_first_k(k, data, grid, random_state=s) for k in SYSTEMS}
        for k, v in row.items():
            got[k].append(v)
        lines.append(f"{s:>12}" + "".join(f"{row[k] or '-':>{w}}"
                                          for k, (_, w) in SYSTEMS.items()))
        print(lines[-1], flush=True)
    never = args.max_iter + args.step  # a state that never reached it counts past the grid
    med = {k: statistics.median(v if v is not None else never for v in vals)
           for k, vals in got.items()}
    lines.append(f"{'median':>12}" + "".join(f"{med[k]:>{w}g}" for k, (_, w) in SYSTEMS.items()))
    machine.emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

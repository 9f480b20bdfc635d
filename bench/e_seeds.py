"""Case E's iteration count over random states: how many L-BFGS iterations
``BPNetClassifier`` and ``MLPClassifier`` need to reach case E's held-out
accuracy on the digits, for each of several ``random_state`` values (the
initial weights), with case E's settings (``bench/systems.py``: [64, 25, 10]
logistic, alpha 1.0, tol 1e-12, the same 75/25 split).

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
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine
import systems as S


def first_reaching(make, data, grid):
    """The first max_iter in ``grid`` whose fit reaches S.E_TARGET, or None."""
    Xtr, Xte, ytr, yte = data
    for k in grid:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at small max_iter
            model = make(k).fit(Xtr, ytr)
        if (model.predict(Xte) == yte).mean() >= S.E_TARGET:
            return k
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=12, help="random states 0 .. seeds-1")
    ap.add_argument("--step", type=int, default=5, help="max_iter grid step")
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    import bpnet

    data = S.e_data()
    grid = range(args.step, args.max_iter + 1, args.step)
    kw = dict(alpha=S.E_ALPHA, solver="lbfgs", tol=1e-12)
    makers = {
        "bpnet": lambda s: lambda k: bpnet.BPNetClassifier(
            hidden_layer_sizes=S.E_HIDDEN, activation="sigmoid", max_iter=k, random_state=s, **kw),
        "sklearn": lambda s: lambda k: MLPClassifier(
            hidden_layer_sizes=(S.E_HIDDEN,), activation="logistic", max_iter=k, random_state=s,
            **kw),
    }
    lines = [machine.short_header(),
             f"case E's net and data; L-BFGS iterations (grid step {args.step}) to held-out "
             f"accuracy >= {S.E_TARGET}, by random_state; '-' = not within {args.max_iter}",
             f"{'random_state':>12}{'BPNetClassifier':>17}{'MLPClassifier':>15}"]
    got = {k: [] for k in makers}
    with threadpool_limits(1, user_api="blas"):
        for s in range(args.seeds):
            row = {k: first_reaching(make(s), data, grid) for k, make in makers.items()}
            for k, v in row.items():
                got[k].append(v)
            lines.append(f"{s:>12}" + "".join(f"{row[k] or '-':>{w}}"
                                              for k, w in (("bpnet", 17), ("sklearn", 15))))
            print(lines[-1], flush=True)
    never = args.max_iter + args.step  # a state that never reached it counts past the grid
    med = {k: statistics.median(v if v is not None else never for v in vals)
           for k, vals in got.items()}
    lines.append(f"{'median':>12}{med['bpnet']:>17g}{med['sklearn']:>15g}")
    machine.emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

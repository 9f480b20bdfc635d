"""The attack census of issues 10 and 19 (not a benchmark): each attack in its
own interpreter under a timeout, classified as

- ``crash``: the process died (a signal, or the OpenMP runtime's exit 1);
- ``hang``: no verdict before the timeout (the process group is killed);
- ``unclean``: an error of the wrong kind (a traceback, a bare exception type
  where a named one is promised, a message that misnames the cause);
- ``wrong``: a silent wrong answer or a damaged/lost file;
- ``handled``: a clear error of the promised kind, or the right answer.

Run it against the installed bpnet, or an older build with
``PYTHONPATH=/path/to/old/site-packages python bench/attacks.py``.
``--json FILE`` writes the per-attack outcomes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

PRELUDE = """
import json, os, sys, signal, stat, threading, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import bpnet
# Ctrl-C raises KeyboardInterrupt however the census was started (a shell runs a
# background job with SIGINT ignored, and Python then installs no handler)
signal.signal(signal.SIGINT, signal.default_int_handler)
def verdict(v, note=""):
    print("VERDICT " + json.dumps([v, note]), flush=True)
def err_of(f):
    try:
        f()
    except BaseException as e:
        return e
    return None
rng = np.random.default_rng(0)
"""

A: dict[str, tuple[str, str, dict | None, float]] = {}  # name -> (class, code, env, timeout)


def join(*parts: str) -> str:
    """Snippets dedented one by one, then joined (a prefix and an attack body)."""
    return "\n".join(textwrap.dedent(part) for part in parts)


def attack(name: str, cls: str, code: str, env: dict | None = None, timeout: float = 30):
    A[name] = (cls, textwrap.dedent(code), env, timeout)


# -- crashes: thread counts -------------------------------------------------------------
attack("OMP_NUM_THREADS=5000, predict", "crash", """
    X = rng.standard_normal((20000, 20)); t = bpnet.random_theta([20, 16, 3], 0)
    p = bpnet.predict(t, [20, 16, 3], X)
    verdict("handled" if p.shape == (20000,) else "wrong")
""", env={"OMP_NUM_THREADS": "5000"})
attack("OMP_NUM_THREADS=5000, adam (P > 32k)", "crash", """
    X = rng.standard_normal((600, 100)); y = (X[:, 0] > 0).astype(int)
    n = bpnet.Network([100, 400, 2], output="softmax", rng=0)
    n.fit(X, y, solver="adam", max_iter=1, batch_size=300)
    verdict("handled" if np.isfinite(n.theta).all() else "wrong")
""", env={"OMP_NUM_THREADS": "5000"})
attack("OMP_STACKSIZE=16K, [1024, 1024, 10]", "crash", """
    X = rng.standard_normal((2000, 1024)); y = rng.integers(0, 10, 2000)
    J, g = bpnet.cost_grad(bpnet.random_theta([1024, 1024, 10], 0), [1024, 1024, 10], X, y,
                           n_threads=2)
    verdict("handled" if np.isfinite(J) else "wrong")
""", env={"OMP_STACKSIZE": "16K"})

# -- hangs: fork ------------------------------------------------------------------------
FORK = """
    import multiprocessing as mp
    X = rng.standard_normal((6000, 40)); y = rng.integers(0, 4, 6000)
    sizes = [40, 64, 4]; theta = bpnet.random_theta(sizes, 0)
    J0, _ = bpnet.cost_grad(theta, sizes, X, y, n_threads=2)
    p0 = bpnet.predict(theta, sizes, X, n_threads=2)
"""
attack("fork child: cost_grad", "hang", join(FORK, """
    pid = os.fork()
    if pid == 0:
        J, _ = bpnet.cost_grad(theta, sizes, X, y)
        os._exit(0 if J == J0 else 3)
    verdict("handled" if os.waitpid(pid, 0)[1] == 0 else "wrong")
"""))
attack("fork pool: predict", "hang", join(FORK, """
    def f(i):
        return bpnet.predict(theta, sizes, X).tobytes() == p0.tobytes()
    with mp.get_context("fork").Pool(2) as pool:
        ok = all(pool.map(f, range(4)))
    verdict("handled" if ok else "wrong")
"""))
attack("fork pool: estimator fit", "hang", join(FORK, """
    def f(i):
        c = bpnet.BPNetClassifier(8, max_iter=5, random_state=i).fit(X[:2000], y[:2000])
        return bool(np.isfinite(c.network_.theta).all())
    with mp.get_context("fork").Pool(2) as pool:
        ok = all(pool.map(f, range(2)))
    verdict("handled" if ok else "wrong")
"""))

# -- hangs: FIFOs ---------------------------------------------------------------------
for what, call in (
    ("bpnet.load", "bpnet.load('m.npz')"),
    ("read_metadata", "__import__('bpnet.persist').persist.read_metadata('m.npz')"),
    ("bpnet info", "__import__('bpnet.cli').cli.main(['info', 'm.npz'])"),
    ("gradcheck --model", "__import__('bpnet.cli').cli.main(['gradcheck', '--model', 'm.npz'])"),
):
    attack(f"FIFO: {what}", "hang", f"""
        os.mkfifo("m.npz")
        e = err_of(lambda: sys.exit({call}))
        code = e.code if isinstance(e, SystemExit) else None
        ok = (type(e).__name__ == "ModelFileError") or code == 1
        verdict("handled" if ok else "unclean", repr(e)[:120])
    """)

# -- hangs: gradcheck ---------------------------------------------------------------------
attack("bpnet gradcheck --layers 300,300,10", "hang", """
    from bpnet.cli import main
    t = time.time(); rc = main(["gradcheck", "--layers", "300,300,10"])
    verdict("handled" if time.time() - t < 10 else "wrong", f"rc={rc}")
""", timeout=30)

# -- hangs: Dask --------------------------------------------------------------------------
attack("Dask: SIGSTOP worker, default timeout", "hang", """
    import distributed
    if __name__ == "__main__":
        cl = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=50)
        c = distributed.Client(cl); c.wait_for_workers(2, timeout=60)
        X = rng.standard_normal((2000, 10)); y = rng.integers(0, 3, 2000)
        t0 = bpnet.random_theta([10, 8, 3], 0)
        local = bpnet.Network([10, 8, 3], lam=0.5, theta=t0).fit(X, y, max_iter=10)
        pids = c.run(os.getpid); victim = pids[sorted(pids)[-1]]
        def cb(info):
            if info.iteration == 3:
                os.kill(victim, signal.SIGSTOP)
        try:
            net = bpnet.Network([10, 8, 3], lam=0.5, theta=t0).fit(X, y, max_iter=10, client=c,
                                                                 callback=cb)
        finally:
            os.kill(victim, signal.SIGCONT)
        verdict("handled" if net.theta.tobytes() == local.theta.tobytes() else "wrong")
        os._exit(0)
""", timeout=90)

# -- silent wrong answers ------------------------------------------------------------------
SMALL = """
    sizes = [5, 4, 3]; P = bpnet.n_params(sizes)
    X = rng.standard_normal((20, 5)); y = rng.integers(0, 3, 20)
    t = bpnet.random_theta(sizes, 0)
"""
attack("cost_grad(out=theta)", "wrong", join(SMALL, """
    t0 = t.copy(); e = err_of(lambda: bpnet.cost_grad(t, sizes, X, y, out=t))
    verdict("handled" if isinstance(e, ValueError) and (t == t0).all() else "wrong", repr(e))
"""))
attack("cost_grad(out=) overlapping X", "wrong", join(SMALL, """
    buf = np.zeros(P + X.size); Xv = buf[P - 1:P - 1 + X.size].reshape(X.shape); Xv[...] = X
    J_ref, _ = bpnet.cost_grad(t, sizes, X, y)
    e = err_of(lambda: bpnet.cost_grad(t, sizes, Xv, y, out=buf[:P]))
    verdict("handled" if isinstance(e, ValueError) else "wrong", repr(e))
"""))
attack("forward(out=X)", "wrong", """
    h = rng.standard_normal((20, 5)); t = bpnet.random_theta([5, 5], 0)
    e = err_of(lambda: bpnet.forward(t, [5, 5], h, out=h))
    verdict("handled" if isinstance(e, ValueError) else "wrong", repr(e))
""")
attack("BPNetClassifier(dtype='garbage')", "wrong", """
    X = rng.standard_normal((40, 3)); y = (X[:, 0] > 0).astype(int)
    e = err_of(lambda: bpnet.BPNetClassifier(3, dtype='garbage', max_iter=2).fit(X, y))
    verdict("handled" if isinstance(e, ValueError) else "wrong", repr(e))
""")
# dtype=None became the documented default (float32 data trains in float32, any
# other in float64, as scikit-learn's MLP): the attack checks that meaning
attack("BPNetClassifier(dtype=None)", "wrong", """
    X = rng.standard_normal((40, 3)); y = (X[:, 0] > 0).astype(int)
    got = [bpnet.BPNetClassifier(3, dtype=None, max_iter=2).fit(x, y).network_.dtype.name
           for x in (X, X.astype(np.float32), X.astype(np.int64))]
    verdict("handled" if got == ["float64", "float32", "float64"] else "wrong", str(got))
""")
attack("Network(dtype=None)", "wrong", """
    e = err_of(lambda: bpnet.Network([3, 2], dtype=None))
    verdict("handled" if isinstance(e, ValueError) else "wrong", repr(e))
""")
attack("load: params dtype None", "wrong", """
    import hashlib
    X = rng.standard_normal((40, 3)); y = (X[:, 0] > 0).astype(int)
    bpnet.BPNetClassifier(3, max_iter=2).fit(X, y).save("m.npz")
    with np.load("m.npz") as f:
        a = {k: f[k] for k in f.files}
    body = json.loads(a["metadata"].tobytes())["body"]
    body["estimator"]["params"]["dtype"] = None
    can = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    a["metadata"] = np.frombuffer(json.dumps({"body": body, "sha256":
                                  hashlib.sha256(can).hexdigest()}).encode(), np.uint8)
    np.savez("m.npz", **a)
    # None is a valid dtype parameter now (the documented default): the file
    # loads, with the float64 network it holds, or is refused as a model file
    e = err_of(lambda: bpnet.load("m.npz"))
    ok = type(e).__name__ == "ModelFileError" or (
        e is None and bpnet.load("m.npz").network_.dtype == np.float64)
    verdict("handled" if ok else "wrong", repr(e)[:100])
""")
attack("one estimator fitted from two threads", "wrong", """
    X = rng.standard_normal((200, 3)); y = (X[:, 0] > 0).astype(int)
    clf = bpnet.BPNetClassifier(4, max_iter=25, random_state=0, solver="adam", tol=0.0)
    go = threading.Barrier(2); errs = []
    def fit(labels):
        go.wait()
        try:
            clf.fit(X, labels)
        except Exception as e:
            errs.append(e)
    ts = [threading.Thread(target=fit, args=(lab,)) for lab in (y, y + 5 + (X[:, 1] > 0))]
    [t.start() for t in ts]; [t.join() for t in ts]
    consistent = len(clf.loss_curve_) == 25 and len(clf.classes_) == clf.network_.layer_sizes[-1]
    clear = len(errs) == 1 and "fitted" in str(errs[0])
    verdict("handled" if consistent and clear else "wrong",
            f"curve {len(clf.loss_curve_)}, errors {[type(e).__name__ for e in errs]}")
""")
attack("predict from 8 threads on one model", "wrong", """
    X = rng.standard_normal((3000, 3)); y = (X[:, 0] > 0).astype(int)
    m = bpnet.BPNetClassifier(16, max_iter=20, random_state=0).fit(X, y)
    ref = m.predict_proba(X).tobytes(); bad = []
    def run():
        for _ in range(25):
            try:
                if m.predict_proba(X).tobytes() != ref:
                    bad.append("diff")
            except Exception as e:
                bad.append(type(e).__name__)
    ts = [threading.Thread(target=run) for _ in range(8)]
    [t.start() for t in ts]; [t.join() for t in ts]
    verdict("handled" if not bad else "wrong", f"{len(bad)} of 200 calls failed")
""")
attack("predict during fit", "wrong", """
    X = rng.standard_normal((3000, 3)); y = (X[:, 0] > 0).astype(int)
    ref = bpnet.Network([3, 16, 2], output="softmax", rng=1).fit(X, y, max_iter=30)
    net = bpnet.Network([3, 16, 2], output="softmax", rng=1); stop = threading.Event()
    def spam():
        while not stop.is_set():
            try:
                net.predict(X)
            except Exception:
                pass
    s = threading.Thread(target=spam); s.start()
    e = err_of(lambda: net.fit(X, y, max_iter=30)); stop.set(); s.join()
    ok = e is None and net.theta.tobytes() == ref.theta.tobytes()
    verdict("handled" if ok else "wrong", repr(e)[:100])
""")
attack("Ctrl-C during an early-stopping fit", "wrong", """
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    X = rng.standard_normal((600, 6)); y = ((X[:, 0] * X[:, 1] > 0) ^ (rng.random(600) < 0.2)
                                           ).astype(int)
    clf = bpnet.BPNetClassifier(16, solver="sgd", learning_rate_init=0.5, early_stopping=True,
                                validation_fraction=0.2, n_iter_no_change=1000, max_iter=1000,
                                random_state=0)
    scores = []
    def cb(i, loss, score):  # Ctrl-C at an epoch that is worse than the best so far
        scores.append(score)
        if i >= 20 and score < max(scores):
            os.kill(os.getpid(), signal.SIGINT)
    e = err_of(lambda: clf.fit(X, y, callback=cb))
    rs = check_random_state(0); rs.randint(np.iinfo(np.int32).max)
    _, Xv, _, yv = train_test_split(X, y, test_size=0.2, random_state=rs, stratify=y)
    kept = float(np.mean(np.argmax(clf.network_.predict_proba(Xv), axis=1) == yv))
    ok = isinstance(e, KeyboardInterrupt) and kept == clf.best_validation_score_
    verdict("handled" if ok else "wrong", f"kept {kept} best {clf.best_validation_score_}")
""")
for solver in ("lbfgs", "cg", "adam", "sgd"):
    attack(f"divergence ({solver}, early stopping): y = 1e160", "unclean", f"""
        X = rng.standard_normal((120, 3)); y = 1e160 * (1 + X[:, 0] ** 2)
        reg = bpnet.BPNetRegressor(3, solver="{solver}", early_stopping=True, max_iter=20,
                                   random_state=0)
        e = err_of(lambda: reg.fit(X, y))
        ok = (isinstance(e, FloatingPointError) and hasattr(e, "partial_result")
              and "theta or X" not in str(e) and " y " in f" {{e}} ")
        verdict("handled" if ok else "unclean", repr(e)[:160])
    """)
attack("divergence in the validation pass (sgd, lr 1e30)", "unclean", """
    X = rng.standard_normal((400, 3)); y = (X[:, 0] > 0).astype(int)
    c = bpnet.BPNetClassifier(8, solver="sgd", learning_rate_init=1e30, early_stopping=True,
                              max_iter=50, random_state=0)
    e = err_of(lambda: c.fit(X, y))
    ok = isinstance(e, FloatingPointError) and hasattr(e, "partial_result")
    verdict("handled" if ok else "unclean", repr(e)[:160])
""")
attack("mini-batch with all sample weights 0", "unclean", """
    X = rng.standard_normal((100, 3)); y = (X[:, 0] > 0).astype(int); w = np.ones(100)
    w[:50] = 0
    e = err_of(lambda: bpnet.Network([3, 2], output="softmax").fit(
        X, y, solver="adam", sample_weight=w, batch_size=25, shuffle=False, max_iter=2))
    verdict("handled" if e is None else "unclean", repr(e)[:120])
""")

# -- lost or damaged files ---------------------------------------------------------------
GOOD = """
    X = rng.standard_normal((50, 4)); y = (X[:, 0] > 0).astype(int)
    clf = bpnet.BPNetClassifier(3, max_iter=5, random_state=0).fit(X, y)
    clf.save("good.npz"); good = open("good.npz", "rb").read()
    def intact():
        return open("good.npz", "rb").read() == good and bpnet.load("good.npz") is not None
"""
for label, setup, obj in (
    ("set_params(activation='relu') after fit", "clf.set_params(activation='relu')", "clf"),
    ("NaN theta", "n = bpnet.Network([4, 3, 2], rng=0); n.theta[0] = np.nan", "n"),
    ("lam = -1", "n = bpnet.Network([4, 3, 2], rng=0); n.lam = -1", "n"),
    ("dtype float16", "n = bpnet.Network([4, 3, 2], rng=0); n.dtype = np.dtype('f2'); "
                      "n.theta = n.theta.astype('f2')", "n"),
):
    attack(f"save over a good file: {label}", "wrong", join(GOOD, f"""
        {setup}
        e = err_of(lambda: {obj}.save("good.npz"))
        try:
            ok = intact()
        except Exception:
            ok = False
        verdict("handled" if ok and e is not None else "wrong", repr(e)[:100])
    """))
# Never the real /dev/null: an unfixed save run as root replaces it for the
# whole machine (this census did so once). A node of the same device instead.
attack("save onto a device node (as root: a copy of /dev/null)", "wrong", """
    if os.geteuid() != 0:
        verdict("handled", "skipped: mknod needs root"); sys.exit()
    os.mknod("null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    e = err_of(lambda: bpnet.Network([3, 2]).save("null"))
    ok = stat.S_ISCHR(os.stat("null").st_mode)
    verdict("handled" if ok and e is not None else "wrong", repr(e)[:100])
""")
attack("save onto a FIFO", "wrong", """
    os.mkfifo("f.npz")
    e = err_of(lambda: bpnet.Network([3, 2]).save("f.npz"))
    ok = stat.S_ISFIFO(os.stat("f.npz").st_mode) and e is not None
    verdict("handled" if ok else "wrong", repr(e)[:100])
""")
attack("save onto a symlink", "wrong", """
    bpnet.Network([3, 2], rng=0).save("t.npz"); os.symlink("t.npz", "l.npz")
    n = bpnet.Network([3, 2], rng=1); e = err_of(lambda: n.save("l.npz"))
    ok = (e is None and os.path.islink("l.npz")
          and bpnet.load("t.npz").theta.tobytes() == n.theta.tobytes())
    verdict("handled" if ok else "wrong", repr(e)[:100])
""")
attack("save keeps the file mode (0640)", "wrong", """
    bpnet.Network([3, 2]).save("m.npz"); os.chmod("m.npz", 0o640)
    bpnet.Network([3, 2]).save("m.npz")
    mode = stat.S_IMODE(os.stat("m.npz").st_mode)
    verdict("handled" if mode == 0o640 else "wrong", oct(mode))
""")
attack("save onto a read-only file", "wrong", """
    bpnet.Network([3, 2], rng=0).save("m.npz"); os.chmod("m.npz", 0o444)
    before = open("m.npz", "rb").read()
    e = err_of(lambda: bpnet.Network([3, 2], rng=1).save("m.npz"))
    verdict("handled" if e is not None and open("m.npz", "rb").read() == before else "wrong",
            repr(e)[:100])
""")
attack("kill -9 during save, then save again", "wrong", """
    import subprocess
    code = ("import bpnet, numpy, os, signal\\n"
            "bpnet.Network([3, 2]).save('m.npz')\\n"
            "def die(f, **a):\\n    f.write(b'PK'); f.flush(); os.kill(os.getpid(), 9)\\n"
            "numpy.savez = die\\nbpnet.Network([3, 2]).save('m.npz')\\n")
    subprocess.run([sys.executable, "-c", code])
    bpnet.Network([3, 2]).save("m.npz")
    left = sorted(os.listdir("."))
    verdict("handled" if left == ["m.npz"] else "wrong", str(left))
""")
attack("zip bomb (320 MB of zeros in 0.3 MB)", "wrong", """
    import resource, zipfile
    bpnet.Network([4, 3, 2], rng=0).save("g.npz")
    with np.load("g.npz") as f:
        a = {k: f[k] for k in f.files}
    with zipfile.ZipFile("b.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k, v in a.items():
            with z.open(k + ".npy", "w", force_zip64=True) as f:
                if k == "theta":
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": "<f8", "fortran_order": False, "shape": (40_000_000,)})
                    for _ in range(305):
                        f.write(bytes(1 << 20))
                else:
                    np.lib.format.write_array(f, v)
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; t = time.time()
    e = err_of(lambda: bpnet.load("b.npz"))
    dt, mem = time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0
    ok = type(e).__name__ == "ModelFileError" and dt < 1 and mem < 65536
    verdict("handled" if ok else "wrong", f"{dt:.2f} s, +{mem / 1024:.0f} MiB")
""")
MALFORMED = """
    import hashlib, zipfile
    X = rng.standard_normal((40, 3)); y = np.array(["a", "b"])[(X[:, 0] > 0).astype(int)]
    bpnet.BPNetClassifier(3, max_iter=2).fit(X, y).save("m.npz")
    with np.load("m.npz") as f:
        a = {k: f[k] for k in f.files}
    body = json.loads(a["metadata"].tobytes())["body"]
    def write(b, raw=None, arrays=None):
        if arrays is not None:  # new arrays: their specs are recomputed
            b["arrays"] = {k: {"dtype": v.dtype.str, "shape": list(v.shape), "sha256":
                               hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()}
                           for k, v in arrays.items() if k != "metadata"}
        arrays = dict(a if arrays is None else arrays)
        can = json.dumps(b, sort_keys=True, separators=(",", ":")).encode()
        meta = raw or json.dumps({"body": b, "sha256": hashlib.sha256(can).hexdigest()}).encode()
        arrays["metadata"] = np.frombuffer(meta, np.uint8)
        np.savez("v.npz", **arrays)
    def judge():
        e = err_of(lambda: bpnet.load("v.npz"))
        return "ok" if type(e).__name__ == "ModelFileError" else repr(e)[:80]
"""
for label, edit in (
    ("metadata: network is a list", "b['network'] = [1]; write(b)"),
    ("metadata: estimator params a string", "b['estimator']['params'] = 'x'; write(b)"),
    ("metadata: training.n_iter a string", "b['training']['n_iter'] = 'x'; write(b)"),
    ("metadata: nested 100,000 deep", "write(b, raw=b'{\"body\": ' + b'[' * 100000 + "
                                      "b']' * 100000 + b', \"sha256\": \"0\"}')"),
    ("metadata: a 100,000-digit number", "write(b, raw=b'{\"body\": {\"format\": "
                                         "\"bpnet-model\", \"format_version\": 1' + b'0' * "
                                         "100000 + b'}}')"),
    ("metadata: loss_curve spec shape a string", "b['arrays']['loss_curve']['shape'] = 'x'; "
                                                 "write(b)"),
    ("classes unsorted", "write(b, arrays=dict(a, classes=a['classes'][::-1].copy()))"),
    ("optimizer_step -3", "b['estimator']['optimizer_step'] = -3; write(b)"),
    ("hidden_layer_sizes [5] vs network [3]",
     "b['estimator']['params']['hidden_layer_sizes'] = [5]; write(b)"),
):
    attack(f"malformed file: {label}", "unclean", join(MALFORMED, f"""
        b = json.loads(json.dumps(body))
        {edit}
        r = judge()
        verdict("handled" if r == "ok" else ("wrong" if r == "None" else "unclean"), r)
    """))
attack("malformed file: a non-.npy member", "unclean", join(MALFORMED, """
    write(json.loads(json.dumps(body)))
    with zipfile.ZipFile("v.npz", "a") as z:
        z.writestr("notes.txt", "hello")
    r = judge()
    verdict("handled" if r == "ok" else "unclean", r)
"""))

# -- the command line ----------------------------------------------------------------------
CLI = """
    import contextlib, io
    from bpnet.cli import main
    X = rng.standard_normal((60, 4)); y = (X[:, 0] > 0).astype(int)
    np.savetxt("d.csv", np.c_[X, y], delimiter=",", fmt="%.6f")
    def run(argv, max_seconds=60):
        err = io.StringIO(); t = time.time()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code
            except BaseException as e:
                return "unclean", f"escaped {type(e).__name__}"
        lines = err.getvalue().splitlines()
        if time.time() - t > max_seconds:
            return "wrong", f"took {time.time() - t:.0f} s"
        if code == 1 and len(lines) == 1:
            return "handled", lines[0][:100]
        if code == 2 and lines and "error:" in lines[-1]:
            return "handled", lines[-1][:100]
        return "unclean", f"exit {code}, {len(lines)} lines"
"""
for label, prep, argv, limit in (
    ("train --hidden 1000000000", "", ["train", "--hidden", "1000000000", "-q"], 60),
    ("train: a CSV field of 200,000 characters",
     "open('l.csv', 'w').write('a,b\\n' + '1' * 200000 + ',1\\n')", ["train", "l.csv", "-q"], 60),
    ("gradcheck --examples 1000000000", "", ["gradcheck", "--examples", "1000000000"], 20),
    ("train: divergence with early stopping", "np.savez('v.npz', X=X * 1e5, y=y)",
     ["train", "v.npz", "--solver", "sgd", "--learning-rate", "1e30", "-q", "-o", "o.npz"], 60),
    ("train: .npz with object arrays",
     "np.savez('o.npz', X=np.array([{'a': 1}], dtype=object), y=np.zeros(1))",
     ["train", "o.npz", "-q"], 60),
    ("evaluate a Network on string labels",
     "bpnet.Network([4, 3, 2]).save('n.npz'); "
     "open('s.csv', 'w').write('a,b,c,d,l\\n1,2,3,4,x\\n2,3,4,5,y\\n')",
     ["evaluate", "n.npz", "s.csv"], 60),
    ("train -o into a missing directory (checked first)", "",
     ["train", "d.csv", "-q", "--iterations", "300000", "--solver", "adam", "--tol", "0",
      "--validation-split", "0", "-o", "no/dir/m.npz"], 5),
    ("train --plot onto a file (checked first)", "",
     ["train", "d.csv", "-q", "--iterations", "300000", "--solver", "adam", "--tol", "0",
      "--validation-split", "0", "--plot", "d.csv/p"], 5),
    ("train --learning-rate with lbfgs", "", ["train", "d.csv", "-q", "--learning-rate", "0.1"],
     60),
):
    attack(f"CLI: {label}", "unclean", join(CLI, f"""
        {prep}
        v, note = run({argv!r}, {limit})
        if {label!r}.endswith("with lbfgs") and v == "handled" and "learning" not in note:
            v = "wrong"  # refused, but not for the ignored flag
        verdict(v, note)
    """), timeout=90)


# -- issue 19: ONNX export (item 4) -------------------------------------------------------
ONNX = """
    import onnxruntime as ort
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    def run(model, X):
        s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in s.get_outputs()], s.run(None, {"X": X})))
"""
attack("ONNX: StandardScaler(with_mean=False)", "wrong", join(ONNX, """
    X = rng.standard_normal((300, 3)) + 3; y = (X[:, 0] > 3).astype(int)
    p = make_pipeline(StandardScaler(with_mean=False),
                      bpnet.BPNetClassifier(8, max_iter=300, random_state=0)).fit(X, y)
    X32 = X.astype(np.float32); o = run(bpnet.to_onnx(p), X32)
    d = float(np.abs(o["probabilities"] - p.predict_proba(X32)).max())
    verdict("handled" if d < 1e-5 else "wrong", f"max |dp| {d:.2g}")
"""))
for label, values in (("uint64 labels >= 2**63", "np.array([1, 2**63, 2**64 - 1], np.uint64)"),
                      ("float labels 2**24, 2**24 + 1 (float32 export)",
                       "np.array([3.0, 2.0**24, 2.0**24 + 1])")):
    attack(f"ONNX: {label}", "wrong", join(ONNX, f"""
        g = np.arange(150) % 3
        X = rng.standard_normal((150, 2)) * 0.3 + np.c_[g * 3.0, -g * 2.0]
        y = {values}[g]
        c = bpnet.BPNetClassifier(6, max_iter=300, random_state=0).fit(X, y)
        X32 = X.astype(np.float32); got = run(bpnet.to_onnx(c), X32)["label"]
        want = c.predict(X32)
        ok = [int(v) if v.is_integer() else v for v in map(float, got)] == [
            int(v) if v.is_integer() else v for v in map(float, want)] and got.tolist() == \
            want.tolist()
        verdict("handled" if ok else "wrong", f"{{sorted(set(got.tolist()))}}")
    """))
for label, off, spread in (("features near 1.7e9", 1.7e9, 1e3),
                           ("features near 1e6, spread 0.05", 1e6, 0.05)):
    attack(f"ONNX: float32 export, {label}", "wrong", join(ONNX, f"""
        X = {off!r} + {spread!r} * rng.standard_normal((300, 3))
        y = ((X[:, 0] - {off!r}) + 0.5 * (X[:, 1] - {off!r}) > 0).astype(int)
        p = make_pipeline(StandardScaler(),
                          bpnet.BPNetClassifier(6, max_iter=300, random_state=0)).fit(X, y)
        e = err_of(lambda: bpnet.to_onnx(p))
        if isinstance(e, ValueError) and "float64" in str(e):
            verdict("handled", str(e)[:100])
        elif e is not None:
            verdict("unclean", repr(e)[:100])
        else:  # exported: it must keep the 1e-5 promise on the user's features
            d = float(np.abs(run(bpnet.to_onnx(p), X.astype(np.float32))["probabilities"]
                             - p.predict_proba(X)).max())
            verdict("handled" if d < 1e-5 else "wrong", f"max |dp| {{d:.2g}}")
    """))

# -- issue 19: scikit-learn conversion (item 5) -----------------------------------------------
SKL = """
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    X = rng.standard_normal((300, 4)); y = (X[:, 0] > 0).astype(int)
"""
attack("from_sklearn(MLPRegressor(loss='poisson'))", "wrong", join(SKL, """
    m = MLPRegressor(hidden_layer_sizes=(5,), loss="poisson", max_iter=200,
                     random_state=0).fit(X, np.exp(0.3 * X[:, 0]))
    e = err_of(lambda: bpnet.from_sklearn(m))
    if e is None:
        d = float(np.abs(bpnet.from_sklearn(m).predict(X) - m.predict(X)).max())
        verdict("handled" if d < 1e-9 else "wrong", f"converted; max |d| {d:.3g}")
    else:
        verdict("handled" if isinstance(e, ValueError) else "unclean", repr(e)[:100])
"""))
attack("from_sklearn(early-stopped MLPClassifier), then save", "unclean", join(SKL, """
    m = MLPClassifier(hidden_layer_sizes=(5,), early_stopping=True, max_iter=200,
                      random_state=0).fit(X, y)
    est = bpnet.from_sklearn(m)
    e = err_of(lambda: est.save("m.npz"))
    ok = e is None and bpnet.load("m.npz").validation_scores_ == list(m.validation_scores_)
    verdict("handled" if ok else "unclean", repr(e)[:120])
"""))
attack("to_sklearn() of an early-stopped estimator, then warm-start fit", "unclean", join(SKL, """
    b = bpnet.BPNetClassifier(5, solver="adam", early_stopping=True, max_iter=30,
                              random_state=0).fit(X, y)
    m = b.to_sklearn(); m.set_params(warm_start=True, max_iter=3)
    e = err_of(lambda: m.fit(X, y))
    verdict("handled" if e is None else "unclean", repr(e)[:120])
"""))

# -- issue 19: files (items 9, 11, 12) ------------------------------------------------------
attack("save through a link another user planted in a sticky /tmp-like directory", "wrong", """
    if os.geteuid() != 0:
        verdict("handled", "skipped: a second user's link needs root"); sys.exit()
    os.mkdir("shared"); os.chmod("shared", 0o1777)
    bpnet.Network([3, 2], rng=0).save("victim.npz"); before = open("victim.npz", "rb").read()
    os.symlink(os.path.abspath("victim.npz"), "shared/m.npz")
    os.lchown("shared/m.npz", 54321, 54321)
    e = err_of(lambda: bpnet.Network([3, 2], rng=1).save("shared/m.npz"))
    ok = open("victim.npz", "rb").read() == before and isinstance(e, PermissionError)
    verdict("handled" if ok else "wrong", repr(e)[:100])
""")
attack("metadata with a duplicate JSON key", "wrong", """
    import hashlib
    bpnet.Network([3, 4, 2], activation="tanh", rng=0).save("m.npz")
    with np.load("m.npz") as f:
        a = {k: f[k] for k in f.files}
    body = json.loads(a.pop("metadata").tobytes())["body"]
    relu = json.loads(json.dumps(body)); relu["network"]["activation"] = "relu"
    can = lambda b: json.dumps(b, sort_keys=True, separators=(",", ":")).encode()
    text = json.dumps({"body": body, "sha256": hashlib.sha256(can(relu)).hexdigest()})
    text = text.replace('"activation": "tanh"', '"activation": "tanh", "activation": "relu"')
    np.savez("d.npz", metadata=np.frombuffer(text.encode(), np.uint8), **a)
    e = err_of(lambda: bpnet.load("d.npz"))
    verdict("handled" if type(e).__name__ == "ModelFileError" else "wrong", repr(e)[:100])
""")
attack("valid-looking bomb: an all-zero [1000, 40000, 1] network in 0.3 MB", "wrong", """
    import hashlib, resource, zipfile
    bpnet.Network([3, 2], rng=0).save("t.npz")
    with np.load("t.npz") as f:
        a = {k: f[k] for k in f.files}
    body = json.loads(a["metadata"].tobytes())["body"]
    sizes = [1000, 40000, 1]; P = bpnet.n_params(sizes); zero = bytes(1 << 20)
    h = hashlib.sha256()
    for s in range(0, 8 * P, len(zero)):
        h.update(zero[:min(len(zero), 8 * P - s)])
    body["network"].update(layer_sizes=sizes, n_params=P)
    body["arrays"]["theta"] = {"dtype": "<f8", "shape": [P], "sha256": h.hexdigest()}
    can = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    meta = json.dumps({"body": body, "sha256": hashlib.sha256(can).hexdigest()}).encode()
    with zipfile.ZipFile("b.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("theta.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (P,)})
            for s in range(0, 8 * P, len(zero)):
                f.write(zero[:min(len(zero), 8 * P - s)])
        for k, v in (("metadata", np.frombuffer(meta, np.uint8)),
                     ("loss_history", a["loss_history"])):
            with z.open(k + ".npy", "w") as f:
                np.lib.format.write_array(f, v)
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    e = err_of(lambda: bpnet.load("b.npz"))
    mem = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024
    ok = type(e).__name__ == "ModelFileError" and "max_bytes" in str(e) and mem < 64
    verdict("handled" if ok else "wrong", f"{os.path.getsize('b.npz') >> 10} kB file, "
            f"+{mem:.0f} MiB, {type(e).__name__}")
""", timeout=120)


def run_one(name: str) -> tuple[str, str]:
    _, code, env, timeout = A[name]
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + code], cwd=d, text=True, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, **(env or {})),
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "hang", f"no verdict in {timeout:g} s"
    lines = [line for line in out.splitlines() if line.startswith("VERDICT ")]
    if lines:
        v, note = json.loads(lines[-1][len("VERDICT "):])
        return v, note
    if proc.returncode < 0:
        return "crash", f"signal {-proc.returncode}"
    tail = (err.strip().splitlines() or [""])[-1][:160]
    if "libgomp" in err or "terminate" in err:
        return "crash", tail
    return "unclean", f"exit {proc.returncode}: {tail}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write per-attack outcomes here")
    p.add_argument("-k", default="", help="only attacks whose name contains this")
    args = p.parse_args()
    results = {}
    for name in A:
        if args.k not in name:
            continue
        t = time.time()
        v, note = run_one(name)
        results[name] = {"class": A[name][0], "outcome": v, "note": note}
        print(f"{v:8s} {time.time() - t:5.1f}s  {name}  [{note}]", flush=True)
    counts = collections.Counter(r["outcome"] for r in results.values())
    print("\ncounts:", dict(sorted(counts.items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

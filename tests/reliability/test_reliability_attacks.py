"""Issue 10's attacks, each run in a fresh interpreter under a timeout.

A crash (the child dies from a signal), a hang (no result before the
timeout; the child's whole process group is then killed) or a wrong answer
fails the test and never takes the test run down with it. Every attack
prints one ``RESULT {json}`` line that the test then judges.

Cheap in-process attacks share one child per group (a module fixture), so
the default suite pays for a few interpreter starts, not one per attack;
attacks that can hang or need their own environment (fork, FIFOs,
OMP_NUM_THREADS, SIGKILL, SIGINT, Dask) get their own child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from loadaware import generous, load_factor

pytest.importorskip("sklearn")

PRELUDE = """
import json, os, sys, signal, threading, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import bpnet
# Ctrl-C raises KeyboardInterrupt however pytest was started (a shell runs a
# background job with SIGINT ignored, and Python then installs no handler)
signal.signal(signal.SIGINT, signal.default_int_handler)

def report(**kw):
    print("RESULT " + json.dumps(kw), flush=True)

def outcome(f):
    try:
        f()
    except BaseException as err:
        return type(err).__name__ + ": " + " ".join(str(err).split())
    return "ok"
"""


def attack(code: str, timeout: float = 60, env: dict | None = None, cwd=None) -> dict:
    """Run ``code`` in a fresh interpreter; return its RESULT dict. ``timeout``
    is what an idle machine needs: the hang guard is :func:`generous` of it."""
    timeout = generous(timeout)
    full = PRELUDE + textwrap.dedent(code)
    environ = dict(os.environ, PYTHONFAULTHANDLER="1", **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-c", full], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=environ, cwd=cwd, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it forked
        out, err = proc.communicate()
        pytest.fail(f"the attack hung: no result within {timeout} s\n{err[-3000:]}")
    if proc.returncode < 0:
        pytest.fail(f"the attack killed the process (signal {-proc.returncode})\n{err[-3000:]}")
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{err[-3000:]}"
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT line\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    return json.loads(lines[-1][len("RESULT "):])


# --- 3. thread counts: OMP_NUM_THREADS=5000, n_threads honoured and validated ---------
def test_huge_omp_num_threads_does_not_kill_the_process():
    r = attack(
        """
        rng = np.random.default_rng(0)
        X = rng.standard_normal((3000, 100)); y = (X[:, 0] > 0).astype(np.int64)
        sizes = [100, 400, 2]  # P = 41,202: adam_update's multi-threaded size
        net = bpnet.Network(sizes, output="softmax", rng=0)
        net.fit(X, y, solver="adam", max_iter=2, batch_size=256)
        theta = net.theta
        J, _ = bpnet.cost_grad(theta, sizes, X, y, 0.1, output="softmax")
        p = bpnet.predict(theta, sizes, X)
        h = bpnet.forward(theta, sizes, X, output="softmax")
        clf = bpnet.BPNetClassifier(20, max_iter=3, random_state=0).fit(X[:500], y[:500])
        clf.predict(X)
        from bpnet import _runtime as R
        report(J=J, n_pred=int(p.size), rows=int(h.shape[0]),
               threads=R.effective_threads(None), cpus=R.usable_cpus(),
               omp=os.environ["OMP_NUM_THREADS"], core_max=int(bpnet._native.core.max_threads()))
        """,
        env={"OMP_NUM_THREADS": "5000"},
    )
    assert r["omp"] == "5000"
    assert r["threads"] == r["cpus"] <= os.cpu_count() and r["core_max"] <= r["cpus"]
    assert r["n_pred"] == 3000 and r["rows"] == 3000 and r["J"] > 0


def test_n_threads_validated_everywhere():
    r = attack(
        """
        X = np.zeros((4, 3)); y = np.zeros(4, np.int64); theta = bpnet.random_theta([3, 2], 0)
        bad = [0, -2, 1025, 2.0, "2", True]
        calls = {
            "cost_grad": lambda n: bpnet.cost_grad(theta, [3, 2], X, y, n_threads=n),
            "forward": lambda n: bpnet.forward(theta, [3, 2], X, n_threads=n),
            "predict": lambda n: bpnet.predict(theta, [3, 2], X, n_threads=n),
            "Network": lambda n: bpnet.Network([3, 2], n_threads=n),
            "estimator": lambda n: bpnet.BPNetClassifier(n_threads=n).fit(X, [0, 1, 0, 1]),
        }
        report(**{k: [outcome(lambda: f(n)) for n in bad] for k, f in calls.items()})
        """
    )
    for name, outcomes in r.items():
        for o in outcomes:
            assert o.startswith("ValueError: n_threads must be"), (name, o)


# --- 5. fork after bpnet ran on 2 threads ----------------------------------------------
FORK_ATTACK = """
import multiprocessing as mp
rng = np.random.default_rng(0)
X = rng.standard_normal((6000, 40)); y = rng.integers(0, 4, 6000)
sizes = [40, 64, 4]
theta = bpnet.random_theta(sizes, 0)
J0, g0 = bpnet.cost_grad(theta, sizes, X, y, 0.5, n_threads=2)  # the thread pool exists now
p0 = bpnet.predict(theta, sizes, X, n_threads=2)

def work(i):
    J, g = bpnet.cost_grad(theta, sizes, X, y, 0.5)
    p = bpnet.predict(theta, sizes, X)
    net = bpnet.Network(sizes, output="softmax", rng=i).fit(X, y, max_iter=3)
    big = bpnet.Network([40, 900, 4], output="softmax", rng=i)  # P > 32k: adam's threaded size
    big.fit(X[:600], y[:600], solver="adam", max_iter=1, batch_size=300)
    clf = bpnet.BPNetClassifier(8, max_iter=3, random_state=i).fit(X[:800], y[:800])
    clf.predict(X[:50])
    return (J == J0 and g.tobytes() == g0.tobytes() and p.tobytes() == p0.tobytes(),
            bool(np.isfinite(net.theta).all() and np.isfinite(big.theta).all()))

with mp.get_context("fork").Pool(2) as pool:
    pool_results = pool.map(work, range(4))
pid = os.fork()
if pid == 0:
    same, finite = work(9)
    os._exit(0 if same and finite else 3)
_, status = os.waitpid(pid, 0)
report(pool=pool_results, child_status=status)
"""


def test_fork_children_run_after_two_threads():
    r = attack(FORK_ATTACK, timeout=120)
    assert r["pool"] == [[True, True]] * 4, "a forked worker computed a different result"
    assert r["child_status"] == 0


# --- 6. FIFOs and other non-regular files ------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device node (mknod) needs root")
def test_fifo_and_devices_never_block_or_get_replaced(tmp_path):
    r = attack(
        """
        import stat
        from bpnet.persist import read_metadata
        from bpnet.cli import main
        os.mkfifo("model.npz")
        DEVNULL = "null"
        os.mknod(DEVNULL, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        net = bpnet.Network([3, 2], rng=0)
        res = {
            "load": outcome(lambda: bpnet.load("model.npz")),
            "read_metadata": outcome(lambda: read_metadata("model.npz")),
            "info": main(["info", "model.npz"]),
            "gradcheck": main(["gradcheck", "--model", "model.npz"]),
            "save_fifo": outcome(lambda: net.save("model.npz")),
            # never the real /dev/null: a buggy save run as root would replace it for
            # the whole machine; a node of the same device in the test's directory
            "save_devnull": outcome(lambda: net.save(DEVNULL)),
            "fifo_kept": __import__("stat").S_ISFIFO(os.stat("model.npz").st_mode),
            "devnull_kept": __import__("stat").S_ISCHR(os.stat(DEVNULL).st_mode),
        }
        os.mkfifo("data.csv")
        res["train_on_fifo"] = main(["train", "data.csv", "-q"])
        report(**res)
        """,
        timeout=60, cwd=tmp_path,
    )
    for key in ("load", "read_metadata"):
        assert r[key].startswith("ModelFileError: model.npz: is a FIFO"), r[key]
    assert r["info"] == 1 and r["gradcheck"] == 1 and r["train_on_fifo"] == 1
    assert r["save_fifo"].startswith("OSError") and "not a regular file" in r["save_fifo"]
    assert "character device, not a regular file" in r["save_devnull"]
    assert r["fifo_kept"] and r["devnull_kept"]


# --- 7. Dask: a stopped worker ------------------------------------------------------------
def test_dask_default_step_timeout_is_set():
    import inspect

    pytest.importorskip("distributed")
    from bpnet import distributed as bdist

    # Network.fit(client=) builds this objective; without timeout= it passes none
    assert inspect.signature(bdist.DistributedObjective.__init__).parameters[
        "timeout"].default == "auto"


@pytest.mark.slow
def test_dask_stopped_worker_is_treated_as_lost_and_its_shard_resent():
    pytest.importorskip("distributed")
    r = attack(
        """
        import distributed
        from bpnet import distributed as bdist
        if __name__ == "__main__":
            cl = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                          dashboard_address=None, silence_logs=50)
            c = distributed.Client(cl); c.wait_for_workers(2, timeout=60)
            rng = np.random.default_rng(0)
            X = rng.standard_normal((2000, 10)); y = rng.integers(0, 3, 2000)
            sizes = [10, 8, 3]; t0 = bpnet.random_theta(sizes, 0)
            local = bpnet.Network(sizes, lam=0.5, theta=t0).fit(X, y, max_iter=10)
            pids = c.run(os.getpid); victim = pids[sorted(pids)[-1]]
            objs = []
            class Spy(bdist.DistributedObjective):
                def __init__(self, *a, **k):
                    super().__init__(*a, **k); objs.append(self)
            bdist.DistributedObjective = Spy
            t = {}
            def cb(info):
                if info.iteration == 3:
                    os.kill(victim, signal.SIGSTOP); t["stop"] = time.time()
            try:
                net = bpnet.Network(sizes, lam=0.5, theta=t0).fit(
                    X, y, max_iter=10, client=c, callback=cb)  # default timeout
                after = time.time() - t["stop"]
            finally:
                os.kill(victim, signal.SIGCONT)
            report(same=net.theta.tobytes() == local.theta.tobytes(),
                   history=net.loss_history == local.loss_history, after=after,
                   resent=objs[0].resent_shards, unresponsive=len(objs[0].unresponsive))
            c.close(); cl.close()
        """,
        timeout=180,
    )
    assert r["same"] and r["history"], "the recovered fit differs from the local one"
    assert r["resent"] >= 1 and r["unresponsive"] == 1
    assert r["after"] < 30 * load_factor(), (
        f"the fit took {r['after']:.1f} s after the worker stopped")


# --- 8. gradcheck cost guard ----------------------------------------------------------------
def test_gradcheck_refuses_with_the_cost_or_samples():
    r = attack(
        """
        import io, contextlib
        from bpnet.cli import main
        err = io.StringIO()
        t = time.time()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            refused = main(["gradcheck", "--layers", "300,300,10"])
            refused_m = main(["gradcheck", "--examples", "1000000000"])
        t_refuse = time.time() - t
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            sampled = main(["gradcheck", "--layers", "300,300,10", "--sample", "60"])
        py = outcome(lambda: bpnet.check_gradients((300, 300, 10)))
        rep = bpnet.check_gradients((300, 300, 10), sample=40, lam=1.0)
        report(refused=refused, refused_m=refused_m, t_refuse=t_refuse,
               err=err.getvalue().splitlines(), sampled=sampled, py=py,
               n_checked=int(rep.checked.size), ok=rep.ok(),
               nan=int(np.isnan(rep.numerical).sum()), P=int(rep.numerical.size))
        """
    )
    assert r["refused"] == 1 and r["refused_m"] == 1 and r["t_refuse"] < 5 * load_factor()
    assert len(r["err"]) == 2
    assert "would take about" in r["err"][0] and "--sample" in r["err"][0]
    assert "m=1000000000" in r["err"][1]
    assert r["sampled"] == 0
    assert r["py"].startswith("ValueError: the gradient check") and "sample=" in r["py"]
    assert 40 <= r["n_checked"] <= 44 and r["ok"] and r["nan"] == r["P"] - r["n_checked"]


# --- 9-12, 14: silent wrong answers (one child for the lot) ------------------------------------
QUICK_ATTACKS = """
from bpnet import functional as F
from bpnet._guard import ConcurrentFitError
rng = np.random.default_rng(0)
res = {}

# 9. out= overlapping an input
sizes = [5, 4, 3]; P = bpnet.n_params(sizes)
X = rng.standard_normal((20, 5)); y = rng.integers(0, 3, 20)
t = bpnet.random_theta(sizes, 0); t_before = t.copy()
res["out_is_theta"] = outcome(lambda: bpnet.cost_grad(t, sizes, X, y, out=t))
res["theta_untouched"] = t.tobytes() == t_before.tobytes()
buf = np.zeros(P + X.size)
Xv = buf[P - 1:P - 1 + X.size].reshape(X.shape); Xv[...] = X
res["out_overlaps_X"] = outcome(lambda: bpnet.cost_grad(t, sizes, Xv, y, out=buf[:P]))
w = np.ones(P + 20)
res["out_overlaps_w"] = outcome(
    lambda: bpnet.cost_grad(t, sizes, X, y, sample_weight=w[P - 5:P + 15], out=w[:P]))
Y = np.zeros((20 + 2, 3)); Y[:20, 0] = 1
res["out_overlaps_Y"] = outcome(
    lambda: bpnet.cost_grad(t, sizes, X, Y[:20], out=Y.reshape(-1)[:P]))
h = np.zeros((20, 5))
t55 = bpnet.random_theta([5, 5], 0)
res["forward_out_is_X"] = outcome(lambda: bpnet.forward(t55, [5, 5], h, out=h))
g = np.empty(P)
J, _ = bpnet.cost_grad(t, sizes, X, y, out=g)
res["separate_out_ok"] = bool(np.isfinite(J))

# 10. dtype garbage / None
Xc = rng.standard_normal((40, 3)); yc = (Xc[:, 0] > 0).astype(int)
for d in ("garbage", None, "float16", "int64", "complex128", True):
    res[f"dtype_{d}"] = outcome(
        lambda: bpnet.BPNetClassifier(3, dtype=d, max_iter=2).fit(Xc, yc))
    res[f"net_dtype_{d}"] = outcome(lambda: bpnet.Network([3, 2], dtype=d))
res["dtype_f4"] = outcome(lambda: bpnet.BPNetClassifier(3, dtype="f4", max_iter=2).fit(Xc, yc))

# 11. one estimator fitted from two threads at once
clf = bpnet.BPNetClassifier(4, max_iter=30, random_state=0, solver="adam", tol=0.0)
inside, second_done = threading.Event(), threading.Event()
def cb(i, loss, score):
    inside.set()
    second_done.wait(10)
errors = []
def fit_a():
    try:
        clf.fit(Xc, yc, callback=cb)
    except BaseException as e:
        errors.append(("a", type(e).__name__))
def fit_b():
    inside.wait(10)
    try:
        clf.fit(Xc, np.where(yc == 1, 7, 5) + (Xc[:, 1] > 0))
    except BaseException as e:
        errors.append(("b", type(e).__name__, str(e)))
    second_done.set()
ta, tb = threading.Thread(target=fit_a), threading.Thread(target=fit_b)
ta.start(); tb.start(); ta.join(); tb.join()
res["concurrent_fit_errors"] = errors
res["concurrent_fit_curve"] = len(clf.loss_curve_)
res["concurrent_fit_classes"] = clf.classes_.tolist()
res["concurrent_fit_outputs"] = int(clf.network_.layer_sizes[-1])
res["refit_after"] = outcome(lambda: clf.fit(Xc, yc))

# 12. concurrent predict on one fitted model, and predict during fit
Xp = rng.standard_normal((3000, 3)); yp = (Xp[:, 0] + Xp[:, 1] > 0).astype(int)
model = bpnet.BPNetClassifier(16, max_iter=20, random_state=0).fit(Xp, yp)
ref_p, ref_proba = model.predict(Xp).tobytes(), model.predict_proba(Xp).tobytes()
counts = {"ok": 0, "wrong": 0, "error": 0}
lock = threading.Lock()
def predictor():
    for k in range(25):
        try:
            same = (model.predict(Xp).tobytes() == ref_p if k % 2 else
                    model.predict_proba(Xp).tobytes() == ref_proba)
            key = "ok" if same else "wrong"
        except Exception:
            key = "error"
        with lock:
            counts[key] += 1
threads = [threading.Thread(target=predictor) for _ in range(8)]
[th.start() for th in threads]; [th.join() for th in threads]
res["concurrent_predict"] = counts
net = bpnet.Network([3, 16, 2], output="softmax", rng=1)
ref_net = bpnet.Network([3, 16, 2], output="softmax", rng=1).fit(Xp, yp, solver="lbfgs",
                                                                 max_iter=30)
stop = threading.Event(); seen = {"n": 0, "err": 0}
def spam():
    while not stop.is_set():
        try:
            net.predict(Xp); net.predict_proba(Xp); seen["n"] += 1
        except Exception:
            seen["err"] += 1
sp = threading.Thread(target=spam); sp.start()
res["fit_during_predict"] = outcome(lambda: net.fit(Xp, yp, solver="lbfgs", max_iter=30))
stop.set(); sp.join()
res["fit_during_predict_same"] = net.theta.tobytes() == ref_net.theta.tobytes()
res["predicts_during_fit"] = seen

# 14. divergence: every solver, with and without early stopping
def diverge(solver, early):
    Xd = rng.standard_normal((120, 3))
    yd = 1e160 * (1 + Xd[:, 0] ** 2)  # squared error beyond float64
    reg = bpnet.BPNetRegressor(3, solver=solver, early_stopping=early, max_iter=20,
                               random_state=0)
    try:
        reg.fit(Xd, yd)
    except BaseException as e:
        pr = getattr(e, "partial_result", None)
        return [type(e).__name__, " ".join(str(e).split()), pr is not None,
                bool(np.isfinite(reg.network_.theta).all()) if hasattr(reg, "network_") else None]
    return ["no error"]
res["diverge"] = {f"{s}-{e}": diverge(s, e) for s in ("lbfgs", "cg", "adam", "sgd")
                  for e in (False, True)}
def sgd_blowup():
    c = bpnet.BPNetClassifier(8, solver="sgd", learning_rate_init=1e30, early_stopping=True,
                              max_iter=50, random_state=0)
    try:
        c.fit(Xp[:400], yp[:400])
    except BaseException as e:
        return [type(e).__name__, getattr(e, "partial_result", None) is not None,
                bool(np.isfinite(c.network_.theta).all())]
    return ["no error"]
res["sgd_validation_blowup"] = sgd_blowup()
# its own generator: the data (and so the stratified split below) must not depend
# on how many draws the attacks above made
Xw = np.random.default_rng(0).standard_normal((100, 3)); yw = (Xw[:, 0] > 0).astype(int)
res["weight_overflow"] = outcome(lambda: bpnet.Network([3, 2], output="softmax").fit(
    Xw, yw, sample_weight=np.full(100, 1e307)))
res["class_weight_overflow"] = outcome(lambda: bpnet.BPNetClassifier(
    3, class_weight={0: 1e300, 1: 1e300}, max_iter=3).fit(Xw, yw, sample_weight=np.full(100, 1e10)))
wz = np.ones(100); wz[:50] = 0
zn = bpnet.Network([3, 2], output="softmax", rng=0)
res["zero_weight_batch"] = outcome(lambda: zn.fit(
    Xw, yw, solver="adam", sample_weight=wz, batch_size=25, shuffle=False, max_iter=3, tol=0))
res["zero_weight_finite"] = bool(np.isfinite(zn.theta).all()) and len(zn.loss_history) == 3
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
rs = check_random_state(0); rs.randint(np.iinfo(np.int32).max)  # as the estimator draws
idx_train, _ = train_test_split(np.arange(100), test_size=0.1, random_state=rs, stratify=yw)
wv = np.zeros(100); wv[idx_train] = 1  # weight only where the estimator trains
res["zero_weight_validation"] = outcome(lambda: bpnet.BPNetClassifier(
    3, early_stopping=True, random_state=0).fit(Xw, yw, sample_weight=wv))
report(**res)
"""


@pytest.fixture(scope="module")
def quick():
    return attack(QUICK_ATTACKS, timeout=120)


def test_out_overlapping_an_input_is_rejected(quick):
    for key, name in (("out_is_theta", "theta"), ("out_overlaps_X", "X"),
                      ("out_overlaps_w", "sample_weight"), ("out_overlaps_Y", "y"),
                      ("forward_out_is_X", "X")):
        assert quick[key].startswith(f"ValueError: out shares memory with {name}"), quick[key]
    assert quick["theta_untouched"] and quick["separate_out_ok"]


@pytest.mark.parametrize("d", ["garbage", "None", "float16", "int64", "complex128", "True"])
def test_bad_dtype_never_trains_silently(quick, d):
    if d == "None":
        # the estimators' documented default (issue 11, item 7): None follows the
        # data as scikit-learn does (float32 stays float32, the rest is float64)
        assert quick["dtype_None"] == "ok"
    else:
        assert quick[f"dtype_{d}"].startswith("ValueError: dtype must be 'float64' or 'float32'")
    assert quick[f"net_dtype_{d}"].startswith("ValueError: dtype must be 'float64' or")


def test_dtype_spellings_still_accepted(quick):
    assert quick["dtype_f4"] == "ok"


def test_concurrent_fit_of_one_estimator_raises(quick):
    (err,) = quick["concurrent_fit_errors"]
    assert err[0] == "b" and err[1] == "ConcurrentFitError"
    assert "already being fitted" in err[2]
    # the first fit ran alone: its curve, classes and outputs agree
    assert quick["concurrent_fit_curve"] == 30
    assert quick["concurrent_fit_classes"] == [0, 1] and quick["concurrent_fit_outputs"] == 2
    assert quick["refit_after"] == "ok"


def test_concurrent_predict_and_predict_during_fit(quick):
    assert quick["concurrent_predict"] == {"ok": 200, "wrong": 0, "error": 0}
    assert quick["fit_during_predict"] == "ok" and quick["fit_during_predict_same"]
    assert quick["predicts_during_fit"]["err"] == 0


def test_divergence_is_uniform_across_solvers(quick):
    for case, (kind, msg, has_partial, finite) in quick["diverge"].items():
        assert kind == "FloatingPointError", (case, kind, msg)
        assert has_partial and finite, case
        assert "y overflows float64" in msg, (case, msg)  # the real cause,
        assert "theta or X" not in msg, (case, msg)  # not the core's guess
    kind, has_partial, finite = quick["sgd_validation_blowup"]
    assert kind == "FloatingPointError" and has_partial and finite


def test_overflow_names_the_weights(quick):
    assert quick["weight_overflow"].startswith("FloatingPointError")
    assert "sample_weight sums to" in quick["weight_overflow"]
    assert quick["class_weight_overflow"].startswith("ValueError: class_weight=")


def test_all_zero_weight_batch_is_skipped(quick):
    assert quick["zero_weight_batch"] == "ok" and quick["zero_weight_finite"]
    # a validation split without weight cannot be scored: said before the fit
    assert quick["zero_weight_validation"].startswith(
        "ValueError: early_stopping: the sample weights of the validation split sum to 0")


# --- 13. Ctrl-C during an early-stopping fit ---------------------------------------------------
def test_ctrl_c_keeps_the_best_early_stopping_parameters():
    r = attack(
        """
        from sklearn.model_selection import train_test_split
        from sklearn.utils import check_random_state
        from bpnet.network import Network
        rng = np.random.default_rng(3)
        X = rng.standard_normal((600, 6)); y = ((X[:, 0] * X[:, 1] > 0) ^ (rng.random(600) < 0.2)
                                               ).astype(int)
        def val_score(clf):
            rs = check_random_state(0); rs.randint(np.iinfo(np.int32).max)
            _, Xv, _, yv = train_test_split(X, y, test_size=0.2, random_state=rs, stratify=y)
            return float(np.mean(np.argmax(clf.network_.predict_proba(Xv), axis=1) == yv))
        out = {}
        for how in ("signal", "inside_core"):
            clf = bpnet.BPNetClassifier(16, solver="sgd", learning_rate_init=0.5, momentum=0.9,
                                        early_stopping=True, validation_fraction=0.2,
                                        n_iter_no_change=1000, max_iter=1000, random_state=0)
            scores = []
            def cb(i, loss, score):
                scores.append(score)
                if how == "signal" and i == 40:
                    os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C
            real = Network._cost_grad
            calls = {"n": 0}
            def interrupted(self, *a, **k):  # as the core raises it between row blocks
                calls["n"] += 1
                if how == "inside_core" and calls["n"] == 40 * 3 + 1:
                    raise KeyboardInterrupt
                return real(self, *a, **k)
            Network._cost_grad = interrupted
            try:
                clf.fit(X, y, callback=cb)
                out[how] = "not interrupted"
                continue
            except KeyboardInterrupt as e:
                partial = getattr(e, "partial_result", None)
            finally:
                Network._cost_grad = real
            out[how] = dict(
                best=clf.best_validation_score_, kept=val_score(clf), last=scores[-1],
                n=len(scores), curves=[len(clf.loss_curve_), len(clf.validation_scores_),
                                       len(clf.validation_loss_curve_)],
                n_iter=clf.n_iter_, stop=clf.stop_reason_,
                partial_same=partial is not None
                and partial.theta.tobytes() == clf.network_.theta.tobytes())
        report(**out)
        """,
        timeout=120,
    )
    for how in ("signal", "inside_core"):
        o = r[how]
        assert isinstance(o, dict), (how, o)
        assert o["last"] < o["best"], "precondition: the last epoch is not the best one"
        assert o["kept"] == o["best"], (how, o)  # the parameters behind best_validation_score_
        assert o["curves"] == [o["n_iter"]] * 3 and o["stop"] == "KeyboardInterrupt"
        assert o["partial_same"]


# --- 15-16. saving: validate first, non-regular destinations, modes, kill -9 --------------------
def test_save_never_replaces_a_good_file_with_a_bad_one(tmp_path):
    r = attack(
        """
        X = np.random.default_rng(0).standard_normal((50, 4)); y = (X[:, 0] > 0).astype(int)
        clf = bpnet.BPNetClassifier(3, max_iter=5, random_state=0).fit(X, y)
        clf.save("good.npz"); good = open("good.npz", "rb").read()
        res = {}
        clf.set_params(activation="relu")
        res["relu"] = outcome(lambda: clf.save("good.npz"))
        clf.set_params(activation="sigmoid", hidden_layer_sizes=7)
        res["hidden"] = outcome(lambda: clf.save("good.npz"))
        clf.set_params(hidden_layer_sizes=3)
        nan = bpnet.Network([4, 3, 2], rng=0); nan.theta[0] = np.nan
        res["nan"] = outcome(lambda: nan.save("good.npz"))
        neg = bpnet.Network([4, 3, 2], rng=0); neg.lam = -1
        res["lam"] = outcome(lambda: neg.save("good.npz"))
        f16 = bpnet.Network([4, 3, 2], rng=0); f16.dtype = np.dtype(np.float16)
        f16.theta = f16.theta.astype(np.float16)
        res["f16"] = outcome(lambda: f16.save("good.npz"))
        res["intact"] = open("good.npz", "rb").read() == good
        res["files"] = sorted(os.listdir("."))
        res["still_saves"] = outcome(lambda: clf.save("good.npz"))
        report(**res)
        """,
        cwd=tmp_path,
    )
    for key in ("relu", "hidden", "nan", "lam", "f16"):
        assert r[key].startswith("ValueError:") and "cannot be saved" in r[key], (key, r[key])
        assert "nothing was written" in r[key]
    assert r["intact"] and r["files"] == ["good.npz"] and r["still_saves"] == "ok"


def test_save_destinations_symlinks_modes_read_only(tmp_path):
    r = attack(
        """
        import stat
        net = bpnet.Network([4, 3, 2], rng=0)
        net.save("target.npz"); os.symlink("target.npz", "link.npz")
        other = bpnet.Network([4, 3, 2], rng=1)
        res = {"link": outcome(lambda: other.save("link.npz"))}
        res["still_link"] = os.path.islink("link.npz")
        res["target_updated"] = bpnet.load("target.npz").theta.tobytes() == other.theta.tobytes()
        net.save("mode.npz"); os.chmod("mode.npz", 0o640)
        res["mode_save"] = outcome(lambda: other.save("mode.npz"))
        res["mode"] = oct(stat.S_IMODE(os.stat("mode.npz").st_mode))
        os.umask(0o022)
        other.save("new.npz"); res["new_mode"] = oct(stat.S_IMODE(os.stat("new.npz").st_mode))
        os.chmod("mode.npz", 0o444); before = open("mode.npz", "rb").read()
        res["read_only"] = outcome(lambda: net.save("mode.npz"))
        res["read_only_intact"] = open("mode.npz", "rb").read() == before
        os.mkdir("adir")
        res["dir"] = outcome(lambda: net.save("adir"))
        res["files"] = sorted(os.listdir("."))
        report(**res)
        """,
        cwd=tmp_path,
    )
    assert r["link"] == "ok" and r["still_link"] and r["target_updated"]
    assert r["mode_save"] == "ok" and r["mode"] == "0o640" and r["new_mode"] == "0o644"
    assert r["read_only"].startswith("PermissionError") and r["read_only_intact"]
    assert r["dir"].startswith("IsADirectoryError")
    assert r["files"] == ["adir", "link.npz", "mode.npz", "new.npz", "target.npz"]


def test_kill_9_during_save_leaves_no_lasting_temporary(tmp_path):
    # a child killed by SIGKILL in the middle of writing (deterministically: the
    # write itself kills the process), then a normal save to the same name
    killer = """
    import numpy
    net = bpnet.Network([4, 3, 2], rng=0)
    net.save("m.npz")
    def dying_savez(f, **arrays):
        f.write(b"PK partial")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    numpy.savez = dying_savez
    net.save("m.npz")
    """
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(killer)],
                          cwd=tmp_path, timeout=60, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(os.listdir(tmp_path))
    assert len(left) == 2 and left[1] == "m.npz" and left[0].endswith(".bpnet-tmp"), left
    r = attack(
        """
        res = {"load_old": outcome(lambda: bpnet.load("m.npz"))}
        bpnet.Network([4, 3, 2], rng=5).save("m.npz")
        res["files"] = sorted(os.listdir("."))
        report(**res)
        """,
        cwd=tmp_path,
    )
    assert r["load_old"] == "ok", "the killed save damaged the destination"
    assert r["files"] == ["m.npz"], r["files"]


# --- 17-18. hostile and malformed model files ---------------------------------------------
def test_zip_bomb_is_rejected_before_decompressing(tmp_path):
    r = attack(
        """
        import hashlib, resource, zipfile
        def _canonical(b):  # the format's digest rule
            return json.dumps(b, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
        net = bpnet.Network([4, 3, 2], rng=0); net.save("good.npz")
        with np.load("good.npz") as f:
            arrays = {k: f[k] for k in f.files}
        body = json.loads(arrays["metadata"].tobytes())["body"]
        def bomb(path, claim_in_metadata):
            n = 16_000_000  # 128 MB of zeros in a file of 0.13 MB
            b = json.loads(json.dumps(body))
            if claim_in_metadata:  # a self-consistent lie: digest recomputed
                b["arrays"]["theta"]["shape"] = [n]
            meta = json.dumps({"body": b, "sha256": hashlib.sha256(_canonical(b)).hexdigest()})
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
                for k, a in arrays.items():
                    with z.open(k + ".npy", "w", force_zip64=True) as f:
                        if k == "metadata":
                            np.lib.format.write_array(f, np.frombuffer(meta.encode(), np.uint8))
                        elif k == "theta":
                            np.lib.format.write_array_header_1_0(
                                f, {"descr": "<f8", "fortran_order": False, "shape": (n,)})
                            zero = bytes(1 << 20)
                            for _ in range(123):
                                f.write(zero)
                        else:
                            np.lib.format.write_array(f, a)
        res = {}
        for claim in (False, True):
            bomb("bomb.npz", claim)
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.time()
            res[f"claim_{claim}"] = [outcome(lambda: bpnet.load("bomb.npz")), time.time() - t,
                                     os.path.getsize("bomb.npz")]
            res[f"rss_{claim}"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0)
        report(**res)
        """,
        cwd=tmp_path, timeout=120,
    )
    for claim in ("False", "True"):
        msg, seconds, size = r[f"claim_{claim}"]
        assert size < 1 << 20
        assert msg.startswith("ModelFileError: bomb.npz:") and "declare" in msg, msg
        assert seconds < load_factor(), seconds  # nothing decompressed: rss below
        assert r[f"rss_{claim}"] < 64 * 1024, r[f"rss_{claim}"]  # KiB: nothing decompressed


FUZZ_JSON = """
import hashlib, random, zipfile
from bpnet.persist import ModelFileError
def _canonical(b):  # the format's digest rule
    return json.dumps(b, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
rng = random.Random(20240607)
X = np.random.default_rng(0).standard_normal((60, 4))
y = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
clf = bpnet.BPNetClassifier(3, solver="adam", max_iter=4, random_state=0, early_stopping=True,
                            learning_rate_init=0.01).fit(X, y)
clf.partial_fit(X, y)
clf.save("m.npz")
with np.load("m.npz") as f:
    arrays = {k: f[k] for k in f.files}
body = json.loads(arrays["metadata"].tobytes())["body"]
ref = clf.predict_proba(X).tobytes()

def nodes(node, trail=()):
    yield trail
    if isinstance(node, dict):
        for k, v in node.items():
            yield from nodes(v, (*trail, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from nodes(v, (*trail, i))

def deep(n):
    d = 0
    for _ in range(n):
        d = [d]
    return d

REPLACEMENTS = [None, True, False, 0, -1, -(2**63), 2**64, 1.5, -0.0, 1e308, "", "x" * 5000,
                [], {}, [1, 2, 3], {"a": 1}, "float64", [[]], {"pairs": 5}, {"pairs": [[1]]}]
paths = [p for p in nodes(body) if p]
variants = []
for trail in paths:
    for _ in range(2):
        variants.append((trail, rng.choice(REPLACEMENTS)))
    variants.append((trail, deep(rng.choice([50, 5000]))))

def write(path, b, raw_meta=None, extra=None):
    meta = raw_meta if raw_meta is not None else json.dumps(
        {"body": b, "sha256": hashlib.sha256(_canonical(b)).hexdigest()}).encode()
    with open(path, "wb") as f:
        np.savez(f, metadata=np.frombuffer(meta, np.uint8),
                 **{k: v for k, v in arrays.items() if k != "metadata"})
    if extra:
        with zipfile.ZipFile(path, "a") as z:
            z.writestr(*extra)

counts = {"rejected": 0, "identical": 0}
bad = []
def judge(label):
    try:
        est = bpnet.load("v.npz")
    except ModelFileError as e:
        if not str(e).startswith("v.npz: "):
            bad.append((label, "message " + str(e)[:100]))
        counts["rejected"] += 1
        return
    except BaseException as e:
        bad.append((label, type(e).__name__ + ": " + str(e)[:200]))
        return
    try:
        same = est.predict_proba(X).tobytes() == ref
    except BaseException as e:
        bad.append((label, "loaded but predict failed: " + type(e).__name__))
        return
    counts["identical" if same else "different"] = counts.get(
        "identical" if same else "different", 0) + 1
    if not same:
        bad.append((label, "loaded a different model"))

for trail, value in variants:
    b = json.loads(json.dumps(body))
    node = b
    for k in trail[:-1]:
        node = node[k]
    node[trail[-1]] = value
    try:
        write("v.npz", b)
    except (ValueError, RecursionError):  # JSON cannot hold it (e.g. deep nesting): raw text
        text = json.dumps({"body": "BODY", "sha256": "0"}).replace(
            '"BODY"', "[" * 100000 + "]" * 100000)
        write("v.npz", b, raw_meta=text.encode())
    try:
        shown = repr(value)[:40]
    except RecursionError:
        shown = "<deeply nested list>"
    judge(str(trail) + "=" + shown)

raw_cases = {
    "huge int": b'{"body": {"format": "bpnet-model", "format_version": 1' + b"0" * 100000 + b'}}',
    "huge float": b'{"body": {"format": "bpnet-model", "format_version": 1, "x": 1e999}, '
                  b'"sha256": "0"}',
    "deep": b'{"body": ' + b"[" * 200000 + b"]" * 200000 + b', "sha256": "0"}',
    "deep dict": b'{"body": ' + b'{"a":' * 100000 + b"1" + b"}" * 100000 + b', "sha256": "0"}',
    "nan": b'{"body": {"format": "bpnet-model", "format_version": 1, "x": NaN}, "sha256": "0"}',
}
for label, meta in raw_cases.items():
    write("v.npz", body, raw_meta=meta)
    judge(label)
for label, extra in (("text member", ("notes.txt", "hello")),
                     ("pickle member", ("obj.npy", b"\\x80\\x04K\\x01."))):
    write("v.npz", body, extra=extra)
    judge(label)
# semantic checks on a self-consistent file
def edited(edit, arr_edit=None):
    b = json.loads(json.dumps(body))
    a = dict(arrays)
    edit(b)
    if arr_edit:
        a = arr_edit(a)
        b["arrays"] = {k: {"dtype": v.dtype.str, "shape": list(v.shape),
                           "sha256": hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()}
                       for k, v in a.items() if k != "metadata"}
    meta = json.dumps({"body": b, "sha256": hashlib.sha256(_canonical(b)).hexdigest()}).encode()
    a["metadata"] = np.frombuffer(meta, np.uint8)
    with open("s.npz", "wb") as f:
        np.savez(f, **a)
    try:
        bpnet.load("s.npz")
    except ModelFileError as e:
        return str(e)
    except BaseException as e:
        return "WRONG " + type(e).__name__
    return "loaded"
semantic = {
    "unsorted": edited(lambda b: None, lambda a: dict(a, classes=a["classes"][::-1].copy())),
    "duplicate": edited(lambda b: None, lambda a: dict(a, classes=np.array(["ant", "ant", "cat"]))),
    "hidden": edited(lambda b: b["estimator"]["params"].update(hidden_layer_sizes=[5])),
    "neg_step": edited(lambda b: b["estimator"].update(optimizer_step=-3)),
    "neg_iter": edited(lambda b: b["estimator"].update(n_iter=-1)),
    "neg_evals": edited(lambda b: b["training"].update(n_evals=-2)),
}
report(counts=counts, bad=bad[:20], n_bad=len(bad), n_variants=len(variants), semantic=semantic)
"""


def test_structure_aware_json_fuzzing_only_gives_model_file_errors(tmp_path):
    r = attack(FUZZ_JSON, cwd=tmp_path, timeout=180)
    assert r["n_bad"] == 0, r["bad"]
    assert r["n_variants"] > 150 and r["counts"]["rejected"] > 150
    s = r["semantic"]
    assert "classes must be sorted and unique" in s["unsorted"]
    assert "classes must be sorted and unique" in s["duplicate"]
    assert "hidden_layer_sizes=[5] differs" in s["hidden"]
    assert "optimizer_step must be an int >= 0" in s["neg_step"]
    assert "n_iter must be an int >= 0" in s["neg_iter"]
    assert "training.n_evals must be an int >= 0" in s["neg_evals"]


# --- 19-20. the command line -------------------------------------------------------------
CLI_ATTACKS = """
import contextlib, io
from bpnet.cli import main
rng = np.random.default_rng(0)
X = rng.standard_normal((60, 4)); y = (X[:, 0] > 0).astype(int)
np.savetxt("d.csv", np.c_[X, y], delimiter=",", fmt="%.6f")
with open("long.csv", "w") as f:
    f.write("a,b\\n" + "1" * 200000 + ",1\\n")
with open("bad.npz", "wb") as f:
    np.savez(f, X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
np.savez("diverge.npz", X=X * 1e5, y=y)
bpnet.Network([4, 3, 2], rng=0).save("net.npz")
with open("s.csv", "w") as f:
    f.write("a,b,c,d,label\\n1,2,3,4,x\\n2,3,4,5,y\\n")
os.mkdir("adir")
os.mkfifo("fifo.npz")  # never the real /dev/null: a buggy save as root would replace it
cases = {
    "hidden huge": ["train", "--hidden", "1000000000"],
    "long field": ["train", "long.csv"],
    "gradcheck examples": ["gradcheck", "--examples", "1000000000"],
    "diverge early stop": ["train", "diverge.npz", "--solver", "sgd", "--learning-rate", "1e30",
                           "-o", "o.npz"],
    "object npz": ["train", "bad.npz"],
    "output dir missing": ["train", "d.csv", "-o", "no/such/dir/m.npz", "--iterations", "100000"],
    "output is dir": ["train", "d.csv", "-o", "adir"],
    "output device": ["train", "d.csv", "-o", "fifo.npz"],
    "plot onto file": ["train", "d.csv", "--plot", "d.csv/x", "--iterations", "100000"],
    "threads": ["train", "d.csv", "--threads", "5000"],
    "seed": ["train", "d.csv", "--seed", "-5"],
    "lambda nan": ["train", "d.csv", "--lambda", "nan"],
    "lr with lbfgs": ["train", "d.csv", "--learning-rate", "0.1"],
    "batch with cg": ["train", "d.csv", "--solver", "cg", "--batch-size", "10"],
    "patience without validation": ["train", "d.csv", "--patience", "5",
                                    "--validation-split", "0"],
    "evaluate string labels": ["evaluate", "net.npz", "s.csv"],
    "predict to missing dir": ["predict", "net.npz", "d.csv", "-o", "no/dir/p.csv"],
    "info missing": ["info", "nope.npz"],
    "info on csv": ["info", "d.csv"],
    "evaluate on dir": ["evaluate", "net.npz", "adir"],
}
res = {}
for label, argv in cases.items():
    err = io.StringIO()
    t = time.time()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv + (["-q"] if argv[0] == "train" else []))
        except SystemExit as e:
            code = e.code
        except BaseException as e:
            code = "escaped " + type(e).__name__
    res[label] = [code, err.getvalue().splitlines(), time.time() - t]
report(**res)
"""

USAGE = {"lr with lbfgs", "batch with cg", "patience without validation",
         "threads", "seed"}


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    return attack(CLI_ATTACKS, cwd=tmp_path_factory.mktemp("cli"), timeout=180)


@pytest.mark.parametrize("label", [
    "hidden huge", "long field", "gradcheck examples", "diverge early stop", "object npz",
    "output dir missing", "output is dir", "output device", "plot onto file", "threads",
    "seed", "lambda nan", "lr with lbfgs", "batch with cg", "patience without validation",
    "evaluate string labels", "predict to missing dir", "info missing", "info on csv",
    "evaluate on dir",
])
def test_cli_errors_are_one_line_with_exit_codes(cli_results, label):
    code, lines, seconds = cli_results[label]
    assert not any("Traceback" in line for line in lines), lines
    if label in USAGE:
        assert code == 2, (code, lines)
        assert lines[-1].startswith("bpnet") and "error:" in lines[-1], lines
    else:
        assert code == 1, (code, lines)
        assert len(lines) == 1 and lines[0].startswith("bpnet "), lines
    assert seconds < 30 * load_factor(), f"{label}: {seconds:.1f} s (checked after the work?)"


def test_cli_checks_outputs_before_training(cli_results):
    for label, flag in (("output dir missing", "-o/--output"), ("plot onto file", "--plot")):
        _, lines, seconds = cli_results[label]
        assert flag in lines[0] and seconds < 5, (label, lines, seconds)
    assert "--hidden 1000000000" in cli_results["hidden huge"][1][0]
    assert "long.csv: line 2" in cli_results["long field"][1][0]
    assert "training diverged" in cli_results["diverge early stop"][1][0]
    assert "--learning-rate" in cli_results["lr with lbfgs"][1][-1]

"""The cheap in-process attacks, one child for the lot (issue 10, items 9-12, 14): out=
overlapping an input, dtype garbage, concurrent fit and predict, divergence, overflowing
and all-zero weights.

Run by test_reliability_attacks.py::quick."""

import threading

import numpy as np
from childlib import outcome, report
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

import bpnet

rng = np.random.default_rng(0)
res = {}

# 9. out= overlapping an input
sizes = [5, 4, 3]
P = bpnet.n_params(sizes)
X = rng.standard_normal((20, 5))
y = rng.integers(0, 3, 20)
t = bpnet.random_theta(sizes, 0)
t_before = t.copy()
res["out_is_theta"] = outcome(lambda: bpnet.cost_grad(t, sizes, X, y, out=t))
res["theta_untouched"] = t.tobytes() == t_before.tobytes()
buf = np.zeros(P + X.size)
Xv = buf[P - 1:P - 1 + X.size].reshape(X.shape)
Xv[...] = X
res["out_overlaps_X"] = outcome(lambda: bpnet.cost_grad(t, sizes, Xv, y, out=buf[:P]))
w = np.ones(P + 20)
res["out_overlaps_w"] = outcome(
    lambda: bpnet.cost_grad(t, sizes, X, y, sample_weight=w[P - 5:P + 15], out=w[:P]))
Y = np.zeros((20 + 2, 3))
Y[:20, 0] = 1
res["out_overlaps_Y"] = outcome(
    lambda: bpnet.cost_grad(t, sizes, X, Y[:20], out=Y.reshape(-1)[:P]))
h = np.zeros((20, 5))
t55 = bpnet.random_theta([5, 5], 0)
res["forward_out_is_X"] = outcome(lambda: bpnet.forward(t55, [5, 5], h, out=h))
g = np.empty(P)
J, _ = bpnet.cost_grad(t, sizes, X, y, out=g)
res["separate_out_ok"] = bool(np.isfinite(J))

# 10. dtype garbage / None
Xc = rng.standard_normal((40, 3))
yc = (Xc[:, 0] > 0).astype(int)
for d in ("garbage", None, "float16", "int64", "complex128", True):
    res[f"dtype_{d}"] = outcome(
        lambda d: bpnet.BPNetClassifier(3, dtype=d, max_iter=2).fit(Xc, yc), d)
    res[f"net_dtype_{d}"] = outcome(lambda d: bpnet.Network([3, 2], dtype=d), d)
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
ta.start()
tb.start()
ta.join()
tb.join()
res["concurrent_fit_errors"] = errors
res["concurrent_fit_curve"] = len(clf.loss_curve_)
res["concurrent_fit_classes"] = clf.classes_.tolist()
res["concurrent_fit_outputs"] = int(clf.network_.layer_sizes[-1])
res["refit_after"] = outcome(lambda: clf.fit(Xc, yc))

# 12. concurrent predict on one fitted model, and predict during fit
Xp = rng.standard_normal((3000, 3))
yp = (Xp[:, 0] + Xp[:, 1] > 0).astype(int)
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
[th.start() for th in threads]
[th.join() for th in threads]
res["concurrent_predict"] = counts
net = bpnet.Network([3, 16, 2], output="softmax", rng=1)
ref_net = bpnet.Network([3, 16, 2], output="softmax", rng=1).fit(Xp, yp, solver="lbfgs",
                                                                 max_iter=30)
stop = threading.Event()
seen = {"n": 0, "err": 0}


def spam():
    while not stop.is_set():
        try:
            net.predict(Xp)
            net.predict_proba(Xp)
            seen["n"] += 1
        except Exception:
            seen["err"] += 1


sp = threading.Thread(target=spam)
sp.start()
res["fit_during_predict"] = outcome(lambda: net.fit(Xp, yp, solver="lbfgs", max_iter=30))
stop.set()
sp.join()
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
Xw = np.random.default_rng(0).standard_normal((100, 3))
yw = (Xw[:, 0] > 0).astype(int)
res["weight_overflow"] = outcome(lambda: bpnet.Network([3, 2], output="softmax").fit(
    Xw, yw, sample_weight=np.full(100, 1e307)))
res["class_weight_overflow"] = outcome(lambda: bpnet.BPNetClassifier(
    3, class_weight={0: 1e300, 1: 1e300}, max_iter=3).fit(Xw, yw, sample_weight=np.full(100, 1e10)))
wz = np.ones(100)
wz[:50] = 0
zn = bpnet.Network([3, 2], output="softmax", rng=0)
res["zero_weight_batch"] = outcome(lambda: zn.fit(
    Xw, yw, solver="adam", sample_weight=wz, batch_size=25, shuffle=False, max_iter=3, tol=0))
res["zero_weight_finite"] = bool(np.isfinite(zn.theta).all()) and len(zn.loss_history) == 3
rs = check_random_state(0)
rs.randint(np.iinfo(np.int32).max)  # as the estimator draws
idx_train, _ = train_test_split(np.arange(100), test_size=0.1, random_state=rs, stratify=yw)
wv = np.zeros(100)
wv[idx_train] = 1  # weight only where the estimator trains
res["zero_weight_validation"] = outcome(lambda: bpnet.BPNetClassifier(
    3, early_stopping=True, random_state=0).fit(Xw, yw, sample_weight=wv))
report(**res)

"""A user's program: type-checked by mypy --strict (no bpnet-specific flags) and
run, in a temporary directory.

Run by test_typing.py::test_user_program_is_clean_under_mypy_strict."""

from __future__ import annotations

import numpy as np

import bpnet
from bpnet import BPNetClassifier, BPNetRegressor, Network

X = np.random.default_rng(0).standard_normal((40, 4))
y = (X[:, 0] > 0).astype(np.int64)

net: Network = Network([4, 3, 2], output="softmax", lam=0.1, rng=0)
net.fit(X, y, solver="adam", max_iter=2, batch_size=8)
proba: np.ndarray = net.predict_proba(X)
labels: np.ndarray = net.predict(X)
J, grad = net.cost_grad(X, y)
total: float = J + float(grad.sum())
theta: np.ndarray = bpnet.random_theta([4, 3, 2], rng=0)
J2, g2 = bpnet.cost_grad(theta, [4, 3, 2], X, y, lam=1.0)
a: np.ndarray = bpnet.forward(theta, [4, 3, 2], X)
report: bpnet.GradientReport = bpnet.check_gradients((3, 5, 3))
ok: bool = report.ok(1e-7)
info: dict[str, object] = bpnet.build_info()

clf: BPNetClassifier = BPNetClassifier(3, max_iter=50, random_state=0).fit(X, y)
p: np.ndarray = clf.predict_proba(X)
coefs: list[np.ndarray] = clf.coefs_
n: int = clf.n_layers_ + clf.t_
reg: BPNetRegressor = BPNetRegressor(3, max_iter=50).fit(X, X[:, 0])
weighted: BPNetClassifier = BPNetClassifier(
    3, "logistic", max_iter=50, class_weight={0: 2.0, 1: 1.0},
    random_state=np.random.default_rng(0),
).fit(X, y)
weighted.coefs_ = [w * 0.5 for w in weighted.coefs_]
weighted.intercepts_ = weighted.intercepts_
classes: np.ndarray = clf.classes_
width: int = clf.n_features_in_ + clf.network_.n_params


def stop_early(info: bpnet.FitInfo) -> bool:
    return info.iteration >= 2 or info.loss < 1e-3


clf.fit(X, y, callback=stop_early)
path: str = bpnet.save(clf, "model.npz")  # in the test's temporary directory
back = bpnet.load(path)

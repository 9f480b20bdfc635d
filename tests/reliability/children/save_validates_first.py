"""Saving an unsavable model never replaces a good file (run in a temporary directory).

Run by test_reliability_attacks.py::test_save_never_replaces_a_good_file_with_a_bad_one."""

import os

import numpy as np
from childlib import outcome, report

import bpnet

X = np.random.default_rng(0).standard_normal((50, 4))
y = (X[:, 0] > 0).astype(int)
clf = bpnet.BPNetClassifier(3, max_iter=5, random_state=0).fit(X, y)
clf.save("good.npz")
good = open("good.npz", "rb").read()
res = {}
clf.set_params(activation="relu")
res["relu"] = outcome(lambda: clf.save("good.npz"))
clf.set_params(activation="sigmoid", hidden_layer_sizes=7)
res["hidden"] = outcome(lambda: clf.save("good.npz"))
clf.set_params(hidden_layer_sizes=3)
nan = bpnet.Network([4, 3, 2], rng=0)
nan.theta[0] = np.nan
res["nan"] = outcome(lambda: nan.save("good.npz"))
neg = bpnet.Network([4, 3, 2], rng=0)
neg.lam = -1
res["lam"] = outcome(lambda: neg.save("good.npz"))
f16 = bpnet.Network([4, 3, 2], rng=0)
f16.dtype = np.dtype(np.float16)
f16.theta = f16.theta.astype(np.float16)
res["f16"] = outcome(lambda: f16.save("good.npz"))
res["intact"] = open("good.npz", "rb").read() == good
res["files"] = sorted(os.listdir("."))
res["still_saves"] = outcome(lambda: clf.save("good.npz"))
report(**res)

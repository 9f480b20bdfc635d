"""
Regression beside scikit-learn's MLPRegressor
=============================================

:class:`bpnet.BPNetRegressor` has an identity output and the squared error
loss. With the same settings as scikit-learn's ``MLPRegressor`` (the
L-BFGS solver, ``max_iter``, ``tol``: the gradient tolerance, as
scikit-learn passes it to SciPy) both reach comparable scores on the
diabetes data, with its raw target (values 25 to 346).
"""

import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor

import bpnet

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

settings = dict(
    hidden_layer_sizes=(20, 10),
    activation="relu",
    solver="lbfgs",
    max_iter=200,
    tol=1e-4,
    alpha=1.0,
    random_state=0,
)
with warnings.catch_warnings():  # both stop at max_iter here, and say so
    warnings.simplefilter("ignore", ConvergenceWarning)
    ours = bpnet.BPNetRegressor(**settings).fit(X_train, y_train)
    theirs = MLPRegressor(**settings).fit(X_train, y_train)

for name, model in (("bpnet", ours), ("scikit-learn", theirs)):
    print(
        f"{name:>12}: {model.n_iter_} iterations, train R^2 "
        f"{model.score(X_train, y_train):.3f}, "
        f"test R^2 {model.score(X_test, y_test):.3f}"
    )

# %%
# Predictions against the truth
# -----------------------------

fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.scatter(y_test, ours.predict(X_test), s=12, label="bpnet")
ax.scatter(
    y_test, theirs.predict(X_test), s=12, marker="x", label="scikit-learn"
)
ax.plot([25, 346], [25, 346], color="gray", lw=1)
ax.set_xlabel("true disease progression")
ax.set_ylabel("predicted")
ax.legend()
fig.tight_layout()

# %%
# The loss curves
# ---------------
# Both minimize ``(1/(2m)) sum (h - y)^2`` plus ``alpha/(2m)`` times the
# squared weights: the curves share a scale.

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(ours.loss_curve_, label="bpnet")
ax.axhline(
    theirs.loss_, color="C1", ls="--", label="scikit-learn's final loss"
)
ax.set_xlabel("iteration")
ax.set_ylabel("training loss")
ax.legend()
fig.tight_layout()

"""
Saving the best model during a fit
==================================

A callback sees the parameters after every epoch (:class:`bpnet.IterationInfo`).
Here it scores them on a validation set and writes the best network so far
to disk with :func:`bpnet.save`, so an interrupted or overfitting run still
leaves its best model behind.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bpnet

X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(
    X / 16.0, y, test_size=0.3, random_state=0
)
sizes = [64, 40, 10]

workdir = Path(tempfile.mkdtemp())
best_path = workdir / "best.npz"
history = {"epoch": [], "val_acc": []}
best = {"acc": -1.0, "epoch": 0}


def keep_best(info: bpnet.IterationInfo) -> bool:
    pred = bpnet.predict(info.theta, sizes, X_val)  # arg-max of the outputs
    acc = float((pred == y_val).mean())
    history["epoch"].append(info.iteration)
    history["val_acc"].append(acc)
    if acc > best["acc"]:
        best.update(acc=acc, epoch=info.iteration)
        snapshot = bpnet.Network(
            sizes, output="softmax", theta=info.theta.copy()
        )
        bpnet.save(snapshot, best_path)
    return False  # True would stop the fit


net = bpnet.Network(sizes, output="softmax", lam=0.0, rng=0)
net.fit(
    X_train,
    y_train,
    solver="adam",
    max_iter=60,
    learning_rate=3e-3,
    batch_size=32,
    tol=0,
    callback=keep_best,
)

restored = bpnet.load(best_path)
restored_acc = (restored.predict(X_val) == y_val).mean()
print(
    f"best validation accuracy {best['acc']:.4f} at epoch {best['epoch']}; "
    f"the file holds it: {restored_acc:.4f}"
)
print(f"the last epoch's validation accuracy: {history['val_acc'][-1]:.4f}")

# %%
# Validation accuracy per epoch
# -----------------------------

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(history["epoch"], history["val_acc"])
ax.plot(
    best["epoch"], best["acc"], "o", color="C3", label="saved to best.npz"
)
ax.set_xlabel("epoch (Adam)")
ax.set_ylabel("validation accuracy")
ax.legend()
fig.tight_layout()

# %%
# The saved model describes itself
# --------------------------------

from bpnet.persist import read_metadata  # noqa: E402

meta = read_metadata(best_path)
print(meta["kind"], meta["network"]["layer_sizes"], meta["bpnet_version"])
assert np.array_equal(restored.theta, bpnet.load(best_path).theta)

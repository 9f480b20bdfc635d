"""
Checkpointing the best estimator during a fit
=============================================

An estimator's ``fit`` callback receives a :class:`bpnet.FitInfo`: the
estimator itself, the iteration, the loss and, with early stopping, the
validation score and loss. During the callback the estimator describes the
*current* parameters (``coefs_``, ``predict``, ``score``, ``save``), so the
callback can checkpoint it. Here early stopping scores our own validation
set (``X_val``, ``y_val``) after every epoch, and the callback saves the
model whenever this epoch is the best so far (as Keras's ``ModelCheckpoint``
with ``save_best_only``): a run that is interrupted, or that overfits later,
still leaves its best model on disk.
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

best_path = Path(tempfile.mkdtemp()) / "best.npz"
saved = []


def save_best(info: bpnet.FitInfo) -> None:
    est = info.estimator
    if est.best_iteration_ == info.iteration:  # the best validation score so far
        est.save(best_path)
        saved.append((info.iteration, info.validation_score))


clf = bpnet.BPNetClassifier(
    hidden_layer_sizes=40,
    solver="adam",
    learning_rate_init=3e-3,
    batch_size=32,
    alpha=0.0,
    early_stopping=True,
    n_iter_no_change=15,
    max_iter=200,
    random_state=0,
)
clf.fit(X_train, y_train, X_val=X_val, y_val=y_val, callback=save_best)

restored = bpnet.load(best_path)
print(
    f"{clf.n_iter_} epochs ({clf.stop_reason_}); best validation accuracy "
    f"{clf.best_validation_score_:.4f} at epoch {clf.best_iteration_}; "
    f"the file holds it: {restored.score(X_val, y_val):.4f}"
)
print(f"the last epoch's validation accuracy: {clf.validation_scores_[-1]:.4f}")
# early stopping also kept the best parameters: the file predicts as clf does
assert np.array_equal(restored.predict_proba(X_val), clf.predict_proba(X_val))

# %%
# Validation accuracy per epoch, and the checkpoints written
# -----------------------------------------------------------

epochs = np.arange(1, clf.n_iter_ + 1)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(epochs, clf.validation_scores_, label="validation accuracy")
ax.plot(*zip(*saved), "o", color="C3", ms=4, label="saved to best.npz")
ax.set_xlabel("epoch (Adam)")
ax.set_ylabel("accuracy on X_val")
ax.legend()
fig.tight_layout()

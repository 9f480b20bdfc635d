"""
Handwritten digits with BPNetClassifier
=======================================

The classic backpropagation exercise on scikit-learn's 8x8 digits: a 64-25-10
network with sigmoid hidden units, a softmax output and L2 regularization,
trained full batch with L-BFGS. We plot the training loss per iteration, the
confusion matrix on held-out digits and what the hidden units learned.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split

import bpnet

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X / 16.0, y, test_size=0.25, random_state=0
)

clf = bpnet.BPNetClassifier(
    hidden_layer_sizes=25, alpha=1.0, max_iter=400, random_state=0
)
clf.fit(X_train, y_train)
print(
    f"{clf.n_iter_} iterations ({clf.stop_reason_}), "
    f"final loss {clf.loss_:.4f}"
)
print(f"test accuracy: {clf.score(X_test, y_test):.4f}")

# %%
# The loss per iteration
# ----------------------
# ``loss_curve_`` holds the regularized cross-entropy after each L-BFGS
# iteration.

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(np.arange(1, clf.n_iter_ + 1), clf.loss_curve_)
ax.set_xlabel("iteration")
ax.set_ylabel("training loss J")
ax.set_title("L-BFGS on the digits")
fig.tight_layout()

# %%
# Confusion matrix on the held-out digits
# ---------------------------------------

ConfusionMatrixDisplay.from_estimator(clf, X_test, y_test, colorbar=False)
plt.title("test set")
plt.tight_layout()

# %%
# What the hidden units learned
# -----------------------------
# ``coefs_[0]`` (64 x 25) holds the first layer's weights in scikit-learn's
# layout: column ``j`` is hidden unit ``j``'s weights, one per pixel.

fig, axes = plt.subplots(5, 5, figsize=(5, 5))
for j, ax in enumerate(axes.ravel()):
    ax.imshow(clf.coefs_[0][:, j].reshape(8, 8), cmap="gray")
    ax.set_axis_off()
fig.suptitle("first hidden layer weights")
fig.tight_layout()

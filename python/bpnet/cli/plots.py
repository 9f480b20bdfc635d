"""``bpnet train --plot`` and the reports: the loss curve, the first layer's
weight images and the confusion matrix."""

from __future__ import annotations

import math
import os

import numpy as np

from .._about import install_hint
from .._params import FULL_BATCH_SOLVERS
from .data import UserError, shown

PLOT_FILES = ("loss.png", "hidden_weights.png")  # what --plot DIR receives


def confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray) -> str:
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=labels)
    names = [shown(c) for c in labels]
    w = max(max(len(n) for n in names), len(str(cm.max())), 3)
    lines = ["confusion matrix (rows: true label, columns: predicted):"]
    lines.append(" " * (w + 2) + " ".join(n.rjust(w) for n in names))
    for n, row in zip(names, cm):
        lines.append(n.rjust(w) + "  " + " ".join(str(v).rjust(w) for v in row))
    return "\n".join(lines)


MIN_IMAGE_SIDE = 8  # the smallest common image inputs: scikit-learn's 8x8 digits


def weight_image_shape(n_in: int, request: bool | None) -> tuple[int, int] | None:
    """The (height, width) to draw each hidden unit's input weights as, or None.

    Automatic (``request`` None): only image-like inputs, a square pixel
    count of side >= MIN_IMAGE_SIDE (64, 400, 784 inputs; not 4 or 16 tabular
    features). ``--plot-weights`` forces it (a square if the count is one,
    else a 1 x n strip); ``--no-plot-weights`` turns it off."""
    side = math.isqrt(n_in)
    square = side * side == n_in
    if request is None:
        return (side, side) if square and side >= MIN_IMAGE_SIDE else None
    if not request:
        return None
    return (side, side) if square else (1, n_in)


def loss_plot_marks(est) -> list[tuple[int, str]]:
    """The iterations the loss plot marks: the one whose parameters were kept
    (early stopping) and where training stopped."""
    marks = []
    n = len(est.loss_curve_)
    best = getattr(est, "best_iteration_", None)
    if best is not None:
        marks.append((int(best), f"best validation, iteration {best} (parameters kept)"))
    if est.stop_reason_ == "early_stopping" and n and n != best:
        marks.append((n, f"early stop, iteration {n}"))
    return marks


def plot(est, X_train: np.ndarray, outdir: str, order: str,
          weights: bool | None = None) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(f"--plot needs matplotlib: {install_hint('plot')}") from None
    os.makedirs(outdir, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    it = np.arange(1, len(est.loss_curve_) + 1)
    ax.plot(it, est.loss_curve_, label="training loss")
    if est.validation_loss_curve_:
        ax.plot(it, est.validation_loss_curve_, label="validation loss")
    styles = iter(("--", ":"))
    for at, label in loss_plot_marks(est):
        ax.axvline(at, color="gray", linestyle=next(styles), linewidth=1, label=label)
    ax.set_xlabel("iteration" if est.solver in FULL_BATCH_SOLVERS else "epoch")
    ax.set_ylabel("cost J (with L2 penalty)")
    ax.set_yscale("log")
    ax.set_title(f"bpnet {'-'.join(map(str, est.network_.layer_sizes))}, {est.solver}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(outdir, PLOT_FILES[0])
    fig.savefig(path)
    plt.close(fig)
    written.append(path)

    n_in = est.network_.layer_sizes[0]
    shape = weight_image_shape(n_in, weights)
    if len(est.network_.layer_sizes) > 2 and shape is not None:
        W = est.network_.thetas[0][:, 1:]  # (s_1, n_in): one image per hidden unit
        k = W.shape[0]
        cols = math.ceil(math.sqrt(k))
        rows = math.ceil(k / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), dpi=100)
        for i, ax in enumerate(np.atleast_1d(axes).ravel()):
            ax.axis("off")
            if i < k:
                img = W[i].reshape(shape, order=order)
                lim = np.abs(img).max() or 1.0
                ax.imshow(img, cmap="gray", vmin=-lim, vmax=lim)
        fig.suptitle("first hidden layer weights (Theta1 without bias)", fontsize=9)
        fig.tight_layout()
        path = os.path.join(outdir, PLOT_FILES[1])
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    elif len(est.network_.layer_sizes) == 2:
        print("(no weight images: the network has no hidden layer)")
    elif weights is None:
        print(f"(no weight images: {n_in} inputs do not look like an image of at least "
              f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels; --plot-weights draws them)")
    return written

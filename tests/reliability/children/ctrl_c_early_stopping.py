"""Ctrl-C (a real SIGINT, and one raised inside the core) during an early-stopping fit.

Run by test_reliability_attacks.py::test_ctrl_c_keeps_the_best_early_stopping_parameters."""

import os
import signal

import numpy as np
from childlib import report
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

import bpnet

rng = np.random.default_rng(3)
X = rng.standard_normal((600, 6))
y = ((X[:, 0] * X[:, 1] > 0) ^ (rng.random(600) < 0.2)).astype(int)


def val_score(clf):
    rs = check_random_state(0)
    rs.randint(np.iinfo(np.int32).max)
    _, Xv, _, yv = train_test_split(X, y, test_size=0.2, random_state=rs, stratify=y)
    return float(np.mean(np.argmax(clf.network_.predict_proba(Xv), axis=1) == yv))


def interrupted_fit(how):
    """Fit, interrupted at epoch 40 by a real SIGINT (``"signal"``) or by a
    KeyboardInterrupt raised where the core raises it (``"inside_core"``)."""
    clf = bpnet.BPNetClassifier(16, solver="sgd", learning_rate_init=0.5, momentum=0.9,
                                early_stopping=True, validation_fraction=0.2,
                                n_iter_no_change=1000, max_iter=1000, random_state=0)
    scores = []

    def cb(i, loss, score):
        scores.append(score)
        if how == "signal" and i == 40:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C

    core = bpnet._native.core  # the core's entry point: every fit's evaluations call it
    real = core.cost_grad
    calls = {"n": 0}

    def interrupted(*a):  # as the core raises it between row blocks
        calls["n"] += 1
        if how == "inside_core" and calls["n"] == 40 * 3 + 1:
            raise KeyboardInterrupt
        return real(*a)

    core.cost_grad = interrupted
    try:
        clf.fit(X, y, callback=cb)
        return "not interrupted"
    except KeyboardInterrupt as e:
        partial = getattr(e, "partial_result", None)
    finally:
        core.cost_grad = real
    return dict(
        best=clf.best_validation_score_, kept=val_score(clf), last=scores[-1],
        n=len(scores), curves=[len(clf.loss_curve_), len(clf.validation_scores_),
                               len(clf.validation_loss_curve_)],
        n_iter=clf.n_iter_, stop=clf.stop_reason_,
        partial_same=partial is not None
        and partial.theta.tobytes() == clf.network_.theta.tobytes())


report(**{how: interrupted_fit(how) for how in ("signal", "inside_core")})

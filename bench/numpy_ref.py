"""The same math as bpnet's core in plain vectorized NumPy (the comparison
point "what you would write yourself"): sigmoid hidden layers, sigmoid
outputs with cross-entropy, L2 on the non-bias weights.

Dimension letters: m examples, s_l units in layer l, K outputs, P parameters.
"""

from __future__ import annotations

import numpy as np


def roll(theta, sizes):
    """Views Theta^(l) (s_{l+1}, s_l + 1) into theta (P,)."""
    out, o = [], 0
    for l in range(len(sizes) - 1):
        r, c = sizes[l + 1], sizes[l] + 1
        out.append(theta[o : o + r * c].reshape(r, c))
        o += r * c
    return out


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def cost_grad(theta, sizes, X, Y, lam):
    """(J, grad) for X (m, s_0) and a 0/1 target matrix Y (m, K)."""
    m = X.shape[0]
    thetas = roll(theta, sizes)
    # forward: a^(l+1) = g(a^(l) W^T + b); the last layer keeps the logits
    A = [X]
    for l, T in enumerate(thetas):
        z = A[-1] @ T[:, 1:].T + T[:, 0]
        A.append(z if l == len(thetas) - 1 else sigmoid(z))
    zL = A[-1]
    # J = (1/m) sum softplus(z) - y z  +  lam/(2m) sum W^2
    J = (np.logaddexp(0, zL) - Y * zL).sum() / m
    J += lam / (2 * m) * sum(float((T[:, 1:] ** 2).sum()) for T in thetas)
    # backward: delta^(L) = h - y; Delta^(l) = delta^T [1, a]; delta^(l) = delta W .* a(1-a)
    delta = sigmoid(zL) - Y
    grads = [None] * len(thetas)
    for l in range(len(thetas) - 1, -1, -1):
        T = thetas[l]
        g = np.empty_like(T)
        g[:, 0] = delta.sum(axis=0) / m
        g[:, 1:] = delta.T @ A[l] / m + (lam / m) * T[:, 1:]
        grads[l] = g
        if l:
            delta = (delta @ T[:, 1:]) * A[l] * (1 - A[l])
    return float(J), np.concatenate([g.ravel() for g in grads])

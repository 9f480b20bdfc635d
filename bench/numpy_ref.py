"""The same math as bpnet's core in plain vectorized NumPy (the comparison
point "what you would write yourself"): sigmoid, tanh or relu hidden layers;
sigmoid outputs with cross-entropy per output, or a softmax output with
categorical cross-entropy; L2 on the non-bias weights.

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


def _act(z, activation):
    if activation == "sigmoid":
        return sigmoid(z)
    if activation == "tanh":
        return np.tanh(z)
    if activation == "relu":
        return np.maximum(z, 0)
    raise ValueError(f"activation must be sigmoid, tanh or relu; got {activation!r}")


def _act_grad(a, activation):
    """g'(z) from a = g(z)."""
    if activation == "sigmoid":
        return a * (1 - a)
    if activation == "tanh":
        return 1 - a * a
    return (a > 0).astype(a.dtype)


def cost_grad(theta, sizes, X, Y, lam, activation="sigmoid", output="sigmoid"):
    """(J, grad) for X (m, s_0) and a 0/1 target matrix Y (m, K)."""
    m = X.shape[0]
    thetas = roll(theta, sizes)
    # forward: a^(l+1) = g(a^(l) W^T + b); the last layer keeps the logits
    A = [X]
    for l, T in enumerate(thetas):
        z = A[-1] @ T[:, 1:].T + T[:, 0]
        A.append(z if l == len(thetas) - 1 else _act(z, activation))
    zL = A[-1]
    if output == "sigmoid":
        # J = (1/m) sum softplus(z) - y z; delta^(L) = sigmoid(z) - y
        J = (np.logaddexp(0, zL) - Y * zL).sum() / m
        delta = sigmoid(zL) - Y
    elif output == "softmax":
        # J = -(1/m) sum y log softmax(z); delta^(L) = softmax(z) sum(y) - y
        zs = zL - zL.max(axis=1, keepdims=True)
        lse = np.log(np.exp(zs).sum(axis=1, keepdims=True))
        J = -(Y * (zs - lse)).sum() / m
        delta = np.exp(zs - lse) * Y.sum(axis=1, keepdims=True) - Y
    else:
        raise ValueError(f"output must be sigmoid or softmax; got {output!r}")
    J += lam / (2 * m) * sum(float((T[:, 1:] ** 2).sum()) for T in thetas)
    # backward: Delta^(l) = delta^T [1, a]; delta^(l) = delta W .* g'(z)
    grads = [None] * len(thetas)
    for l in range(len(thetas) - 1, -1, -1):
        T = thetas[l]
        g = np.empty_like(T)
        g[:, 0] = delta.sum(axis=0) / m
        g[:, 1:] = delta.T @ A[l] / m + (lam / m) * T[:, 1:]
        grads[l] = g
        if l:
            delta = (delta @ T[:, 1:]) * _act_grad(A[l], activation)
    return float(J), np.concatenate([g.ravel() for g in grads])

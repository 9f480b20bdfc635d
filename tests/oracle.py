"""The NumPy oracle: a deliberately plain float64 reference for bpnet's core.

Written from the formulas of issue 2 (the "What the package computes"
section), not from the C++ code. Nothing here is clever: explicit bias
columns ``[1, a]``, an explicit one-hot matrix built from integer labels, and
a per-example loop version for tiny nets. Everything is float64.

Dimension letters: ``m`` examples, ``L`` layers with ``s_l`` units
(``sizes``), ``K = s_L`` outputs, ``P`` parameters. ``Theta^(l)`` has shape
``(s_{l+1}, s_l + 1)``, bias in column 0; ``theta`` is every ``Theta^(l)``
unrolled row-major in layer order.

Costs (``W = sum_i w_i``, ``w_i = 1`` without sample weights, ``W = m``):

    sigmoid:  J = (1/W) sum_i w_i sum_k [softplus(z_k) - y_k z_k]
                  (= -[y log h + (1 - y) log(1 - h)], computed from the logits)
    softmax:  J = (1/W) sum_i w_i sum_k y_k [logsumexp(z) - z_k]
    identity: J = (1/(2W)) sum_i w_i ||h - y||^2
    poisson:  J = (1/W) sum_i w_i sum_k [y_k log(y_k / h_k) - y_k + h_k], h = e^z
                  (half Poisson deviance; y log y = 0 at y = 0)
    all:      + lam/(2W) sum_l sum_{i, j>=1} Theta^(l)_ij^2

Backprop: ``delta^(L) = h - y`` (every output: each loss with its canonical link);
``delta^(l) = (Theta^(l)[:, 1:])^T delta^(l+1) .* g'(z^(l))``;
``Delta^(l) = sum_i w_i delta^(l+1) [1; a^(l)]^T``;
``D^(l) = Delta^(l)/W + (lam/W) Theta^(l)`` on columns ``j >= 1``, ``Delta^(l)/W``
on column 0.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
OUTPUTS = ("sigmoid", "softmax", "identity", "poisson")


# -- parameters -------------------------------------------------------------
def shapes(sizes):
    """Shapes (s_{l+1}, s_l + 1) of the Theta^(l)."""
    return [(sizes[layer + 1], sizes[layer] + 1) for layer in range(len(sizes) - 1)]


def n_params(sizes):
    return sum(r * c for r, c in shapes(sizes))


def roll(theta, sizes):
    """theta (P,) -> list of Theta^(l) (float64 copies), row-major, layer order."""
    theta = np.asarray(theta, dtype=np.float64)
    assert theta.shape == (n_params(sizes),)
    mats, o = [], 0
    for r, c in shapes(sizes):
        mats.append(theta[o : o + r * c].reshape(r, c).copy())
        o += r * c
    return mats


def unroll(mats):
    return np.concatenate([np.asarray(t, dtype=np.float64).reshape(-1) for t in mats])


# -- activations ------------------------------------------------------------
def sigmoid(z):
    """1 / (1 + e^-z), without overflow for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


ALIASES = {"logistic": "sigmoid"}  # scikit-learn's name for the same unit


def g(activation, z):
    """Hidden activation g(z)."""
    activation = ALIASES.get(activation, activation)
    if activation == "sigmoid":
        return sigmoid(z)
    if activation == "tanh":
        return np.tanh(z)
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "identity":
        return np.asarray(z, dtype=np.float64).copy()
    raise ValueError(activation)


def g_prime(activation, z):
    """g'(z), written from z."""
    activation = ALIASES.get(activation, activation)
    if activation == "sigmoid":
        a = sigmoid(z)
        return a * (1.0 - a)
    if activation == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if activation == "relu":
        return (z > 0).astype(np.float64)
    if activation == "identity":
        return np.ones_like(z, dtype=np.float64)
    raise ValueError(activation)


def softmax_parts(z):
    """Row-wise pieces of the softmax of z (m, K): the max mx (m,), E =
    exp(z - mx) (m, K) and the sum of E off the first argmax, s (m,); the
    sum of E over the row is 1 + s."""
    k = z.argmax(axis=1)
    mx = z[np.arange(len(z)), k]
    E = np.exp(z - mx[:, None])
    off = E.copy()
    off[np.arange(len(z)), k] = 0.0
    return mx, E, off.sum(axis=1)


def logsumexp(z):
    """Row-wise log(sum_k exp(z_k)) (m, K) -> (m,), as mx + log1p(s): a
    confident row keeps its tiny log1p(s) when mx - z_y cancels to 0."""
    mx, _, s = softmax_parts(z)
    return mx + np.log1p(s)


def output_fn(output, z):
    """h = a^(L) from the logits z (m, K)."""
    if output == "sigmoid":
        return sigmoid(z)
    if output == "softmax":
        return np.exp(z - logsumexp(z)[:, None])
    if output == "identity":
        return z.copy()
    if output == "poisson":
        return np.exp(z)
    raise ValueError(output)


def output_delta(output, z, h, Y):
    """delta^(L) = h - y (m, K), without the cancellation of h - 1 when h
    rounds to 1 (z = 50, y = 1 gives -1.9e-22, not 0): the sigmoid output's
    as (1 - y) sigmoid(z) - y sigmoid(-z); the softmax output's, for one-hot
    rows, as (1 - y) h - y (1 - h) with 1 - h_k = (sum of E off k) / (1 + s)
    (E and s as in softmax_parts; off k this sum is s where k is the argmax,
    else 1 + s - E_k, a sum of terms >= 0)."""
    if output == "sigmoid":
        return (1 - Y) * h - Y * sigmoid(-z)
    z2, Y2 = np.atleast_2d(z), np.atleast_2d(Y)  # a row (K,) or rows (m, K)
    if output == "softmax" and np.all((Y2 == 0) | (Y2 == 1)) and np.all(Y2.sum(axis=1) == 1):
        _, E, s = softmax_parts(z2)
        is_max = np.arange(z2.shape[1])[None, :] == z2.argmax(axis=1)[:, None]
        off = np.where(is_max, s[:, None], 1 + s[:, None] - E)
        return ((1 - Y2) * np.atleast_2d(h) - Y2 * off / (1 + s[:, None])).reshape(np.shape(h))
    return h - Y


# -- targets ----------------------------------------------------------------
def one_hot(labels, K):
    """Explicit (m, K) 0/1 matrix from class indices 0..K-1."""
    labels = np.asarray(labels)
    Y = np.zeros((labels.shape[0], K))
    for i, c in enumerate(labels):
        assert 0 <= c < K
        Y[i, c] = 1.0
    return Y


def target_matrix(y, K):
    y = np.asarray(y)
    if y.ndim == 1:
        assert y.dtype.kind in "iu"
        return one_hot(y, K)
    assert y.shape[1] == K
    return y.astype(np.float64)


# -- vectorized reference ---------------------------------------------------
def forward_all(theta, sizes, X, activation="sigmoid", output="sigmoid"):
    """Every z^(l) and a^(l) of the forward pass.

    Returns (zs, acts): zs[l] is z^(l+1) (m, s_{l+1}) for l = 0..L-2 (zs[-1] are
    the logits), acts[l] is a^(l+1) (m, s_l) with acts[0] = X and acts[-1] = h.
    """
    Thetas = roll(theta, sizes)
    a = np.asarray(X, dtype=np.float64)
    m = a.shape[0]
    acts, zs = [a], []
    for layer, Th in enumerate(Thetas):
        a1 = np.hstack([np.ones((m, 1)), a])  # [1, a^(l)]
        z = a1 @ Th.T  # z^(l+1) = Theta^(l) [1; a^(l)], one row per example
        zs.append(z)
        last = layer == len(Thetas) - 1
        a = output_fn(output, z) if last else g(activation, z)
        acts.append(a)
    return zs, acts


def forward(theta, sizes, X, activation="sigmoid", output="sigmoid"):
    """h = a^(L) (m, K)."""
    return forward_all(theta, sizes, X, activation, output)[1][-1]


def losses(output, z, Y):
    """Per-example loss (m,) from the logits z (m, K) and targets Y (m, K), stable."""
    if output == "sigmoid":
        # -[y log h + (1-y) log(1-h)] = log(1 + e^z) - y z
        return (np.logaddexp(0.0, z) - Y * z).sum(axis=1)
    if output == "softmax":
        # -sum_k y_k log softmax(z)_k = sum_k y_k (logsumexp(z) - z_k), with
        # logsumexp(z) - z_k = (mx - z_k) + log1p(s): no cancellation of mx
        mx, _, s = softmax_parts(z)
        return (Y * ((mx[:, None] - z) + np.log1p(s)[:, None])).sum(axis=1)
    if output == "identity":
        return 0.5 * ((z - Y) ** 2).sum(axis=1)
    if output == "poisson":
        # y log(y / h) - y + h with log h = z, and y log y = 0 at y = 0
        ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0)
        return (ylogy - Y * z - Y + np.exp(z)).sum(axis=1)
    raise ValueError(output)


def _weights(sample_weight, m):
    if sample_weight is None:
        return np.ones(m)
    w = np.asarray(sample_weight, dtype=np.float64)
    assert w.shape == (m,)
    return w


def reg_cost(Thetas, lam, W):
    """lam/(2W) sum_l sum_{i, j>=1} Theta^(l)_ij^2 (bias column not regularized)."""
    return lam / (2.0 * W) * sum(float((Th[:, 1:] ** 2).sum()) for Th in Thetas)


def cost(theta, sizes, X, y, lam=0.0, activation="sigmoid", output="sigmoid",
         sample_weight=None):
    zs, _ = forward_all(theta, sizes, X, activation, output)
    Y = target_matrix(y, sizes[-1])
    w = _weights(sample_weight, Y.shape[0])
    W = w.sum()
    return float((w * losses(output, zs[-1], Y)).sum() / W) + reg_cost(
        roll(theta, sizes), lam, W
    )


def backprop(theta, sizes, X, y, lam=0.0, activation="sigmoid", output="sigmoid",
             sample_weight=None):
    """Vectorized backprop.

    Returns a dict with J, grad (P,), and the per-layer intermediates:
    zs, acts (see forward_all), deltas[l] = delta^(l+1) (m, s_l) for l = 1..L-1
    (deltas[0] is None), Deltas[l] = Delta^(l) and Ds[l] = D^(l).
    """
    Thetas = roll(theta, sizes)
    zs, acts = forward_all(theta, sizes, X, activation, output)
    Y = target_matrix(y, sizes[-1])
    m = Y.shape[0]
    w = _weights(sample_weight, m)
    W = w.sum()
    n = len(Thetas)

    deltas = [None] * (n + 1)
    deltas[n] = output_delta(output, zs[-1], acts[-1], Y)  # delta^(L) = a^(L) - y
    for layer in range(n - 1, 0, -1):
        # delta^(l) = (Theta^(l)[:, 1:])^T delta^(l+1) .* g'(z^(l))
        back = deltas[layer + 1] @ Thetas[layer][:, 1:]
        deltas[layer] = back * g_prime(activation, zs[layer - 1])

    Deltas, Ds = [], []
    for layer in range(n):
        a1 = np.hstack([np.ones((m, 1)), acts[layer]])  # [1, a^(l)]
        Delta = (w[:, None] * deltas[layer + 1]).T @ a1  # sum_i w_i delta^(l+1) [1; a^(l)]^T
        D = Delta / W
        D[:, 1:] += lam / W * Thetas[layer][:, 1:]
        Deltas.append(Delta)
        Ds.append(D)

    J = float((w * losses(output, zs[-1], Y)).sum() / W) + reg_cost(Thetas, lam, W)
    return {
        "J": J,
        "grad": unroll(Ds),
        "zs": zs,
        "acts": acts,
        "deltas": deltas,
        "Deltas": Deltas,
        "Ds": Ds,
    }


def cost_grad(theta, sizes, X, y, lam=0.0, activation="sigmoid", output="sigmoid",
              sample_weight=None):
    r = backprop(theta, sizes, X, y, lam, activation, output, sample_weight)
    return r["J"], r["grad"]


# -- per-example loop (tiny nets only) --------------------------------------
def cost_grad_loop(theta, sizes, X, y, lam=0.0, activation="sigmoid", output="sigmoid",
                   sample_weight=None):
    """The same J and gradient, one example at a time, as in the textbook loop."""
    Thetas = roll(theta, sizes)
    X = np.asarray(X, dtype=np.float64)
    Y = target_matrix(y, sizes[-1])
    m = X.shape[0]
    w = _weights(sample_weight, m)
    W = w.sum()
    n = len(Thetas)
    Deltas = [np.zeros_like(Th) for Th in Thetas]
    J = 0.0
    for i in range(m):
        # forward
        a = [X[i]]
        z = [None]
        for layer in range(n):
            a1 = np.concatenate([[1.0], a[layer]])
            zl = Thetas[layer] @ a1
            z.append(zl)
            if layer == n - 1:
                a.append(output_fn(output, zl[None, :])[0])
            else:
                a.append(g(activation, zl))
        J += w[i] * losses(output, z[n][None, :], Y[i][None, :])[0]
        # backward
        delta = output_delta(output, z[n], a[n], Y[i])
        for layer in range(n - 1, -1, -1):
            a1 = np.concatenate([[1.0], a[layer]])
            Deltas[layer] += w[i] * np.outer(delta, a1)
            if layer > 0:
                delta = (Thetas[layer][:, 1:].T @ delta) * g_prime(activation, z[layer])
    Ds = []
    for layer in range(n):
        D = Deltas[layer] / W
        D[:, 1:] += lam / W * Thetas[layer][:, 1:]
        Ds.append(D)
    J = J / W + reg_cost(Thetas, lam, W)
    return float(J), unroll(Ds)


# -- literal cost (moderate logits only) ------------------------------------
def cost_literal(theta, sizes, X, y, lam=0.0, activation="sigmoid", output="sigmoid",
                 sample_weight=None):
    """J written literally with log h and log(1 - h); overflows for large |z|."""
    h = forward(theta, sizes, X, activation, output)
    Y = target_matrix(y, sizes[-1])
    w = _weights(sample_weight, Y.shape[0])
    W = w.sum()
    if output == "sigmoid":
        per = -(Y * np.log(h) + (1 - Y) * np.log(1 - h)).sum(axis=1)
    elif output == "softmax":
        per = -(Y * np.log(h)).sum(axis=1)
    elif output == "poisson":
        with np.errstate(divide="ignore", invalid="ignore"):
            per = (np.where(Y > 0, Y * np.log(Y / h), 0.0) - Y + h).sum(axis=1)
    else:
        per = 0.5 * ((h - Y) ** 2).sum(axis=1)
    return float((w * per).sum() / W) + reg_cost(roll(theta, sizes), lam, W)

"""
The cost and gradient by hand
=============================

The formulas of :doc:`/guide/math`, written out in NumPy for a 4-5-3 network
with sigmoid hidden units and a softmax output, and compared with the C++
core's :func:`bpnet.cost_grad`.
"""

import matplotlib.pyplot as plt
import numpy as np

import bpnet

sizes = [4, 5, 3]
rng = np.random.default_rng(0)
m, lam = 50, 0.7
X = rng.standard_normal((m, sizes[0]))
y = rng.integers(0, sizes[-1], m)
theta = bpnet.random_theta(sizes, rng=0)

# %%
# Parameters: ``Theta^(l)`` is ``s_{l+1} x (s_l + 1)``, column 0 the bias.

Theta = bpnet.roll(theta, sizes)
print([T.shape for T in Theta], "P =", bpnet.n_params(sizes))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# %%
# Forward pass, cost and backpropagation

Y = np.eye(sizes[-1])[y]  # one-hot targets (m, K)
a0 = np.hstack([np.ones((m, 1)), X])  # [1, x]
z1 = a0 @ Theta[0].T
a1 = np.hstack([np.ones((m, 1)), sigmoid(z1)])  # [1, g(z1)]
z2 = a1 @ Theta[1].T
h = np.exp(z2 - z2.max(axis=1, keepdims=True))
h /= h.sum(axis=1, keepdims=True)  # softmax

J = -np.sum(Y * np.log(h)) / m
J += lam / (2 * m) * sum(np.sum(T[:, 1:] ** 2) for T in Theta)

d2 = h - Y  # delta at the output
d1 = (d2 @ Theta[1][:, 1:]) * sigmoid(z1) * (1 - sigmoid(z1))
D = [d1.T @ a0 / m, d2.T @ a1 / m]  # Delta / m
for T, G in zip(Theta, D):
    G[:, 1:] += lam / m * T[:, 1:]  # + lam/m Theta, bias excluded
grad = bpnet.unroll(D)

# %%
# The core agrees

J_core, grad_core = bpnet.cost_grad(
    theta, sizes, X, y, lam, output="softmax"
)
print(f"J: by hand {J:.12f}, core {J_core:.12f}")
print(f"largest gradient difference: {np.abs(grad - grad_core).max():.1e}")
assert abs(J - J_core) < 1e-12 and np.allclose(
    grad, grad_core, rtol=1e-10, atol=1e-14
)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(grad_core, "o", ms=5, label="core")
ax.plot(grad, "x", ms=5, label="NumPy, by hand")
ax.set_xlabel("parameter index")
ax.set_ylabel("dJ/dtheta")
ax.legend()
fig.tight_layout()

"""
Checking the gradient
=====================

Backpropagation's gradient against central differences
``(J(theta + eps e_p) - J(theta - eps e_p)) / (2 eps)``, for every parameter,
on the classic check problem (deterministic weights ``sin(1..n)/10``).
:func:`bpnet.check_gradients` reports the relative difference
``||num - bp|| / ||num + bp||`` overall, per layer, and for the bias
columns and the other weights apart.
"""

import matplotlib.pyplot as plt
import numpy as np

import bpnet

report = bpnet.check_gradients((3, 5, 3), lam=3.0)
print(report)
print("passes at 1e-9:", report.ok())

# %%
# Every activation and output unit
# --------------------------------

for activation in ("sigmoid", "tanh", "relu"):
    for output in ("sigmoid", "softmax", "identity"):
        r = bpnet.check_gradients(
            (4, 6, 5, 3), lam=1.0, activation=activation, output=output
        )
        print(
            f"{activation:>8} hidden, {output:>8} output: "
            f"{r.relative_difference:.2e}"
        )

# %%
# Entry by entry
# --------------
# The absolute difference of each of the 38 parameters; the vertical lines
# separate ``Theta^(0)`` (5 x 4) from ``Theta^(1)`` (3 x 6).

diff = np.abs(report.numerical - report.backprop)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(np.arange(diff.size), np.maximum(diff, 1e-18), "o", ms=4)
ax.axvline(20 - 0.5, color="gray", lw=1)
ax.set_xlabel("parameter index p")
ax.set_ylabel("|numerical - backprop|")
ax.set_title("central differences (eps = 1e-4) vs backprop")
fig.tight_layout()

# %%
# A sampled check of a larger network
# -----------------------------------
# The full check costs ``2 P + 1`` cost evaluations; ``sample=N`` checks N
# parameters (at least one bias and one weight of every layer).

big = bpnet.check_gradients((64, 100, 10), lam=1.0, m=20, sample=200)
print(big)

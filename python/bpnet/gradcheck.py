"""Numerical gradient check: central differences against backprop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .functional import check_layer_sizes, cost_grad, layer_shapes
from .initialization import debug_matrix, debug_theta

__all__ = ["GradientReport", "check_gradients", "classic_check_data"]


def _rel(num: np.ndarray, bp: np.ndarray) -> float:
    """``||num - bp|| / ||num + bp||`` (0 when both are zero)."""
    den = np.linalg.norm(num + bp)
    return float(np.linalg.norm(num - bp) / den) if den > 0 else 0.0


@dataclass
class LayerReport:
    layer: int
    shape: tuple[int, int]
    relative_difference: float
    bias: float
    weights: float


@dataclass
class GradientReport:
    """Result of :func:`check_gradients`.

    Attributes
    ----------
    numerical, backprop : ndarray (P,)
        Central-difference and backprop gradients.
    relative_difference : float
        ``||num - bp|| / ||num + bp||`` over all parameters.
    bias, weights : float
        The same over the bias columns only and the non-bias weights only.
    layers : list of LayerReport
        The same per ``Theta^(l)``.
    """

    layer_sizes: tuple[int, ...]
    lam: float
    eps: float
    numerical: np.ndarray = field(repr=False)
    backprop: np.ndarray = field(repr=False)
    relative_difference: float
    bias: float
    weights: float
    layers: list[LayerReport]

    def ok(self, tol: float = 1e-9) -> bool:
        """Whether the whole-network figures (all parameters, all bias columns,
        all non-bias weights) are below ``tol``.

        The per-layer figures are reported but not judged: a layer whose
        gradient entries are tiny (the first layer of the classic check net
        has entries of 3e-6 .. 4e-4) divides the central differences'
        rounding error, ~1e-11 absolute with eps = 1e-4, by a small norm, so
        its relative figure sits near 5e-9 even when backprop is exact.
        """
        return all(f < tol for f in (self.relative_difference, self.bias, self.weights))

    def figures(self) -> list[tuple[str, float]]:
        """Every figure :meth:`__str__` prints, labelled: per layer and for the
        whole network, each overall / bias / weights."""
        rows = [(f"Theta{r.layer + 1}", r.relative_difference, r.bias, r.weights)
                for r in self.layers]
        rows.append(("all", self.relative_difference, self.bias, self.weights))
        return [
            (f"{name} {col}", float(v))
            for name, *vals in rows
            for col, v in zip(("overall", "bias", "weights"), vals)
        ]

    def __str__(self) -> str:
        lines = [
            f"gradient check: layer_sizes={list(self.layer_sizes)} lam={self.lam:g} "
            f"eps={self.eps:g} P={self.numerical.size}",
            f"{'':>12} {'shape':>12} {'overall':>10} {'bias':>10} {'weights':>10}",
        ]
        for r in self.layers:
            lines.append(
                f"{'Theta' + str(r.layer + 1):>12} {r.shape!s:>12} "
                f"{r.relative_difference:10.2e} {r.bias:10.2e} {r.weights:10.2e}"
            )
        lines.append(
            f"{'all':>12} {'':>12} {self.relative_difference:10.2e} {self.bias:10.2e} "
            f"{self.weights:10.2e}"
        )
        return "\n".join(lines)


def classic_check_data(
    layer_sizes: Sequence[int] = (3, 5, 3), m: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classic check problem: debug weights, ``X = sin(1..m*s_0)/10`` and
    labels ``1 + (i mod K)`` for i = 1..m, mapped to 0-based class indices."""
    sizes = check_layer_sizes(layer_sizes)
    theta = debug_theta(sizes)
    X = np.ascontiguousarray(debug_matrix(m, sizes[0]))
    K = sizes[-1]
    y = (np.arange(1, m + 1) % K).astype(np.int64)  # 1 + (i mod K), minus 1
    return theta, X, y


def check_gradients(
    layer_sizes: Sequence[int] = (3, 5, 3),
    lam: float = 0.0,
    *,
    theta: np.ndarray | None = None,
    X: np.ndarray | None = None,
    y: np.ndarray | None = None,
    m: int = 5,
    eps: float = 1e-4,
    activation: str = "sigmoid",
    output: str = "sigmoid",
    sample_weight: np.ndarray | None = None,
) -> GradientReport:
    """Compare backprop with central differences ``(J(t + eps) - J(t - eps)) / (2 eps)``.

    With no ``theta``/``X``/``y`` it runs the classic check problem
    (:func:`classic_check_data`) on ``layer_sizes``.

    Returns
    -------
    GradientReport
        Relative differences overall, per layer, and for bias vs non-bias weights.
    """
    sizes = check_layer_sizes(layer_sizes)
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be finite and > 0; got {eps}")
    t0, X0, y0 = classic_check_data(sizes, m)
    theta = t0 if theta is None else np.array(theta, dtype=np.float64)
    X = X0 if X is None else X
    y = y0 if y is None else y
    def J_grad(t: np.ndarray) -> tuple[float, np.ndarray]:
        return cost_grad(t, sizes, X, y, lam, activation=activation, output=output,
                         sample_weight=sample_weight)

    _, bp = J_grad(theta)
    num = np.empty_like(theta)
    t = theta.copy()
    for p in range(theta.size):
        t[p] = theta[p] + eps
        j_plus, _ = J_grad(t)
        t[p] = theta[p] - eps
        j_minus, _ = J_grad(t)
        t[p] = theta[p]
        num[p] = (j_plus - j_minus) / (2 * eps)

    bias_mask = np.zeros(theta.size, dtype=bool)
    layers, o = [], 0
    for l, (r, c) in enumerate(layer_shapes(sizes)):
        sl = slice(o, o + r * c)
        mask = np.zeros((r, c), dtype=bool)
        mask[:, 0] = True
        bias_mask[sl] = mask.ravel()
        n, b = num[sl].reshape(r, c), bp[sl].reshape(r, c)
        layers.append(
            LayerReport(l, (r, c), _rel(n, b), _rel(n[:, 0], b[:, 0]), _rel(n[:, 1:], b[:, 1:]))
        )
        o += r * c
    return GradientReport(
        layer_sizes=sizes,
        lam=float(lam),
        eps=float(eps),
        numerical=num,
        backprop=bp,
        relative_difference=_rel(num, bp),
        bias=_rel(num[bias_mask], bp[bias_mask]),
        weights=_rel(num[~bias_mask], bp[~bias_mask]),
        layers=layers,
    )

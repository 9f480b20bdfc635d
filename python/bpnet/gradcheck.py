"""Numerical gradient check: central differences against backprop."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .functional import check_layer_sizes, cost_grad, layer_shapes
from .initialization import as_generator, debug_matrix, debug_theta

__all__ = ["GradientReport", "check_gradients", "classic_check_data", "estimated_seconds"]


def _rel(num: np.ndarray, bp: np.ndarray) -> float:
    """``||num - bp|| / ||num + bp||`` (0 when both are zero)."""
    den = np.linalg.norm(num + bp)
    return float(np.linalg.norm(num - bp) / den) if den > 0 else 0.0


@dataclass
class LayerReport:
    """The relative differences of one weight matrix, in :class:`GradientReport`.

    Attributes
    ----------
    layer : int
        ``l`` of ``Theta^(l)``, 0-based (printed as ``Theta{l + 1}``).
    shape : tuple of int
        ``(s_{l+1}, s_l + 1)``.
    relative_difference : float
        ``||num - bp|| / ||num + bp||`` over this matrix's checked entries.
    bias, weights : float
        The same over its bias column (column 0) and its other columns.
    """

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
    layer_sizes : tuple of int
        The checked network's layer sizes.
    lam : float
        The regularization strength of the checked cost.
    eps : float
        The central differences' step.
    numerical, backprop : ndarray (P,)
        Central-difference and backprop gradients.
    relative_difference : float
        ``||num - bp|| / ||num + bp||`` over all parameters.
    bias, weights : float
        The same over the bias columns only and the non-bias weights only.
    layers : list of LayerReport
        The same per ``Theta^(l)``.
    checked : ndarray of int or None
        With ``sample``: the indices of the parameters that were checked
        (``numerical`` is NaN elsewhere; every figure estimates, from them,
        the figure a full check would give);
        None when every parameter was checked.

    Examples
    --------
    >>> import bpnet
    >>> report = bpnet.check_gradients((3, 5, 3), lam=3.0)
    >>> report.ok()
    True
    >>> [layer.shape for layer in report.layers]
    [(5, 4), (3, 6)]
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
    checked: np.ndarray | None = field(default=None, repr=False)

    def ok(self, tol: float = 1e-9) -> bool:
        """Whether the whole-network figures (all parameters, all bias columns,
        all non-bias weights) are below ``tol``.

        Parameters
        ----------
        tol : float, default=1e-9
            The largest relative difference that passes.

        Returns
        -------
        bool

        Notes
        -----
        The per-layer figures are reported but not judged: a layer whose
        gradient entries are tiny (the first layer of the classic check net
        has entries of 3e-6 .. 4e-4) divides the central differences'
        rounding error, ~1e-11 absolute with eps = 1e-4, by a small norm, so
        its relative figure sits near 5e-9 even when backprop is exact.
        """
        return all(f < tol for f in (self.relative_difference, self.bias, self.weights))

    def figures(self) -> list[tuple[str, float]]:
        """Every figure the report prints, labelled.

        Returns
        -------
        list of (str, float)
            Per layer and for the whole network, each overall / bias / weights:
            ``("Theta1 overall", 1.2e-11)``, ..., ``("all weights", ...)``.
        """
        rows = [(f"Theta{r.layer + 1}", r.relative_difference, r.bias, r.weights)
                for r in self.layers]
        rows.append(("all", self.relative_difference, self.bias, self.weights))
        return [
            (f"{name} {col}", float(v))
            for name, *vals in rows
            for col, v in zip(("overall", "bias", "weights"), vals)
        ]

    def __str__(self) -> str:
        sampled = "" if self.checked is None else f" (checked {self.checked.size} sampled)"
        lines = [
            f"gradient check: layer_sizes={list(self.layer_sizes)} lam={self.lam:g} "
            f"eps={self.eps:g} P={self.numerical.size}{sampled}",
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


# Seconds per cost evaluation: Python and call overhead plus ~6 flops per
# example and parameter (forward and backward) at a conservative 5 GFLOP/s.
_CALL_SECONDS = 15e-6
_FLOPS_PER_SECOND = 5e9


def estimated_seconds(n_params: int, m: int, n_checked: int | None = None) -> float:
    """Rough time of :func:`check_gradients`: ``2 n_checked + 1`` evaluations."""
    evals = 2 * (n_params if n_checked is None else n_checked) + 1
    return evals * (_CALL_SECONDS + 6.0 * m * n_params / _FLOPS_PER_SECOND)


def _sample_indices(sizes: tuple[int, ...], k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` parameter indices, at least one bias and one weight of every layer."""
    P = sum(r * c for r, c in layer_shapes(sizes))
    if k >= P:
        return np.arange(P)
    groups, o = [], 0
    for r, c in layer_shapes(sizes):
        idx = np.arange(o, o + r * c).reshape(r, c)
        groups += [idx[:, 0].ravel(), idx[:, 1:].ravel()]
        o += r * c
    chosen = [rng.choice(g, 1) for g in groups]  # one of each group
    rest = np.setdiff1d(np.arange(P), np.concatenate(chosen))
    extra = max(0, k - len(chosen))
    chosen.append(rng.choice(rest, min(extra, rest.size), replace=False))
    return np.unique(np.concatenate(chosen))


def _affordable(P: int, m: int, max_seconds: float) -> str:
    per_param = 2 * (_CALL_SECONDS + 6.0 * m * P / _FLOPS_PER_SECOND)
    k = int(max_seconds / per_param)
    if k >= 2:
        return (f"check a sample of the parameters (sample={k} in Python, --sample {k} on "
                "the command line) or use fewer examples")
    return "use fewer examples (m, --examples)"


def check_gradients(
    layer_sizes: Sequence[int] = (3, 5, 3), lam: float = 0.0, *,
    theta: np.ndarray | None = None, X: np.ndarray | None = None,
    y: np.ndarray | None = None, m: int = 5, eps: float = 1e-4,
    activation: str = "sigmoid", output: str = "sigmoid",
    sample_weight: np.ndarray | None = None, sample: int | None = None,
    rng: np.random.Generator | int | None = 0, max_seconds: float | None = 60.0,
) -> GradientReport:
    """Compare backprop with central differences ``(J(t + eps) - J(t - eps)) / (2 eps)``.

    With no ``theta``/``X``/``y`` it runs the classic check problem
    (:func:`classic_check_data`): :func:`bpnet.debug_theta` weights,
    ``X = sin(1..m*s_0) / 10`` and labels ``1 + (i mod K)``.

    Parameters
    ----------
    layer_sizes : sequence of int, default=(3, 5, 3)
        ``[s_0, ..., s_{L-1}]``, at least two layers.
    lam : float, default=0.0
        Regularization strength of the checked cost.
    theta : ndarray (P,), optional
        Parameters at which to check (as float64); default the debug weights.
    X : ndarray (m, s_0), optional
        Inputs as :func:`bpnet.cost_grad` takes them; default the classic ones.
    y : ndarray (m,) int or (m, K), optional
        Class indices ``0..K-1`` or a target matrix; default the classic labels.
    m : int, default=5
        Examples of the classic problem (ignored when ``X`` is given).
    eps : float, default=1e-4
        Step of the central differences (finite, > 0).
    activation : {"sigmoid", "tanh", "relu"}, default="sigmoid"
        Hidden units of the checked network.
    output : {"sigmoid", "softmax", "identity", "poisson"}, default="sigmoid"
        Output unit, and with it the loss.
    sample_weight : ndarray (m,), optional
        Per-example weights of the checked cost (>= 0).
    sample : int, optional
        Check only this many parameters, drawn from ``rng`` (at least one bias
        and one weight of every layer); default all. The check costs
        ``2 P + 1`` evaluations of O(m P) each, so a large network needs it.
    rng : Generator or int, default=0
        Source of the sample (seed 0: the same sample every run).
    max_seconds : float or None, default=60.0
        Refuse a check estimated to take longer; None for no limit.

    Returns
    -------
    GradientReport
        Relative differences overall, per layer, and for bias vs non-bias weights.

    Raises
    ------
    ValueError
        For a bad ``eps``, ``sample`` or ``m``, a check estimated above
        ``max_seconds`` (the message gives the estimate), or arguments
        :func:`bpnet.cost_grad` refuses.
    """
    sizes = check_layer_sizes(layer_sizes)
    _check_arguments(sizes, X, m, eps, sample, max_seconds)
    t0, X0, y0 = classic_check_data(sizes, m)
    theta = t0 if theta is None else np.array(theta, dtype=np.float64)
    X = X0 if X is None else X
    y = y0 if y is None else y

    def J_grad(t: np.ndarray) -> tuple[float, np.ndarray]:
        return cost_grad(t, sizes, X, y, lam, activation=activation, output=output,
                         sample_weight=sample_weight)

    _, bp = J_grad(theta)
    checked = None
    if sample is not None and sample < theta.size:
        checked = _sample_indices(sizes, sample, as_generator(rng))
    num = _central_differences(J_grad, theta, eps, checked)
    return _report(sizes, float(lam), float(eps), num, bp, checked)


def _check_arguments(
    sizes: tuple[int, ...], X: np.ndarray | None, m: int, eps: float,
    sample: int | None, max_seconds: float | None,
) -> None:
    """ValueError naming the argument for a bad ``eps`` / ``sample`` / ``m``,
    or for a check estimated to take longer than ``max_seconds``."""
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be finite and > 0; got {eps}")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int)
                               or sample < 1):
        raise ValueError(f"sample must be None or an int >= 1; got {sample!r}")
    P = sum(r * c for r, c in layer_shapes(sizes))
    try:
        m_eff = operator.index(m) if X is None else int(np.shape(X)[0])
    except TypeError:
        raise ValueError(f"m must be an int >= 1; got {m!r}") from None
    if isinstance(m, bool) or m_eff < 1:
        raise ValueError(f"m must be an int >= 1; got {m!r}")
    cost = estimated_seconds(P, m_eff, sample)
    if max_seconds is not None and cost > max_seconds:
        raise ValueError(
            f"the gradient check of layer_sizes={list(sizes)} with m={m_eff} would take about "
            f"{cost:,.0f} s ({2 * (P if sample is None else min(sample, P)) + 1:,} cost "
            f"evaluations of {m_eff:,} examples x {P:,} parameters; limit "
            f"max_seconds={max_seconds:g}): {_affordable(P, m_eff, max_seconds)}"
        )


def _central_differences(
    J_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], theta: np.ndarray,
    eps: float, checked: np.ndarray | None,
) -> np.ndarray:
    """``num[p] = (J(theta + eps e_p) - J(theta - eps e_p)) / (2 eps)`` (P,)
    for every ``p`` in ``checked`` (all when None); NaN elsewhere."""
    num = np.full_like(theta, np.nan)
    t = theta.copy()
    for p in range(theta.size) if checked is None else checked.tolist():
        t[p] = theta[p] + eps
        j_plus, _ = J_grad(t)
        t[p] = theta[p] - eps
        j_minus, _ = J_grad(t)
        t[p] = theta[p]
        num[p] = (j_plus - j_minus) / (2 * eps)
    return num


def _estimated_rel(num: np.ndarray, bp: np.ndarray, seen: np.ndarray) -> float:
    """The relative difference a full check of this group would print, from
    the checked entries (``seen``) alone; equal to :func:`_rel` when every
    entry was checked.

    The central differences carry a rounding error of about the same absolute
    size in every entry, so the sampled error norm is scaled up by
    ``sqrt(group size / checked)``, and the denominator is the full group's
    ``||num + bp||`` with ``2 bp`` (known for every entry) where ``num`` was
    not computed. The plain ratio over a few sampled entries would divide that
    rounding error by the norm of a few (possibly tiny) entries, and report a
    failure where the full check passes.
    """
    n_seen = int(seen.sum())
    if n_seen == seen.size:
        return _rel(num, bp)
    if n_seen == 0:
        return 0.0
    err = np.linalg.norm(num[seen] - bp[seen]) * np.sqrt(seen.size / n_seen)
    den = np.hypot(np.linalg.norm(num[seen] + bp[seen]), np.linalg.norm(2.0 * bp[~seen]))
    return float(err / den) if den > 0 else 0.0


def _report(
    sizes: tuple[int, ...], lam: float, eps: float, num: np.ndarray, bp: np.ndarray,
    checked: np.ndarray | None,
) -> GradientReport:
    """The relative differences of ``num`` and ``bp`` (P,): overall, bias
    columns, non-bias weights, and per ``Theta^(l)``; with ``checked``, each
    estimated from the checked parameters (:func:`_estimated_rel`)."""
    bias_mask = np.zeros(num.size, dtype=bool)
    seen = np.ones(num.size, dtype=bool) if checked is None else np.zeros(num.size, bool)
    if checked is not None:
        seen[checked] = True
    layers, o = [], 0
    for l, (r, c) in enumerate(layer_shapes(sizes)):
        sl = slice(o, o + r * c)
        mask = np.zeros((r, c), dtype=bool)
        mask[:, 0] = True
        bias_mask[sl] = mask.ravel()
        n, b, s = num[sl].reshape(r, c), bp[sl].reshape(r, c), seen[sl].reshape(r, c)
        layers.append(LayerReport(
            l, (r, c), _estimated_rel(n, b, s), _estimated_rel(n[:, 0], b[:, 0], s[:, 0]),
            _estimated_rel(n[:, 1:], b[:, 1:], s[:, 1:]),
        ))
        o += r * c
    return GradientReport(
        checked=checked,
        layer_sizes=sizes,
        lam=lam,
        eps=eps,
        numerical=num,
        backprop=bp,
        relative_difference=_estimated_rel(num, bp, seen),
        bias=_estimated_rel(num[bias_mask], bp[bias_mask], seen[bias_mask]),
        weights=_estimated_rel(num[~bias_mask], bp[~bias_mask], seen[~bias_mask]),
        layers=layers,
    )

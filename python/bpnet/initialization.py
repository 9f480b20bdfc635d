"""Initial weights: random (training) and deterministic (gradient checks)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._params import check_dtype
from .functional import check_layer_sizes, layer_shapes

__all__ = ["as_generator", "debug_theta", "random_theta"]


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """``rng`` as a ``numpy.random.Generator`` (an int seeds a new one)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        if rng is not None and rng < 0:
            raise ValueError(f"rng seed must be >= 0; got {rng}")
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be a numpy.random.Generator, an int seed or None; got {rng!r}")


def random_theta(
    layer_sizes: Sequence[int],
    rng: np.random.Generator | int | None = None,
    *,
    dtype: np.dtype | type | str = np.float64,
) -> np.ndarray:
    """Random weights, each ``Theta^(l)`` uniform in ``[-eps_l, eps_l]``.

    ``eps_l = sqrt(6) / sqrt(s_l + s_{l+1})`` (Glorot's bound), bias column
    included. Draws are made in float64 from ``rng`` (same seed, same
    weights) and rounded once for float32.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[s_0, ..., s_{L-1}]``, at least two layers, each >= 1.
    rng : numpy.random.Generator, int or None, optional
        The source of the draws; an int seeds a new Generator (>= 0); None
        draws fresh entropy.
    dtype : {float64, float32}, default=float64
        Any spelling NumPy understands (``"f4"``, ``np.float32``, ...).

    Returns
    -------
    theta : ndarray (P,)
        Every ``Theta^(l)`` (``s_{l+1}`` x ``s_l + 1``) unrolled row-major, in
        layer order.

    Examples
    --------
    >>> import bpnet
    >>> theta = bpnet.random_theta([4, 5, 3], rng=0)
    >>> theta.shape, bool(abs(theta[:25]).max() <= (6 / 9) ** 0.5)
    ((43,), True)
    """
    sizes = check_layer_sizes(layer_sizes)
    dt = check_dtype(dtype)
    gen = as_generator(rng)
    shapes = layer_shapes(sizes)
    theta = np.empty(sum(r * c for r, c in shapes))
    at = 0
    for l, (r, c) in enumerate(shapes):
        eps = np.sqrt(6.0) / np.sqrt(sizes[l] + sizes[l + 1])
        # in place, the bits of gen.uniform(-eps, eps, r * c): -eps + (2 eps) u, u in [0, 1)
        part = theta[at : at + r * c]
        gen.random(out=part)
        part *= eps + eps
        part += -eps
        at += r * c
    return theta.astype(dt, copy=False)


def debug_theta(
    layer_sizes: Sequence[int], *, dtype: np.dtype | type | str = np.float64
) -> np.ndarray:
    """Deterministic weights for gradient checks: ``Theta^(l) = sin(1..n_l) / 10``.

    Each matrix is filled column by column (the classic course's
    ``reshape(sin(1:numel(W)), size(W)) / 10``) and then unrolled row-major.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[s_0, ..., s_{L-1}]``, at least two layers, each >= 1.
    dtype : {float64, float32}, default=float64
        The result's dtype (computed in float64, rounded once).

    Returns
    -------
    theta : ndarray (P,)
        ``n_l = s_{l+1} (s_l + 1)`` values per layer, in layer order.

    Examples
    --------
    >>> import bpnet
    >>> t = bpnet.debug_theta([3, 5, 3])
    >>> t.shape, round(float(t[0]), 6), round(float(t[1]), 6)  # sin(1)/10, sin(6)/10
    ((38,), 0.084147, -0.027942)
    """
    dt = check_dtype(dtype)
    parts = [debug_matrix(r, c) for r, c in layer_shapes(layer_sizes)]
    return np.concatenate([p.ravel() for p in parts]).astype(dt, copy=False)


def debug_matrix(rows: int, cols: int) -> np.ndarray:
    """``sin(1..rows*cols) / 10`` reshaped column-major to (rows, cols), float64."""
    return np.sin(np.arange(1, rows * cols + 1, dtype=np.float64)).reshape(
        (rows, cols), order="F"
    ) / 10.0

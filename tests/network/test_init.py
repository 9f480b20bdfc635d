"""Initial weights: random_theta (range, distribution, reproducibility, float32)
and debug_theta (sin(1..n)/10, column-major per matrix)."""

from __future__ import annotations

import numpy as np
import oracle
import pytest
import scipy.stats
from numpy.testing import assert_array_equal

import bpnet

NETS = [(400, 25, 10), (30, 50, 20, 40), (64, 64, 64, 64, 10)]


def eps_of(sizes, layer):
    return np.sqrt(6.0) / np.sqrt(sizes[layer] + sizes[layer + 1])


@pytest.mark.parametrize("sizes", NETS)
def test_random_theta_range_per_layer(sizes):
    theta = bpnet.random_theta(sizes, np.random.default_rng(0))
    assert theta.shape == (oracle.n_params(sizes),) and theta.dtype == np.float64
    for layer, T in enumerate(oracle.roll(theta, sizes)):
        eps = eps_of(sizes, layer)
        assert np.abs(T).max() <= eps, f"Theta[{layer}] leaves [-eps, eps], eps = {eps}"
        # the range is filled: P(max |entry| < (1 - 20/n) eps) = (1 - 20/n)^n < e^-20,
        # so a too-small eps (e.g. another layer's) is caught
        n = T.size
        assert n >= 200
        assert np.abs(T).max() > (1 - 20 / n) * eps, f"Theta[{layer}] does not reach {eps}"
        # the bias column is drawn from the same range
        assert np.abs(T[:, 0]).max() <= eps


@pytest.mark.parametrize("sizes", NETS)
def test_random_theta_is_uniform(sizes):
    theta = bpnet.random_theta(sizes, np.random.default_rng(1))
    for layer, T in enumerate(oracle.roll(theta, sizes)):
        eps, n = eps_of(sizes, layer), T.size
        u = T.ravel() / eps  # should be U(-1, 1): mean 0, variance 1/3
        # tolerances are 6 standard errors (the seed is fixed: these cannot flake)
        assert abs(u.mean()) < 6 * np.sqrt(1 / 3 / n), f"Theta[{layer}] mean {u.mean()}"
        assert abs(u.var() - 1 / 3) < 6 * np.sqrt(4 / 45 / n), f"Theta[{layer}] var {u.var()}"
        ks = scipy.stats.kstest(u, scipy.stats.uniform(loc=-1, scale=2).cdf)
        assert ks.pvalue > 1e-4, f"Theta[{layer}] not uniform: {ks}"
        # both tails and the middle are used (not e.g. {-eps, +eps}): quarter-width
        # bins each hold 1/4 of the draws, within 6 binomial standard errors
        tol = 6 * np.sqrt(0.25 * 0.75 / n)
        for lo in (-1.0, -0.5, 0.0, 0.5):
            frac = ((u >= lo) & (u < lo + 0.5)).mean()
            assert abs(frac - 0.25) < tol, f"Theta[{layer}]: {frac} of draws in [{lo}, {lo + 0.5})"


def test_random_theta_reproducible():
    sizes = (20, 7, 3)
    a = bpnet.random_theta(sizes, np.random.default_rng(42))
    b = bpnet.random_theta(sizes, np.random.default_rng(42))
    assert_array_equal(a, b)
    assert_array_equal(bpnet.random_theta(sizes, 42), a)  # an int seeds a Generator
    c = bpnet.random_theta(sizes, np.random.default_rng(43))
    assert not np.any(a == c), "different seeds should give different weights"
    # one generator advances: two draws from it differ
    g = np.random.default_rng(42)
    first, second = bpnet.random_theta(sizes, g), bpnet.random_theta(sizes, g)
    assert_array_equal(first, a)
    assert not np.any(first == second)


def test_random_theta_float32_is_rounded_float64_draw():
    sizes = (30, 50, 20, 40)
    t64 = bpnet.random_theta(sizes, np.random.default_rng(7))
    t32 = bpnet.random_theta(sizes, np.random.default_rng(7), dtype=np.float32)
    assert t32.dtype == np.float32
    assert_array_equal(t32, t64.astype(np.float32))


def test_random_theta_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dtype"):
        bpnet.random_theta((3, 2), 0, dtype=np.int64)
    with pytest.raises(ValueError, match="rng"):
        bpnet.random_theta((3, 2), "seed")
    with pytest.raises(ValueError, match="layer_sizes"):
        bpnet.random_theta((3,), 0)


def debug_reference(sizes):
    """Theta^(l)[i, j] = sin(1 + i + j * rows) / 10 (column-major numbering, from 1
    in each matrix), unrolled row-major."""
    parts = []
    for rows, cols in oracle.shapes(sizes):
        T = np.empty((rows, cols))
        for i in range(rows):
            for j in range(cols):
                T[i, j] = np.sin(1 + i + j * rows) / 10
        parts.append(T)
    return oracle.unroll(parts)


@pytest.mark.parametrize("sizes", [(3, 5, 3), (2, 2, 1), (4, 1, 6, 2), (7, 3)])
def test_debug_theta(sizes):
    theta = bpnet.debug_theta(sizes)
    assert theta.dtype == np.float64
    assert_array_equal(theta, debug_reference(sizes))


def test_debug_theta_classic_values():
    """(3, 5, 3): Theta1 is 5 x 4 filled down the columns with sin(1..20)/10."""
    T1, T2 = bpnet.roll(bpnet.debug_theta((3, 5, 3)), (3, 5, 3))
    assert T1[0, 0] == np.sin(1) / 10 and T1[1, 0] == np.sin(2) / 10
    assert T1[0, 1] == np.sin(6) / 10 and T1[4, 3] == np.sin(20) / 10
    assert T2[0, 0] == np.sin(1) / 10 and T2[2, 5] == np.sin(18) / 10


def test_debug_theta_float32():
    t = bpnet.debug_theta((3, 5, 3), dtype=np.float32)
    assert t.dtype == np.float32
    assert_array_equal(t, debug_reference((3, 5, 3)).astype(np.float32))


@pytest.mark.parametrize("sizes", [[4, 5, 3], [3, 1], [100, 50, 50, 7], [1000, 2]], ids=str)
@pytest.mark.parametrize("seed", [0, 7])
def test_random_theta_is_uniform_per_layer_drawn_in_place(sizes, seed):
    """random_theta fills one buffer in place; its bits are those of
    Generator.uniform(-eps_l, eps_l) per layer, concatenated (the definition)."""
    gen = np.random.default_rng(seed)
    parts = []
    for l in range(len(sizes) - 1):
        eps = np.sqrt(6.0) / np.sqrt(sizes[l] + sizes[l + 1])
        parts.append(gen.uniform(-eps, eps, size=sizes[l + 1] * (sizes[l] + 1)))
    want = np.concatenate(parts)
    assert bpnet.random_theta(sizes, seed).tobytes() == want.tobytes()
    assert bpnet.random_theta(sizes, seed, dtype="f4").tobytes() == want.astype("f4").tobytes()

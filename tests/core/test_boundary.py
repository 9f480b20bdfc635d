"""The C++/Python boundary: what crosses without a copy and what is accepted."""

import pickle

import numpy as np
import pytest

import bpnet
from bpnet._native import core


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unpickled_arrays_are_accepted(dtype):
    """A dtype that went through pickle is an equal but distinct object; the
    core compares dtypes by equivalence, not identity."""
    sizes = (4, 3, 2)
    rng = np.random.default_rng(0)
    theta = bpnet.random_theta(sizes, rng, dtype=dtype)
    X = rng.normal(size=(6, 4)).astype(dtype)
    y = np.array([0, 1, 1, 0, 1, 0], dtype=np.int64)
    t2, X2, y2 = pickle.loads(pickle.dumps((theta, X, y)))
    J1, g1 = bpnet.cost_grad(theta, sizes, X, y, 0.5)
    J2, g2 = core.cost_grad(t2, sizes, X2, y2, 0.5, "sigmoid", "sigmoid", None, None, None, -1,
                            core.Workspace())
    assert J1 == J2
    assert np.array_equal(g1, g2)


def test_non_native_byte_order_is_rejected():
    sizes = (2, 2)
    theta = bpnet.random_theta(sizes, 0).astype(">f8")
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match="theta"):
        core.cost_grad(theta, sizes, X, np.zeros(3, np.int64), 0.0, "sigmoid", "sigmoid", None,
                       None, None, -1, core.Workspace())


def test_finalize_raises_on_a_non_finite_gradient():
    """The optimizer loops rely on the core to report an overflowing gradient."""
    sizes = (2, 2)
    theta = bpnet.random_theta(sizes, 0)
    grad = np.zeros_like(theta)
    grad[3] = np.inf
    with pytest.raises(OverflowError, match="non-finite cost or gradient"):
        core.finalize(theta, sizes, 0.0, 1.0, 1.0, grad)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_update_reports_non_finite_parameters(dtype):
    theta = np.ones(5, dtype)
    m1, v, g = np.zeros(5, dtype), np.zeros(5, dtype), np.ones(5, dtype)
    assert core.adam_update(theta, m1, v, g, 0.9, 0.999, 1e-3, 1e-8) is True
    g[2] = np.inf
    assert core.adam_update(theta, m1, v, g, 0.9, 0.999, 1e-3, 1e-8) is False


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_update_reports_non_finite_parameters(dtype, nesterov):
    theta, v, g = np.ones(5, dtype), np.zeros(5, dtype), np.ones(5, dtype)
    assert core.sgd_update(theta, v, g, 0.1, 0.9, nesterov) is True
    g[4] = np.nan
    assert core.sgd_update(theta, v, g, 0.1, 0.9, nesterov) is False


def test_sgd_update_checks_its_arrays():
    theta = np.ones(5)
    with pytest.raises(ValueError, match=r"velocity has shape \(4,\); expected \(5,\)"):
        core.sgd_update(theta, np.zeros(4), np.ones(5), 0.1, 0.9, True)
    with pytest.raises(ValueError, match="grad must have dtype float64; got float32"):
        core.sgd_update(theta, np.zeros(5), np.ones(5, np.float32), 0.1, 0.9, True)
    with pytest.raises(ValueError, match="theta must be writeable"):
        theta.flags.writeable = False
        core.sgd_update(theta, np.zeros(5), np.ones(5), 0.1, 0.9, True)


def _numpy_sgd(theta, velocity, g, lr, mu, nesterov):
    """The SGD formulas of bpnet.optimize, one NumPy operation at a time (its loop before
    the fused kernel): Python-float constants, rounded to the dtype as NumPy does."""
    velocity *= theta.dtype.type(mu)
    lr_g = np.multiply(g, theta.dtype.type(lr))
    velocity -= lr_g  # v = mu v - lr g
    if nesterov:
        theta += mu * velocity - lr_g
    else:
        theta += velocity


@pytest.mark.parametrize("isa", bpnet._native.available())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("P", [1, 17, 1025, 70_001])  # 70_001: the multi-threaded path
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("offset", [0, 3])  # element offsets: other alignments
def test_sgd_update_equals_the_numpy_formulas_bitwise(isa, dtype, nesterov, P, n_threads,
                                                      offset):
    mod = bpnet._native.load(isa)
    rng = np.random.default_rng(P + offset)
    arrays = []
    for scale in (1.0, 0.1, 3.0):  # theta, velocity, g
        buf = np.empty(P + offset, dtype)
        a = buf[offset:]
        a[...] = rng.normal(size=P) * scale
        arrays.append(a)
    theta, v, g = arrays
    ref = [a.copy() for a in arrays]
    for lr, mu in ((0.01, 0.9), (0.1 / 3, 0.7), (1e-3, 0.0)):
        assert mod.sgd_update(theta, v, g, lr, mu, nesterov, n_threads)
        _numpy_sgd(ref[0], ref[1], ref[2], lr, mu, nesterov)
        for name, a, r in zip(("theta", "velocity"), (theta, v), ref[:2]):
            assert a.tobytes() == r.tobytes(), (
                f"{name} [{isa} {np.dtype(dtype).name} nesterov={nesterov} lr={lr} mu={mu}]")


def _numpy_adam(theta, m1, v, g, b1, b2, step, eps):
    """The Adam formulas of bpnet.optimize, one NumPy operation at a time."""
    m1 *= b1
    m1 += g * (1 - b1)
    v *= b2
    v += (g * g) * (1 - b2)
    theta -= (m1 / (np.sqrt(v) + eps)) * step


@pytest.mark.parametrize("isa", bpnet._native.available())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("P", [1, 17, 1024, 70_001])  # 70_001: the multi-threaded path
@pytest.mark.parametrize("offset", [0, 1, 3])  # element offsets: other alignments
def test_adam_update_equals_the_numpy_formulas_bitwise(isa, dtype, P, offset):
    mod = bpnet._native.load(isa)
    rng = np.random.default_rng(P + offset)
    arrays = []
    for scale in (1.0, 0.1, 0.01, 1.0):  # theta, m1, v (>= 0), g
        buf = np.empty(P + offset, dtype)
        a = buf[offset:]
        a[...] = rng.normal(size=P) * scale
        arrays.append(a)
    arrays[2] = np.abs(arrays[2])
    theta, m1, v, g = arrays
    ref = [a.copy() for a in arrays]
    for step in (1, 2, 3):
        size = float(1e-3 * np.sqrt(1 - 0.999**step) / (1 - 0.9**step))
        assert mod.adam_update(theta, m1, v, g, 0.9, 0.999, size, 1e-8)
        _numpy_adam(*ref[:3], ref[3], 0.9, 0.999, size, 1e-8)
        for name, a, r in zip(("theta", "m1", "v"), (theta, m1, v), ref[:3]):
            assert a.tobytes() == r.tobytes(), f"{name} [{isa} {np.dtype(dtype).name} step {step}]"


def _theta_positions(sizes):
    """Indices into theta of: layer 0's first bias and a weight of its first
    input column, the last layer's last weight."""
    return {"bias0": 0, "weight0_col0": 1, "last": bpnet.n_params(sizes) - 1}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("where", ["bias0", "weight0_col0", "last"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("lam", [0.0, 1.0])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_cost_grad_names_a_non_finite_theta(dtype, where, bad, lam, kind, n_threads):
    """cost_grad does not scan theta before its pass (its finalize reads every
    value anyway): a non-finite value is still named by its index, whether it
    shows as a non-finite pre-activation or only in the gradient (a weight of an
    input column that no row of a sparse X touches, with lam = 0 too)."""
    import scipy.sparse as sp

    sizes = (5, 40, 3)  # 40 x 6 = 240 weights in layer 0: the finalize splits rows
    rng = np.random.default_rng(3)
    theta = bpnet.random_theta(sizes, rng, dtype=dtype)
    X = rng.normal(size=(300, 5)).astype(dtype)
    X[:, 0] = 0  # input column 0 is touched by no row
    y = rng.integers(0, 3, 300)
    if kind == "sparse":
        X = sp.csr_matrix(X)
        assert 0 not in X.indices
    p = _theta_positions(sizes)[where]
    theta[p] = bad
    with pytest.raises(ValueError, match=rf"^theta contains a non-finite value at index {p}$"):
        bpnet.cost_grad(theta, sizes, X, y, lam, n_threads=n_threads)


_CHUNK = 1 << 14  # scan_finite's chunk of values (api.hpp)


@pytest.mark.parametrize("isa", bpnet._native.available())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [0, 1, 17, 4 * _CHUNK - 1, 4 * _CHUNK, 9 * _CHUNK + 5])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_scan_finite_finds_a_non_finite_value_anywhere(isa, dtype, n, n_threads):
    """The core's threaded finiteness scan (the estimators' check of X): True for
    finite values (-0, the largest, the smallest subnormal), False for one NaN, inf or
    -inf at the first, a chunk-edge or the last position, on one or two threads; n >=
    4 chunks takes the multi-threaded path."""
    mod = bpnet._native.load(isa)
    info = np.finfo(dtype)
    x = np.resize(np.array([-0.0, info.max, -info.max, info.smallest_subnormal, 1.5], dtype), n)
    assert mod.scan_finite(x, n_threads) is True
    for i in sorted({0, _CHUNK - 1, _CHUNK, 3 * _CHUNK + 7, n - 1}):
        if not 0 <= i < n:
            continue
        for bad in (np.nan, np.inf, -np.inf):
            keep, x[i] = x[i], bad
            assert mod.scan_finite(x, n_threads) is False, (i, bad)
            x[i] = keep
    assert mod.scan_finite(x, n_threads) is True


def test_scan_finite_checks_its_argument():
    with pytest.raises(ValueError, match="x must have dtype float64 or float32"):
        core.scan_finite(np.zeros(3, np.float16))
    with pytest.raises(ValueError, match=r"x must be 1-D; got shape \(2, 2\)"):
        core.scan_finite(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        core.scan_finite(np.zeros(6)[::2])
    with pytest.raises(ValueError, match="n_threads must be -1"):
        core.scan_finite(np.zeros(3), 0)

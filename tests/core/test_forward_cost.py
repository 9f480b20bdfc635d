"""forward_cost: the outputs and the regularized cost from one forward pass.

h must have the bits of ``bpnet.forward``; J must match ``bpnet.cost_grad``'s
J to rounding (1e-12 relative in float64, 1e-5 in float32: only the order of
the loss additions differs), have the same bits for any thread count, and
match the NumPy oracle. Errors are those of forward/cost_grad.
"""

from __future__ import annotations

import numpy as np
import oracle
import pytest
import scipy.sparse as sp
from conftest import ISAS
from numpy.testing import assert_allclose, assert_array_equal

import bpnet
from bpnet import _native

F64, F32 = np.float64, np.float32
RTOL = {F64: 1e-12, F32: 1e-5}
DEPTHS = {2: (6, 4), 3: (6, 9, 4), 4: (6, 9, 5, 4)}  # L -> layer sizes (K = 4)
M = 600  # two row blocks (B = 512 for these nets)


def make_problem(rng, sizes, m, output, target, weighted, dtype):
    """(theta, X dense, y, sample_weight) in ``dtype``; X has ~30% zeros."""
    K = sizes[-1]
    theta = bpnet.random_theta(sizes, rng=rng).astype(dtype)
    X = rng.standard_normal((m, sizes[0])) * (rng.random((m, sizes[0])) < 0.7)
    labels = rng.integers(0, K, m).astype(np.int64)
    if target == "labels":
        y = labels
    elif output == "sigmoid":  # multi-label 0/1
        y = rng.integers(0, 2, (m, K)).astype(dtype)
    elif output == "softmax":  # soft rows summing to 1
        y = rng.dirichlet(np.ones(K), m).astype(dtype)
    elif output == "poisson":  # counts >= 0
        y = rng.poisson(1.5, (m, K)).astype(dtype)
    else:  # regression targets
        y = rng.standard_normal((m, K)).astype(dtype)
    w = rng.uniform(0.0, 2.0, m).astype(dtype) if weighted else None
    return theta, X.astype(dtype), y, w


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("target", ["labels", "matrix"])
@pytest.mark.parametrize("lam", [0.0, 0.7])
@pytest.mark.parametrize("depth", sorted(DEPTHS))
@pytest.mark.parametrize("activation", bpnet.functional.ACTIVATIONS)
@pytest.mark.parametrize("output", bpnet.functional.OUTPUTS)
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
def test_forward_cost_matches_forward_and_cost_grad(
    rng, dtype, output, activation, depth, lam, target, weighted, sparse
):
    sizes = DEPTHS[depth]
    theta, X, y, w = make_problem(rng, sizes, M, output, target, weighted, dtype)
    if sparse:
        X = sp.csr_matrix(X)
    kw = dict(activation=activation, output=output)
    J, h = bpnet.forward_cost(theta, sizes, X, y, lam, sample_weight=w, **kw)
    assert h.dtype == dtype and h.shape == (M, sizes[-1])
    assert_array_equal(h, bpnet.forward(theta, sizes, X, **kw), err_msg="h vs forward")
    J_ref, _ = bpnet.cost_grad(theta, sizes, X, y, lam, sample_weight=w, **kw)
    assert_allclose(J, J_ref, rtol=RTOL[dtype], err_msg="J vs cost_grad")
    J2, h2 = bpnet.forward_cost(theta, sizes, X, y, lam, sample_weight=w, **kw)
    assert J2 == J, "J across calls"
    assert_array_equal(h2, h, err_msg="h across calls")


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("target", ["labels", "matrix"])
@pytest.mark.parametrize("lam", [0.0, 0.7])
@pytest.mark.parametrize("activation", bpnet.functional.ACTIVATIONS)
@pytest.mark.parametrize("output", bpnet.functional.OUTPUTS)
def test_forward_cost_matches_oracle(rng, output, activation, lam, target, weighted):
    sizes = DEPTHS[3]
    theta, X, y, w = make_problem(rng, sizes, 90, output, target, weighted, F64)
    kw = dict(activation=activation, output=output)
    J, h = bpnet.forward_cost(theta, sizes, X, y, lam, sample_weight=w, **kw)
    J_ref = oracle.cost(theta, sizes, X, y, lam, sample_weight=w, **kw)
    assert_allclose(J, J_ref, rtol=1e-12, err_msg="J vs oracle.cost")
    assert_allclose(h, oracle.forward(theta, sizes, X, **kw), rtol=1e-12, atol=1e-14,
                    err_msg="h vs oracle.forward")


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("output", bpnet.functional.OUTPUTS)
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
def test_bits_do_not_depend_on_threads(rng, dtype, output, sparse):
    # Wide enough that the core wakes 2 threads (>= 4e6 flops each), 4 blocks.
    sizes = (64, 128, 10)
    theta, X, y, w = make_problem(rng, sizes, 1800, output, "labels", True, dtype)
    if sparse:
        X = sp.csr_matrix(X)
    kw = dict(activation="tanh", output=output, sample_weight=w)
    runs = [bpnet.forward_cost(theta, sizes, X, y, 0.7, n_threads=n, **kw) for n in (1, 2, 1, 2)]
    for n, (J, h) in zip((2, 1, 2), runs[1:]):
        assert J == runs[0][0], f"J with n_threads={n}"
        assert_array_equal(h, runs[0][1], err_msg=f"h with n_threads={n}")
    J_ref, _ = bpnet.cost_grad(theta, sizes, X, y, 0.7, **kw)
    assert_allclose(runs[0][0], J_ref, rtol=RTOL[dtype], err_msg="J vs cost_grad")


@pytest.mark.parametrize("isa", ISAS)
def test_every_isa_and_row_selection(rng, isa):
    """The raw binding of each ISA build, with the optional ``rows`` selection."""
    mod = _native.load(isa)
    ws = mod.Workspace()
    sizes = DEPTHS[3]
    theta, X, y, w = make_problem(rng, sizes, 300, "softmax", "labels", True, F64)
    rows = rng.permutation(300)[:170].astype(np.int64)
    args = (theta, list(sizes), X)
    h_ref = mod.forward(*args, "relu", "softmax", None, rows, 1, ws)
    J_ref, _ = mod.cost_grad(*args, y, 0.7, "relu", "softmax", w, None, rows, 1, ws)
    out = np.empty((170, sizes[-1]))
    J, h = mod.forward_cost(*args, y, 0.7, "relu", "softmax", w, out, rows, 1, ws)
    assert h is out
    assert_array_equal(h, h_ref, err_msg="h vs forward (rows)")
    assert_allclose(J, J_ref, rtol=1e-12, err_msg="J vs cost_grad (rows)")
    sub = oracle.cost(theta, sizes, X[rows], y[rows], 0.7, "relu", "softmax", w[rows])
    assert_allclose(J, sub, rtol=1e-12, err_msg="J vs oracle.cost (rows)")


def test_out_is_written_in_place(rng):
    sizes = DEPTHS[2]
    theta, X, y, _ = make_problem(rng, sizes, 50, "sigmoid", "labels", False, F32)
    out = np.full((50, sizes[-1]), np.nan, dtype=F32)
    J, h = bpnet.forward_cost(theta, sizes, X, y, activation="sigmoid", output="sigmoid", out=out)
    assert h is out and np.shares_memory(h, out)
    assert_array_equal(out, bpnet.forward(theta, sizes, X))
    assert isinstance(J, float)


# -- errors: the same as forward / cost_grad, naming the argument -------------
def _problem(rng, dtype=F64):
    sizes = DEPTHS[3]
    theta, X, y, w = make_problem(rng, sizes, 40, "softmax", "labels", True, dtype)
    return sizes, theta, X, y, w


def _both_raise(exc, match, theta, sizes, X, y, lam=0.0, **kw):
    """forward_cost raises what cost_grad raises, with the same message."""
    kw = {"activation": "sigmoid", "output": "softmax", **kw}
    with pytest.raises(exc, match=match) as got:
        bpnet.forward_cost(theta, sizes, X, y, lam, **kw)
    with pytest.raises(exc) as ref:
        bpnet.cost_grad(theta, sizes, X, y, lam, **kw)
    assert str(got.value) == str(ref.value)


def test_bad_label(rng):
    sizes, theta, X, y, _ = _problem(rng)
    y[7] = sizes[-1]
    _both_raise(ValueError, r"^y\[7\] = 4 is not a class index in \[0, 4\)", theta, sizes, X, y)
    y[7] = -1
    _both_raise(ValueError, r"^y\[7\] = -1 ", theta, sizes, X, y)


def test_negative_weight(rng):
    sizes, theta, X, y, w = _problem(rng)
    w[3] = -0.5
    _both_raise(ValueError, r"^sample_weight\[3\] = -0\.5.* must be finite and >= 0",
                theta, sizes, X, y, sample_weight=w)


def test_zero_weight_sum(rng):
    sizes, theta, X, y, w = _problem(rng)
    _both_raise(ValueError, r"^the sample weights sum to 0.*must sum to a positive number",
                theta, sizes, X, y, sample_weight=np.zeros_like(w))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_theta(rng, bad):
    sizes, theta, X, y, _ = _problem(rng)
    theta[5] = bad
    _both_raise(ValueError, r"^theta contains a non-finite value at index 5$",
                theta, sizes, X, y)


@pytest.mark.parametrize("lam", [-1.0, np.nan, np.inf, "x"])
def test_bad_lam(rng, lam):
    sizes, theta, X, y, _ = _problem(rng)
    _both_raise(ValueError, r"^lam must be", theta, sizes, X, y, lam)


@pytest.mark.parametrize("shape", [(40, 5), (39, 4), (40,)])
def test_wrong_out_shape(rng, shape):
    sizes, theta, X, y, _ = _problem(rng)
    with pytest.raises(ValueError, match=r"^out has dtype float64 and shape .*expected float64 "
                                         r"\(40, 4\)"):
        bpnet.forward_cost(theta, sizes, X, y, activation="tanh", output="softmax",
                           out=np.zeros(shape))
    with pytest.raises(ValueError, match=r"^out has dtype float32"):
        bpnet.forward_cost(theta, sizes, X, y, activation="tanh", output="softmax",
                           out=np.zeros((40, 4), dtype=F32))


def test_out_overlapping_an_input(rng):
    sizes = (4, 3, 4)
    theta, X, y, _ = make_problem(rng, sizes, 20, "identity", "matrix", False, F64)
    with pytest.raises(ValueError, match=r"^out shares memory with X"):
        bpnet.forward_cost(theta, sizes, X, y, activation="tanh", output="identity", out=X)


def test_non_finite_X_and_pre_activation(rng):
    sizes, theta, X, y, _ = _problem(rng, F32)
    kw = {"activation": "relu", "output": "softmax"}
    # X checked in the core only (check_finite=False): the error names the entry.
    Xbad = X.copy()
    Xbad[11, 2] = np.inf
    msg = r"^X contains a non-finite value at row 11, column 2$"
    with pytest.raises(ValueError, match=msg):
        bpnet.forward_cost(theta, sizes, Xbad, y, check_finite=False, **kw)
    with pytest.raises(ValueError, match=msg):
        bpnet.forward(theta, sizes, Xbad, check_finite=False, **kw)
    # Finite inputs whose pre-activations overflow float32: forward's error.
    big = theta * np.float32(1e30)
    with pytest.raises(OverflowError) as ref:
        bpnet.forward(big, sizes, X, **kw)
    with pytest.raises(OverflowError, match=r"^non-finite pre-activation z in layer \d") as got:
        bpnet.forward_cost(big, sizes, X, y, **kw)
    assert str(got.value) == str(ref.value)
    _both_raise(OverflowError, r"^non-finite pre-activation", big, sizes, X, y, **kw)


def test_activation_and_output_are_checked(rng):
    sizes, theta, X, y, _ = _problem(rng)
    with pytest.raises(ValueError, match=r"^activation must be one of .*got 'soft'"):
        bpnet.forward_cost(theta, sizes, X, y, activation="soft", output="softmax")
    with pytest.raises(ValueError, match=r"^output must be one of .*got 'tanh'"):
        bpnet.forward_cost(theta, sizes, X, y, activation="tanh", output="tanh")

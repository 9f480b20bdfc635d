"""Sparse X (SciPy CSR): the core's sparse first layer against the dense path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

import bpnet
from bpnet import _native

SIZES = [(30, 7, 4), (50, 12, 6, 3), (5, 1, 2)]


def sparse_problem(rng, sizes, m, density, dtype):
    mask = rng.random((m, sizes[0])) < density
    Xd = (rng.standard_normal((m, sizes[0])) * mask).astype(dtype)
    y = rng.integers(0, sizes[-1], m)
    theta = bpnet.random_theta(sizes, rng=1).astype(dtype)
    return Xd, y, theta


@pytest.mark.parametrize("sizes", SIZES, ids=str)
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_sparse_equals_dense(rng, sizes, output, activation, dtype, lam):
    Xd, y, theta = sparse_problem(rng, sizes, 300, 0.1, dtype)
    kw = dict(lam=lam, output=output, activation=activation)
    J1, g1 = bpnet.cost_grad(theta, sizes, Xd, y, **kw)
    J2, g2 = bpnet.cost_grad(theta, sizes, sp.csr_matrix(Xd), y, **kw)
    rtol = 1e-12 if dtype is np.float64 else 1e-5
    assert_allclose(J2, J1, rtol=rtol, err_msg="J")
    for l, (a, b) in enumerate(zip(bpnet.roll(g2, sizes), bpnet.roll(g1, sizes))):
        assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(g1).max(), err_msg=f"dTheta[{l}]")
    f1 = bpnet.forward(theta, sizes, Xd, activation=activation, output=output)
    f2 = bpnet.forward(theta, sizes, sp.csr_array(Xd), activation=activation, output=output)
    assert_allclose(f2, f1, rtol=rtol, atol=rtol)
    assert_array_equal(bpnet.predict(theta, sizes, sp.csr_matrix(Xd), activation=activation),
                       bpnet.predict(theta, sizes, Xd, activation=activation))


@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_int32_and_int64_indices_and_empty_rows(rng, index):
    sizes = (40, 9, 3)
    Xd, y, theta = sparse_problem(rng, sizes, 2000, 0.02, np.float64)
    Xd[::7] = 0  # whole empty rows
    Xs = sp.csr_matrix(Xd)
    Xs.indices = Xs.indices.astype(index)
    Xs.indptr = Xs.indptr.astype(index)
    J1, g1 = bpnet.cost_grad(theta, sizes, Xd, y, lam=1.0)
    J2, g2 = bpnet.cost_grad(theta, sizes, Xs, y, lam=1.0)
    assert_allclose(J2, J1, rtol=1e-12)
    assert_allclose(g2, g1, rtol=1e-12, atol=1e-14)


def test_sparse_is_bitwise_identical_for_any_thread_count(rng):
    sizes = (60, 20, 4)
    Xd, y, theta = sparse_problem(rng, sizes, 5000, 0.05, np.float64)
    Xs = sp.csr_matrix(Xd)
    ref = bpnet.cost_grad(theta, sizes, Xs, y, lam=1.0, n_threads=1)
    for nt in (2, 4):
        J, g = bpnet.cost_grad(theta, sizes, Xs, y, lam=1.0, n_threads=nt)
        assert J == ref[0]
        assert_array_equal(g, ref[1])


def test_sparse_with_a_row_selection_and_weights(rng):
    """The mini-batch path (rows=) and sample weights read the CSR rows directly."""
    sizes = (25, 6, 3)
    Xd, y, theta = sparse_problem(rng, sizes, 400, 0.2, np.float64)
    w = rng.uniform(0, 2, 400)
    rows = rng.permutation(400)[:64].astype(np.int64)
    core = _native.core
    ws = core.Workspace()
    Xs = sp.csr_matrix(Xd)
    parts = (Xs.data, Xs.indices, Xs.indptr, Xs.shape)
    J1, g1 = core.cost_grad(theta, list(sizes), Xd, y, 0.5, "relu", "softmax", w, None, rows, 2,
                            ws)
    J2, g2 = core.cost_grad(theta, list(sizes), parts, y, 0.5, "relu", "softmax", w, None, rows,
                            2, ws)
    assert_allclose(J2, J1, rtol=1e-12)
    assert_allclose(g2, g1, rtol=1e-12, atol=1e-15)


def test_bad_sparse_input_is_named(rng):
    sizes = (10, 4, 2)
    Xd, y, theta = sparse_problem(rng, sizes, 50, 0.3, np.float64)
    with pytest.raises(ValueError, match=r"CSR; got CSC.*tocsr"):
        bpnet.cost_grad(theta, sizes, sp.csc_matrix(Xd), y)
    with pytest.raises(ValueError, match="X has dtype float32"):
        bpnet.cost_grad(theta, sizes, sp.csr_matrix(Xd.astype(np.float32)), y)
    with pytest.raises(ValueError, match="layer_sizes"):
        bpnet.cost_grad(theta, sizes, sp.csr_matrix(Xd[:, :9]), y)
    bad = sp.csr_matrix(Xd)
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match=r"X\.data contains a non-finite"):
        bpnet.cost_grad(theta, sizes, bad, y, check_finite=True)  # the optional NumPy scan
    with pytest.raises(ValueError, match="X contains a non-finite value at row"):
        bpnet.cost_grad(theta, sizes, bad, y)  # the default: the core finds it
    bad = sp.csr_matrix(Xd)
    bad.indices[2] = 10_000  # damaged: outside the columns
    with pytest.raises(ValueError, match=r"X.indices\[2\] = 10000 is outside \[0, 10\)"):
        bpnet.cost_grad(theta, sizes, bad, y)
    bad = sp.csr_matrix(Xd)
    bad.indptr[5] = 10**6
    with pytest.raises(ValueError, match=r"X\.indptr"):
        bpnet.predict(theta, sizes, bad)


# -- Network and the estimators ------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    X, y = sklearn.load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.mark.parametrize("solver", ["lbfgs", "adam", "sgd"])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_estimator_on_sparse_X_matches_dense(digits, solver, fmt):
    X, y = digits
    Xs = sp.csr_matrix(X).asformat(fmt)
    kw = dict(hidden_layer_sizes=16, solver=solver, max_iter=5, random_state=0, tol=0)
    with pytest.warns(Warning):  # max_iter reached (ConvergenceWarning)
        dense = bpnet.BPNetClassifier(**kw).fit(X, y)
    with pytest.warns(Warning):
        sparse = bpnet.BPNetClassifier(**kw).fit(Xs, y)
    assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X), rtol=1e-9, atol=1e-12)
    assert_array_equal(sparse.predict(X), dense.predict(X))


def test_network_on_sparse_X_matches_dense_and_converts_once(digits):
    X, y = digits
    Xs = sp.csr_matrix(X.astype(np.float32))  # float32 -> the network's float64, once
    a = bpnet.Network([64, 12, 10], output="softmax", rng=0).fit(X, y, max_iter=5)
    b = bpnet.Network([64, 12, 10], output="softmax", rng=0).fit(Xs, y, max_iter=5)
    assert_allclose(b.theta, a.theta, rtol=1e-6, atol=1e-9)  # X differs by float32 rounding
    J1, g1 = a.cost_grad(X, y)
    J2, g2 = a.cost_grad(sp.csr_matrix(X), y)
    assert_allclose(J2, J1, rtol=1e-12)
    assert_allclose(g2, g1, rtol=1e-12, atol=1e-14)
    assert_allclose(a.predict_proba(sp.csr_array(X)), a.predict_proba(X), rtol=1e-12)


# tol is the gradient tolerance (scikit-learn's meaning): this fit may reach max_iter,
# which is not what the test checks
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_sparse_early_stopping_and_regressor(digits):
    X, y = digits
    Xs = sp.csr_matrix(X)
    clf = bpnet.BPNetClassifier(16, early_stopping=True, max_iter=200, random_state=0).fit(Xs, y)
    assert clf.score(Xs, y) > 0.9
    reg = bpnet.BPNetRegressor(8, max_iter=50, random_state=0).fit(Xs, X[:, 20])
    assert reg.predict(Xs).shape == (X.shape[0],)


def test_sparse_X_errors_are_named(digits):
    X, y = digits
    net = bpnet.Network([64, 5, 10], output="softmax", rng=0)
    bad = sp.csr_matrix(X)
    bad.data[7] = np.inf
    with pytest.raises(ValueError, match=r"non-finite value .* at row 0"):
        net.fit(bad, y, max_iter=1)
    with pytest.raises(ValueError, match="expected"):
        net.predict(sp.csr_matrix(X[:, :10]))
    with pytest.raises(ValueError, match="client="):
        net.fit(sp.csr_matrix(X), y, client=object())

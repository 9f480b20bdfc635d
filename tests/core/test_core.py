"""The C++ core against the NumPy oracle (tests/oracle.py), for every ISA build
this CPU runs: forward, cost and every gradient entry, compared per layer
(bias column and weights separately) with labelled assertions."""

from __future__ import annotations

import numpy as np
import oracle
import pytest
from conftest import ISAS
from numpy.testing import assert_allclose, assert_array_equal

import bpnet

F64, F32 = np.float64, np.float32
RTOL = {F64: 1e-12, F32: 1e-5}

# Depths L = 2..5, widths 1..64 (s_0 .. s_{L-1}).
ARCHS = [
    (5, 3),
    (4, 1, 3),
    (8, 64, 4),
    (3, 7, 5, 1),
    (64, 16, 2, 12, 10),
]
M = 70  # three fixed leaves (leaf_starts(70) has 4 entries)


# -- problem generation -----------------------------------------------------
def make_theta(rng, sizes, scale=0.6):
    """Weights of moderate size: the nets neither saturate nor vanish."""
    parts = []
    for r, c in oracle.shapes(sizes):
        parts.append(rng.uniform(-1, 1, r * c) * scale * np.sqrt(6.0 / (r + c)) * 2)
    return np.concatenate(parts)


def make_targets(rng, output, target, m, K):
    """Integer labels (m,) or a target matrix (m, K) suited to the output."""
    labels = rng.integers(0, K, m).astype(np.int64)
    if target == "int":
        return labels
    if output == "sigmoid":  # multi-label 0/1
        return rng.integers(0, 2, (m, K)).astype(F64)
    if output == "softmax":  # one-hot 0/1 rows (categorical)
        return oracle.one_hot(labels, K)
    if output == "poisson":  # counts >= 0, zeros included (y log y = 0 there)
        return rng.poisson(1.5, (m, K)).astype(F64)
    return rng.standard_normal((m, K))  # identity: real-valued regression targets


def make_problem(rng, sizes, m, output, target, dtype=F64):
    """(theta, X, y) in `dtype`, plus their float64 values for the oracle."""
    theta = make_theta(rng, sizes).astype(dtype)
    X = rng.standard_normal((m, sizes[0])).astype(dtype)
    y = make_targets(rng, output, target, m, sizes[-1])
    if y.ndim == 2:
        y = y.astype(dtype)
    return theta, X, y


def as64(*arrays):
    return [None if a is None else (a.astype(F64) if a.dtype.kind == "f" else a) for a in arrays]


def assert_grad_close(grad, ref, sizes, rtol, what=""):
    """Per layer, bias column and weights separately; atol scaled to the layer."""
    assert grad.shape == ref.shape == (oracle.n_params(sizes),)
    for layer, (G, R) in enumerate(zip(oracle.roll(grad, sizes), oracle.roll(ref, sizes))):
        atol = rtol * max(np.abs(R).max(), 1e-300)
        assert_allclose(G[:, 0], R[:, 0], rtol=rtol, atol=atol,
                        err_msg=f"dTheta[{layer}][:, 0] (bias column) {what}")
        assert_allclose(G[:, 1:], R[:, 1:], rtol=rtol, atol=atol,
                        err_msg=f"dTheta[{layer}][:, 1:] (weights) {what}")


def test_all_isa_builds_present():
    """Every instruction-set build this CPU supports is tested below (at least baseline)."""
    assert ISAS[0] == "baseline"
    for isa in ("avx2", "avx512"):
        cpu_can = bpnet._native._baseline.cpu_supports(isa)
        assert (isa in ISAS) == cpu_can, f"{isa}: cpu_supports={cpu_can}, available={ISAS}"


# -- the oracle checks itself (vectorized vs loop vs literal vs differences) -
@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
@pytest.mark.parametrize("output", oracle.OUTPUTS)
@pytest.mark.parametrize("target", ["int", "matrix"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_oracle_is_self_consistent(rng, activation, output, target, weighted):
    sizes, m, lam = (3, 4, 2, 3), 6, 0.7
    theta, X, y = make_problem(rng, sizes, m, output, target)
    w = rng.uniform(0.2, 2.0, m) if weighted else None
    kw = dict(activation=activation, output=output, sample_weight=w)
    J, grad = oracle.cost_grad(theta, sizes, X, y, lam, **kw)
    J_loop, grad_loop = oracle.cost_grad_loop(theta, sizes, X, y, lam, **kw)
    assert_allclose(J_loop, J, rtol=1e-14)
    assert_allclose(grad_loop, grad, rtol=1e-13, atol=1e-15)
    assert_allclose(oracle.cost_literal(theta, sizes, X, y, lam, **kw), J, rtol=1e-13)
    # the gradient is the gradient of J: central differences on the oracle's cost
    num = np.empty_like(theta)
    eps = 1e-5
    for p in range(theta.size):
        t = theta.copy()
        t[p] += eps
        jp = oracle.cost(t, sizes, X, y, lam, **kw)
        t[p] -= 2 * eps
        jm = oracle.cost(t, sizes, X, y, lam, **kw)
        num[p] = (jp - jm) / (2 * eps)
    assert_allclose(num, grad, rtol=1e-6, atol=1e-9)


# -- cost and gradient ------------------------------------------------------
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
@pytest.mark.parametrize("output", oracle.OUTPUTS)
@pytest.mark.parametrize("target", ["int", "matrix"])
def test_cost_grad_lam0(core, rng, dtype, activation, output, target):
    _check_cost_grad(core, rng, dtype, activation, output, target, lam=0.0)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
@pytest.mark.parametrize("output", oracle.OUTPUTS)
@pytest.mark.parametrize("target", ["int", "matrix"])
def test_cost_grad_lam_positive(core, rng, dtype, activation, output, target):
    _check_cost_grad(core, rng, dtype, activation, output, target, lam=1.7)


def _check_cost_grad(core, rng, dtype, activation, output, target, lam):
    rtol = RTOL[dtype]
    for sizes in ARCHS:
        theta, X, y = make_problem(rng, sizes, M, output, target, dtype)
        what = (f"[{core.isa} {np.dtype(dtype).name} {sizes} {activation}/{output} "
                f"y={target} lam={lam}]")
        J, grad = core.cost_grad(theta, sizes, X, y, lam, activation, output)
        assert grad.dtype == dtype
        J_ref, grad_ref = oracle.cost_grad(*as64(theta), sizes, *as64(X, y), lam,
                                           activation, output)
        assert_allclose(J, J_ref, rtol=rtol, err_msg=f"J {what}")
        assert_grad_close(grad, grad_ref, sizes, rtol, what)


def test_cost_grad_matches_per_example_loop(core, rng):
    """A tiny net against the textbook per-example loop (every activation/output)."""
    sizes = (2, 3, 2)
    for activation in oracle.ACTIVATIONS:
        for output in oracle.OUTPUTS:
            theta, X, y = make_problem(rng, sizes, 4, output, "int")
            J, grad = core.cost_grad(theta, sizes, X, y, 0.5, activation, output)
            J_ref, grad_ref = oracle.cost_grad_loop(theta, sizes, X, y, 0.5, activation, output)
            what = f"[{core.isa} {activation}/{output}]"
            assert_allclose(J, J_ref, rtol=1e-12, err_msg=f"J {what}")
            assert_grad_close(grad, grad_ref, sizes, 1e-12, what)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
def test_regularization_skips_bias_and_divides_by_m(core, rng, dtype):
    """grad(lam) - grad(0) = (lam/m) Theta on columns j >= 1 and exactly 0 on column 0;
    J(lam) - J(0) = lam/(2m) sum Theta[:, 1:]^2 (not lam Theta: the /m is there)."""
    sizes, lam = (6, 5, 4, 3), 2.5
    theta, X, y = make_problem(rng, sizes, M, "sigmoid", "int", dtype)
    J0, g0 = core.cost_grad(theta, sizes, X, y, 0.0)
    J1, g1 = core.cost_grad(theta, sizes, X, y, lam)
    Thetas = oracle.roll(theta.astype(F64), sizes)
    reg = lam / (2 * M) * sum((T[:, 1:] ** 2).sum() for T in Thetas)
    assert_allclose(J1 - J0, reg, rtol=1e-10 if dtype is F64 else 1e-5)
    pairs = zip(oracle.roll(g0, sizes), oracle.roll(g1, sizes), Thetas)
    for layer, (G0, G1, T) in enumerate(pairs):
        assert_array_equal(G1[:, 0], G0[:, 0], err_msg=f"dTheta[{layer}][:, 0]: bias regularized")
        assert_allclose(G1[:, 1:] - G0[:, 1:], lam / M * T[:, 1:],
                        rtol=1e-9 if dtype is F64 else 1e-3, atol=1e-15 if dtype is F64 else 1e-7,
                        err_msg=f"dTheta[{layer}][:, 1:]: (lam/m) Theta")


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_soft_targets(core, rng, output):
    """Targets in [0, 1] (rows summing to 1 for softmax) use the same formulas."""
    sizes = (5, 6, 4)
    theta, X, _ = make_problem(rng, sizes, M, output, "int")
    Y = rng.dirichlet(np.ones(4), M) if output == "softmax" else rng.uniform(0, 1, (M, 4))
    J, grad = core.cost_grad(theta, sizes, X, Y, 0.3, "tanh", output)
    J_ref, grad_ref = oracle.cost_grad(theta, sizes, X, Y, 0.3, "tanh", output)
    assert_allclose(J, J_ref, rtol=1e-12)
    assert_grad_close(grad, grad_ref, sizes, 1e-12, f"[{core.isa} {output} soft targets]")


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
def test_many_blocks_and_chunk_boundaries(core, rng, dtype):
    """A wide net (small row blocks, several blocks per chunk) and m around the
    chunk boundaries (32 rows per chunk, at most 8 chunks)."""
    sizes = (32, 512, 16)  # rows per block: float64 48, float32 112
    theta = make_theta(rng, sizes).astype(dtype)
    for m in (1, 31, 33, 257, 1000):
        X = rng.standard_normal((m, 32)).astype(dtype)
        y = rng.integers(0, 16, m)
        w = rng.uniform(0, 2, m).astype(dtype)
        J, grad = core.cost_grad(theta, sizes, X, y, 0.3, "tanh", "softmax", w)
        J_ref, grad_ref = oracle.cost_grad(*as64(theta), sizes, *as64(X), y, 0.3, "tanh",
                                           "softmax", sample_weight=w.astype(F64))
        what = f"[{core.isa} {np.dtype(dtype).name} m={m}]"
        assert_allclose(J, J_ref, rtol=RTOL[dtype], err_msg=f"J {what}")
        assert_grad_close(grad, grad_ref, sizes, RTOL[dtype] * (10 if dtype is F32 else 1), what)


def test_softmax_targets_not_summing_to_one_are_differentiated(rng):
    """J = -sum_k y_k log softmax(z)_k has dJ/dz = h sum_k y_k - y, which is h - y only
    when each row of y sums to 1: the core returns dJ/dtheta for any target rows."""
    sizes = (3, 4, 3)
    theta, X, _ = make_problem(rng, sizes, 5, "softmax", "int")
    Y = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0], [1, 1, 1], [0, 0, 1]], dtype=F64)
    J, grad = bpnet.cost_grad(theta, sizes, X, Y, 0.0, output="softmax")
    assert_allclose(J, oracle.cost(theta, sizes, X, Y, 0.0, "sigmoid", "softmax"), rtol=1e-12)
    num = np.empty_like(theta)
    for p in range(theta.size):
        e = np.zeros_like(theta)
        e[p] = 1e-6
        num[p] = (oracle.cost(theta + e, sizes, X, Y, 0.0, "sigmoid", "softmax")
                  - oracle.cost(theta - e, sizes, X, Y, 0.0, "sigmoid", "softmax")) / 2e-6
    assert_allclose(grad, num, rtol=1e-6, atol=1e-8, err_msg="dJ/dtheta, multi-hot softmax")


# -- sample weights ---------------------------------------------------------
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
@pytest.mark.parametrize("output", oracle.OUTPUTS)
@pytest.mark.parametrize("lam", [0.0, 1.3])
def test_sample_weight_matches_oracle(core, rng, dtype, activation, output, lam):
    sizes = (7, 9, 5, 4)
    for target in ("int", "matrix"):
        theta, X, y = make_problem(rng, sizes, M, output, target, dtype)
        w = rng.uniform(0, 3, M)
        w[::7] = 0.0  # zero weights are allowed
        w = w.astype(dtype)
        J, grad = core.cost_grad(theta, sizes, X, y, lam, activation, output, w)
        J_ref, grad_ref = oracle.cost_grad(*as64(theta), sizes, *as64(X, y), lam, activation,
                                           output, sample_weight=w.astype(F64))
        what = f"[{core.isa} {np.dtype(dtype).name} weighted {activation}/{output} y={target}]"
        assert_allclose(J, J_ref, rtol=RTOL[dtype], err_msg=f"J {what}")
        assert_grad_close(grad, grad_ref, sizes, RTOL[dtype], what)


@pytest.mark.parametrize("output", oracle.OUTPUTS)
@pytest.mark.parametrize("target", ["int", "matrix"])
@pytest.mark.parametrize("lam", [0.0, 0.9])
def test_integer_weights_equal_duplicated_rows(core, rng, output, target, lam):
    """Weight k on a row == that row repeated k times (weight 0 == row dropped)."""
    sizes = (6, 8, 3)
    theta, X, y = make_problem(rng, sizes, 50, output, target)
    w = rng.integers(0, 4, 50)
    J, grad = core.cost_grad(theta, sizes, X, y, lam, "sigmoid", output, w.astype(F64))
    Xd, yd = np.repeat(X, w, axis=0), np.repeat(y, w, axis=0)
    Jd, gradd = core.cost_grad(theta, sizes, Xd, yd, lam, "sigmoid", output)
    assert_allclose(J, Jd, rtol=1e-12, err_msg="J: weights vs duplicated rows")
    assert_grad_close(grad, gradd, sizes, 1e-12, "weights vs duplicated rows")


def test_all_zero_weights_rejected(core, rng):
    sizes = (3, 2)
    theta, X, y = make_problem(rng, sizes, 5, "sigmoid", "int")
    with pytest.raises(ValueError, match="sum"):
        core.cost_grad(theta, sizes, X, y, 0.0, sample_weight=np.zeros(5))


# -- forward and predict ----------------------------------------------------
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
@pytest.mark.parametrize("output", oracle.OUTPUTS)
def test_forward_and_predict(core, rng, dtype, activation, output):
    for sizes in ARCHS:
        theta, X, _ = make_problem(rng, sizes, M, output, "int", dtype)
        h = core.forward(theta, sizes, X, activation, output)
        assert h.shape == (M, sizes[-1]) and h.dtype == dtype
        zs, acts = oracle.forward_all(theta.astype(F64), sizes, X.astype(F64), activation, output)
        what = f"[{core.isa} {np.dtype(dtype).name} {sizes} {activation}/{output}]"
        assert_allclose(h, acts[-1], rtol=RTOL[dtype], atol=RTOL[dtype] * np.abs(acts[-1]).max(),
                        err_msg=f"a^(L) {what}")
        pred = core.predict(theta, sizes, X, activation)
        assert pred.dtype == np.int64 and pred.shape == (M,)
        logits = zs[-1]
        top2 = np.sort(logits, axis=1)[:, -2:] if sizes[-1] > 1 else None
        clear = np.ones(M, bool) if top2 is None else (top2[:, 1] - top2[:, 0]) > 1e-3
        assert clear.sum() > M // 2
        assert_array_equal(pred[clear], logits.argmax(axis=1)[clear], err_msg=f"predict {what}")
        assert_array_equal(pred[clear], h.argmax(axis=1)[clear], err_msg=f"argmax h {what}")


def test_predict_ties_take_lowest_index(core):
    sizes = (2, 3)
    theta = np.zeros(oracle.n_params(sizes))  # every logit 0
    X = np.ones((4, 2))
    assert_array_equal(core.predict(theta, sizes, X, "sigmoid"), np.zeros(4, np.int64))


# -- saturated logits -------------------------------------------------------
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("zabs", [50.0, 500.0, 1e4])
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_saturated_logits_give_exact_finite_cost(core, dtype, zabs, output):
    """Logits (z, -z, 0) exactly, for right and wrong labels: J is finite and
    equals the stable oracle (no inf, nan or clipping; a confident right row
    costs log1p of its off-label terms, 1.9e-22 at z = 50, not 0), in float64
    to 1e-12 and in float32 to its own rounding (a float32 network's output
    terms are float32); the gradient is h - y, without cancellation (the
    oracle's output_delta)."""
    sizes = (1, 3)
    Theta = np.array([[0.0, zabs], [0.0, -zabs], [0.0, 0.0]])
    theta = Theta.ravel().astype(dtype)
    X = np.ones((1, 1), dtype)
    for label in range(3):
        y = np.array([label], np.int64)
        J, grad = core.cost_grad(theta, sizes, X, y, 0.0, "sigmoid", output)
        J_ref, grad_ref = oracle.cost_grad(Theta.ravel(), sizes, np.ones((1, 1)), y, 0.0,
                                           "sigmoid", output)
        what = f"[{core.isa} {np.dtype(dtype).name} {output} z={zabs:g} y={label}]"
        assert np.isfinite(J), what
        # float32 terms: relative to 1e-6, and 0 below float32's smallest
        # normal (the softmax's log1p(e^-500) underflows there)
        assert_allclose(J, J_ref, rtol=1e-12 if dtype == F64 else 1e-6,
                        atol=0.0 if dtype == F64 else np.finfo(np.float32).tiny,
                        err_msg=f"J {what}")
        assert np.all(np.isfinite(grad)), what
        assert_allclose(grad, grad_ref, rtol=RTOL[dtype], atol=1e-30, err_msg=f"grad {what}")
    # wrong label at z: the cost grows like z, never clipped at -log(eps)
    J, _ = core.cost_grad(theta, sizes, X, np.array([1], np.int64), 0.0, "sigmoid", output)
    assert J > 1.9 * zabs


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("K", [1, 2, 4, 15, 16, 17, 33])
def test_softmax_label_rows_any_width_ties_and_weights(core, rng, dtype, K):
    """The softmax output with class labels runs a packet of rows at a time:
    any number of classes, a block's last partial packet (m = 37), tied
    maxima (the first is the max; the other counts in the off-max sum, so a
    label on either gets h - 1 = -(sum off the label) / (1 + s)) and sample
    weights all agree with the oracle."""
    sizes = (3, K)
    Theta = make_theta(rng, sizes).reshape(K, 4)
    Theta[:, 0] = rng.uniform(-1, 0, K)
    Theta[: min(K, 2), 0] = 0.5  # rows with x = 0: classes 0 and 1 tie at the max
    theta = Theta.ravel().astype(dtype)
    X = rng.standard_normal((37, 3)).astype(dtype)
    X[:6] = 0
    y = rng.integers(0, K, 37).astype(np.int64)
    y[:6] = np.arange(6) % min(K, 2)
    w = rng.uniform(0.5, 2.0, 37).astype(dtype)
    J, grad = core.cost_grad(theta, sizes, X, y, 0.0, "sigmoid", "softmax", sample_weight=w)
    J_ref, grad_ref = oracle.cost_grad(theta.astype(F64), sizes, X.astype(F64), y, 0.0,
                                       "sigmoid", "softmax", sample_weight=w.astype(F64))
    what = f"[{core.isa} {np.dtype(dtype).name} K={K}]"
    assert_allclose(J, J_ref, rtol=RTOL[dtype], err_msg=f"J {what}")
    assert_grad_close(grad, grad_ref, sizes, RTOL[dtype], what)


def assert_softmax_net_matches_oracle(core, theta, sizes, X, y, lam, activation, dtype):
    """cost_grad of a softmax-output net against the oracle; returns the label."""
    J, grad = core.cost_grad(theta, sizes, X, y, lam, activation, "softmax")
    J_ref, grad_ref = oracle.cost_grad(*as64(theta), sizes, *as64(X), y, lam, activation,
                                       "softmax")
    what = f"[{core.isa} {np.dtype(dtype).name} {sizes} {activation}]"
    assert_allclose(J, J_ref, rtol=RTOL[dtype], err_msg=f"J {what}")
    assert_grad_close(grad, grad_ref, sizes, RTOL[dtype], what)
    return what


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("sizes", [(4, 32, 16, 4), (3, 20, 2), (5, 64, 3), (7, 9, 2)])
def test_few_inputs_weight_gradient_matches_oracle(core, rng, dtype, sizes):
    """A first layer with fewer inputs than a packet and a packet or more of
    units runs its dW^T = a^T delta with the roles swapped (packets along the
    units), over many blocks (m = 1000: a block's sum stored, then added)."""
    theta, X, y = make_problem(rng, sizes, 1000, "softmax", "int", dtype)
    for activation in ("tanh", "relu"):
        assert_softmax_net_matches_oracle(core, theta, sizes, X, y, 0.3, activation, dtype)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("sizes", [(13, 25, 9), (3, 17, 18), (40, 33, 5), (7, 36, 20, 17),
                                   (400, 25, 10)])
def test_narrow_forward_dot_columns_match_oracle(core, rng, dtype, sizes):
    """A narrow layer's forward product whose last packet would hold only a few
    columns (n_out mod P <= P / 4 after a whole packet: 9, 17, 25, 33 units
    with 8 lanes, 17, 18, 33, 36 with 16) computes them as dot products
    along the inputs (masked last packet of inputs): cost, gradient and
    forward output agree with the oracle, hidden units fused or not."""
    theta, X, y = make_problem(rng, sizes, 45, "softmax", "int", dtype)
    for activation in ("sigmoid", "tanh", "relu"):
        what = assert_softmax_net_matches_oracle(core, theta, sizes, X, y, 0.2, activation, dtype)
        h = core.forward(theta, sizes, X, activation, "softmax")
        h_ref = oracle.forward(*as64(theta), sizes, *as64(X), activation, "softmax")
        assert_allclose(h, h_ref, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3, err_msg=what)


@pytest.mark.parametrize("zabs", [50.0, 500.0, 1e4])
def test_saturated_hidden_and_output_deep(core, rng, zabs):
    """Large pre-activations everywhere in a 4-layer net: finite, equals the oracle."""
    sizes = (3, 4, 4, 2)
    theta = rng.choice([-1.0, 1.0], oracle.n_params(sizes)) * zabs
    X = rng.choice([-1.0, 1.0], (8, 3))
    for output in ("sigmoid", "softmax"):
        y = rng.integers(0, 2, 8)
        J, grad = core.cost_grad(theta, sizes, X, y, 0.0, "tanh", output)
        J_ref, grad_ref = oracle.cost_grad(theta, sizes, X, y, 0.0, "tanh", output)
        assert np.isfinite(J) and np.all(np.isfinite(grad))
        assert_allclose(J, J_ref, rtol=1e-12, err_msg=f"J z={zabs} {output}")
        assert_grad_close(grad, grad_ref, sizes, 1e-12, f"z={zabs} {output}")


# -- row selection, output buffers, chunks, threads -------------------------
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("target", ["int", "matrix"])
def test_rows_equal_computing_on_the_selected_rows(core, rng, dtype, target):
    sizes = (6, 10, 4)
    n = 120
    theta, X, y = make_problem(rng, sizes, n, "sigmoid", target, dtype)
    w = rng.uniform(0.5, 2, n).astype(dtype)
    # runs of consecutive rows (an unshuffled batch) are read in place, other blocks
    # are gathered: a run from mid-X, a run broken once, two runs out of order
    runs = (np.arange(17, 113), np.r_[0:50, 55:120], np.r_[60:120, 0:60])
    for rows in (rng.permutation(n)[:77], rng.integers(0, n, 200), np.array([5]),
                 np.arange(n), *runs):
        rows = rows.astype(np.int64)
        J, grad = core.cost_grad(theta, sizes, X, y, 0.4, sample_weight=w, rows=rows)
        Js, grads = core.cost_grad(theta, sizes, np.ascontiguousarray(X[rows]),
                                   np.ascontiguousarray(y[rows]), 0.4,
                                   sample_weight=np.ascontiguousarray(w[rows]))
        assert J == Js, f"J with rows= differs from X[rows] ({len(rows)} rows)"
        assert_array_equal(grad, grads, err_msg=f"grad with rows= ({len(rows)} rows)")
        h = core.forward(theta, sizes, X, rows=rows)
        assert_array_equal(h, core.forward(theta, sizes, np.ascontiguousarray(X[rows])))
        p = core.predict(theta, sizes, X, rows=rows)
        assert_array_equal(p, core.predict(theta, sizes, np.ascontiguousarray(X[rows])))


def test_rows_out_of_range_rejected(core, rng):
    sizes = (3, 2)
    theta, X, y = make_problem(rng, sizes, 5, "sigmoid", "int")
    for bad in (np.array([0, 5]), np.array([-1])):
        with pytest.raises(ValueError, match="rows"):
            core.cost_grad(theta, sizes, X, y, rows=bad.astype(np.int64))


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
def test_out_buffers_written_in_place(core, rng, dtype):
    sizes = (5, 7, 3)
    theta, X, y = make_problem(rng, sizes, M, "sigmoid", "int", dtype)
    J_ref, g_ref = core.cost_grad(theta, sizes, X, y, 0.2)
    buf = np.full(theta.size, np.nan, dtype)  # overwritten, not accumulated into
    J, g = core.cost_grad(theta, sizes, X, y, 0.2, grad=buf)
    assert np.shares_memory(g, buf)
    assert J == J_ref
    assert_array_equal(buf, g_ref)
    buf[:] = 123.0
    core.cost_grad(theta, sizes, X, y, 0.2, grad=buf)
    assert_array_equal(buf, g_ref)

    hbuf = np.full((M, 3), np.nan, dtype)
    h = core.forward(theta, sizes, X, out=hbuf)
    assert np.shares_memory(h, hbuf)
    assert_array_equal(hbuf, core.forward(theta, sizes, X))
    pbuf = np.full(M, -1, np.int64)
    p = core.predict(theta, sizes, X, out=pbuf)
    assert np.shares_memory(p, pbuf)
    assert_array_equal(pbuf, core.predict(theta, sizes, X))

    # the public API's out= is the same buffer too
    if core.isa == ISAS[-1]:
        buf2 = np.empty(theta.size, dtype)
        _, g2 = bpnet.cost_grad(theta, sizes, X, y, 0.2, out=buf2)
        assert np.shares_memory(g2, buf2)
        # not bitwise: another workspace (see test_sigmoid_bits_do_not_depend_on_buffers)
        assert_allclose(buf2, g_ref, rtol=RTOL[dtype], atol=RTOL[dtype] * np.abs(g_ref).max())


def test_wrong_buffers_and_inputs_rejected_not_copied(core, rng):
    sizes = (5, 7, 3)
    theta, X, y = make_problem(rng, sizes, 10, "sigmoid", "int")
    with pytest.raises(ValueError, match="grad"):
        core.cost_grad(theta, sizes, X, y, grad=np.empty(theta.size, F32))
    with pytest.raises(ValueError, match="grad"):
        core.cost_grad(theta, sizes, X, y, grad=np.empty(theta.size + 1))
    with pytest.raises(ValueError, match="grad"):
        core.cost_grad(theta, sizes, X, y, grad=np.empty(2 * theta.size)[::2])
    with pytest.raises(ValueError, match="X"):
        core.cost_grad(theta, sizes, X.astype(F32), y)
    with pytest.raises(ValueError, match="X"):
        core.cost_grad(theta, sizes, np.asfortranarray(X), y)


def leaf_nodes(core, theta, sizes, X, y, w, starts, c0, c1, n_threads=1):
    """Level-0 tree nodes of leaves [c0, c1), computed from those rows only (as a worker)."""
    r0, r1 = starts[c0], starts[c1]
    local = starts[c0 : c1 + 1] - r0
    grads = np.empty((c1 - c0, theta.size), theta.dtype)
    loss, weight = core.partial_sums(
        theta, sizes, X[r0:r1], y[r0:r1], local, grads, "relu", "softmax",
        None if w is None else w[r0:r1], n_threads=n_threads)
    return [(0, c0 + k, grads[k], loss[k], weight[k]) for k in range(c1 - c0)]


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("m", [5, 70, 300, 1500, 70000])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_partial_sums_and_reduce_tree_are_bitwise_cost_grad(core, rng, dtype, m, weighted):
    sizes, lam = (8, 12, 5), 0.8
    theta, X, y = make_problem(rng, sizes, m, "softmax", "int", dtype)
    w = rng.uniform(0, 2, m).astype(dtype) if weighted else None
    J, grad = core.cost_grad(theta, sizes, X, y, lam, "relu", "softmax", w)

    starts = core.mod.leaf_starts(m)
    C = starts.size - 1
    assert starts[0] == 0 and starts[-1] == m and np.all(np.diff(starts) > 0)
    rows = np.diff(starts)
    assert rows.max() - rows.min() <= 1
    leaf = min(max(-(-m // 16), 32), 4096)  # rows per leaf, before balancing
    assert C == -(-m // leaf)
    # every split of the leaves into contiguous shards (as Dask workers hold
    # them) reduces to the same bits: per shard, then across shards
    splits = [[0, C]] + [sorted({0, C, *rng.integers(1, C, k).tolist()}) for k in (1, 3, 12)
                         if C > 1]
    for cuts in splits:
        shard_nodes = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            nodes = leaf_nodes(core, theta, sizes, X, y, w, starts, a, b, n_threads=2)
            shard_nodes += core.mod.reduce_tree(nodes, C)
        (root,) = core.mod.reduce_tree(shard_nodes, C)
        level, index, total, loss_sum, weight_sum = root
        assert index == 0 and (1 << level) >= C
        total = total.copy()
        Jf = core.finalize(theta, sizes, lam, loss_sum, weight_sum, total)
        assert Jf == J, f"shards {cuts}: finalize J {Jf!r} != cost_grad J {J!r}"
        assert_array_equal(total, grad, err_msg=f"shards {cuts}: reduce_tree vs cost_grad")
    # and the leaf sums are what they claim: the oracle's unnormalized sums
    nodes = leaf_nodes(core, theta, sizes, X, y, w, starts, 0, min(C, 3))
    ww = np.ones(m) if w is None else w.astype(F64)
    for _, c, g, loss, weight in nodes:
        sl = slice(starts[c], starts[c + 1])
        r = oracle.backprop(theta.astype(F64), sizes, X[sl].astype(F64), y[sl], 0.0, "relu",
                            "softmax", sample_weight=ww[sl])
        assert_allclose(weight, ww[sl].sum(), rtol=1e-12 if dtype is F64 else 1e-6)
        assert_allclose(loss, r["J"] * ww[sl].sum(), rtol=RTOL[dtype])
        assert_grad_close(g, oracle.unroll(r["Deltas"]), sizes, RTOL[dtype], f"leaf {c}")


def test_reduce_tree_rejects_nodes_out_of_order(core):
    g = [np.zeros(4) for _ in range(3)]
    with pytest.raises(ValueError, match="contiguous"):
        core.mod.reduce_tree([(0, 0, g[0], 0.0, 1.0), (0, 2, g[1], 0.0, 1.0)], 4)
    with pytest.raises(ValueError, match="not a node"):
        core.mod.reduce_tree([(0, 4, g[0], 0.0, 1.0)], 4)
    with pytest.raises(ValueError, match="share"):
        core.mod.reduce_tree([(0, 0, g[0], 0.0, 1.0), (0, 1, g[0], 0.0, 1.0)], 4)
    with pytest.raises(ValueError, match="grad"):
        core.mod.reduce_tree([(0, 0, g[0], 0.0, 1.0), (0, 1, np.zeros(5), 0.0, 1.0)], 4)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_bitwise_identical_for_any_thread_count(core, rng, dtype, activation):
    """Same bits for n_threads 1, 2, 4 and for fresh workspaces. (Hidden sigmoid
    is tested separately below: it is not deterministic on the AVX builds.)"""
    # P = 19210 > 4 * 4096, so the chunk reduction itself runs in parallel too
    for sizes, m in (((64, 256, 10), 300), ((6, 9, 4), 1000), ((6, 9, 4), 33),
                     ((4, 32, 16, 4), 700)):
        theta, X, y = make_problem(rng, sizes, m, "sigmoid", "int", dtype)
        w = rng.uniform(0, 2, m).astype(dtype)
        runs = []
        for t in (1, 2, 4, 2, 1):
            core.workspace = core.mod.Workspace()  # fresh buffers each call
            runs.append((t, core.cost_grad(theta, sizes, X, y, 0.5, activation, "sigmoid", w,
                                           n_threads=t),
                         core.forward(theta, sizes, X, activation, "softmax", n_threads=t)))
        _, (J0, g0), h0 = runs[0]
        for t, (J, g), h in runs[1:]:
            assert J == J0, f"J differs between 1 and {t} threads {sizes}"
            assert_array_equal(g, g0, err_msg=f"grad, 1 vs {t} threads {sizes}")
            assert_array_equal(h, h0, err_msg=f"forward, 1 vs {t} threads {sizes}")


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_a_call_that_stops_half_way_leaves_no_trace_in_the_workspace(core, rng, dtype,
                                                                      n_threads):
    """The core keeps a workspace's block and node buffers between calls. A call
    that stops inside a leaf (a NaN in a leaf's second block: its first block has
    already written the leaf's buffer) must leave nothing that the next call
    reads: the calls after it give the bits of a fresh workspace, on the reused
    one and on a new one (a core that skipped zeroing buffers it believed clear,
    bench/README.md, "Leaves and the tree", must keep passing this)."""
    sizes, m = (100, 100, 10), 16 * 1024  # 16 leaves of 1024 rows, 2 blocks each (512)
    theta, X, y = make_problem(rng, sizes, m, "sigmoid", "int", dtype)
    bad = X.copy()
    bad[12 * 1024 + 700, 3] = np.nan  # leaf 12, its second block
    core.workspace = core.mod.Workspace()
    J0, g0 = core.cost_grad(theta, sizes, X, y, 0.5, "tanh", "softmax", n_threads=n_threads)
    g0 = g0.copy()
    for _ in range(2):  # the same workspace, reused
        J, g = core.cost_grad(theta, sizes, X, y, 0.5, "tanh", "softmax", n_threads=n_threads)
        assert J == J0
        assert_array_equal(g, g0)
    with pytest.raises(ValueError, match="non-finite"):
        core.cost_grad(theta, sizes, bad, y, 0.5, "tanh", "softmax", n_threads=n_threads)
    for fresh in (False, True, False):
        if fresh:
            core.workspace = core.mod.Workspace()
        J, g = core.cost_grad(theta, sizes, X, y, 0.5, "tanh", "softmax", n_threads=n_threads)
        assert J == J0, f"J after a stopped call (fresh workspace: {fresh})"
        assert_array_equal(g, g0, err_msg=f"grad after a stopped call (fresh workspace: {fresh})")


def _sigmoid_bits_vary(isa, dtype):
    """Repeated identical hidden-sigmoid calls (fresh and reused workspaces, 2 threads,
    heap state varied between calls): do all give the same bits?"""
    mod = bpnet._native.load(isa)
    rng = np.random.default_rng(5)
    sizes = [64, 25, 10]
    theta = make_theta(rng, sizes).astype(dtype)
    X = rng.standard_normal((1347, 64)).astype(dtype)
    y = rng.integers(0, 10, 1347)
    keep, ws = [], mod.Workspace()
    first = None
    for i in range(60):
        keep.append(bytearray(int(rng.integers(1, 5000))))
        if i % 2:
            ws = mod.Workspace()
            keep.append(ws)
        J, g = mod.cost_grad(theta, sizes, X, y, 1.0, "sigmoid", "sigmoid", None, None, None,
                             2, ws)
        if first is None:
            first = (J, g.copy())
        elif J != first[0] or not np.array_equal(g, first[1]):
            return f"call {i}: J {J!r} vs {first[0]!r}, {np.sum(g != first[1])} grad entries"
    return None


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("isa", [
    pytest.param(isa) for isa in ISAS])
def test_sigmoid_bits_do_not_depend_on_buffers(isa, dtype):
    varied = _sigmoid_bits_vary(isa, dtype)
    assert varied is None, f"[{isa}] identical calls gave different bits: {varied}"


def test_isa_builds_agree_with_each_other(rng):
    """All ISA builds agree to rounding (not bitwise: FMA and vector width differ)."""
    from conftest import _CORES

    sizes = (20, 30, 10)
    theta, X, y = make_problem(rng, sizes, 200, "sigmoid", "int")
    res = {isa: c.cost_grad(theta, sizes, X, y, 1.0) for isa, c in _CORES.items()}
    J0, g0 = res["baseline"]
    for isa, (J, g) in res.items():
        assert_allclose(J, J0, rtol=1e-13, err_msg=isa)
        assert_grad_close(g, g0, sizes, 1e-12, isa)


# -- the public functional API ----------------------------------------------
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
def test_public_api_matches_oracle(rng, dtype):
    sizes = (6, 5, 4, 3)
    theta, X, y = make_problem(rng, sizes, M, "softmax", "int", dtype)
    J, grad = bpnet.cost_grad(theta, sizes, X, y.astype(np.int32), 0.6, activation="relu",
                              output="softmax")
    assert isinstance(J, float) and grad.dtype == dtype
    J_ref, grad_ref = oracle.cost_grad(*as64(theta), sizes, *as64(X, y), 0.6, "relu", "softmax")
    assert_allclose(J, J_ref, rtol=RTOL[dtype])
    assert_grad_close(grad, grad_ref, sizes, RTOL[dtype], "public cost_grad")
    h = bpnet.forward(theta, sizes, X, activation="relu", output="softmax")
    assert_allclose(h, oracle.forward(*as64(theta), sizes, *as64(X), "relu", "softmax"),
                    rtol=RTOL[dtype], atol=RTOL[dtype])
    assert_array_equal(bpnet.predict(theta, sizes, X, activation="relu"),
                       core_default_predict(theta, sizes, X))


def core_default_predict(theta, sizes, X):
    return bpnet._native.core.predict(theta, list(sizes), X, "relu", None, None, 1,
                                      bpnet._native.core.Workspace())


def test_defaults_are_sigmoid_sigmoid_lam0(rng):
    sizes = (4, 5, 3)
    theta, X, y = make_problem(rng, sizes, 20, "sigmoid", "int")
    J, grad = bpnet.cost_grad(theta, sizes, X, y)
    J_ref, grad_ref = oracle.cost_grad(theta, sizes, X, y, 0.0, "sigmoid", "sigmoid")
    assert_allclose(J, J_ref, rtol=1e-12)
    assert_grad_close(grad, grad_ref, sizes, 1e-12)


# -- roll / unroll ----------------------------------------------------------
def test_roll_unroll_round_trip_and_views(rng):
    sizes = (4, 3, 5, 2)
    P = bpnet.n_params(sizes)
    assert P == oracle.n_params(sizes) == 3 * 5 + 5 * 4 + 2 * 6
    assert bpnet.layer_shapes(sizes) == [(3, 5), (5, 4), (2, 6)]
    theta = rng.standard_normal(P)
    mats = bpnet.roll(theta, sizes)
    for layer, (A, B) in enumerate(zip(mats, oracle.roll(theta, sizes))):
        assert_array_equal(A, B, err_msg=f"Theta[{layer}] row-major, bias in column 0")
        assert np.shares_memory(A, theta), f"Theta[{layer}] is not a view"
    assert mats[0][0, 0] == theta[0] and mats[0][0, 1] == theta[1]  # row-major
    assert mats[1][0, 0] == theta[15]
    mats[1][2, 3] = 99.0  # views write through
    assert theta[15 + 2 * 4 + 3] == 99.0
    assert_array_equal(bpnet.unroll(mats), theta)
    back = bpnet.roll(bpnet.unroll(mats), sizes)
    for A, B in zip(back, mats):
        assert_array_equal(A, B)
    t32 = theta.astype(F32)
    assert bpnet.unroll(bpnet.roll(t32, sizes)).dtype == F32
    with pytest.raises(ValueError):
        bpnet.roll(theta[:-1], sizes)
    with pytest.raises(ValueError):
        bpnet.unroll([np.zeros((3, 5)), np.zeros((5, 5))])

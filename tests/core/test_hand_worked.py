"""A 2-2-1 sigmoid network worked by hand (values to 17 digits from a 30-digit
mpmath evaluation of the same formulas), checked against the oracle's
intermediates and the C++ core's results to ~1e-12.

    Theta1 = [[ 0.1, 0.3, -0.2],      Theta2 = [[0.2, -0.5, 0.7]]
              [-0.4, 0.2,  0.5]]
    X = [[ 1.0, 2.0],                 y = [[1],
         [-1.0, 0.5]]                      [0]]     (m = 2, K = 1)

Example 1: x = (1, 2), y = 1
    a1 = [1, 1, 2]
    z2 = Theta1 a1 = [0.1 + 0.3 - 0.4, -0.4 + 0.2 + 1.0] = [0.0, 0.8]
    a2 = g(z2) = [0.5, 0.68997448112761244]
    z3 = 0.2 - 0.5 * 0.5 + 0.7 * 0.68997448112761244 = 0.43298213678932871
    h  = g(z3) = 0.60658554987126471
    delta3 = h - y = -0.39341445012873529
    delta2 = Theta2[:, 1:]^T delta3 .* a2 (1 - a2)
           = [-0.5 * -0.39341... * 0.25, 0.7 * -0.39341... * 0.21390...]
           = [0.049176806266091911, -0.058908615943615389]
Example 2: x = (-1, 0.5), y = 0
    a1 = [1, -1, 0.5]
    z2 = [0.1 - 0.3 - 0.1, -0.4 - 0.2 + 0.25] = [-0.3, -0.35]
    a2 = [0.42555748318834101, 0.41338242108266994]
    z3 = 0.27658895316369845
    h  = 0.56870976274400502
    delta3 = 0.56870976274400502
    delta2 = [-0.069512914221222056, 0.096537445192499707]

Delta2 = sum_i delta3 [1, a2]
       = [[0.17529531261526974, 0.045311470233609681, -0.036351312479211487]]
Delta1 = sum_i delta2 [1, a1]^T
       = [[-0.020336107955130146, 0.11868972048731397, 0.063597155421572793],
          [0.037628829248884318, -0.1554460611361151, -0.069548509290980925]]
lam = 0:
    J  = -(1/2) [log 0.60658... + log(1 - 0.56870...)] = 0.67044175836486928
    D1 = Delta1 / 2, D2 = Delta2 / 2
lam = 1:
    reg = 1/(2*2) (0.3^2 + 0.2^2 + 0.2^2 + 0.5^2 + 0.5^2 + 0.7^2) = 0.29
    J  = 0.96044175836486928
    D  = Delta / 2 + (1/2) Theta on columns 1, 2; column 0 unchanged
"""

from __future__ import annotations

import numpy as np
import oracle
import pytest
from conftest import ISAS
from numpy.testing import assert_allclose

import bpnet

SIZES = (2, 2, 1)
THETA1 = np.array([[0.1, 0.3, -0.2], [-0.4, 0.2, 0.5]])
THETA2 = np.array([[0.2, -0.5, 0.7]])
THETA = np.concatenate([THETA1.ravel(), THETA2.ravel()])
X = np.array([[1.0, 2.0], [-1.0, 0.5]])
Y = np.array([[1.0], [0.0]])

Z2 = np.array([[0.0, 0.8], [-0.3, -0.35]])
A2 = np.array([[0.5, 0.68997448112761244], [0.42555748318834101, 0.41338242108266994]])
Z3 = np.array([[0.43298213678932871], [0.27658895316369845]])
H = np.array([[0.60658554987126471], [0.56870976274400502]])
DELTA3 = np.array([[-0.39341445012873529], [0.56870976274400502]])
DELTA2 = np.array([[0.049176806266091911, -0.058908615943615389],
                   [-0.069512914221222056, 0.096537445192499707]])
BIGDELTA1 = np.array([[-0.020336107955130146, 0.11868972048731397, 0.063597155421572793],
                      [0.037628829248884318, -0.1554460611361151, -0.069548509290980925]])
BIGDELTA2 = np.array([[0.17529531261526974, 0.045311470233609681, -0.036351312479211487]])
J_LAM0 = 0.67044175836486928
J_LAM1 = 0.96044175836486928
D1_LAM1 = np.array([[-0.010168053977565073, 0.20934486024365698, -0.068201422289213603],
                    [0.018814414624442159, 0.022276969431942452, 0.21522574535450954]])
D2_LAM1 = np.array([[0.087647656307634869, -0.22734426488319516, 0.33182434376039426]])

TOL = dict(rtol=1e-12, atol=1e-14)


def expected_grad(lam):
    if lam == 0:
        return np.concatenate([(BIGDELTA1 / 2).ravel(), (BIGDELTA2 / 2).ravel()])
    assert lam == 1
    return np.concatenate([D1_LAM1.ravel(), D2_LAM1.ravel()])


def test_hand_values_are_consistent():
    """The hand-worked numbers agree with each other (typos would show here)."""
    assert_allclose(1 / (1 + np.exp(-Z2)), A2, **TOL)
    assert_allclose(np.hstack([np.ones((2, 1)), A2]) @ THETA2.T, Z3, **TOL)
    assert_allclose(H - Y, DELTA3, **TOL)
    assert_allclose(DELTA3 @ THETA2[:, 1:] * A2 * (1 - A2), DELTA2, **TOL)
    assert_allclose(DELTA2.T @ np.hstack([np.ones((2, 1)), X]), BIGDELTA1, **TOL)
    assert_allclose(-(np.log(H[0, 0]) + np.log(1 - H[1, 0])) / 2, J_LAM0, **TOL)
    assert_allclose(J_LAM1 - J_LAM0, 0.29, **TOL)


def test_oracle_intermediates():
    r = oracle.backprop(THETA, SIZES, X, Y, 0.0)
    assert_allclose(r["zs"][0], Z2, err_msg="z2", **TOL)
    assert_allclose(r["acts"][1], A2, err_msg="a2", **TOL)
    assert_allclose(r["zs"][1], Z3, err_msg="z3", **TOL)
    assert_allclose(r["acts"][2], H, err_msg="h = a3", **TOL)
    assert_allclose(r["deltas"][2], DELTA3, err_msg="delta3", **TOL)
    assert_allclose(r["deltas"][1], DELTA2, err_msg="delta2", **TOL)
    assert_allclose(r["Deltas"][0], BIGDELTA1, err_msg="Delta1", **TOL)
    assert_allclose(r["Deltas"][1], BIGDELTA2, err_msg="Delta2", **TOL)
    assert_allclose(r["J"], J_LAM0, err_msg="J", **TOL)
    r1 = oracle.backprop(THETA, SIZES, X, Y, 1.0)
    assert_allclose(r1["J"], J_LAM1, err_msg="J (lam=1)", **TOL)
    assert_allclose(r1["Ds"][0], D1_LAM1, err_msg="D1 (lam=1)", **TOL)
    assert_allclose(r1["Ds"][1], D2_LAM1, err_msg="D2 (lam=1)", **TOL)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_core_reproduces_hand_values(isa, lam):
    core = bpnet._native.load(isa)
    J, grad = core.cost_grad(THETA, list(SIZES), X, Y, lam, "sigmoid", "sigmoid", None, None,
                             None, 1, core.Workspace())
    assert_allclose(J, J_LAM1 if lam else J_LAM0, err_msg=f"J [{isa}]", **TOL)
    exp = expected_grad(lam)
    assert_allclose(grad[:6].reshape(2, 3), exp[:6].reshape(2, 3), err_msg=f"D1 [{isa}]", **TOL)
    assert_allclose(grad[6:].reshape(1, 3), exp[6:].reshape(1, 3), err_msg=f"D2 [{isa}]", **TOL)
    h = core.forward(THETA, list(SIZES), X, "sigmoid", "sigmoid", None, None, 1,
                     core.Workspace())
    assert_allclose(h, H, err_msg=f"h [{isa}]", **TOL)


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_public_api_reproduces_hand_values(lam):
    J, grad = bpnet.cost_grad(THETA, SIZES, X, Y, lam)
    assert_allclose(J, J_LAM1 if lam else J_LAM0, **TOL)
    D1, D2 = bpnet.roll(grad, SIZES)
    exp1, exp2 = bpnet.roll(expected_grad(lam), SIZES)
    assert_allclose(D1, exp1, err_msg="D1", **TOL)
    assert_allclose(D2, exp2, err_msg="D2", **TOL)
    assert_allclose(bpnet.forward(THETA, SIZES, X), H, **TOL)
    # the same net written with int labels is not possible (K = 1 has only class 0):
    # y = [0, 0] as labels means targets [[1], [1]]
    J_int, _ = bpnet.cost_grad(THETA, SIZES, X, np.array([0, 0]), lam)
    assert_allclose(J_int, -(np.log(H[0, 0]) + np.log(H[1, 0])) / 2 + (0.29 if lam else 0),
                    **TOL)

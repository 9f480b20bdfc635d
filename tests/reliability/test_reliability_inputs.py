"""Every bad input to every public entry point: a clear Python exception that
names the argument, never a crash, never a silently wrong answer, never a
hidden per-call copy."""

from __future__ import annotations

import numpy as np
import pytest

import bpnet
from bpnet._native import core

S = (3, 4, 2)
P = bpnet.n_params(S)
M = 6


def _data(dtype=np.float64):
    rng = np.random.default_rng(0)
    theta = bpnet.random_theta(S, rng, dtype=dtype)
    X = rng.standard_normal((M, S[0])).astype(dtype)
    y = np.array([0, 1, 0, 1, 1, 0], dtype=np.int64)
    return theta, X, y


TH, X, Y = _data()
W = np.ones(M)


def misaligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` whose data starts one byte off alignment."""
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)[1:]
    b = raw.view(a.dtype).reshape(a.shape)
    b[...] = a
    assert not b.flags.aligned and b.flags.c_contiguous
    return b


def readonly(a: np.ndarray) -> np.ndarray:
    b = a.copy()
    b.flags.writeable = False
    return b


def with_nan(a: np.ndarray, value=np.nan) -> np.ndarray:
    b = a.astype(np.float64 if a.dtype.kind != "f" else a.dtype, copy=True)
    b.flat[1] = value
    return b


def call_core_cost_grad(
    theta=TH, sizes=S, X=X, y=Y, lam=0.0, sw=None, grad=None, rows=None, n_threads=-1
):
    return core.cost_grad(
        theta, sizes, X, y, lam, "sigmoid", "sigmoid", sw, grad, rows, n_threads, core.Workspace()
    )


# (id, thunk, exception type, regex the message must match: it names the argument)
CASES = [
    # --- wrong shapes, 1-D / 3-D, m = 0 ---------------------------------------
    ("X 1-D", lambda: bpnet.cost_grad(TH, S, X.ravel(), Y), ValueError, r"\bX\b.*2-D"),
    ("X 3-D", lambda: bpnet.cost_grad(TH, S, X[None], Y), ValueError, r"\bX\b.*2-D"),
    (
        "X columns",
        lambda: bpnet.cost_grad(TH, S, X[:, :2].copy(), Y),
        ValueError,
        r"\bX\b.*\(6, 2\)",
    ),
    ("X m=0", lambda: bpnet.cost_grad(TH, S, X[:0], Y[:0]), ValueError, r"\bX\b.*m = 0"),
    ("forward m=0", lambda: bpnet.forward(TH, S, X[:0]), ValueError, r"\bX\b.*m = 0"),
    ("predict m=0", lambda: bpnet.predict(TH, S, X[:0]), ValueError, r"\bX\b.*m = 0"),
    ("y length", lambda: bpnet.cost_grad(TH, S, X, Y[:3]), ValueError, r"\by\b.*\(3,\)"),
    (
        "y matrix K",
        lambda: bpnet.cost_grad(TH, S, X, np.zeros((M, 3))),
        ValueError,
        r"\by\b.*\(6, 3\)",
    ),
    ("y 3-D", lambda: bpnet.cost_grad(TH, S, X, np.zeros((M, 2, 1))), ValueError, r"\by\b"),
    ("theta length", lambda: bpnet.cost_grad(TH[:-1], S, X, Y), ValueError, r"theta.*\(25,\)"),
    ("theta 2-D", lambda: bpnet.cost_grad(TH[None], S, X, Y), ValueError, r"theta.*1-D"),
    (
        "sample_weight length",
        lambda: bpnet.cost_grad(TH, S, X, Y, sample_weight=W[:5]),
        ValueError,
        r"sample_weight.*\(5,\)",
    ),
    (
        "sample_weight 2-D",
        lambda: bpnet.cost_grad(TH, S, X, Y, sample_weight=W[:, None]),
        ValueError,
        r"sample_weight.*1-D",
    ),
    (
        "out shape",
        lambda: bpnet.cost_grad(TH, S, X, Y, out=np.zeros(P + 1)),
        ValueError,
        r"\bout\b",
    ),
    (
        "forward out shape",
        lambda: bpnet.forward(TH, S, X, out=np.zeros((5, 2))),
        ValueError,
        r"\bout\b",
    ),
    # --- layer sizes ------------------------------------------------------------
    ("L=1", lambda: bpnet.cost_grad(TH, (3,), X, Y), ValueError, r"layer_sizes.*at least 2"),
    ("L=0", lambda: bpnet.n_params(()), ValueError, r"layer_sizes"),
    ("zero units", lambda: bpnet.cost_grad(TH, (3, 0, 2), X, Y), ValueError, r"layer_sizes\[1\]"),
    ("negative units", lambda: bpnet.n_params((3, -1, 2)), ValueError, r"layer_sizes\[1\]"),
    ("float units", lambda: bpnet.n_params((3, 2.0, 2)), ValueError, r"layer_sizes\[1\]"),
    ("bool units", lambda: bpnet.n_params((3, True, 2)), ValueError, r"layer_sizes\[1\]"),
    ("string sizes", lambda: bpnet.n_params("34"), ValueError, r"layer_sizes"),
    ("random_theta L=1", lambda: bpnet.random_theta((3,)), ValueError, r"layer_sizes"),
    ("debug_theta zero", lambda: bpnet.debug_theta((3, 0)), ValueError, r"layer_sizes\[1\]"),
    ("roll L=1", lambda: bpnet.roll(TH, (3,)), ValueError, r"layer_sizes"),
    # --- non-finite values ---------------------------------------------------------
    ("X nan", lambda: bpnet.cost_grad(TH, S, with_nan(X), Y), ValueError, r"\bX\b.*non-finite"),
    ("X inf", lambda: bpnet.forward(TH, S, with_nan(X, np.inf)), ValueError, r"\bX\b.*non-finite"),
    (
        "X nan unchecked",
        lambda: bpnet.cost_grad(TH, S, with_nan(X), Y, check_finite=False),
        ValueError,
        r"\bX\b.*row 0, column 1",
    ),
    (
        "X -inf unchecked predict",
        lambda: bpnet.predict(TH, S, with_nan(X, -np.inf), check_finite=False),
        ValueError,
        r"\bX\b.*row 0, column 1",
    ),
    ("theta nan", lambda: bpnet.cost_grad(with_nan(TH), S, X, Y), ValueError, r"theta.*index 1"),
    (
        "theta inf forward",
        lambda: bpnet.forward(with_nan(TH, np.inf), S, X),
        ValueError,
        r"theta.*non-finite",
    ),
    (
        "y matrix nan",
        lambda: bpnet.cost_grad(TH, S, X, with_nan(np.eye(2)[Y])),
        ValueError,
        r"\by\b.*non-finite",
    ),
    (
        "y matrix nan unchecked",
        lambda: bpnet.cost_grad(TH, S, X, with_nan(np.eye(2)[Y]), check_finite=False),
        ValueError,
        r"\by\b.*non-finite",
    ),
    (
        "sample_weight nan",
        lambda: bpnet.cost_grad(TH, S, X, Y, sample_weight=with_nan(W)),
        ValueError,
        r"sample_weight",
    ),
    (
        "sample_weight inf unchecked",
        lambda: bpnet.cost_grad(TH, S, X, Y, sample_weight=with_nan(W, np.inf), check_finite=False),
        ValueError,
        r"sample_weight\[1\]",
    ),
    (
        "sample_weight negative",
        lambda: bpnet.cost_grad(TH, S, X, Y, sample_weight=-W),
        ValueError,
        r"sample_weight\[0\]",
    ),
    (
        "sample_weight all zero",
        lambda: bpnet.cost_grad(TH, S, X, Y, sample_weight=0 * W),
        ValueError,
        r"sample weights sum",
    ),
    # --- labels ------------------------------------------------------------------
    (
        "label out of range",
        lambda: bpnet.cost_grad(TH, S, X, Y + 2),
        ValueError,
        r"y\[0\] = 2.*\[0, 2\)",
    ),
    ("label negative", lambda: bpnet.cost_grad(TH, S, X, -Y), ValueError, r"y\[1\] = -1"),
    (
        "label float",
        lambda: bpnet.cost_grad(TH, S, X, Y.astype(float)),
        ValueError,
        r"\by\b.*integer",
    ),
    ("label bool", lambda: bpnet.cost_grad(TH, S, X, Y.astype(bool)), ValueError, r"\by\b"),
    ("label object", lambda: bpnet.cost_grad(TH, S, X, Y.astype(object)), ValueError, r"\by\b"),
    (
        "label uint64 huge",
        lambda: bpnet.cost_grad(TH, S, X, np.full(M, 2**63 + 5, np.uint64)),
        ValueError,
        r"y\[0\] = 9223372036854775813",
    ),
    (
        "label int8 out of range",
        lambda: bpnet.cost_grad(TH, S, X, np.full(M, 7, np.int8)),
        ValueError,
        r"y\[0\] = 7",
    ),
    ("labels list", lambda: bpnet.cost_grad(TH, S, X, list(Y)), ValueError, r"\by\b.*ndarray"),
    # --- hyperparameters -------------------------------------------------------------
    ("lam negative", lambda: bpnet.cost_grad(TH, S, X, Y, -1.0), ValueError, r"lam.*-1"),
    ("lam nan", lambda: bpnet.cost_grad(TH, S, X, Y, np.nan), ValueError, r"lam.*nan"),
    ("lam inf", lambda: bpnet.cost_grad(TH, S, X, Y, np.inf), ValueError, r"lam.*inf"),
    ("lam string", lambda: bpnet.cost_grad(TH, S, X, Y, "a"), ValueError, r"lam"),
    (
        "activation",
        lambda: bpnet.cost_grad(TH, S, X, Y, activation="gelu"),
        ValueError,
        r"activation.*gelu",
    ),
    ("output", lambda: bpnet.forward(TH, S, X, output="tanh"), ValueError, r"output.*tanh"),
    ("n_threads 0", lambda: bpnet.cost_grad(TH, S, X, Y, n_threads=0), ValueError, r"n_threads"),
    (
        "n_threads huge",
        lambda: bpnet.cost_grad(TH, S, X, Y, n_threads=10**6),
        ValueError,
        r"n_threads.*1000000",
    ),
    ("n_threads 2**40", lambda: bpnet.predict(TH, S, X, n_threads=2**40), ValueError, r"n_threads"),
    ("n_threads float", lambda: bpnet.predict(TH, S, X, n_threads=2.0), ValueError, r"n_threads"),
    ("check_gradients eps", lambda: bpnet.check_gradients(S, eps=-1e-4), ValueError, r"eps"),
    ("check_gradients lam", lambda: bpnet.check_gradients(S, -1.0), ValueError, r"lam"),
    ("check_gradients m=0", lambda: bpnet.check_gradients(S, m=0), ValueError, r"\bX\b|\bm\b"),
    (
        "check_gradients theta",
        lambda: bpnet.check_gradients(S, theta=np.zeros(3)),
        ValueError,
        r"theta",
    ),
    ("random_theta seed", lambda: bpnet.random_theta(S, -1), ValueError, r"seed"),
    ("random_theta rng", lambda: bpnet.random_theta(S, "x"), ValueError, r"\brng\b"),
    ("random_theta dtype", lambda: bpnet.random_theta(S, 0, dtype=np.int64), ValueError, r"dtype"),
    ("debug_theta dtype", lambda: bpnet.debug_theta(S, dtype=np.complex128), ValueError, r"dtype"),
    # --- dtypes ----------------------------------------------------------------------
    *[
        (
            f"theta {dt}",
            (lambda dt=dt: bpnet.cost_grad(TH.astype(dt), S, X, Y)),
            ValueError,
            rf"theta.*{np.dtype(dt)}",
        )
        for dt in (object, np.complex128, np.int64, np.bool_, np.float16)
    ],
    *[
        (
            f"X {dt}",
            (lambda dt=dt: bpnet.cost_grad(TH, S, X.astype(dt), Y)),
            ValueError,
            rf"\bX\b.*{np.dtype(dt)}",
        )
        for dt in (object, np.complex128, np.int64, np.bool_, np.float32)
    ],
    ("X list", lambda: bpnet.forward(TH, S, X.tolist()), ValueError, r"\bX\b.*ndarray"),
    (
        "y matrix float32 vs theta float64",
        lambda: bpnet.cost_grad(TH, S, X, np.eye(2, dtype=np.float32)[Y]),
        ValueError,
        r"\by\b.*float32",
    ),
    (
        "sample_weight float32",
        lambda: bpnet.cost_grad(TH, S, X, Y, sample_weight=W.astype(np.float32)),
        ValueError,
        r"sample_weight.*float32",
    ),
    (
        "out float32",
        lambda: bpnet.cost_grad(TH, S, X, Y, out=np.zeros(P, np.float32)),
        ValueError,
        r"\bout\b.*float32",
    ),
    (
        "unroll complex",
        lambda: bpnet.unroll([np.zeros((4, 4), complex)]),
        ValueError,
        r"thetas\[0\]",
    ),
    ("unroll object", lambda: bpnet.unroll([np.zeros((4, 4), object)]), ValueError, r"thetas\[0\]"),
    ("unroll 1-D", lambda: bpnet.unroll([np.zeros(4)]), ValueError, r"thetas\[0\]"),
    (
        "unroll chain",
        lambda: bpnet.unroll([np.zeros((4, 4)), np.zeros((2, 4))]),
        ValueError,
        r"thetas\[1\]",
    ),
    ("unroll empty", lambda: bpnet.unroll([]), ValueError, r"thetas"),
    ("roll complex", lambda: bpnet.roll(TH.astype(complex), S), ValueError, r"theta"),
    # --- layouts -----------------------------------------------------------------------
    (
        "X Fortran",
        lambda: bpnet.cost_grad(TH, S, np.asfortranarray(X), Y),
        ValueError,
        r"\bX\b.*C-contiguous",
    ),
    (
        "X strided",
        lambda: bpnet.forward(TH, S, np.repeat(X, 2, axis=0)[::2]),
        ValueError,
        r"\bX\b.*C-contiguous",
    ),
    (
        "theta strided",
        lambda: bpnet.cost_grad(np.repeat(TH, 2)[::2], S, X, Y),
        ValueError,
        r"theta.*contiguous",
    ),
    (
        "y matrix Fortran",
        lambda: bpnet.cost_grad(TH, S, X, np.asfortranarray(np.eye(2)[Y])),
        ValueError,
        r"\by\b.*C-contiguous",
    ),
    (
        "sample_weight strided",
        lambda: bpnet.cost_grad(TH, S, X, Y, sample_weight=np.ones(2 * M)[::2]),
        ValueError,
        r"sample_weight.*C-contiguous",
    ),
    (
        "X misaligned",
        lambda: bpnet.cost_grad(TH, S, misaligned(X), Y),
        ValueError,
        r"\bX\b.*aligned",
    ),
    (
        "theta misaligned",
        lambda: bpnet.forward(misaligned(TH), S, X),
        ValueError,
        r"theta.*aligned",
    ),
    (
        "sample_weight misaligned",
        lambda: bpnet.cost_grad(TH, S, X, Y, sample_weight=misaligned(W)),
        ValueError,
        r"sample_weight.*aligned",
    ),
    (
        "out misaligned",
        lambda: bpnet.cost_grad(TH, S, X, Y, out=misaligned(np.zeros(P))),
        ValueError,
        r"\bout\b.*aligned",
    ),
    (
        "out read-only",
        lambda: bpnet.cost_grad(TH, S, X, Y, out=readonly(np.zeros(P))),
        ValueError,
        r"\bout\b.*writeable",
    ),
    (
        "out strided",
        lambda: bpnet.cost_grad(TH, S, X, Y, out=np.zeros(2 * P)[::2]),
        ValueError,
        r"\bout\b.*C-contiguous",
    ),
    (
        "forward out read-only",
        lambda: bpnet.forward(TH, S, X, out=readonly(np.zeros((M, 2)))),
        ValueError,
        r"\bout\b.*writeable",
    ),
    # --- absurd sizes ---------------------------------------------------------------
    (
        "parameter count overflow",
        lambda: bpnet.n_params((2**40, 2**40, 2)),
        ValueError,
        r"layer_sizes.*overflows",
    ),
    ("layer too large", lambda: bpnet.n_params((2**62, 2)), ValueError, r"layer_sizes\[0\]"),
    ("layer beyond int64", lambda: bpnet.n_params((2**70, 2)), ValueError, r"layer_sizes\[0\]"),
    (
        "cost_grad overflow",
        lambda: bpnet.cost_grad(TH, (2**31, 2**31, 2), X, Y),
        ValueError,
        r"layer_sizes|theta",
    ),
    (
        "allocation impossible",
        lambda: bpnet.random_theta((10**6, 10**6), 0),
        MemoryError,
        r"allocate|memory",
    ),
    (
        "huge net, tiny theta",
        lambda: bpnet.cost_grad(
            np.zeros(1), (10**6, 10**6, 2), np.zeros((1, 10**6)), np.zeros(1, np.int64)
        ),
        ValueError,
        r"theta.*1000003000002",
    ),
]


@pytest.mark.parametrize(
    ("thunk", "exc", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_functional_bad_input(thunk, exc, pattern):
    with pytest.raises(exc, match=pattern):
        thunk()


# --- the raw _core functions: the same checks at the C++ boundary -------------------
CORE_CASES = [
    ("theta dtype", lambda: call_core_cost_grad(theta=TH.astype(np.int64)), r"theta.*int64"),
    ("theta complex", lambda: call_core_cost_grad(theta=TH.astype(complex)), r"theta.*complex"),
    ("theta object", lambda: call_core_cost_grad(theta=TH.astype(object)), r"theta.*object"),
    ("theta length", lambda: call_core_cost_grad(theta=TH[:-1]), r"theta.*\(25,\)"),
    ("theta 2-D", lambda: call_core_cost_grad(theta=TH[None]), r"theta"),
    ("theta nan", lambda: call_core_cost_grad(theta=with_nan(TH)), r"theta.*index 1"),
    (
        "theta strided",
        lambda: call_core_cost_grad(theta=np.repeat(TH, 2)[::2]),
        r"theta.*C-contiguous",
    ),
    ("theta misaligned", lambda: call_core_cost_grad(theta=misaligned(TH)), r"theta.*aligned"),
    ("X float32", lambda: call_core_cost_grad(X=X.astype(np.float32)), r"\bX\b.*float32"),
    ("X bool", lambda: call_core_cost_grad(X=X.astype(bool)), r"\bX\b.*bool"),
    ("X 1-D", lambda: call_core_cost_grad(X=X.ravel()), r"\bX\b.*2-D"),
    ("X 3-D", lambda: call_core_cost_grad(X=X[None]), r"\bX\b.*2-D"),
    ("X columns", lambda: call_core_cost_grad(X=np.zeros((M, 5))), r"\bX\b.*\(6, 5\)"),
    ("X Fortran", lambda: call_core_cost_grad(X=np.asfortranarray(X)), r"\bX\b.*C-contiguous"),
    ("X misaligned", lambda: call_core_cost_grad(X=misaligned(X)), r"\bX\b.*aligned"),
    ("X nan", lambda: call_core_cost_grad(X=with_nan(X)), r"\bX\b.*row 0, column 1"),
    ("X m=0", lambda: call_core_cost_grad(X=X[:0], y=Y[:0]), r"\bX\b.*m = 0"),
    ("y int32", lambda: call_core_cost_grad(y=Y.astype(np.int32)), r"\by\b.*int64"),
    ("y float 1-D", lambda: call_core_cost_grad(y=Y.astype(float)), r"\by\b.*int64"),
    ("y length", lambda: call_core_cost_grad(y=Y[:2]), r"\by\b.*\(2,\)"),
    ("y out of range", lambda: call_core_cost_grad(y=Y + 9), r"y\[0\] = 9"),
    ("y negative", lambda: call_core_cost_grad(y=Y - 1), r"y\[0\] = -1"),
    ("y misaligned", lambda: call_core_cost_grad(y=misaligned(Y)), r"\by\b.*aligned"),
    ("y matrix nan", lambda: call_core_cost_grad(y=with_nan(np.eye(2)[Y])), r"\by\b.*non-finite"),
    ("y 3-D", lambda: call_core_cost_grad(y=np.zeros((M, 2, 1))), r"\by\b"),
    ("lam negative", lambda: call_core_cost_grad(lam=-1.0), r"lam"),
    ("lam nan", lambda: call_core_cost_grad(lam=float("nan")), r"lam"),
    ("sample_weight negative", lambda: call_core_cost_grad(sw=-W), r"sample_weight\[0\]"),
    ("sample_weight nan", lambda: call_core_cost_grad(sw=with_nan(W)), r"sample_weight\[1\]"),
    ("sample_weight zero sum", lambda: call_core_cost_grad(sw=0 * W), r"sample weights sum"),
    ("sample_weight length", lambda: call_core_cost_grad(sw=W[:3]), r"sample_weight.*\(3,\)"),
    ("grad read-only", lambda: call_core_cost_grad(grad=readonly(np.zeros(P))), r"grad.*writeable"),
    ("grad float32", lambda: call_core_cost_grad(grad=np.zeros(P, np.float32)), r"grad.*float32"),
    ("rows out of range", lambda: call_core_cost_grad(rows=np.array([0, 99])), r"rows\[1\] = 99"),
    ("rows negative", lambda: call_core_cost_grad(rows=np.array([-1])), r"rows\[0\] = -1"),
    ("rows int32", lambda: call_core_cost_grad(rows=np.array([0], np.int32)), r"rows.*int64"),
    ("rows empty", lambda: call_core_cost_grad(rows=np.array([], np.int64)), r"m = 0"),
    ("layer_sizes L=1", lambda: call_core_cost_grad(sizes=[3]), r"layer_sizes"),
    ("layer_sizes zero", lambda: call_core_cost_grad(sizes=[3, 0, 2]), r"layer_sizes\[1\]"),
    ("layer_sizes overflow", lambda: core.n_params([2**40, 2**40, 2]), r"layer_sizes.*overflows"),
    ("layer_sizes too large", lambda: core.n_params([2**62, 2**62]), r"layer_sizes\[0\]"),
    ("n_threads 0", lambda: call_core_cost_grad(n_threads=0), r"n_threads"),
    ("n_threads -5", lambda: call_core_cost_grad(n_threads=-5), r"n_threads"),
    ("n_threads 10**6", lambda: call_core_cost_grad(n_threads=10**6), r"n_threads.*1000000"),
    (
        "activation",
        lambda: core.forward(TH, S, X, "gelu", "sigmoid", None, None, -1, core.Workspace()),
        r"activation.*gelu",
    ),
    (
        "output",
        lambda: core.forward(TH, S, X, "sigmoid", "relu", None, None, -1, core.Workspace()),
        r"output.*relu",
    ),
    (
        "forward out shape",
        lambda: core.forward(
            TH, S, X, "sigmoid", "sigmoid", np.zeros((M, 3)), None, -1, core.Workspace()
        ),
        r"\bout\b",
    ),
    (
        "forward rows",
        lambda: core.forward(
            TH, S, X, "sigmoid", "sigmoid", None, np.array([M]), -1, core.Workspace()
        ),
        r"rows\[0\] = 6",
    ),
    (
        "predict out dtype",
        lambda: core.predict(TH, S, X, "sigmoid", np.zeros(M), None, -1, core.Workspace()),
        r"\bout\b.*int64",
    ),
    (
        "predict rows",
        lambda: core.predict(TH, S, X, "sigmoid", None, np.array([-3]), -1, core.Workspace()),
        r"rows\[0\] = -3",
    ),
    (
        "partial_sums starts order",
        lambda: core.partial_sums(
            TH,
            S,
            X,
            Y,
            "sigmoid",
            "sigmoid",
            None,
            np.array([0, 4, 2, M]),
            np.zeros((3, P)),
            -1,
            core.Workspace(),
        ),
        r"starts",
    ),
    (
        "partial_sums starts range",
        lambda: core.partial_sums(
            TH,
            S,
            X,
            Y,
            "sigmoid",
            "sigmoid",
            None,
            np.array([0, M + 1]),
            np.zeros((1, P)),
            -1,
            core.Workspace(),
        ),
        r"starts",
    ),
    (
        "partial_sums starts short",
        lambda: core.partial_sums(
            TH,
            S,
            X,
            Y,
            "sigmoid",
            "sigmoid",
            None,
            np.array([0]),
            np.zeros((1, P)),
            -1,
            core.Workspace(),
        ),
        r"starts",
    ),
    (
        "partial_sums leaf_grads",
        lambda: core.partial_sums(
            TH,
            S,
            X,
            Y,
            "sigmoid",
            "sigmoid",
            None,
            np.array([0, M]),
            np.zeros((2, P)),
            -1,
            core.Workspace(),
        ),
        r"leaf_grads.*\(2, 26\)",
    ),
    ("finalize weight", lambda: core.finalize(TH, S, 0.0, 1.0, 0.0, np.zeros(P)), r"weights sum"),
    (
        "finalize weight nan",
        lambda: core.finalize(TH, S, 0.0, 1.0, float("nan"), np.zeros(P)),
        r"weights sum",
    ),
    ("finalize lam", lambda: core.finalize(TH, S, -1.0, 1.0, 1.0, np.zeros(P)), r"lam"),
    ("finalize grad", lambda: core.finalize(TH, S, 0.0, 1.0, 1.0, np.zeros(P - 1)), r"grad"),
    ("leaf_starts m=0", lambda: core.leaf_starts(0), r"\bm\b"),
]


@pytest.mark.parametrize(
    ("thunk", "pattern"), [c[1:] for c in CORE_CASES], ids=[c[0] for c in CORE_CASES]
)
def test_core_bad_input(thunk, pattern):
    with pytest.raises(ValueError, match=pattern):
        thunk()


def test_core_rejects_unconvertible_arguments_with_type_error():
    """pybind11 itself refuses Python objects it cannot convert (TypeError, not a crash)."""
    with pytest.raises(TypeError, match="incompatible function arguments"):
        core.n_params([2**64, 2])
    with pytest.raises(TypeError, match="incompatible function arguments"):
        call_core_cost_grad(n_threads=2**40)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        core.cost_grad(TH, S, X, Y, 0.0, "sigmoid", "sigmoid", None, None, None, -1, None)


# --- accepted inputs: read-only, other integer label dtypes; no hidden copy ----------
def test_read_only_inputs_are_used_in_place():
    J_ref, g_ref = bpnet.cost_grad(TH, S, X, Y, 1.0, sample_weight=W)
    J, g = bpnet.cost_grad(
        readonly(TH), S, readonly(X), readonly(Y), 1.0, sample_weight=readonly(W)
    )
    assert J == J_ref
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(
        bpnet.forward(readonly(TH), S, readonly(X)), bpnet.forward(TH, S, X)
    )


@pytest.mark.parametrize("dt", [np.int8, np.int16, np.int32, np.uint8, np.uint32, np.uint64])
def test_any_integer_label_dtype_gives_the_same_answer(dt):
    J_ref, g_ref = bpnet.cost_grad(TH, S, X, Y)
    J, g = bpnet.cost_grad(TH, S, X, Y.astype(dt))
    assert J == J_ref
    np.testing.assert_array_equal(g, g_ref)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_out_buffers_are_written_in_place(dtype):
    """No hidden copy: the returned arrays are the caller's buffers."""
    theta, Xd, y = _data(dtype)
    grad = np.full(P, np.nan, dtype=dtype)
    _, g = bpnet.cost_grad(theta, S, Xd, y, 0.5, out=grad)
    assert g is grad or np.shares_memory(g, grad)
    assert np.isfinite(grad).all()
    h = np.full((M, 2), np.nan, dtype=dtype)
    out = bpnet.forward(theta, S, Xd, out=h)
    assert np.shares_memory(out, h) and np.isfinite(h).all()
    ws = core.Workspace()
    labels = np.full(M, -1, np.int64)
    assert np.shares_memory(core.predict(theta, S, Xd, "sigmoid", labels, None, -1, ws), labels)
    np.testing.assert_array_equal(labels, bpnet.predict(theta, S, Xd))
    # the views roll returns share theta's memory (no copy)
    assert all(np.shares_memory(t, theta) for t in bpnet.roll(theta, S))


def test_network_converts_once_and_then_reuses_the_arrays(monkeypatch):
    """Network converts X (Fortran, int, misaligned...) once per fit; every core
    call during the fit sees that same array."""
    seen = []
    real = core.cost_grad

    def spy(theta, sizes, X, *args):
        seen.append(X)
        return real(theta, sizes, X, *args)

    monkeypatch.setattr(core, "cost_grad", spy)
    for Xin in (np.asfortranarray(X), misaligned(X), X.astype(np.float32), (X * 10).astype(int)):
        seen.clear()
        bpnet.Network(S, rng=0).fit(Xin, Y, max_iter=5)
        assert len(seen) > 2
        assert all(s is seen[0] for s in seen), "X was converted more than once"
        assert seen[0].flags.c_contiguous and seen[0].flags.aligned
        assert seen[0].dtype == np.float64


def test_network_fit_results_do_not_depend_on_the_input_layout():
    ref = bpnet.Network(S, rng=0).fit(X, Y, max_iter=20).theta
    for Xin in (np.asfortranarray(X), misaligned(X), readonly(X), X.tolist()):
        got = bpnet.Network(S, rng=0).fit(Xin, misaligned(Y), max_iter=20).theta
        np.testing.assert_array_equal(got, ref)


# --- Network --------------------------------------------------------------------
def net(**kw):
    return bpnet.Network(S, rng=0, **kw)


NETWORK_CASES = [
    ("L=1", lambda: bpnet.Network((3,)), r"layer_sizes"),
    ("zero units", lambda: bpnet.Network((3, 0, 2)), r"layer_sizes\[1\]"),
    ("overflow", lambda: bpnet.Network((2**40, 2**40, 2)), r"layer_sizes"),
    ("lam", lambda: net(lam=-1), r"lam.*-1"),
    ("dtype int", lambda: net(dtype=int), r"dtype"),
    ("dtype nonsense", lambda: net(dtype="foo"), r"dtype.*foo"),
    ("activation", lambda: net(activation="x"), r"activation"),
    ("output", lambda: net(output="x"), r"output"),
    ("n_threads", lambda: net(n_threads=0), r"n_threads"),
    ("rng", lambda: bpnet.Network(S, rng="x"), r"\brng\b"),
    ("theta object", lambda: net(theta=np.zeros(P, object)), r"theta.*object"),
    ("theta complex", lambda: net(theta=np.ones(P) * 1j), r"theta.*complex"),
    ("theta str", lambda: net(theta=np.array(["a"] * P)), r"theta"),
    ("theta None list", lambda: net(theta=[None] * P), r"theta"),
    ("theta nan", lambda: net(theta=with_nan(np.zeros(P))), r"theta.*non-finite"),
    (
        "theta overflows float32",
        lambda: net(theta=np.full(P, 1e300), dtype=np.float32),
        r"theta.*non-finite.*float32",
    ),
    ("theta short", lambda: net(theta=np.zeros(3)), r"theta.*\(3,\)"),
    ("theta 2-D", lambda: net(theta=np.zeros((1, P))), r"theta"),
]


@pytest.mark.parametrize(
    ("thunk", "pattern"), [c[1:] for c in NETWORK_CASES], ids=[c[0] for c in NETWORK_CASES]
)
def test_network_constructor_bad_input(thunk, pattern):
    with pytest.raises(ValueError, match=pattern):
        thunk()


FIT_CASES = [
    ("X 1-D", dict(X=X.ravel()), r"\bX\b.*2-D"),
    ("X 3-D", dict(X=X[None]), r"\bX\b.*2-D"),
    ("X m=0", dict(X=X[:0], y=Y[:0]), r"\bX\b.*m = 0"),
    ("X columns", dict(X=X[:, :2]), r"\bX\b.*\(6, 2\)"),
    ("X nan", dict(X=with_nan(X)), r"\bX\b.*non-finite"),
    ("X inf", dict(X=with_nan(X, np.inf)), r"\bX\b.*non-finite"),
    ("X overflows float32", dict(X=X * 1e300, dtype=np.float32), r"\bX\b.*non-finite.*float32"),
    ("X object", dict(X=X.astype(object)), r"\bX\b.*object"),
    ("X complex", dict(X=X.astype(complex)), r"\bX\b.*complex"),
    ("X str", dict(X=X.astype(str)), r"\bX\b"),
    ("y length", dict(y=Y[:3]), r"\by\b.*\(3,\)"),
    ("y scalar", dict(y=np.array(1)), r"\by\b"),
    ("y negative", dict(y=-Y), r"y\[1\] = -1"),
    ("y out of range", dict(y=Y + 2), r"y\[0\] = 2"),
    ("y fractional", dict(y=Y + 0.5), r"\by\b.*integer"),
    ("y nan", dict(y=np.where(Y > 0, np.nan, 0)), r"\by\b"),
    ("y object", dict(y=Y.astype(object)), r"\by\b"),
    ("y complex", dict(y=Y.astype(complex)), r"\by\b"),
    ("y str", dict(y=Y.astype(str)), r"\by\b"),
    ("y uint64 huge", dict(y=np.full(M, 2**63 + 1, np.uint64)), r"y\[0\]"),
    ("y matrix K", dict(y=np.zeros((M, 3))), r"\by\b.*\(6, 3\)"),
    ("y matrix nan", dict(y=with_nan(np.eye(2)[Y])), r"\by\b.*non-finite"),
    ("y matrix object", dict(y=np.zeros((M, 2), object)), r"\by\b.*object"),
    ("y 3-D", dict(y=np.zeros((M, 2, 1))), r"\by\b"),
    ("sample_weight nan", dict(sample_weight=with_nan(W)), r"sample_weight"),
    ("sample_weight negative", dict(sample_weight=-W), r"sample_weight"),
    ("sample_weight zero", dict(sample_weight=0 * W), r"sample_weight"),
    ("sample_weight length", dict(sample_weight=W[:5]), r"sample_weight.*\(5,\)"),
    ("sample_weight complex", dict(sample_weight=W.astype(complex)), r"sample_weight.*complex"),
    ("sample_weight str", dict(sample_weight=np.array(["a"] * M)), r"sample_weight"),
    ("solver", dict(solver="newton"), r"solver.*newton"),
    ("max_iter 0", dict(max_iter=0), r"max_iter"),
    ("max_iter float", dict(max_iter=2.5), r"max_iter"),
    ("tol negative", dict(tol=-1.0), r"tol"),
    ("tol nan", dict(tol=np.nan), r"tol"),
    ("full batch option", dict(learning_rate=0.1), r"learning_rate"),
    *[
        (f"{solver} {name}={value!r}", dict(solver=solver, **{name: value}), name)
        for solver in ("adam", "sgd")
        for name, value in (
            ("learning_rate", -0.1),
            ("learning_rate", 0.0),
            ("learning_rate", np.nan),
            ("learning_rate", np.inf),
            ("learning_rate", "fast"),
            ("batch_size", 0),
            ("batch_size", 2.0),
            ("tol", -1.0),
            ("tol", np.nan),
            ("momentum", 1.0),
            ("momentum", np.nan),
            ("beta_1", -0.1),
            ("beta_1", "a"),
            ("beta_2", 1.0),
            ("epsilon", 0.0),
            ("n_iter_no_change", 0),
            ("n_iter_no_change", -1),
        )
    ],
]


@pytest.mark.parametrize(
    ("kw", "pattern"), [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES]
)
def test_network_fit_bad_input(kw, pattern):
    kw = dict(kw)
    n = bpnet.Network(S, rng=0, dtype=kw.pop("dtype", np.float64))
    before = n.theta.copy()
    Xin, yin = kw.pop("X", X), kw.pop("y", Y)
    with pytest.raises(ValueError, match=pattern):
        n.fit(Xin, yin, max_iter=kw.pop("max_iter", 3), **kw)
    np.testing.assert_array_equal(n.theta, before)  # a rejected fit changes nothing


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
@pytest.mark.parametrize(
    ("Xin", "pattern"),
    [
        (X[:, :2], r"\bX\b.*\(6, 2\)"),
        (X[:0], r"\bX\b.*m = 0"),
        (with_nan(X), r"\bX\b.*non-finite"),
        (X.ravel(), r"\bX\b.*2-D"),
        (X.astype(complex), r"\bX\b.*complex"),
    ],
)
def test_network_predict_bad_input(method, Xin, pattern):
    with pytest.raises(ValueError, match=pattern):
        getattr(net(), method)(Xin)


def test_network_cost_grad_bad_input():
    with pytest.raises(ValueError, match=r"y\[0\] = 3"):
        net().cost_grad(X, Y + 3)
    with pytest.raises(ValueError, match=r"sample_weight"):
        net().cost_grad(X, Y, sample_weight=-W)


# --- core workspace ---------------------------------------------------------------
def test_workspace_memory_does_not_grow_with_unused_threads():
    ws8, ws512 = core.Workspace(), core.Workspace()
    core.cost_grad(TH, S, X, Y, 0.0, "sigmoid", "sigmoid", None, None, None, 8, ws8)
    core.cost_grad(TH, S, X, Y, 0.0, "sigmoid", "sigmoid", None, None, None, 512, ws512)
    assert ws512.nbytes <= ws8.nbytes  # M = 6 rows: one chunk, one thread buffer needed


def test_check_gradients_names_eps_when_infinite():
    with pytest.raises(ValueError, match=r"\beps\b"):
        bpnet.check_gradients(S, eps=np.inf)

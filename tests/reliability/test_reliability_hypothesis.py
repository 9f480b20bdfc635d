
"""Property-based tests (Hypothesis): random shapes, dtypes, layouts and values.

- the core agrees with a tiny float64 NumPy reference written here;
- results do not depend on the thread count or on the gradient buffer;
- random garbage for any argument gives a Python exception, never a crash.

Profiles (``BPNET_HYPOTHESIS_PROFILE``): ``bpnet-default`` (small, the default
suite) and ``ci-long`` (a few thousand examples, ``.ci/hypothesis-long.sh``).
Neither writes an example database (nothing lands in the repository).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import expit

import bpnet
from bpnet import _native
from bpnet._native import core

_common = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The gating profiles are derandomized: the same examples on every run, so a CI
# result is reproducible; "explore" draws new random examples each run.
settings.register_profile("bpnet-default", max_examples=40, derandomize=True, **_common)
settings.register_profile("ci-long", max_examples=2500, derandomize=True, **_common)
settings.register_profile("explore", max_examples=2500, **_common)
PROFILE = os.environ.get("BPNET_HYPOTHESIS_PROFILE", "bpnet-default")
if PROFILE == "default":
    PROFILE = "bpnet-default"
# A settings object per test, not load_profile: other test modules keep theirs.
SETTINGS = settings.get_profile(PROFILE)


# --- the reference: plain float64 NumPy --------------------------------------------
def ref_forward(theta, sizes, X, activation):
    """Logits z^(L) (m, K) and the activations [a^(1) .. a^(L-1)] in float64."""
    theta = np.asarray(theta, np.float64)
    a = np.asarray(X, np.float64)
    acts, o = [a], 0
    for l in range(len(sizes) - 1):
        r, c = sizes[l + 1], sizes[l] + 1
        T = theta[o : o + r * c].reshape(r, c)
        o += r * c
        z = a @ T[:, 1:].T + T[:, 0]
        if l + 2 < len(sizes):
            a = {
                "sigmoid": expit,
                "tanh": np.tanh,
                "relu": lambda z: np.maximum(z, 0),
            }[activation](z)
            acts.append(a)
    return z, acts


def ref_output(z, output):
    if output == "sigmoid":
        return expit(z)  # 1 / (1 + e^-z) without overflow warnings
    if output == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z


def ref_cost_grad(theta, sizes, X, Y, lam, activation, output, w):
    theta = np.asarray(theta, np.float64)
    z, acts = ref_forward(theta, sizes, X, activation)
    Y = np.asarray(Y, np.float64)
    w = np.ones(len(X)) if w is None else np.asarray(w, np.float64)
    if output == "sigmoid":
        loss = np.logaddexp(0, z) - Y * z
    elif output == "softmax":
        lse = z.max(axis=1, keepdims=True) + np.log(
            np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)
        )
        loss = Y * (lse - z)
    else:
        loss = 0.5 * (z - Y) ** 2
    W = w.sum()
    h = ref_output(z, output)
    if output == "softmax":  # dJ/dz = h sum_k y_k - y (h - y for rows summing to 1)
        h = h * Y.sum(axis=1, keepdims=True)
    delta = w[:, None] * (h - Y)
    grads, offsets, o = [], [], 0
    for l in range(len(sizes) - 1):
        offsets.append(o)
        o += sizes[l + 1] * (sizes[l] + 1)
    sq = 0.0
    for l in range(len(sizes) - 2, -1, -1):
        r, c = sizes[l + 1], sizes[l] + 1
        T = theta[offsets[l] : offsets[l] + r * c].reshape(r, c)
        a = acts[l]
        G = np.empty((r, c))
        G[:, 0] = delta.sum(axis=0) / W
        G[:, 1:] = delta.T @ a / W + lam / W * T[:, 1:]
        sq += (T[:, 1:] ** 2).sum()
        grads.insert(0, G.ravel())
        if l:
            d = delta @ T[:, 1:]
            if activation == "sigmoid":
                d *= a * (1 - a)
            elif activation == "tanh":
                d *= 1 - a**2
            else:
                d *= a > 0
            delta = d
    J = (w[:, None] * loss).sum() / W + lam / (2 * W) * sq
    return J, np.concatenate(grads)


# --- strategies -----------------------------------------------------------------------
@st.composite
def problems(draw):
    """A network, data and targets with moderate values (the reference is exact there)."""
    L = draw(st.integers(2, 4))
    sizes = tuple(draw(st.lists(st.integers(1, 6), min_size=L, max_size=L)))
    output = draw(st.sampled_from(["sigmoid", "softmax", "identity"]))
    activation = draw(st.sampled_from(["sigmoid", "tanh", "relu"]))
    dtype = np.dtype(draw(st.sampled_from([np.float64, np.float32])))
    m = draw(st.integers(1, 80))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    P = bpnet.n_params(sizes)
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    theta = (rng.standard_normal(P) * scale).astype(dtype)
    X = (rng.standard_normal((m, sizes[0])) * draw(st.sampled_from([0.5, 2.0]))).astype(dtype)
    K = sizes[-1]
    use_labels = output != "identity" and draw(st.booleans())
    if use_labels:
        y = rng.integers(0, K, m).astype(np.int64)
        Y = np.eye(K)[y]
    elif output == "identity":
        y = rng.standard_normal((m, K)).astype(dtype)
        Y = y
    elif output == "softmax":
        y = rng.dirichlet(np.ones(K), m).astype(dtype)
        Y = y
    else:
        y = rng.integers(0, 2, (m, K)).astype(dtype)
        Y = y
    w = None
    if draw(st.booleans()):
        w = rng.uniform(0, 2, m).astype(dtype)
        w[0] += 0.5  # a positive sum
    lam = draw(st.sampled_from([0.0, 0.3, 3.0]))
    return dict(
        theta=theta,
        sizes=sizes,
        X=X,
        y=y,
        Y=Y,
        w=w,
        lam=lam,
        activation=activation,
        output=output,
        dtype=dtype,
    )


def _close(name, got, ref, dtype):
    ref = np.asarray(ref, np.float64)
    if dtype == np.float64:
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-11, err_msg=name)
    else:
        # float32 storage and arithmetic: relative to the size of the terms
        tol = 2e-3 * (1 + np.abs(ref).max())
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=tol, err_msg=name)


@SETTINGS
@given(problems())
def test_cost_grad_matches_reference(p):
    J, g = bpnet.cost_grad(
        p["theta"],
        p["sizes"],
        p["X"],
        p["y"],
        p["lam"],
        activation=p["activation"],
        output=p["output"],
        sample_weight=p["w"],
    )
    J_ref, g_ref = ref_cost_grad(
        p["theta"], p["sizes"], p["X"], p["Y"], p["lam"], p["activation"], p["output"], p["w"]
    )
    assert np.isfinite(J) and np.isfinite(g).all()
    assert g.dtype == p["dtype"] and g.shape == (bpnet.n_params(p["sizes"]),)
    _close("J", J, J_ref, p["dtype"])
    o = 0
    for l, (r, c) in enumerate(bpnet.layer_shapes(p["sizes"])):
        _close(f"dTheta[{l}]", g[o : o + r * c], g_ref[o : o + r * c], p["dtype"])
        o += r * c


@SETTINGS
@given(problems())
def test_forward_and_predict_match_reference(p):
    h = bpnet.forward(
        p["theta"], p["sizes"], p["X"], activation=p["activation"], output=p["output"]
    )
    z_ref, _ = ref_forward(p["theta"], p["sizes"], p["X"], p["activation"])
    assert h.dtype == p["dtype"] and h.shape == z_ref.shape
    _close("a^(L)", h, ref_output(z_ref, p["output"]), p["dtype"])
    labels = bpnet.predict(p["theta"], p["sizes"], p["X"], activation=p["activation"])
    assert labels.dtype == np.int64 and ((labels >= 0) & (labels < p["sizes"][-1])).all()
    # the predicted class has the largest logit (up to rounding)
    best = z_ref.max(axis=1)
    picked = z_ref[np.arange(len(labels)), labels]
    np.testing.assert_allclose(picked, best, rtol=0, atol=1e-3 * (1 + np.abs(best).max()))


# The bitwise properties run on the active build (the one `import bpnet` uses).
BASE = _native.core


def _base_cost_grad(p, n_threads, X=None, y=None, w=None, grad=None, rows=None):
    X = p["X"] if X is None else X
    y = p["y"] if y is None else y
    w = p["w"] if w is None and rows is not None else w
    J, g = BASE.cost_grad(
        p["theta"], list(p["sizes"]), X, y, p["lam"], p["activation"], p["output"], w, grad,
        rows, n_threads, BASE.Workspace(),
    )
    return float(J), g


def _base_forward(p, n_threads):
    return BASE.forward(
        p["theta"], list(p["sizes"]), p["X"], p["activation"], p["output"], None, None,
        n_threads, BASE.Workspace(),
    )


@SETTINGS
@given(problems(), st.sampled_from([1, 2, 3, 4]))
def test_results_are_bitwise_independent_of_threads_and_buffers(p, n_threads):
    J1, g1 = _base_cost_grad(p, 1, w=p["w"])
    out = np.full_like(g1, np.nan)
    Jn, gn = _base_cost_grad(p, n_threads, w=p["w"], grad=out)
    assert np.shares_memory(gn, out)
    assert J1 == Jn
    np.testing.assert_array_equal(g1, gn)
    np.testing.assert_array_equal(_base_forward(p, 1), _base_forward(p, n_threads))
    # the active build through the public API: equal to rounding
    args = (p["theta"], p["sizes"], p["X"], p["y"], p["lam"])
    kw = dict(activation=p["activation"], output=p["output"], sample_weight=p["w"])
    Ja, ga = bpnet.cost_grad(*args, n_threads=n_threads, **kw)
    tol = 1e-12 if p["dtype"] == np.float64 else 1e-5
    np.testing.assert_allclose(Ja, J1, rtol=tol, atol=tol)
    np.testing.assert_allclose(ga, g1, rtol=tol, atol=tol * (1 + np.abs(g1).max()))


@SETTINGS
@given(problems(), st.data())
def test_rows_selection_equals_the_copied_rows(p, data):
    """cost_grad over `rows` (what mini-batch training uses) equals cost_grad on X[rows]."""
    m = len(p["X"])
    rows = np.asarray(data.draw(st.lists(st.integers(0, m - 1), min_size=1, max_size=40)), np.int64)
    w = p["w"]
    assume(w is None or w[rows].sum() > 0)
    J, g = _base_cost_grad(p, -1, rows=rows)
    J2, g2 = _base_cost_grad(
        p,
        -1,
        X=np.ascontiguousarray(p["X"][rows]),
        y=np.ascontiguousarray(p["y"][rows]),
        w=None if w is None else np.ascontiguousarray(w[rows]),
    )
    assert J == J2
    np.testing.assert_array_equal(g, g2)
    # the active build (mini-batch training's path) agrees to rounding
    Ja, ga = core.cost_grad(
        p["theta"], p["sizes"], p["X"], p["y"], p["lam"], p["activation"], p["output"], w,
        None, rows, -1, core.Workspace(),
    )
    tol = 1e-12 if p["dtype"] == np.float64 else 1e-5
    np.testing.assert_allclose(Ja, J, rtol=tol, atol=tol)
    np.testing.assert_allclose(ga, g, rtol=tol, atol=tol * (1 + np.abs(g).max()))


# --- garbage never crashes ----------------------------------------------------------
GARBAGE_DTYPES = st.sampled_from(
    [
        np.float64,
        np.float32,
        np.float16,
        np.int64,
        np.int32,
        np.uint64,
        np.uint8,
        np.bool_,
        np.complex128,
        np.object_,
        ">f8",
    ]
)


@st.composite
def garbage_arrays(draw):
    dtype = np.dtype(draw(GARBAGE_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7))
    if dtype == np.object_:
        a = np.empty(shape, dtype=object)
        a.fill(draw(st.sampled_from([None, 1.0, "x", 3])))
    else:
        elements = None
        if dtype.kind == "f":
            elements = st.floats(
                width=min(dtype.itemsize * 8, 64), allow_nan=True, allow_infinity=True
            )
        a = draw(hnp.arrays(dtype, shape, elements=elements))
    layout = draw(st.sampled_from(["C", "F", "strided", "readonly", "misaligned"]))
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim >= 1:
        a = np.repeat(a, 2, axis=0)[::2]
    elif layout == "readonly":
        a = a.copy()
        a.flags.writeable = False
    elif layout == "misaligned" and dtype != np.object_ and a.size and dtype.itemsize > 1:
        raw = np.zeros(a.nbytes + 1, np.uint8)[1:].view(dtype).reshape(a.shape)
        raw[...] = a
        a = raw
    return a


layer_size_lists = st.lists(
    st.one_of(st.integers(-3, 8), st.sampled_from([2**31, 2**40, 2**62, 2**63 - 1, 2**64])),
    min_size=0,
    max_size=4,
)


def _valid_or_garbage(draw, valid, garbage_prob=0.5):
    return draw(garbage_arrays()) if draw(st.floats(0, 1)) < garbage_prob else valid


# What an error message may call each argument (the core's own words included).
_WORDS = {
    "layer_sizes": ("layer_sizes", "parameter count"),
    "theta": ("theta",),
    "X": ("X", "m must be"),
    "y": ("y",),
    "sample_weight": ("sample_weight", "sample weights"),
    "out": ("out",),
    "grad": ("grad",),
    "rows": ("rows",),
    "starts": ("starts",),
    "leaf_grads": ("leaf_grads",),
    "lam": ("lam",),
    "n_threads": ("n_threads",),
}


def _surely_invalid(arrays, ndims, dtype_of_theta):
    """The garbage arguments no call can accept, decided from the inputs alone:
    a wrong number of dimensions, or (theta) a dtype that is not native
    float32/float64, or (the others, with a valid float64 theta) a float dtype
    other than theta's."""
    bad = set()
    for name, a in arrays.items():
        if name not in ndims or a is None:
            continue
        if a.ndim != ndims[name]:
            bad.add(name)
        elif name == "theta" and a.dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            bad.add(name)
        elif name != "theta" and dtype_of_theta == np.float64 and a.dtype != np.float64 and \
                not (name in ("y", "rows", "starts") and a.dtype.kind in "iu"):
            bad.add(name)
    return bad


def _expect(call, garbage, surely_invalid, check, errors=(ValueError,)):
    """Run ``call()``. Valid inputs must succeed and ``check`` the result; an
    input no call accepts must raise. Otherwise either outcome is possible, and
    a success is checked, a refusal is one of ``errors`` whose message names a
    garbage argument, or the core's OverflowError for values too large."""
    try:
        result = call()
    except errors as e:
        assert garbage, f"valid inputs were refused: {e!r}"
        if isinstance(e, ValueError):
            words = [w for name in garbage for w in _WORDS[name]]
            if "layer_sizes" in garbage:  # a shape the sizes imply is reported on the array
                words += ["theta", "X", "y", "out", "grad", "leaf_grads"]
            assert any(w in str(e) for w in words), f"{e!r} names none of {sorted(garbage)}"
        return
    except OverflowError as e:  # the core's "non-finite pre-activation" for huge values
        assert garbage, f"valid inputs overflowed: {e!r}"
        assert "non-finite" in str(e)
        return
    assert not surely_invalid, f"accepted invalid {sorted(surely_invalid)}"
    check(result)


@SETTINGS
@given(st.data())
def test_garbage_never_crashes_the_functional_api(data):
    draw = data.draw
    good = dict(theta=bpnet.random_theta((3, 4, 2), 0), X=np.zeros((5, 3)),
                y=np.array([0, 1, 0, 1, 1]))
    sizes = draw(st.one_of(st.just((3, 4, 2)), layer_size_lists))
    args = {k: _valid_or_garbage(draw, v) for k, v in good.items()}
    w = draw(st.one_of(st.none(), garbage_arrays()))
    out = draw(st.one_of(st.none(), garbage_arrays()))
    lam = draw(st.one_of(st.floats(allow_nan=True), st.just(0.0)))
    fn = draw(st.sampled_from(["cost_grad", "forward", "predict"]))
    garbage = {k for k in good if args[k] is not good[k]}
    garbage |= {"sample_weight"} if w is not None else set()
    garbage |= {"out"} if out is not None else set()
    if tuple(sizes) != (3, 4, 2):
        garbage.add("layer_sizes")
    theta, X, y = args["theta"], args["X"], args["y"]
    m = X.shape[0] if X.ndim == 2 else 0
    ndims = {"theta": 1, "X": 2, "sample_weight": 1}
    if fn == "cost_grad":
        # a huge lam is valid but overflows the regularization term
        if not (np.isfinite(lam) and 0 <= lam < 1e300):
            garbage.add("lam")
        ndims["out"] = 1
        surely = _surely_invalid({k: args[k] for k in good if k in garbage} | (
            {"sample_weight": w, "out": out}), ndims, np.float64 if "theta" not in garbage
            else None)

        def check(r):
            J, g = r
            assert np.isfinite(J) and np.isfinite(g).all() and g.shape == theta.shape

        _expect(lambda: bpnet.cost_grad(theta, sizes, X, y, lam, sample_weight=w, out=out),
                garbage, surely, check)
    elif fn == "forward":
        garbage -= {"y", "sample_weight", "lam"}
        ndims["out"] = 2
        surely = _surely_invalid({k: a for k, a in (("theta", theta), ("X", X), ("out", out))
                                  if k in garbage}, ndims,
                                 np.float64 if "theta" not in garbage else None)

        def check(h):
            assert np.isfinite(h).all() and h.shape == (m, tuple(sizes)[-1])

        _expect(lambda: bpnet.forward(theta, sizes, X, out=out), garbage, surely, check)
    else:
        garbage -= {"y", "sample_weight", "out", "lam"}
        surely = _surely_invalid({k: a for k, a in (("theta", theta), ("X", X))
                                  if k in garbage}, ndims,
                                 np.float64 if "theta" not in garbage else None)

        def check(labels):
            assert labels.shape == (m,) and ((0 <= labels) & (labels < sizes[-1])).all()

        _expect(lambda: bpnet.predict(theta, sizes, X), garbage, surely, check)


def _raw_core_call(draw, fn, args, sizes, w, grad, rows, n_threads, ws):
    """The raw core's ``fn`` on the drawn arguments, and the names of the
    extra arguments it drew (partial_sums' starts and leaf_grads, finalize's
    grad)."""
    if fn == "cost_grad":
        return (lambda: core.cost_grad(args["theta"], sizes, args["X"], args["y"], 0.0,
                                       "sigmoid", "softmax", w, grad, rows, n_threads, ws)), {}
    if fn == "forward":
        return (lambda: core.forward(args["theta"], sizes, args["X"], "relu", "sigmoid", grad,
                                     rows, n_threads, ws)), {}
    if fn == "predict":
        return (lambda: core.predict(args["theta"], sizes, args["X"], "tanh", grad, rows,
                                     n_threads, ws)), {}
    if fn == "partial_sums":
        good_starts, good_chunk = np.array([0, 2, 5]), np.zeros((2, 26))
        starts = _valid_or_garbage(draw, good_starts)
        chunk = _valid_or_garbage(draw, good_chunk)
        extra = {"starts": starts is not good_starts, "leaf_grads": chunk is not good_chunk}
        return (lambda: core.partial_sums(args["theta"], sizes, args["X"], args["y"], "sigmoid",
                                          "sigmoid", w, starts, chunk, n_threads, ws)), extra
    good_grad = np.zeros(26)
    g = _valid_or_garbage(draw, good_grad)
    return (lambda: core.finalize(args["theta"], sizes, 0.0, 1.0, 1.0, g)), {
        "grad": g is not good_grad
    }


@SETTINGS
@given(st.data())
def test_garbage_never_crashes_the_raw_core(data):
    draw = data.draw
    sizes = draw(st.one_of(st.just([3, 4, 2]), layer_size_lists))
    good = dict(
        theta=bpnet.random_theta((3, 4, 2), 0), X=np.zeros((5, 3)), y=np.array([0, 1, 0, 1, 1])
    )
    args = {k: _valid_or_garbage(draw, v) for k, v in good.items()}
    w, grad, rows = (draw(st.one_of(st.none(), garbage_arrays())) for _ in range(3))
    n_threads = draw(st.sampled_from([-1, 1, 2, 0, -7, 5000]))
    fn = draw(st.sampled_from(["cost_grad", "forward", "predict", "partial_sums", "finalize"]))
    call, extra = _raw_core_call(draw, fn, args, sizes, w, grad, rows, n_threads,
                                 core.Workspace())
    uses = {  # the arguments each function reads
        "cost_grad": {"theta", "X", "y", "sample_weight", "grad", "rows", "n_threads"},
        "forward": {"theta", "X", "out", "rows", "n_threads"},
        "predict": {"theta", "X", "out", "rows", "n_threads"},
        "partial_sums": {"theta", "X", "y", "sample_weight", "n_threads"},
        "finalize": {"theta"},
    }[fn] | {k for k in extra}
    out_name = "out" if fn in ("forward", "predict") else "grad"
    garbage = {k for k in good if args[k] is not good[k]} | {k for k, v in extra.items() if v}
    garbage |= {n for n, v in (("sample_weight", w), (out_name, grad), ("rows", rows))
                if v is not None}
    if list(sizes) != [3, 4, 2]:
        garbage.add("layer_sizes")
    if n_threads in (0, -7, 5000):  # the core takes -1 or 1 .. 1024
        garbage.add("n_threads")
    garbage = {g for g in garbage if g in uses or g == "layer_sizes"}
    ndims = {"theta": 1, "X": 2, "sample_weight": 1, "rows": 1}
    arrays = {"theta": args["theta"], "X": args["X"], "sample_weight": w, "rows": rows}
    surely = _surely_invalid({k: a for k, a in arrays.items() if k in garbage}, ndims,
                             np.float64 if "theta" not in garbage else None)
    # pybind11 refuses an argument it cannot convert (a layer size beyond int64) as a TypeError
    _expect(call, garbage, surely, lambda result: None, errors=(ValueError, TypeError))


@SETTINGS
@given(st.data())
def test_garbage_never_crashes_network(data):
    draw = data.draw
    good_X = np.random.default_rng(0).standard_normal((8, 3))
    good_y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    X = _valid_or_garbage(draw, good_X, 0.7)
    y = _valid_or_garbage(draw, good_y, 0.7)
    w = draw(st.one_of(st.none(), garbage_arrays()))
    solver = draw(st.sampled_from(["lbfgs", "cg", "adam", "sgd"]))
    n = bpnet.Network((3, 4, 2), rng=0)
    before = n.theta.copy()
    try:
        n.fit(X, y, sample_weight=w, solver=solver, max_iter=2)
    except ValueError:
        assert X is not good_X or y is not good_y or w is not None, "valid inputs were refused"
        np.testing.assert_array_equal(n.theta, before)
    except FloatingPointError:
        assert np.isfinite(n.theta).all()
    else:
        assert np.isfinite(n.theta).all()

    def check(labels):
        assert labels.shape == (X.shape[0],) and np.isin(labels, [0, 1]).all()

    garbage = set() if X is good_X else {"X"}
    _expect(lambda: n.predict(X), garbage, _surely_invalid({"X": X}, {"X": 2}, None)
            if garbage else set(), check)


@pytest.mark.slow
@settings(parent=SETTINGS, max_examples=max(SETTINGS.max_examples, 1000))
@given(problems())
def test_cost_grad_matches_reference_long(p):
    """The slow job: at least a thousand reference comparisons whatever the profile."""
    test_cost_grad_matches_reference.hypothesis.inner_test(p)

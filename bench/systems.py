"""The systems bench/run.py times, each built on the same data and weights.

Every builder returns a zero-argument callable that computes one cost +
gradient (or trains one epoch / one fit) and returns ``(J, grad)`` where
that makes sense. Optional libraries (scikit-learn, PyTorch, JAX/optax) are
imported inside their builders, so a worker process timing one system
loads nothing else (the "alone" mode of bench/README.md).

Dimension letters: m examples, s_l units in layer l, K outputs, P parameters.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import numpy_ref

# full-batch cases: layer sizes and m (quick mode shrinks C's m)
FULL_CASES = {
    "A": ([400, 25, 10], 5000),
    "B": ([64, 25, 10], 1797),
    "C": ([784, 512, 256, 10], 10000),
}
QUICK_C_M = 2000
LAM = 1.0
DTYPES = ("float64", "float32")
# peers of bpnet in the full-batch cases, and the reference rows (not peers)
PEERS = ("numpy", "sklearn", "torch", "jax")
BPNET_ROWS = ("bpnet", "bpnet-core")
REFERENCES = ("openblas-gemm",)
FULL_SYSTEMS = BPNET_ROWS + PEERS + REFERENCES

# case D: one epoch of mini-batch Adam
D_SIZES, D_M, D_BATCH, D_LR, D_ALPHA = (784, 128, 10), 10000, 64, 1e-3, 1e-4
D_SYSTEMS = ("bpnet", "sklearn", "torch", "jax")
# case E: the digits to a held-out accuracy with L-BFGS
E_HIDDEN, E_ALPHA, E_TARGET = 25, 1.0, 0.97
E_ITERS = (10, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 400)
E_SYSTEMS = ("bpnet", "bpnet/blas1", "bpnet-network", "sklearn", "sklearn/blas1")


def flops_cost_grad(sizes, m):
    """2 x multiply-adds of one cost+grad: forward, weight gradients, deltas."""
    f = 0
    for l in range(len(sizes) - 1):
        f += 2 * m * sizes[l] * sizes[l + 1] * (3 if l else 2)
    return f


def random_theta(sizes, rng):
    """Uniform in +-sqrt(6 / (s_in + s_out)) per layer (the seed's init)."""
    parts = []
    for l in range(len(sizes) - 1):
        eps = np.sqrt(6.0 / (sizes[l] + sizes[l + 1]))
        parts.append(rng.uniform(-eps, eps, size=sizes[l + 1] * (sizes[l] + 1)))
    return np.concatenate(parts)


def make_data(sizes, m, seed=0):
    """X (m, s_0) in [0, 1), int labels y (m,), one-hot Y (m, K), theta (P,), float64."""
    rng = np.random.default_rng(seed)
    X = rng.random((m, sizes[0]))
    y = rng.integers(0, sizes[-1], m).astype(np.int64)
    Y = np.eye(sizes[-1])[y]
    return {"X": X, "y": y, "Y": Y, "theta": random_theta(sizes, rng)}


def cast(data, dtype):
    """The arrays of make_data in the working dtype (labels stay int64), C order."""
    out = {}
    for k, v in data.items():
        out[k] = v if k == "y" else np.ascontiguousarray(v, dtype=dtype)
    return out


def offsets(sizes):
    offs = [0]
    for l in range(len(sizes) - 1):
        offs.append(offs[-1] + sizes[l + 1] * (sizes[l] + 1))
    return offs


# ------------------------------------------------------------ full batch
def bpnet_public(d, sizes, lam, activation="sigmoid", output="sigmoid", n_threads=None):
    """``bpnet.cost_grad`` as the README shows it (input checks included)."""
    import bpnet

    theta, X, y = d["theta"], d["X"], d["y"]

    def f():
        return bpnet.cost_grad(theta, sizes, X, y, lam, activation=activation, output=output,
                               n_threads=n_threads)
    return f


def bpnet_core(d, sizes, lam, activation="sigmoid", output="sigmoid", n_threads=None,
               module=None):
    """The active compiled core's ``cost_grad`` (no Python checks), own workspace."""
    from bpnet import _native

    core = module or _native.core
    ws = core.Workspace()
    theta, X, y = d["theta"], d["X"], d["y"]
    grad = np.empty_like(theta)
    nt = -1 if n_threads is None else n_threads
    sizes = tuple(sizes)

    def f():
        return core.cost_grad(theta, sizes, X, y, lam, activation, output, None, grad, None,
                              nt, ws)
    f.workspace = ws
    return f


def numpy_system(d, sizes, lam, activation="sigmoid", output="sigmoid"):
    theta, X, Y = d["theta"], d["X"], d["Y"]

    def f():
        return numpy_ref.cost_grad(theta, sizes, X, Y, lam, activation, output)
    return f


def sklearn_system(d, sizes, lam, activation="sigmoid", output="sigmoid"):
    """MLPClassifier's own loss/gradient (``_loss_grad_lbfgs``) on bpnet's theta,
    returned in bpnet's theta layout (the repacking is outside the timed call
    only in the sense that it is a view-free copy of P numbers: it is timed)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    theta, X, y, Y = d["theta"], d["X"], d["y"], d["Y"]
    act = {"sigmoid": "logistic", "tanh": "tanh", "relu": "relu"}[activation]
    clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), activation=act, alpha=lam,
                        solver="lbfgs", max_iter=1, random_state=0)
    n0 = min(len(y), 200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # one-hot targets -> logistic outputs (multi-label); labels -> softmax
        clf.fit(X[:n0], Y[:n0] if output == "sigmoid" else y[:n0])
    want = "logistic" if output == "sigmoid" else "softmax"
    if clf.out_activation_ != want or clf.n_outputs_ != sizes[-1]:
        raise RuntimeError(f"sklearn set up {clf.out_activation_} with {clf.n_outputs_} outputs, "
                           f"expected {want} with {sizes[-1]} (a label is missing from X[:{n0}])")
    thetas = numpy_ref.roll(theta, sizes)
    clf.coefs_ = [np.ascontiguousarray(T[:, 1:].T) for T in thetas]
    clf.intercepts_ = [T[:, 0].copy() for T in thetas]
    packed = np.hstack([c.ravel() for c in clf.coefs_ + clf.intercepts_])
    n = len(sizes)
    acts = [X] + [None] * (n - 1)
    deltas = [None] * (n - 1)
    cg = [np.empty((sizes[i], sizes[i + 1]), dtype=X.dtype) for i in range(n - 1)]
    ig = [np.empty(sizes[i + 1], dtype=X.dtype) for i in range(n - 1)]

    def f():
        return clf._loss_grad_lbfgs(packed, X, Y, None, acts, deltas, cg, ig)

    def to_theta(g):  # scikit-learn's packing -> bpnet's theta layout
        out, o, ws = [], 0, []
        for i in range(n - 1):
            ws.append(g[o : o + sizes[i] * sizes[i + 1]].reshape(sizes[i], sizes[i + 1]).T)
            o += sizes[i] * sizes[i + 1]
        for i in range(n - 1):
            b = g[o : o + sizes[i + 1]]
            o += sizes[i + 1]
            out.append(np.column_stack([b, ws[i]]))
        return np.concatenate([t.ravel() for t in out])
    f.to_theta = to_theta
    return f


def torch_loss(params, sizes, xb, yb, lam, activation, output):
    """J of one batch for torch tensors: params = [W0, b0, W1, b1, ...]."""
    import torch
    import torch.nn.functional as F

    act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[activation]
    a, reg, n = xb, 0.0, xb.shape[0]
    L = len(sizes) - 1
    for l in range(L):
        W, b = params[2 * l], params[2 * l + 1]
        z = F.linear(a, W, b)
        reg = reg + (W * W).sum()
        a = act(z) if l < L - 1 else z
    if output == "sigmoid":
        J = F.binary_cross_entropy_with_logits(a, yb, reduction="sum") / n
    else:
        J = F.cross_entropy(a, yb, reduction="sum") / n  # yb: int64 labels
    return J + lam / (2 * n) * reg


def torch_system(d, sizes, lam, activation="sigmoid", output="sigmoid"):
    """Autograd through the whole flat theta (a gradient in bpnet's layout)."""
    import torch

    theta = d["theta"]
    th = torch.from_numpy(theta.copy()).requires_grad_(True)
    Xt = torch.from_numpy(d["X"])
    Yt = torch.from_numpy(d["Y"]) if output == "sigmoid" else torch.from_numpy(d["y"])
    offs = offsets(sizes)

    def f():
        th.grad = None
        params = []
        for l in range(len(sizes) - 1):
            T = th[offs[l] : offs[l + 1]].view(sizes[l + 1], sizes[l] + 1)
            params += [T[:, 1:], T[:, 0]]
        J = torch_loss(params, sizes, Xt, Yt, lam, activation, output)
        J.backward()
        return float(J.detach()), th.grad
    return f


def jax_setup():
    """Import JAX with float64 enabled (float32 arrays stay float32)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def jax_loss_flat(sizes, lam, activation, output):
    """J(theta, X, Y) for a flat theta in bpnet's layout, Y one-hot (m, K)."""
    jax = jax_setup()
    jnp = jax.numpy
    act = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}[activation]
    offs = offsets(sizes)
    L = len(sizes) - 1

    def cost(theta, X, Y):
        a, reg, m = X, 0.0, X.shape[0]
        for l in range(L):
            T = theta[offs[l] : offs[l + 1]].reshape(sizes[l + 1], sizes[l] + 1)
            z = a @ T[:, 1:].T + T[:, 0]
            reg = reg + jnp.sum(T[:, 1:] ** 2)
            a = act(z) if l < L - 1 else z
        if output == "sigmoid":
            J = jnp.sum(jax.nn.softplus(a) - Y * a) / m
        else:
            J = -jnp.sum(Y * jax.nn.log_softmax(a, axis=1)) / m
        return J + lam / (2 * m) * reg
    return cost


def jax_system(d, sizes, lam, activation="sigmoid", output="sigmoid"):
    """``jax.jit(jax.value_and_grad(cost))``; the first (warm-up) call compiles."""
    jax = jax_setup()
    f_jit = jax.jit(jax.value_and_grad(jax_loss_flat(sizes, lam, activation, output)))
    th, X, Y = (jax.device_put(d[k]) for k in ("theta", "X", "Y"))

    def f():
        J, g = f_jit(th, X, Y)
        g.block_until_ready()
        return J, g
    return f


def gemm_operands(sizes, X, empty=None, convert=None):
    """The operands of one fused pass's products for X (m, s_0): weights W^(l)
    (s_{l+1}, s_l) drawn with seed 1 in X's dtype, activations A (A[0] = X),
    hidden deltas D and weight gradients G. ``empty(shape)`` makes a buffer
    (default ``np.empty`` in X's dtype); ``convert`` turns the NumPy weights and
    X into another library's arrays (default: as they are)."""
    m, dt, L = X.shape[0], X.dtype, len(sizes) - 1
    empty = empty or (lambda shape: np.empty(shape, dtype=dt))
    convert = convert or (lambda a: a)
    rng = np.random.default_rng(1)
    W = [convert(np.ascontiguousarray((rng.random((sizes[l + 1], sizes[l])) - 0.5) * 0.2,
                                      dtype=dt)) for l in range(L)]
    A = [convert(X)] + [empty((m, sizes[l + 1])) for l in range(L)]
    D = [None] + [empty((m, sizes[l])) for l in range(1, L + 1)]
    G = [empty((sizes[l + 1], sizes[l])) for l in range(L)]
    return W, A, D, G


def gemm_pass(W, A, D, G, matmul):
    """The products of one fused pass into preallocated arrays, through
    ``matmul(a, b, out)``: forward ``Z = A W^T`` per layer, gradient ``G = D^T A``
    per layer and ``D W`` for the hidden deltas (no activation, bias, loss or
    reduction; the output "delta" is the last activation). Returns G."""
    L = len(W)
    for l in range(L):  # forward
        matmul(A[l], W[l].T, A[l + 1])
    Dn = A[L]
    for l in range(L - 1, -1, -1):  # backward
        matmul(Dn.T, A[l], G[l])
        if l:
            matmul(Dn, W[l], D[l])
            Dn = D[l]
    return G


def openblas_gemm(d, sizes, lam=None, activation=None, output=None):
    """Only the matrix products of one fused pass (``gemm_pass``), through NumPy
    (OpenBLAS), on preallocated arrays with ``out=``. Returns None (a reference
    row)."""
    W, A, D, G = gemm_operands(sizes, d["X"])

    def f():
        gemm_pass(W, A, D, G, lambda a, b, out: np.matmul(a, b, out=out))
        return None
    return f


BUILDERS = {
    "bpnet": bpnet_public, "bpnet-core": bpnet_core, "numpy": numpy_system,
    "sklearn": sklearn_system, "torch": torch_system, "jax": jax_system,
    "openblas-gemm": openblas_gemm,
}


def as_theta_grad(system, fn, g):
    """A system's gradient as a float64 NumPy array in bpnet's theta layout."""
    if hasattr(g, "detach"):
        g = g.detach().numpy()
    g = np.asarray(g, dtype=np.float64)
    if system == "sklearn":
        g = fn.to_theta(g)
    return g


def check_tolerance(dtype):
    """Relative (J, ||grad||) differences allowed against bpnet."""
    return (1e-10, 1e-8) if dtype == "float64" else (1e-4, 1e-3)


def check_systems(fns, dtype):
    """Relative differences of J and ||grad|| of every system from bpnet's core;
    SystemExit if one disagrees."""
    ref = fns.get("bpnet-core") or fns["bpnet"]
    Jb, gb = ref()
    gb = np.asarray(gb, dtype=np.float64).copy()
    out = {}
    tJ, tg = check_tolerance(dtype)
    for k, f in fns.items():
        r = f()
        if r is None:  # a reference row (GEMMs only)
            continue
        J, g = r
        g = as_theta_grad(k, f, g)
        dJ = abs(float(J) - Jb) / abs(Jb)
        dg = float(np.linalg.norm(g - gb) / np.linalg.norm(gb))
        out[k] = [dJ, dg]
        if not (dJ <= tJ and dg <= tg):
            raise SystemExit(f"{k} {dtype} disagrees with bpnet: J {float(J)!r} vs {Jb!r} "
                             f"(relative {dJ:.1e} > {tJ:g}?), grad relative {dg:.1e} (> {tg:g}?)")
    return out


def check_files(tmp, case, names, dtypes, ref="bpnet-core"):
    """Compare the alone workers' (J, grad) with `ref`'s (bpnet's core), from their files."""
    out = {}
    for d in dtypes:
        z0 = np.load(Path(tmp) / f"{case}-{ref}-{d}.npz")
        Jb, gb = float(z0["J"]), z0["grad"]
        tJ, tg = check_tolerance(d)
        out[d] = {}
        for k in names:
            p = Path(tmp) / f"{case}-{k}-{d}.npz"
            if not p.exists():
                continue
            z = np.load(p)
            dJ = abs(float(z["J"]) - Jb) / abs(Jb)
            dg = float(np.linalg.norm(z["grad"] - gb) / np.linalg.norm(gb))
            out[d][k] = [dJ, dg]
            if not (dJ <= tJ and dg <= tg):
                raise SystemExit(f"case {case} {d}: {k} disagrees with bpnet (J {dJ:.1e}, "
                                 f"grad {dg:.1e})")
    return out


# ------------------------------------------------------------ case D: Adam epoch
def d_data(dtype, seed=1):
    d = cast(make_data(list(D_SIZES), D_M, seed), dtype)
    return d


def d_epoch(system, dtype, activation="relu"):
    """A zero-argument callable that trains one epoch from a fresh model
    (``activation``: bpnet's hidden units, for the activation matrix)."""
    d = d_data(dtype)
    X, y, Y = d["X"], d["y"], d["Y"]
    if system == "bpnet":
        import bpnet

        def f():
            clf = bpnet.BPNetClassifier(
                hidden_layer_sizes=D_SIZES[1], activation=activation, solver="adam",
                alpha=D_ALPHA, batch_size=D_BATCH, learning_rate_init=D_LR, max_iter=1, tol=0,
                random_state=0, dtype=dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(X, y)
            return clf
        return f
    if system == "sklearn":
        from sklearn.neural_network import MLPClassifier

        def f():
            clf = MLPClassifier(hidden_layer_sizes=(D_SIZES[1],), activation="relu",
                                solver="adam", alpha=D_ALPHA, batch_size=D_BATCH,
                                learning_rate_init=D_LR, max_iter=1, tol=0, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(X, y)
            return clf
        return f
    if system == "torch":
        import torch

        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        sizes = list(D_SIZES)

        def f():
            torch.manual_seed(0)
            layers = [torch.nn.Linear(sizes[l], sizes[l + 1]).to(Xt.dtype)
                      for l in range(len(sizes) - 1)]
            params = [p for lay in layers for p in (lay.weight, lay.bias)]
            opt = torch.optim.Adam(params, lr=D_LR)
            perm = torch.randperm(D_M, generator=torch.Generator().manual_seed(0))
            for s in range(0, D_M, D_BATCH):
                idx = perm[s : s + D_BATCH]
                opt.zero_grad()
                loss = torch_loss(params, sizes, Xt[idx], yt[idx], D_ALPHA, "relu", "softmax")
                loss.backward()
                opt.step()
            return params
        return f
    if system == "jax":
        jax = jax_setup()
        import optax

        jnp = jax.numpy
        sizes = list(D_SIZES)
        loss = jax_loss_layers(sizes, D_ALPHA, "relu", "softmax")
        opt = optax.adam(D_LR)

        @jax.jit
        def step(params, state, X, Y, idx):  # the batch gather is inside the compiled step
            J, g = jax.value_and_grad(loss)(params, X[idx], Y[idx])
            updates, state = opt.update(g, state, params)
            return optax.apply_updates(params, updates), state, J

        Xj, Yj = jax.device_put(X), jax.device_put(Y)

        def f():
            key = jax.random.PRNGKey(0)
            params = []
            for l in range(len(sizes) - 1):
                key, k = jax.random.split(key)
                eps = np.sqrt(6.0 / (sizes[l] + sizes[l + 1]))
                params += [jax.random.uniform(k, (sizes[l + 1], sizes[l]), jnp.dtype(dtype),
                                              -eps, eps), jnp.zeros(sizes[l + 1], dtype)]
            state = opt.init(params)
            perm = np.random.default_rng(0).permutation(D_M)  # NumPy slices go in as arguments
            for s in range(0, D_M, D_BATCH):
                params, state, _ = step(params, state, Xj, Yj, perm[s : s + D_BATCH])
            jax.block_until_ready(params)
            return params
        return f
    raise ValueError(f"case D has no system {system!r}")


def jax_loss_layers(sizes, lam, activation, output):
    """J(params, X, Y) with params = [W0, b0, W1, b1, ...], Y one-hot."""
    jax = jax_setup()
    jnp = jax.numpy
    act = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}[activation]
    L = len(sizes) - 1

    def cost(params, X, Y):
        a, reg, n = X, 0.0, X.shape[0]
        for l in range(L):
            W, b = params[2 * l], params[2 * l + 1]
            z = a @ W.T + b
            reg = reg + jnp.sum(W * W)
            a = act(z) if l < L - 1 else z
        if output == "sigmoid":
            J = jnp.sum(jax.nn.softplus(a) - Y * a) / n
        else:
            J = -jnp.sum(Y * jax.nn.log_softmax(a, axis=1)) / n
        return J + lam / (2 * n) * reg
    return cost


def d_check_fns(dtype):
    """Per D system, (J, grad in bpnet's layout) of its loss on one batch of 64
    rows at the same theta: proof that the epoch loops optimize the same cost."""
    d = cast(make_data(list(D_SIZES), D_BATCH, seed=2), dtype)
    sizes = list(D_SIZES)
    fns = {"bpnet": bpnet_core(d, sizes, D_ALPHA, "relu", "softmax"),
           "sklearn": sklearn_system(d, sizes, D_ALPHA, "relu", "softmax")}
    offs = offsets(sizes)

    def layers(theta):
        out = []
        for l in range(len(sizes) - 1):
            T = theta[offs[l] : offs[l + 1]].reshape(sizes[l + 1], sizes[l] + 1)
            out += [T[:, 1:], T[:, 0]]
        return out

    def torch_check():
        import torch

        ps = [torch.from_numpy(np.ascontiguousarray(p)).requires_grad_(True)
              for p in layers(d["theta"])]
        J = torch_loss(ps, sizes, torch.from_numpy(d["X"]), torch.from_numpy(d["y"]), D_ALPHA,
                       "relu", "softmax")
        J.backward()
        return float(J.detach()), _layers_to_theta([p.grad.numpy() for p in ps])

    def jax_check():
        jax = jax_setup()
        ps = [jax.numpy.asarray(np.ascontiguousarray(p)) for p in layers(d["theta"])]
        J, g = jax.value_and_grad(jax_loss_layers(sizes, D_ALPHA, "relu", "softmax"))(
            ps, d["X"], d["Y"])
        return float(J), _layers_to_theta([np.asarray(x) for x in g])

    fns["torch"], fns["jax"] = torch_check, jax_check
    return fns


def _layers_to_theta(ps):
    parts = []
    for l in range(0, len(ps), 2):
        parts.append(np.column_stack([ps[l + 1], ps[l]]).ravel())
    return np.concatenate(parts)


# ------------------------------------------------------------ case E: digits L-BFGS
def e_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def e_fit(system, k, data, random_state=0):
    """Fit `system` with max_iter=k on the digits' training split, its initial
    weights drawn from `random_state`: the timed work (the whole ``fit``, input
    validation included). Returns the fitted model. A ``/blas1`` suffix enters
    ``threadpool_limits`` around this fit (about 2 ms of its time); case E's
    timing enters it once per process instead (``run.worker_e``)."""
    from threadpoolctl import threadpool_limits

    Xtr, _, ytr, _ = data
    name, _, blas = system.partition("/")
    if blas:
        with threadpool_limits(1, user_api="blas"):
            return e_fit(name, k, data, random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at small max_iter
        if name == "bpnet":
            import bpnet

            clf = bpnet.BPNetClassifier(hidden_layer_sizes=E_HIDDEN, activation="sigmoid",
                                        solver="lbfgs", alpha=E_ALPHA, max_iter=k, tol=1e-12,
                                        random_state=random_state)
            return clf.fit(Xtr, ytr)
        if name == "bpnet-network":
            import bpnet

            net = bpnet.Network([64, E_HIDDEN, 10], lam=E_ALPHA, rng=random_state,
                                output="softmax")
            return net.fit(Xtr, ytr, solver="lbfgs", max_iter=k, tol=1e-12)
        if name == "sklearn":
            from sklearn.neural_network import MLPClassifier

            clf = MLPClassifier(hidden_layer_sizes=(E_HIDDEN,), activation="logistic",
                                solver="lbfgs", alpha=E_ALPHA, max_iter=k, tol=1e-12,
                                random_state=random_state)
            return clf.fit(Xtr, ytr)
    raise ValueError(f"case E has no system {system!r}")


def e_score(model, data):
    """Held-out accuracy of a model from e_fit."""
    _, Xte, _, yte = data
    return float((model.predict(Xte) == yte).mean())


def e_first_k(system, data, grid=E_ITERS, random_state=0):
    """The first max_iter of `grid` whose e_fit reaches E_TARGET, or None."""
    for k in grid:
        if e_score(e_fit(system, k, data, random_state), data) >= E_TARGET:
            return k
    return None

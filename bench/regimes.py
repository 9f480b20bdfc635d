"""The regimes of issue 18 (bench/README.md): case N (SimpleChains.jl's narrow
net, full-batch Adam epochs), the activation matrix (ACT), case E right after
another library's fit, and the regime map (MAP). bench/run.py runs them.

Each ``worker_*`` runs in a fresh process (``run.py --worker``) and returns
JSON; each ``*_case`` runs from the parent, spawns the workers and prints.
Dimension letters: m examples, h hidden units, P parameters.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import systems as S
from timing import measure, median_of_rounds, ms, rounds, spawn, summary

# case N: SimpleChains.jl's headline net, full-batch Adam through Network.fit
N_SIZES, N_M, N_ACT, N_LR = (4, 32, 16, 4), 10_000, "tanh", 1e-3
N_SYSTEMS = ("bpnet", "torch", "jax")
N_CHECK_EPOCHS = 5
# the check: the displacement theta_k - theta_0 of a peer vs bpnet's, relative,
# with epsilon 1e-30: the Adam formulas differ only in where epsilon sits
# (bpnet's lr_t m / (sqrt(v) + eps) is Kingma and Ba's eps-hat form; PyTorch's
# and optax's add eps to sqrt(v_hat)), so a vanishing eps makes them one
N_CHECK_EPS = 1e-30
N_TOLERANCE = {"float64": 1e-9, "float32": 1e-3}
# the activation matrix: bpnet's hidden units on case A (cost+grad) and D (Adam epoch)
ACTIVATIONS = ("sigmoid", "tanh", "relu")
# the regime map: [MAP_IN, h, MAP_K] sigmoid, one public cost+gradient, h x m cells
MAP_IN, MAP_K = 64, 10
MAP_WIDTHS = (4, 16, 64, 256, 1024)
MAP_ROWS = (1_000, 10_000, 100_000)  # --quick: the first two
MAP_SYSTEMS = ("bpnet", *S.PEERS)


# ------------------------------------------------------------ case N: systems
def n_data(dtype):
    """X (m, 4) in [0, 1), labels y (m,) of 4 classes, one-hot Y, theta0 (P,)."""
    return S.cast(S.make_data(list(N_SIZES), N_M, seed=5), dtype)


def _layers(theta, sizes):
    """[W0, b0, W1, b1, ...] views of a flat theta in bpnet's layout."""
    out, offs = [], S.offsets(sizes)
    for l in range(len(sizes) - 1):
        T = theta[offs[l] : offs[l + 1]].reshape(sizes[l + 1], sizes[l] + 1)
        out += [T[:, 1:], T[:, 0]]
    return out


def n_runner(system, d, epochs, n_threads=None, eps=1e-8):
    """A callable that trains `epochs` full-batch Adam epochs (lr N_LR, betas 0.9,
    0.999, epsilon `eps`, softmax cross-entropy, no penalty) from d["theta"] and
    returns the final theta in bpnet's layout (float64)."""
    X, y, Y, theta = d["X"], d["y"], d["Y"], d["theta"]
    sizes, m = list(N_SIZES), X.shape[0]
    if system == "bpnet":
        import bpnet

        def f():
            net = bpnet.Network(sizes, activation=N_ACT, output="softmax", dtype=X.dtype,
                                theta=theta, n_threads=n_threads)
            net.fit(X, y, solver="adam", max_iter=epochs, batch_size=m, learning_rate=N_LR,
                    beta_1=0.9, beta_2=0.999, epsilon=eps, tol=0.0, shuffle=False)
            return np.asarray(net.theta, dtype=np.float64)
        return f
    if system == "torch":
        return _n_torch(X, y, theta, sizes, epochs, n_threads, eps)
    if system == "jax":
        return _n_jax(X, Y, theta, sizes, epochs, eps)
    raise ValueError(f"case N has no system {system!r}")


def _n_torch(X, y, theta, sizes, epochs, n_threads, eps):
    """A plain PyTorch loop: nn.Sequential of Linear and Tanh, F.cross_entropy
    (mean), torch.optim.Adam; bpnet's thread count (torch.set_num_threads)."""
    import torch
    import torch.nn.functional as F

    if n_threads:
        torch.set_num_threads(n_threads)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    init = [torch.from_numpy(np.ascontiguousarray(p)) for p in _layers(theta, sizes)]
    L = len(sizes) - 1

    def f():
        mods = []
        for l in range(L):
            lin = torch.nn.Linear(sizes[l], sizes[l + 1], dtype=Xt.dtype)
            with torch.no_grad():
                lin.weight.copy_(init[2 * l])
                lin.bias.copy_(init[2 * l + 1])
            mods += [lin] + ([torch.nn.Tanh()] if l < L - 1 else [])
        model = torch.nn.Sequential(*mods)
        opt = torch.optim.Adam(model.parameters(), lr=N_LR, betas=(0.9, 0.999), eps=eps)
        for _ in range(epochs):
            opt.zero_grad()
            loss = F.cross_entropy(model(Xt), yt)
            loss.backward()
            opt.step()
        ps = [p.detach().numpy() for lay in model if hasattr(lay, "weight")
              for p in (lay.weight, lay.bias)]
        return S._layers_to_theta(ps).astype(np.float64)
    return f


@functools.cache
def _jax_step(sizes, eps):
    """The jitted JAX/optax step of case N (one per net and epsilon in a process, so
    a new runner reuses its compilations) and its optimizer."""
    jax = S.jax_setup()
    import optax

    jnp = jax.numpy
    L = len(sizes) - 1
    opt = optax.adam(N_LR, b1=0.9, b2=0.999, eps=eps)

    def cost(params, X, Y):
        a = X
        for l in range(L):
            z = a @ params[2 * l].T + params[2 * l + 1]
            a = jnp.tanh(z) if l < L - 1 else z
        return -jnp.sum(Y * jax.nn.log_softmax(a, axis=1)) / X.shape[0]

    @jax.jit
    def step(params, state, X, Y):
        J, g = jax.value_and_grad(cost)(params, X, Y)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, J
    return step, opt


def _n_jax(X, Y, theta, sizes, epochs, eps):
    """A jitted JAX step (``value_and_grad`` + ``optax.adam``), one call per
    epoch from Python; the warm-up call compiles."""
    jax = S.jax_setup()
    step, opt = _jax_step(tuple(sizes), eps)
    Xj, Yj = jax.device_put(X), jax.device_put(Y)
    init = [np.ascontiguousarray(p) for p in _layers(theta, sizes)]

    def f():
        params = [jax.numpy.asarray(p) for p in init]
        state = opt.init(params)
        for _ in range(epochs):
            params, state, _ = step(params, state, Xj, Yj)
        jax.block_until_ready(params)
        return S._layers_to_theta([np.asarray(p) for p in params]).astype(np.float64)
    return f


def n_check(d, dtype, systems=N_SYSTEMS, n_threads=None):
    """Relative difference of each system's displacement theta_k - theta_0 after
    N_CHECK_EPOCHS epochs (epsilon N_CHECK_EPS) from bpnet's; SystemExit beyond
    N_TOLERANCE."""
    runners = {k: n_runner(k, d, N_CHECK_EPOCHS, n_threads, N_CHECK_EPS) for k in systems}
    theta0 = d["theta"]
    t0 = np.asarray(theta0, dtype=np.float64)
    ref = runners["bpnet"]() - t0
    out = {}
    for k, f in runners.items():
        if k == "bpnet":
            continue
        r = float(np.linalg.norm(f() - t0 - ref) / np.linalg.norm(ref))
        out[k] = r
        if not r <= N_TOLERANCE[dtype]:
            raise SystemExit(f"case N {dtype}: {k}'s Adam epochs disagree with bpnet's "
                             f"(relative {r:.1e} > {N_TOLERANCE[dtype]:g})")
    return out


# ------------------------------------------------------------ workers
def worker_n(spec):
    """Case N alone: one system, both dtypes; per-epoch seconds of fits of
    spec["epochs"] epochs (the fit's wall time / epochs, nothing subtracted)."""
    out = {}
    for dtype in spec["dtypes"]:
        f = n_runner(spec["system"], n_data(dtype), spec["epochs"], spec.get("n_threads"))
        s = summary(measure(f, spec["budget"], spec["min_calls"]))
        s["median_s"] /= spec["epochs"]
        out[dtype] = s
    return out


def worker_n_mixed(spec):
    """Case N mixed: every system in this process, fit by fit in a fresh order each
    round; checked first (N_CHECK_EPOCHS epochs from the same theta0)."""
    out = {}
    rng = np.random.default_rng(0)
    for dtype in spec["dtypes"]:
        d = n_data(dtype)
        checks = n_check(d, dtype, spec["systems"], spec.get("n_threads"))
        fns = {k: n_runner(k, d, spec["epochs"], spec.get("n_threads"))
               for k in spec["systems"]}
        samples = interleave(fns, spec["min_calls"], spec["budget"], rng)
        out[dtype] = {k: {**summary([t / spec["epochs"] for t in v]), "check": checks.get(k)}
                      for k, v in samples.items()}
    return out


def interleave(fns, min_rounds, budget, rng):
    """Seconds per call of every fn, called round-robin in a new order each round
    after one warm-up call each, for at least `min_rounds` rounds and until every
    fn has had about `budget` seconds."""
    import time

    for f in fns.values():
        f()
    samples = {k: [] for k in fns}
    t_end = time.perf_counter() + budget * len(fns)
    i = 0
    while i < min_rounds or time.perf_counter() < t_end:
        for k in map(str, rng.permutation(list(fns))):
            t0 = time.perf_counter()
            fns[k]()
            samples[k].append(time.perf_counter() - t0)
        i += 1
    return samples


def worker_act(spec):
    """The activation matrix: bpnet with each hidden activation on case A (public
    cost_grad and the core) or D (an Adam epoch of BPNetClassifier), interleaved
    in this one process."""
    rng = np.random.default_rng(0)
    out = {}
    for dtype in spec["dtypes"]:
        if spec["case"] == "A":
            sizes, m = spec.get("net") or S.FULL_CASES["A"]  # net: the tests' tiny one
            d = S.cast(S.make_data(sizes, m), dtype)
            fns = {}
            for a in ACTIVATIONS:
                fns[a] = S.bpnet_public(d, sizes, S.LAM, activation=a)
                fns[a + "/core"] = S.bpnet_core(d, sizes, S.LAM, activation=a)
        else:
            fns = {a: S.d_epoch("bpnet", dtype, a) for a in ACTIVATIONS}
        samples = interleave(fns, spec["min_calls"], spec["budget"], rng)
        out[dtype] = {k: summary(v) for k, v in samples.items()}
    return out


def map_sizes(h):
    return [MAP_IN, h, MAP_K]


def worker_map(spec):
    """The regime map for one system (alone): every cell (h, m) and dtype, one
    public cost+gradient per call; the first call's (J, grad) go to check_dir."""
    out = {}
    for h, m in spec["cells"]:
        sizes = map_sizes(h)
        base = S.make_data(sizes, m, seed=7)
        for dtype in spec["dtypes"]:
            d = S.cast(base, dtype)
            fn = S.BUILDERS[spec["system"]](d, sizes, S.LAM)
            r = fn()
            if spec.get("check_dir"):
                g = S.as_theta_grad(spec["system"], fn, r[1])
                np.savez(Path(spec["check_dir"]) / f"MAP{h}x{m}-{spec['system']}-{dtype}.npz",
                         J=np.float64(float(r[0])), grad=g)
            out[f"{h}x{m}/{dtype}"] = summary(measure(fn, spec["budget"], spec["min_calls"],
                                                      warm=False))  # the check call warmed
            del d, fn, r
    return out


def worker_e_after(spec):
    """Case E's fit right after another library's work in the same process:
    MLPClassifier.fit then BPNetClassifier.fit, then a NumPy (OpenBLAS) matrix
    product then BPNetClassifier.fit, `fits` times; each fit timed."""
    import time

    data = S.e_data()
    kb, ks = spec["k_bpnet"], spec["k_sklearn"]
    A = np.random.default_rng(0).random((512, 512))
    t = {"sklearn": [], "after-sklearn": [], "after-numpy": []}
    S.e_fit("bpnet", kb, data)  # warm
    for _ in range(spec["fits"]):
        t0 = time.perf_counter()
        S.e_fit("sklearn", ks, data)
        t1 = time.perf_counter()
        S.e_fit("bpnet", kb, data)
        t2 = time.perf_counter()
        t["sklearn"].append(t1 - t0)
        t["after-sklearn"].append(t2 - t1)
        A @ A
        t0 = time.perf_counter()
        S.e_fit("bpnet", kb, data)
        t["after-numpy"].append(time.perf_counter() - t0)
    return {k: summary(v) for k, v in t.items()}


WORKERS = {"n": worker_n, "n-mixed": worker_n_mixed, "act": worker_act, "map": worker_map,
           "e-after": worker_e_after}


# ------------------------------------------------------------ phases (the parent)
def n_case(out, dtypes, modes, st, say, avail, n_threads):
    """Case N alone (a process per system, rounds rotated) and mixed (one process)."""
    names = [k for k in N_SYSTEMS if avail.get(k, True)]
    E = st["n_epochs"]
    say(f"\n== N: SimpleChains.jl's narrow net {list(N_SIZES)} {N_ACT}, softmax output, "
        f"m={N_M}, full-batch Adam (lr {N_LR}); per-epoch time of fits of {E} epochs "
        f"(fit time / {E}, nothing subtracted): bpnet.Network.fit(solver='adam', "
        f"batch_size=m, shuffle=False), a plain PyTorch loop (torch.set_num_threads({n_threads})), "
        "a jitted JAX/optax step")
    res = {"checks": {}}
    for d in dtypes:  # the same Adam trajectory first, in this process
        res["checks"][d] = n_check(n_data(d), d, names, n_threads)
        say(f"  check {d}: theta after {N_CHECK_EPOCHS} epochs (eps {N_CHECK_EPS:g}), relative "
            "difference of the displacement from bpnet's: " + ", ".join(
                f"{k} {v:.0e}" for k, v in res["checks"][d].items()))
    if "alone" in modes:
        per = {k: [] for k in names}
        for r in range(st["aux_rounds"]):
            for k in names[r % len(names):] + names[: r % len(names)]:
                per[k].append(spawn({"kind": "n", "system": k, "dtypes": dtypes, "epochs": E,
                                     "budget": st["budget"], "min_calls": st["n_min_fits"],
                                     "n_threads": n_threads}))
        res["alone"] = {d: {k: median_of_rounds([x[d] for x in per[k]]) for k in names}
                        for d in dtypes}
    if "mixed" in modes:
        res["mixed"] = spawn({"kind": "n-mixed", "systems": names, "dtypes": dtypes,
                              "epochs": E, "budget": st["mixed_budget"],
                              "min_calls": st["n_min_fits"], "n_threads": n_threads})
    say(f"  {'mode':<7}{'system':<16}{'ms/epoch':>10}{'spread':>8}{'bpnet x faster':>16}"
        f"{'fits':>6}")
    for mode in ("alone", "mixed"):
        for d in dtypes:
            e = res.get(mode, {}).get(d)
            if not e:
                continue
            tb = e["bpnet"]["median_s"]
            for k in names:
                e[k]["bpnet_speedup"] = e[k]["median_s"] / tb
                say(f"  {mode:<7}{k + '/' + d:<16}{ms(e[k]['median_s']):>10}"
                    f"{e[k]['spread']:>8.0%}{e[k]['bpnet_speedup']:>16.2f}"
                    f"{e[k].get('calls', e[k]['n']):>6}")
    out["N"] = res


def act_case(out, dtypes, st, say):
    """The activation matrix: A (cost+grad) and D (Adam epoch), each activation
    interleaved in one fresh process per case; time relative to relu's."""
    say("\n== ACT: bpnet's hidden activations on the same net, interleaved in one fresh "
        "process per case; time / relu's time (A: public bpnet.cost_grad, core in "
        "brackets; D: an Adam epoch of BPNetClassifier)")
    res = {}
    for case in ("A", "D"):
        res[case] = spawn({"kind": "act", "case": case, "dtypes": dtypes,
                           "budget": st["budget"] if case == "A" else 0.0,
                           "min_calls": st["min_calls"] if case == "A"
                           else max(2, st["d_epochs"])})
        for d in dtypes:
            e = res[case][d]
            for a in ACTIVATIONS:
                e[a]["vs_relu"] = e[a]["median_s"] / e["relu"]["median_s"]
                if f"{a}/core" in e:
                    e[f"{a}/core"]["vs_relu"] = e[f"{a}/core"]["median_s"] / \
                        e["relu/core"]["median_s"]
            say(f"  {case}/{d}: " + ", ".join(
                f"{a} {ms(e[a]['median_s'])} ms {e[a]['vs_relu']:.2f}x"
                + (f" (core {ms(e[a + '/core']['median_s'])} ms {e[a + '/core']['vs_relu']:.2f}x)"
                   if a + "/core" in e else "") for a in ACTIVATIONS))
    out["ACT"] = res


def e_after_case(out, st, say):
    """Case E (b): BPNetClassifier.fit right after MLPClassifier.fit (and after a
    NumPy product) in one process, against (a) its fit alone."""
    E = out.get("E", {})
    if "bpnet" not in E or "sklearn" not in E:
        return
    r = spawn({"kind": "e-after", "k_bpnet": E["bpnet"]["k"], "k_sklearn": E["sklearn"]["k"],
               "fits": st["e_fits"]})
    a = E["bpnet"]["median_s"]
    for k in ("after-sklearn", "after-numpy"):
        r[k]["vs_alone"] = r[k]["median_s"] / a
    E["after"] = r
    say(f"  (b) one process, {r['sklearn']['n']} times: MLPClassifier.fit "
        f"{ms(r['sklearn']['median_s'])} ms, then BPNetClassifier.fit "
        f"{ms(r['after-sklearn']['median_s'])} ms ({r['after-sklearn']['spread']:.0%}) = "
        f"{r['after-sklearn']['vs_alone']:.2f}x its fit alone ({ms(a)} ms); after a 512x512 "
        f"NumPy product {ms(r['after-numpy']['median_s'])} ms = "
        f"{r['after-numpy']['vs_alone']:.2f}x")


def map_case(out, dtypes, st, say, tmp, avail, png):
    """The regime map: each system alone over every cell; fastest peer / bpnet."""
    from heatmap import draw

    names = [k for k in MAP_SYSTEMS if avail.get(k, True)]
    rows_m = st.get("map_rows", MAP_ROWS)
    cells = [[h, m] for m in rows_m for h in MAP_WIDTHS]
    say(f"\n== MAP: fastest peer's time / bpnet's time for one public cost+gradient of "
        f"[{MAP_IN}, h, {MAP_K}] sigmoid (sigmoid outputs, lam {S.LAM}); each system alone "
        f"in its own process over every cell, {rounds(st['map_rounds'])}")
    per = {k: [] for k in names}
    for r in range(st["map_rounds"]):
        for k in names[r % len(names):] + names[: r % len(names)]:
            per[k].append(spawn({"kind": "map", "system": k, "cells": cells, "dtypes": dtypes,
                                 "budget": st["map_budget"], "min_calls": st["map_min_calls"],
                                 "check_dir": str(tmp) if r == 0 else None}))
    res = {"cells": cells, "systems": names, "png": str(png)}
    worst = {}
    for h, m in cells:
        checks = S.check_files(tmp, f"MAP{h}x{m}", names, dtypes, ref="bpnet")
        for d in dtypes:
            times = {k: median_of_rounds([x[f"{h}x{m}/{d}"] for x in per[k]])["median_s"]
                     for k in names}
            peers = {k: t for k, t in times.items() if k != "bpnet"}
            fast = min(peers, key=peers.get)
            res[f"{h}x{m}/{d}"] = {"times_s": times, "fastest": fast,
                                   "ratio": peers[fast] / times["bpnet"], "check": checks[d]}
            worst[d] = max(worst.get(d, 0.0), *(v[1] for v in checks[d].values()))
    say("  check: every system's J and gradient against bpnet's at every cell; largest "
        "relative gradient difference " + ", ".join(f"{d} {v:.0e}" for d, v in worst.items()))
    for d in dtypes:
        say(f"  {d}: rows m (down) x hidden width h (across); ratio (fastest peer), "
            "bpnet ms")
        say(f"    {'m / h':>8}" + "".join(f"{h:>24}" for h in MAP_WIDTHS))
        for m in rows_m:
            say(f"    {m:>8}" + "".join(
                f"{_map_cell(res[f'{h}x{m}/{d}']):>24}" for h in MAP_WIDTHS))
    draw(res, dtypes, png, f"bpnet vs the fastest peer: one cost+gradient of [{MAP_IN}, h, "
         f"{MAP_K}] sigmoid, each system alone\n{out['header']['cpu']['model_name']}, bpnet on "
         f"{out['header']['bpnet_build']['max_threads']} threads, {out['header']['started']}")
    say(f"  heatmap written to {png}")
    out["MAP"] = res


def _map_cell(e):
    return f"{e['ratio']:.2f}x {e['fastest']} {ms(e['times_s']['bpnet'])}"


# ------------------------------------------------------------ targets
def targets(out, dtypes, add):
    """Issue 18's targets for N, ACT, E and MAP, through add(name, value, goal, ok)."""
    n = out.get("N", {})
    for mode in ("alone", "mixed"):
        for d in dtypes:
            e = n.get(mode, {}).get(d)
            if not e:
                continue
            for k, goal in (("torch", 10.0), ("jax", 3.0)):
                if k in e:
                    r = e[k]["median_s"] / e["bpnet"]["median_s"]
                    add(f"N {mode} {d}: per epoch vs {k}", f"{r:.2f}x", f">= {goal:g}x",
                        r >= goal)
    for case, e in out.get("ACT", {}).items():
        for d in dtypes:
            for a in ACTIVATIONS[:2]:
                r = e[d][a]["vs_relu"]
                add(f"ACT {case}/{d}: {a} / relu", f"{r:.2f}x", "<= 1.2x", r <= 1.2)
    E = out.get("E", {})
    if "after" in E:
        r = E["after"]["after-sklearn"]["vs_alone"]
        add("E: fit right after MLPClassifier / fit alone", f"{r:.2f}", "<= 1.2", r <= 1.2)
    m = out.get("MAP")
    if m:
        for d in dtypes:
            cells = [(h, rows) for h, rows in m["cells"]]
            behind = [f"{h}x{r}" for h, r in cells if m[f"{h}x{r}/{d}"]["ratio"] < 1]
            add(f"MAP {d}: cells where bpnet leads the fastest peer",
                f"{len(cells) - len(behind)}/{len(cells)}", "all", not behind,
                note="behind (h x m): " + ", ".join(behind) if behind else "")

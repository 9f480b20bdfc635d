"""bpnet side by side with NumPy, scikit-learn, PyTorch and JAX (bench/README.md).

    python bench/run.py                       # full run (all cases, both modes)
    python bench/run.py --quick               # fewer rounds, short measurements, C with m = 2000
    python bench/run.py --cases A,B --modes alone
    python bench/run.py --quick --cases N,ACT,E,MAP   # issue 18's regimes
    python bench/run.py --out bench/results/mine   # writes mine.txt, mine.json, mine-map.png

Modes: "alone" times each system in its own fresh process (one process per
system per case, systems alternated over rounds, median of the rounds);
"mixed" interleaves every system call by call in one process (every
library's thread pool warm, as in a pipeline). Every report starts with the
CPU, bpnet's ISA build, the thread counts and the load average, and ends
with the targets of issue 18, each with its measured value and PASS/MISS.
Cases N, ACT, MAP and E's run right after MLPClassifier live in regimes.py.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import machine  # noqa: E402
import regimes  # noqa: E402
import systems as S  # noqa: E402
from systems import check_files, check_systems  # noqa: E402
from timing import (  # noqa: E402
    Report,
    measure,
    median_of_rounds,
    ms,
    rounds,
    spawn,
    summary,
)

# rounds, time per measurement (s) and minimum calls per measurement
SETTINGS = {
    False: {"rounds": 5, "aux_rounds": 3, "budget": 1.0, "min_calls": 5, "mixed_budget": 1.5,
            "d_epochs": 3,
            "e_fits": 5, "eigen_blocks": (32, 64, 128, 256, 512, 0), "eigen_repeats": 3,
            "eigen_min_time": 0.2, "profile_fits": 30, "t_budget": 2.0,
            "n_epochs": 100, "n_min_fits": 3, "map_rounds": 2, "map_budget": 0.2,
            "map_min_calls": 2, "map_rows": (1_000, 10_000, 100_000)},
    True: {"rounds": 2, "aux_rounds": 1, "budget": 0.25, "min_calls": 3, "mixed_budget": 0.3,
           "d_epochs": 1,
           "e_fits": 3, "eigen_blocks": (64, 0), "eigen_repeats": 3, "eigen_min_time": 0.05,
           "profile_fits": 10, "t_budget": 0.5,
           "n_epochs": 20, "n_min_fits": 2, "map_rounds": 1, "map_budget": 0.05,
           "map_min_calls": 2, "map_rows": (1_000, 10_000)},
}


ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false "
                               "intra_op_parallelism_threads=1"}


def cases_full(quick):
    c = dict(S.FULL_CASES)
    if quick:
        c["C"] = (c["C"][0], S.QUICK_C_M)
    return c


def save_check(spec, dtype, J, grad, system, fn):
    if not spec.get("check_dir") or J is None:
        return
    g = S.as_theta_grad(system, fn, grad)
    p = Path(spec["check_dir"]) / f"{spec['case']}-{system}-{dtype}.npz"
    np.savez(p, J=np.float64(float(J)), grad=g)


def worker_full(spec):
    """One system on one full-batch case, both dtypes (the alone mode)."""
    sizes, m = spec["sizes"], spec["m"]
    out = {}
    base = S.make_data(sizes, m)
    for dtype in spec["dtypes"]:
        d = S.cast(base, dtype)
        fn = S.BUILDERS[spec["system"]](d, sizes, S.LAM)
        r = fn()  # warm-up (JAX compiles here)
        if r is not None:
            save_check(spec, dtype, r[0], r[1], spec["system"], fn)
        out[dtype] = summary(measure(fn, spec["budget"], spec["min_calls"]))
    return out


def worker_mixed(spec):
    """Every system of every case in this one process, interleaved call by call."""
    res = {}
    for case, (sizes, m) in spec["cases"].items():
        base = S.make_data(sizes, m)
        res[case] = {}
        for dtype in spec["dtypes"]:
            d = S.cast(base, dtype)
            fns = {k: S.BUILDERS[k](d, sizes, S.LAM) for k in spec["systems"]}
            checks = check_systems(fns, dtype)
            for f in fns.values():  # warm every system (JAX compiles)
                f()
            names = list(fns)
            samples = {k: [] for k in names}
            after = {k: [] for k in names}  # bpnet's calls by the system called just before
            t_end = time.perf_counter() + spec["budget"] * len(names)
            i, prev = 0, None
            rng = np.random.default_rng(0)  # a new order each round: bpnet follows every peer
            while i < spec["min_calls"] or time.perf_counter() < t_end:
                for k in map(str, rng.permutation(names)):
                    t0 = time.perf_counter()
                    fns[k]()
                    dt = time.perf_counter() - t0
                    samples[k].append(dt)
                    if k == "bpnet" and prev not in (None, "bpnet"):
                        after[prev].append(dt)
                    prev = k
                i += 1
            res[case][dtype] = {k: {**summary(v), "check": checks.get(k)}
                                for k, v in samples.items()}
            res[case][dtype]["bpnet"]["after"] = {
                k: float(np.median(v)) for k, v in after.items() if v}
    return res


def worker_threads(spec):
    """bpnet's core with 1 and 2 threads, interleaved; gradients compared bitwise."""
    out = {}
    for case, (sizes, m) in spec["cases"].items():
        base = S.make_data(sizes, m)
        out[case] = {}
        for dtype in spec["dtypes"]:
            d = S.cast(base, dtype)
            f1 = S.bpnet_core(d, sizes, S.LAM, n_threads=1)
            f2 = S.bpnet_core(d, sizes, S.LAM, n_threads=2)
            J1, g1 = f1()
            g1 = g1.copy()
            J2, g2 = f2()
            same = bool(np.array_equal(g1, g2) and J1 == J2)
            s1, s2 = [], []
            for _ in range(spec["rounds"]):
                s1 += measure(f1, spec["budget"] / 2, spec["min_calls"])
                s2 += measure(f2, spec["budget"] / 2, spec["min_calls"])
            a, b = summary(s1), summary(s2)
            out[case][dtype] = {"t1": a, "t2": b, "speedup": a["median_s"] / b["median_s"],
                                "bitwise_identical": same}
    return out


def worker_isa(spec):
    """The public cost_grad and the core of the build BPNET_ISA selects."""
    import bpnet

    out = {"isa": bpnet.build_info()["isa"]}
    for case, (sizes, m) in spec["cases"].items():
        base = S.make_data(sizes, m)
        for dtype in spec["dtypes"]:
            d = S.cast(base, dtype)
            for system in ("bpnet", "bpnet-core"):
                f = S.BUILDERS[system](d, sizes, S.LAM)
                out[f"{case}/{dtype}/{system}"] = summary(
                    measure(f, spec["budget"], spec["min_calls"]))
    return out


def worker_d(spec):
    """One epoch of Adam: one system, both dtypes, `epochs` timed epochs each."""
    out = {}
    for dtype in spec["dtypes"]:
        f = S.d_epoch(spec["system"], dtype)
        out[dtype] = summary(measure(f, 0.0, spec["epochs"]))
    if spec["system"] == "bpnet" and spec.get("core_share") and "float64" in out:
        # the core alone on one batch of 64 rows vs the whole epoch
        d = S.d_data("float64")
        rows = np.arange(S.D_BATCH, dtype=np.int64)
        from bpnet import _native

        core, ws = _native.core, _native.core.Workspace()
        theta = S.random_theta(list(S.D_SIZES), np.random.default_rng(0))
        grad = np.empty_like(theta)

        def step():
            core.cost_grad(theta, S.D_SIZES, d["X"], d["y"], S.D_ALPHA, "relu", "softmax", None,
                           grad, rows, -1, ws)
        t = summary(measure(step, 0.3, 20))["median_s"]
        steps = -(-S.D_M // S.D_BATCH)
        out["core_batch_s"] = t
        out["core_share_float64"] = t * steps / out["float64"]["median_s"]
    return out


def worker_e(spec):
    """Case E for one system: find the smallest max_iter reaching the target
    (unless given), then time whole fits. A ``/blas1`` system runs every fit
    under one ``threadpool_limits(1, user_api="blas")`` entered here, outside the
    timed fits (entering and leaving it takes about 2 ms, which ``S.e_fit`` would
    otherwise add to each fit)."""
    base, _, blas = spec["system"].partition("/")
    if blas:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            return worker_e({**spec, "system": base})
    data = S.e_data()
    k = spec.get("k")
    out = {}
    if k is None:
        k = S.e_first_k(spec["system"], data)
        if k is None:
            return {"k": None}
    model = S.e_fit(spec["system"], k, data)
    out["k"], out["accuracy"] = k, S.e_score(model, data)
    res = getattr(model, "network_", model).result if spec["system"].startswith("bpnet") else None
    if res is not None:
        out["n_evals"], out["n_iter"] = int(res.n_evals), int(res.n_iter)
    out.update(summary(measure(lambda: S.e_fit(spec["system"], k, data), 0.0, spec["fits"])))
    return out


def worker_profile(spec):
    """Where case E's BPNetClassifier.fit spends its time, with OpenBLAS's default
    threads and with one: cProfile over many fits, grouped by library, plus a
    split measured without the profiler."""
    from threadpoolctl import threadpool_limits

    import bpnet
    from bpnet import _native

    data = S.e_data()
    k, n = spec["k"], spec["fits"]
    model = S.e_fit("bpnet", k, data)
    n_evals = int(model.network_.result.n_evals)
    # one core evaluation on the same training data (the estimator's X, float64)
    Xtr, _, ytr, _ = data
    X = np.ascontiguousarray(Xtr, dtype=np.float64)
    y = np.ascontiguousarray(ytr, dtype=np.int64)
    sizes = (64, S.E_HIDDEN, 10)
    theta = np.ascontiguousarray(model.network_.theta, dtype=np.float64)
    ws, grad = _native.core.Workspace(), np.empty_like(theta)
    out = {"k": k, "fits": n, "n_evals": n_evals, "n_params": int(theta.size)}
    for blas in ("default", "blas1"):
        suffix = "/blas1" if blas == "blas1" else ""
        fit = lambda s=suffix: S.e_fit("bpnet" + s, k, data)  # noqa: E731
        r = {"fit_s": summary(measure(fit, 0.0, max(5, n // 2)))["median_s"],
             "network_fit_s": summary(measure(lambda s=suffix: S.e_fit("bpnet-network" + s, k,
                                                                       data),
                                              0.0, max(5, n // 2)))["median_s"]}
        with threadpool_limits(1 if blas == "blas1" else None, user_api="blas"):
            r["lbfgsb_quadratic_s"] = summary(measure(
                lambda: lbfgsb_quadratic(theta.size, k), 0.0, max(5, n // 2)))["median_s"]
            r["core_eval_s"] = summary(measure(lambda: _native.core.cost_grad(
                theta, sizes, X, y, S.E_ALPHA, "sigmoid", "softmax", None, grad, None, -1, ws),
                0.3, 50))["median_s"]
            r["public_eval_s"] = summary(measure(lambda: bpnet.cost_grad(
                theta, sizes, X, y, S.E_ALPHA, output="softmax"), 0.3, 50))["median_s"]
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            fit()
        prof.disable()
        st = pstats.Stats(prof)
        total = sum(v[2] for v in st.stats.values())  # tottime of everything
        groups: dict[str, float] = {}
        rows = []
        for (file, line, func), (_cc, nc, tt, ct, _) in st.stats.items():
            g = profile_group(file, func)
            groups[g] = groups.get(g, 0.0) + tt
            rows.append({"function": f"{Path(file).name}:{line}({func})" if file != "~" else func,
                         "group": g, "calls": nc // n, "tottime_ms": tt / n * 1e3,
                         "cumtime_ms": ct / n * 1e3})
        rows.sort(key=lambda r: -r["tottime_ms"])
        r["profiled_fit_s"] = total / n
        r["groups_ms"] = {g: v / n * 1e3 for g, v in sorted(groups.items(), key=lambda x: -x[1])}
        r["top"] = rows[:15]
        out[blas] = r
    return out


def lbfgsb_quadratic(P, k):
    """SciPy's L-BFGS-B alone: k iterations on a diagonal quadratic of P
    parameters (its objective costs ~P flops), as bpnet's fit calls it."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    a, b = rng.random(P) + 0.5, rng.random(P)

    def fg(x):
        r = a * x - b
        return float(r @ r), 2 * a * r
    return minimize(fg, np.zeros(P), jac=True, method="L-BFGS-B",
                    options={"maxiter": k, "gtol": 0.0, "ftol": 0.0})


def profile_group(file, func):
    """Which library a profiled function belongs to."""
    name = f"{file} {func}"
    if file == "~" and "cost_grad" in func:
        return "core cost_grad (C++)"
    if file == "~" and "bpnet" in func:
        return "core other (C++)"
    for key, g in (("/scipy/", "scipy (L-BFGS-B and its wrappers)"),
                   ("scipy", "scipy (L-BFGS-B and its wrappers)"),
                   ("lbfgsb", "scipy (L-BFGS-B and its wrappers)"),
                   ("/sklearn/", "scikit-learn (validation, utils)"),
                   ("/bpnet/", "bpnet Python (estimator, Network, optimize)"),
                   ("/numpy/", "numpy"), ("numpy", "numpy")):
        if key in name:
            return g
    return "other (Python builtins, stdlib)"


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return None


def peak_extra_bytes(fn):
    """Peak resident memory above the level before one warm call of fn."""
    import gc

    fn()
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current VmRSS
    except OSError:
        return None
    before = _status("VmRSS")
    fn()
    return max(0, _status("VmHWM") - before)


def worker_memory(spec):
    """Peak extra memory of one warm evaluation per system. Run in a process
    whose malloc maps every block >= 64 KiB separately (MALLOC_MMAP_THRESHOLD_),
    so freed temporaries leave the resident set and the next call's show up in
    VmHWM; never timed (that setting slows NumPy and PyTorch down)."""
    out = {}
    for case, (sizes, m) in spec["cases"].items():
        base = S.make_data(sizes, m)
        out[case] = {}
        for dtype in spec["dtypes"]:
            d = S.cast(base, dtype)
            out[case][dtype] = {}
            for k in spec["systems"]:
                f = S.BUILDERS[k](d, sizes, S.LAM)
                out[case][dtype][k] = peak_extra_bytes(f)
                if k == "bpnet-core":
                    out[case][dtype]["bpnet_workspace"] = f.workspace.nbytes
    return out


WORKERS = {"full": worker_full, "memory": worker_memory, "mixed": worker_mixed,
           "threads": worker_threads, "isa": worker_isa, "d": worker_d, "e": worker_e,
           "profile": worker_profile,
           "probe": lambda spec: machine.thread_info(), **regimes.WORKERS}


# ---------------------------------------------------------------- report
def run_eigen_refs(out, cases, dtypes, st, say, threads=(1, 2)):
    """Eigen's GEMM alone at each case's shapes, with both ISA builds' flags."""
    res = {}
    say("\n== reference: Eigen's GEMM alone at the nets' shapes (bench/eigen_gemm.cpp)")
    for isa in ("avx512", "avx2"):
        cpu = set(out["header"]["cpu"]["flags"])
        if "avx512f" not in cpu if isa == "avx512" else "avx2" not in cpu:
            say(f"  {isa}: this CPU cannot run it, skipped")
            continue
        try:
            exe = machine.eigen_binary(isa)
        except (FileNotFoundError, RuntimeError) as e:
            say(f"  {isa}: not built ({e})")
            continue
        say(f"  {isa}: {machine.eigen_compile_command(isa)}")
        for case, (sizes, m) in cases.items():
            for dtype in dtypes:
                rows = machine.run_eigen(exe, sizes, m, dtype, threads, st["eigen_blocks"],
                                         "chunks", st["eigen_repeats"], st["eigen_min_time"])
                rows += machine.run_eigen(exe, sizes, m, dtype, [max(threads)], [0], "eigen",
                                          st["eigen_repeats"], st["eigen_min_time"])
                for t in threads:
                    cand = [r for r in rows if r["threads"] == t]
                    best = min(cand, key=lambda r: r["median_s"])
                    res[f"{isa}/{case}/{dtype}/{t}"] = {"best": best, "all": cand}
    out["eigen_gemm"] = res
    if not res:
        return
    say("  best over row-block sizes (and, at the higher thread count, over Eigen's own "
        "threading) per case, dtype and thread count; ms (GFLOP/s, mode/block rows)")
    hdr = f"  {'flags':<8}{'threads':>8}" + "".join(
        f"{c + '/f' + d[-2:]:>24}" for c in cases for d in dtypes)
    say(hdr)
    for isa in ("avx512", "avx2"):
        for t in threads:
            cells = []
            for c in cases:
                for d in dtypes:
                    e = res.get(f"{isa}/{c}/{d}/{t}")
                    if e is None:
                        cells.append(f"{'-':>24}")
                        continue
                    b = e["best"]
                    cell = f"{ms(b['median_s'])} ({b['gflops']:.0f}, {b['mode'][0]}{b['block']})"
                    cells.append(f"{cell:>24}")
            if any(c.strip() != "-" for c in cells):
                say(f"  {isa:<8}{t:>8}" + "".join(cells))


def alone_mode(out, cases, dtypes, st, say, tmp):
    say(f"\n== alone: each system in its own fresh process, one process per system per case, "
        f"{rounds(st['rounds'])} (order rotated each round), median of the rounds' medians")
    res = {c: {d: {} for d in dtypes} for c in cases}
    per_round = {c: {d: {k: [] for k in S.FULL_SYSTEMS} for d in dtypes} for c in cases}
    avail = available_systems()
    names = [k for k in S.FULL_SYSTEMS if avail.get(k.split("-")[0], True)]
    checks = {}
    for r in range(st["rounds"]):
        for case, (sizes, m) in cases.items():
            order = names[r % len(names):] + names[: r % len(names)]
            for system in order:
                spec = {"kind": "full", "case": case, "system": system, "sizes": sizes, "m": m,
                        "dtypes": dtypes, "budget": st["budget"], "min_calls": st["min_calls"],
                        "check_dir": str(tmp) if r == 0 else None}
                got = spawn(spec)
                for d in dtypes:
                    per_round[case][d][system].append(got[d])
            if r == 0:
                checks[case] = check_files(tmp, case, names, dtypes)
    for case in cases:
        for d in dtypes:
            for k in names:
                res[case][d][k] = median_of_rounds(per_round[case][d][k])
                res[case][d][k]["check"] = checks[case][d].get(k)
    out["alone"] = res
    out["memory"] = spawn({"kind": "memory", "cases": cases, "dtypes": dtypes,
                           "systems": [k for k in names if k != "openblas-gemm"]},
                          env={"MALLOC_MMAP_THRESHOLD_": "65536"})
    print_full_table(out, "alone", cases, dtypes, say)


def available_systems():
    import importlib.util

    return {"sklearn": importlib.util.find_spec("sklearn") is not None,
            "torch": importlib.util.find_spec("torch") is not None,
            "jax": importlib.util.find_spec("jax") is not None}


def print_full_table(out, mode, cases, dtypes, say):
    res = out[mode]
    for case, (sizes, m) in cases.items():
        fl = S.flops_cost_grad(sizes, m)
        say(f"  case {case}: layer_sizes={sizes}, m={m}, lam={S.LAM}, {fl / 1e6:.1f} MFLOP "
            "per cost+grad")
        for d in dtypes:
            ch = res[case][d]
            say("    check {}: relative difference of J / ||grad|| from bpnet's core: {}".format(
                d, ", ".join(f"{k} {v['check'][0]:.0e}/{v['check'][1]:.0e}"
                             for k, v in ch.items() if v.get("check") and k != "bpnet-core")))
        mem = out.get("memory", {}).get(case, {}) if mode == "alone" else {}
        say(f"    {'system':<22}{'median ms':>11}{'spread':>8}{'GFLOP/s':>9}"
            f"{'bpnet x faster':>16}{'calls':>7}" + (f"{'peak extra MiB':>16}" if mem else ""))
        for d in dtypes:
            tb = res[case][d]["bpnet"]["median_s"]
            for k, e in res[case][d].items():
                e["gflops"] = fl / e["median_s"] / 1e9
                e["bpnet_speedup"] = e["median_s"] / tb
                pk = mem.get(d, {}).get(k)
                e["peak_extra_bytes"] = pk
                mib = "" if not mem else f"{'n/a' if pk is None else f'{pk / 2**20:.1f}':>16}"
                say(f"    {k + '/' + d:<22}{ms(e['median_s']):>11}{e['spread']:>8.0%}"
                    f"{e['gflops']:>9.1f}{e['bpnet_speedup']:>16.2f}"
                    f"{e.get('calls', e['n']):>7}{mib}")
            ref = eigen_best(out, case, d, out["header"]["bpnet_build"]["max_threads"])
            if ref:
                say(f"    {'eigen-gemm/' + d:<22}{ms(ref['median_s']):>11}{'':>8}"
                    f"{ref['gflops']:>9.1f}{ref['median_s'] / tb:>16.2f}"
                    f"   (alone, {ref['isa']} flags, {ref['threads']} threads, "
                    f"{ref['mode']} block {ref['block']})")
            if mem.get(d, {}).get("bpnet_workspace"):
                say(f"    bpnet's workspace ({d}, allocated by the first call, reused after): "
                    f"{mem[d]['bpnet_workspace'] / 2**20:.2f} MiB; X is "
                    f"{m * sizes[0] * np.dtype(d).itemsize / 2**20:.1f} MiB")


def eigen_best(out, case, dtype, threads):
    """The fastest Eigen GEMM row for the active ISA build's flags at `threads`."""
    isa = out["header"]["bpnet_build"]["isa"]
    e = out.get("eigen_gemm", {}).get(f"{isa}/{case}/{dtype}/{threads}")
    if e is None:
        return None
    return {**e["best"], "isa": isa}


def mixed_mode(out, cases, dtypes, st, say):
    say("\n== mixed: every system in one process, interleaved call by call (a fresh order each "
        "round, fixed seed), median per system")
    avail = available_systems()
    names = [k for k in S.FULL_SYSTEMS if avail.get(k.split("-")[0], True)]
    spec = {"kind": "mixed", "cases": cases, "dtypes": dtypes, "systems": names,
            "budget": st["mixed_budget"], "min_calls": st["min_calls"]}
    out["mixed"] = spawn(spec)
    print_full_table(out, "mixed", cases, dtypes, say)
    say("  bpnet's calls in mixed mode by the system called just before (median ms):")
    for c in cases:
        for d in dtypes:
            a = out["mixed"][c][d]["bpnet"].get("after", {})
            say(f"    {c}/{d}: " + ", ".join(f"after {k} {ms(v)}" for k, v in a.items()))
    if "alone" in out:
        say("  bpnet mixed / alone (time ratio; 1.00 = no slower next to the other pools):")
        for c in cases:
            say("    " + ", ".join(
                f"{c}/{d} {out['mixed'][c][d]['bpnet']['median_s'] / out['alone'][c][d]['bpnet']['median_s']:.2f}"  # noqa: E501
                for d in dtypes))


def threads_case(out, quick, dtypes, st, say):
    cs = {k: v for k, v in cases_full(quick).items() if k in "AC"}
    say(f"\n== T: bpnet's core on 1 and 2 threads, interleaved in one fresh process "
        f"({rounds(st['aux_rounds'])}); gradients compared bitwise")
    r = spawn({"kind": "threads", "cases": cs, "dtypes": dtypes, "rounds": st["aux_rounds"],
               "budget": st["t_budget"], "min_calls": st["min_calls"]})
    out["threads"] = r
    for c in cs:
        for d in dtypes:
            e = r[c][d]
            say(f"  {c}/{d}: 1 thread {ms(e['t1']['median_s'])} ms ({e['t1']['spread']:.0%}), "
                f"2 threads {ms(e['t2']['median_s'])} ms ({e['t2']['spread']:.0%}): "
                f"{e['speedup']:.2f}x; bitwise identical: {e['bitwise_identical']}")


def isa_case(out, quick, dtypes, st, say):
    import bpnet

    cs = {k: v for k, v in cases_full(quick).items() if k in "AC"}
    isas = bpnet.build_info()["available_isas"]
    say(f"\n== I: each ISA build (BPNET_ISA in a fresh process per build, "
        f"{rounds(st['aux_rounds'])}), median ms of the public cost_grad (core in brackets)")
    per = {i: [] for i in isas}
    for r in range(st["aux_rounds"]):
        for isa in isas[r % len(isas):] + isas[: r % len(isas)]:
            per[isa].append(spawn({"kind": "isa", "cases": cs, "dtypes": dtypes,
                                   "budget": st["budget"] / 2, "min_calls": st["min_calls"]},
                                  env={"BPNET_ISA": isa}))
    res = {}
    cols = [f"{c}/{d}" for c in cs for d in dtypes]
    say(f"  {'build':<10}" + "".join(f"{c:>22}" for c in cols))
    for isa in isas:
        res[isa] = {}
        line = f"  {isa:<10}"
        for c in cols:
            pub = median_of_rounds([x[f"{c}/bpnet"] for x in per[isa]])
            core = median_of_rounds([x[f"{c}/bpnet-core"] for x in per[isa]])
            res[isa][c] = {"bpnet": pub, "bpnet-core": core}
            line += f"{ms(pub['median_s']) + ' (' + ms(core['median_s']) + ')':>22}"
        say(line)
    best = {c: min(isas, key=lambda i: res[i][c]["bpnet"]["median_s"]) for c in cols}
    say(f"  active build: {bpnet.build_info()['isa']}; fastest per column: "
        + ", ".join(f"{c} {b}" for c, b in best.items()))
    out["isa"] = res


def d_case(out, dtypes, st, say):
    say(f"\n== D: one epoch of mini-batch Adam, layer_sizes={list(S.D_SIZES)} relu, softmax "
        f"output, m={S.D_M}, batch {S.D_BATCH}, lr {S.D_LR}, alpha {S.D_ALPHA}, from a fresh "
        f"model (alone: a process per system, {rounds(st['aux_rounds'])})")
    avail = available_systems()
    names = [k for k in S.D_SYSTEMS if avail.get(k, True)]
    # the same cost and gradient first (one batch, the same theta, in this process)
    checks = {}
    for d in dtypes:
        fns = {k: f for k, f in S.d_check_fns(d).items() if k in names}
        Jb, gb = fns.pop("bpnet")()
        gb = np.asarray(gb, dtype=np.float64).copy()
        tJ, tg = S.check_tolerance(d)
        checks[d] = {}
        for k, f in fns.items():
            J, g = f()
            g = S.as_theta_grad(k, f, g)
            dJ, dg = abs(J - Jb) / abs(Jb), float(np.linalg.norm(g - gb) / np.linalg.norm(gb))
            checks[d][k] = [dJ, dg]
            if not (dJ <= tJ and dg <= tg):
                raise SystemExit(f"case D {d}: {k} disagrees with bpnet (J {dJ:.1e}, grad "
                                 f"{dg:.1e})")
        say(f"  check {d} (one batch, relu/softmax): relative difference of J / ||grad|| from "
            "bpnet: " + ", ".join(f"{k} {a:.0e}/{b:.0e}" for k, (a, b) in checks[d].items()))
    per = {k: [] for k in names}
    extra = {}
    for r in range(st["aux_rounds"]):
        for k in names[r % len(names):] + names[: r % len(names)]:
            got = spawn({"kind": "d", "system": k, "dtypes": dtypes, "epochs": st["d_epochs"],
                         "core_share": r == 0})
            per[k].append(got)
            if "core_share_float64" in got:
                extra = {"core_batch_s": got["core_batch_s"],
                         "core_share_float64": got["core_share_float64"]}
    res = {"checks": checks, **extra}
    say(f"  {'system':<18}{'epoch ms':>10}{'spread':>8}{'examples/s':>12}{'bpnet x faster':>16}")
    for d in dtypes:
        tb = None
        for k in names:
            e = median_of_rounds([x[d] for x in per[k]])
            e["examples_per_s"] = S.D_M / e["median_s"]
            res[f"{k}/{d}"] = e
            tb = tb or res[f"bpnet/{d}"]["median_s"]
            e["bpnet_speedup"] = e["median_s"] / tb
            say(f"  {k + '/' + d:<18}{e['median_s'] * 1e3:>10.1f}{e['spread']:>8.0%}"
                f"{e['examples_per_s']:>12.0f}{e['bpnet_speedup']:>16.2f}")
    if extra:
        steps = -(-S.D_M // S.D_BATCH)
        say(f"  bpnet/float64: the core's cost_grad on one batch takes "
            f"{extra['core_batch_s'] * 1e6:.0f} us x {steps} steps = "
            f"{extra['core_share_float64']:.0%} of the epoch; the rest is the Python loop, "
            "the update and the estimator")
    out["D"] = res


def e_case(out, st, say):
    say(f"\n== E: the digits to >= {S.E_TARGET} held-out accuracy with L-BFGS (75/25 split), "
        f"[64, {S.E_HIDDEN}, 10] logistic, alpha {S.E_ALPHA}; wall time of the whole fit "
        f"(alone: a process per system, {rounds(st['aux_rounds'])})")
    avail = available_systems()
    if not avail["sklearn"]:
        say("  skipped: scikit-learn is not installed")
        return
    names = list(S.E_SYSTEMS)
    per = {k: [] for k in names}
    ks = {}
    for r in range(st["aux_rounds"]):
        for k in names[r % len(names):] + names[: r % len(names)]:
            got = spawn({"kind": "e", "system": k, "k": ks.get(k), "fits": st["e_fits"]})
            if got.get("k") is None:
                say(f"  {k}: never reached {S.E_TARGET} within {S.E_ITERS[-1]} iterations")
                names.remove(k)
                continue
            ks[k] = got["k"]
            per[k].append(got)
    res = {}
    labels = {"bpnet": "BPNetClassifier.fit", "bpnet/blas1": "BPNetClassifier.fit, BLAS 1 thr",
              "bpnet-network": "Network.fit", "sklearn": "MLPClassifier.fit",
              "sklearn/blas1": "MLPClassifier.fit, BLAS 1 thr"}
    for k in names:
        e = median_of_rounds(per[k])
        first = per[k][0]
        e.update({x: first[x] for x in ("k", "accuracy", "n_evals", "n_iter") if x in first})
        res[k] = e
        evals = f", {e['n_evals']} evaluations" if "n_evals" in e else ""
        say(f"  {k:<15}{labels[k]:<32}{e['k']:>4} iterations{evals} -> accuracy "
            f"{e['accuracy']:.4f}: {e['median_s'] * 1e3:.1f} ms ({e['spread']:.0%})")
    sk = [res[k]["median_s"] for k in ("sklearn", "sklearn/blas1") if k in res]
    if "bpnet" in res and sk:
        res["speedup_default"] = res["sklearn"]["median_s"] / res["bpnet"]["median_s"] \
            if "sklearn" in res else None
        bp = [res[k]["median_s"] for k in ("bpnet", "bpnet/blas1") if k in res]
        res["speedup_best"] = min(sk) / min(bp)
        if res["speedup_default"]:
            say(f"  BPNetClassifier is {res['speedup_default']:.2f}x MLPClassifier with "
                "OpenBLAS's default threads for both")
        say(f"  and {res['speedup_best']:.2f}x with each at its faster of the two BLAS settings")
    if "bpnet" in res and "sklearn" in res:
        res["speedup_vs_fastest"] = min(sk) / res["bpnet"]["median_s"]
        say(f"  (a) vs (c): BPNetClassifier.fit alone (default BLAS threads) is "
            f"{res['speedup_vs_fastest']:.2f}x MLPClassifier at its fastest BLAS setting")
    out["E"] = res
    regimes.e_after_case(out, st, say)
    if "bpnet" in res:
        profile_e(out, res["bpnet"]["k"], st, say)


def profile_e(out, k, st, say):
    p = spawn({"kind": "profile", "k": k, "fits": st["profile_fits"]})
    out["E_profile"] = p
    say(f"  where BPNetClassifier.fit's time goes (a fresh process, max_iter={k}, "
        f"{p['n_evals']} cost+grad evaluations per fit), with OpenBLAS's default threads "
        "and with one:")
    for blas, label in (("default", "default BLAS threads"), ("blas1", "BLAS on 1 thread")):
        r = p[blas]
        core_total = p["n_evals"] * r["core_eval_s"]
        say(f"    {label}, without the profiler: fit {r['fit_s'] * 1e3:.1f} ms; Network.fit on "
            f"the same data {r['network_fit_s'] * 1e3:.1f} ms; one core cost_grad "
            f"{r['core_eval_s'] * 1e6:.0f} us (public bpnet.cost_grad "
            f"{r['public_eval_s'] * 1e6:.0f} us) x {p['n_evals']} = {core_total * 1e3:.1f} ms = "
            f"{core_total / r['fit_s']:.0%} of the fit")
        say(f"    {label}: SciPy's L-BFGS-B alone, {k} iterations on a quadratic of the same "
            f"{p['n_params']} parameters, {r['lbfgsb_quadratic_s'] * 1e3:.1f} ms")
        say(f"    {label}, cProfile over {p['fits']} fits ({r['profiled_fit_s'] * 1e3:.1f} ms per "
            "profiled fit), self time per fit by library:")
        for g, v in r["groups_ms"].items():
            say(f"      {g:<46}{v:>9.2f} ms {v / (r['profiled_fit_s'] * 1e3):>6.0%}")
        say(f"    {label}, top functions by self time per fit: {'ms':>6} {'cum ms':>8} "
            f"{'calls':>6}")
        for row in r["top"][:8]:
            say(f"      {row['function'][:70]:<70}{row['tottime_ms']:>7.2f} "
                f"{row['cumtime_ms']:>8.2f} {row['calls']:>6}")


# ---------------------------------------------------------------- targets
def targets(out, cases, dtypes, say):
    rows = []

    def add(name, value, target, ok, note=""):
        rows.append({"target": name, "value": value, "goal": target,
                     "status": "PASS" if ok else "MISS", "note": note})

    def fastest_peer(mode, c, d):
        e = out[mode][c][d]
        peers = {k: e[k]["median_s"] for k in S.PEERS if k in e}
        k = min(peers, key=peers.get)
        return k, peers[k]

    nt = out["header"]["bpnet_build"]["max_threads"]
    for c in cases:
        for d in dtypes:
            if "alone" in out:
                k, t = fastest_peer("alone", c, d)
                r = t / out["alone"][c][d]["bpnet"]["median_s"]
                goal = 1.2 if c == "C" else 1.5  # issue 18: C 1.2x, A and B 1.5x
                add(f"alone {c}/{d}: bpnet vs fastest peer", f"{r:.2f}x ({k})",
                    f">= {goal:g}x", r >= goal)
    for c in cases:
        for d in dtypes:
            if "alone" not in out:
                continue
            tb = out["alone"][c][d]["bpnet"]["median_s"]
            ob = out["alone"][c][d].get("openblas-gemm", {}).get("median_s")
            if c == "C":
                ref = [x for x in (ob, (eigen_best(out, c, d, nt) or {}).get("median_s")) if x]
                if ref:
                    r = min(ref) / tb
                    src = "openblas" if min(ref) == ob else "eigen"
                    add(f"C/{d}: fraction of the GEMM-only limit", f"{r:.2f} ({src})", ">= 0.90",
                        r >= 0.9)
            elif ob:
                r = ob / tb
                add(f"{c}/{d}: OpenBLAS GEMMs alone / bpnet", f"{r:.2f}", ">= 1.00", r >= 1.0)
    if "mixed" in out:
        for c in cases:
            for d in dtypes:
                k, t = fastest_peer("mixed", c, d)
                tb = out["mixed"][c][d]["bpnet"]["median_s"]
                add(f"mixed {c}/{d}: bpnet vs fastest peer", f"{t / tb:.2f}x ({k})", ">= 1.2x",
                    t / tb >= 1.2)
                if "alone" in out:
                    r = tb / out["alone"][c][d]["bpnet"]["median_s"]
                    add(f"mixed {c}/{d}: bpnet mixed / alone", f"{r:.2f}", "<= 1.15", r <= 1.15)
    for c, v in out.get("threads", {}).items():
        for d, e in v.items():
            add(f"T {c}/{d}: 2 threads vs 1", f"{e['speedup']:.2f}x", ">= 1.85x",
                e["speedup"] >= 1.85)
            add(f"T {c}/{d}: bitwise identical", str(e["bitwise_identical"]), "True",
                e["bitwise_identical"])
    if "D" in out:
        for d in dtypes:
            peers = {k: out["D"][f"{k}/{d}"]["median_s"] for k in ("sklearn", "torch", "jax")
                     if f"{k}/{d}" in out["D"]}
            if peers:
                k = min(peers, key=peers.get)
                r = peers[k] / out["D"][f"bpnet/{d}"]["median_s"]
                add(f"D/{d}: Adam epoch vs fastest", f"{r:.2f}x ({k})", ">= 1.5x", r >= 1.5)
    if out.get("E", {}).get("speedup_default"):
        r = out["E"]["speedup_default"]
        add("E: BPNetClassifier vs MLPClassifier (default BLAS threads)", f"{r:.2f}x", ">= 3x",
            r >= 3)
    if out.get("E", {}).get("speedup_best"):
        r = out["E"]["speedup_best"]
        add("E: each at its faster BLAS setting", f"{r:.2f}x", ">= 3x", r >= 3)
    if out.get("E", {}).get("speedup_vs_fastest"):
        r = out["E"]["speedup_vs_fastest"]
        add("E: BPNetClassifier vs MLPClassifier at its fastest", f"{r:.2f}x", ">= 3x", r >= 3)
    regimes.targets(out, dtypes, add)
    out["targets"] = rows
    say("\n== targets (issue 18; the mixed/alone rows are issue 9's), measured in this run")
    say(f"  {'target':<56}{'measured':>18}{'goal':>10}  status")
    for r in rows:
        say(f"  {r['target']:<56}{r['value']:>18}{r['goal']:>10}  {r['status']}"
            + (f"  {r['note']}" if r["note"] else ""))
    n_miss = sum(r["status"] == "MISS" for r in rows)
    say(f"  {len(rows) - n_miss} PASS, {n_miss} MISS")


def perf_profile(target, quick, say, seconds=4.0):
    """`perf record` (cpu-clock samples) of bpnet's core timing one case alone in a
    fresh process; prints the hottest symbols (where the time outside the
    matrix products goes)."""
    import shutil

    case, _, dtype = target.partition("/")
    dtype = dtype or "float64"
    cs = cases_full(quick)
    if case not in cs or dtype not in S.DTYPES:
        raise SystemExit(f"--perf: expected CASE[/DTYPE] with CASE in {sorted(cs)} and DTYPE "
                         f"in {S.DTYPES}; got {target!r}")
    if shutil.which("perf") is None:
        raise SystemExit("--perf needs perf (Debian: apt-get install linux-perf)")
    sizes, m = cs[case]
    spec = {"kind": "full", "case": case, "system": "bpnet-core", "sizes": sizes, "m": m,
            "dtypes": [dtype], "budget": seconds, "min_calls": 5}
    with tempfile.TemporaryDirectory(prefix="bpnet-perf-") as tmp:
        data = Path(tmp) / "perf.data"
        cmd = ["perf", "record", "-q", "-F", "1999", "-e", "cpu-clock", "-o", str(data), "--",
               sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"perf record failed: {r.stderr[-2000:]}")
        got = json.loads(r.stdout.strip().splitlines()[-1])[dtype]
        rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                              "--sort", "dso,symbol", "--percent-limit", "0.5"],
                             capture_output=True, text=True)
    say(f"\n== perf: bpnet's core on case {case} {dtype} ({sizes}, m={m}) alone, "
        f"{got['n']} calls, median {ms(got['median_s'])} ms; cpu-clock samples of the whole "
        "process (start-up and data included), symbols above 0.5%:")
    for line in rep.stdout.splitlines():
        if line.strip() and not line.startswith("#"):
            say("  " + line.strip()[:150])
    import importlib

    so = Path(importlib.import_module("bpnet._native").core.__file__)
    if b".symtab" not in so.read_bytes():
        say(f"  {so.name} is stripped (addresses instead of names): for symbols, reinstall with "
            "pip install --no-build-isolation -e . -C install.strip=false")


# ---------------------------------------------------------------- main
CASE_NAMES = ("A", "B", "C", "T", "I", "D", "E", "N", "ACT", "MAP")


def parse_cases(text):
    """The cases of --cases: comma-separated names (A, B, C, T, I, D, E, N, ACT,
    MAP); a token that is not a name is read as single letters (``ABC``)."""
    out = []
    for tok in (t.strip().upper() for t in text.split(",")):
        if tok in CASE_NAMES:
            out.append(tok)
        elif tok and all(c in CASE_NAMES for c in tok):
            out += list(tok)
        else:
            raise ValueError(f"--cases: expected comma-separated names of "
                             f"{', '.join(CASE_NAMES)} (or letters like ABC); got {text!r}")
    return list(dict.fromkeys(out))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer rounds, short measurements, case C with m = 2000")
    ap.add_argument("--cases", default=",".join(CASE_NAMES),
                    help="comma-separated: A B C (full batch), T (threads), I (ISA builds), "
                         "D (Adam), E (digits, with its profile), N (narrow net, Adam epochs), "
                         "ACT (activation matrix), MAP (regime map)")
    ap.add_argument("--modes", default="alone,mixed", help="alone, mixed or both (A, B, C, N)")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--rounds", type=int, default=None, help="override the number of rounds")
    ap.add_argument("--no-eigen", action="store_true", help="skip the Eigen GEMM reference")
    ap.add_argument("--one-thread", action="store_true",
                    help="every system on one thread (OMP/OpenBLAS/MKL_NUM_THREADS=1, XLA_FLAGS)")
    ap.add_argument("--out", default=None,
                    help="path prefix of the .txt, .json and -map.png results "
                         "(default bench/results/bench-<time>)")
    ap.add_argument("--perf", default=None, metavar="CASE[/DTYPE]",
                    help="only profile bpnet's core on one case with perf record (e.g. C/float32)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker or args.perf:
        return args
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in args.dtypes:
        if d not in S.DTYPES:
            ap.error(f"--dtypes: expected float64 and/or float32; got {d!r}")
    try:
        args.cases = parse_cases(args.cases)
    except ValueError as e:
        ap.error(str(e))
    args.modes = {m.strip() for m in args.modes.split(",") if m.strip()}
    if not args.modes <= {"alone", "mixed"}:
        ap.error(f"--modes: expected alone and/or mixed; got {args.modes!r}")
    return args


def main():
    args = parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        with warnings.catch_warnings():
            res = WORKERS[spec["kind"]](spec)
        print(json.dumps(res, default=float))
        return
    if args.perf:
        perf_profile(args.perf, args.quick, print)
        return
    t_start = time.time()
    st = dict(SETTINGS[args.quick])
    if args.rounds:
        st["rounds"] = st["aux_rounds"] = st["map_rounds"] = args.rounds
    if args.one_thread:  # before bpnet (and every worker) starts its thread pools
        os.environ.update(ONE_THREAD_ENV)
    import bpnet

    say = Report()
    header = {"cpu": machine.cpu_info(), "bpnet_build": bpnet.build_info(),
              "loadavg_start": list(os.getloadavg()), "quick": args.quick,
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "argv": sys.argv[1:], "settings": st}
    # thread counts as a process that loads every library sees them
    header["threads"] = spawn({"kind": "probe"})
    out = {"header": header}
    say(f"bpnet bench, {header['started']}{' (--quick)' if args.quick else ''}")
    for line in machine.header_lines(header):
        say(line)
    prefix = Path(args.out) if args.out else HERE / "results" / time.strftime(
        "bench-%Y%m%d-%H%M%S")
    if prefix.suffix in (".txt", ".json"):  # a file name given for the prefix: its stem
        prefix = prefix.with_suffix("")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cases = run_cases(out, args, st, say, prefix)
    targets(out, cases, args.dtypes, say)
    write_results(out, say, prefix, t_start)


def run_cases(out, args, st, say, prefix):
    """Every selected case, each a timed phase; returns the full-batch cases run."""
    sel, dtypes, modes = args.cases, args.dtypes, args.modes
    cases = {c: v for c, v in cases_full(args.quick).items() if c in sel}
    phases = out["header"]["phase_s"] = {}
    nt = out["header"]["bpnet_build"]["max_threads"]

    def phase(name, fn, *a):
        t0 = time.perf_counter()
        fn(*a)
        phases[name] = time.perf_counter() - t0
        say(f"  ({name}: {phases[name]:.0f} s)")

    with tempfile.TemporaryDirectory(prefix="bpnet-bench-") as tmp:
        if cases and not args.no_eigen:
            phase("eigen", run_eigen_refs, out, cases, dtypes, st, say, sorted({1, nt}))
        if cases and "alone" in modes:
            phase("alone", alone_mode, out, cases, dtypes, st, say, tmp)
        if cases and "mixed" in modes:
            phase("mixed", mixed_mode, out, cases, dtypes, st, say)
        if "MAP" in sel:
            phase("MAP", regimes.map_case, out, dtypes, st, say, tmp, available_systems(),
                  prefix.parent / (prefix.name + "-map.png"))
    if "T" in sel:
        phase("T", threads_case, out, args.quick, dtypes, st, say)
    if "I" in sel:
        phase("I", isa_case, out, args.quick, dtypes, st, say)
    if "D" in sel:
        phase("D", d_case, out, dtypes, st, say)
    if "E" in sel:
        phase("E", e_case, out, st, say)
    if "N" in sel:
        phase("N", regimes.n_case, out, dtypes, modes, st, say, available_systems(), nt)
    if "ACT" in sel:
        phase("ACT", regimes.act_case, out, dtypes, st, say)
    return cases


def write_results(out, say, prefix, t_start):
    """The last lines, then the .txt (everything printed) and .json files."""
    header = out["header"]
    la = list(os.getloadavg())
    header["loadavg_end"] = la
    header["wall_s"] = time.time() - t_start
    say(f"\nload average at the end: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} (start "
        f"{header['loadavg_start'][0]:.2f}); wall time {header['wall_s']:.0f} s")
    txt, js = prefix.with_suffix(".txt"), prefix.with_suffix(".json")
    say(f"results written to {txt} and {js}")
    lines = list(say.lines)  # the file's header also gives the end's load average
    i = next(i for i, x in enumerate(lines) if x.startswith("load average at start"))
    lines.insert(i + 1, f"load average at end:   {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} "
                        f"(the run took {header['wall_s']:.0f} s)")
    txt.write_text("\n".join(lines) + "\n")
    js.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()

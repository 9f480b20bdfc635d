"""The bench's machinery (bench/): the systems compute bpnet's cost, the
GEMM-only reference runs exactly the fused pass's products, the checks stop
a disagreeing system, the targets table judges right. No timing is asserted
here (speed targets live in bench/)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import bpnet

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import machine  # noqa: E402
import numpy_ref  # noqa: E402
import run  # noqa: E402
import step_profile  # noqa: E402
import systems as S  # noqa: E402

SIZES = [7, 5, 4, 3]


def small(dtype="float64", m=40, sizes=SIZES):
    return S.cast(S.make_data(sizes, m, seed=3), dtype)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("lam", [0.0, 1.5])
def test_numpy_ref_matches_bpnet(activation, output, lam):
    d = small()
    J, g = numpy_ref.cost_grad(d["theta"], SIZES, d["X"], d["Y"], lam, activation, output)
    Jb, gb = bpnet.cost_grad(d["theta"], SIZES, d["X"], d["y"], lam, activation=activation,
                             output=output)
    np.testing.assert_allclose(J, Jb, rtol=1e-12, err_msg="J")
    for l, (a, b) in enumerate(zip(bpnet.roll(g, SIZES), bpnet.roll(gb, SIZES))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-15, err_msg=f"dTheta[{l}]")


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_sklearn_system_is_bpnets_cost(output):
    d = small(m=200)
    fns = {"bpnet-core": S.bpnet_core(d, SIZES, 1.0, "relu", output),
           "sklearn": S.sklearn_system(d, SIZES, 1.0, "relu", output),
           "numpy": S.numpy_system(d, SIZES, 1.0, "relu", output)}
    checks = run.check_systems(fns, "float64")
    assert set(checks) == {"bpnet-core", "sklearn", "numpy"}
    assert max(max(v) for v in checks.values()) < 1e-12


def test_check_stops_a_disagreeing_system():
    d = small()
    wrong = S.numpy_system(d, SIZES, 2.0)  # another lam: another cost
    fns = {"bpnet-core": S.bpnet_core(d, SIZES, 1.0), "numpy": wrong}
    with pytest.raises(SystemExit, match="numpy float64 disagrees with bpnet"):
        run.check_systems(fns, "float64")


def test_openblas_gemm_runs_the_fused_pass_products(monkeypatch):
    """Forward A W^T per layer, D^T A per layer, D W for the hidden deltas:
    the shapes, and 2 m n k summed equals the flop count of the GEMM rate."""
    m = 33
    d = small(m=m)
    f = S.openblas_gemm(d, SIZES)
    seen = []
    real = np.matmul

    def spy(a, b, out=None):
        seen.append((a.shape, b.shape))
        assert out is not None and out.shape == (a.shape[0], b.shape[1])
        return real(a, b, out=out)

    monkeypatch.setattr(np, "matmul", spy)
    assert f() is None
    s = SIZES
    want = [((m, s[0]), (s[0], s[1])), ((m, s[1]), (s[1], s[2])), ((m, s[2]), (s[2], s[3])),
            ((s[3], m), (m, s[2])), ((m, s[3]), (s[3], s[2])),
            ((s[2], m), (m, s[1])), ((m, s[2]), (s[2], s[1])),
            ((s[1], m), (m, s[0]))]
    assert seen == want
    assert sum(2 * a[0] * a[1] * b[1] for a, b in seen) == S.flops_cost_grad(SIZES, m)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_d_check_functions_agree(dtype):
    pytest.importorskip("sklearn")
    fns = S.d_check_fns(dtype)
    Jb, gb = fns.pop("bpnet")()
    gb = np.asarray(gb, dtype=np.float64).copy()
    tJ, tg = S.check_tolerance(dtype)
    fns.pop("torch")  # optional peers: torch and jax are bench-only extras
    fns.pop("jax")
    J, g = fns["sklearn"]()
    g = S.as_theta_grad("sklearn", fns["sklearn"], g)
    assert abs(J - Jb) / abs(Jb) <= tJ
    assert np.linalg.norm(g - gb) / np.linalg.norm(gb) <= tg


def test_worker_process_reports_json_and_check_file(tmp_path):
    spec = {"kind": "full", "case": "t", "system": "numpy", "sizes": SIZES, "m": 50,
            "dtypes": ["float64"], "budget": 0.0, "min_calls": 2, "check_dir": str(tmp_path)}
    got = run.spawn(spec)
    assert got["float64"]["n"] >= 2 and got["float64"]["median_s"] > 0
    z = np.load(tmp_path / "t-numpy-float64.npz")
    d = S.cast(S.make_data(SIZES, 50), "float64")
    Jb, gb = bpnet.cost_grad(d["theta"], SIZES, d["X"], d["y"], S.LAM)
    np.testing.assert_allclose(float(z["J"]), Jb, rtol=1e-12)
    np.testing.assert_allclose(z["grad"], gb, rtol=1e-10, atol=1e-15)


def test_worker_failure_is_loud():
    with pytest.raises(SystemExit, match="worker full numpy failed"):
        run.spawn({"kind": "full", "system": "numpy"})  # no sizes: KeyError in the worker


def _result(t_bpnet, t_peer, t_gemm, speedup_T=2.0, same=True):
    entry = lambda t: {"median_s": t}  # noqa: E731
    cell = {"bpnet": entry(t_bpnet), "numpy": entry(t_peer), "torch": entry(t_peer * 2),
            "openblas-gemm": entry(t_gemm)}
    cases = {c: {"float64": cell} for c in "AC"}
    return {"header": {"bpnet_build": {"max_threads": 2, "isa": "avx512"}},
            "alone": cases, "mixed": cases,
            "threads": {"A": {"float64": {"speedup": speedup_T, "bitwise_identical": same}}},
            "eigen_gemm": {}}


def test_targets_pass_and_miss():
    cases = {"A": None, "C": None}
    out = _result(t_bpnet=1.0, t_peer=2.0, t_gemm=1.5)
    run.targets(out, cases, ["float64"], lambda *a: None)
    status = {r["target"]: r["status"] for r in out["targets"]}
    assert status["alone A/float64: bpnet vs fastest peer"] == "PASS"  # 2.0x >= 1.5x
    assert status["A/float64: OpenBLAS GEMMs alone / bpnet"] == "PASS"  # 1.5 >= 1
    assert status["C/float64: fraction of the GEMM-only limit"] == "PASS"
    assert status["mixed A/float64: bpnet mixed / alone"] == "PASS"
    assert status["T A/float64: 2 threads vs 1"] == "PASS"

    out = _result(t_bpnet=1.0, t_peer=1.4, t_gemm=0.85, speedup_T=1.84, same=False)
    run.targets(out, cases, ["float64"], lambda *a: None)
    status = {r["target"]: r["status"] for r in out["targets"]}
    assert status["alone A/float64: bpnet vs fastest peer"] == "MISS"  # 1.4x < 1.5x
    assert status["A/float64: OpenBLAS GEMMs alone / bpnet"] == "MISS"  # 0.85 < 1
    assert status["C/float64: fraction of the GEMM-only limit"] == "MISS"  # 0.85 < 0.9
    assert status["mixed A/float64: bpnet vs fastest peer"] == "PASS"  # 1.4x >= 1.2x
    assert status["T A/float64: 2 threads vs 1"] == "MISS"
    assert status["T A/float64: bitwise identical"] == "MISS"
    value = {r["target"]: r["value"] for r in out["targets"]}
    assert value["alone A/float64: bpnet vs fastest peer"] == "1.40x (numpy)"


def test_profile_groups():
    assert run.profile_group("~", "<built-in method cost_grad>") == "core cost_grad (C++)"
    assert run.profile_group("/x/site-packages/scipy/optimize/_lbfgsb_py.py", "f").startswith(
        "scipy")
    assert run.profile_group("/x/site-packages/sklearn/utils/validation.py", "f").startswith(
        "scikit-learn")
    assert run.profile_group("/x/python/bpnet/network.py", "fit").startswith("bpnet Python")
    assert run.profile_group("~", "<method 'append' of 'list' objects>").startswith("other")


def test_header_names_cpu_build_threads_and_load():
    h = {"cpu": machine.cpu_info(), "bpnet_build": bpnet.build_info(),
         "threads": machine.thread_info(libs=("bpnet",)), "loadavg_start": [0.5, 0.4, 0.3]}
    text = "\n".join(machine.header_lines(h))
    assert h["cpu"]["model_name"] in text
    assert f"ISA build in use {bpnet.build_info()['isa']}" in text
    assert "threads: bpnet" in text and "OpenBLAS" in text
    assert "load average at start: 0.50" in text
    json.dumps(h)  # the JSON header


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_eigen_gemm_program(tmp_path, monkeypatch):
    """Compiles (cached) and runs bench/eigen_gemm.cpp in both threadings."""
    monkeypatch.setenv("BPNET_BENCH_CACHE", str(tmp_path))
    isa = "avx2" if "avx2" in machine.cpu_info()["flags"] else None
    if isa is None:
        pytest.skip("the CPU has no AVX2")
    exe = machine.eigen_binary(isa)
    rows = machine.run_eigen(exe, SIZES, 100, "float64", [1, 2], [16, 0], "chunks", 2, 0.0)
    rows += machine.run_eigen(exe, SIZES, 100, "float32", [2], [0], "eigen", 2, 0.0)
    assert [(r["threads"], r["block"], r["mode"]) for r in rows] == [
        (1, 16, "chunks"), (1, 100, "chunks"), (2, 16, "chunks"), (2, 50, "chunks"),
        (2, 100, "eigen")]
    assert all(r["checksum_finite"] and r["median_s"] > 0 for r in rows)
    assert machine.eigen_binary(isa) == exe  # cached


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("perf") is None, reason="needs perf")
def test_perf_profile_prints_hot_symbols():
    lines = []
    run.perf_profile("B/float32", True, lines.append, seconds=0.5)
    assert lines[0].startswith("\n== perf: bpnet's core on case B float32")
    assert any("%" in x for x in lines[1:]), lines


def test_perf_rejects_an_unknown_case():
    with pytest.raises(SystemExit, match="--perf: expected CASE"):
        run.perf_profile("Z", True, print)


def test_mixed_worker_interleaves_and_attributes_bpnet_calls():
    spec = {"cases": {"t": (SIZES, 40)}, "dtypes": ["float64", "float32"],
            "systems": ["bpnet", "bpnet-core", "numpy", "openblas-gemm"], "budget": 0.0,
            "min_calls": 20}
    res = run.worker_mixed(spec)["t"]
    for d in ("float64", "float32"):
        assert set(res[d]) == set(spec["systems"])
        assert all(res[d][k]["n"] == 20 for k in spec["systems"])
        assert res[d]["openblas-gemm"]["check"] is None  # a reference row is not checked
        assert res[d]["numpy"]["check"][1] < S.check_tolerance(d)[1]
        # the order rotates, so bpnet follows each of the others in turn
        assert set(res[d]["bpnet"]["after"]) == {"bpnet-core", "numpy", "openblas-gemm"}


def test_threads_worker_compares_bitwise():
    r = run.worker_threads({"cases": {"t": (SIZES, 300)}, "dtypes": ["float64"], "rounds": 1,
                            "budget": 0.0, "min_calls": 2})
    e = r["t"]["float64"]
    assert e["bitwise_identical"] is True
    assert e["speedup"] == pytest.approx(e["t1"]["median_s"] / e["t2"]["median_s"])


def test_memory_worker_reports_bpnet_workspace():
    r = run.worker_memory({"cases": {"t": (SIZES, 300)}, "dtypes": ["float64"],
                           "systems": ["bpnet-core", "numpy"]})
    assert r["t"]["float64"]["bpnet_workspace"] > 0
    assert set(r["t"]["float64"]) == {"bpnet-core", "numpy", "bpnet_workspace"}


@pytest.mark.slow
def test_run_end_to_end_one_thread(tmp_path):
    """The one command, on a subset: header, mixed table, targets, both files."""
    import subprocess

    prefix = tmp_path / "r"
    r = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--one-thread",
                        "--cases", "B", "--modes", "mixed", "--dtypes", "float32", "--no-eigen",
                        "--out", str(prefix)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    text = (tmp_path / "r.txt").read_text()
    lines = text.splitlines()
    assert lines[1].startswith("CPU: ") and lines[2].startswith("bpnet ")
    assert "OMP_NUM_THREADS=1" in text and "load average at end:" in text
    assert "== mixed:" in text and "== targets" in text
    res = json.loads((tmp_path / "r.json").read_text())
    assert next(iter(res)) == "header"
    assert res["header"]["threads"]["openblas_threads"] == 1
    assert res["header"]["bpnet_build"]["max_threads"] == 1
    assert {t["status"] for t in res["targets"]} <= {"PASS", "MISS"}
    assert any(t["target"] == "mixed B/float32: bpnet vs fastest peer" for t in res["targets"])


# ------------------------------------------------------------ issue 18's regimes
import heatmap  # noqa: E402
import regimes as R  # noqa: E402


def _in_process(monkeypatch):
    """regimes' workers run in this process instead of a fresh one (fast tests)."""
    monkeypatch.setattr(R, "spawn", lambda spec, env=None: json.loads(json.dumps(
        R.WORKERS[spec["kind"]](spec), default=float)))


def test_parse_cases_names_and_letters():
    assert run.parse_cases("N,ACT,E,MAP") == ["N", "ACT", "E", "MAP"]
    assert run.parse_cases("ABC") == ["A", "B", "C"]  # the round-2 style
    assert run.parse_cases("a,b,act") == ["A", "B", "ACT"]
    assert run.parse_cases("ACT") == ["ACT"]  # a name wins over its letters
    with pytest.raises(ValueError, match="--cases: expected comma-separated names"):
        run.parse_cases("A,Z")
    args = run.parse_args(["--cases", "N,MAP", "--dtypes", "float32", "--modes", "mixed"])
    assert args.cases == ["N", "MAP"] and args.dtypes == ["float32"] and args.modes == {"mixed"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_n_peers_follow_bpnets_adam_trajectory(dtype):
    """PyTorch's loop and the JAX/optax step take the same full-batch Adam steps as
    Network.fit (epsilon vanishing): the case-N check, each tolerance met."""
    pytest.importorskip("torch")
    pytest.importorskip("optax")
    d = R.n_data(dtype)
    got = R.n_check(d, dtype, n_threads=1)
    assert set(got) == {"torch", "jax"}
    assert max(got.values()) <= R.N_TOLERANCE[dtype]
    # and the timed runners (epsilon 1e-8) return the model after `epochs` steps
    t0 = R.n_runner("bpnet", d, 1)() - d["theta"]
    t1 = R.n_runner("torch", d, 1, n_threads=1)() - d["theta"]
    assert np.linalg.norm(t0) > 0 and np.linalg.norm(t1 - t0) <= 0.05 * np.linalg.norm(t0)


def test_n_check_stops_a_different_trajectory(monkeypatch):
    real = R.n_runner

    def runner(system, d, epochs, n_threads=None, eps=1e-8):
        f = real("bpnet", d, epochs, n_threads, eps)
        if system == "bpnet":
            return f
        return lambda: f() + 1e-6 * (system == "torch")  # torch one step off by a hair
    monkeypatch.setattr(R, "n_runner", runner)
    d = R.n_data("float64")
    with pytest.raises(SystemExit, match="case N float64: torch's Adam epochs disagree"):
        R.n_check(d, "float64", ("bpnet", "jax", "torch"))


def test_n_worker_reports_per_epoch_time(monkeypatch):
    calls = []
    monkeypatch.setattr(R, "measure", lambda f, b, n, **k: calls.append(f) or [0.6, 0.6])
    r = R.worker_n({"system": "bpnet", "dtypes": ["float32"], "epochs": 3, "budget": 0.0,
                    "min_calls": 2})
    assert r["float32"]["median_s"] == pytest.approx(0.2)  # the fit's time / epochs
    assert np.asarray(calls[0]()).shape == (S.offsets(list(R.N_SIZES))[-1],)


def test_n_case_prints_both_modes_and_targets(monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("optax")
    _in_process(monkeypatch)
    monkeypatch.setattr(R, "N_M", 300)
    lines = []
    out = {"header": {"bpnet_build": {"max_threads": 1}}}
    st = {"n_epochs": 2, "aux_rounds": 1, "budget": 0.0, "n_min_fits": 1, "mixed_budget": 0.0}
    R.n_case(out, ["float32"], {"alone", "mixed"}, st, lines.append, {}, 1)
    n = out["N"]
    assert n["checks"]["float32"]["jax"] <= R.N_TOLERANCE["float32"]
    for mode in ("alone", "mixed"):
        e = n[mode]["float32"]
        assert set(e) == {"bpnet", "torch", "jax"}
        assert e["torch"]["bpnet_speedup"] == pytest.approx(
            e["torch"]["median_s"] / e["bpnet"]["median_s"])
    assert any(x.startswith("  mixed  jax/float32") for x in lines)
    run.targets(out, {}, ["float32"], lambda *a: None)
    names = [t["target"] for t in out["targets"]]
    assert names == [f"N {m} float32: per epoch vs {k}" for m in ("alone", "mixed")
                     for k in ("torch", "jax")]


def test_act_worker_times_every_activation():
    r = R.worker_act({"case": "A", "net": [SIZES, 60], "dtypes": ["float64"], "budget": 0.0,
                      "min_calls": 2})
    assert set(r["float64"]) == {a + s for a in R.ACTIVATIONS for s in ("", "/core")}
    assert all(v["n"] == 2 for v in r["float64"].values())


def test_act_targets_read_relative_to_relu(monkeypatch):
    fake = {d: {"sigmoid": {"median_s": 1.1}, "tanh": {"median_s": 1.3},
                "relu": {"median_s": 1.0}} for d in ("float64",)}
    monkeypatch.setattr(R, "spawn", lambda spec, env=None: json.loads(json.dumps(fake)))
    out = {"header": {"bpnet_build": {"max_threads": 2}}}
    R.act_case(out, ["float64"], {"budget": 0, "min_calls": 1, "d_epochs": 1}, lambda *a: None)
    run.targets(out, {}, ["float64"], lambda *a: None)
    status = {t["target"]: (t["value"], t["status"]) for t in out["targets"]}
    assert status["ACT A/float64: sigmoid / relu"] == ("1.10x", "PASS")
    assert status["ACT D/float64: tanh / relu"] == ("1.30x", "MISS")


def test_e_after_worker_and_targets(monkeypatch):
    pytest.importorskip("sklearn")
    _in_process(monkeypatch)
    out = {"header": {"bpnet_build": {"max_threads": 2}},
           "E": {"bpnet": {"k": 10, "median_s": 1e-9}, "sklearn": {"k": 10, "median_s": 1.0}}}
    R.e_after_case(out, {"e_fits": 1}, lambda *a: None)
    after = out["E"]["after"]
    assert set(after) == {"sklearn", "after-sklearn", "after-numpy"}
    assert after["after-sklearn"]["vs_alone"] > 1.2  # any real fit exceeds 1 ns
    run.targets(out, {}, ["float64"], lambda *a: None)
    row = next(t for t in out["targets"] if t["target"].startswith("E: fit right after"))
    assert row["status"] == "MISS"


def test_map_case_checks_every_system_and_writes_the_heatmap(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    _in_process(monkeypatch)
    monkeypatch.setattr(R, "MAP_WIDTHS", (4, 16))
    out = {"header": {"cpu": {"model_name": "test CPU"}, "bpnet_build": {"max_threads": 2},
                      "started": "now"}}
    st = {"map_rounds": 1, "map_budget": 0.0, "map_min_calls": 1, "map_rows": (40, 80)}
    avail = {"sklearn": True, "torch": False, "jax": False}
    png = tmp_path / "r-map.png"
    lines = []
    R.map_case(out, ["float64", "float32"], st, lines.append, tmp_path, avail, png)
    m = out["MAP"]
    assert m["cells"] == [[4, 40], [16, 40], [4, 80], [16, 80]]
    for h, rows in m["cells"]:
        for d in ("float64", "float32"):
            e = m[f"{h}x{rows}/{d}"]
            assert set(e["times_s"]) == {"bpnet", "numpy", "sklearn"}
            assert e["ratio"] == pytest.approx(e["times_s"][e["fastest"]] / e["times_s"]["bpnet"])
            assert max(v[1] for v in e["check"].values()) <= S.check_tolerance(d)[1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(x.startswith("  heatmap written to") for x in lines)


def test_map_check_stops_a_disagreeing_system(tmp_path):
    for k, J in (("bpnet", 1.0), ("numpy", 1.1)):
        np.savez(tmp_path / f"MAP4x40-{k}-float64.npz", J=np.float64(J), grad=np.ones(3))
    with pytest.raises(SystemExit, match="case MAP4x40 float64: numpy disagrees"):
        S.check_files(tmp_path, "MAP4x40", ["bpnet", "numpy"], ["float64"], ref="bpnet")


def test_heatmap_grid_and_targets_name_the_cells_behind(tmp_path):
    pytest.importorskip("matplotlib")
    res = {"cells": [[4, 10], [8, 10], [4, 20], [8, 20]]}
    for (h, m), r in zip(res["cells"], (0.5, 2.0, 1.5, 3.0)):
        res[f"{h}x{m}/float64"] = {"ratio": r, "fastest": "numpy"}
    widths, rows, R_, who = heatmap.grid(res, "float64")
    assert who == [["numpy"] * 2] * 2
    assert widths == [4, 8] and rows == [10, 20]
    np.testing.assert_array_equal(R_, [[0.5, 2.0], [1.5, 3.0]])
    p = heatmap.draw(res, ["float64"], tmp_path / "x.png", "title")
    assert p.stat().st_size > 1000
    out = {"header": {"bpnet_build": {"max_threads": 2}}, "MAP": res}
    run.targets(out, {}, ["float64"], lambda *a: None)
    row = out["targets"][0]
    assert (row["value"], row["status"], row["note"]) == ("3/4", "MISS", "behind (h x m): 4x10")


def test_targets_c_peer_goal_is_1_2x():
    cases = {"A": None, "C": None}
    out = _result(t_bpnet=1.0, t_peer=1.3, t_gemm=1.5)
    run.targets(out, cases, ["float64"], lambda *a: None)
    status = {r["target"]: (r["goal"], r["status"]) for r in out["targets"]}
    assert status["alone C/float64: bpnet vs fastest peer"] == (">= 1.2x", "PASS")
    assert status["alone A/float64: bpnet vs fastest peer"] == (">= 1.5x", "MISS")


@pytest.mark.slow
def test_run_end_to_end_new_cases(tmp_path):
    """N (mixed), ACT and MAP through the command line: the report's sections, the
    heatmap and the JSON targets."""
    import subprocess

    prefix = tmp_path / "r"
    r = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--cases",
                        "N,ACT,MAP", "--modes", "mixed", "--dtypes", "float32", "--out",
                        str(prefix)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    text = (tmp_path / "r.txt").read_text()
    for section in ("== N:", "== ACT:", "== MAP:", "== targets"):
        assert section in text
    assert (tmp_path / "r-map.png").stat().st_size > 1000
    res = json.loads((tmp_path / "r.json").read_text())
    names = {t["target"] for t in res["targets"]}
    assert "ACT A/float32: tanh / relu" in names
    assert "MAP float32: cells where bpnet leads the fastest peer" in names


def test_d_worker_float32_alone_skips_the_float64_core_share(monkeypatch):
    """--dtypes float32 with case D: the core-share line is float64's, so it is left
    out instead of failing (a KeyError in round 2)."""
    monkeypatch.setattr(S, "d_epoch", lambda system, dtype, activation="relu": lambda: None)
    r = run.worker_d({"system": "bpnet", "dtypes": ["float32"], "epochs": 1,
                      "core_share": True})
    assert set(r) == {"float32"}


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_step_profile_replays_the_fits_own_core_calls(solver):
    """step_profile's core time is a replay of the loop's calls: the cost and gradient
    and the fused update of each of the 157 batches of 64 rows, in order."""
    calls = step_profile.recorded_calls(
        lambda: bpnet.Network([4, 3, 2], output="softmax", rng=0, n_threads=1).fit(
            np.ones((10, 4)), np.arange(10) % 2, solver=solver, max_iter=2, batch_size=4, tol=0))
    assert len(calls) == 2 * 2 * 3  # 2 epochs of 3 batches, two core calls each
    kinds = [len(args) for _, args in calls]  # (theta, lam, grad, rows), then the update's
    assert kinds[::2] == [4] * 6 and all(k > 4 for k in kinds[1::2])
    loop, core, steps = step_profile.profile("N64", "float64", solver, reps=1)
    assert steps == 157 and loop > 0 and core > 0


@pytest.mark.slow
def test_sparse_text_bench_runs_both_libraries_and_judges_the_target(tmp_path):
    """bench_sparse_text.py on a tiny case: each fit in its own process, both
    libraries, the mixed round and the target lines (no timing asserted)."""
    import subprocess

    pytest.importorskip("sklearn")
    out = tmp_path / "report.txt"
    r = subprocess.run([sys.executable, str(BENCH / "bench_sparse_text.py"), "--m", "300",
                        "--n", "4096", "--hidden", "4", "--lbfgs-iterations", "2",
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    report = out.read_text()
    for solver in ("adam", "lbfgs"):
        for system in ("bpnet", "sklearn"):
            assert f"{solver:<7}{system:<9}" in report
        assert any(line.startswith(f"{solver}: alone") and line.endswith(("MET", "MISSED"))
                   for line in report.splitlines())
    assert "CPU:" in report.splitlines()[0]


def test_sparse_text_data_is_hashed_text_with_learnable_classes():
    import bench_sparse_text

    pytest.importorskip("sklearn")
    X, y = bench_sparse_text.make_text(200, 2**12, seed=1)
    assert X.shape == (200, 2**12) and X.format == "csr" and X.dtype == np.float64
    assert set(np.unique(y)) <= set(range(20))
    # l2-normalized rows of about 100 words each
    np.testing.assert_allclose(np.sqrt(X.multiply(X).sum(axis=1)).A.ravel(), 1.0, rtol=1e-12)
    assert 50 < X.getnnz(axis=1).mean() < 150


def test_e_first_k_takes_the_first_grid_value_at_the_target(monkeypatch):
    """systems.e_first_k (case E's search, and e_seeds.py's): the first max_iter of the
    grid whose fit reaches case E's accuracy (a stand-in model that is right from k = 30
    on, for the random state asked), None if none does."""
    y = np.arange(20) % 3
    data = (np.zeros((20, 2)), np.zeros((20, 2)), y, y)

    class Model:
        def __init__(self, k):
            self.k = k

        def predict(self, X):
            return y if self.k >= 30 else (y + 1) % 3

    monkeypatch.setattr(S, "e_fit", lambda system, k, data, random_state: Model(
        k if random_state == 4 else 0))
    assert S.e_first_k("bpnet", data, range(10, 60, 10), random_state=4) == 30
    assert S.e_first_k("bpnet", data, range(5, 30, 5), random_state=4) is None
    assert S.e_first_k("bpnet", data, range(10, 60, 10)) is None


def test_e_seeds_report_has_a_row_per_state_and_the_medians(tmp_path):
    """e_seeds.py end to end on one random state and a coarse grid (no timing)."""
    pytest.importorskip("sklearn")
    pytest.importorskip("threadpoolctl")
    import e_seeds

    out = tmp_path / "seeds.txt"
    assert e_seeds.main(["--seeds", "2", "--step", "50", "--max-iter", "100",
                         "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("CPU:")
    rows = [line.split() for line in lines[3:]]
    assert [r[0] for r in rows] == ["0", "1", "median"]
    for r in rows[:2]:
        assert all(v in ("50", "100", "-") for v in r[1:]), r


def test_e_worker_enters_the_blas_limit_once_outside_the_timed_fits(monkeypatch):
    """run.worker_e for a ``/blas1`` system: one threadpool_limits(1, "blas")
    around the whole worker (entering it costs about 2 ms), and every fit,
    timed or not, asked of the system without the suffix inside it."""
    import contextlib

    import threadpoolctl

    state = {"inside": False, "entered": 0}
    fits = []

    @contextlib.contextmanager
    def limits(n, user_api=None):
        assert (n, user_api) == (1, "blas")
        state["entered"] += 1
        state["inside"] = True
        try:
            yield
        finally:
            state["inside"] = False

    y = np.arange(4) % 2

    class Model:
        def predict(self, X):
            return y

    def fit(system, k, data, random_state=0):
        fits.append((system, k, state["inside"]))
        return Model()

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", limits)
    monkeypatch.setattr(S, "e_data", lambda: (None, np.zeros((4, 2)), None, y))
    monkeypatch.setattr(S, "e_fit", fit)
    out = run.worker_e({"system": "sklearn/blas1", "k": 40, "fits": 3})
    assert state["entered"] == 1 and out["k"] == 40 and out["accuracy"] == 1.0
    assert len(fits) >= 4 and all(f == ("sklearn", 40, True) for f in fits)
    fits.clear()
    run.worker_e({"system": "sklearn", "k": 40, "fits": 3})
    assert state["entered"] == 1 and all(f == ("sklearn", 40, False) for f in fits)


def test_wide_rows_names_the_cores_leaves():
    """wide_rows.py's leaf column: the leaves the core makes for m rows."""
    import wide_rows

    from bpnet import _runtime

    for m in (1, 31, 64, 256, 1000, 2000, 5000, 10000, 65537, 100000):
        starts = _runtime.leaf_starts(m)
        assert wide_rows.leaf_rows(m) == (int(np.diff(starts).max()), len(starts) - 1), m


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wide_rows_stops_when_the_peer_disagrees(monkeypatch, dtype):
    """wide_rows.py checks PyTorch's cost and gradient against bpnet's before timing
    (a stand-in peer here: bpnet's own step, then one off in J by 1e-3 relative, past
    bench/run.py's tolerance in both dtypes, then one off in the gradient)."""
    import wide_rows

    monkeypatch.setattr(wide_rows, "_calls", lambda m: 1)
    same = wide_rows._bpnet_step
    monkeypatch.setitem(wide_rows.STEPS, "torch", same)
    res = wide_rows._mixed([40], dtype)
    assert set(res) == {"bpnet", "torch"} and res["torch"]["40"] > 0

    def off(d):
        step = same(d)
        return lambda: (lambda J, g: (J * (1 + 1e-3), g))(*step())

    monkeypatch.setitem(wide_rows.STEPS, "torch", off)
    with pytest.raises(SystemExit, match="disagree"):
        wide_rows._mixed([40], dtype)

    def off_grad(d):
        step = same(d)
        return lambda: (lambda J, g: (J, g * (1 + 1e-2)))(*step())

    monkeypatch.setitem(wide_rows.STEPS, "torch", off_grad)
    with pytest.raises(SystemExit, match="gradient relative difference"):
        wide_rows._mixed([40], dtype)

    # within bench/run.py's tolerance: PyTorch's float32 gradient on the AVX2 build of a
    # Zen 3 host was 2.4e-4 off at m = 1000 (the check once stopped there at 1e-4)
    small = 5e-4 if dtype == "float32" else 1e-9

    def near(d):
        step = same(d)
        return lambda: (lambda J, g: (J, g * (1 + small)))(*step())

    monkeypatch.setitem(wide_rows.STEPS, "torch", near)
    assert wide_rows._mixed([40], dtype)["torch"]["40"] > 0


def test_wide_rows_torch_step_is_bpnets_math():
    """The PyTorch step of wide_rows.py computes bpnet's cost and gradient (float64)."""
    pytest.importorskip("torch")
    import wide_rows

    prob = wide_rows._problem(50, "float64")
    Jb, gb = wide_rows._flat(wide_rows._bpnet_step(prob)())
    Jt, gt = wide_rows._flat(wide_rows._torch_step(prob)())
    assert abs(Jb - Jt) <= 1e-12 * abs(Jb)
    np.testing.assert_allclose(gt, gb, rtol=0, atol=1e-12 * np.abs(gb).max())


class _SpinAfterProduct:
    """A stand-in for a BLAS matrix: ``M @ M`` leaves a thread busy for `spin` s
    (OpenBLAS's idle threads after a call), or none with spin = 0."""

    def __init__(self, spin):
        self.spin = spin

    def __matmul__(self, other):
        import threading
        import time

        def busy():
            until = time.perf_counter() + self.spin
            while time.perf_counter() < until:
                pass

        if self.spin:
            threading.Thread(target=busy, daemon=True).start()
        return self


def test_wait_policy_idle_cpu_counts_other_threads_after_a_product():
    """idle_cpu_after_product: a thread left spinning by the product shows as
    CPU time while the caller sleeps; without one, (almost) none does."""
    import wait_policy

    spun = wait_policy.idle_cpu_after_product(_SpinAfterProduct(0.3), sleep=0.4)
    quiet = wait_policy.idle_cpu_after_product(_SpinAfterProduct(0), sleep=0.4)
    assert spun > 0.05  # at least a sixth of the spin, on a loaded machine too
    assert quiet < spun / 2


def test_wait_policy_sets_each_policys_variables_and_no_inherited_one(monkeypatch, tmp_path):
    """Each policy's process gets its own variables and none of the caller's
    (OPENBLAS_THREAD_TIMEOUT set by the user does not leak into the default
    pool's row); the report has every policy's row and its idle CPU line."""
    import subprocess
    from types import SimpleNamespace

    import wait_policy

    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "10")
    monkeypatch.setenv("BPNET_SPIN_US", "7")
    seen = []
    real_run = subprocess.run

    def fake_run(cmd, env=None, **kw):
        if "--worker" not in cmd:  # the header's own commands (lscpu, ...)
            return real_run(cmd, env=env, **kw)
        seen.append(env)
        res = {w: 0.002 for w in wait_policy.WORK}
        res["idle cpu"] = 0.1 if "OPENBLAS_THREAD_TIMEOUT" not in env else 0.0
        return SimpleNamespace(stdout=json.dumps(res) + "\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    out = tmp_path / "wp.txt"
    assert wait_policy.main(["--rounds", "1", "--out", str(out)]) == 0
    assert len(seen) == len(wait_policy.POLICIES)  # round 0: the policies in order
    for env, (name, want) in zip(seen, wait_policy.POLICIES.items()):
        got = {k: env[k] for k in wait_policy.POLICY_VARS if k in env}
        assert got == want, name
    assert wait_policy.POLICIES["pool"] == {}  # the default: nothing set
    assert wait_policy.POLICIES["openblas timeout"] == {"OPENBLAS_THREAD_TIMEOUT": "4"}
    text = out.read_text()
    for p in wait_policy.POLICIES:
        assert p in text
    assert "  openblas timeout     0.0 ms" in text
    assert "  pool               100.0 ms" in text


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gemm_libraries_times_the_same_products_in_each_library(dtype):
    """gemm_libraries.py's MKL (PyTorch) and OpenBLAS (NumPy) rows run the same
    products on the same operands: their weight-gradient products agree, and
    they are those of the oracle's formula G^(l) = D^(l+1)^T A^(l)."""
    pytest.importorskip("torch")
    import gemm_libraries as G

    sizes = [12, 7, 5, 3]
    d = S.cast(S.make_data(sizes, 40), dtype)
    g_np = [g.copy() for g in G.numpy_products(d, sizes)()]
    g_t = [g.copy() for g in G.torch_products(d, sizes)()]
    rtol = 1e-12 if dtype == "float64" else 1e-5
    # the pass by hand in float64: A^(l+1) = A^(l) W^(l)^T, D^(L) = A^(L), D^(l) = D^(l+1) W^(l)
    W = [w.astype(np.float64) for w in S.gemm_operands(sizes, d["X"])[0]]
    A = [d["X"].astype(np.float64)]
    for w in W:
        A.append(A[-1] @ w.T)
    Dn, ref = A[-1], [None] * len(W)
    for l in range(len(W) - 1, -1, -1):
        ref[l] = Dn.T @ A[l]
        Dn = Dn @ W[l]
    for a, b, r in zip(g_np, g_t, ref):
        assert a.shape == r.shape and a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, r, rtol=rtol, atol=0)
        np.testing.assert_allclose(b, r, rtol=rtol, atol=0)

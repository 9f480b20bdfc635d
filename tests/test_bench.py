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

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import machine  # noqa: E402
import numpy_ref  # noqa: E402
import run  # noqa: E402
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

"""Packaging: the PyPI name, the install hints, type information, the Eigen
submodule and the interpreters the wheel is built for."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import bpnet

ROOT = Path(__file__).resolve().parents[2]
CHILDREN = Path(__file__).resolve().parent / "children"  # what the tests run in a child


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# -- item 1: a distribution name of our own ----------------------------------
def test_distribution_name_is_not_the_taken_bpnet():
    # `bpnet` on PyPI is an unrelated genomics project (2.0.0)
    assert bpnet.DISTRIBUTION == "bpnet-mlp"
    assert _pyproject()["project"]["name"] == bpnet.DISTRIBUTION
    # the import name and the command stay bpnet
    assert _pyproject()["project"]["scripts"] == {"bpnet": "bpnet.cli:main"}


def test_installed_metadata_names_the_distribution():
    dist = importlib.metadata.distribution(bpnet.DISTRIBUTION)
    assert dist.version == bpnet.__version__
    assert dist.metadata["Name"] == "bpnet-mlp"


def test_readme_and_sources_never_point_pip_at_the_other_bpnet():
    """No `pip install bpnet[...]`, `"bpnet[...]"` or `'bpnet[...]'` anywhere a user reads."""
    texts = {p: p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                                        *(ROOT / "python" / "bpnet").glob("*.py")]}
    pattern = re.compile(r"""(pip install\s+["']?bpnet(\[|\s|$))|(["']bpnet\[)""")
    for path, text in texts.items():
        assert not pattern.search(text), f"{path} still names the PyPI project 'bpnet'"
    readme = texts[ROOT / "README.md"]
    for extra in ("cli", "sklearn", "dask"):
        assert f"bpnet-mlp[{extra}]" in readme, extra


def test_install_hints_name_the_distribution():
    from bpnet._about import install_hint

    assert install_hint() == "pip install 'bpnet-mlp'"
    assert install_hint("plot") == "pip install 'bpnet-mlp[plot]'"


def test_model_file_records_the_distribution(tmp_path):
    from bpnet.persist import read_metadata

    path = bpnet.Network([2, 3, 2], rng=0).save(tmp_path / "m.npz")
    meta = read_metadata(path)
    assert meta["distribution"] == "bpnet-mlp" and meta["bpnet_version"] == bpnet.__version__


def test_cli_version_names_the_distribution(capsys):
    from bpnet.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "bpnet-mlp" in capsys.readouterr().out


def test_ci_globs_the_renamed_wheel():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bpnet_mlp-*.whl" in ci and "/bpnet-*.whl" not in ci


def test_ci_sanitizer_job_starts_fresh_and_its_lane_decides_ci():
    """.ci/run's second lane: the sanitizer job builds in CI's own temporary folder
    (not /tmp/bpnet-asan, which outlives a run on the same machine), and the lane's
    exit status is waited for and fails CI."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'BPNET_ASAN_DIR="$work/asan" timeout 1200 .ci/sanitize.sh' in ci
    lane = ci.split("lane2() {", 1)[1].split("\n}\n", 1)[0]
    assert "set -euo pipefail" in lane and ".ci/cpp-tests.sh" in lane
    assert 'wait "$lane2_pid" || rc=$?' in ci and 'exit "$rc"' in ci
    assert 'kill -- "-$lane2_pid"' in ci  # a failing main lane stops the second one


# -- item 15: the build's time; CI's other Pythons build the baseline only -----------
def test_other_pythons_build_the_baseline_only_and_the_primary_wheel_all():
    pythons = (ROOT / ".ci" / "pythons.sh").read_text()
    assert 'isas=${PYTHONS_ISAS:-baseline}' in pythons
    assert 'isa_args=(-C "cmake.define.BPNET_ISAS=$isas")' in pythons
    assert '"$vpy" -m pip wheel -q --no-deps "${isa_args[@]}" .' in pythons
    ci = (ROOT / ".ci" / "run").read_text()
    primary = next(line for line in ci.splitlines() if "pip wheel" in line)
    assert "BPNET_ISAS" not in primary, primary  # the shipped wheel: every ISA build


def test_readme_says_what_the_install_waits_for():
    readme = (ROOT / "README.md").read_text()
    install = readme.split("The install compiles the core three times", 1)[1].split("\n\n")[0]
    install = " ".join(install.split())
    for said in ("nine independent C++ files", "of CPU time in all",
                 'still running...', "`pip install -v .`", "BPNET_ISAS"):
        assert said in install, said
    # the time is the host's: the README names the machine it was measured on
    assert re.search(r"2-vCPU (Intel Xeon|AMD EPYC)", install), "the build host"
    guide = (ROOT / "docs" / "guide" / "install.rst").read_text()
    assert "\nBuild time\n----------\n" in guide and "BPNET_ISAS=baseline" in guide


@pytest.mark.slow
def test_isas_without_the_baseline_build_are_refused(tmp_path):
    """bpnet/_native.py imports the baseline build to read the CPU: CMake stops
    at configure time (no compile) when BPNET_ISAS leaves it out."""
    import importlib.util
    import subprocess

    have_build_deps = all(importlib.util.find_spec(m) for m in ("scikit_build_core", "pybind11"))
    isolation = ["--no-build-isolation"] if have_build_deps else []
    cmd = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", *isolation, str(ROOT),
           "-w", str(tmp_path / "wheel"), "-C", "cmake.define.BPNET_ISAS=avx512",
           "-C", f"build-dir={tmp_path / 'build'}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert "BPNET_ISAS='avx512' must include baseline" in out.stdout + out.stderr
    assert not list((tmp_path / "build").rglob("*.o")), "it compiled before refusing"


# -- item 9: Eigen as a real submodule, and the build from it ------------------
EIGEN_COMMIT = "d71c30c47858effcbd39967097a2d99ee48db464"  # tag 3.4.1, as cmeel-eigen 3.4.1
VENDOR_EIGEN = ROOT.parent / "shared" / "vendor" / "eigen-3.4.1.tar.gz"


def _git(*args):
    import subprocess

    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def test_eigen_is_recorded_as_a_gitlink_at_3_4_1():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (e.g. an sdist)")
    out = _git("ls-files", "-s", "extern/eigen")
    if out.returncode != 0:
        pytest.skip(f"git unavailable: {out.stderr.strip()}")
    assert out.stdout.split()[:2] == ["160000", EIGEN_COMMIT], out.stdout
    assert _git("ls-files", "extern/eigen/").stdout.strip() == "extern/eigen"  # no vendored files
    gitmodules = (ROOT / ".gitmodules").read_text()
    assert "path = extern/eigen" in gitmodules and "libeigen/eigen" in gitmodules


@pytest.mark.slow
@pytest.mark.skipif(not VENDOR_EIGEN.is_file(),
                    reason=f"the Eigen 3.4.1 source archive is not here ({VENDOR_EIGEN})")
def test_build_from_the_submodule_path(tmp_path):
    """BPNET_EIGEN=SUBMODULE builds against the submodule's tree (here the same
    commit unpacked from the vendor archive) and the result computes what the
    installed build does."""
    import subprocess
    import tarfile
    import zipfile

    import numpy as np

    with tarfile.open(VENDOR_EIGEN) as tar:  # our own vendored archive
        if sys.version_info >= (3, 12):
            tar.extractall(tmp_path, filter="data")
        else:  # pragma: no cover - older Pythons have no extraction filters
            tar.extractall(tmp_path)
    eigen = tmp_path / "eigen"
    assert (eigen / "Eigen" / "Core").is_file()
    wheel_dir = tmp_path / "wheel"
    import importlib.util

    # the build requirements of this environment if it has them (a development
    # venv), else pip's isolated build fetches them (CI's venv of the wheel)
    have_build_deps = all(importlib.util.find_spec(m) for m in ("scikit_build_core", "pybind11"))
    isolation = ["--no-build-isolation"] if have_build_deps else []
    cmd = [
        sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", *isolation,
        str(ROOT), "-w", str(wheel_dir),
        "-C", "cmake.define.BPNET_EIGEN=SUBMODULE",
        "-C", f"cmake.define.BPNET_EIGEN_SUBMODULE_DIR={eigen}",
        "-C", "cmake.define.BPNET_ISAS=baseline",
        "-C", f"build-dir={tmp_path / 'build'}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"bpnet: Eigen from submodule {eigen}" in out.stdout + out.stderr
    # pip -v shows what the wait is (README, "Build time" in the install guide)
    assert "bpnet: compiling the core for 1 instruction sets (baseline), 3 files each" in (
        out.stdout + out.stderr)
    (wheel,) = wheel_dir.glob("bpnet_mlp-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
        # BPNET_ISAS=baseline: the one build, no avx2/avx512 twins
        cores = sorted(n.split("/")[-1].split(".")[0] for n in z.namelist() if n.endswith(".so"))
    assert cores == ["_core"], cores
    import os
    import sysconfig

    # -S: no site hooks (an editable install's finder would win over PYTHONPATH);
    # NumPy still comes from this environment's site-packages
    paths = [str(site), sysconfig.get_paths()["platlib"], sysconfig.get_paths()["purelib"]]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), BPNET_ISA="baseline")
    res = subprocess.run([sys.executable, "-S", str(CHILDREN / "wheel_check.py"), str(site)],
                         capture_output=True,
                         text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    import json

    got = json.loads(res.stdout)
    assert got["eigen"] == "3.4.1"
    t = bpnet.debug_theta([3, 5, 3])
    X = np.sin(np.arange(15.0)).reshape(5, 3) / 10
    J, g = bpnet.cost_grad(t, [3, 5, 3], X, np.arange(5) % 3, lam=1.0)
    np.testing.assert_allclose(got["g"], g, rtol=1e-12, atol=0)
    assert abs(got["J"] - J) <= 1e-12 * abs(J)


# -- issue 20 item 15: the MIT license text ships -------------------------------------
def test_license_file_is_the_mit_text_pyproject_names():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the bpnet developers" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    project = _pyproject()
    assert project["project"]["license"] == {"text": "MIT"}
    assert project["tool"]["scikit-build"]["wheel"]["license-files"] == ["LICENSE"]


def test_license_ships_in_the_wheel_metadata_and_the_sdist(tmp_path):
    """The build backend's own metadata and sdist steps (no compile, a few seconds):
    the wheel's .dist-info gets licenses/LICENSE, the sdist has LICENSE at its root."""
    import subprocess
    import tarfile

    pytest.importorskip("scikit_build_core")
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not a source tree")
    meta, sdist = tmp_path / "meta", tmp_path / "sdist"
    meta.mkdir()
    sdist.mkdir()
    out = subprocess.run([sys.executable, str(CHILDREN / "backend_metadata_sdist.py"),
                          str(meta), str(sdist)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    dist_info, sdist_name = line.split()[1:]
    shipped = meta / dist_info / "licenses" / "LICENSE"
    assert shipped.read_text() == (ROOT / "LICENSE").read_text()
    with tarfile.open(sdist / sdist_name) as tar:
        member = tar.extractfile(f"{sdist_name.removesuffix('.tar.gz')}/LICENSE")
        assert member is not None and member.read().decode() == shipped.read_text()

"""The build: which core is active, the ISA twins, that the baseline build
runs on any x86-64 CPU, and the version's one source."""

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bpnet
from bpnet import _native


def test_build_info_reports_active_isa():
    info = bpnet.build_info()
    assert info["isa"] in _native.ISAS
    assert info["isa"] in info["available_isas"]
    assert info["eigen"].startswith("3.4.")
    assert info["max_threads"] >= 1
    assert "SSE2" in info["simd"] or platform.machine() not in ("x86_64", "AMD64")


def test_default_is_the_highest_available_level():
    # BPNET_ISA (as _native reads it) forces a level; without it the highest one is chosen
    forced = os.environ.get("BPNET_ISA", "").strip().lower()
    expected = forced or _native.available()[-1]
    assert bpnet.build_info()["isa"] == expected, f"BPNET_ISA={forced!r}"


@pytest.mark.parametrize("isa", _native.available())
def test_bpnet_isa_forces_a_build(isa):
    code = "import bpnet; print(bpnet.build_info()['isa'])"
    env = dict(os.environ, BPNET_ISA=isa)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == isa


def test_bpnet_isa_rejects_unknown_level():
    env = dict(os.environ, BPNET_ISA="sse9")
    out = subprocess.run([sys.executable, "-c", "import bpnet"], env=env, capture_output=True,
                         text=True)
    assert out.returncode != 0
    assert "isa must be one of" in out.stderr


def test_load_rejects_unknown_level():
    with pytest.raises(ValueError, match="isa must be one of"):
        _native.load("sse9")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="instruction-set check is x86-64 only")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_baseline_build_has_no_avx_instructions():
    """The baseline module must run on any x86-64 CPU: no ymm/zmm registers."""
    path = Path(_native.load("baseline").__file__)
    asm = subprocess.run(["objdump", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    assert "%ymm" not in asm and "%zmm" not in asm


@pytest.mark.parametrize("user_value", [None, "active"])
def test_import_leaves_omp_wait_policy_as_the_user_set_it(user_value):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user_value:
        env["OMP_WAIT_POLICY"] = user_value
    code = "import os, bpnet; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == str(user_value)


def test_the_version_has_one_source():
    # python/bpnet/_about.py holds it; pyproject.toml reads it at build time
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]$', pyproject, re.M)
    assert not re.search(r"^version\s*=", pyproject, re.M), "pyproject.toml writes a version"
    assert 'input = "python/bpnet/_about.py"' in pyproject
    assert importlib.metadata.version(bpnet.DISTRIBUTION) == bpnet.__version__

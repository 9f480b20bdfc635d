"""Packaging: the PyPI name, the install hints, type information, the Eigen
submodule and the interpreters the wheel is built for."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import bpnet

ROOT = Path(__file__).resolve().parents[1]


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
